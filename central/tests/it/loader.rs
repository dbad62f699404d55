//! The loader against the real broker and the real ClickHouse.

use std::time::Duration;

use ta_central::LoaderConfig;
use ta_central::loader::{self, LoaderMetrics};
use ta_shared::EnrichedEvent;

use crate::{fresh_db, kafka_brokers, unique};

use ta_shared::testing::event;

/// Create `topic` with `partitions` and produce `values` round-robin, in batches.
async fn produce(topic: &str, partitions: i32, values: Vec<Vec<u8>>) {
    ta_tests::infra::produce(&kafka_brokers().join(","), topic, partitions, values).await;
}

fn loader_config(test: &str, topic: &str) -> LoaderConfig {
    LoaderConfig {
        kafka_brokers: kafka_brokers(),
        kafka_topic: topic.to_owned(),
        clickhouse: fresh_db(test),
        batch_max_rows: 100,
        batch_max_wait_ms: 50,
        fetch_wait_ms: 50,
        ..LoaderConfig::default()
    }
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Counts {
    rows: u64,
    distinct_ids: u64,
}

async fn counts(db: &clickhouse::Client) -> Counts {
    db.query("SELECT count() AS rows, uniqExact(event_id) AS distinct_ids FROM events")
        .fetch_one()
        .await
        .unwrap_or(Counts {
            rows: 0,
            distinct_ids: 0,
        })
}

async fn wait_for_rows(db: &clickhouse::Client, expected: u64, within: Duration) -> Counts {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let c = counts(db).await;
        if c.rows >= expected || tokio::time::Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn loads_every_record_once_and_dead_letters_poison() {
    let topic = unique("loader_basic");
    let now = chrono::Utc::now().timestamp_millis();
    let mut values: Vec<Vec<u8>> = (0..600)
        .map(|i| {
            let mut e = event(i, now);
            if i % 100 == 7 {
                // Revenue, the largest amount included: stored as the exact decimal.
                e.event_name = "purchase".into();
                (e.revenue_e4, e.revenue_currency) =
                    (999_999_999_999_999_999 - i as i64, "EUR".into());
            }
            e.to_json()
        })
        .collect();
    values.insert(100, b"{definitely not json".to_vec());
    values.insert(300, br#"{"v":42,"site_id":"from-the-future"}"#.to_vec());
    values.insert(400, {
        let mut e = event(9999, now);
        e.ts_ms = -5_000;
        e.to_json()
    });
    let total_bytes: usize = values.iter().map(Vec::len).sum();
    produce(&topic, 2, values).await;

    let config = loader_config("loader_basic", &topic);
    let db = config.clickhouse.client();
    let metrics = LoaderMetrics::new();
    let task = tokio::spawn(loader::run(config, metrics.clone()));
    let c = wait_for_rows(&db, 600, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let c2 = counts(&db).await;
    assert_eq!((c.rows, c2.rows, c2.distinct_ids), (600, 600, 600));
    let revenue: Vec<(String, String)> = db
        .query("SELECT toString(revenue_amount), toString(revenue_currency) FROM events WHERE revenue_currency != '' ORDER BY revenue_amount")
        .fetch_all()
        .await
        .unwrap();
    let expected: Vec<(String, String)> = [507, 407, 307, 207, 107, 7]
        .map(|i| (format!("99999999999999.{:04}", 9999 - i), "EUR".to_owned()))
        .into();
    assert_eq!(revenue, expected);

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Dead {
        reason: String,
    }
    let dead: Vec<Dead> = db
        .query("SELECT reason FROM dead_letters ORDER BY reason")
        .fetch_all()
        .await
        .unwrap();
    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| d.reason.split(':').next().unwrap())
        .collect();
    assert_eq!(reasons, ["malformed", "out_of_range", "unknown_version"]);
    assert_eq!(metrics.inserted.get(), 600);
    assert_eq!(metrics.fetched.get(), 603);
    assert_eq!(
        metrics.batch_bytes.get_sample_sum() as usize,
        total_bytes,
        "every record's bytes counted once"
    );
}

#[tokio::test]
async fn restarts_at_random_moments_neither_lose_nor_duplicate() {
    let topic = unique("loader_crash");
    let now = chrono::Utc::now().timestamp_millis();
    let total = 3000u64;
    // Two sites and two months: every batch is several inserts, so kills also land between
    // the inserts of one batch and between the last insert and the checkpoint.
    let month_ago = now - 35 * 86_400_000;
    let values = (0..total).map(|i| event(i, if i % 3 == 0 { month_ago } else { now }).to_json());
    produce(&topic, 3, values.collect()).await;
    // Small batches make loading take seconds, so the kills below land mid-load.
    let config = LoaderConfig {
        batch_max_rows: 10,
        ..loader_config("loader_crash", &topic)
    };
    let db = config.clickhouse.client();
    let mut progress = Vec::new();
    // Kill the loader task at random points (mid-fetch, mid-insert, between inserts) and
    // start a fresh one, as a crashed and restarted process would.
    for round in 0..8 {
        let task = tokio::spawn(loader::run(config.clone(), LoaderMetrics::new()));
        let ms = 100 + rand::random::<u64>() % 400;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        task.abort();
        let _ = task.await;
        let c = counts(&db).await;
        assert_eq!(c.rows, c.distinct_ids, "duplicates after round {round}");
        progress.push(c.rows);
    }
    assert!(
        progress.iter().any(|&n| n > 0 && n < total),
        "no kill landed mid-load (rows after each round: {progress:?})"
    );
    let task = tokio::spawn(loader::run(config.clone(), LoaderMetrics::new()));
    let c = wait_for_rows(&db, total, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    task.abort();
    let c2 = counts(&db).await;
    assert_eq!((c.rows, c2.rows, c2.distinct_ids), (total, total, total));
}

#[tokio::test]
async fn two_loaders_split_the_partitions_and_load_everything_once() {
    let topic = unique("loader_split");
    let now = chrono::Utc::now().timestamp_millis();
    produce(
        &topic,
        4,
        (0..800).map(|i| event(i, now).to_json()).collect(),
    )
    .await;
    let mut a = loader_config("loader_split", &topic);
    a.of = 2;
    let mut b = a.clone();
    b.instance = 1;
    let db = a.clickhouse.client();
    let ta = tokio::spawn(loader::run(a, LoaderMetrics::new()));
    let tb = tokio::spawn(loader::run(b, LoaderMetrics::new()));
    let c = wait_for_rows(&db, 800, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ta.abort();
    tb.abort();
    assert_eq!((c.rows, counts(&db).await.distinct_ids), (800, 800));

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct PerPartition {
        kafka_partition: u32,
        n: u64,
    }
    let per: Vec<PerPartition> = db
        .query("SELECT kafka_partition, count() AS n FROM events GROUP BY kafka_partition ORDER BY kafka_partition")
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<(u32, u64)> = per.iter().map(|p| (p.kafka_partition, p.n)).collect();
    assert_eq!(got, [(0, 200), (1, 200), (2, 200), (3, 200)]);
}

#[tokio::test]
async fn edge_retry_duplicates_are_dropped_even_across_restarts() {
    let topic = unique("loader_dedup");
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<EnrichedEvent> = (0..100).map(|i| event(i, now)).collect();
    let mut values: Vec<Vec<u8>> = events.iter().map(EnrichedEvent::to_json).collect();
    // An edge that crashed after the broker's ack re-produces the same events (same ids).
    values.push(events[5].to_json());
    values.push(events[50].to_json());
    produce(&topic, 1, values).await;
    let config = loader_config("loader_dedup", &topic);
    let db = config.clickhouse.client();
    let first = LoaderMetrics::new();
    let task = tokio::spawn(loader::run(config.clone(), first.clone()));
    wait_for(
        || first.duplicates.get() == 2 && first.inserted.get() == 100,
        || {
            format!(
                "first: dup {} ins {}",
                first.duplicates.get(),
                first.inserted.get()
            )
        },
    )
    .await;
    task.abort();
    let _ = task.await;

    // A retry arriving after the loader restarted is still recognised.
    produce(&topic, 1, vec![events[7].to_json()]).await;
    let second = LoaderMetrics::new();
    let task = tokio::spawn(loader::run(config, second.clone()));
    // The restarted loader may re-read the first run's duplicates too, if they were not yet
    // checkpointed; what matters is that it reaches the end having inserted nothing.
    wait_for(
        || second.next_offset.with_label_values(&["0"]).get() == 103,
        || {
            format!(
                "second: dup {} ins {} fetched {}",
                second.duplicates.get(),
                second.inserted.get(),
                second.fetched.get()
            )
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let c = counts(&db).await;
    assert_eq!((c.rows, c.distinct_ids), (100, 100));
    assert_eq!(second.inserted.get(), 0);
    assert!(second.duplicates.get() >= 1);
}

async fn wait_for(done: impl Fn() -> bool, state: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within 60 s: {}",
            state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Partitions that appear while the loader runs are picked up. Against Kafka or Redpanda,
/// `kafka-topics --alter --partitions N` takes this path; tansu 0.6 has no CreatePartitions
/// (KIP-195), so here the whole topic appears after the loader started.
#[tokio::test]
async fn partitions_that_appear_while_running_are_loaded() {
    let topic = unique("loader_new_partitions");
    let config = LoaderConfig {
        kafka_create_topic: false,
        partition_refresh_secs: 1,
        ..loader_config("loader_new_partitions", &topic)
    };
    let db = config.clickhouse.client();
    let metrics = LoaderMetrics::new();
    let task = tokio::spawn(loader::run(config, metrics.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(metrics.fetched.get(), 0);
    let now = chrono::Utc::now().timestamp_millis();
    produce(
        &topic,
        3,
        (0..300).map(|i| event(i, now).to_json()).collect(),
    )
    .await;
    let c = wait_for_rows(&db, 300, Duration::from_secs(60)).await;
    task.abort();
    assert_eq!((c.rows, c.distinct_ids), (300, 300));
}
