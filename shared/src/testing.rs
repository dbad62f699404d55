//! Synthetic enriched events for tests and benchmarks of the downstream side (loader,
//! fault tests). Not used by the services themselves.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::{EnrichedEvent, SCHEMA_VERSION};

/// Event number `i` at `ts_ms`: two sites, 17 visitors, 5 pages, a fresh event id.
pub fn event(i: u64, ts_ms: i64) -> EnrichedEvent {
    EnrichedEvent {
        v: SCHEMA_VERSION,
        event_id: Uuid::now_v7(),
        site_id: format!("site-{}", i % 2 + 1),
        event_name: "pageview".into(),
        ts_ms,
        received_ms: ts_ms,
        visitor_hash: i % 17,
        session_id: String::new(),
        url: format!("https://example.com/p{}", i % 5),
        host: "example.com".into(),
        path: format!("/p{}", i % 5),
        referrer: String::new(),
        referrer_host: String::new(),
        utm_source: String::new(),
        utm_medium: String::new(),
        utm_campaign: String::new(),
        utm_term: String::new(),
        utm_content: String::new(),
        source: String::new(),
        channel: "direct".into(),
        click_id: String::new(),
        browser: "Firefox".into(),
        browser_version: "121".into(),
        os: "Linux".into(),
        os_version: String::new(),
        device: "desktop".into(),
        country: String::new(),
        edge_region: "test".into(),
        props: BTreeMap::new(),
    }
}
