//! The loader on the local cluster (`deploy/local/cluster up`) while its parts fail: a replica
//! killed mid-load and restarted, ZooKeeper stopped for a minute. Every scenario ends in an exact
//! reconciliation of event ids, and the replicas of each shard hold the same rows.
//!
//! These tests stop shared infrastructure, so they run one at a time ([`SERIAL`]) in a test
//! binary of their own.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use ta_central::loader::{self, LoaderMetrics};
use ta_central::{ClickHouseArgs, LoaderConfig};
use ta_shared::testing::event;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster_script(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/cluster");
    let out = Command::new(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "deploy/local/cluster {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cluster_db(test: &str) -> ClickHouseArgs {
    let (url, nodes, name) = ta_devsupport::cluster_clickhouse();
    ClickHouseArgs {
        clickhouse_url: url,
        clickhouse_database: ta_devsupport::unique("ta_cf", test),
        clickhouse_user: "default".into(),
        clickhouse_password: String::new(),
        clickhouse_cluster: Some(name),
        clickhouse_cluster_nodes: nodes,
    }
}

fn loader_config(test: &str, topic: &str) -> LoaderConfig {
    LoaderConfig {
        kafka_brokers: ta_devsupport::kafka_broker_list(),
        kafka_topic: topic.to_owned(),
        clickhouse: cluster_db(test),
        batch_max_rows: 20,
        batch_max_wait_ms: 50,
        fetch_wait_ms: 50,
        ..LoaderConfig::default()
    }
}

/// Produce `total` events (two months, so batches are several inserts) to a new topic.
async fn produce(topic: &str, total: u64) -> BTreeSet<String> {
    let now = chrono::Utc::now().timestamp_millis();
    let month_ago = now - 35 * 86_400_000;
    let events: Vec<_> = (0..total)
        .map(|i| event(i, if i % 3 == 0 { month_ago } else { now }))
        .collect();
    let ids = events.iter().map(|e| e.event_id.to_string()).collect();
    let values = events.iter().map(|e| e.to_json()).collect();
    ta_tests::infra::produce(
        &ta_devsupport::kafka_broker_list().join(","),
        topic,
        3,
        values,
    )
    .await;
    ids
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Id {
    event_id: String,
}

/// Every event id stored, once per row (so a duplicate shows twice), read through the
/// Distributed table; `None` while the cluster does not answer.
async fn stored_ids(db: &clickhouse::Client) -> Option<Vec<String>> {
    let rows: Vec<Id> = db
        .query("SELECT toString(event_id) AS event_id FROM events")
        .fetch_all()
        .await
        .ok()?;
    Some(rows.into_iter().map(|r| r.event_id).collect())
}

async fn wait_for_rows(db: &clickhouse::Client, expected: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n = stored_ids(db).await.map_or(0, |ids| ids.len());
        if n >= expected || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stored ids are exactly `expected`, each once.
async fn reconcile(db: &clickhouse::Client, expected: &BTreeSet<String>) {
    let ids = stored_ids(db).await.expect("the cluster answers");
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    let missing = expected.difference(&unique).count();
    let unknown = unique.difference(expected).count();
    assert_eq!(
        (ids.len(), unique.len(), missing, unknown),
        (expected.len(), expected.len(), 0, 0),
        "(rows, distinct ids, missing, unknown)"
    );
}

/// After every replica caught up, each shard's two replicas hold the same event ids.
async fn replicas_converge(args: &ClickHouseArgs) {
    let (_, nodes, _) = ta_devsupport::cluster_clickhouse();
    let mut per_node = Vec::new();
    for url in &nodes {
        let node = clickhouse::Client::default()
            .with_url(url)
            .with_database(&args.clickhouse_database)
            .with_validation(false);
        node.query("SYSTEM SYNC REPLICA events_local")
            .execute()
            .await
            .unwrap();
        let ids: Vec<Id> = node
            .query("SELECT toString(event_id) AS event_id FROM events_local ORDER BY event_id")
            .fetch_all()
            .await
            .unwrap();
        per_node.push(ids.into_iter().map(|r| r.event_id).collect::<Vec<_>>());
    }
    assert_eq!(per_node[0], per_node[1], "shard 1's replicas differ");
    assert_eq!(per_node[2], per_node[3], "shard 2's replicas differ");
    assert!(!per_node[0].is_empty() && !per_node[2].is_empty());
}

#[tokio::test]
async fn a_replica_killed_mid_load_and_restarted_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let topic = ta_devsupport::unique("ta_cf", "replica_kill");
    let total = 3_000;
    let expected = produce(&topic, total).await;
    let config = loader_config("replica_kill", &topic);
    let db = config.clickhouse.client();
    let task = tokio::spawn(loader::run(config.clone(), LoaderMetrics::new()));
    // Mid-load: some rows stored, not all.
    let at = wait_for_rows(&db, 300, Duration::from_secs(60)).await;
    assert!(
        at >= 300 && at < total as usize,
        "killed mid-load ({at} rows)"
    );
    cluster_script(&["stop-node", "2", "--kill"]);
    let killed_at = wait_for_rows(&db, 0, Duration::ZERO).await;
    // Loading goes on, or pauses until the replica is back; either way nothing is lost.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let while_down = wait_for_rows(&db, 0, Duration::ZERO).await;
    cluster_script(&["start-node", "2"]);
    let n = wait_for_rows(&db, total as usize, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    task.abort();
    eprintln!(
        "rows: {at} at the kill, {killed_at} just after, {while_down} 5 s later, {n} at the end"
    );
    reconcile(&db, &expected).await;
    replicas_converge(&config.clickhouse).await;
}

#[tokio::test]
async fn zookeeper_stopped_for_a_minute_pauses_loading_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let topic = ta_devsupport::unique("ta_cf", "zk_stop");
    let total = 3_000;
    let expected = produce(&topic, total).await;
    let config = loader_config("zk_stop", &topic);
    let db = config.clickhouse.client();
    let metrics = LoaderMetrics::new();
    // Migrations need ZooKeeper (ON CLUSTER DDL): the loader starts while it is up.
    let task = tokio::spawn(loader::run(config.clone(), metrics.clone()));
    let at = wait_for_rows(&db, 300, Duration::from_secs(60)).await;
    assert!(at < total as usize, "stopped mid-load ({at} rows)");
    cluster_script(&["stop-zookeeper"]);
    let stopped = Instant::now();
    // Replicated tables refuse inserts without ZooKeeper: rows stop growing (give the
    // servers' sessions time to expire first).
    tokio::time::sleep(Duration::from_secs(15)).await;
    let paused_from = wait_for_rows(&db, 0, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_secs(60) - stopped.elapsed().min(Duration::from_secs(60)))
        .await;
    let paused_to = wait_for_rows(&db, 0, Duration::ZERO).await;
    cluster_script(&["start-zookeeper"]);
    let n = wait_for_rows(&db, total as usize, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    task.abort();
    eprintln!(
        "rows: {at} when ZooKeeper stopped, {paused_from}..{paused_to} while it was down, {n} at the end; \
         insert errors: {}",
        metrics.errors.with_label_values(&["clickhouse"]).get()
    );
    assert_eq!(
        paused_from, paused_to,
        "no insert succeeds without ZooKeeper"
    );
    reconcile(&db, &expected).await;
    replicas_converge(&config.clickhouse).await;
}
