//! The Kafka sink: one rskafka `BatchProducer` per partition, so concurrent requests share
//! produce calls (linger + max batch bytes) instead of paying one round trip each.
//!
//! ```text
//!  handler ─┐                          ┌─▶ BatchProducer(p0) ─▶ produce(batch) ─▶ broker
//!  handler ─┼─ partition_for(visitor) ─┼─▶ BatchProducer(p1) ─▶ …
//!  handler ─┘  (await ack, then 202)   └─▶ BatchProducer(p2) ─▶ …
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rskafka::BackoffConfig;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::producer::aggregator::{
    Aggregator, Error as AggregatorError, RecordAggregator, TryPush,
};
use rskafka::client::producer::{BatchProducer, BatchProducerBuilder};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use ta_shared::EnrichedEvent;

use crate::metrics::EdgeMetrics;
use crate::sink::{EventSink, SinkError};

/// Connection settings for [`KafkaSink::connect`].
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: Vec<String>,
    pub topic: String,
    pub partitions_if_created: i32,
    pub linger: Duration,
    pub max_batch_bytes: usize,
    pub produce_timeout: Duration,
}

/// A [`RecordAggregator`] that reports each flushed batch's size.
#[derive(Debug)]
struct ObservedAggregator {
    inner: RecordAggregator,
    metrics: EdgeMetrics,
}

impl Aggregator for ObservedAggregator {
    type Input = Record;
    type Tag = <RecordAggregator as Aggregator>::Tag;
    type StatusDeaggregator = <RecordAggregator as Aggregator>::StatusDeaggregator;

    fn try_push(&mut self, record: Record) -> Result<TryPush<Record, Self::Tag>, AggregatorError> {
        self.inner.try_push(record)
    }

    fn flush(&mut self) -> Result<(Vec<Record>, Self::StatusDeaggregator), AggregatorError> {
        let (records, status) = self.inner.flush()?;
        if !records.is_empty() {
            self.metrics.batch_records.observe(records.len() as f64);
        }
        Ok((records, status))
    }
}

pub struct KafkaSink {
    producers: Vec<BatchProducer<ObservedAggregator>>,
    produce_timeout: Duration,
    metrics: EdgeMetrics,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("partitions", &self.producers.len())
            .finish()
    }
}

/// Create `topic` with `partitions` unless it exists; returns its partition count.
pub async fn ensure_topic(
    client: &Client,
    topic: &str,
    partitions: i32,
) -> Result<i32, KafkaError> {
    if let Some(t) = client
        .list_topics()
        .await?
        .into_iter()
        .find(|t| t.name == topic)
    {
        return Ok(t.partitions.len() as i32);
    }
    match client
        .controller_client()?
        .create_topic(topic, partitions, 1, 5_000)
        .await
    {
        Ok(()) => {}
        Err(KafkaError::ServerError {
            protocol_error: ProtocolError::TopicAlreadyExists,
            ..
        }) => {}
        Err(e) => return Err(e),
    }
    let found = client
        .list_topics()
        .await?
        .into_iter()
        .find(|t| t.name == topic);
    Ok(found.map_or(partitions, |t| t.partitions.len() as i32))
}

impl KafkaSink {
    /// Connect, create the topic if needed and open one producer per partition.
    pub async fn connect(
        settings: &KafkaSettings,
        metrics: EdgeMetrics,
    ) -> Result<Self, SinkError> {
        let setup = |e: KafkaError| SinkError::Setup(e.to_string());
        let client = ClientBuilder::new(settings.brokers.clone())
            .client_id("ta-edge")
            .backoff_config(BackoffConfig {
                deadline: Some(settings.produce_timeout),
                ..BackoffConfig::default()
            })
            .build()
            .await
            .map_err(setup)?;
        let partitions = ensure_topic(&client, &settings.topic, settings.partitions_if_created)
            .await
            .map_err(setup)?;
        let mut producers = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            let pc = client
                .partition_client(&settings.topic, partition, UnknownTopicHandling::Retry)
                .await
                .map_err(setup)?;
            producers.push(
                BatchProducerBuilder::new(Arc::new(pc))
                    .with_linger(settings.linger)
                    .with_compression(Compression::Lz4)
                    .build(ObservedAggregator {
                        inner: RecordAggregator::new(settings.max_batch_bytes),
                        metrics: metrics.clone(),
                    }),
            );
        }
        Ok(Self {
            producers,
            produce_timeout: settings.produce_timeout,
            metrics,
        })
    }

    pub fn partitions(&self) -> usize {
        self.producers.len()
    }
}

impl EventSink for KafkaSink {
    fn send(&self, event: &EnrichedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        let partition = event.partition_for(self.producers.len() as i32) as usize;
        let record = Record {
            key: Some(event.kafka_key()),
            value: Some(event.to_json()),
            headers: Default::default(),
            timestamp: chrono::DateTime::from_timestamp_millis(event.received_ms)
                .unwrap_or_else(chrono::Utc::now),
        };
        Box::pin(async move {
            let started = Instant::now();
            let produce = self.producers[partition].produce(record);
            let result = match async_std::future::timeout(self.produce_timeout, produce).await {
                Ok(Ok(_offset)) => Ok(()),
                Ok(Err(e)) => Err(SinkError::Produce(e.to_string())),
                Err(_) => Err(SinkError::Timeout(self.produce_timeout)),
            };
            match &result {
                Ok(()) => {
                    self.metrics.produced.inc();
                    self.metrics
                        .produce_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                Err(e) => self
                    .metrics
                    .produce_errors
                    .with_label_values(&[e.kind()])
                    .inc(),
            }
            result
        })
    }
}
