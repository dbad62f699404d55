//! The rollup coverage check: which days of a range the visit rollup answers exactly, with
//! concurrent checks of one range shared, and each part of `events` counted once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use clickhouse::Row;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::sql::stats::{self as sql, Scope};

/// The database as the stats endpoints use it: the client, and the rollup coverage checks in
/// flight, so that concurrent requests for the same range (a dashboard's first load sends ten)
/// share one check instead of each scanning the range. Nothing is kept once a check is done: a
/// request that arrives after it runs its own, which counts only the parts of `events` written
/// since ([`PartCounts`]).
#[derive(Clone)]
pub struct StatsDb {
    pub client: clickhouse::Client,
    in_flight: Arc<Mutex<HashMap<RangeKey, SharedCoverage>>>,
    parts: Arc<PartCounts>,
    checks_run: prometheus::IntCounter,
    checks_joined: prometheus::IntCounter,
}

/// Site, from, to.
type RangeKey = (String, u32, u32);
type SharedCoverage = Shared<BoxFuture<'static, sql::Coverage>>;

impl StatsDb {
    /// `checks`: counter of coverage checks by `result` (`run`, `joined`); `parts`: counter
    /// of the `events` parts those checks needed, by `result` (`counted`: read to count its
    /// events per day; `reused`: counted before and unchanged since).
    pub fn new(
        client: clickhouse::Client,
        checks: &prometheus::IntCounterVec,
        parts: &prometheus::IntCounterVec,
    ) -> Self {
        Self {
            client,
            in_flight: Arc::default(),
            parts: Arc::new(PartCounts {
                listable: OnceCell::new(),
                days: Mutex::default(),
                counted: parts.with_label_values(&["counted"]),
                reused: parts.with_label_values(&["reused"]),
            }),
            checks_run: checks.with_label_values(&["run"]),
            checks_joined: checks.with_label_values(&["joined"]),
        }
    }
}

/// Each day's event count per part of `events`, for the parts of the ranges checked so far.
///
/// A part of a MergeTree table never changes: an insert, a merge and a mutation (an erasure)
/// each write new parts under new names, so the events of a day are the sum over the active
/// parts, and a part's counts, once read, hold as long as it is active. A check lists the
/// active parts of the range's partitions (`system.parts`: a few milliseconds) and counts
/// only parts it has not counted yet, where the statement it replaces ([`sql::coverage`])
/// read the time of every event of the range. Where `events` is `Distributed` (a cluster:
/// its parts live on the shards) the check stays that statement.
struct PartCounts {
    /// Whether `events` here is a MergeTree table (asked once).
    listable: OnceCell<bool>,
    days: Mutex<HashMap<PartKey, DayEvents>>,
    counted: prometheus::IntCounter,
    reused: prometheus::IntCounter,
}

/// A part as `system.parts` lists it: partition, name, rows, modification time. The name
/// alone identifies a part's content; rows and time guard against a name used again after
/// a partition was dropped and the server restarted.
type PartKey = (String, String, u64, u32);
/// Parts counted at once (each its own statement).
const PARALLEL_COUNTS: usize = 4;
/// Parts whose counts are kept at most (each a few hundred bytes).
const MAX_PARTS: usize = 50_000;
/// A part's events per UTC day.
type DayEvents = Arc<[(u32, u64)]>;

#[derive(Debug, Row, Deserialize)]
struct Part {
    name: String,
    rows: u64,
    mtime: u32,
    partition: String,
}

#[derive(Debug, Row, Deserialize)]
struct PartDay {
    day: u32,
    n: u64,
}

#[derive(Debug, Row, Deserialize)]
struct Build {
    day: u32,
    build: u64,
    n: u64,
}

#[derive(Debug, Row, Deserialize)]
struct Engine {
    engine: String,
}

impl PartCounts {
    async fn listable(&self, client: &clickhouse::Client) -> bool {
        *self
            .listable
            .get_or_init(|| async {
                let s = sql::Statement {
                    sql: sql::EVENTS_ENGINE.into(),
                    binds: Vec::new(),
                };
                match s.query(client).fetch_all::<Engine>().await {
                    Ok(rows) => rows.first().is_some_and(|r| r.engine.ends_with("MergeTree")),
                    Err(error) => {
                        tracing::warn!(message = "Asking the engine of events failed; coverage checks count events.", error = %error);
                        false
                    }
                }
            })
            .await
    }

    /// Whole UTC days of `scope` and their events, from the parts of `events`; `None` when a
    /// part changed while it was counted (merged away: the caller counts with one statement).
    async fn day_events(
        &self,
        client: &clickhouse::Client,
        scope: &Scope<'_>,
    ) -> Result<Option<BTreeMap<u32, u64>>, clickhouse::error::Error> {
        let whole = whole_days(scope);
        if whole.is_empty() {
            return Ok(Some(BTreeMap::new()));
        }
        let mut months: Vec<u32> = whole.clone().map(month_of_day).collect();
        months.dedup();
        let partitions: Vec<String> = months
            .iter()
            .map(|m| sql::events_partition(scope.site_id, *m))
            .collect();
        let parts: Vec<Part> = sql::event_parts(&partitions)
            .query(client)
            .fetch_all()
            .await?;
        let keys: Vec<PartKey> = parts
            .into_iter()
            .map(|p| (p.partition, p.name, p.rows, p.mtime))
            .collect();
        let missing: Vec<&PartKey> = {
            let days = self.days.lock().unwrap_or_else(|e| e.into_inner());
            keys.iter().filter(|k| !days.contains_key(*k)).collect()
        };
        self.reused.inc_by((keys.len() - missing.len()) as u64);
        self.counted.inc_by(missing.len() as u64);
        if !missing.is_empty() {
            // One statement per part, a few at a time (the first check of a range counts
            // every part of its months).
            let queries: Vec<_> = missing
                .iter()
                .map(|k| {
                    sql::part_day_counts(scope.site_id, &k.1)
                        .query(client)
                        .fetch_all::<PartDay>()
                })
                .collect();
            let counts: Vec<Vec<PartDay>> = futures::stream::iter(queries)
                .buffered(PARALLEL_COUNTS)
                .try_collect()
                .await?;
            let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
            // Parts of ranges no longer asked for stay until their partition is checked
            // again: past a bound, everything goes (and is counted again when needed).
            if days.len() + missing.len() > MAX_PARTS {
                days.clear();
            }
            for (k, found) in missing.iter().zip(counts) {
                // A part merged away between the listing and the count reads as fewer rows
                // than listed: nothing is kept, and this check counts with one statement.
                if found.iter().map(|r| r.n).sum::<u64>() != k.2 {
                    return Ok(None);
                }
                let found: Vec<(u32, u64)> = found.iter().map(|r| (r.day, r.n)).collect();
                days.insert((*k).clone(), found.into());
            }
        }
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        // Parts of these partitions no longer active are forgotten.
        let listed: HashSet<&PartKey> = keys.iter().collect();
        days.retain(|k, _| !partitions.contains(&k.0) || listed.contains(k));
        let mut events = BTreeMap::new();
        for k in &keys {
            for (day, n) in days.get(k).map(|d| d.iter()).into_iter().flatten() {
                if whole.contains(day) {
                    *events.entry(*day).or_insert(0) += n;
                }
            }
        }
        Ok(Some(events))
    }
}

/// The UTC days wholly inside the scope's range.
fn whole_days(scope: &Scope<'_>) -> std::ops::Range<u32> {
    scope.from.div_ceil(86_400)..scope.to / 86_400
}

/// `toYYYYMM` of a UTC day (days since 1970-01-01).
fn month_of_day(day: u32) -> u32 {
    let start = chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .expect("a u32 day is a valid time");
    crate::store::lifecycle::month_of(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(from: u32, to: u32) -> Scope<'static> {
        Scope {
            site_id: "site-1",
            from,
            to,
            filters: &[],
        }
    }

    #[test]
    fn only_days_the_range_holds_whole_are_counted_from_parts() {
        let d = 20_000 * 86_400;
        assert_eq!(whole_days(&scope(d, d + 3 * 86_400)), 20_000..20_003);
        // A day the range cuts at either end is left to the raw statements.
        assert_eq!(
            whole_days(&scope(d + 1, d + 3 * 86_400 - 1)),
            20_001..20_002
        );
        assert!(whole_days(&scope(d + 3_600, d + 7_200)).is_empty());
        assert!(whole_days(&scope(d, d)).is_empty());
    }

    #[test]
    fn a_day_falls_in_its_utc_month() {
        // 2026-11-30, 2026-12-01, 2024-02-29.
        assert_eq!(month_of_day(20_787), 202_611);
        assert_eq!(month_of_day(20_788), 202_612);
        assert_eq!(month_of_day(19_782), 202_402);
        assert_eq!(
            sql::events_partition("site-1", 202_611),
            "('site-1',202611)"
        );
        assert!(sql::partition_needs_no_quoting("site-1.example_a"));
        assert!(!sql::partition_needs_no_quoting("it's"));
    }
}

/// Removes a finished (or abandoned) check from the in-flight map.
struct FlightGuard<'a> {
    db: &'a StatsDb,
    key: RangeKey,
    flight: SharedCoverage,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.db.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|f| Shared::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

#[derive(Debug, Row, Deserialize)]
struct Covered {
    day: u32,
    build: u64,
}

/// The (day, build) pairs of the scope whose latest build holds exactly the day's events:
/// from the parts of `events` where they can be listed, else as [`sql::coverage`] counts
/// them. Only whole days of the range count from parts (a day the range cuts is read raw;
/// [`sql::coverage`] would take it when every event of that day falls inside the range).
async fn check(
    client: &clickhouse::Client,
    parts: &PartCounts,
    scope: &Scope<'_>,
) -> Result<Vec<(u32, u64)>, clickhouse::error::Error> {
    if parts.listable(client).await && sql::partition_needs_no_quoting(scope.site_id) {
        let builds = async {
            sql::latest_builds(scope)
                .query(client)
                .fetch_all::<Build>()
                .await
        };
        let (events, builds) = tokio::try_join!(parts.day_events(client, scope), builds)?;
        if let Some(events) = events {
            return Ok(builds
                .into_iter()
                .filter(|b| events.get(&b.day) == Some(&b.n))
                .map(|b| (b.day, b.build))
                .collect());
        }
    }
    let rows = sql::coverage(scope)
        .query(client)
        .fetch_all::<Covered>()
        .await?;
    Ok(rows.iter().map(|r| (r.day, r.build)).collect())
}

/// The days of an unfiltered scope that the visit rollup answers exactly (none for a
/// filtered scope: rollups hold no event dimensions). A failing check (e.g. a schema from
/// before the rollup) reads everything from events.
pub async fn coverage(db: &StatsDb, scope: &Scope<'_>) -> sql::Coverage {
    if !scope.filters.is_empty() {
        return sql::Coverage::default();
    }
    let key = (scope.site_id.to_owned(), scope.from, scope.to);
    let (flight, _guard) = {
        let mut map = db.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(flight) => {
                db.checks_joined.inc();
                (flight.clone(), None)
            }
            None => {
                db.checks_run.inc();
                let (client, parts) = (db.client.clone(), db.parts.clone());
                let (site, from, to) = key.clone();
                let flight = async move {
                    let scope = Scope {
                        site_id: &site,
                        from,
                        to,
                        filters: &[],
                    };
                    match check(&client, &parts, &scope).await {
                        Ok(days) => sql::Coverage::of(&scope, &days),
                        Err(error) => {
                            tracing::warn!(message = "Checking the visit rollup failed; reading events.", error = %error);
                            sql::Coverage::default()
                        }
                    }
                }
                .boxed()
                .shared();
                map.insert(key.clone(), flight.clone());
                let guard = FlightGuard {
                    db,
                    key: key.clone(),
                    flight: flight.clone(),
                };
                (flight, Some(guard))
            }
        }
    };
    flight.await
}
