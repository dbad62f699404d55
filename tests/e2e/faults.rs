//! The loader under faults, as processes: SIGKILL at random moments, ClickHouse stopped and
//! restarted, the broker killed and restarted. Each ends in an exact count with no duplicate
//! event ids.

use std::time::Duration;

use ta_shared::testing::event;
use ta_tests::infra::{PrivateBroker, PrivateClickHouse, clickhouse_number, produce};
use ta_tests::{Service, artifacts_dir, clickhouse_url, free_port, kafka_brokers, unique};

/// `n` events over two sites and two months, so batches are several inserts each.
fn events(n: u64) -> Vec<Vec<u8>> {
    let now = chrono::Utc::now().timestamp_millis();
    let month_ago = now - 35 * 86_400_000;
    (0..n)
        .map(|i| event(i, if i % 3 == 0 { month_ago } else { now }).to_json())
        .collect()
}

struct Counts {
    rows: u64,
    ids: u64,
}

/// Rows and distinct event ids, read in one query so no insert lands between them.
async fn counts(ch: &str, db: &str) -> Counts {
    let both = clickhouse_number(
        ch,
        db,
        "SELECT count() * 1000000000 + uniqExact(event_id) FROM events",
    )
    .await
    .unwrap_or(0);
    Counts {
        rows: both / 1_000_000_000,
        ids: both % 1_000_000_000,
    }
}

/// A SIGKILLed loader's last INSERT may still be committing on the server: wait it out.
async fn wait_for_inserts_of(ch: &str, topic: &str) {
    let sql =
        format!("SELECT count() FROM system.processes WHERE query_id LIKE 'ta-loader/{topic}/%'");
    while clickhouse_number(ch, "default", &sql).await != Some(0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_rows(ch: &str, db: &str, at_least: u64, within: Duration) -> Counts {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let c = counts(ch, db).await;
        if c.rows >= at_least || tokio::time::Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn loader(test: &str, broker: &str, topic: &str, ch: &str, db: &str, batch_rows: u32) -> Service {
    Service::start(
        "ta-loader",
        &[
            ("TA_KAFKA_BROKERS", broker.to_owned()),
            ("TA_KAFKA_TOPIC", topic.to_owned()),
            ("TA_CLICKHOUSE_URL", ch.to_owned()),
            ("TA_CLICKHOUSE_DATABASE", db.to_owned()),
            ("TA_LOADER_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("TA_LOADER_BATCH_MAX_ROWS", batch_rows.to_string()),
            ("TA_LOADER_BATCH_MAX_WAIT_MS", "100".into()),
            ("TA_LOG", "info,rskafka=warn".into()),
        ],
        &artifacts_dir(test),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_killed_with_sigkill_at_random_moments_loads_everything_exactly_once() {
    let (topic, db, ch) = (unique("sigkill"), unique("sigkill"), clickhouse_url());
    let total = 6000;
    produce(&kafka_brokers(), &topic, 3, events(total)).await;
    let mut progress = Vec::new();
    for _ in 0..10 {
        let mut l = loader("faults_sigkill", &kafka_brokers(), &topic, &ch, &db, 40);
        tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 900)).await;
        l.kill();
        wait_for_inserts_of(&ch, &topic).await;
        let c = counts(&ch, &db).await;
        assert_eq!(
            c.rows, c.ids,
            "duplicate rows after a kill (progress so far {progress:?})"
        );
        progress.push(c.rows);
    }
    assert!(
        progress.iter().any(|&n| n > 0 && n < total),
        "no kill landed mid-load: {progress:?}"
    );
    let _l = loader("faults_sigkill", &kafka_brokers(), &topic, &ch, &db, 40);
    let c = wait_rows(&ch, &db, total, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c2 = counts(&ch, &db).await;
    assert_eq!(
        (c.rows, c2.rows, c2.ids),
        (total, total, total),
        "progress per kill: {progress:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_and_restarted_mid_load_loses_and_duplicates_nothing() {
    let dir = artifacts_dir("faults_clickhouse").join("clickhouse");
    let _ = std::fs::remove_dir_all(&dir);
    let mut ch = PrivateClickHouse::start(&dir);
    let (topic, db) = (unique("ch_restart"), unique("ch_restart"));
    produce(&kafka_brokers(), &topic, 2, events(3000)).await;
    let l = loader(
        "faults_clickhouse",
        &kafka_brokers(),
        &topic,
        &ch.url(),
        &db,
        50,
    );
    let before = wait_rows(&ch.url(), &db, 1, Duration::from_secs(60)).await;
    assert!(before.rows > 0, "loading started");
    ch.stop();
    // More traffic arrives while ClickHouse is down; the loader keeps retrying.
    produce(&kafka_brokers(), &topic, 2, events(1000)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ch.restart();
    let c = wait_rows(&ch.url(), &db, 4000, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c2 = counts(&ch.url(), &db).await;
    assert_eq!(
        (c.rows, c2.rows, c2.ids),
        (4000, 4000, 4000),
        "log: {}",
        l.log_text()
    );
    assert!(
        l.log_text().contains("resuming"),
        "the outage was noticed and survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_load_loses_and_duplicates_nothing() {
    let dir = artifacts_dir("faults_broker").join("broker");
    let _ = std::fs::remove_dir_all(&dir);
    let mut broker = PrivateBroker::start(&dir);
    let (topic, db, ch) = (
        unique("broker_restart"),
        unique("broker_restart"),
        clickhouse_url(),
    );
    produce(&broker.address(), &topic, 2, events(3000)).await;
    let l = loader("faults_broker", &broker.address(), &topic, &ch, &db, 50);
    let before = wait_rows(&ch, &db, 1, Duration::from_secs(60)).await;
    assert!(before.rows > 0, "loading started");
    broker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart();
    produce(&broker.address(), &topic, 2, events(1000)).await;
    let c = wait_rows(&ch, &db, 4000, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c2 = counts(&ch, &db).await;
    assert_eq!(
        (c.rows, c2.rows, c2.ids),
        (4000, 4000, 4000),
        "log: {}",
        l.log_text()
    );
}
