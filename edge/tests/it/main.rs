//! Integration tests of the edge against the real broker: the spool and forwarder end to end,
//! Kafka outages (a private tansu behind a proxy the test cuts), a full spool.
//!
//! Every test uses its own topic (`ta_it_edge_<name>_<random>`) and its own spool directory.

mod forwarder;
mod fuzz_corpus;
mod ingest_api;
mod outage;
mod spool_full;
mod tracker;
mod transport;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use ta_edge::EdgeConfig;
use ta_shared::EnrichedEvent;

pub const SITES: &str = "[[site]]\nid = 'site-1'\napi_keys = ['k1']\n";
pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// A loopback port nothing listens on (bound, then released).
pub use ta_devsupport::free_port as dead_port;
/// The shared broker (`deploy/local/infra up`).
pub use ta_devsupport::kafka_broker_list as brokers;
/// Value of an unlabelled or exactly-labelled series in a Prometheus exposition.
pub use ta_devsupport::metric_value as metric;

/// `ta_it_edge_<test>_<random>`: the test's own topic.
pub fn unique_topic(test: &str) -> String {
    ta_devsupport::unique("ta_it_edge", test)
}

/// Config for a node on a random port with its spool and sites file in `dir`.
pub fn config(dir: &Path, brokers: Vec<String>, topic: &str) -> EdgeConfig {
    let sites = dir.join("sites.toml");
    std::fs::write(&sites, SITES).unwrap();
    EdgeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        region: "it".into(),
        sites_file: Some(sites),
        // The public development salt: these nodes hash no real visitor.
        dev: true,
        kafka_brokers: brokers,
        kafka_topic: topic.to_owned(),
        kafka_topic_partitions: 3,
        kafka_produce_timeout_secs: 2,
        kafka_retry_max_backoff_ms: 500,
        spool_dir: dir.join("spool"),
        // Every request of these tests comes from 127.0.0.1; the limits have their own test
        // (ingest_api::abuse_limits_*), which sets them.
        address_rate_limit: 0,
        key_rate_limit: 0,
        ..EdgeConfig::default()
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request on its own connection (the tests need nothing more).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    http_bytes(addr, method, path, headers, body.as_bytes()).await
}

/// [`http`] with a binary body (gzip).
pub async fn http_bytes(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// POST one pageview of visitor `user` for page `/p{seq}`.
pub async fn collect(addr: std::net::SocketAddr, user: u32, seq: u32) -> Answer {
    let body = format!(
        r#"{{"site_id":"site-1","event_name":"pageview","url":"https://example.com/p{seq}","user_id":"u{user}"}}"#
    );
    http(
        addr,
        "POST",
        "/v1/collect",
        &[
            ("X-TA-API-Key", "k1"),
            ("User-Agent", UA),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await
}

/// The event id of a 202 answer.
pub fn accepted_id(answer: &Answer) -> String {
    assert_eq!(answer.status, 202, "{answer:?}");
    answer.json()["event_id"].as_str().unwrap().to_owned()
}

/// Every record of `topic`, per partition in offset order.
pub async fn read_topic(brokers: Vec<String>, topic: &str) -> BTreeMap<i32, Vec<EnrichedEvent>> {
    let read = ta_tests::infra::read_topic(&brokers.join(","), topic).await;
    let partitions = read.len() as i32;
    for (partition, events) in &read {
        for event in events {
            assert_eq!(event.partition_for(partitions), *partition);
        }
    }
    read
}

/// Read `topic` until it holds every id of `expected` (or `within` passes).
pub async fn wait_for_ids(
    brokers: Vec<String>,
    topic: &str,
    expected: &[String],
    within: Duration,
) -> BTreeMap<i32, Vec<EnrichedEvent>> {
    let deadline = Instant::now() + within;
    loop {
        let read = read_topic(brokers.clone(), topic).await;
        let ids: std::collections::BTreeSet<String> = read
            .values()
            .flatten()
            .map(|e| e.event_id.to_string())
            .collect();
        let missing = expected.iter().filter(|id| !ids.contains(*id)).count();
        if missing == 0 {
            return read;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} accepted events never reached {topic}",
            expected.len()
        );
        async_std::task::sleep(Duration::from_millis(250)).await;
    }
}

/// Per visitor, the pages in the order Kafka holds them (first occurrence of each event).
pub fn pages_per_visitor(read: &BTreeMap<i32, Vec<EnrichedEvent>>) -> BTreeMap<u64, Vec<u32>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut pages: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for event in read.values().flatten() {
        if seen.insert(event.event_id) {
            let page = event.path.trim_start_matches("/p").parse().unwrap();
            pages.entry(event.visitor_hash).or_default().push(page);
        }
    }
    pages
}

pub async fn metrics(addr: std::net::SocketAddr) -> String {
    http(addr, "GET", "/metrics", &[], "").await.body
}

/// Poll `check` every 50 ms until it holds or `within` passes.
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        async_std::task::sleep(Duration::from_millis(50)).await;
    }
}
