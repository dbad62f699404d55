//! Kafka unreachable for a while: a private tansu broker that advertises a proxy's address,
//! so every connection the edge makes goes through a proxy the test cuts and restores.

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_std::net::{TcpListener, TcpStream};
use futures::StreamExt;
use ta_edge::EdgeNode;

use crate::*;

/// A TCP proxy that can refuse and cut connections.
struct Proxy {
    port: u16,
    enabled: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let enabled = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (on, conns) = (enabled.clone(), open.clone());
        async_std::task::spawn(async move {
            let mut incoming = listener.incoming();
            while let Some(Ok(client)) = incoming.next().await {
                if !on.load(Ordering::SeqCst) {
                    drop(client); // "unreachable": the connection closes at once
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                conns
                    .lock()
                    .unwrap()
                    .extend([client.clone(), server.clone()]);
                async_std::task::spawn(pipe(client.clone(), server.clone()));
                async_std::task::spawn(pipe(server, client));
            }
        });
        Self {
            port,
            enabled,
            open,
        }
    }

    /// Refuse new connections and cut the open ones.
    fn cut(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }
}

async fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = async_std::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown(Shutdown::Write);
}

/// A tansu broker of the test's own, reachable only through its [`Proxy`].
struct PrivateKafka {
    _broker: ta_tests::infra::PrivateBroker,
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

impl PrivateKafka {
    /// Starts with the proxy cut: Kafka is unreachable until [`Proxy::restore`].
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker_port = dead_port();
        let proxy = Proxy::start(broker_port).await;
        let broker =
            ta_tests::infra::PrivateBroker::start_on(dir.path(), broker_port, Some(proxy.port));
        Self {
            _broker: broker,
            proxy,
            _dir: dir,
        }
    }

    fn brokers(&self) -> Vec<String> {
        vec![format!("127.0.0.1:{}", self.proxy.port)]
    }
}

/// Visitors 0..4 each send pages `pages` one after the other, `gap` apart.
async fn send_pages(
    addr: std::net::SocketAddr,
    pages: std::ops::Range<u32>,
    gap: Duration,
) -> Vec<String> {
    let senders = (0..4u32).map(|user| {
        let pages = pages.clone();
        async_std::task::spawn(async move {
            let mut ids = Vec::new();
            for seq in pages {
                ids.push(accepted_id(&collect(addr, user, seq).await));
                async_std::task::sleep(gap).await;
            }
            ids
        })
    });
    futures::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Failed delivery attempts of every kind.
fn delivery_errors(exposition: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with("ta_edge_produce_errors_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn readyz(addr: std::net::SocketAddr) -> Answer {
    http(addr, "GET", "/readyz", &[], "").await
}

#[async_std::test]
async fn events_accepted_while_kafka_is_unreachable_arrive_in_order_once_it_is_back() {
    let kafka = PrivateKafka::start().await;
    let topic = unique_topic("outage");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), kafka.brokers(), &topic);
    cfg.ready_max_kafka_down_secs = 1;
    let node = EdgeNode::start(cfg).await.unwrap();
    let addr = node.local_addr();

    // Kafka unreachable from the start: every event is still answered 202, from the spool.
    let first = send_pages(addr, 0..30, Duration::ZERO).await;
    assert_eq!(first.len(), 120);
    let exposition = metrics(node.metrics_addr()).await;
    assert_eq!(
        metric(&exposition, "ta_edge_spool_events{region=\"it\"}"),
        Some(120.0)
    );
    assert_eq!(
        metric(&exposition, "ta_edge_kafka_up{region=\"it\"}"),
        Some(0.0)
    );
    eventually(
        "/readyz reports Kafka unreachable",
        Duration::from_secs(10),
        async || {
            let answer = readyz(addr).await;
            answer.status == 503 && answer.json()["reason"] == "kafka_unreachable"
        },
    )
    .await;

    kafka.proxy.restore();
    let read = wait_for_ids(kafka.brokers(), &topic, &first, Duration::from_secs(60)).await;
    assert_eq!(
        read.values().map(Vec::len).sum::<usize>(),
        120,
        "each event once"
    );
    for (visitor, pages) in pages_per_visitor(&read) {
        assert_eq!(
            pages,
            (0..30).collect::<Vec<_>>(),
            "order of visitor {visitor:x}"
        );
    }
    eventually(
        "/readyz is ready again",
        Duration::from_secs(10),
        async || readyz(addr).await.status == 200,
    )
    .await;

    // Cut while events flow (produce requests in flight), for longer than one attempt.
    let errors_before = delivery_errors(&metrics(node.metrics_addr()).await);
    let sending = async_std::task::spawn(send_pages(addr, 30..60, Duration::from_millis(20)));
    async_std::task::sleep(Duration::from_millis(150)).await;
    kafka.proxy.cut();
    async_std::task::sleep(Duration::from_millis(3_000)).await;
    kafka.proxy.restore();
    let second = sending.await;
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let read = wait_for_ids(kafka.brokers(), &topic, &all, Duration::from_secs(60)).await;
    for (visitor, pages) in pages_per_visitor(&read) {
        assert_eq!(
            pages,
            (0..60).collect::<Vec<_>>(),
            "order of visitor {visitor:x}"
        );
    }
    assert!(
        delivery_errors(&metrics(node.metrics_addr()).await) > errors_before,
        "the second outage was seen"
    );
    node.shutdown().await.unwrap();
}
