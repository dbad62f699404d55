//! The stats endpoints: request validation into [`StatsRequest`] and the answers, computed
//! from the statements in [`crate::sql::stats`].
//!
//! Visits are derived at query time (the tracker keeps no session id): one visitor hash's
//! events, ordered by time, form one visit until a gap of more than 30 minutes. Since the
//! visitor hash rotates daily (UTC), a visit also ends at UTC midnight. Filters on event
//! dimensions select events before visits are formed, so visit metrics under such a filter
//! describe the matching events; `entry_page` / `exit_page` filters then keep the whole visits
//! whose first / last page matches.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use clickhouse::Row;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::filter::{self, Property};
use super::period::{self, BucketSlot, DayRange, PeriodKind};
use crate::sql::stats::{self as sql, Bucket, EventFilter, Scope};

/// Realtime window: events of the last five minutes (and up to five minutes ahead, for
/// senders whose clocks run fast; the edge refuses anything further ahead).
pub const REALTIME_WINDOW_SECS: i64 = 300;
pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 1000;
pub const MAX_PAGE: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatsEndpoint {
    Aggregate,
    Timeseries,
    Breakdown,
    Realtime,
}

impl StatsEndpoint {
    pub fn name(self) -> &'static str {
        match self {
            Self::Aggregate => "aggregate",
            Self::Timeseries => "timeseries",
            Self::Breakdown => "breakdown",
            Self::Realtime => "realtime",
        }
    }

    /// Parameters this endpoint accepts (besides `share`, the share-link credential).
    pub fn params(self) -> &'static [&'static str] {
        const RANGE: [&str; 7] = [
            "site_id", "period", "date", "from", "to", "timezone", "filter",
        ];
        match self {
            Self::Aggregate => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], "compare",
            ],
            Self::Timeseries => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], "interval",
            ],
            Self::Breakdown => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], "property",
                "limit", "page", "format",
            ],
            Self::Realtime => &["site_id"],
        }
    }
}

/// A validated stats request. Its `Debug` text is the cache key: every field changes the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatsRequest {
    pub endpoint: StatsEndpoint,
    pub site_id: String,
    pub tz: Tz,
    pub period: PeriodKind,
    pub days: DayRange,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub previous: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub filters: Vec<EventFilter>,
    pub interval: Bucket,
    pub property: Option<Property>,
    pub limit: u32,
    pub page: u32,
    pub csv: bool,
}

fn parse_date(param: &'static str, v: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .filter(|_| v.len() == 10)
        .filter(|d| (1970..=2105).contains(&chrono::Datelike::year(d)))
        .ok_or_else(|| {
            ApiError::bad_param(param, "must be a date YYYY-MM-DD between 1970 and 2105")
        })
}

fn parse_bounded(param: &'static str, v: &str, max: u32) -> Result<u32, ApiError> {
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| ApiError::bad_param(param, format!("must be an integer from 1 to {max}")))
}

impl StatsRequest {
    /// Validate the query-string pairs of one endpoint. Unknown and repeated parameters are
    /// refused, so a typo never silently changes the answer.
    pub fn parse(
        endpoint: StatsEndpoint,
        pairs: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let allowed = endpoint.params();
        let mut single: HashMap<&str, &str> = HashMap::new();
        let mut filters = Vec::new();
        for (k, v) in pairs {
            if k == "share" {
                continue;
            }
            let Some(name) = allowed.iter().find(|a| **a == k) else {
                return Err(ApiError::BadParam {
                    param: "query",
                    rule: format!(
                        "`{}` is not a parameter of this endpoint (accepted: {})",
                        k.chars().take(40).collect::<String>(),
                        allowed.join(", ")
                    ),
                });
            };
            if *name == "filter" {
                if filters.len() == filter::MAX_FILTERS {
                    return Err(ApiError::bad_param(
                        "filter",
                        "at most 10 filters per request",
                    ));
                }
                filters.push(filter::parse_filter(v)?);
            } else if single.insert(name, v.as_str()).is_some() {
                return Err(ApiError::bad_param(name, "must be given at most once"));
            }
        }
        let site_id = single
            .get("site_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_param("site_id", "is required"))?
            .to_string();
        if !ta_shared::site::is_valid_site_id(&site_id) {
            return Err(ApiError::bad_param(
                "site_id",
                "must be 1-64 characters from [A-Za-z0-9._-]",
            ));
        }
        let tz: Tz = match single.get("timezone") {
            None => Tz::UTC,
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_param(
                    "timezone",
                    "must be an IANA time zone name such as Europe/Berlin",
                )
            })?,
        };
        let period = match single.get("period") {
            None => PeriodKind::Days30,
            Some(v) => PeriodKind::parse(v).ok_or_else(|| {
                ApiError::bad_param("period", format!("must be one of {}", PeriodKind::NAMES))
            })?,
        };
        let date = single
            .get("date")
            .map(|v| parse_date("date", v))
            .transpose()?;
        let from = single
            .get("from")
            .map(|v| parse_date("from", v))
            .transpose()?;
        let to = single.get("to").map(|v| parse_date("to", v)).transpose()?;
        if period != PeriodKind::Custom && (from.is_some() || to.is_some()) {
            return Err(ApiError::bad_param(
                if from.is_some() { "from" } else { "to" },
                "is only accepted with period=custom",
            ));
        }
        if period == PeriodKind::Custom && date.is_some() {
            return Err(ApiError::bad_param(
                "date",
                "is not accepted with period=custom",
            ));
        }
        let days = period::resolve(period, date, from, to, tz, now)?;
        let (from, to) = days.instants(tz);
        if to.timestamp() > i64::from(u32::MAX) {
            return Err(ApiError::bad_param("date", "must be before 2106"));
        }
        let previous = match single.get("compare").copied() {
            None => None,
            Some("previous_period") => Some(days.previous(period).instants(tz)),
            Some(_) => {
                return Err(ApiError::bad_param("compare", "must be previous_period"));
            }
        };
        let interval = match single.get("interval") {
            None => period::default_interval(period, days.days()),
            Some(v) => period::parse_interval(v).ok_or_else(|| {
                ApiError::bad_param("interval", "must be minute, hour, day, week or month")
            })?,
        };
        let property = match endpoint {
            StatsEndpoint::Breakdown => {
                Some(filter::parse_property(single.get("property").ok_or_else(
                    || ApiError::bad_param("property", "is required"),
                )?)?)
            }
            _ => None,
        };
        let limit = single
            .get("limit")
            .map(|v| parse_bounded("limit", v, MAX_LIMIT))
            .transpose()?
            .unwrap_or(DEFAULT_LIMIT);
        let page = single
            .get("page")
            .map(|v| parse_bounded("page", v, MAX_PAGE))
            .transpose()?
            .unwrap_or(1);
        let csv = match single.get("format").copied() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(_) => return Err(ApiError::bad_param("format", "must be json or csv")),
        };
        // Order does not change the answer; a canonical order shares one cache entry.
        filters.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        filters.dedup();
        let mut req = Self {
            endpoint,
            site_id,
            tz,
            period,
            days,
            from,
            to,
            previous,
            filters,
            interval,
            property,
            limit,
            page,
            csv,
        };
        if endpoint == StatsEndpoint::Realtime {
            // The window moves every second; the cache key must not pin it.
            req.from = DateTime::<Utc>::UNIX_EPOCH;
            req.to = DateTime::<Utc>::UNIX_EPOCH;
        }
        if endpoint == StatsEndpoint::Timeseries {
            period::buckets(req.interval, tz, from, to)?;
        }
        Ok(req)
    }

    fn scope(&self) -> Scope<'_> {
        self.scope_of(self.from, self.to)
    }

    fn scope_of(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Scope<'_> {
        Scope {
            site_id: &self.site_id,
            from: secs(from),
            to: secs(to),
            filters: &self.filters,
        }
    }

    fn head(&self) -> Json {
        json!({
            "site_id": self.site_id,
            "period": self.period.name(),
            "timezone": self.tz.name(),
            "from": self.from.to_rfc3339(),
            "to": self.to.to_rfc3339(),
            "first_day": self.days.first.to_string(),
            "last_day": (self.days.end - Duration::days(1)).to_string(),
            "filters": self.filters.iter().map(|f| json!({
                "dimension": filter::filter_name(f),
                "op": match f.op { sql::Match::Is => "is", sql::Match::IsNot => "is_not", sql::Match::Contains => "contains" },
                "value": f.value,
            })).collect::<Vec<_>>(),
        })
    }
}

fn secs(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX)
}

/// The database as the stats endpoints use it: the client, and the rollup coverage checks in
/// flight, so that concurrent requests for the same range (a dashboard's first load sends ten)
/// share one check instead of each scanning the range. Nothing is kept once a check is done: a
/// request that arrives after it runs its own.
#[derive(Clone)]
pub struct StatsDb {
    pub client: clickhouse::Client,
    in_flight: Arc<Mutex<HashMap<RangeKey, SharedCoverage>>>,
    checks_run: prometheus::IntCounter,
    checks_joined: prometheus::IntCounter,
}

/// Site, from, to.
type RangeKey = (String, u32, u32);
type SharedCoverage = Shared<BoxFuture<'static, sql::Coverage>>;

impl StatsDb {
    /// `checks`: counter of coverage checks by `result` (`run`, `joined`).
    pub fn new(client: clickhouse::Client, checks: &prometheus::IntCounterVec) -> Self {
        Self {
            client,
            in_flight: Arc::default(),
            checks_run: checks.with_label_values(&["run"]),
            checks_joined: checks.with_label_values(&["joined"]),
        }
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

async fn fetch_all<T>(db: &StatsDb, s: &sql::Statement) -> Result<Vec<T>, ApiError>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    Ok(s.query(&db.client).fetch_all::<T>().await?)
}

#[derive(Debug, Row, Deserialize)]
struct Covered {
    day: u32,
    build: u64,
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
                let (client, st) = (db.client.clone(), sql::coverage(scope));
                let (site, from, to) = key.clone();
                let flight = async move {
                    let scope = Scope {
                        site_id: &site,
                        from,
                        to,
                        filters: &[],
                    };
                    match st.query(&client).fetch_all::<Covered>().await {
                        Ok(rows) => {
                            let days: Vec<(u32, u64)> =
                                rows.iter().map(|r| (r.day, r.build)).collect();
                            sql::Coverage::of(&scope, &days)
                        }
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

fn ratio(num: u64, den: u64, scale: f64, decimals: i32) -> f64 {
    if den == 0 {
        return 0.0;
    }
    let p = 10f64.powi(decimals);
    (num as f64 * scale / den as f64 * p).round() / p
}

/// Pages per visit, rounded to 2 decimals.
pub fn views_per_visit(pageviews: u64, visits: u64) -> f64 {
    ratio(pageviews, visits, 1.0, 2)
}

/// Share of visits with a single event, in percent, rounded to 1 decimal.
pub fn bounce_rate(bounces: u64, visits: u64) -> f64 {
    ratio(bounces, visits, 100.0, 1)
}

/// Mean visit length in whole seconds.
pub fn visit_duration(duration: u64, visits: u64) -> f64 {
    ratio(duration, visits, 1.0, 0)
}

impl Totals {
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

/// Change from `previous` to `value` in percent (1 decimal), or null when there was nothing
/// before.
pub fn change(value: f64, previous: f64) -> Json {
    if previous == 0.0 {
        return Json::Null;
    }
    (((value - previous) / previous * 1000.0).round() / 10.0).into()
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
        Ok::<_, ApiError>(fetch_all::<Totals>(db, &s).await?.pop().unwrap_or_default())
    };
    let (now, before) = match req.previous {
        Some((pf, pt)) => {
            let (a, b) = tokio::try_join!(load(req.from, req.to), load(pf, pt))?;
            (a, Some(b))
        }
        None => (load(req.from, req.to).await?, None),
    };
    let mut results = serde_json::Map::new();
    let prev = before.map(|b| b.metrics());
    for (i, (name, value)) in now.metrics().into_iter().enumerate() {
        let mut m = json!({ "value": value });
        if let Some(prev) = &prev {
            let p = &prev[i].1;
            m["previous"] = p.clone();
            m["change"] = change(value.as_f64().unwrap_or(0.0), p.as_f64().unwrap_or(0.0));
        }
        results.insert(name.to_owned(), m);
    }
    let mut body = req.head();
    if let Some((pf, pt)) = req.previous {
        body["previous"] = json!({"from": pf.to_rfc3339(), "to": pt.to_rfc3339()});
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

pub async fn timeseries(db: &StatsDb, req: &StatsRequest) -> Result<Json, ApiError> {
    let slots: Vec<BucketSlot> = period::buckets(req.interval, req.tz, req.from, req.to)?;
    let tz = req.tz.name();
    let scope = req.scope();
    let by_event = sql::timeseries_events(&scope, req.interval, tz);
    let by_visit = async {
        let cover = coverage(db, &scope).await;
        let s = if cover.is_empty() {
            sql::timeseries_visits(&scope, req.interval, tz)
        } else {
            sql::timeseries_visits_rolled_up(&scope, req.interval, tz, &cover)
        };
        fetch_all::<VisitBucket>(db, &s).await
    };
    let (events, visits) = tokio::try_join!(fetch_all::<EventBucket>(db, &by_event), by_visit)?;
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
    let mut body = req.head();
    body["interval"] = period::interval_name(req.interval).into();
    body["results"] = results.into();
    Ok(body)
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

/// Breakdown rows as (column names, rows of JSON values), plus whether more pages exist.
pub async fn breakdown_rows(
    db: &StatsDb,
    req: &StatsRequest,
) -> Result<(Vec<&'static str>, Vec<Vec<Json>>, bool), ApiError> {
    let offset = u64::from(req.page - 1) * u64::from(req.limit);
    let fetch = u64::from(req.limit) + 1;
    let property = req.property.as_ref().expect("breakdown has a property");
    let (columns, mut rows): (Vec<&'static str>, Vec<Vec<Json>>) = match property {
        Property::Event(column) => {
            let pageviews_only = *column == sql::Column::Path;
            let scope = req.scope();
            // Only a column the rollup holds is worth checking the coverage for.
            let cover = match sql::rollup_dimension(column) {
                Some(_) => coverage(db, &scope).await,
                None => sql::Coverage::default(),
            };
            let rolled_up = match cover.is_empty() {
                true => None,
                false => sql::breakdown_events_rolled_up(
                    &scope,
                    column,
                    pageviews_only,
                    offset,
                    fetch,
                    &cover,
                ),
            };
            let s = rolled_up.unwrap_or_else(|| {
                sql::breakdown_events(&scope, column, pageviews_only, offset, fetch)
            });
            let rows = fetch_all::<EventGroup>(db, &s).await?;
            (
                vec!["value", "visitors", "pageviews", "events"],
                rows.into_iter()
                    .map(|r| {
                        vec![
                            r.value.into(),
                            r.visitors.into(),
                            r.pageviews.into(),
                            r.events.into(),
                        ]
                    })
                    .collect(),
            )
        }
        Property::Visit(attr) => {
            let scope = req.scope();
            let cover = match sql::rollup_column(attr) {
                Some(_) => coverage(db, &scope).await,
                None => sql::Coverage::default(),
            };
            let s = match sql::breakdown_visits_rolled_up(&scope, attr, offset, fetch, &cover) {
                Some(s) if !cover.is_empty() => s,
                _ => sql::breakdown_visits(&scope, attr, offset, fetch),
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
    };
    let has_more = rows.len() as u64 > u64::from(req.limit);
    rows.truncate(req.limit as usize);
    Ok((columns, rows, has_more))
}

pub async fn breakdown(
    db: &StatsDb,
    req: &StatsRequest,
    property_name: &str,
) -> Result<Json, ApiError> {
    let (columns, rows, has_more) = breakdown_rows(db, req).await?;
    let results: Vec<Json> = rows
        .into_iter()
        .map(|r| {
            Json::Object(
                columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| ((*c).to_owned(), v))
                    .collect(),
            )
        })
        .collect();
    let mut body = req.head();
    body["property"] = property_name.into();
    body["page"] = req.page.into();
    body["limit"] = req.limit.into();
    body["has_more"] = has_more.into();
    body["results"] = results.into();
    Ok(body)
}

/// A breakdown as CSV (RFC 4180): every text cell quoted, numbers bare, and any text a
/// spreadsheet would run as a formula defused ([`csv_cell`]).
pub async fn breakdown_csv(
    db: &StatsDb,
    req: &StatsRequest,
    property_name: &str,
) -> Result<String, ApiError> {
    let (columns, rows, _) = breakdown_rows(db, req).await?;
    let mut out = String::new();
    let header: Vec<&str> = columns
        .iter()
        .map(|c| if *c == "value" { property_name } else { c })
        .collect();
    out.push_str(
        &header
            .iter()
            .map(|h| csv_cell(h))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str("\r\n");
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .map(|v| match v {
                Json::String(s) => csv_cell(s),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    Ok(out)
}

/// One text cell: quoted, with every `;`-separated part that starts like a formula (`=`, `+`,
/// `-`, `@`, tab, CR) given a leading `'` — spreadsheets in locales whose list separator is `;`
/// split the cell there and evaluate each part (OWASP, "CSV injection").
pub fn csv_cell(s: &str) -> String {
    let defused: Vec<String> = s
        .split(';')
        .map(|part| {
            if part.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{part}")
            } else {
                part.to_owned()
            }
        })
        .collect();
    format!("\"{}\"", defused.join(";").replace('"', "\"\""))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn param(q: &str, e: StatsEndpoint) -> String {
        match StatsRequest::parse(e, &pairs(q), now()).unwrap_err() {
            ApiError::BadParam { param, .. } => param.to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_bad_parameter_is_named() {
        use StatsEndpoint::*;
        for (q, e, p) in [
            ("", Aggregate, "site_id"),
            ("site_id=a%20b", Aggregate, "site_id"),
            ("site_id=s&timezone=Mars/Olympus", Aggregate, "timezone"),
            ("site_id=s&period=week", Aggregate, "period"),
            ("site_id=s&period=custom&from=2025-01-01", Aggregate, "to"),
            (
                "site_id=s&period=custom&from=2025-02-01&to=2025-01-01",
                Aggregate,
                "from",
            ),
            ("site_id=s&from=2025-02-01", Aggregate, "from"),
            ("site_id=s&date=yesterday", Aggregate, "date"),
            ("site_id=s&compare=year", Aggregate, "compare"),
            ("site_id=s&interval=second", Timeseries, "interval"),
            (
                "site_id=s&period=12mo&interval=minute",
                Timeseries,
                "interval",
            ),
            ("site_id=s", Breakdown, "property"),
            ("site_id=s&property=page&limit=0", Breakdown, "limit"),
            ("site_id=s&property=page&page=-1", Breakdown, "page"),
            ("site_id=s&property=page&format=xml", Breakdown, "format"),
            ("site_id=s&filter=page:like:/", Breakdown, "filter"),
            ("site_id=s&limit=5", Aggregate, "query"),
            ("site_id=s&site_id=t", Aggregate, "site_id"),
        ] {
            assert_eq!(param(q, e), p, "{q}");
        }
    }

    #[test]
    fn filter_order_does_not_change_the_request() {
        let a = StatsRequest::parse(
            StatsEndpoint::Aggregate,
            &pairs("site_id=s&filter=page:is:/a&filter=os:is:Linux"),
            now(),
        )
        .unwrap();
        let b = StatsRequest::parse(
            StatsEndpoint::Aggregate,
            &pairs("filter=os:is:Linux&site_id=s&filter=page:is:/a&share=x"),
            now(),
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("/pricing"), "\"/pricing\"");
        for danger in ["+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(danger).starts_with("\"'"), "{danger:?}");
        }
        // Locales that split cells on `;` evaluate each part.
        assert_eq!(
            csv_cell("utm;=cmd|'/c calc'!A0"),
            "\"utm;'=cmd|'/c calc'!A0\""
        );
        assert_eq!(csv_cell("a;b"), "\"a;b\"");
    }

    #[test]
    fn rates_round_and_survive_zero_denominators() {
        assert_eq!(bounce_rate(1, 3), 33.3);
        assert_eq!(views_per_visit(5, 3), 1.67);
        assert_eq!(visit_duration(0, 0), 0.0);
        assert_eq!(change(150.0, 100.0), json!(50.0));
        assert_eq!(change(1.0, 0.0), Json::Null);
    }
}
