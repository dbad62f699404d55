//! Metric helpers shared by every service: text exposition and bucket presets per unit.

use prometheus::core::Collector;
use prometheus::{Encoder, Registry, TextEncoder};

/// Request and call latencies, in seconds (100 µs .. 10 s).
pub const LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Batch sizes, in records (1 .. 100k).
pub const BATCH_RECORDS_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0,
];

/// Prometheus text exposition of everything in `registry`.
pub fn encode_text(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding of gathered metrics cannot fail");
    String::from_utf8(buf).expect("prometheus text format is UTF-8")
}

/// Content type of [`encode_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Export `collectors` through `registry`. Every binary names its series once, so a clash is a
/// programming error.
pub fn register_all(registry: &Registry, collectors: impl IntoIterator<Item = Box<dyn Collector>>) {
    for c in collectors {
        registry.register(c).expect("metric names are unique");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounter, Opts};

    #[test]
    fn encodes_registered_counters() {
        let registry = Registry::new();
        let c = IntCounter::with_opts(Opts::new("ta_test_things_total", "Things.")).unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.inc_by(3);
        assert!(encode_text(&registry).contains("ta_test_things_total 3"));
    }

    #[test]
    fn bucket_presets_are_strictly_increasing() {
        for b in [LATENCY_SECONDS_BUCKETS, BATCH_RECORDS_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
