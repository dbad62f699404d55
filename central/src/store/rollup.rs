//! Rollups of closed UTC days: one row per visit in `visits`, and per event dimension, value
//! and visitor hash in `day_values`, so that stats over whole days read those instead of
//! re-deriving visits and per-value visitors from every event.
//!
//! # Why answers stay exact
//! - Visits never cross UTC midnight ([`sql::stats::UTC_DAY`]), so a day's visits are a
//!   function of that day's events alone, and a range's visits are the union of its days'.
//! - A build writes a day's visits and dimension values with a fresh `build_id`, reads back
//!   how many events each table's rows hold, and only when both agree records
//!   `(site, day, build_id, events)` in `rollup_days`. Rows of a build never recorded (a
//!   crash, or events arriving between the two inserts) are ignored; superseded builds are
//!   deleted.
//! - Every query checks, per day, that the latest build holds exactly as many events as
//!   `events` has for that day in the range ([`sql::stats::coverage`]); a day that received
//!   late events, lost some to an erasure, or is cut by the range is read from `events`. So a
//!   stale or partial rollup can make a query slower, never wrong.
//!
//! Loader 0 builds the closed days that need it every `TA_ROLLUP_INTERVAL_SECS`;
//! `ta-loader rollup` does the same once, with progress.

use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::Deserialize;

use super::Store;
use crate::sql;

/// A closed day whose rollup is missing or out of date.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct PendingDay {
    pub site: String,
    /// UTC day number (days since 1970-01-01).
    pub day: u32,
    /// Events the day has now.
    pub n: u64,
}

#[derive(Debug, Row, Deserialize)]
struct Count {
    n: u64,
}

/// Closed days (before today, UTC) of the last `max_days` days that need a build.
pub async fn pending_days(
    db: &Store,
    now: DateTime<Utc>,
    max_days: u32,
) -> Result<Vec<PendingDay>, clickhouse::error::Error> {
    let today = (now.timestamp().max(0) as u64 / 86_400) as i64;
    db.query(sql::ROLLUP_PENDING)
        .bind((today - i64::from(max_days)).max(0) * 86_400)
        .bind(today * 86_400)
        .fetch_all()
        .await
}

/// Build one site's day; returns the number of events the build holds.
pub async fn build_day(
    db: &Store,
    site_id: &str,
    day: u32,
) -> Result<u64, clickhouse::error::Error> {
    // Unique and increasing: the latest build of a day is the one with the largest id.
    let build_id = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX) as u64;
    // Engagement events are in no count the build can read back; counted first, so one that
    // arrives during or after the build leaves the day stale (read raw, built again).
    let engagement: Count = db
        .query(sql::ROLLUP_DAY_ENGAGEMENT)
        .bind(site_id)
        .bind(i64::from(day) * 86_400)
        .bind((i64::from(day) + 1) * 86_400)
        .fetch_one()
        .await?;
    for s in [
        sql::stats::build_rollup(site_id, day, build_id),
        sql::stats::build_day_values(site_id, day, build_id),
        sql::stats::build_day_engagement(site_id, day, build_id),
    ] {
        s.query(db).execute().await?;
    }
    let mut held = [0u64; 3];
    for (i, statement) in [
        sql::ROLLUP_BUILD_EVENTS,
        sql::ROLLUP_BUILD_VALUE_EVENTS,
        sql::ROLLUP_BUILD_ENGAGEMENT_EVENTS,
    ]
    .into_iter()
    .enumerate()
    {
        let c: Count = db
            .query(statement)
            .bind(site_id)
            .bind(day)
            .bind(build_id)
            .fetch_one()
            .await?;
        held[i] = c.n;
    }
    if held[0] != held[1] || held[2] != engagement.n {
        // Events arrived between the inserts (or engagement events after they were counted):
        // leave the build unrecorded (never read); the day stays pending and is built again
        // at the next run.
        return Ok(0);
    }
    let events = held[0] + engagement.n;
    db.query(sql::RECORD_ROLLUP)
        .bind(site_id)
        .bind(day)
        .bind(build_id)
        .bind(events)
        .execute()
        .await?;
    // Earlier builds of the day are no longer read; delete them in the background.
    for table in sql::ROLLUP_TABLES {
        db.alter(&sql::delete_old_rollups(table), |q| {
            q.bind(site_id).bind(day).bind(build_id)
        })
        .await?;
    }
    Ok(events)
}

/// What [`build_pending`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildReport {
    pub days: usize,
    pub events: u64,
}

/// Build every pending day; `progress(done, total, day)` after each.
pub async fn build_pending(
    db: &Store,
    now: DateTime<Utc>,
    max_days: u32,
    mut progress: impl FnMut(usize, usize, &PendingDay),
) -> Result<BuildReport, clickhouse::error::Error> {
    let pending = pending_days(db, now, max_days).await?;
    let mut report = BuildReport::default();
    for (i, day) in pending.iter().enumerate() {
        report.events += build_day(db, &day.site, day.day).await?;
        report.days += 1;
        progress(i + 1, pending.len(), day);
    }
    Ok(report)
}
