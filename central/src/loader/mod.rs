//! `ta-loader`: Kafka `events.enriched` → ClickHouse, exactly once.
//!
//! ```text
//!  per owned partition (one task each; new partitions picked up while running):
//!    wait for own in-flight inserts ─▶ start = checkpoint, skip = offsets already stored
//!    loop: fetch_records(next) ─▶ skip stored / duplicate ids ─▶ decode ─▶ Batch
//!            (rows | bytes | age) ─▶ one INSERT per table partition ─▶ checkpoint
//!                   │ poison record ─▶ dead_letters (same batch, same rules)
//!    on any error: back off with jitter, drop the batch, start over from ClickHouse's state
//! ```
//!
//! The exactly-once argument is in [`crate::store::offsets`]. Memory is bounded by one batch
//! (rows and bytes limits) plus one fetch response plus the duplicate window per partition;
//! while ClickHouse is down no new records are fetched.
//!
//! Per event the work is: read the record through a borrowed view
//! ([`ta_shared::event::EnrichedEventRef`], no allocation per field), check it, and write its
//! row once as `RowBinary` into the buffer of its table partition ([`batch::EventGroup`]); the
//! insert sends that buffer as it is. Buffers are kept for the next batch.
//!
//! Duplicates created upstream (an edge re-producing a record after a crash between the
//! broker's ack and its spool checkpoint) carry the same `event_id` and land in the same
//! partition (the key is the visitor); the loader drops an event whose id is among the last
//! `TA_LOADER_DEDUP_WINDOW` ids of its partition, rebuilt from ClickHouse on start.
//!
//! With `TA_REGISTRY_URL` the loader follows central's registry and loads only the sites of its
//! signed snapshot; a record of another site becomes a dead letter `unknown_site` (see
//! [`known_sites`]). Without it, every well-formed record is loaded.

pub mod batch;
pub mod known_sites;
pub mod lease;
pub mod metrics;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rskafka::client::Client;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;
use ta_shared::backoff::Backoff;
use ta_shared::event::EnrichedEventRef;
use ta_shared::kafka::{check_at_start, client_builder, ensure_topic};
use tracing::{info, warn};

use crate::config::LoaderConfig;
use crate::store::{self, DeadLetterRow, EventRowRef, SourcePosition};
use batch::{Batch, DeadLetterGroup, EventGroup, RecentIds};
pub use metrics::LoaderMetrics;

/// Largest raw record kept in a dead letter.
const MAX_DEAD_LETTER_RAW_BYTES: usize = 64 * 1024;

/// The loader's retry curve: 100 ms doubling to 10 s, jittered.
fn backoff() -> Backoff {
    Backoff::new(Backoff::FIRST, Duration::from_secs(10))
}

/// Decode one record into a checked event, borrowing the record, or a dead letter.
pub fn decode<'a>(
    raw: &'a [u8],
    pos: SourcePosition<'_>,
    now_secs: u32,
) -> Result<EventRowRef<'a>, DeadLetterRow> {
    let failure = match EnrichedEventRef::from_json(raw) {
        Ok(event) => match EventRowRef::new(event) {
            Ok(row) => return Ok(row),
            Err(e) => ("out_of_range", e.to_string()),
        },
        Err(ta_shared::EventDecodeError::UnsupportedVersion { found }) => (
            "unknown_version",
            format!("unsupported schema version {found}"),
        ),
        Err(e) => ("malformed", e.to_string()),
    };
    Err(dead_letter(
        raw,
        pos,
        now_secs,
        format!("{}: {}", failure.0, failure.1),
    ))
}

/// A record that is not loaded, with `reason` (`<one of DEAD_LETTER_REASONS>: <detail>`) and
/// its raw text (cut at [`MAX_DEAD_LETTER_RAW_BYTES`]).
fn dead_letter(
    raw: &[u8],
    pos: SourcePosition<'_>,
    now_secs: u32,
    reason: String,
) -> DeadLetterRow {
    let mut raw_text = String::from_utf8_lossy(raw).into_owned();
    if raw_text.len() > MAX_DEAD_LETTER_RAW_BYTES {
        let mut cut = MAX_DEAD_LETTER_RAW_BYTES;
        while !raw_text.is_char_boundary(cut) {
            cut -= 1;
        }
        raw_text.truncate(cut);
    }
    DeadLetterRow {
        loaded_at: now_secs,
        kafka_topic: pos.topic.to_owned(),
        kafka_partition: pos.partition,
        kafka_offset: pos.offset,
        reason,
        raw: raw_text,
    }
}

struct Ctx {
    config: LoaderConfig,
    db: store::Store,
    metrics: LoaderMetrics,
    /// With `TA_REGISTRY_URL`: the sites loaded; records of others are dead letters.
    sites: Option<known_sites::KnownSites>,
    /// Whether this loader runs the once-per-topic work (retention, rollups): loader 0 with
    /// static assignment; the first live member with leases.
    housekeeper: std::sync::atomic::AtomicBool,
}

/// Connect to Kafka, creating the topic if it does not exist yet (unless configured not to).
pub async fn connect_kafka(config: &LoaderConfig) -> anyhow::Result<Client> {
    let client = client_builder(
        config.kafka_brokers.clone(),
        "ta-loader",
        &config.kafka_security,
        None,
    )?
    .build()
    .await?;
    if config.kafka_create_topic {
        ensure_topic(&client, &config.kafka_topic, config.kafka_topic_partitions).await?;
    }
    Ok(client)
}

/// One bounded connection attempt before loading: a setting that cannot work (untrusted
/// certificate, wrong password, TLS against a plaintext listener) stops the loader with the
/// reason, where the retry loop would otherwise wait forever; an unreachable broker does not.
async fn check_kafka_at_start(config: &LoaderConfig) -> anyhow::Result<()> {
    let within = Duration::from_secs(config.kafka_startup_check_secs);
    let security = &config.kafka_security;
    match check_at_start(&config.kafka_brokers, "ta-loader", security, within).await? {
        None => {
            info!(message = "Kafka answers.", brokers = ?config.kafka_brokers, security = %security.describe())
        }
        Some(reason) => {
            warn!(message = "Kafka is not reachable yet; retrying.", brokers = ?config.kafka_brokers, security = %security.describe(), %reason)
        }
    }
    Ok(())
}

/// The topic's partitions this loader owns.
async fn owned_partitions(client: &Client, config: &LoaderConfig) -> Result<Vec<i32>, KafkaError> {
    Ok(client
        .list_topics()
        .await?
        .into_iter()
        .find(|t| t.name == config.kafka_topic)
        .map(|t| {
            t.partitions
                .into_iter()
                .filter(|p| config.owns_partition(*p))
                .collect()
        })
        .unwrap_or_default())
}

/// Run the loader until the process is stopped.
pub async fn run(config: LoaderConfig, metrics: LoaderMetrics) -> anyhow::Result<()> {
    // Settings that cannot work stop the loader first, whatever ClickHouse is doing.
    config
        .kafka_security
        .tls_client_config()
        .and_then(|_| config.kafka_security.sasl())
        .context("Kafka security settings")?;
    if config.kafka_startup_check_secs > 0 {
        check_kafka_at_start(&config).await?;
    }
    // Started before ClickHouse and Kafka, so its first fetch runs beside their start-up.
    let sites = config
        .registry
        .check(false)
        .context("registry settings (TA_REGISTRY_*)")?
        .map(|settings| known_sites::KnownSites::follow(settings, metrics.registry_follow.clone()))
        .transpose()?;
    let mut backoff = backoff();
    let db = loop {
        let ready = async {
            let applied = store::migrate(&config.clickhouse).await?;
            Ok::<_, clickhouse::error::Error>((applied, config.clickhouse.store().await?))
        };
        match ready.await {
            Ok((applied, db)) => {
                info!(message = "Schema is current.", applied = ?applied, layout = ?db.layout);
                break db;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(message = "ClickHouse not ready; retrying migrations.", %error, url = %config.clickhouse.clickhouse_url, retry_in = ?delay);
                tokio::time::sleep(delay).await;
            }
        }
    };
    backoff.reset();
    let client = loop {
        match connect_kafka(&config).await {
            Ok(client) => break client,
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(message = "Kafka not reachable; retrying.", %error, brokers = ?config.kafka_brokers, retry_in = ?delay);
                tokio::time::sleep(delay).await;
            }
        }
    };
    if let Some(sites) = &sites {
        sites.wait_in_force().await?;
    }
    let ctx = Arc::new(Ctx {
        db,
        housekeeper: std::sync::atomic::AtomicBool::new(config.zookeeper.is_none()),
        config,
        metrics,
        sites,
    });
    let mut tasks = tokio::task::JoinSet::new();
    if (ctx.config.zookeeper.is_some() || ctx.config.instance.is_multiple_of(ctx.config.of.max(1)))
        && ctx.config.retention_interval_secs > 0
    {
        let ctx = ctx.clone();
        tasks.spawn(async move { retention_loop(ctx).await });
    }
    if (ctx.config.zookeeper.is_some() || ctx.config.instance.is_multiple_of(ctx.config.of.max(1)))
        && ctx.config.rollup_interval_secs > 0
    {
        let ctx = ctx.clone();
        tasks.spawn(async move { rollup_loop(ctx).await });
    }
    if let Some(zookeeper) = ctx.config.zookeeper.clone() {
        return run_leased(ctx, client, &zookeeper, tasks).await;
    }
    let mut started = std::collections::BTreeSet::new();
    let mut refresh = tokio::time::interval(Duration::from_secs(
        ctx.config.partition_refresh_secs.max(1),
    ));
    loop {
        tokio::select! {
            _ = refresh.tick() => {
                let owned = match owned_partitions(&client, &ctx.config).await {
                    Ok(owned) => owned,
                    Err(error) => {
                        warn!(message = "Listing the topic's partitions failed.", %error);
                        continue;
                    }
                };
                let new: Vec<i32> = owned.into_iter().filter(|p| !started.contains(p)).collect();
                for partition in new {
                    let pc = client
                        .partition_client(&ctx.config.kafka_topic, partition, UnknownTopicHandling::Retry)
                        .await
                        .with_context(|| format!("opening partition {partition}"))?;
                    info!(message = "Loading partition.", topic = %ctx.config.kafka_topic, partition, instance = ctx.config.instance, of = ctx.config.of);
                    started.insert(partition);
                    let ctx = ctx.clone();
                    tasks.spawn(async move { load_partition(ctx, pc, None).await });
                }
            }
            Some(res) = tasks.join_next() => {
                res.context("a loader task panicked")?;
            }
        }
    }
}

async fn retention_loop(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(ctx.config.retention_interval_secs));
    loop {
        tick.tick().await;
        if !ctx.housekeeper.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        // The registry's per-site retention, when following it, over TA_RETENTION_SITE_DAYS.
        let mut policy = ctx.config.retention_policy();
        if let Some(sites) = &ctx.sites {
            policy.per_site.extend(sites.retention_days());
        }
        match store::lifecycle::apply_retention(&ctx.db, &policy, chrono::Utc::now()).await {
            Ok(dropped) if !dropped.is_empty() => {
                info!(message = "Retention dropped expired partitions.", partitions = ?dropped);
                ctx.metrics.retention_dropped.inc_by(dropped.len() as u64);
            }
            Ok(_) => {}
            Err(error) => warn!(message = "Retention run failed; will retry.", %error),
        }
        let days = ctx.config.dead_letter_retention_days;
        match store::lifecycle::expire_dead_letters(&ctx.db, days, chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(n) => info!(
                message = "Retention deleted old dead letters.",
                dead_letters = n,
                days
            ),
            Err(error) => warn!(message = "Dead-letter retention failed; will retry.", %error),
        }
    }
}

async fn rollup_loop(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(ctx.config.rollup_interval_secs));
    loop {
        tick.tick().await;
        if !ctx.housekeeper.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        let built = store::rollup::build_pending(
            &ctx.db,
            chrono::Utc::now(),
            ctx.config.rollup_days,
            |_, _, _| ctx.metrics.rollup_days_built.inc(),
        )
        .await;
        match built {
            Ok(r) if r.days > 0 => {
                info!(
                    message = "Rolled up the visits of closed days.",
                    days = r.days,
                    events = r.events
                );
            }
            Ok(_) => {}
            Err(error) => {
                ctx.metrics.rollup_failures.inc();
                warn!(message = "Rollup run failed; will retry.", %error);
            }
        }
    }
}

/// A partition's lease and the membership it belongs to.
#[derive(Clone)]
struct Held {
    leases: Arc<lease::Leases>,
    lease: lease::Lease,
}

/// The lease was lost (expired, or taken by another loader): the partition stops here.
#[derive(Debug, thiserror::Error)]
#[error("the lease of partition {0} is no longer this loader's")]
struct LeaseLost(i32);

/// Load partitions while holding their leases (see [`lease`]): every second, take the wanted
/// partitions that are free, stop and release those no longer wanted; when the ZooKeeper
/// session is not connected, stop everything at once, and join again once it has ended.
async fn run_leased(
    ctx: Arc<Ctx>,
    client: Client,
    zookeeper: &str,
    mut background: tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    let root = lease::root(
        &ctx.config.clickhouse.clickhouse_database,
        &ctx.config.kafka_topic,
    );
    let session = Duration::from_secs(ctx.config.lease_secs.max(1));
    let mut backoff = backoff();
    loop {
        let leases = match lease::Leases::join(zookeeper, &root, session).await {
            Ok(l) => Arc::new(l),
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(message = "ZooKeeper not reachable; retrying.", %error, zookeeper, retry_in = ?delay);
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.reset();
        info!(message = "Joined the loaders.", member = leases.me(), root = %root);
        let mut running: std::collections::BTreeMap<
            i32,
            (tokio::task::JoinHandle<()>, lease::Lease),
        > = Default::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !leases.ended() {
            tokio::select! {
                _ = tick.tick() => {}
                Some(res) = background.join_next() => {
                    res.context("a loader task panicked")?;
                    continue;
                }
            }
            running.retain(|_, (task, _)| !task.is_finished());
            if !leases.connected() {
                ctx.housekeeper
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                // The session may be expiring: stop loading now, the leases may be gone.
                for (partition, (task, _)) in std::mem::take(&mut running) {
                    task.abort();
                    let _ = task.await;
                    warn!(
                        message = "ZooKeeper session not connected; stopped loading.",
                        partition
                    );
                }
                continue;
            }
            let partitions = match client.list_topics().await {
                Ok(topics) => topics
                    .into_iter()
                    .find(|t| t.name == ctx.config.kafka_topic)
                    .map(|t| t.partitions.into_iter().collect::<Vec<i32>>())
                    .unwrap_or_default(),
                Err(error) => {
                    warn!(message = "Listing the topic's partitions failed.", %error);
                    continue;
                }
            };
            let wanted = match leases.wanted(&partitions).await {
                Ok((w, first)) => {
                    ctx.housekeeper
                        .store(first, std::sync::atomic::Ordering::Relaxed);
                    w
                }
                Err(error) => {
                    warn!(message = "Reading the loaders from ZooKeeper failed.", %error);
                    continue;
                }
            };
            let unwanted: Vec<i32> = running
                .keys()
                .filter(|p| !wanted.contains(p))
                .copied()
                .collect();
            for partition in unwanted {
                if let Some((task, held)) = running.remove(&partition) {
                    task.abort();
                    let _ = task.await;
                    if let Err(error) = leases.release(held).await {
                        warn!(message = "Releasing a lease failed (it ends with the session).", partition, %error);
                    }
                    info!(message = "Handed a partition over.", partition);
                }
            }
            for partition in wanted {
                if running.contains_key(&partition) {
                    continue;
                }
                let held = match leases.acquire(partition).await {
                    Ok(Some(held)) => held,
                    Ok(None) => continue, // another loader still holds it
                    Err(error) => {
                        warn!(message = "Taking a lease failed.", partition, %error);
                        continue;
                    }
                };
                let pc = client
                    .partition_client(
                        &ctx.config.kafka_topic,
                        partition,
                        UnknownTopicHandling::Retry,
                    )
                    .await
                    .with_context(|| format!("opening partition {partition}"))?;
                info!(message = "Loading partition (lease taken).", topic = %ctx.config.kafka_topic, partition, token = held.token, member = leases.me());
                let (ctx, owner) = (
                    ctx.clone(),
                    Held {
                        leases: leases.clone(),
                        lease: held,
                    },
                );
                running.insert(
                    partition,
                    (
                        tokio::spawn(async move { load_partition(ctx, pc, Some(owner)).await }),
                        held,
                    ),
                );
            }
        }
        warn!(
            message = "ZooKeeper session ended; every lease is lost. Joining again.",
            member = leases.me()
        );
        for (_, (task, _)) in running {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn load_partition(ctx: Arc<Ctx>, pc: PartitionClient, held: Option<Held>) {
    let mut backoff = backoff();
    loop {
        let Err(error) = load_from_committed(&ctx, &pc, held.as_ref(), &mut backoff).await;
        if error.downcast_ref::<LeaseLost>().is_some() {
            warn!(
                message = "Lease lost; stopped loading the partition, its batch dropped.",
                partition = pc.partition()
            );
            return;
        }
        let delay = backoff.next_delay();
        warn!(message = "Loading interrupted; resuming from ClickHouse's state.", partition = pc.partition(), error = %format!("{error:#}"), retry_in = ?delay);
        tokio::time::sleep(delay).await;
    }
}

/// Every value [`error_kind`] returns (label `kind` of `ta_loader_errors_total`).
pub const ERROR_KINDS: [&str; 4] = ["clickhouse", "kafka", "lease", "other"];

/// Every reason a dead letter has: [`decode`]'s, and `unknown_site` from [`known_sites`]
/// (label `reason` of `ta_loader_dead_letters_total`).
pub const DEAD_LETTER_REASONS: [&str; 4] = [
    "out_of_range",
    "unknown_version",
    "malformed",
    "unknown_site",
];

fn error_kind(error: &anyhow::Error) -> &'static str {
    if error.downcast_ref::<LeaseLost>().is_some() {
        "lease"
    } else if error.downcast_ref::<clickhouse::error::Error>().is_some() {
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
    held: Option<&Held>,
    backoff: &mut Backoff,
) -> anyhow::Result<Infallible> {
    let result = load_inner(ctx, pc, held, backoff).await;
    if let Err(e) = &result {
        ctx.metrics.errors.with_label_values(&[error_kind(e)]).inc();
    }
    result
}

/// Load one partition from ClickHouse's state on: fetch, take the records into the batch,
/// report the lag, commit when due. Returns only with an error.
async fn load_inner(
    ctx: &Ctx,
    pc: &PartitionClient,
    held: Option<&Held>,
    backoff: &mut Backoff,
) -> anyhow::Result<Infallible> {
    let mut loader = PartitionLoader::recover(ctx, pc, held).await?;
    loop {
        let Some((records, high_watermark)) = loader.fetch().await? else {
            continue;
        };
        let fetched_any = loader.take(&records).await?;
        loader.report_lag(high_watermark);
        loader.commit_when_due(fetched_any).await?;
        backoff.reset();
    }
}

/// One partition's loading: where it stands, rebuilt from ClickHouse at each (re)start, and
/// the batch being filled.
struct PartitionLoader<'a> {
    ctx: &'a Ctx,
    pc: &'a PartitionClient,
    /// The partition's lease, checked before every commit (leased mode).
    held: Option<&'a Held>,
    label: String,
    partition: u32,
    /// Query id prefix of this partition's inserts.
    prefix: String,
    checkpointed: i64,
    /// Offsets at or after the checkpoint that ClickHouse already holds (stored before a
    /// crash): skipped once each.
    stored: HashSet<i64>,
    /// The last event ids, to drop duplicates.
    recent: RecentIds,
    /// Offset of the next record to fetch.
    next: i64,
    batch: Batch,
    last_record_ms: Option<i64>,
}

impl<'a> PartitionLoader<'a> {
    /// Where loading starts, from ClickHouse's state once the partition's own inserts still in
    /// flight have finished: the checkpoint (or the earliest offset the broker has), the
    /// offsets stored after it, and the event ids of the duplicate window before it.
    async fn recover(
        ctx: &'a Ctx,
        pc: &'a PartitionClient,
        held: Option<&'a Held>,
    ) -> anyhow::Result<Self> {
        let cfg = &ctx.config;
        let partition = u32::try_from(pc.partition()).unwrap_or(0);
        let prefix = store::offsets::insert_query_prefix(&cfg.kafka_topic, partition);
        // A leased loader fences earlier holders first (see `store::schema::gates`): after
        // this, their writes store nothing, and the wait below sees out those already running.
        if let Some(held) = held {
            store::offsets::record_fence(&ctx.db, &cfg.kafka_topic, partition, held.lease.token)
                .await?;
        }
        store::offsets::wait_for_inflight_inserts(&ctx.db, &prefix).await?;
        let start = match store::offsets::checkpoint(&ctx.db, &cfg.kafka_topic, partition).await? {
            Some(c) => c,
            None => pc.get_offset(OffsetAt::Earliest).await?,
        };
        let stored =
            store::offsets::stored_offsets_from(&ctx.db, &cfg.kafka_topic, partition, start)
                .await?;
        let mut recent = RecentIds::new(cfg.dedup_window);
        let window_start =
            start.saturating_sub(i64::try_from(cfg.dedup_window).unwrap_or(i64::MAX));
        for id in store::offsets::event_ids_from(&ctx.db, &cfg.kafka_topic, partition, window_start)
            .await?
        {
            recent.insert(&id);
        }
        let label = partition.to_string();
        ctx.metrics
            .next_offset
            .with_label_values(&[&label])
            .set(start);
        Ok(Self {
            ctx,
            pc,
            held,
            label,
            partition,
            prefix,
            checkpointed: start,
            stored,
            recent,
            next: start,
            batch: {
                let mut batch = Batch::new(start);
                batch.fence = held.map(|h| h.lease.token);
                batch
            },
            last_record_ms: None,
        })
    }

    /// One fetch from `next`: the records and the partition's high watermark, or `None` when
    /// the broker no longer has `next` (see [`Self::skip_deleted`]).
    async fn fetch(&mut self) -> anyhow::Result<Option<(Vec<RecordAndOffset>, i64)>> {
        let cfg = &self.ctx.config;
        let fetched = self
            .pc
            .fetch_records(self.next, 1..cfg.fetch_max_bytes, self.fetch_wait_ms())
            .await;
        match fetched {
            Ok(ok) => Ok(Some(ok)),
            Err(KafkaError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => {
                self.skip_deleted().await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How long the broker may hold a fetch: the configured wait, but no longer than the
    /// batch may still wait before it is inserted.
    fn fetch_wait_ms(&self) -> i32 {
        let cfg = &self.ctx.config;
        if self.batch.is_empty() {
            return cfg.fetch_wait_ms;
        }
        let left = self.batch.time_left(cfg.batch_max_wait(), Instant::now());
        i32::try_from(left.as_millis())
            .unwrap_or(i32::MAX)
            .clamp(0, cfg.fetch_wait_ms)
    }

    /// Records the broker deleted (retention) before they were loaded: continue from its
    /// earliest offset.
    async fn skip_deleted(&mut self) -> Result<(), KafkaError> {
        let earliest = self.pc.get_offset(OffsetAt::Earliest).await?;
        if self.next < earliest {
            warn!(
                message = "Records were deleted by broker retention before they were loaded.",
                partition = self.partition,
                from = self.next,
                to = earliest
            );
            self.next = earliest;
            self.batch.advance(earliest);
        }
        Ok(())
    }

    /// A fetch's records from `next` on (a fetch may start before it) into the batch, which is
    /// committed whenever it fills up: a fetch may return more than one batch holds, and no
    /// insert exceeds the row and byte limits. Whether there was any such record.
    async fn take(&mut self, records: &[RecordAndOffset]) -> anyhow::Result<bool> {
        let now = Instant::now();
        let now_secs = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let fetched_from = self.next;
        let fetched_any = records.iter().any(|r| r.offset >= fetched_from);
        let cfg = &self.ctx.config;
        for record in records.iter().filter(|r| r.offset >= fetched_from) {
            self.take_record(record, now, now_secs).await;
            if self.batch.is_full(cfg.batch_max_rows, cfg.batch_max_bytes) {
                self.commit().await?;
            }
        }
        Ok(fetched_any)
    }

    /// One record: skipped when ClickHouse holds it already or its event id is a duplicate,
    /// otherwise decoded into the batch as an event or a dead letter (also when the registry
    /// is followed and does not know its site). The batch ends after it either way. `now`:
    /// when the records were read.
    async fn take_record(&mut self, record: &RecordAndOffset, now: Instant, now_secs: u32) {
        let ctx = self.ctx;
        ctx.metrics.fetched.inc();
        self.next = record.offset + 1;
        self.last_record_ms = Some(record.record.timestamp.timestamp_millis());
        if !self.stored.is_empty() && self.stored.remove(&record.offset) {
            self.batch.advance(self.next);
            return;
        }
        let pos = SourcePosition {
            topic: &ctx.config.kafka_topic,
            partition: self.partition,
            offset: u64::try_from(record.offset).unwrap_or(0),
        };
        let raw = record.record.value.as_deref().unwrap_or_default();
        let size = record.record.approximate_size();
        let decoded = match (decode(raw, pos, now_secs), &ctx.sites) {
            (Ok(row), Some(sites)) => match sites.check(&row.event.site_id, now).await {
                Ok(()) => Ok(row),
                Err(reason) => Err(dead_letter(raw, pos, now_secs, reason)),
            },
            (decoded, _) => decoded,
        };
        match decoded {
            Ok(row) if !self.recent.insert_uuid(row.event.event_id) => ctx.metrics.duplicates.inc(),
            Ok(row) => self.batch.push_event(&row, pos, size, now),
            Err(dead) => self.batch.push_dead_letter(dead, size, now),
        }
        self.batch.advance(self.next);
    }

    /// Records behind the high watermark, and how old the last one read is while there are
    /// any (0 when caught up).
    fn report_lag(&self, high_watermark: i64) {
        let metrics = &self.ctx.metrics;
        metrics
            .lag_records
            .with_label_values(&[&self.label])
            .set((high_watermark - self.next).max(0));
        let lag_seconds = match self.last_record_ms {
            Some(ms) if high_watermark > self.next => {
                (chrono::Utc::now().timestamp_millis() - ms).max(0) as f64 / 1000.0
            }
            _ => 0.0,
        };
        metrics
            .lag_seconds
            .with_label_values(&[&self.label])
            .set(lag_seconds);
    }

    /// Commit a batch that is ready (rows, bytes or age), or, when a fetch found nothing new,
    /// an empty one that ends past the checkpoint (skipped records), so the checkpoint moves.
    async fn commit_when_due(&mut self, fetched_any: bool) -> anyhow::Result<()> {
        let cfg = &self.ctx.config;
        let idle_skips =
            self.batch.is_empty() && self.batch.end() > self.checkpointed && !fetched_any;
        if self.batch.is_ready(
            cfg.batch_max_rows,
            cfg.batch_max_bytes,
            cfg.batch_max_wait(),
            Instant::now(),
        ) || idle_skips
        {
            self.commit().await?;
        }
        Ok(())
    }

    /// Insert the batch group by group, then checkpoint its end; the batch is then empty and
    /// starts at that end. On an error the batch is left as it was (the caller drops it).
    async fn commit(&mut self) -> anyhow::Result<()> {
        let ctx = self.ctx;
        if let Some(held) = self.held {
            // A loader that was paused past its session must not commit what it held.
            // Not known to be ours (ZooKeeper unreachable counts): stop; the membership loop
            // takes the lease again if it still is.
            if !matches!(held.leases.still_holds(held.lease).await, Ok(true)) {
                return Err(LeaseLost(held.lease.partition).into());
            }
        }
        let end = self.batch.end();
        if !self.batch.is_empty() {
            ctx.metrics.batch_bytes.observe(self.batch.bytes() as f64);
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let fence = self.held.map(|h| h.lease.token);
        let (events_gate, dead_gate, offsets_gate) = store::schema::gates();
        let (events, dead) = self.batch.groups();
        for group in events {
            let gate = fence.map(|_| events_gate.as_str());
            insert_events(ctx, &self.prefix, group, now_ms, gate).await?;
        }
        for group in dead {
            insert_dead_letters(
                ctx,
                &self.prefix,
                group,
                fence.map(|f| (dead_gate.as_str(), f)),
            )
            .await?;
        }
        if end > self.checkpointed {
            let gated = fence.map(|f| (offsets_gate.as_str(), f));
            store::offsets::write_checkpoint(
                &ctx.db,
                &ctx.config.kafka_topic,
                self.partition,
                end,
                gated,
            )
            .await?;
            self.checkpointed = end;
        }
        ctx.metrics
            .next_offset
            .with_label_values(&[&self.label])
            .set(end);
        self.batch.clear();
        Ok(())
    }
}

/// One table partition's events, as one insert whose query id starts with `prefix`; their
/// freshness is measured at `now_ms`, when the commit began.
async fn insert_events(
    ctx: &Ctx,
    prefix: &str,
    group: &EventGroup,
    now_ms: i64,
    gate: Option<&str>,
) -> Result<(), clickhouse::error::Error> {
    let started = Instant::now();
    let query_id = format!("{prefix}{}", uuid::Uuid::now_v7());
    store::rows::insert_event_rows(&ctx.db, &query_id, &group.data, gate).await?;
    ctx.metrics.inserted.inc_by(group.rows.len() as u64);
    for row in &group.rows {
        let age_ms = now_ms - i64::from(row.received_at) * 1000;
        ctx.metrics
            .freshness_seconds
            .observe(age_ms.max(0) as f64 / 1000.0);
    }
    ctx.metrics.batch_rows.observe(group.rows.len() as f64);
    ctx.metrics
        .insert_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

/// One table partition's dead letters, as one insert whose query id starts with `prefix`.
async fn insert_dead_letters(
    ctx: &Ctx,
    prefix: &str,
    group: &DeadLetterGroup,
    gate: Option<(&str, i64)>,
) -> Result<(), clickhouse::error::Error> {
    let started = Instant::now();
    let query_id = format!("{prefix}{}", uuid::Uuid::now_v7());
    if let Some((gate, fence)) = gate {
        let mut insert = ctx
            .db
            .insert::<store::rows::GatedDeadLetterRow<'_>>(gate)
            .await?
            .with_setting("query_id", &query_id);
        for row in &group.rows {
            insert.write(&row.gated(fence)).await?;
        }
        insert.end().await?;
    } else {
        let mut insert = ctx
            .db
            .insert::<DeadLetterRow>("dead_letters")
            .await?
            .with_setting("query_id", &query_id);
        for row in &group.rows {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    for row in &group.rows {
        let reason = row.reason.split(':').next().unwrap_or("other");
        ctx.metrics.dead_lettered.with_label_values(&[reason]).inc();
    }
    ctx.metrics.batch_rows.observe(group.rows.len() as f64);
    ctx.metrics
        .insert_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> SourcePosition<'static> {
        SourcePosition {
            topic: "t",
            partition: 2,
            offset,
        }
    }

    #[test]
    fn poison_records_become_dead_letters_with_reason_and_position() {
        let Err(d) = decode(b"{not json", pos(7), 100) else {
            panic!("expected a dead letter")
        };
        assert_eq!((d.kafka_partition, d.kafka_offset), (2, 7));
        assert!(d.reason.starts_with("malformed:"), "{}", d.reason);
        assert_eq!(d.raw, "{not json");

        let future = br#"{"v":99,"site_id":"x"}"#;
        let Err(d) = decode(future, pos(8), 100) else {
            panic!()
        };
        assert!(d.reason.starts_with("unknown_version:"), "{}", d.reason);

        let mut event = ta_shared::testing::event(0, 1_764_000_000_000);
        event.site_id = "bad site id!".into();
        let json = event.to_json();
        let Err(d) = decode(&json, pos(9), 100) else {
            panic!()
        };
        assert!(d.reason.starts_with("out_of_range:"), "{}", d.reason);

        // Revenue on a pageview: the edge refuses it, and so does the loader.
        let mut event = ta_shared::testing::event(0, 1_764_000_000_000);
        (event.event_name, event.revenue_e4, event.revenue_currency) =
            ("pageview".into(), 199_000, "EUR".into());
        let Err(d) = decode(&event.to_json(), pos(10), 100) else {
            panic!()
        };
        assert!(
            d.reason.starts_with("out_of_range:") && d.reason.contains("revenue"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_good_record_decodes_to_its_event_row() {
        let event = ta_shared::testing::event(1, 1_764_000_000_000);
        let json = event.to_json();
        let row = decode(&json, pos(3), 100).expect("a valid event");
        let owned = store::EventRow::from_event(event, pos(3)).unwrap();
        assert_eq!((row.ts, row.received_at), (owned.ts, owned.received_at));
        assert_eq!(row.month(), owned.month());
        assert_eq!(row.event.event_id.to_string(), owned.event_id);
    }
}
