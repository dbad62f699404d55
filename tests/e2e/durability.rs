//! The edge's durable spool, with `ta-edge` as a process: `kill -9` under load loses no event
//! that was answered 202, SIGTERM drains to Kafka and exits 0, and what a drain could not
//! deliver is delivered after the next start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ta_tests::{
    Service, artifacts_dir, free_port, kafka_brokers, metric_sum, unique, wait_healthy,
    workspace_root,
};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

struct Edge {
    service: Service,
    url: String,
    /// The ops listener (`/metrics`).
    metrics_url: String,
}

/// Start ta-edge on `spool` (kept across restarts of one test) and wait until it answers.
async fn start_edge(log_dir: &Path, spool: &Path, brokers: String, topic: &str) -> Edge {
    start_edge_with(log_dir, spool, brokers, topic, Vec::new()).await
}

async fn start_edge_with(
    log_dir: &Path,
    spool: &Path,
    brokers: String,
    topic: &str,
    extra: Vec<(&'static str, String)>,
) -> Edge {
    std::fs::create_dir_all(log_dir).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let mut envs = vec![
        ("TA_EDGE_LISTEN", format!("127.0.0.1:{port}")),
        (
            "TA_EDGE_METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        ),
        (
            "TA_SITES_FILE",
            workspace_root()
                .join("deploy/config/sites.dev.toml")
                .display()
                .to_string(),
        ),
        ("TA_KAFKA_BROKERS", brokers),
        ("TA_KAFKA_TOPIC", topic.to_owned()),
        ("TA_SPOOL_DIR", spool.display().to_string()),
        ("TA_EDGE_REGION", "durability".into()),
        ("TA_KAFKA_PRODUCE_TIMEOUT_SECS", "2".into()),
        ("TA_KAFKA_RETRY_MAX_BACKOFF_MS", "500".into()),
        ("TA_LOG", "info,rskafka=warn".into()),
    ];
    envs.extend(extra);
    let service = Service::start("ta-edge", &envs, log_dir);
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&format!("{url}/healthz"), &service, Duration::from_secs(60)).await;
    Edge {
        service,
        url,
        metrics_url: format!("http://127.0.0.1:{metrics_port}"),
    }
}

/// A fresh directory for one test's spool.
fn fresh_spool(dir: &Path) -> PathBuf {
    let spool = dir.join("spool");
    let _ = std::fs::remove_dir_all(&spool);
    spool
}

/// What one collect request got.
enum Sent {
    Accepted(String),
    /// Any other HTTP answer: status and body.
    Refused(u16, String),
    /// No HTTP answer (the process is gone or going).
    NoAnswer,
}

async fn send(client: &reqwest::Client, url: &str, user: u32, seq: u32) -> Sent {
    let body = format!(
        r#"{{"site_id":"site-1","event_name":"pageview","url":"https://example.com/p{seq}","user_id":"u{user}"}}"#
    );
    let answer = client
        .post(format!("{url}/v1/collect"))
        .header("X-TA-API-Key", "dev-key-site-1")
        .header("Content-Type", "application/json")
        .header("User-Agent", UA)
        .body(body)
        .send()
        .await;
    let Ok(answer) = answer else {
        return Sent::NoAnswer;
    };
    let status = answer.status().as_u16();
    let Ok(text) = answer.text().await else {
        return Sent::NoAnswer;
    };
    if status == 202 {
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        Sent::Accepted(json["event_id"].as_str().unwrap().to_owned())
    } else {
        Sent::Refused(status, text)
    }
}

/// `clients` concurrent senders, each its own visitor sending pages in order, until the
/// edge stops answering or `max_per_client` pages are sent.
struct Load {
    accepted: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<Vec<(u16, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, clients: u32, max_per_client: u32) -> Self {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|user| {
                let (url, accepted, refused) = (url.to_owned(), accepted.clone(), refused.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    for seq in 0..max_per_client {
                        match send(&client, &url, user, seq).await {
                            Sent::Accepted(id) => accepted.lock().unwrap().push(id),
                            Sent::Refused(status, body) => {
                                refused.lock().unwrap().push((status, body));
                            }
                            Sent::NoAnswer => return,
                        }
                    }
                })
            })
            .collect();
        Self {
            accepted,
            refused,
            tasks,
        }
    }

    fn accepted_so_far(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    async fn finish(self) -> (Vec<String>, Vec<(u16, String)>) {
        for task in self.tasks {
            task.await.unwrap();
        }
        let accepted = self.accepted.lock().unwrap().clone();
        let refused = self.refused.lock().unwrap().clone();
        (accepted, refused)
    }
}

/// Every event id in `topic`, as often as it occurs.
async fn topic_ids(topic: &str) -> Vec<String> {
    ta_tests::infra::read_topic(&kafka_brokers(), topic)
        .await
        .into_values()
        .flatten()
        .map(|event| event.event_id.to_string())
        .collect()
}

/// Read `topic` until every id of `expected` is there; returns all ids read.
async fn wait_for_ids(topic: &str, expected: &[String], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let ids = topic_ids(topic).await;
        let present: BTreeSet<&String> = ids.iter().collect();
        let missing: Vec<&String> = expected.iter().filter(|id| !present.contains(id)).collect();
        if missing.is_empty() {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events answered 202 are not in {topic}, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn duplicates(ids: &[String]) -> usize {
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    counts.values().map(|n| n - 1).sum()
}

async fn spool_events(url: &str) -> f64 {
    let text = ta_tests::get_text(&format!("{url}/metrics")).await;
    metric_sum(&text, "ta_edge_spool_events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_answered_202_before_a_kill_9_reaches_kafka_after_the_restart() {
    let dir = artifacts_dir("durability_kill9");
    let spool = fresh_spool(&dir);
    let topic = unique("kill9");
    let mut edge = start_edge(&dir.join("run1"), &spool, kafka_brokers(), &topic).await;

    let load = Load::start(&edge.url, 16, 100_000);
    let started = Instant::now();
    while load.accepted_so_far() < 1_500 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    edge.service.kill();
    let (accepted, refused) = load.finish().await;
    assert!(refused.is_empty(), "answers other than 202: {refused:?}");
    assert!(
        accepted.len() >= 500,
        "load ran: {} accepted",
        accepted.len()
    );

    let edge = start_edge(&dir.join("run2"), &spool, kafka_brokers(), &topic).await;
    let ids = wait_for_ids(&topic, &accepted, Duration::from_secs(90)).await;
    eprintln!(
        "kill -9: {} events answered 202, all in Kafka after the restart; {} records in the topic, {} duplicates",
        accepted.len(),
        ids.len(),
        duplicates(&ids)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while spool_events(&edge.metrics_url).await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the restarted edge drains its spool"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_finish_drains_to_kafka_and_exits_0() {
    let dir = artifacts_dir("durability_sigterm");
    let spool = fresh_spool(&dir);
    let topic = unique("sigterm");
    let mut edge = start_edge(&dir, &spool, kafka_brokers(), &topic).await;

    let load = Load::start(&edge.url, 16, 100_000);
    let started = Instant::now();
    while load.accepted_so_far() < 500 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::task::block_in_place(|| edge.service.terminate(Duration::from_secs(30)));
    let (accepted, refused) = load.finish().await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}; log:\n{}",
        edge.service.log_text()
    );
    // While shutting down, requests on open connections are turned away as such.
    for (status, body) in &refused {
        assert_eq!(*status, 503, "{body}");
        assert!(body.contains("shutting_down"), "{body}");
    }
    assert!(
        accepted.len() >= 500,
        "load ran: {} accepted",
        accepted.len()
    );

    // Drained before exiting: everything is in Kafka now, once.
    let ids = topic_ids(&topic).await;
    let present: BTreeSet<&String> = ids.iter().collect();
    let missing = accepted.iter().filter(|id| !present.contains(id)).count();
    assert_eq!(
        missing, 0,
        "events answered 202 missing after a graceful stop"
    );
    assert_eq!(duplicates(&ids), 0);
    let log = edge.service.log_text();
    assert!(log.contains("spooled_events_left=0"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_drain_could_not_deliver_is_delivered_after_the_next_start() {
    let dir = artifacts_dir("durability_undrained");
    let spool = fresh_spool(&dir);
    let topic = unique("undrained");
    let unreachable = format!("127.0.0.1:{}", free_port());
    let mut edge = start_edge_with(
        &dir.join("run1"),
        &spool,
        unreachable,
        &topic,
        vec![("TA_SHUTDOWN_DRAIN_SECS", "1".into())],
    )
    .await;
    let (accepted, refused) = Load::start(&edge.url, 4, 25).finish().await;
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(accepted.len(), 100, "accepted while Kafka is unreachable");

    let stopping = Instant::now();
    let status = tokio::task::block_in_place(|| edge.service.terminate(Duration::from_secs(20)));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the drain is bounded: {:?}",
        stopping.elapsed()
    );
    assert!(
        edge.service.log_text().contains("spooled_events_left=100"),
        "{}",
        edge.service.log_text()
    );

    let _edge = start_edge(&dir.join("run2"), &spool, kafka_brokers(), &topic).await;
    let ids = wait_for_ids(&topic, &accepted, Duration::from_secs(60)).await;
    assert_eq!(ids.len(), 100, "each once");
}
