//! Integration tests against the real ClickHouse and the real Kafka-API broker started by
//! `deploy/local/infra up` (or pointed to by `TA_CLICKHOUSE_URL` / `TA_KAFKA_BROKERS`).
//! Every test uses its own database and topic, so tests run in parallel and re-run cleanly.

mod admin;
mod cluster;
mod compat;
mod dashboard;
mod fuzz_corpus;
mod goals;
mod loader;
mod query;
mod query_v2;
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
        clickhouse_cluster: None,
        clickhouse_cluster_nodes: Vec::new(),
    }
}

/// ClickHouse settings for a fresh database on the local cluster (cluster mode).
pub(crate) fn fresh_cluster_db(test: &str) -> ClickHouseArgs {
    let (url, nodes, name) = ta_devsupport::cluster_clickhouse();
    ClickHouseArgs {
        clickhouse_url: url,
        clickhouse_cluster: Some(name),
        clickhouse_cluster_nodes: nodes,
        ..fresh_db(test)
    }
}

pub(crate) fn sample_row(
    site: &str,
    path: &str,
    visitor: u64,
    ts: u32,
    offset: u64,
) -> ta_central::store::EventRow {
    // The shared synthetic event, with the site, page, visitor and time asked for.
    let mut event = ta_shared::testing::event(0, i64::from(ts) * 1000);
    event.site_id = site.into();
    event.url = format!("https://example.com{path}");
    event.path = path.into();
    event.visitor_hash = visitor;
    event.props = [("plan".to_owned(), "pro".to_owned())].into();
    let position = ta_central::store::SourcePosition {
        topic: "t",
        partition: 0,
        offset,
    };
    ta_central::store::EventRow::from_event(event, position).expect("a valid sample row")
}
