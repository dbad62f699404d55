//! Where accepted events go. The real sink is Kafka ([`crate::kafka::KafkaSink`]); tests of
//! the HTTP layer may use an in-memory one.

use futures::future::BoxFuture;
use ta_shared::EnrichedEvent;

/// Why an event could not be handed to the broker.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("not connected to Kafka yet")]
    NotConnected,
    #[error("Kafka did not acknowledge the event within {0:?}")]
    Timeout(std::time::Duration),
    #[error("Kafka produce failed: {0}")]
    Produce(String),
    #[error("Kafka setup failed: {0}")]
    Setup(String),
}

impl SinkError {
    /// Bounded label value for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotConnected => "not_connected",
            Self::Timeout(_) => "timeout",
            Self::Produce(_) => "produce",
            Self::Setup(_) => "setup",
        }
    }
}

/// Accepts enriched events; the future resolves once the event is durable downstream.
pub trait EventSink: Send + Sync + 'static {
    fn send(&self, event: &EnrichedEvent) -> BoxFuture<'_, Result<(), SinkError>>;
}
