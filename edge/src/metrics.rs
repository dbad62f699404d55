//! The edge node's Prometheus metrics. Every series carries the node's `region` as a constant
//! label; other labels are bounded (routes, status codes, reason codes).

use std::collections::HashMap;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use ta_shared::telemetry::{BATCH_RECORDS_BUCKETS, LATENCY_SECONDS_BUCKETS};

#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub rejected: IntCounterVec,
    pub bots: IntCounterVec,
    pub accepted: IntCounter,
    pub produced: IntCounter,
    pub produce_errors: IntCounterVec,
    pub produce_seconds: Histogram,
    pub batch_records: Histogram,
    pub kafka_connected: IntGauge,
}

impl EdgeMetrics {
    pub fn new(region: &str) -> Self {
        let labels = HashMap::from([("region".to_owned(), region.to_owned())]);
        let registry = Registry::new_custom(None, Some(labels)).expect("valid registry labels");
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "ta_edge_requests_total",
                    "HTTP requests by route and status.",
                ),
                &["route", "status"],
            )
            .unwrap(),
            request_seconds: HistogramVec::new(
                HistogramOpts::new("ta_edge_request_duration_seconds", "HTTP request latency.")
                    .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
                &["route"],
            )
            .unwrap(),
            rejected: IntCounterVec::new(
                Opts::new(
                    "ta_edge_events_rejected_total",
                    "Events refused, by reason code.",
                ),
                &["reason"],
            )
            .unwrap(),
            bots: IntCounterVec::new(
                Opts::new(
                    "ta_edge_bot_events_total",
                    "Events dropped as bot traffic, by reason.",
                ),
                &["reason"],
            )
            .unwrap(),
            accepted: IntCounter::new(
                "ta_edge_events_accepted_total",
                "Events answered 202 and acknowledged by Kafka.",
            )
            .unwrap(),
            produced: IntCounter::new(
                "ta_edge_events_produced_total",
                "Events written to Kafka (acknowledged by the broker).",
            )
            .unwrap(),
            produce_errors: IntCounterVec::new(
                Opts::new(
                    "ta_edge_produce_errors_total",
                    "Failed produce attempts by kind.",
                ),
                &["kind"],
            )
            .unwrap(),
            produce_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_edge_produce_duration_seconds",
                    "Time from handing an event to the producer until the broker acknowledged it.",
                )
                .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            batch_records: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_edge_produce_batch_records",
                    "Records per produce request.",
                )
                .buckets(BATCH_RECORDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            kafka_connected: IntGauge::new(
                "ta_edge_kafka_connected",
                "1 when the producer is connected to Kafka, 0 otherwise.",
            )
            .unwrap(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.request_seconds.clone()),
            Box::new(m.rejected.clone()),
            Box::new(m.bots.clone()),
            Box::new(m.accepted.clone()),
            Box::new(m.produced.clone()),
            Box::new(m.produce_errors.clone()),
            Box::new(m.produce_seconds.clone()),
            Box::new(m.batch_records.clone()),
            Box::new(m.kafka_connected.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    pub fn render(&self) -> String {
        ta_shared::telemetry::encode_text(&self.registry)
    }
}
