//! Kafka as the forwarder's [`Destination`]: an rskafka client, the topic created if it is
//! missing, and one `PartitionClient` per partition. Each produce request carries one
//! partition's batch, lz4-compressed; rskafka sends it with `acks = -1` (all in-sync
//! replicas) and a 30 s broker-side timeout.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rskafka::client::error::Error as KafkaError;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use ta_shared::kafka::{classify, client_builder, ensure_topic};
use ta_shared::kafka_security::KafkaSecurity;

use crate::forwarder::{DeliveryError, Destination, PartitionProducer};

/// Connection settings for [`KafkaDestination`].
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: Vec<String>,
    pub topic: String,
    pub partitions_if_created: i32,
    /// How long rskafka may retry one request internally before giving up.
    pub request_deadline: Duration,
    /// TLS and SASL.
    pub security: KafkaSecurity,
}

/// The real destination: the configured brokers and topic.
#[derive(Debug, Clone)]
pub struct KafkaDestination {
    settings: KafkaSettings,
}

/// Why [`KafkaDestination::open`] failed.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Settings(#[from] ta_shared::kafka_security::KafkaSecurityError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

impl KafkaDestination {
    pub fn new(settings: KafkaSettings) -> Self {
        Self { settings }
    }

    async fn open(&self) -> Result<KafkaProducer, OpenError> {
        let s = &self.settings;
        let client = client_builder(
            s.brokers.clone(),
            "ta-edge",
            &s.security,
            Some(s.request_deadline),
        )?
        .build()
        .await?;
        let partitions = ensure_topic(&client, &s.topic, s.partitions_if_created).await?;
        let mut clients = Vec::with_capacity(usize::try_from(partitions).unwrap_or(0));
        for partition in 0..partitions {
            clients.push(
                client
                    .partition_client(&s.topic, partition, UnknownTopicHandling::Retry)
                    .await?,
            );
        }
        Ok(KafkaProducer { clients })
    }

    /// [`ta_shared::kafka::check_at_start`] for this destination.
    pub async fn check_at_start(
        &self,
        within: Duration,
    ) -> Result<Option<String>, ta_shared::kafka::StartupCheckError> {
        let s = &self.settings;
        ta_shared::kafka::check_at_start(&s.brokers, "ta-edge", &s.security, within).await
    }
}

impl Destination for KafkaDestination {
    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn PartitionProducer>, DeliveryError>> {
        Box::pin(async move {
            let producer = self.open().await.map_err(|e| match &e {
                OpenError::Kafka(k) => {
                    DeliveryError::Connect(classify(k, &self.settings.security).to_string())
                }
                OpenError::Settings(_) => DeliveryError::Connect(e.to_string()),
            })?;
            Ok(Arc::new(producer) as Arc<dyn PartitionProducer>)
        })
    }
}

struct KafkaProducer {
    clients: Vec<PartitionClient>,
}

impl PartitionProducer for KafkaProducer {
    fn partitions(&self) -> i32 {
        i32::try_from(self.clients.len()).unwrap_or(i32::MAX)
    }

    fn produce(
        &self,
        partition: i32,
        records: Vec<Record>,
    ) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async move {
            let client = usize::try_from(partition)
                .ok()
                .and_then(|p| self.clients.get(p))
                .ok_or_else(|| DeliveryError::Produce(format!("no partition {partition}")))?;
            client
                .produce(records, Compression::Lz4)
                .await
                .map(|_offsets| ())
                .map_err(|e| DeliveryError::Produce(e.to_string()))
        })
    }
}
