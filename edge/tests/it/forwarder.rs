//! The spool and the forwarder against the real broker, and the node end to end.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ta_edge::EdgeNode;
use ta_edge::forwarder::{Forwarder, ForwarderMetrics, ForwarderSettings, KafkaStatus};
use ta_edge::ingest::{Ingest, IngestRequest, Outcome};
use ta_edge::kafka::{KafkaDestination, KafkaSettings};
use ta_edge::shutdown::Trigger;
use ta_edge::spool::{Spool, SpoolConfig, SpoolMetrics, SpoolRecord};
use ta_shared::{EnrichedEvent, SaltSchedule, SiteRegistry};

use crate::*;

fn enrich(ingest: &Ingest, ip: &str, path: &str) -> EnrichedEvent {
    let body = format!(
        r#"{{"site_id":"site-1","event_name":"pageview","url":"https://example.com{path}"}}"#
    );
    let outcome = ingest
        .process(IngestRequest {
            body: body.as_bytes(),
            api_key: Some("k1"),
            signature: None,
            timestamp: None,
            origin: None,
            client_ip: ip,
            user_agent: UA,
            do_not_track: false,
            country_header: None,
            accept_language: None,
            now: Utc::now(),
        })
        .unwrap();
    match outcome {
        Outcome::Accepted(e) => *e,
        other => panic!("expected accepted, got {other:?}"),
    }
}

#[async_std::test]
async fn spooled_events_reach_the_visitors_partition_exactly_once_without_raw_ip_or_ua() {
    let topic = unique_topic("forward");
    let dir = tempfile::tempdir().unwrap();
    let metrics = ForwarderMetrics::new();
    let (spool, reader) = Spool::open(SpoolConfig::new(dir.path()), SpoolMetrics::new()).unwrap();
    let status = Arc::new(KafkaStatus::new(metrics.kafka_up.clone()));
    let destination = KafkaDestination::new(KafkaSettings {
        brokers: brokers(),
        topic: topic.clone(),
        partitions_if_created: 3,
        request_deadline: Duration::from_secs(10),
        security: Default::default(),
    });
    let drain = Trigger::default();
    let forwarder = async_std::task::spawn(
        Forwarder::new(
            Arc::new(destination),
            reader,
            ForwarderSettings::default(),
            metrics.clone(),
            status,
        )
        .run(drain.clone()),
    );
    let ingest = Ingest::new(
        SiteRegistry::from_toml(SITES).unwrap(),
        SaltSchedule::new("s"),
        "it",
    );

    // 60 events from 6 visitors, appended concurrently so commits and produces are shared.
    let events: Vec<EnrichedEvent> = (0..60)
        .map(|i| enrich(&ingest, &format!("203.0.113.{}", i % 6), &format!("/p{i}")))
        .collect();
    let appends = events.iter().map(|e| {
        let spool = spool.clone();
        let record = SpoolRecord::from_event(e);
        async move { spool.append(&[record]).await }
    });
    for result in futures::future::join_all(appends).await {
        result.unwrap();
    }
    drain.fire();
    async_std::future::timeout(Duration::from_secs(30), forwarder)
        .await
        .expect("the forwarder drains 60 events");
    assert_eq!(metrics.produced.get(), 60);
    assert_eq!(spool.stats().events, 0);
    assert!(
        metrics.batch_records.get_sample_count() < 60,
        "events share produce requests ({} requests)",
        metrics.batch_records.get_sample_count()
    );

    let read = read_topic(brokers(), &topic).await;
    assert_eq!(read.len(), 3, "the topic was created with 3 partitions");
    let mut got: Vec<EnrichedEvent> = read.into_values().flatten().collect();
    for event in &got {
        let text = String::from_utf8(event.to_json()).unwrap();
        assert!(
            !text.contains("203.0.113.") && !text.contains("Gecko/"),
            "raw IP/UA in {text}"
        );
    }
    got.sort_by_key(|e| e.event_id);
    let mut sent = events.clone();
    sent.sort_by_key(|e| e.event_id);
    assert_eq!(got, sent, "every event is read back exactly, once");
}

#[async_std::test]
async fn an_event_answered_202_arrives_in_kafka_in_per_visitor_order() {
    let topic = unique_topic("node");
    let dir = tempfile::tempdir().unwrap();
    let node = EdgeNode::start(config(dir.path(), brokers(), &topic))
        .await
        .unwrap();
    let addr = node.local_addr();
    let mut ids = Vec::new();
    // Four visitors sending concurrently, each one page after the other.
    let senders = (0..4u32).map(|user| {
        async_std::task::spawn(async move {
            let mut ids = Vec::new();
            for seq in 0..25 {
                ids.push(accepted_id(&collect(addr, user, seq).await));
            }
            ids
        })
    });
    for sent in futures::future::join_all(senders).await {
        ids.extend(sent);
    }
    let read = wait_for_ids(brokers(), &topic, &ids, Duration::from_secs(30)).await;
    assert_eq!(
        read.values().map(Vec::len).sum::<usize>(),
        100,
        "no duplicates"
    );
    for (visitor, pages) in pages_per_visitor(&read) {
        assert_eq!(
            pages,
            (0..25).collect::<Vec<_>>(),
            "order of visitor {visitor:x}"
        );
    }

    // The broker holds the events a moment before the forwarder has its answer.
    eventually("the spool is empty", Duration::from_secs(10), async || {
        metric(
            &metrics(node.metrics_addr()).await,
            "ta_edge_spool_events{region=\"it\"}",
        ) == Some(0.0)
    })
    .await;
    let exposition = metrics(node.metrics_addr()).await;
    assert_eq!(
        metric(
            &exposition,
            "ta_edge_events_accepted_total{site_id=\"site-1\",region=\"it\"}"
        ),
        Some(100.0),
        "accepted events are counted per site"
    );
    for (series, value) in [
        ("ta_edge_events_produced_total", 100.0),
        ("ta_edge_kafka_up", 1.0),
        ("ta_edge_spool_oldest_event_age_seconds", 0.0),
    ] {
        assert_eq!(
            metric(&exposition, &format!("{series}{{region=\"it\"}}")),
            Some(value),
            "{series}"
        );
    }
    let ready = http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let report = node.shutdown().await.unwrap();
    assert_eq!(report.spooled_events_left, 0);
}
