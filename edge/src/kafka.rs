//! Kafka as the forwarder's [`Destination`]: an rskafka client, the topic created if it is
//! missing, and one `PartitionClient` per partition. Each produce request carries one
//! partition's batch, lz4-compressed; rskafka sends it with `acks = -1` (all in-sync
//! replicas) and a 30 s broker-side timeout.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rskafka::BackoffConfig;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

use crate::forwarder::{DeliveryError, Destination, PartitionProducer};

/// Connection settings for [`KafkaDestination`].
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: Vec<String>,
    pub topic: String,
    pub partitions_if_created: i32,
    /// How long rskafka may retry one request internally before giving up.
    pub request_deadline: Duration,
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

/// The real destination: the configured brokers and topic.
#[derive(Debug, Clone)]
pub struct KafkaDestination {
    settings: KafkaSettings,
}

impl KafkaDestination {
    pub fn new(settings: KafkaSettings) -> Self {
        Self { settings }
    }

    async fn open(&self) -> Result<KafkaProducer, KafkaError> {
        let s = &self.settings;
        let client = ClientBuilder::new(s.brokers.clone())
            .client_id("ta-edge")
            .backoff_config(BackoffConfig {
                deadline: Some(s.request_deadline),
                ..BackoffConfig::default()
            })
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
}

impl Destination for KafkaDestination {
    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn PartitionProducer>, DeliveryError>> {
        Box::pin(async move {
            let producer = self
                .open()
                .await
                .map_err(|e| DeliveryError::Connect(e.to_string()))?;
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
