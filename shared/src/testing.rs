//! Synthetic enriched events for tests and benchmarks of the downstream side (loader,
//! fault tests). Not used by the services themselves.

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
        url: format!("https://example.com/p{}", i % 5),
        host: "example.com".into(),
        path: format!("/p{}", i % 5),
        channel: "direct".into(),
        browser: "Firefox".into(),
        browser_version: "121".into(),
        os: "Linux".into(),
        device: "desktop".into(),
        edge_region: "test".into(),
        ..EnrichedEvent::default()
    }
}
