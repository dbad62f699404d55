//! The stats endpoints' answers, computed from the statements in [`crate::sql::stats`]: the
//! request's validation is in [`request`], the rollup coverage check in [`coverage`], how
//! answers are written (rates, JSON and CSV tables) in [`format`].
//!
//! Visits are derived at query time (the tracker keeps no session id): one visitor hash's
//! events, ordered by time, form one visit until a gap of more than 30 minutes. Since the
//! visitor hash rotates daily (UTC), a visit also ends at UTC midnight. Filters on event
//! dimensions select events before visits are formed, so visit metrics under such a filter
//! describe the matching events; `entry_page` / `exit_page` filters then keep the whole visits
//! whose first / last page matches.

mod coverage;
pub mod format;
mod request;

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use clickhouse::Row;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::filter::Property;
use super::period::{self, BucketSlot};
use crate::sql::stats as sql;
pub use coverage::{StatsDb, coverage};
use format::{bounce_rate, change, ratio, views_per_visit, visit_duration};
pub use request::{
    DEFAULT_LIMIT, FunnelRef, Instants, MAX_LIMIT, MAX_PAGE, StatsEndpoint, StatsRequest,
};

/// Realtime window: events of the last five minutes (and up to five minutes ahead, for
/// senders whose clocks run fast; the edge refuses anything further ahead).
pub const REALTIME_WINDOW_SECS: i64 = 300;

async fn fetch_all<T>(db: &StatsDb, s: &sql::Statement) -> Result<Vec<T>, ApiError>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    Ok(s.query(&db.client).fetch_all::<T>().await?)
}

/// Totals of one range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Row, Deserialize)]
pub struct Totals {
    pub visitors: u64,
    pub visits: u64,
    pub pageviews: u64,
    pub events: u64,
    pub bounces: u64,
    pub duration: u64,
    pub conversions: u64,
    pub converted_visitors: u64,
}

/// Engagement of one range's pages: visitor and page pairs with engagement events, and their
/// engaged time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Row, Deserialize)]
pub struct EngagementTotals {
    pub pages: u64,
    pub engaged_ms: u64,
}

/// Engagement of the pages of `paths`, each with the columns [`ENGAGEMENT_COLUMNS`].
#[derive(Debug, Row, Deserialize)]
struct PageEngagement {
    value: String,
    visitors: u64,
    engaged_ms: u64,
    scroll: u64,
}

/// The columns a page breakdown adds from engagement events.
const ENGAGEMENT_COLUMNS: [&str; 2] = ["time_on_page", "scroll_depth"];

/// Mean engaged time per visitor and page, whole seconds; null without engagement events
/// (a page whose tracker sends none, or data from before them).
fn time_on_page(engaged_ms: u64, pages: u64) -> Json {
    if pages == 0 {
        return Json::Null;
    }
    ratio(engaged_ms, pages, 0.001, 0).into()
}

/// Whether time on page and scroll depth are answered for a scope: not under an entry or
/// exit filter, which keeps whole visits by their events, not the engagement events of the
/// pages they saw (those count only in their visit's bounce and duration).
fn engagement_applies(scope: &sql::Scope<'_>) -> bool {
    scope.filters.iter().all(|f| f.on == sql::FilterOn::Event)
}

/// The scope's engagement totals, `None` where [`engagement_applies`] says no.
async fn engagement_totals(
    db: &StatsDb,
    scope: &sql::Scope<'_>,
    cover: &sql::Coverage,
) -> Result<Option<EngagementTotals>, ApiError> {
    if !engagement_applies(scope) {
        return Ok(None);
    }
    let s = sql::engagement_totals(scope, cover);
    Ok(Some(
        fetch_all::<EngagementTotals>(db, &s)
            .await?
            .pop()
            .unwrap_or_default(),
    ))
}

/// A page breakdown's rows with [`ENGAGEMENT_COLUMNS`] appended: time on page and scroll
/// depth per visitor, null without engagement (or under visit filters).
async fn add_page_engagement(
    db: &StatsDb,
    scope: &sql::Scope<'_>,
    cover: &sql::Coverage,
    rows: &mut [Vec<Json>],
) -> Result<(), ApiError> {
    let paths: Vec<String> = rows
        .iter()
        .map(|r| r[0].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut found: HashMap<String, PageEngagement> = HashMap::new();
    if !paths.is_empty() && engagement_applies(scope) {
        // The rollup's coverage applies to an unfiltered scope only.
        let none = sql::Coverage::default();
        let cover = if scope.filters.is_empty() {
            cover
        } else {
            &none
        };
        let s = sql::engagement_by_page(scope, &paths, cover);
        for e in fetch_all::<PageEngagement>(db, &s).await? {
            found.insert(e.value.clone(), e);
        }
    }
    for row in rows {
        let e = row[0].as_str().and_then(|p| found.get(p));
        row.push(e.map_or(Json::Null, |e| time_on_page(e.engaged_ms, e.visitors)));
        row.push(e.map_or(Json::Null, |e| ratio(e.scroll, e.visitors, 1.0, 0).into()));
    }
    Ok(())
}

impl Totals {
    /// Metric name and value, in the order the API and the dashboard show them; with the
    /// engagement totals, `time_on_page` last (null without them).
    pub fn metrics_with(&self, engagement: Option<&EngagementTotals>) -> Vec<(&'static str, Json)> {
        let mut m = self.metrics();
        m.push((
            "time_on_page",
            engagement.map_or(Json::Null, |e| time_on_page(e.engaged_ms, e.pages)),
        ));
        m
    }

    /// Metric name and value, in the order the API and the dashboard show them.
    pub fn metrics(&self) -> Vec<(&'static str, Json)> {
        vec![
            ("visitors", self.visitors.into()),
            ("visits", self.visits.into()),
            ("pageviews", self.pageviews.into()),
            (
                "views_per_visit",
                views_per_visit(self.pageviews, self.visits).into(),
            ),
            ("bounce_rate", bounce_rate(self.bounces, self.visits).into()),
            (
                "visit_duration",
                visit_duration(self.duration, self.visits).into(),
            ),
            ("events", self.events.into()),
            ("conversions", self.conversions.into()),
            (
                "conversion_rate",
                ratio(self.converted_visitors, self.visitors, 100.0, 1).into(),
            ),
        ]
    }
}

pub async fn aggregate(db: &StatsDb, req: &StatsRequest) -> Result<Json, ApiError> {
    let load = |from, to| async move {
        let scope = req.scope_of(from, to);
        let cover = coverage(db, &scope).await;
        let s = if cover.is_empty() {
            sql::aggregate(&scope)
        } else {
            sql::aggregate_rolled_up(&scope, &cover)
        };
        let (totals, engagement) = tokio::try_join!(
            async {
                Ok::<_, ApiError>(fetch_all::<Totals>(db, &s).await?.pop().unwrap_or_default())
            },
            engagement_totals(db, &scope, &cover),
        )?;
        Ok::<_, ApiError>(totals.metrics_with(engagement.as_ref()))
    };
    let (now, before) = match &req.comparison {
        Some(c) => {
            let (a, b) = tokio::try_join!(load(req.from, req.to), load(c.from, c.to))?;
            (a, Some(b))
        }
        None => (load(req.from, req.to).await?, None),
    };
    let mut results = serde_json::Map::new();
    for (i, (name, value)) in now.into_iter().enumerate() {
        let mut m = json!({ "value": value });
        if let Some(prev) = &before {
            let p = &prev[i].1;
            m["previous"] = p.clone();
            m["change"] = match (value.as_f64(), p.as_f64()) {
                (Some(v), Some(p)) => change(v, p),
                _ => Json::Null,
            };
        }
        results.insert(name.to_owned(), m);
    }
    let mut body = req.head();
    if let Some(c) = &req.comparison {
        // `previous` (the range, and each metric's earlier value) is what v1 answered for
        // compare=previous_period; every mode keeps it, `comparison` says which range it is.
        body["previous"] = json!({"from": c.from.to_rfc3339(), "to": c.to.to_rfc3339()});
        body["comparison"] = c.head();
    }
    body["results"] = results.into();
    Ok(body)
}

#[derive(Debug, Row, Deserialize)]
struct EventBucket {
    bucket: String,
    visitors: u64,
    pageviews: u64,
    events: u64,
}

#[derive(Debug, Row, Deserialize)]
struct VisitBucket {
    bucket: String,
    visits: u64,
    bounces: u64,
    duration: u64,
}

/// A bucket of whole visits: [`EventBucket`]'s counts and [`VisitBucket`]'s from one row.
#[derive(Debug, Row, Deserialize)]
struct WholeBucket {
    bucket: String,
    visitors: u64,
    pageviews: u64,
    events: u64,
    visits: u64,
    bounces: u64,
    duration: u64,
}

pub async fn timeseries(db: &StatsDb, req: &StatsRequest) -> Result<Json, ApiError> {
    let mut body = req.head();
    body["interval"] = period::interval_name(req.interval).into();
    match &req.comparison {
        None => body["results"] = series(db, req, req.from, req.to).await?.into(),
        Some(c) => {
            // Two series, each in its own buckets; the comparison's n-th bucket is drawn
            // beside the period's n-th (a custom range may have more or fewer).
            let (now, before) = tokio::try_join!(
                series(db, req, req.from, req.to),
                series(db, req, c.from, c.to)
            )?;
            body["results"] = now.into();
            let mut comparison = c.head();
            comparison["results"] = before.into();
            body["comparison"] = comparison;
        }
    }
    Ok(body)
}

/// One timeseries over `[from, to)` in the request's buckets, every bucket present.
async fn series(
    db: &StatsDb,
    req: &StatsRequest,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Json>, ApiError> {
    let slots: Vec<BucketSlot> = period::buckets(req.interval, req.tz, from, to)?;
    let tz = req.tz.name();
    let scope = req.scope_of(from, to);
    let (events, visits) = if req.interval.holds_whole_visits(tz)
        && let cover = coverage(db, &scope).await
        && !cover.is_empty()
    {
        // Every bucket holds whole visits: one pass over the visit rows answers both kinds.
        let s = sql::timeseries_visits_rolled_up(&scope, req.interval, tz, &cover, true);
        fetch_all::<WholeBucket>(db, &s)
            .await?
            .into_iter()
            .map(|b| {
                let visits = VisitBucket {
                    bucket: b.bucket.clone(),
                    visits: b.visits,
                    bounces: b.bounces,
                    duration: b.duration,
                };
                let events = EventBucket {
                    bucket: b.bucket,
                    visitors: b.visitors,
                    pageviews: b.pageviews,
                    events: b.events,
                };
                (events, visits)
            })
            .unzip()
    } else {
        let by_event = sql::timeseries_events(&scope, req.interval, tz);
        let by_visit = async {
            let cover = coverage(db, &scope).await;
            let s = if cover.is_empty() {
                sql::timeseries_visits(&scope, req.interval, tz)
            } else {
                sql::timeseries_visits_rolled_up(&scope, req.interval, tz, &cover, false)
            };
            fetch_all::<VisitBucket>(db, &s).await
        };
        tokio::try_join!(fetch_all::<EventBucket>(db, &by_event), by_visit)?
    };
    let events: HashMap<String, EventBucket> =
        events.into_iter().map(|e| (e.bucket.clone(), e)).collect();
    let visits: HashMap<String, VisitBucket> =
        visits.into_iter().map(|v| (v.bucket.clone(), v)).collect();
    let results: Vec<Json> = slots
        .iter()
        .map(|slot| {
            let e = events.get(&slot.key);
            let v = visits.get(&slot.key);
            let (visitors, pageviews, evs) =
                e.map_or((0, 0, 0), |e| (e.visitors, e.pageviews, e.events));
            let (n, bounces, duration) = v.map_or((0, 0, 0), |v| (v.visits, v.bounces, v.duration));
            json!({
                "date": slot.label,
                "visitors": visitors,
                "visits": n,
                "pageviews": pageviews,
                "events": evs,
                "views_per_visit": views_per_visit(pageviews, n),
                "bounce_rate": bounce_rate(bounces, n),
                "visit_duration": visit_duration(duration, n),
            })
        })
        .collect();
    Ok(results)
}

#[derive(Debug, Row, Deserialize)]
struct EventGroup {
    value: String,
    visitors: u64,
    pageviews: u64,
    events: u64,
}

#[derive(Debug, Row, Deserialize)]
struct VisitGroup {
    value: String,
    visitors: u64,
    visits: u64,
    pageviews: u64,
    bounces: u64,
    duration: u64,
}

/// A breakdown's table: column names, the rows (JSON values, `value` first), whether more
/// pages exist, and with `compare` each row's values in the compared range (zeros for a value
/// that had none then).
pub struct BreakdownTable {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Json>>,
    pub has_more: bool,
    pub compared: Option<Vec<Vec<Json>>>,
}

/// The request's page of breakdown rows, and with `compare` the same values' rows in the
/// compared range (one more statement, limited to those values).
pub async fn breakdown_rows(db: &StatsDb, req: &StatsRequest) -> Result<BreakdownTable, ApiError> {
    let offset = u64::from(req.page - 1) * u64::from(req.limit);
    let fetch = u64::from(req.limit) + 1;
    let (columns, mut rows) = grouped(db, req, req.from, req.to, offset, fetch, None).await?;
    let has_more = rows.len() as u64 > u64::from(req.limit);
    rows.truncate(req.limit as usize);
    let compared = match &req.comparison {
        Some(c) if !rows.is_empty() => {
            let values: Vec<String> = rows
                .iter()
                .map(|r| r[0].as_str().unwrap_or_default().to_owned())
                .collect();
            let n = values.len() as u64;
            let (_, earlier) = grouped(db, req, c.from, c.to, 0, n, Some(&values)).await?;
            let mut by_value: HashMap<String, Vec<Json>> = earlier
                .into_iter()
                .map(|r| (r[0].as_str().unwrap_or_default().to_owned(), r))
                .collect();
            Some(
                values
                    .iter()
                    .map(|v| {
                        by_value.remove(v).unwrap_or_else(|| {
                            // A value with no earlier row: nothing counted, no engagement.
                            let mut zero = vec![Json::from(v.as_str())];
                            zero.extend(columns[1..].iter().map(|c| {
                                if ENGAGEMENT_COLUMNS.contains(c) {
                                    Json::Null
                                } else {
                                    Json::from(0)
                                }
                            }));
                            zero
                        })
                    })
                    .collect(),
            )
        }
        Some(_) => Some(Vec::new()),
        None => None,
    };
    Ok(BreakdownTable {
        columns,
        rows,
        has_more,
        compared,
    })
}

/// Breakdown rows over `[from, to)`: `fetch` rows from `offset`, most visitors first, or with
/// `only` the rows of those values.
async fn grouped(
    db: &StatsDb,
    req: &StatsRequest,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    offset: u64,
    fetch: u64,
    only: Option<&[String]>,
) -> Result<(Vec<&'static str>, Vec<Vec<Json>>), ApiError> {
    let property = req.property.as_ref().expect("breakdown has a property");
    let scope = req.scope_of(from, to);
    let page = sql::Page {
        offset,
        limit: fetch,
        only,
    };
    Ok(match property {
        Property::Event(column) => {
            // Pages (or event names) of the visits an entry/exit page filter keeps can come
            // from the visit rows' event arrays; other columns from `day_values`, unfiltered.
            let in_visits = !scope.filters.is_empty()
                && scope.filters.iter().all(|f| f.on != sql::FilterOn::Event)
                && matches!(column, sql::Column::Path | sql::Column::EventName);
            // Only a column the rollup holds is worth checking the coverage for.
            let cover = if in_visits {
                coverage(
                    db,
                    &sql::Scope {
                        filters: &[],
                        ..scope
                    },
                )
                .await
            } else {
                match sql::rollup_dimension(column) {
                    Some(_) => coverage(db, &scope).await,
                    None => sql::Coverage::default(),
                }
            };
            let rolled_up = match (cover.is_empty(), in_visits) {
                (true, _) => None,
                (false, true) => {
                    sql::breakdown_events_in_visits_rolled_up(&scope, column, &page, &cover)
                }
                (false, false) => sql::breakdown_events_rolled_up(&scope, column, &page, &cover),
            };
            let s = rolled_up.unwrap_or_else(|| sql::breakdown_events(&scope, column, &page));
            let rows = fetch_all::<EventGroup>(db, &s).await?;
            let mut columns = vec!["value", "visitors", "pageviews", "events"];
            let mut rows: Vec<Vec<Json>> = rows
                .into_iter()
                .map(|r| {
                    vec![
                        r.value.into(),
                        r.visitors.into(),
                        r.pageviews.into(),
                        r.events.into(),
                    ]
                })
                .collect();
            if *column == sql::Column::Path {
                columns.extend(ENGAGEMENT_COLUMNS);
                add_page_engagement(db, &scope, &cover, &mut rows).await?;
            }
            (columns, rows)
        }
        Property::Visit(attr) => {
            let cover = match sql::rollup_column(attr) {
                Some(_) => coverage(db, &scope).await,
                None => sql::Coverage::default(),
            };
            let s = match sql::breakdown_visits_rolled_up(&scope, attr, &page, &cover) {
                Some(s) if !cover.is_empty() => s,
                _ => sql::breakdown_visits(&scope, attr, &page),
            };
            let rows = fetch_all::<VisitGroup>(db, &s).await?;
            (
                vec![
                    "value",
                    "visitors",
                    "visits",
                    "pageviews",
                    "bounce_rate",
                    "visit_duration",
                ],
                rows.into_iter()
                    .map(|r| {
                        vec![
                            r.value.into(),
                            r.visitors.into(),
                            r.visits.into(),
                            r.pageviews.into(),
                            bounce_rate(r.bounces, r.visits).into(),
                            visit_duration(r.duration, r.visits).into(),
                        ]
                    })
                    .collect(),
            )
        }
    })
}

/// The change in percent of each metric of a row (every column but `value`) against the
/// same row in the compared range; null where either has no value.
fn row_changes(now: &[Json], earlier: &[Json]) -> Vec<Json> {
    (1..now.len())
        .map(|j| match (now[j].as_f64(), earlier[j].as_f64()) {
            (Some(n), Some(e)) => change(n, e),
            _ => Json::Null,
        })
        .collect()
}

pub async fn breakdown(
    db: &StatsDb,
    req: &StatsRequest,
    property_name: &str,
) -> Result<Json, ApiError> {
    let BreakdownTable {
        columns,
        rows,
        has_more,
        compared,
    } = breakdown_rows(db, req).await?;
    // Each row's values in the compared range and their change in percent.
    let comparisons: Option<Vec<Json>> = compared.map(|compared| {
        rows.iter()
            .zip(compared)
            .map(|(now, earlier)| {
                let changes = row_changes(now, &earlier);
                let mut c: serde_json::Map<String, Json> = columns[1..]
                    .iter()
                    .map(|m| (*m).to_owned())
                    .zip(earlier.into_iter().skip(1))
                    .collect();
                let changes: serde_json::Map<String, Json> = columns[1..]
                    .iter()
                    .map(|m| (*m).to_owned())
                    .zip(changes)
                    .collect();
                c.insert("change".into(), changes.into());
                c.into()
            })
            .collect()
    });
    let mut results = format::table_json(&columns, rows);
    for (row, c) in results.iter_mut().zip(comparisons.into_iter().flatten()) {
        row["comparison"] = c;
    }
    let mut body = req.head();
    body["property"] = property_name.into();
    body["page"] = req.page.into();
    body["limit"] = req.limit.into();
    body["has_more"] = has_more.into();
    if let Some(c) = &req.comparison {
        body["comparison"] = c.head();
    }
    body["results"] = results.into();
    Ok(body)
}

/// A breakdown as CSV ([`format::table_csv`]); with `compare`, each metric's compared value
/// and change follow the row's own (`visitors_comparison`, `visitors_change`, …).
pub async fn breakdown_csv(
    db: &StatsDb,
    req: &StatsRequest,
    property_name: &str,
) -> Result<String, ApiError> {
    let table = breakdown_rows(db, req).await?;
    let Some(compared) = table.compared else {
        return Ok(format::table_csv(
            &table.columns,
            &table.rows,
            property_name,
        ));
    };
    let metrics = &table.columns[1..];
    let mut names: Vec<String> = table.columns.iter().map(|c| (*c).to_owned()).collect();
    names.extend(metrics.iter().map(|m| format!("{m}_comparison")));
    names.extend(metrics.iter().map(|m| format!("{m}_change")));
    let columns: Vec<&str> = names.iter().map(String::as_str).collect();
    let rows: Vec<Vec<Json>> = table
        .rows
        .into_iter()
        .zip(compared)
        .map(|(mut row, earlier)| {
            let changes = row_changes(&row, &earlier);
            row.extend(earlier.into_iter().skip(1));
            row.extend(changes);
            row
        })
        .collect();
    Ok(format::table_csv(&columns, &rows, property_name))
}

#[derive(Debug, Row, Deserialize)]
struct Realtime {
    visitors: u64,
    pageviews: u64,
}

pub async fn realtime(
    db: &StatsDb,
    req: &StatsRequest,
    now: DateTime<Utc>,
) -> Result<Json, ApiError> {
    let from = now - Duration::seconds(REALTIME_WINDOW_SECS);
    let to = now + Duration::seconds(REALTIME_WINDOW_SECS);
    let s = sql::realtime(&req.scope_of(from, to));
    let r = fetch_all::<Realtime>(db, &s)
        .await?
        .pop()
        .unwrap_or(Realtime {
            visitors: 0,
            pageviews: 0,
        });
    Ok(json!({
        "site_id": req.site_id,
        "visitors": r.visitors,
        "pageviews": r.pageviews,
        "window_seconds": REALTIME_WINDOW_SECS,
        "at": now.to_rfc3339(),
    }))
}

/// Sites a principal may pick in the dashboard.
pub fn sites_body(sites: BTreeSet<String>) -> Json {
    json!({ "sites": sites.into_iter().collect::<Vec<_>>() })
}

#[derive(Debug, Row, Deserialize)]
struct GoalCount {
    goal: u32,
    visitors: u64,
    conversions: u64,
}

/// [`sql::goal_totals_rolled_up`]'s one row: per goal, in order.
#[derive(Debug, Row, Deserialize)]
struct GoalLists {
    /// The scope's visitors.
    everyone: u64,
    visitors: Vec<u64>,
    conversions: Vec<u64>,
}

#[derive(Debug, Row, Deserialize)]
struct GoalRevenue {
    goal: u32,
    currency: String,
    /// The sum's `Decimal(38, 4)`: its RowBinary is the i128 of 1/10,000 units.
    total: i128,
    events: u64,
}

#[derive(Debug, Row, Deserialize)]
struct ValueRevenue {
    value: String,
    currency: String,
    total: i128,
    events: u64,
}

/// One currency's revenue as the API writes it: the exact total and the average per revenue
/// conversion (rounded half away from zero to 4 decimals) as decimal strings.
fn revenue_json(currency: &str, e4: i128, events: u64) -> Json {
    let n = i128::from(events.max(1));
    let average = (2 * e4 + n) / (2 * n);
    json!({
        "currency": currency,
        "total": ta_shared::currency::format_e4(e4),
        "average": ta_shared::currency::format_e4(average),
        "events": events,
    })
}

#[derive(Debug, Row, Deserialize)]
struct GoalGroup {
    value: String,
    visitors: u64,
    converted: u64,
    conversions: u64,
}

/// Revenue per row of a goals table, by currency (JSON only: a CSV row has one value per cell).
type Revenues = Vec<Vec<Json>>;

/// `/v1/stats/goals` as a table: without `property`, one row per goal of the request (every
/// goal, in the file's order, with zeros for goals nobody reached): unique converting
/// visitors, conversions, and the conversion rate against all the scope's visitors (given
/// back as the third value); with `goal` and `property`, one row per value of the dimension
/// with a conversion, its rate against the visitors of that value (the group's rate), paged.
pub async fn goal_rows(
    db: &StatsDb,
    req: &StatsRequest,
) -> Result<(Vec<&'static str>, Vec<Vec<Json>>, u64, bool, Revenues), ApiError> {
    let scope = req.scope();
    let Some(property) = &req.property else {
        let tests: Vec<sql::GoalTest> = req.goals.iter().map(|g| g.test.clone()).collect();
        // Counts per goal and the scope's visitors: from the rollup's visits (one statement
        // gives both) where it covers the range, else from events.
        let totals = async {
            let everyone = sql::realtime(&scope);
            let all = async {
                let rows = fetch_all::<Realtime>(db, &everyone).await?;
                Ok::<_, ApiError>(rows.first().map_or(0, |r| r.visitors))
            };
            if tests.is_empty() {
                return Ok((Vec::new(), all.await?));
            }
            let cover = coverage(db, &scope).await;
            if cover.is_empty() {
                let raw = sql::goal_totals(&scope, &tests);
                let counts = fetch_all::<GoalCount>(db, &raw);
                return tokio::try_join!(counts, all);
            }
            let s = sql::goal_totals_rolled_up(&scope, &tests, &cover);
            let Some(r) = fetch_all::<GoalLists>(db, &s).await?.pop() else {
                return Ok((Vec::new(), 0));
            };
            let counts = r
                .visitors
                .into_iter()
                .zip(r.conversions)
                .enumerate()
                .filter(|(_, (_, n))| *n > 0)
                .map(|(i, (visitors, conversions))| GoalCount {
                    goal: i as u32 + 1,
                    visitors,
                    conversions,
                })
                .collect();
            Ok((counts, r.everyone))
        };
        let revenue = async {
            match sql::goal_revenue(&scope, &tests) {
                None => Ok(Vec::new()),
                Some(s) => fetch_all::<GoalRevenue>(db, &s).await,
            }
        };
        let ((counts, visitors), revenue) = tokio::try_join!(totals, revenue)?;
        let mut revenues: Revenues = vec![Vec::new(); req.goals.len()];
        for r in &revenue {
            if let Some(slot) = revenues.get_mut(r.goal as usize - 1) {
                slot.push(revenue_json(&r.currency, r.total, r.events));
            }
        }
        let counts: HashMap<u32, &GoalCount> = counts.iter().map(|c| (c.goal, c)).collect();
        let rows = req
            .goals
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let (u, n) = counts
                    .get(&(i as u32 + 1))
                    .map_or((0, 0), |c| (c.visitors, c.conversions));
                vec![
                    g.id.clone().into(),
                    g.name.clone().into(),
                    u.into(),
                    n.into(),
                    ratio(u, visitors, 100.0, 1).into(),
                ]
            })
            .collect();
        let columns = vec!["goal", "name", "visitors", "conversions", "conversion_rate"];
        return Ok((columns, rows, visitors, false, revenues));
    };
    let goal = &req.goals.first().expect("a goal with property").test;
    let offset = u64::from(req.page - 1) * u64::from(req.limit);
    let fetch = u64::from(req.limit) + 1;
    // Visit dimensions read the rollup's visits where it covers the range.
    let cover = match property {
        Property::Visit(attr) if sql::rollup_column(attr).is_some() => coverage(db, &scope).await,
        _ => sql::Coverage::default(),
    };
    let s = match property {
        Property::Event(column) => sql::goal_breakdown_events(&scope, goal, column, offset, fetch),
        Property::Visit(attr) => match cover.is_empty() {
            false => {
                sql::goal_breakdown_visits_rolled_up(&scope, goal, attr, offset, fetch, &cover)
            }
            true => None,
        }
        .unwrap_or_else(|| sql::goal_breakdown_visits(&scope, goal, attr, offset, fetch)),
    };
    let mut groups = fetch_all::<GoalGroup>(db, &s).await?;
    groups.truncate(req.limit as usize + 1);
    let values: Vec<String> = groups
        .iter()
        .take(req.limit as usize)
        .map(|g| g.value.clone())
        .collect();
    let mut revenues: Revenues = vec![Vec::new(); values.len()];
    if !values.is_empty() && goal.can_carry_revenue() {
        let s = match property {
            Property::Event(column) => sql::goal_revenue_by_events(&scope, goal, column, &values),
            Property::Visit(attr) => match cover.is_empty() {
                false => sql::goal_revenue_by_visits_rolled_up(&scope, goal, attr, &values, &cover),
                true => None,
            }
            .unwrap_or_else(|| sql::goal_revenue_by_visits(&scope, goal, attr, &values)),
        };
        let index: HashMap<&str, usize> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_str(), i))
            .collect();
        for r in fetch_all::<ValueRevenue>(db, &s).await? {
            if let Some(&i) = index.get(r.value.as_str()) {
                revenues[i].push(revenue_json(&r.currency, r.total, r.events));
            }
        }
    }
    let mut rows: Vec<Vec<Json>> = groups
        .into_iter()
        .map(|r| {
            vec![
                r.value.into(),
                r.converted.into(),
                r.conversions.into(),
                ratio(r.converted, r.visitors, 100.0, 1).into(),
            ]
        })
        .collect();
    let has_more = rows.len() as u64 > u64::from(req.limit);
    rows.truncate(req.limit as usize);
    let columns = vec!["value", "visitors", "conversions", "conversion_rate"];
    Ok((columns, rows, 0, has_more, revenues))
}

/// `/v1/stats/goals` as JSON.
pub async fn goals(
    db: &StatsDb,
    req: &StatsRequest,
    property_name: &str,
) -> Result<Json, ApiError> {
    let (columns, rows, visitors, has_more, revenues) = goal_rows(db, req).await?;
    let mut body = req.head();
    match &req.property {
        None => body["visitors"] = visitors.into(),
        Some(_) => {
            let goal = req.goals.first().expect("a goal with property");
            body["goal"] = json!({"id": goal.id, "name": goal.name});
            body["property"] = property_name.into();
            body["page"] = req.page.into();
            body["limit"] = req.limit.into();
            body["has_more"] = has_more.into();
        }
    }
    let mut results = format::table_json(&columns, rows);
    for (row, revenue) in results.iter_mut().zip(revenues) {
        row["revenue"] = revenue.into();
    }
    body["results"] = results.into();
    Ok(body)
}

/// `/v1/stats/goals` as CSV ([`format::table_csv`]; revenue is in the JSON answer only).
pub async fn goals_csv(
    db: &StatsDb,
    req: &StatsRequest,
    property_name: &str,
) -> Result<String, ApiError> {
    let (columns, rows, _, _, _) = goal_rows(db, req).await?;
    Ok(format::table_csv(&columns, &rows, property_name))
}

#[derive(Debug, Row, Deserialize)]
struct FunnelCounts {
    visitors: u64,
    s1: u64,
    s2: u64,
    s3: u64,
    s4: u64,
    s5: u64,
    s6: u64,
    s7: u64,
    s8: u64,
}

/// `/v1/stats/funnel` as a table, one row per step: the visitors who reached it, the
/// conversion from the step before (for the first step: from all the funnel's visitors) and
/// from the first step, the visitors lost since the step before and that loss as a rate; and
/// the funnel's visitors (those of the period, under the filters).
async fn funnel_rows(
    db: &StatsDb,
    req: &StatsRequest,
) -> Result<(Vec<&'static str>, Vec<Vec<Json>>, u64), ApiError> {
    let steps: Vec<sql::GoalTest> = req.goals.iter().map(|g| g.test.clone()).collect();
    let scope = req.scope();
    let cover = coverage(db, &scope).await;
    let s = match cover.is_empty() {
        true => sql::funnel(&scope, &steps, req.within),
        false => sql::funnel_rolled_up(&scope, &steps, req.within, &cover),
    };
    let c = fetch_all::<FunnelCounts>(db, &s)
        .await?
        .pop()
        .unwrap_or(FunnelCounts {
            visitors: 0,
            s1: 0,
            s2: 0,
            s3: 0,
            s4: 0,
            s5: 0,
            s6: 0,
            s7: 0,
            s8: 0,
        });
    let reached = [c.s1, c.s2, c.s3, c.s4, c.s5, c.s6, c.s7, c.s8];
    let mut previous = c.visitors;
    let first = c.s1;
    let rows = req
        .goals
        .iter()
        .zip(reached)
        .enumerate()
        .map(|(i, (goal, n))| {
            let row = vec![
                (i + 1).into(),
                goal.id.clone().into(),
                goal.name.clone().into(),
                n.into(),
                ratio(n, previous, 100.0, 1).into(),
                ratio(n, first, 100.0, 1).into(),
                previous.saturating_sub(n).into(),
                ratio(previous.saturating_sub(n), previous, 100.0, 1).into(),
            ];
            previous = n;
            row
        })
        .collect();
    let columns = vec![
        "step",
        "goal",
        "name",
        "visitors",
        "conversion_from_previous",
        "conversion_from_first",
        "dropoff",
        "dropoff_rate",
    ];
    Ok((columns, rows, c.visitors))
}

/// `/v1/stats/funnel` as JSON.
pub async fn funnel(db: &StatsDb, req: &StatsRequest) -> Result<Json, ApiError> {
    let (columns, rows, visitors) = funnel_rows(db, req).await?;
    let def = req.funnel_def.as_ref().expect("a resolved funnel");
    let mut body = req.head();
    body["funnel"] = json!({
        "id": if def.id.is_empty() { Json::Null } else { def.id.clone().into() },
        "name": def.name,
        "steps": def.steps,
    });
    body["within"] = match req.within {
        sql::FunnelWithin::Visit => "visit",
        sql::FunnelWithin::Day => "day",
    }
    .into();
    body["visitors"] = visitors.into();
    body["results"] = format::table_json(&columns, rows).into();
    Ok(body)
}

/// `/v1/stats/funnel` as CSV.
pub async fn funnel_csv(db: &StatsDb, req: &StatsRequest) -> Result<String, ApiError> {
    let (columns, rows, _) = funnel_rows(db, req).await?;
    Ok(format::table_csv(&columns, &rows, "value"))
}

#[derive(Debug, Row, Deserialize)]
struct KeyGroup {
    value: String,
    visitors: u64,
    events: u64,
}

/// `/v1/stats/properties` as a table: the property keys seen, paged.
async fn property_rows(
    db: &StatsDb,
    req: &StatsRequest,
) -> Result<(Vec<&'static str>, Vec<Vec<Json>>, bool), ApiError> {
    let offset = u64::from(req.page - 1) * u64::from(req.limit);
    let s = sql::property_keys(&req.scope(), offset, u64::from(req.limit) + 1);
    let mut rows: Vec<Vec<Json>> = fetch_all::<KeyGroup>(db, &s)
        .await?
        .into_iter()
        .map(|r| vec![r.value.into(), r.visitors.into(), r.events.into()])
        .collect();
    let has_more = rows.len() as u64 > u64::from(req.limit);
    rows.truncate(req.limit as usize);
    Ok((vec!["value", "visitors", "events"], rows, has_more))
}

/// `/v1/stats/properties` as JSON.
pub async fn properties(db: &StatsDb, req: &StatsRequest) -> Result<Json, ApiError> {
    let (columns, rows, has_more) = property_rows(db, req).await?;
    let mut body = req.head();
    body["page"] = req.page.into();
    body["limit"] = req.limit.into();
    body["has_more"] = has_more.into();
    body["results"] = format::table_json(&columns, rows).into();
    Ok(body)
}

/// `/v1/stats/properties` as CSV.
pub async fn properties_csv(db: &StatsDb, req: &StatsRequest) -> Result<String, ApiError> {
    let (columns, rows, _) = property_rows(db, req).await?;
    Ok(format::table_csv(&columns, &rows, "key"))
}
