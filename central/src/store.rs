//! The ClickHouse side: client construction, the schema and its migrations, row types.
//!
//! # Schema (version 1)
//! - `events`: one row per enriched event. `PARTITION BY toYYYYMM(ts)`, ordered by
//!   `(site_id, toDate(ts), visitor_hash, ts)` so a site's time range is one contiguous scan
//!   and per-visitor work (uniques, sessions) reads neighbouring rows. Each row also records
//!   the Kafka topic, partition and offset it came from: that is the loader's offset store.
//! - `dead_letters`: records that could not be loaded, with the reason and the raw bytes, also
//!   keyed by topic/partition/offset.
//! - `schema_migrations`: the versions applied, so start-up migration is idempotent.
//!
//! Everything here runs on ClickHouse 18.16 (the Debian package used in tests) and on current
//! releases: no codecs, TTL, LowCardinality or JSON functions.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use ta_shared::EnrichedEvent;

use crate::config::ClickHouseArgs;

/// A client for the analytics database.
pub fn client(args: &ClickHouseArgs) -> Client {
    server_client(args).with_database(&args.clickhouse_database)
}

/// A client without a database, for `CREATE DATABASE`.
fn server_client(args: &ClickHouseArgs) -> Client {
    Client::default()
        .with_url(&args.clickhouse_url)
        .with_user(&args.clickhouse_user)
        .with_password(&args.clickhouse_password)
        // The crate's schema validation asks for settings that ClickHouse 18.16 does not know.
        .with_validation(false)
}

/// One ordered set of statements. Every statement must be safe to run twice.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "events and dead letters",
    statements: &[
        "CREATE TABLE IF NOT EXISTS events (
            site_id String,
            ts DateTime,
            event_id String,
            event_name String,
            visitor_hash UInt64,
            session_id String,
            url String,
            host String,
            path String,
            referrer String,
            referrer_host String,
            utm_source String,
            utm_medium String,
            utm_campaign String,
            utm_term String,
            utm_content String,
            browser String,
            browser_version String,
            os String,
            os_version String,
            device String,
            country String,
            edge_region String,
            props_keys Array(String),
            props_values Array(String),
            received_at DateTime,
            kafka_topic String,
            kafka_partition UInt32,
            kafka_offset UInt64
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(ts)
        ORDER BY (site_id, toDate(ts), visitor_hash, ts)",
        "CREATE TABLE IF NOT EXISTS dead_letters (
            loaded_at DateTime,
            kafka_topic String,
            kafka_partition UInt32,
            kafka_offset UInt64,
            reason String,
            raw String
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(loaded_at)
        ORDER BY (kafka_topic, kafka_partition, kafka_offset)",
    ],
}];

#[derive(Debug, Row, Deserialize)]
struct Version {
    version: u32,
}

/// Create the database and apply every migration not yet recorded. Returns the versions
/// applied by this call.
pub async fn migrate(args: &ClickHouseArgs) -> Result<Vec<u32>, clickhouse::error::Error> {
    server_client(args)
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS `{}`",
            args.clickhouse_database
        ))
        .execute()
        .await?;
    let db = client(args);
    db.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version UInt32, name String, applied_at DateTime
        ) ENGINE = MergeTree ORDER BY version",
    )
    .execute()
    .await?;
    let applied: Vec<u32> = db
        .query("SELECT version FROM schema_migrations")
        .fetch_all::<Version>()
        .await?
        .into_iter()
        .map(|v| v.version)
        .collect();
    let mut newly = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for statement in m.statements {
            db.query(statement).execute().await?;
        }
        db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())")
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        newly.push(m.version);
    }
    Ok(newly)
}

/// A row of `events`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct EventRow {
    pub site_id: String,
    pub ts: u32,
    pub event_id: String,
    pub event_name: String,
    pub visitor_hash: u64,
    pub session_id: String,
    pub url: String,
    pub host: String,
    pub path: String,
    pub referrer: String,
    pub referrer_host: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_term: String,
    pub utm_content: String,
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: String,
    pub country: String,
    pub edge_region: String,
    pub props_keys: Vec<String>,
    pub props_values: Vec<String>,
    pub received_at: u32,
    pub kafka_topic: String,
    pub kafka_partition: u32,
    pub kafka_offset: u64,
}

/// Where a record came from in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePosition<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
}

/// Why an event cannot become a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("event time {0} ms is outside the DateTime range 1970..2106")]
    TimestampOutOfRange(i64),
}

fn to_datetime(ms: i64) -> Result<u32, RowError> {
    u32::try_from(ms.div_euclid(1000)).map_err(|_| RowError::TimestampOutOfRange(ms))
}

impl EventRow {
    pub fn from_event(e: EnrichedEvent, pos: SourcePosition<'_>) -> Result<Self, RowError> {
        let (props_keys, props_values) = e.props.into_iter().unzip();
        Ok(Self {
            ts: to_datetime(e.ts_ms)?,
            received_at: to_datetime(e.received_ms)?,
            site_id: e.site_id,
            event_id: e.event_id.to_string(),
            event_name: e.event_name,
            visitor_hash: e.visitor_hash,
            session_id: e.session_id,
            url: e.url,
            host: e.host,
            path: e.path,
            referrer: e.referrer,
            referrer_host: e.referrer_host,
            utm_source: e.utm.source,
            utm_medium: e.utm.medium,
            utm_campaign: e.utm.campaign,
            utm_term: e.utm.term,
            utm_content: e.utm.content,
            browser: e.browser,
            browser_version: e.browser_version,
            os: e.os,
            os_version: e.os_version,
            device: e.device,
            country: e.country,
            edge_region: e.edge_region,
            props_keys,
            props_values,
            kafka_topic: pos.topic.to_owned(),
            kafka_partition: pos.partition,
            kafka_offset: pos.offset,
        })
    }

    /// The table partition (`toYYYYMM(ts)`) this row lands in.
    pub fn month(&self) -> u32 {
        let dt = chrono::DateTime::from_timestamp(i64::from(self.ts), 0).unwrap_or_default();
        use chrono::Datelike;
        dt.year() as u32 * 100 + dt.month()
    }
}

/// A row of `dead_letters`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct DeadLetterRow {
    pub loaded_at: u32,
    pub kafka_topic: String,
    pub kafka_partition: u32,
    pub kafka_offset: u64,
    pub reason: String,
    pub raw: String,
}

impl DeadLetterRow {
    /// The table partition (`toYYYYMM(loaded_at)`) this row lands in.
    pub fn month(&self) -> u32 {
        let dt = chrono::DateTime::from_timestamp(i64::from(self.loaded_at), 0).unwrap_or_default();
        use chrono::Datelike;
        dt.year() as u32 * 100 + dt.month()
    }
}

#[derive(Debug, Row, Deserialize)]
struct MaxOffset {
    max_offset: u64,
    rows: u64,
}

/// The next offset to load for a partition: one past the highest offset stored in `events`
/// or `dead_letters`, or `None` when nothing from it was ever loaded.
pub async fn next_offset(
    db: &Client,
    topic: &str,
    partition: u32,
) -> Result<Option<i64>, clickhouse::error::Error> {
    let mut next = None;
    for table in ["events", "dead_letters"] {
        let m: MaxOffset = db
            .query(&format!(
                "SELECT max(kafka_offset) AS max_offset, count() AS rows FROM {table} \
                 WHERE kafka_topic = ? AND kafka_partition = ?"
            ))
            .bind(topic)
            .bind(partition)
            .fetch_one()
            .await?;
        if m.rows > 0 {
            let candidate = i64::try_from(m.max_offset).unwrap_or(i64::MAX - 1) + 1;
            next = Some(next.map_or(candidate, |n: i64| n.max(candidate)));
        }
    }
    Ok(next)
}

/// The `query_id` prefix of the inserts one loader makes for one partition.
pub fn insert_query_prefix(topic: &str, partition: u32) -> String {
    format!("ta-loader/{topic}/{partition}/")
}

#[derive(Debug, Row, Deserialize)]
struct Running {
    n: u64,
}

/// Wait until no insert with `prefix` is still running on the server.
///
/// A loader that crashed (or gave up on a timed-out insert) may leave an INSERT that the
/// server is still committing. Reading the committed offset before it finishes would load
/// its rows twice, so the offset is read only once the server has no such insert in flight.
pub async fn wait_for_inflight_inserts(
    db: &Client,
    prefix: &str,
) -> Result<(), clickhouse::error::Error> {
    loop {
        let running: Running = db
            .query("SELECT count() AS n FROM system.processes WHERE substring(query_id, 1, length(?)) = ?")
            .bind(prefix)
            .bind(prefix)
            .fetch_one()
            .await?;
        if running.n == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_versions_are_unique_and_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.iter().all(|m| !m.statements.is_empty()));
    }

    #[test]
    fn month_matches_clickhouse_to_yyyymm() {
        let row = DeadLetterRow {
            loaded_at: 1_764_460_800, // 2025-11-30T00:00:00Z
            kafka_topic: String::new(),
            kafka_partition: 0,
            kafka_offset: 0,
            reason: String::new(),
            raw: String::new(),
        };
        assert_eq!(row.month(), 202511);
    }

    #[test]
    fn out_of_range_timestamps_are_row_errors() {
        assert_eq!(to_datetime(-1), Err(RowError::TimestampOutOfRange(-1)));
        assert_eq!(to_datetime(1_999), Ok(1));
    }
}
