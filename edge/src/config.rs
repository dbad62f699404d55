//! The edge node's configuration: one typed struct, from flags or `TA_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Tiny Analytics edge node: accepts events over HTTP and produces enriched events to Kafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "ta-edge", version, about)]
pub struct EdgeConfig {
    /// Address the HTTP server listens on.
    #[arg(long, env = "TA_EDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Region label of this node, written into every event and metric.
    #[arg(long, env = "TA_EDGE_REGION", default_value = "local")]
    pub region: String,

    /// Path of the sites file (TOML) with ingest keys, secrets and allowed origins.
    #[arg(
        long,
        env = "TA_SITES_FILE",
        default_value = "deploy/config/sites.dev.toml"
    )]
    pub sites_file: PathBuf,

    /// Comma-separated Kafka bootstrap brokers.
    #[arg(
        long,
        env = "TA_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        value_delimiter = ','
    )]
    pub kafka_brokers: Vec<String>,

    /// Topic the enriched events are produced to.
    #[arg(long, env = "TA_KAFKA_TOPIC", default_value = "events.enriched")]
    pub kafka_topic: String,

    /// Partitions to create the topic with when it does not exist yet.
    #[arg(long, env = "TA_KAFKA_TOPIC_PARTITIONS", default_value_t = 3)]
    pub kafka_topic_partitions: i32,

    /// How long a produce call waits for more events before sending a batch, in milliseconds.
    #[arg(long, env = "TA_KAFKA_LINGER_MS", default_value_t = 5)]
    pub kafka_linger_ms: u64,

    /// Largest produce batch per partition, in bytes.
    #[arg(long, env = "TA_KAFKA_MAX_BATCH_BYTES", default_value_t = 1 << 20)]
    pub kafka_max_batch_bytes: usize,

    /// How long a produce may keep retrying before the request is answered 503, in seconds.
    #[arg(long, env = "TA_KAFKA_PRODUCE_TIMEOUT_SECS", default_value_t = 10)]
    pub kafka_produce_timeout_secs: u64,

    /// Secret the daily visitor salts are derived from. Must be the same on every edge node.
    #[arg(
        long,
        env = "TA_SALT_SECRET",
        default_value = "dev-only-salt-secret",
        hide_env_values = true
    )]
    pub salt_secret: String,

    /// Global HMAC secret for `X-TA-Signature`, used for sites without their own secret.
    #[arg(long, env = "TA_HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,

    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    #[arg(long, env = "TA_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "TA_MAX_BODY_BYTES", default_value_t = 32 * 1024)]
    pub max_body_bytes: usize,

    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "TA_LOG", default_value = "info,rskafka=warn")]
    pub log: String,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self::parse_from(["ta-edge"])
    }
}

impl EdgeConfig {
    pub fn kafka_linger(&self) -> Duration {
        Duration::from_millis(self.kafka_linger_ms)
    }

    pub fn kafka_produce_timeout(&self) -> Duration {
        Duration::from_secs(self.kafka_produce_timeout_secs)
    }
}
