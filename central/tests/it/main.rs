//! Integration tests against the real ClickHouse and the real Kafka-API broker started by
//! `deploy/local/infra up` (or pointed to by `TA_CLICKHOUSE_URL` / `TA_KAFKA_BROKERS`).
//! Every test uses its own database and topic, so tests run in parallel and re-run cleanly.

mod compat;
mod dashboard;
mod fuzz_corpus;
mod loader;
mod query;
mod stats;
mod stats_access;
mod stats_model;
mod store;

use ta_central::ClickHouseArgs;

// Test-infrastructure addresses; the defaults are what `deploy/local/infra up` starts.
pub(crate) use ta_devsupport::{clickhouse_url, kafka_broker_list as kafka_brokers};

/// A unique name for this test's database or topic: `ta_it_<test>_<random>`.
pub(crate) fn unique(test: &str) -> String {
    ta_devsupport::unique("ta_it", test)
}

/// ClickHouse settings for a fresh database named after the test.
pub(crate) fn fresh_db(test: &str) -> ClickHouseArgs {
    ClickHouseArgs {
        clickhouse_url: clickhouse_url(),
        clickhouse_database: unique(test),
        clickhouse_user: "default".into(),
        clickhouse_password: String::new(),
    }
}

pub(crate) fn sample_row(
    site: &str,
    path: &str,
    visitor: u64,
    ts: u32,
    offset: u64,
) -> ta_central::store::EventRow {
    ta_central::store::EventRow {
        site_id: site.into(),
        ts,
        event_id: uuid::Uuid::now_v7().to_string(),
        event_name: "pageview".into(),
        visitor_hash: visitor,
        session_id: String::new(),
        url: format!("https://example.com{path}"),
        host: "example.com".into(),
        path: path.into(),
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
        props_keys: vec!["plan".into()],
        props_values: vec!["pro".into()],
        received_at: ts,
        kafka_topic: "t".into(),
        kafka_partition: 0,
        kafka_offset: offset,
    }
}
