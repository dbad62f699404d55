//! The series the spool keeps: its writer's commits and fsyncs, the tail cut at open, and its
//! fill level (set at scrape from [`SpoolStats`]).

use prometheus::core::Collector;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use ta_shared::telemetry::{BATCH_RECORDS_BUCKETS, LATENCY_SECONDS_BUCKETS};

use super::SpoolStats;

#[derive(Debug, Clone)]
pub struct SpoolMetrics {
    pub bytes: IntGauge,
    pub max_bytes: IntGauge,
    pub events: IntGauge,
    pub oldest_age: Gauge,
    pub fsync_seconds: Histogram,
    pub commit_records: Histogram,
    pub truncated_bytes: IntCounter,
}

impl SpoolMetrics {
    /// Series at 0, registered nowhere yet.
    pub fn new() -> Self {
        Self {
            bytes: IntGauge::new(
                "ta_edge_spool_bytes",
                "Bytes of spool segment files on disk.",
            )
            .unwrap(),
            max_bytes: IntGauge::new(
                "ta_edge_spool_max_bytes",
                "The spool's disk budget (TA_SPOOL_MAX_BYTES).",
            )
            .unwrap(),
            events: IntGauge::new(
                "ta_edge_spool_events",
                "Events in the spool not yet acknowledged by Kafka.",
            )
            .unwrap(),
            oldest_age: Gauge::new(
                "ta_edge_spool_oldest_event_age_seconds",
                "Age of the oldest event not yet acknowledged by Kafka (0 when none).",
            )
            .unwrap(),
            fsync_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_edge_spool_fsync_duration_seconds",
                    "Duration of one spool fsync; its count is the number of fsyncs.",
                )
                .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            commit_records: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_edge_spool_commit_batch_records",
                    "Events written by one spool commit (one write, at most one fsync).",
                )
                .buckets(BATCH_RECORDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            truncated_bytes: IntCounter::new(
                "ta_edge_spool_truncated_bytes_total",
                "Bytes of torn or damaged spool tail cut when the spool was opened.",
            )
            .unwrap(),
        }
    }

    /// Export the series through `registry`.
    pub fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn Collector>; 7] = [
            Box::new(self.bytes.clone()),
            Box::new(self.max_bytes.clone()),
            Box::new(self.events.clone()),
            Box::new(self.oldest_age.clone()),
            Box::new(self.fsync_seconds.clone()),
            Box::new(self.commit_records.clone()),
            Box::new(self.truncated_bytes.clone()),
        ];
        ta_shared::telemetry::register_all(registry, collectors);
    }

    /// Set the fill-level gauges from a snapshot taken at `now_ms` (Unix ms).
    pub fn observe(&self, stats: &SpoolStats, now_ms: i64) {
        self.bytes
            .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
        self.max_bytes
            .set(i64::try_from(stats.max_bytes).unwrap_or(i64::MAX));
        self.events
            .set(i64::try_from(stats.events).unwrap_or(i64::MAX));
        let age_ms = stats
            .oldest_event_ms
            .map_or(0, |oldest| now_ms.saturating_sub(oldest).max(0));
        self.oldest_age.set(age_ms as f64 / 1000.0);
    }
}

impl Default for SpoolMetrics {
    fn default() -> Self {
        Self::new()
    }
}
