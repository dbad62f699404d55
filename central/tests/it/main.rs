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

/// Test-infrastructure addresses; the defaults are what `deploy/local/infra up` starts.
pub(crate) fn clickhouse_url() -> String {
    std::env::var("TA_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

pub(crate) fn kafka_brokers() -> Vec<String> {
    std::env::var("TA_KAFKA_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:9092".into())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A unique name for this test's database or topic.
pub(crate) fn unique(test: &str) -> String {
    format!("ta_it_{test}_{:08x}", rand::random::<u32>())
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
        url: format!("https://example.com{path}"),
        host: "example.com".into(),
        path: path.into(),
        channel: "direct".into(),
        browser: "Firefox".into(),
        browser_version: "121".into(),
        os: "Linux".into(),
        device: "desktop".into(),
        edge_region: "test".into(),
        props_keys: vec!["plan".into()],
        props_values: vec!["pro".into()],
        received_at: ts,
        kafka_topic: "t".into(),
        kafka_partition: 0,
        kafka_offset: offset,
        ..ta_central::store::EventRow::default()
    }
}
