//! `ta-loader`: Kafka `events.enriched` → ClickHouse, exactly once.
//!
//! ```text
//!  per owned partition (one task each):
//!    next = store::next_offset(partition)            ◀── derived from the rows themselves
//!    loop: fetch_records(next) ─▶ decode ─▶ Batch ─(rows | bytes | age)─▶ into_runs()
//!                                  │ poison record                      │ one INSERT per run
//!                                  └────────▶ dead_letters              ▼ (one part: atomic)
//!    on any error: back off with jitter, drop the batch, re-derive `next` from ClickHouse
//! ```
//!
//! See [`batch`] for why stored rows always form a prefix of each partition, which is what
//! makes the derived offset exact after a crash at any point.

pub mod batch;
pub mod metrics;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;
use ta_shared::EnrichedEvent;
use tracing::{info, warn};

use crate::config::LoaderConfig;
use crate::store::{self, DeadLetterRow, EventRow, SourcePosition};
use batch::{Batch, Item, Run};
pub use metrics::LoaderMetrics;

/// Largest raw record kept in a dead letter.
const MAX_DEAD_LETTER_RAW_BYTES: usize = 64 * 1024;

/// Exponential backoff with full jitter, 100 ms .. 10 s.
#[derive(Debug)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn new() -> Self {
        Self { attempt: 0 }
    }

    fn next_delay(&mut self) -> Duration {
        let cap = Duration::from_millis(100).saturating_mul(1 << self.attempt.min(7));
        self.attempt += 1;
        let cap = cap.min(Duration::from_secs(10));
        cap.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Decode one record into a row or a dead letter.
pub fn decode(record: &RecordAndOffset, topic: &str, partition: u32, now_secs: u32) -> Item {
    let pos = SourcePosition {
        topic,
        partition,
        offset: u64::try_from(record.offset).unwrap_or(0),
    };
    let raw = record.record.value.as_deref().unwrap_or_default();
    let failure = match EnrichedEvent::from_json(raw) {
        Ok(event) => match EventRow::from_event(event, pos) {
            Ok(row) => return Item::Event(row),
            Err(e) => ("out_of_range", e.to_string()),
        },
        Err(ta_shared::EventDecodeError::UnsupportedVersion { found }) => (
            "unknown_version",
            format!("unsupported schema version {found}"),
        ),
        Err(e) => ("malformed", e.to_string()),
    };
    let mut raw_text = String::from_utf8_lossy(raw).into_owned();
    if raw_text.len() > MAX_DEAD_LETTER_RAW_BYTES {
        let mut cut = MAX_DEAD_LETTER_RAW_BYTES;
        while !raw_text.is_char_boundary(cut) {
            cut -= 1;
        }
        raw_text.truncate(cut);
    }
    Item::DeadLetter(DeadLetterRow {
        loaded_at: now_secs,
        kafka_topic: topic.to_owned(),
        kafka_partition: partition,
        kafka_offset: pos.offset,
        reason: format!("{}: {}", failure.0, failure.1),
        raw: raw_text,
    })
}

struct Ctx {
    config: LoaderConfig,
    db: clickhouse::Client,
    metrics: LoaderMetrics,
}

/// Connect to Kafka and return the client and the topic's partitions (creating the topic if
/// it does not exist yet).
pub async fn connect_kafka(config: &LoaderConfig) -> Result<(Client, Vec<i32>), KafkaError> {
    let client = ClientBuilder::new(config.kafka_brokers.clone())
        .client_id("ta-loader")
        .build()
        .await?;
    let existing = client
        .list_topics()
        .await?
        .into_iter()
        .find(|t| t.name == config.kafka_topic);
    if existing.is_none() {
        match client
            .controller_client()?
            .create_topic(&config.kafka_topic, config.kafka_topic_partitions, 1, 5_000)
            .await
        {
            Ok(()) => {}
            Err(KafkaError::ServerError {
                protocol_error: ProtocolError::TopicAlreadyExists,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    let partitions = client
        .list_topics()
        .await?
        .into_iter()
        .find(|t| t.name == config.kafka_topic)
        .map(|t| t.partitions.into_iter().collect())
        .unwrap_or_default();
    Ok((client, partitions))
}

/// Run the loader until the process is stopped.
pub async fn run(config: LoaderConfig, metrics: LoaderMetrics) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        match store::migrate(&config.clickhouse).await {
            Ok(applied) => {
                info!(message = "Schema is current.", applied = ?applied);
                break;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(message = "ClickHouse not ready; retrying migrations.", %error, url = %config.clickhouse.clickhouse_url, retry_in = ?delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
    backoff.reset();
    let (client, partitions) = loop {
        match connect_kafka(&config).await {
            Ok(ok) => break ok,
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(message = "Kafka not reachable; retrying.", %error, brokers = ?config.kafka_brokers, retry_in = ?delay);
                tokio::time::sleep(delay).await;
            }
        }
    };
    let owned: Vec<i32> = partitions
        .into_iter()
        .filter(|p| config.owns_partition(*p))
        .collect();
    info!(message = "Loading partitions.", topic = %config.kafka_topic, partitions = ?owned, instance = config.instance, of = config.of);
    let ctx = Arc::new(Ctx {
        db: config.clickhouse.client(),
        config,
        metrics,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for partition in owned {
        let pc = client
            .partition_client(
                &ctx.config.kafka_topic,
                partition,
                UnknownTopicHandling::Retry,
            )
            .await
            .with_context(|| format!("opening partition {partition}"))?;
        let ctx = ctx.clone();
        tasks.spawn(async move { load_partition(ctx, pc).await });
    }
    while let Some(res) = tasks.join_next().await {
        res.context("partition task panicked")?;
    }
    Ok(())
}

async fn load_partition(ctx: Arc<Ctx>, pc: PartitionClient) {
    let mut backoff = Backoff::new();
    loop {
        let Err(error) = load_from_committed(&ctx, &pc, &mut backoff).await;
        let delay = backoff.next_delay();
        warn!(message = "Loading interrupted; resuming from the committed offset.", partition = pc.partition(), error = %format!("{error:#}"), retry_in = ?delay);
        tokio::time::sleep(delay).await;
    }
}

fn error_kind(error: &anyhow::Error) -> &'static str {
    if error.downcast_ref::<clickhouse::error::Error>().is_some() {
        "clickhouse"
    } else if error.downcast_ref::<KafkaError>().is_some() {
        "kafka"
    } else {
        "other"
    }
}

async fn load_from_committed(
    ctx: &Ctx,
    pc: &PartitionClient,
    backoff: &mut Backoff,
) -> anyhow::Result<Infallible> {
    let result = load_inner(ctx, pc, backoff).await;
    if let Err(e) = &result {
        ctx.metrics.errors.with_label_values(&[error_kind(e)]).inc();
    }
    result
}

async fn load_inner(
    ctx: &Ctx,
    pc: &PartitionClient,
    backoff: &mut Backoff,
) -> anyhow::Result<Infallible> {
    let cfg = &ctx.config;
    let partition = pc.partition();
    let partition_u32 = u32::try_from(partition).unwrap_or(0);
    let label = partition.to_string();
    let prefix = store::insert_query_prefix(&cfg.kafka_topic, partition_u32);
    store::wait_for_inflight_inserts(&ctx.db, &prefix).await?;
    let mut next = match store::next_offset(&ctx.db, &cfg.kafka_topic, partition_u32).await? {
        Some(next) => next,
        None => pc.get_offset(OffsetAt::Earliest).await?,
    };
    ctx.metrics
        .next_offset
        .with_label_values(&[&label])
        .set(next);
    let mut batch = Batch::default();
    loop {
        let wait = if batch.is_empty() {
            cfg.fetch_wait_ms
        } else {
            let left = batch.time_left(cfg.batch_max_wait(), Instant::now());
            i32::try_from(left.as_millis())
                .unwrap_or(i32::MAX)
                .clamp(0, cfg.fetch_wait_ms)
        };
        let (records, high_watermark) =
            match pc.fetch_records(next, 1..cfg.fetch_max_bytes, wait).await {
                Ok(ok) => ok,
                Err(KafkaError::ServerError {
                    protocol_error: ProtocolError::OffsetOutOfRange,
                    ..
                }) => {
                    let earliest = pc.get_offset(OffsetAt::Earliest).await?;
                    if next < earliest {
                        warn!(
                            message =
                                "Records were deleted by broker retention before they were loaded.",
                            partition,
                            from = next,
                            to = earliest
                        );
                        next = earliest;
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
        let now = Instant::now();
        let now_secs = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let fetched_from = next;
        for record in records.iter().filter(|r| r.offset >= fetched_from) {
            ctx.metrics.fetched.inc();
            let item = decode(record, &cfg.kafka_topic, partition_u32, now_secs);
            batch.push(item, record.record.approximate_size(), now);
            next = record.offset + 1;
            // A fetch may return more than one batch holds: cut inside it, so no insert
            // exceeds the row and byte limits.
            if batch.is_full(cfg.batch_max_rows, cfg.batch_max_bytes) {
                insert_batch(ctx, std::mem::take(&mut batch), &prefix).await?;
                ctx.metrics
                    .next_offset
                    .with_label_values(&[&label])
                    .set(next);
            }
        }
        ctx.metrics
            .lag_records
            .with_label_values(&[&label])
            .set((high_watermark - next).max(0));
        if batch.is_ready(
            cfg.batch_max_rows,
            cfg.batch_max_bytes,
            cfg.batch_max_wait(),
            Instant::now(),
        ) {
            insert_batch(ctx, std::mem::take(&mut batch), &prefix).await?;
            ctx.metrics
                .next_offset
                .with_label_values(&[&label])
                .set(next);
        }
        backoff.reset();
    }
}

/// Insert a batch run by run, in offset order.
async fn insert_batch(
    ctx: &Ctx,
    batch: Batch,
    prefix: &str,
) -> Result<(), clickhouse::error::Error> {
    for run in batch.into_runs() {
        let query_id = format!("{prefix}{}", uuid::Uuid::now_v7());
        let started = Instant::now();
        let rows = run.len();
        match &run {
            Run::Events(events) => {
                let mut insert = ctx
                    .db
                    .insert::<EventRow>("events")
                    .await?
                    .with_setting("query_id", &query_id);
                for row in events {
                    insert.write(row).await?;
                }
                insert.end().await?;
                ctx.metrics.inserted.inc_by(rows as u64);
            }
            Run::DeadLetters(letters) => {
                let mut insert = ctx
                    .db
                    .insert::<DeadLetterRow>("dead_letters")
                    .await?
                    .with_setting("query_id", &query_id);
                for row in letters {
                    insert.write(row).await?;
                }
                insert.end().await?;
                for row in letters {
                    let reason = row.reason.split(':').next().unwrap_or("other");
                    ctx.metrics.dead_lettered.with_label_values(&[reason]).inc();
                }
            }
        }
        ctx.metrics.batch_rows.observe(rows as f64);
        ctx.metrics
            .insert_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rskafka::record::Record;

    fn record(offset: i64, value: &[u8]) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: None,
                value: Some(value.to_vec()),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            },
            offset,
        }
    }

    #[test]
    fn poison_records_become_dead_letters_with_reason_and_position() {
        let item = decode(&record(7, b"{not json"), "t", 2, 100);
        let Item::DeadLetter(d) = item else {
            panic!("expected a dead letter")
        };
        assert_eq!((d.kafka_partition, d.kafka_offset), (2, 7));
        assert!(d.reason.starts_with("malformed:"), "{}", d.reason);
        assert_eq!(d.raw, "{not json");

        let future = br#"{"v":99,"site_id":"x"}"#;
        let Item::DeadLetter(d) = decode(&record(8, future), "t", 2, 100) else {
            panic!()
        };
        assert!(d.reason.starts_with("unknown_version:"), "{}", d.reason);
    }

    #[test]
    fn backoff_grows_and_stays_capped() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(10));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
