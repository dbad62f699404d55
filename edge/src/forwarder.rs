//! The forwarder: reads the spool in order and produces it to Kafka, freeing spool space only
//! after the broker acknowledged.
//!
//! ```text
//!            ┌──────────────────────────── one round ────────────────────────────┐
//!  spool ──▶ │ read in spool order until a partition's batch would pass           │
//!  reader    │ TA_KAFKA_MAX_BATCH_BYTES → one produce per partition, concurrently │ ──▶ broker
//!            │ (lz4, acks = all in-sync replicas) → all acknowledged? → checkpoint │
//!            └─────────────────────────────────────────────────────────────────────┘
//!  failure: keep the unacknowledged partitions' records, back off (jittered, bounded),
//!  retry them; after a few failures reconnect (re-reading metadata, creating the topic).
//! ```
//!
//! Order: each partition has at most one produce in flight, and rounds follow spool order,
//! so records of one partition (one visitor) reach Kafka in the order they were accepted. A
//! record is resent only if its round was not wholly acknowledged, or after a crash between
//! the acknowledgement and the checkpoint: duplicates with the same `event_id`, never losses.
//! When the spool is idle the first record waits `TA_KAFKA_LINGER_MS` so a round carries
//! more than one event; under a backlog rounds follow each other without waiting.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus::IntGauge;
use rskafka::record::Record;
use ta_shared::backoff::Backoff;
use tracing::{debug, info, warn};

use crate::shutdown::Trigger;
use crate::spool::{Position, SpoolError, SpoolReader, SpoolRecord};
use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use ta_shared::telemetry::{BATCH_RECORDS_BUCKETS, LATENCY_SECONDS_BUCKETS};

/// Where the forwarder delivers: Kafka ([`crate::kafka::KafkaDestination`]) or, in unit
/// tests, memory.
pub trait Destination: Send + Sync + 'static {
    /// Connect, create the topic if it is missing, and return a producer for its partitions.
    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn PartitionProducer>, DeliveryError>>;
}

/// Produces batches to the partitions of one topic.
pub trait PartitionProducer: Send + Sync + 'static {
    fn partitions(&self) -> i32;
    /// Resolves once the broker acknowledged every record of the batch.
    fn produce(
        &self,
        partition: i32,
        records: Vec<Record>,
    ) -> BoxFuture<'_, Result<(), DeliveryError>>;
}

/// Why a delivery attempt failed; every kind is retried.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    #[error("could not connect to Kafka: {0}")]
    Connect(String),
    #[error("Kafka did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("Kafka refused the produce request: {0}")]
    Produce(String),
}

impl DeliveryError {
    /// Every value [`DeliveryError::kind`] returns.
    pub const KINDS: [&'static str; 3] = ["connect", "timeout", "produce"];

    /// Bounded label value for `ta_edge_produce_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout(_) => "timeout",
            Self::Produce(_) => "produce",
        }
    }
}

/// Whether Kafka is reachable, for `/readyz` and `ta_edge_kafka_up`.
#[derive(Debug)]
pub struct KafkaStatus {
    down_since: Mutex<Option<Instant>>,
    gauge: IntGauge,
}

impl KafkaStatus {
    /// Unreachable until the first successful connect.
    pub fn new(gauge: IntGauge) -> Self {
        gauge.set(0);
        Self {
            down_since: Mutex::new(Some(Instant::now())),
            gauge,
        }
    }

    pub fn up(&self) {
        *self.lock() = None;
        self.gauge.set(1);
    }

    pub fn down(&self) {
        self.lock().get_or_insert_with(Instant::now);
        self.gauge.set(0);
    }

    /// How long Kafka has been unreachable, `None` while it is reachable.
    pub fn unreachable_for(&self) -> Option<Duration> {
        self.lock().map(|since| since.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How the forwarder batches and retries.
#[derive(Debug, Clone)]
pub struct ForwarderSettings {
    /// Wait before the first round after the spool was idle, so it carries more events.
    pub linger: Duration,
    /// Largest batch per partition and produce request, in bytes of keys and values.
    pub max_batch_bytes: usize,
    /// How long one connect or produce attempt may take.
    pub attempt_timeout: Duration,
    /// Ceiling of the exponential, jittered backoff between failed attempts.
    pub max_backoff: Duration,
}

impl Default for ForwarderSettings {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(5),
            max_batch_bytes: 1 << 20,
            attempt_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Per-record bytes a Kafka record batch adds to key and value (varints, attributes).
const RECORD_OVERHEAD: usize = 24;
/// Most bytes of keys and values one round holds, whatever the partition count.
const MAX_ROUND_BYTES: usize = 16 << 20;
/// Failed attempts on one connection before reconnecting.
const FAILURES_BEFORE_RECONNECT: u32 = 3;
/// How often an idle forwarder looks at the spool even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Records read together, produced together and acknowledged together.
#[derive(Debug)]
struct Round {
    /// Records not yet acknowledged, in spool order.
    pending: Vec<SpoolRecord>,
    /// Records the round started with (what the acknowledgement frees).
    events: u64,
    end: Position,
}

/// The series the forwarder keeps.
#[derive(Debug, Clone)]
pub struct ForwarderMetrics {
    pub produced: IntCounter,
    pub produce_errors: IntCounterVec,
    pub produce_seconds: Histogram,
    pub batch_records: Histogram,
    pub kafka_up: IntGauge,
}

impl ForwarderMetrics {
    /// Series at 0, registered nowhere yet; every error kind is exported from the start, so
    /// rate() and the alert rules see 0, not "no data".
    pub fn new() -> Self {
        let m = Self {
            produced: IntCounter::new(
                "ta_edge_events_produced_total",
                "Events the forwarder produced to Kafka (acknowledged by all in-sync replicas).",
            )
            .unwrap(),
            produce_errors: IntCounterVec::new(
                Opts::new(
                    "ta_edge_produce_errors_total",
                    "Failed forwarder attempts by kind: connect, timeout, produce.",
                ),
                &["kind"],
            )
            .unwrap(),
            produce_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_edge_produce_duration_seconds",
                    "Duration of one produce request (one partition's batch) until the broker acknowledged it.",
                )
                .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            batch_records: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_edge_produce_batch_records",
                    "Records per produce request.",
                )
                .buckets(BATCH_RECORDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            kafka_up: IntGauge::new(
                "ta_edge_kafka_up",
                "1 when the forwarder's last connect or produce succeeded, 0 otherwise.",
            )
            .unwrap(),
        };
        for kind in DeliveryError::KINDS {
            m.produce_errors.with_label_values(&[kind]);
        }
        m
    }

    /// Export the series through `registry`.
    pub fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn Collector>; 5] = [
            Box::new(self.produced.clone()),
            Box::new(self.produce_errors.clone()),
            Box::new(self.produce_seconds.clone()),
            Box::new(self.batch_records.clone()),
            Box::new(self.kafka_up.clone()),
        ];
        ta_shared::telemetry::register_all(registry, collectors);
    }
}

impl Default for ForwarderMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Forwarder {
    destination: Arc<dyn Destination>,
    reader: Option<SpoolReader>,
    settings: ForwarderSettings,
    metrics: ForwarderMetrics,
    status: Arc<KafkaStatus>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Forwarder {
    pub fn new(
        destination: Arc<dyn Destination>,
        reader: SpoolReader,
        settings: ForwarderSettings,
        metrics: ForwarderMetrics,
        status: Arc<KafkaStatus>,
    ) -> Self {
        Self {
            destination,
            reader: Some(reader),
            settings,
            metrics,
            status,
        }
    }

    /// Deliver until `drain` fires and everything committed to the spool by then has been
    /// acknowledged. (The node bounds that drain with a timeout; what is left stays spooled.)
    pub async fn run(mut self, drain: Trigger) {
        let mut backoff = Backoff::new(Backoff::FIRST, self.settings.max_backoff);
        let mut round: Option<Round> = None;
        loop {
            if drain.is_fired() && round.is_none() && self.reader().caught_up() {
                return;
            }
            let producer = match async_std::future::timeout(
                self.settings.attempt_timeout,
                self.destination.connect(),
            )
            .await
            {
                Ok(Ok(producer)) => producer,
                Ok(Err(error)) => {
                    self.failed(&error, &mut backoff).await;
                    continue;
                }
                Err(_) => {
                    self.failed(
                        &DeliveryError::Timeout(self.settings.attempt_timeout),
                        &mut backoff,
                    )
                    .await;
                    continue;
                }
            };
            self.status.up();
            backoff.reset();
            info!(
                message = "Forwarder connected to Kafka.",
                partitions = producer.partitions()
            );
            let mut failures = 0;
            loop {
                let current = match round.take() {
                    Some(r) => r,
                    None => match self.next_round(producer.partitions(), &drain).await {
                        Ok(Some(r)) => r,
                        Ok(None) if drain.is_fired() && self.reader().caught_up() => return,
                        Ok(None) => continue,
                        Err(error) => {
                            warn!(message = "Reading the spool failed; retrying.", %error);
                            async_std::task::sleep(IDLE_POLL).await;
                            continue;
                        }
                    },
                };
                match self.produce(producer.as_ref(), current).await {
                    Ok(done) => {
                        if let Err(error) = self.acknowledge(done.end, done.events).await {
                            // The events are in Kafka; a later acknowledgement covers them.
                            warn!(message = "Saving the spool checkpoint failed.", %error);
                        }
                        self.status.up();
                        backoff.reset();
                        failures = 0;
                    }
                    Err((rest, error)) => {
                        round = Some(rest);
                        failures += 1;
                        self.failed(&error, &mut backoff).await;
                        if failures >= FAILURES_BEFORE_RECONNECT {
                            break;
                        }
                    }
                }
            }
        }
    }

    fn reader(&self) -> &SpoolReader {
        self.reader
            .as_ref()
            .expect("the reader is back after every blocking call")
    }

    async fn failed(&self, error: &DeliveryError, backoff: &mut Backoff) {
        self.status.down();
        self.metrics
            .produce_errors
            .with_label_values(&[error.kind()])
            .inc();
        let wait = backoff.next_delay();
        warn!(message = "Delivery to Kafka failed; the events stay in the spool and are retried.", %error, retry_in = ?wait);
        async_std::task::sleep(wait).await;
    }

    /// Wait for records, then read the next round; `None` when there is nothing to read.
    async fn next_round(
        &mut self,
        partitions: i32,
        drain: &Trigger,
    ) -> Result<Option<Round>, SpoolError> {
        if self.reader().caught_up() {
            if drain.is_fired() {
                return Ok(None);
            }
            futures::future::select(
                Box::pin(self.reader().wait_for_data(IDLE_POLL)),
                Box::pin(drain.fired()),
            )
            .await;
            if self.reader().caught_up() {
                return Ok(None);
            }
            async_std::task::sleep(self.settings.linger).await;
        }
        let max_batch_bytes = self.settings.max_batch_bytes;
        let before = self.reader().read_position();
        let mut reader = self.reader.take().expect("reader present");
        let (reader, batch) = async_std::task::spawn_blocking(move || {
            let mut per_partition = vec![0usize; usize::try_from(partitions.max(1)).unwrap_or(1)];
            let mut total = 0;
            let batch = reader.read(|record| {
                let size = record.key.len() + record.value.len() + RECORD_OVERHEAD;
                let p = usize::try_from(record.partition(partitions)).unwrap_or(0);
                let fits = per_partition[p] == 0 || per_partition[p] + size <= max_batch_bytes;
                // The first record always fits, however large, so a round is never empty.
                if !fits || (total > 0 && total + size > MAX_ROUND_BYTES) {
                    return false;
                }
                per_partition[p] += size;
                total += size;
                true
            });
            (reader, batch)
        })
        .await;
        self.reader = Some(reader);
        let batch = batch?;
        if batch.records.is_empty() {
            if batch.end == before {
                // Nothing readable below the writer's end: damage in the segment being
                // written (logged by the reader). Look again later rather than spin.
                async_std::task::sleep(IDLE_POLL).await;
            } else {
                // Only damaged bytes were skipped; moving the checkpoint past them is safe.
                self.acknowledge(batch.end, 0).await?;
            }
            return Ok(None);
        }
        self.reader()
            .set_oldest_unacknowledged(batch.records[0].timestamp_ms);
        Ok(Some(Round {
            events: batch.records.len() as u64,
            pending: batch.records,
            end: batch.end,
        }))
    }

    /// Produce the round's pending records, one request per partition, concurrently.
    /// Returns the round when all are acknowledged, or what is left and the first error.
    async fn produce(
        &self,
        producer: &dyn PartitionProducer,
        mut round: Round,
    ) -> Result<Round, (Round, DeliveryError)> {
        let partitions = producer.partitions();
        let mut batches: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for record in &round.pending {
            batches
                .entry(record.partition(partitions))
                .or_default()
                .push(kafka_record(record));
        }
        let timeout = self.settings.attempt_timeout;
        let results = futures::future::join_all(batches.into_iter().map(|(partition, records)| {
            let n = records.len();
            async move {
                let started = Instant::now();
                let result =
                    match async_std::future::timeout(timeout, producer.produce(partition, records))
                        .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(DeliveryError::Timeout(timeout)),
                    };
                (partition, n, started.elapsed(), result)
            }
        }))
        .await;
        let mut first_error = None;
        let mut failed = Vec::new();
        for (partition, n, took, result) in results {
            match result {
                Ok(()) => {
                    self.metrics.produced.inc_by(n as u64);
                    self.metrics.batch_records.observe(n as f64);
                    self.metrics.produce_seconds.observe(took.as_secs_f64());
                }
                Err(error) => {
                    debug!(message = "Produce failed.", partition, records = n, %error);
                    failed.push(partition);
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            None => Ok(round),
            Some(error) => {
                round
                    .pending
                    .retain(|r| failed.contains(&r.partition(partitions)));
                Err((round, error))
            }
        }
    }

    async fn acknowledge(&mut self, end: Position, events: u64) -> Result<(), SpoolError> {
        let mut reader = self.reader.take().expect("reader present");
        let (reader, result) = async_std::task::spawn_blocking(move || {
            let result = reader.acknowledge(end, events);
            (reader, result)
        })
        .await;
        self.reader = Some(reader);
        result
    }
}

fn kafka_record(record: &SpoolRecord) -> Record {
    Record {
        key: Some(record.key.clone()),
        value: Some(record.value.clone()),
        headers: BTreeMap::new(),
        timestamp: chrono::DateTime::from_timestamp_millis(record.timestamp_ms)
            .unwrap_or_else(chrono::Utc::now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use crate::spool::{Spool, SpoolConfig, SpoolMetrics};

    /// Kafka in memory: per-partition logs, and a switch that makes every call fail.
    #[derive(Default)]
    struct Memory {
        logs: Mutex<BTreeMap<i32, Vec<Record>>>,
        down: AtomicBool,
        produce_calls: AtomicUsize,
    }

    struct MemoryProducer(Arc<Memory>);

    impl Destination for Arc<Memory> {
        fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn PartitionProducer>, DeliveryError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(DeliveryError::Connect("memory broker down".into()));
                }
                Ok(Arc::new(MemoryProducer(self.clone())) as Arc<dyn PartitionProducer>)
            })
        }
    }

    impl PartitionProducer for MemoryProducer {
        fn partitions(&self) -> i32 {
            3
        }

        fn produce(
            &self,
            partition: i32,
            records: Vec<Record>,
        ) -> BoxFuture<'_, Result<(), DeliveryError>> {
            Box::pin(async move {
                self.0.produce_calls.fetch_add(1, Ordering::SeqCst);
                if self.0.down.load(Ordering::SeqCst) {
                    return Err(DeliveryError::Produce("memory broker down".into()));
                }
                self.0
                    .logs
                    .lock()
                    .unwrap()
                    .entry(partition)
                    .or_default()
                    .extend(records);
                Ok(())
            })
        }
    }

    fn record(visitor: u64, seq: u64) -> SpoolRecord {
        SpoolRecord {
            routing: visitor,
            timestamp_ms: 1_000,
            key: visitor.to_string().into_bytes(),
            value: format!("{visitor}:{seq}").into_bytes(),
        }
    }

    fn settings() -> ForwarderSettings {
        ForwarderSettings {
            linger: Duration::from_millis(1),
            max_batch_bytes: 300,
            attempt_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_millis(20),
        }
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            async_std::task::sleep(Duration::from_millis(10)).await;
        }
    }

    #[async_std::test]
    async fn records_reach_their_partition_in_spool_order_and_are_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = ForwarderMetrics::new();
        let (spool, reader) =
            Spool::open(SpoolConfig::new(dir.path()), SpoolMetrics::new()).unwrap();
        let memory = Arc::new(Memory::default());
        memory.down.store(true, Ordering::SeqCst);
        let status = Arc::new(KafkaStatus::new(metrics.kafka_up.clone()));
        let drain = Trigger::default();
        let task = async_std::task::spawn(
            Forwarder::new(
                Arc::new(memory.clone()),
                reader,
                settings(),
                metrics.clone(),
                status.clone(),
            )
            .run(drain.clone()),
        );

        // Kafka down: everything stays spooled.
        for seq in 0..40 {
            spool.append(&[record(seq % 5, seq)]).await.unwrap();
        }
        async_std::task::sleep(Duration::from_millis(100)).await;
        assert_eq!(spool.stats().events, 40);
        assert!(status.unreachable_for().is_some());
        assert_eq!(metrics.kafka_up.get(), 0);

        memory.down.store(false, Ordering::SeqCst);
        wait_until("the spool is empty", || spool.stats().events == 0).await;
        assert_eq!(metrics.produced.get(), 40);
        assert_eq!(metrics.kafka_up.get(), 1);
        assert!(
            metrics.batch_records.get_sample_count() > 3,
            "the 300-byte batch limit splits rounds"
        );
        let logs = memory.logs.lock().unwrap().clone();
        let mut seen = 0;
        for (partition, records) in logs {
            let mut last_seq = BTreeMap::new();
            for r in records {
                let value = String::from_utf8(r.value.unwrap()).unwrap();
                let (visitor, seq) = value.split_once(':').unwrap();
                let (visitor, seq): (u64, u64) = (visitor.parse().unwrap(), seq.parse().unwrap());
                assert_eq!(visitor % 3, partition as u64, "visitor in its partition");
                if let Some(prev) = last_seq.insert(visitor, seq) {
                    assert!(prev < seq, "visitor {visitor}: {prev} before {seq}");
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 40, "each record exactly once");

        drain.fire();
        async_std::future::timeout(Duration::from_secs(5), task)
            .await
            .expect("a drained forwarder stops");
    }

    #[async_std::test]
    async fn a_failed_round_is_not_acknowledged_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = ForwarderMetrics::new();
        let (spool, reader) =
            Spool::open(SpoolConfig::new(dir.path()), SpoolMetrics::new()).unwrap();
        let memory = Arc::new(Memory::default());
        let status = Arc::new(KafkaStatus::new(metrics.kafka_up.clone()));
        let drain = Trigger::default();
        let task = async_std::task::spawn(
            Forwarder::new(
                Arc::new(memory.clone()),
                reader,
                settings(),
                metrics.clone(),
                status.clone(),
            )
            .run(drain.clone()),
        );
        wait_until("connected", || status.unreachable_for().is_none()).await;
        memory.down.store(true, Ordering::SeqCst);
        spool.append(&[record(1, 0), record(2, 1)]).await.unwrap();
        wait_until("a produce failed", || {
            metrics.produce_errors.with_label_values(&["produce"]).get() >= 2
        })
        .await;
        assert_eq!(spool.stats().events, 2, "nothing acknowledged");
        memory.down.store(false, Ordering::SeqCst);
        wait_until("the spool is empty", || spool.stats().events == 0).await;
        let delivered: usize = memory.logs.lock().unwrap().values().map(Vec::len).sum();
        assert_eq!(delivered, 2);
        drain.fire();
        task.await;
    }
}
