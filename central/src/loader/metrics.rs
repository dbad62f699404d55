//! The loader's Prometheus metrics; the labels are the partition number (bounded by the
//! topic's partition count) and fixed sets of reasons, kinds and outcomes.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use ta_shared::registry_follow::FollowMetrics;
use ta_shared::telemetry::{BATCH_RECORDS_BUCKETS, LATENCY_SECONDS_BUCKETS};

#[derive(Debug, Clone)]
pub struct LoaderMetrics {
    pub registry: Registry,
    pub fetched: IntCounter,
    pub inserted: IntCounter,
    pub dead_lettered: IntCounterVec,
    pub batch_rows: Histogram,
    pub batch_bytes: Histogram,
    pub insert_seconds: Histogram,
    pub errors: IntCounterVec,
    pub lag_records: IntGaugeVec,
    pub next_offset: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub duplicates: IntCounter,
    pub freshness_seconds: Histogram,
    pub retention_dropped: IntCounter,
    pub rollup_days_built: IntCounter,
    pub rollup_failures: IntCounter,
    /// `ta_loader_registry_*`: following central's registry (at 0 while the loader follows none).
    pub registry_follow: FollowMetrics,
}

impl LoaderMetrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::new(),
            fetched: IntCounter::new(
                "ta_loader_records_fetched_total",
                "Records fetched from Kafka.",
            )
            .unwrap(),
            inserted: IntCounter::new(
                "ta_loader_events_inserted_total",
                "Events inserted into ClickHouse (committed).",
            )
            .unwrap(),
            dead_lettered: IntCounterVec::new(
                Opts::new(
                    "ta_loader_dead_letters_total",
                    "Records written to the dead-letter table, by reason.",
                ),
                &["reason"],
            )
            .unwrap(),
            batch_rows: Histogram::with_opts(
                HistogramOpts::new("ta_loader_insert_batch_rows", "Rows per ClickHouse insert.")
                    .buckets(BATCH_RECORDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            batch_bytes: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_loader_batch_bytes",
                    "Kafka record bytes per committed batch (all its inserts together).",
                )
                .buckets(prometheus::exponential_buckets(1024.0, 4.0, 10).expect("valid buckets")),
            )
            .unwrap(),
            insert_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_loader_insert_duration_seconds",
                    "ClickHouse insert latency.",
                )
                .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            errors: IntCounterVec::new(
                Opts::new(
                    "ta_loader_errors_total",
                    "Failures that caused a retry, by kind.",
                ),
                &["kind"],
            )
            .unwrap(),
            lag_records: IntGaugeVec::new(
                Opts::new(
                    "ta_loader_lag_records",
                    "Records in the partition not yet loaded (high watermark minus next offset).",
                ),
                &["partition"],
            )
            .unwrap(),
            next_offset: IntGaugeVec::new(
                Opts::new(
                    "ta_loader_next_offset",
                    "Next offset to load; all before it are committed.",
                ),
                &["partition"],
            )
            .unwrap(),
            lag_seconds: GaugeVec::new(
                Opts::new(
                    "ta_loader_lag_seconds",
                    "Age of the newest fetched record while the partition is behind, 0 when caught up.",
                ),
                &["partition"],
            )
            .unwrap(),
            duplicates: IntCounter::new(
                "ta_loader_duplicates_dropped_total",
                "Records dropped because their event id was already loaded (edge retries).",
            )
            .unwrap(),
            freshness_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_loader_event_freshness_seconds",
                    "Time from the edge accepting an event to its insert committing.",
                )
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0]),
            )
            .unwrap(),
            retention_dropped: IntCounter::new(
                "ta_loader_retention_partitions_dropped_total",
                "Event partitions dropped by retention.",
            )
            .unwrap(),
            rollup_days_built: IntCounter::new(
                "ta_loader_rollup_days_built_total",
                "Site-days whose visits were (re)built into the rollup.",
            )
            .unwrap(),
            rollup_failures: IntCounter::new(
                "ta_loader_rollup_failures_total",
                "Rollup runs that failed (retried at the next interval).",
            )
            .unwrap(),
            registry_follow: FollowMetrics::new("ta_loader"),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.fetched.clone()),
            Box::new(m.inserted.clone()),
            Box::new(m.dead_lettered.clone()),
            Box::new(m.batch_rows.clone()),
            Box::new(m.batch_bytes.clone()),
            Box::new(m.insert_seconds.clone()),
            Box::new(m.errors.clone()),
            Box::new(m.lag_records.clone()),
            Box::new(m.next_offset.clone()),
            Box::new(m.lag_seconds.clone()),
            Box::new(m.duplicates.clone()),
            Box::new(m.freshness_seconds.clone()),
            Box::new(m.retention_dropped.clone()),
            Box::new(m.rollup_days_built.clone()),
            Box::new(m.rollup_failures.clone()),
        ];
        ta_shared::telemetry::register_all(&m.registry, collectors);
        m.registry_follow.register(&m.registry);
        // Exported at 0 from the start, so rate() and the alert rules see 0, not "no data".
        for kind in super::ERROR_KINDS {
            m.errors.with_label_values(&[kind]);
        }
        for reason in super::DEAD_LETTER_REASONS {
            m.dead_lettered.with_label_values(&[reason]);
        }
        m
    }
}

impl Default for LoaderMetrics {
    fn default() -> Self {
        Self::new()
    }
}
