//! Data lifecycle: retention by partition drops, and erasure of a site or a visitor.
//!
//! `events` is partitioned by `(site_id, month)`, so expiring a site's old months and erasing
//! a whole site are `DROP PARTITION`s (no rewrite of other data). Erasing one visitor is a
//! mutation (`ALTER TABLE … DELETE`) confined to that site's partitions; it rewrites the parts
//! holding the visitor and is meant for rare, operator-driven requests.
//! Dead letters hold raw records, so erasure also deletes the dead letters that mention the
//! site or visitor; the visit rollups of erased or expired data are deleted with it.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use clickhouse::Row;
use serde::Deserialize;

use super::Store;
use crate::sql;

/// How long each site's events are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub default_days: u32,
    pub per_site: BTreeMap<String, u32>,
}

impl RetentionPolicy {
    pub fn days_for(&self, site: &str) -> u32 {
        self.per_site
            .get(site)
            .copied()
            .unwrap_or(self.default_days)
    }

    /// Parse `site=days,site=days`.
    pub fn parse_overrides(text: &str) -> Result<BTreeMap<String, u32>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|pair| {
                let (site, days) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`{pair}` is not site=days"))?;
                let days = days
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{days}` in `{pair}` is not a number of days"))?;
                Ok((site.trim().to_owned(), days))
            })
            .collect()
    }
}

/// One partition of `events`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventsPartition {
    pub site_id: String,
    /// `YYYYMM`.
    pub month: u32,
}

impl EventsPartition {
    /// Parse `system.parts.partition` of `events`, e.g. `('site-1',202611)`.
    pub fn parse(text: &str) -> Option<Self> {
        let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
        let (site, month) = inner.rsplit_once(',')?;
        let site = site.trim().strip_prefix('\'')?.strip_suffix('\'')?;
        ta_shared::site::is_valid_site_id(site).then_some(())?;
        Some(Self {
            site_id: site.to_owned(),
            month: month.trim().parse().ok()?,
        })
    }

    /// First instant of the partition's month.
    pub fn start(&self) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt((self.month / 100) as i32, (self.month % 100).max(1), 1)
            .unwrap_or(NaiveDate::MIN)
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
    }

    /// First instant after the partition's month.
    pub fn end(&self) -> DateTime<Utc> {
        let (y, m) = (self.month / 100, self.month % 100);
        let (y, m) = if m >= 12 { (y + 1, 1) } else { (y, m + 1) };
        NaiveDate::from_ymd_opt(y as i32, m, 1)
            .unwrap_or(NaiveDate::MAX)
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
    }
}

/// Partitions whose every event is older than its site's retention at `now`.
pub fn expired(
    partitions: &[EventsPartition],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Vec<EventsPartition> {
    partitions
        .iter()
        .filter(|p| {
            let days = policy.days_for(&p.site_id);
            days > 0 && p.end() <= now - chrono::Duration::days(i64::from(days))
        })
        .cloned()
        .collect()
}

#[derive(Debug, Row, Deserialize)]
struct PartitionText {
    partition: String,
}

/// Active partitions of `events` (on a cluster: of any node's `events_local`).
pub async fn events_partitions(
    db: &Store,
) -> Result<Vec<EventsPartition>, clickhouse::error::Error> {
    let rows: Vec<PartitionText> = db
        .query(sql::EVENTS_PARTITIONS)
        .bind(&db.database)
        .fetch_all()
        .await?;
    let mut parts: Vec<EventsPartition> = rows
        .iter()
        .filter_map(|r| EventsPartition::parse(&r.partition))
        .collect();
    parts.sort();
    Ok(parts)
}

async fn drop_partitions(
    db: &Store,
    partitions: &[EventsPartition],
) -> Result<(), clickhouse::error::Error> {
    for p in partitions {
        db.alter(&sql::drop_events_partition(&p.site_id, p.month), |q| q)
            .await?;
        settled(db, sql::COUNT_SITE_MONTH_EVENTS, |q| {
            q.bind(&p.site_id).bind(p.month)
        })
        .await?;
    }
    Ok(())
}

/// Drop every expired partition; returns what was dropped.
pub async fn apply_retention(
    db: &Store,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<EventsPartition>, clickhouse::error::Error> {
    let expired = expired(&events_partitions(db).await?, policy, now);
    drop_partitions(db, &expired).await?;
    // The rollups of the dropped months go too (mutations: rollups are not partitioned by
    // month).
    for p in &expired {
        let (from, to) = (p.start().timestamp() / 86_400, p.end().timestamp() / 86_400);
        for table in sql::ROLLUP_TABLES.iter().chain(&["rollup_days"]) {
            db.alter(&sql::delete_rollups_between(table), |q| {
                q.bind(&p.site_id).bind(from).bind(to)
            })
            .await?;
        }
    }
    if !expired.is_empty() {
        for table in sql::ROLLUP_TABLES.iter().chain(&["rollup_days"]) {
            wait_for_mutations(db, table).await?;
        }
        for p in &expired {
            let (from, to) = (p.start().timestamp() / 86_400, p.end().timestamp() / 86_400);
            for table in sql::ROLLUP_TABLES.iter().chain(&["rollup_days"]) {
                settled(db, &sql::count_rollups_between(table), |q| {
                    q.bind(&p.site_id).bind(from).bind(to)
                })
                .await?;
            }
        }
    }
    Ok(expired)
}

#[derive(Debug, Row, Deserialize)]
struct Pending {
    n: u64,
}

/// On a cluster, wait until no replica still holds a row the statement `count` (a
/// `SELECT count() AS n FROM {all:…} WHERE …`) counts: a partition drop or mutation made on one
/// replica of a shard reaches the other through ZooKeeper's log, later, and until then a
/// `Distributed` read may pick the replica that still has the rows. On one server the
/// statement that removed them already finished, so nothing is read.
async fn settled(
    db: &Store,
    count: &str,
    bind: impl Fn(clickhouse::query::Query) -> clickhouse::query::Query,
) -> Result<(), clickhouse::error::Error> {
    if !db.is_cluster() {
        return Ok(());
    }
    loop {
        let left: Pending = bind(db.query(count)).fetch_one().await?;
        if left.n == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Wait until every mutation of `table` has finished.
async fn wait_for_mutations(db: &Store, table: &str) -> Result<(), clickhouse::error::Error> {
    loop {
        let p: Pending = db
            .query(sql::PENDING_MUTATIONS)
            .bind(&db.database)
            .bind(db.layout.render(&format!("{{stored:{table}}}")))
            .fetch_one()
            .await?;
        if p.n == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Delete everything stored for `site_id`; returns the number of partitions dropped.
pub async fn erase_site(db: &Store, site_id: &str) -> Result<usize, clickhouse::error::Error> {
    let mine: Vec<EventsPartition> = events_partitions(db)
        .await?
        .into_iter()
        .filter(|p| p.site_id == site_id)
        .collect();
    drop_partitions(db, &mine).await?;
    for table in sql::ROLLUP_TABLES {
        db.alter(&sql::drop_rollup_partition(table, site_id), |q| q)
            .await?;
    }
    db.alter(sql::DELETE_SITE_ROLLUP_DAYS, |q| q.bind(site_id))
        .await?;
    let mention = format!("\"site_id\":\"{site_id}\"");
    db.alter(sql::DELETE_DEAD_LETTERS_MENTIONING, |q| q.bind(&mention))
        .await?;
    wait_for_mutations(db, "dead_letters").await?;
    wait_for_mutations(db, "rollup_days").await?;
    for table in sql::ROLLUP_TABLES.iter().chain(&["rollup_days"]) {
        settled(db, &sql::count_site_rollups(table), |q| q.bind(site_id)).await?;
    }
    settled(db, sql::COUNT_DEAD_LETTERS_MENTIONING, |q| q.bind(&mention)).await?;
    record_erasure(db, "site").await?;
    Ok(mine.len())
}

/// Note that an erasure finished (ta-query then drops its cached answers).
async fn record_erasure(db: &Store, kind: &str) -> Result<(), clickhouse::error::Error> {
    db.query(sql::RECORD_ERASURE).bind(kind).execute().await
}

/// Delete dead letters loaded more than `days` ago (0 keeps them); returns how many went.
/// Safe for exactly-once loading: recovery reads only offsets at or past a partition's
/// committed offset (central/src/store/offsets.rs), and a dead letter that old is far behind it.
pub async fn expire_dead_letters(
    db: &Store,
    days: u32,
    now: DateTime<Utc>,
) -> Result<u64, clickhouse::error::Error> {
    if days == 0 {
        return Ok(0);
    }
    let cutoff = (now - chrono::Duration::days(i64::from(days))).timestamp();
    let old: u64 = db
        .query(sql::COUNT_DEAD_LETTERS_BEFORE)
        .bind(cutoff)
        .fetch_one()
        .await?;
    if old > 0 {
        db.alter(sql::DELETE_DEAD_LETTERS_BEFORE, |q| q.bind(cutoff))
            .await?;
        wait_for_mutations(db, "dead_letters").await?;
        settled(db, sql::COUNT_ALL_DEAD_LETTERS_BEFORE, |q| q.bind(cutoff)).await?;
    }
    Ok(old)
}

/// Delete every event of one visitor hash of one site.
pub async fn erase_visitor(
    db: &Store,
    site_id: &str,
    visitor_hash: u64,
) -> Result<(), clickhouse::error::Error> {
    let rollups = sql::VISITOR_ROLLUP_TABLES.map(sql::delete_visitor_rollups);
    for statement in
        std::iter::once(sql::DELETE_VISITOR_EVENTS).chain(rollups.iter().map(String::as_str))
    {
        db.alter(statement, |q| q.bind(site_id).bind(visitor_hash))
            .await?;
    }
    let mention = format!("\"visitor_hash\":{visitor_hash},");
    db.alter(sql::DELETE_DEAD_LETTERS_MENTIONING, |q| q.bind(&mention))
        .await?;
    wait_for_mutations(db, "events").await?;
    for table in sql::VISITOR_ROLLUP_TABLES {
        wait_for_mutations(db, table).await?;
    }
    wait_for_mutations(db, "dead_letters").await?;
    for table in ["events", "visits", "day_values"] {
        settled(db, &sql::count_visitor_rows(table), |q| {
            q.bind(site_id).bind(visitor_hash)
        })
        .await?;
    }
    settled(db, sql::COUNT_DEAD_LETTERS_MENTIONING, |q| q.bind(&mention)).await?;
    record_erasure(db, "visitor").await
}

/// `YYYYMM` of a time.
pub fn month_of(t: DateTime<Utc>) -> u32 {
    t.year() as u32 * 100 + t.month()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(site: &str, month: u32) -> EventsPartition {
        EventsPartition {
            site_id: site.into(),
            month,
        }
    }

    #[test]
    fn parses_system_parts_partition_text() {
        assert_eq!(
            EventsPartition::parse("('site-1',202611)"),
            Some(p("site-1", 202611))
        );
        assert_eq!(
            EventsPartition::parse("('a.b_c',202512)")
                .unwrap()
                .end()
                .to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(EventsPartition::parse("202611"), None);
        assert_eq!(EventsPartition::parse("('bad site',202611)"), None);
    }

    #[test]
    fn a_month_expires_only_when_all_of_it_is_past_retention() {
        let policy = RetentionPolicy {
            default_days: 365,
            per_site: RetentionPolicy::parse_overrides("short=30, forever=0").unwrap(),
        };
        let now = NaiveDate::from_ymd_opt(2026, 11, 30)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc();
        let parts = [
            p("short", 202609),
            p("short", 202610),
            p("short", 202611),
            p("long", 202510),
            p("long", 202511),
            p("forever", 200001),
        ];
        // short: October ends 2026-11-01, which is less than 30 days ago; September is gone.
        // long: November 2025 ends 2025-12-01, under 365 days ago; October 2025 is gone.
        assert_eq!(
            expired(&parts, &policy, now),
            vec![p("short", 202609), p("long", 202510)]
        );
    }

    #[test]
    fn overrides_reject_garbage() {
        assert!(RetentionPolicy::parse_overrides("a=1,b").is_err());
        assert!(RetentionPolicy::parse_overrides("a=x").is_err());
        assert_eq!(RetentionPolicy::parse_overrides("").unwrap().len(), 0);
    }
}
