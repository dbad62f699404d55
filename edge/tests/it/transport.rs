//! Transport abuse against a running edge: slowloris heads, slow bodies, idle keep-alive
//! connections, connection floods over the cap, header floods and oversized heads. Each ends
//! with a 4xx or a closed connection, the node keeps serving, and what it accepted is intact.

use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use ta_edge::EdgeNode;

use crate::*;

async fn node(dir: &std::path::Path) -> EdgeNode {
    let mut cfg = config(
        dir,
        vec![format!("127.0.0.1:{}", dead_port())],
        &unique_topic("transport"),
    );
    cfg.request_timeout_secs = 1;
    cfg.max_connections = 8;
    cfg.shutdown_drain_secs = 0;
    EdgeNode::start(cfg).await.unwrap()
}

/// Read until the server closes the connection (or `within` passes); what arrived.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match async_std::future::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    std::str::from_utf8(raw)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[async_std::test]
async fn slow_idle_flooding_and_oversized_clients_are_cut_off_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let addr = node.local_addr();
    let first = accepted_id(&collect(addr, 1, 1).await);

    // Slowloris: a head dribbled one byte every 100 ms never completes; cut after ~1 s.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let head = b"POST /v1/collect HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in head {
        if slow.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        async_std::task::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let rest = read_until_closed(&mut slow, Duration::from_secs(3)).await;
    assert!(
        cut || rest.is_some(),
        "a dribbled head was not cut off within the request timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A slow body: the head promises 1000 bytes, 10 arrive, then nothing.
    let mut body = TcpStream::connect(addr).await.unwrap();
    body.write_all(
        b"POST /v1/collect HTTP/1.1\r\nHost: x\r\nX-TA-API-Key: k1\r\nContent-Length: 1000\r\n\r\n{\"site_id\"",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut body, Duration::from_secs(4))
        .await
        .expect("a stalled body is cut off");
    if let Some(status) = status_of(&answer) {
        assert!(
            (400..500).contains(&status),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }

    // An idle keep-alive connection is closed after the timeout.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(3))
            .await
            .is_some(),
        "idle connection still open"
    );

    // Header flood: hundreds of headers, and a 100 KB request line.
    let mut flood = String::from("POST /v1/collect HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        flood.push_str(&format!("X-Flood-{i}: {}\r\n", "v".repeat(40)));
    }
    flood.push_str("Content-Length: 2\r\n\r\n{}");
    let long_line = format!(
        "GET /healthz?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    for abuse in [flood, long_line] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(abuse.as_bytes()).await;
        let answer = read_until_closed(&mut s, Duration::from_secs(4))
            .await
            .expect("abusive head answered or closed");
        if let Some(status) = status_of(&answer) {
            assert!(
                (400..500).contains(&status),
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
    }

    // An oversized body is refused without being read: the answer closes the connection, so
    // no later request on it can be read out of step with the unread bytes.
    let mut big = TcpStream::connect(addr).await.unwrap();
    let body = vec![b' '; (1 << 20) + 10];
    let head = format!(
        "POST /v1/collect HTTP/1.1\r\nHost: x\r\nX-TA-API-Key: k1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = big.write_all(head.as_bytes()).await;
    let _ = big.write_all(&body).await;
    let answer = read_until_closed(&mut big, Duration::from_secs(3))
        .await
        .expect("the connection is closed after a 413");
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert_eq!(status_of(&answer), Some(413), "{text}");
    assert!(text.contains("connection: close"), "{text}");

    // Connection flood: with 8 open (idle) connections the 9th is closed at once; when they
    // time out, new connections are served again.
    let mut held = Vec::new();
    for _ in 0..8 {
        // One keep-alive request each proves the node accepted the connection.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(status_of(&buf[..n]), Some(200));
        held.push(s);
    }
    let mut over = TcpStream::connect(addr).await.unwrap();
    let closed_at_once = read_until_closed(&mut over, Duration::from_millis(500)).await;
    assert_eq!(
        closed_at_once,
        Some(Vec::new()),
        "the 9th connection is refused"
    );
    async_std::task::sleep(Duration::from_millis(1500)).await;

    // Still serving, and what was accepted before is intact in the spool.
    let second = accepted_id(&collect(addr, 2, 2).await);
    let exposition = metrics(node.metrics_addr()).await;
    assert!(
        metric(
            &exposition,
            "ta_edge_connections_refused_total{region=\"it\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        metric(
            &exposition,
            "ta_edge_connections_timed_out_total{region=\"it\"}"
        )
        .unwrap()
            >= 3.0
    );
    assert_eq!(
        metric(
            &exposition,
            "ta_edge_events_accepted_total{site_id=\"site-1\",region=\"it\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&exposition, "ta_edge_spool_events{region=\"it\"}"),
        Some(2.0)
    );
    assert_ne!(first, second);
    drop(held);
    node.shutdown().await.unwrap();
}

/// Send `raw` on a new connection; what came back before the server closed it.
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(3))
        .await
        .expect("answered and closed");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Heads the HTTP codec (hyper behind `ta_edge::http1`) must answer rather than drop, and the
/// connection reuse it must keep: keep-alive and pipelined requests.
#[async_std::test]
async fn unusual_heads_are_answered_and_connections_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let addr = node.local_addr();

    // A user agent naming the device in its own script (bytes outside ASCII): read, not
    // refused (tide gets those bytes percent-encoded), and the event is accepted.
    let ua = "Mozilla/5.0 (Linux; Android 14; Téléphone 华为) AppleWebKit/537.36 (KHTML, like Gecko) \
              Chrome/131.0.0.0 Mobile Safari/537.36";
    let body = r#"{"site_id":"site-1","event_name":"pageview","url":"https://example.com/utf8","user_id":"u9"}"#;
    let answer = http(
        addr,
        "POST",
        "/v1/collect",
        &[
            ("X-TA-API-Key", "k1"),
            ("User-Agent", ua),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    accepted_id(&answer);

    // A Host that would change the path is refused with the reason (not routed elsewhere).
    let text = exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x/evil\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(text.as_bytes()), Some(400), "{text}");
    assert!(text.contains("invalid Host header"), "{text}");

    // Too many headers: 431.
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let text = exchange(addr, many.as_bytes()).await;
    assert_eq!(status_of(text.as_bytes()), Some(431), "{text}");

    // HTTP/1.0 is answered (and closed, without keep-alive asked for).
    let text = exchange(addr, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");

    // Keep-alive and pipelining: two requests written at once, then a third on the same
    // connection after their answers; three answers, in order.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen).matches("HTTP/1.1 ").count() < 2 {
        let n = async_std::future::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("both pipelined answers")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    seen.extend(
        read_until_closed(&mut s, Duration::from_secs(3))
            .await
            .expect("the third answer, then close"),
    );
    let text = String::from_utf8_lossy(&seen);
    // Each answer in its request's order (/readyz says 503 here: the broker is unreachable).
    let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{text}");
    assert!(
        answers[0].starts_with("200") && answers[0].contains(r#""status":"ok""#),
        "{text}"
    );
    assert!(answers[1].contains("ready\""), "{text}");
    assert!(
        answers[2].starts_with("200") && answers[2].contains(r#""status":"ok""#),
        "{text}"
    );
    node.shutdown().await.unwrap();
}
