//! The Kafka sink against the real broker: events produced by the edge are read back with a
//! plain rskafka consumer, in the partition chosen by visitor, without raw IP or user agent.

use std::time::Duration;

use chrono::Utc;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use ta_edge::ingest::{Ingest, IngestRequest, Outcome};
use ta_edge::kafka::{KafkaSettings, KafkaSink};
use ta_edge::metrics::EdgeMetrics;
use ta_edge::sink::EventSink;
use ta_shared::{EnrichedEvent, SaltSchedule, SiteRegistry};

const SITES: &str = "[[site]]\nid = 'site-1'\napi_keys = ['k1']\n";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

fn brokers() -> Vec<String> {
    std::env::var("TA_KAFKA_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:9092".into())
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn enrich(ingest: &Ingest, ip: &str, path: &str) -> EnrichedEvent {
    let body = format!(
        r#"{{"site_id":"site-1","event_name":"pageview","url":"https://example.com{path}"}}"#
    );
    let outcome = ingest
        .process(IngestRequest {
            body: body.as_bytes(),
            api_key: Some("k1"),
            signature: None,
            origin: None,
            client_ip: ip,
            user_agent: UA,
            now: Utc::now(),
        })
        .unwrap();
    match outcome {
        Outcome::Accepted(e) => *e,
        other => panic!("expected accepted, got {other:?}"),
    }
}

#[async_std::test]
async fn produced_events_are_readable_in_the_visitors_partition() {
    let topic = format!("ta_it_edge_sink_{:08x}", rand::random::<u32>());
    let settings = KafkaSettings {
        brokers: brokers(),
        topic: topic.clone(),
        partitions_if_created: 3,
        linger: Duration::from_millis(5),
        max_batch_bytes: 1 << 20,
        produce_timeout: Duration::from_secs(10),
    };
    let metrics = EdgeMetrics::new("it");
    let sink = KafkaSink::connect(&settings, metrics.clone())
        .await
        .expect("broker reachable");
    assert_eq!(sink.partitions(), 3);
    let ingest = Ingest::new(
        SiteRegistry::from_toml(SITES).unwrap(),
        SaltSchedule::new("s"),
        "it",
    );

    // 60 events from 6 visitors, sent concurrently so the producer batches them.
    let events: Vec<EnrichedEvent> = (0..60)
        .map(|i| enrich(&ingest, &format!("203.0.113.{}", i % 6), &format!("/p{i}")))
        .collect();
    let results = futures::future::join_all(events.iter().map(|e| sink.send(e))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(metrics.produced.get(), 60);
    assert!(
        metrics.batch_records.get_sample_count() < 60,
        "concurrent events share produce calls ({} calls)",
        metrics.batch_records.get_sample_count()
    );

    let client = ClientBuilder::new(brokers()).build().await.unwrap();
    let mut read = Vec::new();
    for partition in 0..3 {
        let pc = client
            .partition_client(&topic, partition, UnknownTopicHandling::Error)
            .await
            .unwrap();
        let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
        let mut offset = 0;
        while offset < end {
            let (records, _) = pc.fetch_records(offset, 1..1_000_000, 1_000).await.unwrap();
            for r in records {
                offset = r.offset + 1;
                let value = r.record.value.unwrap();
                let text = String::from_utf8(value.clone()).unwrap();
                assert!(
                    !text.contains("203.0.113.") && !text.contains("Gecko/"),
                    "raw IP/UA in {text}"
                );
                let event = EnrichedEvent::from_json(&value).unwrap();
                assert_eq!(
                    event.partition_for(3),
                    partition,
                    "event in its visitor's partition"
                );
                assert_eq!(r.record.key.unwrap(), event.kafka_key());
                read.push(event);
            }
        }
    }
    read.sort_by_key(|e| e.event_id);
    let mut sent = events.clone();
    sent.sort_by_key(|e| e.event_id);
    assert_eq!(
        read, sent,
        "every produced event is read back exactly, once"
    );
}
