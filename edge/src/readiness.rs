//! When the node says it is not ready (`/readyz` 503): the spool is filling up, Kafka has
//! been unreachable for too long, or the node follows central's registry and has no sites yet.
//! Either way a load balancer should prefer other nodes before this one has to refuse events.

use std::time::Duration;

use crate::spool::SpoolStats;

/// Limits past which the node is not ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadinessPolicy {
    /// Share of the spool budget (0..=1) at which the node stops being ready.
    pub max_spool_fill: f64,
    /// How long Kafka may be unreachable before the node stops being ready.
    pub max_kafka_unreachable: Duration,
}

impl Default for ReadinessPolicy {
    fn default() -> Self {
        Self {
            max_spool_fill: 0.8,
            max_kafka_unreachable: Duration::from_secs(60),
        }
    }
}

/// Why the node is not ready. `Display` is the operator-facing message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotReady {
    #[error("the spool holds {bytes} of {max_bytes} bytes, above {limit_percent}% of its budget")]
    SpoolFilling {
        bytes: u64,
        max_bytes: u64,
        limit_percent: u32,
    },
    #[error("Kafka has been unreachable for {for_secs} s (limit {limit_secs} s)")]
    KafkaUnreachable { for_secs: u64, limit_secs: u64 },
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error(
        "no sites yet: waiting for the first snapshot of central's registry (TA_REGISTRY_URL); there is neither a cached snapshot (TA_REGISTRY_CACHE_FILE) nor a sites file (TA_SITES_FILE) to start from, and the log says why no snapshot has arrived"
    )]
    AwaitingSites,
}

impl NotReady {
    /// Stable machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SpoolFilling { .. } => "spool_filling",
            Self::KafkaUnreachable { .. } => "kafka_unreachable",
            Self::ShuttingDown => "shutting_down",
            Self::AwaitingSites => "awaiting_sites",
        }
    }
}

impl ReadinessPolicy {
    pub fn check(
        &self,
        spool: &SpoolStats,
        kafka_unreachable_for: Option<Duration>,
    ) -> Result<(), NotReady> {
        if spool.bytes as f64 >= self.max_spool_fill * spool.max_bytes as f64 {
            return Err(NotReady::SpoolFilling {
                bytes: spool.bytes,
                max_bytes: spool.max_bytes,
                limit_percent: (self.max_spool_fill * 100.0).round() as u32,
            });
        }
        if let Some(down) = kafka_unreachable_for
            && down >= self.max_kafka_unreachable
        {
            return Err(NotReady::KafkaUnreachable {
                for_secs: down.as_secs(),
                limit_secs: self.max_kafka_unreachable.as_secs(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(bytes: u64) -> SpoolStats {
        SpoolStats {
            bytes,
            max_bytes: 1000,
            events: 1,
            oldest_event_ms: None,
        }
    }

    #[test]
    fn ready_below_both_limits() {
        let policy = ReadinessPolicy::default();
        assert_eq!(
            policy.check(&spool(799), Some(Duration::from_secs(59))),
            Ok(())
        );
        assert_eq!(policy.check(&spool(0), None), Ok(()));
    }

    #[test]
    fn a_filling_spool_makes_the_node_not_ready() {
        let err = ReadinessPolicy::default()
            .check(&spool(800), None)
            .unwrap_err();
        assert_eq!(err.reason(), "spool_filling");
        assert_eq!(
            err.to_string(),
            "the spool holds 800 of 1000 bytes, above 80% of its budget"
        );
    }

    #[test]
    fn a_long_kafka_outage_makes_the_node_not_ready() {
        let err = ReadinessPolicy::default()
            .check(&spool(0), Some(Duration::from_secs(61)))
            .unwrap_err();
        assert_eq!(
            err,
            NotReady::KafkaUnreachable {
                for_secs: 61,
                limit_secs: 60
            }
        );
    }
}
