//! Fault scenarios end to end under steady load from the bench load generator, each ending
//! with an exact reconciliation: every event id an edge answered 202 for is in ClickHouse
//! exactly once, and nothing else is, beyond events whose answer the fault itself cut.
//!
//! Outages last `TA_FAULT_SECS` (default 60 s). Each scenario writes its books to
//! `target/test-artifacts/reconcile/<scenario>.json`; the README's table comes from there.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng;
use ta_tests::infra::{PrivateBroker, PrivateClickHouse};
use ta_tests::proxy::{Conditions, Proxy};
use ta_tests::reconcile::{SteadyLoad, assert_exact, reconcile};
use ta_tests::{
    Service, artifacts_dir, clickhouse_url, free_port, kafka_brokers, unique, wait_healthy,
    workspace_root,
};

/// Requests per second of the steady load (single events).
const RATE: f64 = 100.0;

fn fault_secs() -> u64 {
    std::env::var("TA_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// Where one scenario's edge and loader run and what they talk to.
struct Setup {
    dir: PathBuf,
    topic: String,
    database: String,
    edge_port: u16,
    edge_brokers: String,
    edge_extra: Vec<(&'static str, String)>,
    loader_brokers: String,
    clickhouse: String,
}

impl Setup {
    fn new(test: &str, brokers: &str, clickhouse: &str) -> Self {
        let dir = artifacts_dir(test);
        let _ = std::fs::remove_dir_all(dir.join("edge-spool"));
        Self {
            topic: unique(test),
            database: unique(test),
            edge_port: free_port(),
            edge_brokers: brokers.to_owned(),
            edge_extra: Vec::new(),
            loader_brokers: brokers.to_owned(),
            clickhouse: clickhouse.to_owned(),
            dir,
        }
    }

    fn edge_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.edge_port)
    }

    /// Start (or restart, on the same port and spool) the edge.
    async fn edge(&self) -> Service {
        let mut envs = vec![
            ("TA_EDGE_LISTEN", format!("127.0.0.1:{}", self.edge_port)),
            (
                "TA_EDGE_METRICS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "TA_SITES_FILE",
                workspace_root()
                    .join("deploy/config/sites.dev.toml")
                    .display()
                    .to_string(),
            ),
            ("TA_KAFKA_BROKERS", self.edge_brokers.clone()),
            ("TA_KAFKA_TOPIC", self.topic.clone()),
            (
                "TA_SPOOL_DIR",
                self.dir.join("edge-spool").display().to_string(),
            ),
            ("TA_TRUST_FORWARDED_FOR", "true".into()),
            ("TA_EDGE_REGION", "faults".into()),
            ("TA_KAFKA_PRODUCE_TIMEOUT_SECS", "5".into()),
            ("TA_LOG", "info,rskafka=warn".into()),
        ];
        envs.extend(self.edge_extra.iter().cloned());
        let edge = Service::start("ta-edge", &envs, &self.dir);
        wait_healthy(
            &format!("{}/healthz", self.edge_url()),
            &edge,
            Duration::from_secs(60),
        )
        .await;
        edge
    }

    /// Start (or restart) the loader.
    async fn loader(&self) -> Service {
        let port = free_port();
        let loader = Service::start(
            "ta-loader",
            &[
                ("TA_LOADER_LISTEN", format!("127.0.0.1:{port}")),
                ("TA_KAFKA_BROKERS", self.loader_brokers.clone()),
                ("TA_KAFKA_TOPIC", self.topic.clone()),
                ("TA_CLICKHOUSE_URL", self.clickhouse.clone()),
                ("TA_CLICKHOUSE_DATABASE", self.database.clone()),
                ("TA_LOADER_BATCH_MAX_WAIT_MS", "200".into()),
                ("TA_LOG", "info,rskafka=warn".into()),
            ],
            &self.dir,
        );
        wait_healthy(
            &format!("http://127.0.0.1:{port}/healthz"),
            &loader,
            Duration::from_secs(60),
        )
        .await;
        loader
    }
}

/// Sleep until `at` after `start`.
async fn until(start: Instant, at: Duration) {
    if let Some(left) = at.checked_sub(start.elapsed()) {
        tokio::time::sleep(left).await;
    }
}

async fn reconcile_and_check(
    scenario: &str,
    setup: &Setup,
    load: SteadyLoad,
) -> ta_tests::reconcile::Reconciliation {
    let per = load.events_per_request;
    let report = tokio::task::spawn_blocking(move || load.finish())
        .await
        .unwrap();
    let r = reconcile(
        scenario,
        &setup.clickhouse,
        &setup.database,
        &report,
        per,
        Duration::from_secs(240),
    )
    .await;
    assert_exact(&r);
    r
}

fn private_dir(test: &str, what: &str) -> PathBuf {
    let dir = artifacts_dir(test).join(what);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stopped_for_a_minute_under_load_loses_and_duplicates_nothing() {
    let test = "reconcile_broker";
    let mut broker = PrivateBroker::start(&private_dir(test, "broker"));
    let setup = Setup::new(test, &broker.address(), &clickhouse_url());
    let _edge = setup.edge().await;
    let _loader = setup.loader().await;
    let outage = Duration::from_secs(fault_secs());
    let start = Instant::now();
    let load = SteadyLoad::start(&setup.edge_url(), RATE, outage + Duration::from_secs(20), 1);
    until(start, Duration::from_secs(10)).await;
    broker.kill();
    until(start, Duration::from_secs(10) + outage).await;
    broker.restart();
    let r = reconcile_and_check(
        &format!("broker stopped for {} s", outage.as_secs()),
        &setup,
        load,
    )
    .await;
    assert_eq!(
        r.statuses.keys().copied().collect::<Vec<_>>(),
        [202],
        "the edge kept answering 202 from its spool: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_for_a_minute_under_load_loses_and_duplicates_nothing() {
    let test = "reconcile_clickhouse";
    let mut ch = PrivateClickHouse::start(&private_dir(test, "clickhouse"));
    let setup = Setup::new(test, &kafka_brokers(), &ch.url());
    let _edge = setup.edge().await;
    let _loader = setup.loader().await;
    let outage = Duration::from_secs(fault_secs());
    let start = Instant::now();
    let load = SteadyLoad::start(&setup.edge_url(), RATE, outage + Duration::from_secs(20), 1);
    until(start, Duration::from_secs(10)).await;
    ch.stop();
    until(start, Duration::from_secs(10) + outage).await;
    ch.restart();
    let r = reconcile_and_check(
        &format!("ClickHouse stopped for {} s", outage.as_secs()),
        &setup,
        load,
    )
    .await;
    assert_eq!(r.statuses.keys().copied().collect::<Vec<_>>(), [202]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_and_loader_killed_9_at_random_moments_under_load_lose_and_duplicate_nothing() {
    let test = "reconcile_kill9";
    let setup = Setup::new(test, &kafka_brokers(), &clickhouse_url());
    let mut edge = setup.edge().await;
    let mut loader = setup.loader().await;
    let run = Duration::from_secs(fault_secs());
    let start = Instant::now();
    // Batches of 5, so a kill also lands in the middle of multi-event requests.
    let load = SteadyLoad::start(&setup.edge_url(), RATE / 2.0, run, 5);
    let mut moments: Vec<(Duration, bool)> = {
        let mut rng = rand::rng();
        (0..6)
            .map(|i| {
                (
                    Duration::from_millis(rng.random_range(2_000..run.as_millis() as u64 - 5_000)),
                    i % 2 == 0,
                )
            })
            .collect()
    };
    moments.sort();
    for (at, kill_edge) in moments {
        until(start, at).await;
        if kill_edge {
            edge.kill();
            edge = setup.edge().await;
        } else {
            loader.kill();
            loader = setup.loader().await;
        }
    }
    let r = reconcile_and_check(
        &format!(
            "kill -9 of the edge and of the loader, 3 times each in {} s",
            run.as_secs()
        ),
        &setup,
        load,
    )
    .await;
    drop((edge, loader));
    assert!(r.acknowledged > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_and_loses_nothing_it_acknowledged() {
    let test = "reconcile_spool_full";
    // The broker sits behind a proxy that starts down: the spool fills, then drains.
    let broker_port = free_port();
    let proxy = Proxy::start(broker_port).await;
    proxy.down();
    let _broker =
        PrivateBroker::start_on(&private_dir(test, "broker"), broker_port, Some(proxy.port));
    let mut setup = Setup::new(test, &proxy.address(), &clickhouse_url());
    setup.edge_extra = vec![
        ("TA_SPOOL_MAX_BYTES", (256u64 << 10).to_string()),
        ("TA_SPOOL_SEGMENT_BYTES", (32u64 << 10).to_string()),
    ];
    let _edge = setup.edge().await;
    let _loader = setup.loader().await;
    let start = Instant::now();
    let load = SteadyLoad::start(&setup.edge_url(), RATE, Duration::from_secs(40), 1);
    until(start, Duration::from_secs(25)).await;
    proxy.up();
    let r = reconcile_and_check("spool budget exhausted (256 KiB)", &setup, load).await;
    assert!(
        r.statuses.get(&503).copied().unwrap_or(0) > 0,
        "the spool filled and the edge said so: {r:?}"
    );
    assert!(r.statuses.get(&202).copied().unwrap_or(0) > 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lossy_network_to_the_broker_loses_and_duplicates_nothing() {
    let test = "reconcile_network";
    let broker_port = free_port();
    let proxy = Proxy::start(broker_port).await;
    let _broker =
        PrivateBroker::start_on(&private_dir(test, "broker"), broker_port, Some(proxy.port));
    let setup = Setup::new(test, &proxy.address(), &clickhouse_url());
    let _edge = setup.edge().await;
    let _loader = setup.loader().await;
    // 50 ms each way on every chunk, and one chunk in 50 resets its connection.
    proxy.set(Conditions {
        down: false,
        delay: Duration::from_millis(50),
        reset_chance: 0.02,
    });
    let load = SteadyLoad::start(
        &setup.edge_url(),
        RATE,
        Duration::from_secs(fault_secs().min(40)),
        1,
    );
    let per = load.events_per_request;
    let report = tokio::task::spawn_blocking(move || load.finish())
        .await
        .unwrap();
    let resets = proxy.resets();
    // The network heals; everything spooled must still arrive exactly once.
    proxy.set(Conditions::default());
    let r = reconcile(
        "network to the broker: +50 ms per chunk each way, 2% of chunks reset",
        &setup.clickhouse,
        &setup.database,
        &report,
        per,
        Duration::from_secs(240),
    )
    .await;
    assert_exact(&r);
    assert!(resets > 0, "the proxy did reset connections");
}
