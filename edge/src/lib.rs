//! `ta-edge`: the edge node.
//!
//! ```text
//!  POST /v1/collect ─▶ server (tide) ─▶ Ingest::process ─────────────────▶ KafkaSink ─▶ events.enriched
//!                       size/type      auth (key, origin, HMAC) → validate   per-partition
//!                       checks         → bot filter → enrich (UA, visitor    BatchProducer,
//!                                      hash, URL, UTM, referrer)             linger + max bytes
//!  202 only after the broker acknowledged the batch holding the event; 503 + Retry-After when
//!  Kafka is unreachable, so an accepted event is never lost.
//! ```
//!
//! Runtime: async-std (with its `tokio1` feature, which provides the tokio reactor rskafka
//! needs) drives everything in this binary: tide handlers, the accept loop and rskafka calls.
//! async-std is discontinued (RUSTSEC-2025-0052) and tide unmaintained (RUSTSEC-2026-0170);
//! the design card asks for them, so tide lives only in `server.rs`.

pub mod config;
pub mod error;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod payload;
pub mod server;
pub mod sink;
pub mod user_agent;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ta_shared::{SaltSchedule, SiteRegistry};
use tracing::{info, warn};

pub use config::EdgeConfig;

/// Start the edge node and serve until the process is stopped.
pub async fn run(config: EdgeConfig) -> anyhow::Result<()> {
    let sites = SiteRegistry::load(&config.sites_file).with_context(|| {
        format!(
            "loading sites file {} (TA_SITES_FILE)",
            config.sites_file.display()
        )
    })?;
    let metrics = metrics::EdgeMetrics::new(&config.region);
    let mut ingest = ingest::Ingest::new(
        sites,
        SaltSchedule::new(config.salt_secret.clone()),
        &config.region,
    );
    ingest.global_hmac_secret = config.hmac_secret.clone();
    let state = server::AppState::new(ingest, metrics.clone(), &config);

    let settings = kafka::KafkaSettings {
        brokers: config.kafka_brokers.clone(),
        topic: config.kafka_topic.clone(),
        partitions_if_created: config.kafka_topic_partitions,
        linger: config.kafka_linger(),
        max_batch_bytes: config.kafka_max_batch_bytes,
        produce_timeout: config.kafka_produce_timeout(),
    };
    let slot = state.sink.clone();
    async_std::task::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            match kafka::KafkaSink::connect(&settings, metrics.clone()).await {
                Ok(sink) => {
                    info!(message = "Connected to Kafka.", topic = %settings.topic, partitions = sink.partitions());
                    metrics.kafka_connected.set(1);
                    let _ = slot.set(Arc::new(sink));
                    return;
                }
                Err(error) => {
                    warn!(message = "Kafka not reachable yet; collect answers 503 until it is.", %error, retry_in = ?delay);
                    async_std::task::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    });

    let listener = async_std::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {} (TA_EDGE_LISTEN)", config.listen))?;
    info!(message = "ta-edge listening.", addr = %listener.local_addr()?, region = %config.region);
    server::serve(listener, server::app(state)).await?;
    Ok(())
}
