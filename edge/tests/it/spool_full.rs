//! A spool at its budget while Kafka is unreachable: 503 with Retry-After, never a 5xx for
//! bad input, and `/readyz` saying why.

use std::time::Duration;

use ta_edge::EdgeNode;

use crate::*;

#[async_std::test]
async fn a_full_spool_answers_503_with_retry_after_and_bad_input_still_gets_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        vec![format!("127.0.0.1:{}", dead_port())],
        &unique_topic("full"),
    );
    cfg.spool_max_bytes = 64 << 10;
    cfg.spool_segment_bytes = 16 << 10;
    cfg.shutdown_drain_secs = 1;
    let node = EdgeNode::start(cfg).await.unwrap();
    let addr = node.local_addr();

    let mut accepted = 0;
    let full = loop {
        let answer = collect(addr, accepted % 7, accepted).await;
        if answer.status != 202 {
            break answer;
        }
        accepted += 1;
        assert!(accepted < 1_000, "64 KiB hold far fewer events");
    };
    assert!(accepted > 50, "the budget was used: {accepted} events");
    assert_eq!(full.status, 503, "{full:?}");
    assert_eq!(
        full.headers.get("retry-after").map(String::as_str),
        Some("10")
    );
    let body = full.json();
    assert_eq!(body["error"], "spool_full");
    assert!(
        body["message"].as_str().unwrap().contains("spool is full"),
        "{body}"
    );

    // Bad input is still bad input, whatever the spool's state.
    let json = ("Content-Type", "application/json");
    let no_key = http(
        addr,
        "POST",
        "/v1/collect",
        &[("User-Agent", UA), json],
        "{}",
    )
    .await;
    assert_eq!(no_key.status, 401, "{no_key:?}");
    let bad_json = http(
        addr,
        "POST",
        "/v1/collect",
        &[("X-TA-API-Key", "k1"), ("User-Agent", UA), json],
        "{not json",
    )
    .await;
    assert_eq!(bad_json.status, 400, "{bad_json:?}");
    assert_eq!(bad_json.json()["error"], "bad_json");

    let ready = http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "spool_filling", "{ready:?}");

    let exposition = metrics(node.metrics_addr()).await;
    let series = |name: &str| metric(&exposition, name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(
        series("ta_edge_events_accepted_total{site_id=\"site-1\",region=\"it\"}"),
        f64::from(accepted)
    );
    assert_eq!(
        series("ta_edge_spool_events{region=\"it\"}"),
        f64::from(accepted)
    );
    assert_eq!(
        series("ta_edge_events_rejected_total{reason=\"spool_full\",region=\"it\"}"),
        1.0
    );
    assert!(series("ta_edge_spool_bytes{region=\"it\"}") <= f64::from(64u32 << 10));
    assert!(series("ta_edge_spool_oldest_event_age_seconds{region=\"it\"}") >= 0.0);

    let report = node.shutdown().await.unwrap();
    assert_eq!(report.spooled_events_left, u64::from(accepted));
}

#[async_std::test]
async fn readyz_says_kafka_is_unreachable_only_after_the_configured_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        vec![format!("127.0.0.1:{}", dead_port())],
        &unique_topic("ready"),
    );
    cfg.ready_max_kafka_down_secs = 2;
    cfg.shutdown_drain_secs = 1;
    let node = EdgeNode::start(cfg).await.unwrap();
    let addr = node.local_addr();
    let ready = http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(
        ready.status, 200,
        "ready while the outage is young: {ready:?}"
    );
    assert_eq!(accepted_id(&collect(addr, 1, 1).await).len(), 36);
    async_std::task::sleep(Duration::from_millis(2_100)).await;
    let ready = http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503);
    let body = ready.json();
    assert_eq!(body["reason"], "kafka_unreachable");
    assert!(
        body["message"].as_str().unwrap().contains("limit 2 s"),
        "{body}"
    );
    assert_eq!(http(addr, "GET", "/healthz", &[], "").await.status, 200);
    node.shutdown().await.unwrap();
}
