//! Validation of a stats request's query string into a [`StatsRequest`]: one named step per
//! group of parameters, each refusal a 400 naming its parameter.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::{Value as Json, json};

use crate::query::error::ApiError;
use crate::query::filter::{self, Property};
use crate::query::goals::{self, Funnel, Goal, SiteGoals};
#[cfg(doc)]
use crate::query::key::AnswerKey;
use crate::query::params;
use crate::query::period::{self, CompareMode, CustomRangeError, DayRange, PeriodKind};
use crate::sql::stats::{self as sql, Bucket, EventFilter, FunnelWithin, Scope};

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 1000;
pub const MAX_PAGE: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatsEndpoint {
    Aggregate,
    Timeseries,
    Breakdown,
    Realtime,
    Goals,
    Funnel,
    Properties,
}

/// The funnel a request asks for: one of the site's (`funnel=<id>`) or steps given in the
/// request (`steps=<goal>,<goal>,…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FunnelRef {
    Named(String),
    Steps(Vec<String>),
}

impl StatsEndpoint {
    pub fn name(self) -> &'static str {
        match self {
            Self::Aggregate => "aggregate",
            Self::Timeseries => "timeseries",
            Self::Breakdown => "breakdown",
            Self::Realtime => "realtime",
            Self::Goals => "goals",
            Self::Funnel => "funnel",
            Self::Properties => "properties",
        }
    }

    /// Parameters this endpoint accepts (besides `share`, the share-link credential).
    pub fn params(self) -> &'static [&'static str] {
        const RANGE: [&str; 7] = [
            "site_id", "period", "date", "from", "to", "timezone", "filter",
        ];
        const COMPARE: [&str; 4] = ["compare", "compare_from", "compare_to", "match_day_of_week"];
        match self {
            Self::Aggregate => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], COMPARE[0],
                COMPARE[1], COMPARE[2], COMPARE[3],
            ],
            Self::Timeseries => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], "interval",
                COMPARE[0], COMPARE[1], COMPARE[2], COMPARE[3],
            ],
            Self::Breakdown => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], "property",
                "limit", "page", "format", COMPARE[0], COMPARE[1], COMPARE[2], COMPARE[3],
            ],
            Self::Realtime => &["site_id"],
            Self::Goals => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], "goal",
                "property", "limit", "page", "format",
            ],
            Self::Funnel => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], "funnel",
                "steps", "within", "format",
            ],
            Self::Properties => &[
                RANGE[0], RANGE[1], RANGE[2], RANGE[3], RANGE[4], RANGE[5], RANGE[6], "limit",
                "page", "format",
            ],
        }
    }
}

/// A validated stats request. It is the cache key ([`AnswerKey::Stats`]): every field changes
/// the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatsRequest {
    pub endpoint: StatsEndpoint,
    pub site_id: String,
    pub tz: Tz,
    pub period: PeriodKind,
    pub days: DayRange,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `compare=`: the range the answer is compared with.
    pub comparison: Option<Comparison>,
    pub filters: Vec<EventFilter>,
    pub interval: Bucket,
    pub property: Option<Property>,
    /// `/v1/stats/goals`: the goal asked for (`goal=`), if one.
    pub goal: Option<String>,
    /// `/v1/stats/goals`: the definitions the answer is computed from (every goal of the site,
    /// or the one asked for), resolved from the access file after parsing
    /// ([`StatsRequest::with_goals`]), so an edited goal never meets a stale cached answer.
    pub goals: Vec<Goal>,
    /// `/v1/stats/funnel`: the funnel asked for, and (resolved with the goals,
    /// [`StatsRequest::with_goals`]) its definition; `goals` then holds its steps.
    pub funnel: Option<FunnelRef>,
    pub funnel_def: Option<Funnel>,
    pub within: FunnelWithin,
    pub limit: u32,
    pub page: u32,
    pub csv: bool,
}

/// `[from, to)` of a range.
pub type Instants = (DateTime<Utc>, DateTime<Utc>);

/// The range a request is compared with, and how it was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comparison {
    pub mode: CompareMode,
    pub match_day_of_week: bool,
    pub days: DayRange,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Comparison {
    /// How answers describe it: the mode, its instants and its local days.
    pub fn head(&self) -> Json {
        json!({
            "mode": self.mode.name(),
            "match_day_of_week": self.match_day_of_week,
            "from": self.from.to_rfc3339(),
            "to": self.to.to_rfc3339(),
            "first_day": self.days.first.to_string(),
            "last_day": (self.days.end - Duration::days(1)).to_string(),
        })
    }
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
    /// refused, so a typo never silently changes the answer. The steps run in this order, so
    /// a request with several bad parameters is refused for the first.
    pub fn parse(
        endpoint: StatsEndpoint,
        pairs: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let given = Given::collect(endpoint, pairs)?;
        let site_id = given.site_id()?;
        let tz = given.timezone()?;
        let (period, days) = given.days(tz, now)?;
        let (from, to) = days.instants(tz);
        if to.timestamp() > i64::from(u32::MAX) {
            return Err(ApiError::bad_param("date", "must be before 2106"));
        }
        let comparison = given.comparison(period, &days, tz)?;
        let interval = given.interval(period, &days)?;
        let property = given.property(endpoint)?;
        let goal = given.goal(endpoint, property.is_some())?;
        let (funnel, within) = given.funnel(endpoint)?;
        let (limit, page) = given.paging()?;
        let csv = given.csv()?;
        Self {
            endpoint,
            site_id,
            tz,
            period,
            days,
            from,
            to,
            comparison,
            filters: canonical(given.filters),
            interval,
            property,
            goal,
            goals: Vec::new(),
            funnel,
            funnel_def: None,
            within,
            limit,
            page,
            csv,
        }
        .for_endpoint()
    }

    /// What the endpoint adds: a timeseries has a bounded number of buckets; a realtime
    /// request keeps no range (its window moves every second, so the cache key must not pin
    /// it).
    fn for_endpoint(mut self) -> Result<Self, ApiError> {
        match self.endpoint {
            StatsEndpoint::Timeseries => {
                period::buckets(self.interval, self.tz, self.from, self.to)?;
                // Only a custom comparison can be longer than the period.
                if let Some(c) = &self.comparison
                    && period::buckets(self.interval, self.tz, c.from, c.to).is_err()
                {
                    return Err(ApiError::bad_param(
                        "compare_to",
                        format!(
                            "the compared range gives more than {} buckets at this interval; compare a shorter range or choose a longer interval",
                            period::MAX_BUCKETS
                        ),
                    ));
                }
            }
            StatsEndpoint::Realtime => {
                self.from = DateTime::<Utc>::UNIX_EPOCH;
                self.to = DateTime::<Utc>::UNIX_EPOCH;
            }
            StatsEndpoint::Aggregate
            | StatsEndpoint::Breakdown
            | StatsEndpoint::Goals
            | StatsEndpoint::Funnel
            | StatsEndpoint::Properties => {}
        }
        Ok(self)
    }

    /// Resolve the goals the answer needs from the site's definitions: the one named by
    /// `goal` (400 naming it when the site has no such goal), or all of them.
    pub fn with_goals(mut self, site: &SiteGoals) -> Result<Self, ApiError> {
        if !matches!(self.endpoint, StatsEndpoint::Goals | StatsEndpoint::Funnel) {
            return Ok(self);
        }
        if let Some(funnel) = &self.funnel {
            let def = match funnel {
                FunnelRef::Named(id) => site.funnel(id).cloned().ok_or_else(|| {
                    ApiError::bad_param(
                        "funnel",
                        format!("`{id}` is not a funnel of this site (see /v1/goals)"),
                    )
                })?,
                FunnelRef::Steps(steps) => {
                    site.check_steps(steps)
                        .map_err(|e| ApiError::bad_param("steps", e))?;
                    Funnel {
                        id: String::new(),
                        name: steps.join(" → "),
                        steps: steps.clone(),
                    }
                }
            };
            self.goals = def
                .steps
                .iter()
                .map(|id| site.get(id).cloned().expect("funnel steps are goals"))
                .collect();
            self.funnel_def = Some(def);
            return Ok(self);
        }
        self.goals = match &self.goal {
            Some(id) => vec![site.get(id).cloned().ok_or_else(|| {
                ApiError::bad_param(
                    "goal",
                    format!("`{id}` is not a goal of this site (see /v1/goals)"),
                )
            })?],
            None => site.goals.clone(),
        };
        Ok(self)
    }

    pub(super) fn scope(&self) -> Scope<'_> {
        self.scope_of(self.from, self.to)
    }

    pub(super) fn scope_of(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Scope<'_> {
        Scope {
            site_id: &self.site_id,
            from: secs(from),
            to: secs(to),
            filters: &self.filters,
        }
    }

    pub(super) fn head(&self) -> Json {
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

/// Filters in a canonical order: their order does not change the answer, so requests that
/// differ only in it share one cache entry.
fn canonical(mut filters: Vec<EventFilter>) -> Vec<EventFilter> {
    filters.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    filters.dedup();
    filters
}

/// The parameters of one request, each one the endpoint accepts and given at most once
/// (`filter` may repeat, up to [`filter::MAX_FILTERS`]); each method validates one group.
struct Given<'a> {
    single: HashMap<&'static str, &'a str>,
    filters: Vec<EventFilter>,
}

impl<'a> Given<'a> {
    fn collect(endpoint: StatsEndpoint, pairs: &'a [(String, String)]) -> Result<Self, ApiError> {
        let allowed = endpoint.params();
        let mut given = Self {
            single: HashMap::new(),
            filters: Vec::new(),
        };
        for (k, v) in pairs {
            if k == "share" {
                continue;
            }
            let Some(name) = allowed.iter().find(|a| **a == k) else {
                return Err(params::unknown_param(k, allowed));
            };
            if *name == "filter" {
                if given.filters.len() == filter::MAX_FILTERS {
                    return Err(ApiError::bad_param(
                        "filter",
                        "at most 10 filters per request",
                    ));
                }
                given.filters.push(filter::parse_filter(v)?);
            } else if given.single.insert(name, v.as_str()).is_some() {
                return Err(ApiError::bad_param(name, "must be given at most once"));
            }
        }
        Ok(given)
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.single.get(name).copied()
    }

    fn site_id(&self) -> Result<String, ApiError> {
        let site_id = self
            .get("site_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_param("site_id", "is required"))?;
        if !ta_shared::site::is_valid_site_id(site_id) {
            return Err(ApiError::bad_param(
                "site_id",
                "must be 1-64 characters from [A-Za-z0-9._-]",
            ));
        }
        Ok(site_id.to_owned())
    }

    fn timezone(&self) -> Result<Tz, ApiError> {
        match self.get("timezone") {
            None => Ok(Tz::UTC),
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_param(
                    "timezone",
                    "must be an IANA time zone name such as Europe/Berlin",
                )
            }),
        }
    }

    /// The period and its local days: `period` with `date`, or `period=custom` with `from`
    /// and `to`.
    fn days(&self, tz: Tz, now: DateTime<Utc>) -> Result<(PeriodKind, DayRange), ApiError> {
        let period = match self.get("period") {
            None => PeriodKind::Days30,
            Some(v) => PeriodKind::parse(v).ok_or_else(|| {
                ApiError::bad_param("period", format!("must be one of {}", PeriodKind::NAMES))
            })?,
        };
        let date = self.date("date")?;
        let from = self.date("from")?;
        let to = self.date("to")?;
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
        Ok((period, period::resolve(period, date, from, to, tz, now)?))
    }

    fn date(&self, param: &'static str) -> Result<Option<NaiveDate>, ApiError> {
        self.get(param).map(|v| parse_date(param, v)).transpose()
    }

    /// `compare=previous_period|year_over_year|custom` (custom: `compare_from`..=`compare_to`,
    /// local dates), `match_day_of_week=true` for the first two.
    fn comparison(
        &self,
        period: PeriodKind,
        days: &DayRange,
        tz: Tz,
    ) -> Result<Option<Comparison>, ApiError> {
        let mode = self
            .get("compare")
            .map(|v| {
                CompareMode::parse(v).ok_or_else(|| {
                    ApiError::bad_param("compare", format!("must be {}", CompareMode::NAMES))
                })
            })
            .transpose()?;
        let match_day_of_week = match self.get("match_day_of_week") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ApiError::bad_param(
                    "match_day_of_week",
                    "must be true or false",
                ));
            }
        };
        let (from, to) = (self.date("compare_from")?, self.date("compare_to")?);
        if mode != Some(CompareMode::Custom)
            && let Some(p) = [("compare_from", from), ("compare_to", to)]
                .iter()
                .find_map(|(p, d)| d.map(|_| *p))
        {
            return Err(ApiError::bad_param(
                p,
                "is only accepted with compare=custom",
            ));
        }
        if match_day_of_week
            && !matches!(
                mode,
                Some(CompareMode::PreviousPeriod | CompareMode::YearOverYear)
            )
        {
            return Err(ApiError::bad_param(
                "match_day_of_week",
                "is only accepted with compare=previous_period or compare=year_over_year",
            ));
        }
        let Some(mode) = mode else {
            return Ok(None);
        };
        let compared = match mode {
            CompareMode::Custom => {
                let first = from.ok_or_else(|| {
                    ApiError::bad_param("compare_from", "is required with compare=custom")
                })?;
                let last = to.ok_or_else(|| {
                    ApiError::bad_param("compare_to", "is required with compare=custom")
                })?;
                DayRange::custom(first, last).map_err(|e| match e {
                    CustomRangeError::Reversed => {
                        ApiError::bad_param("compare_to", "must not be before compare_from")
                    }
                    CustomRangeError::TooLong => ApiError::bad_param(
                        "compare_to",
                        format!(
                            "a comparison spans at most {} days",
                            period::MAX_CUSTOM_DAYS
                        ),
                    ),
                })?
            }
            _ => days.compared(period, mode, match_day_of_week),
        };
        let (from, to) = compared.instants(tz);
        if from.timestamp() < 0 {
            return Err(ApiError::bad_param(
                "compare",
                "the compared range starts before 1970",
            ));
        }
        Ok(Some(Comparison {
            mode,
            match_day_of_week,
            days: compared,
            from,
            to,
        }))
    }

    fn interval(&self, period: PeriodKind, days: &DayRange) -> Result<Bucket, ApiError> {
        match self.get("interval") {
            None => Ok(period::default_interval(period, days.days())),
            Some(v) => period::parse_interval(v).ok_or_else(|| {
                ApiError::bad_param("interval", "must be minute, hour, day, week or month")
            }),
        }
    }

    /// The breakdown's dimension (required there, optional for goals, absent elsewhere).
    fn property(&self, endpoint: StatsEndpoint) -> Result<Option<Property>, ApiError> {
        match (endpoint, self.get("property")) {
            (StatsEndpoint::Breakdown, None) => Err(ApiError::bad_param("property", "is required")),
            (StatsEndpoint::Breakdown | StatsEndpoint::Goals, Some(v)) => {
                Ok(Some(filter::parse_property(v)?))
            }
            _ => Ok(None),
        }
    }

    /// The goal of `/v1/stats/goals` (required with `property`): its id's form only; whether
    /// the site has it is checked against the definitions ([`StatsRequest::with_goals`]).
    fn goal(&self, endpoint: StatsEndpoint, property: bool) -> Result<Option<String>, ApiError> {
        if endpoint != StatsEndpoint::Goals {
            return Ok(None);
        }
        for paging in ["limit", "page"] {
            if !property && self.get(paging).is_some() {
                return Err(ApiError::bad_param(
                    paging,
                    "is only accepted with property (the goals themselves come in one page)",
                ));
            }
        }
        match self.get("goal") {
            None if property => Err(ApiError::bad_param(
                "goal",
                "is required with property (the goal whose conversions to break down)",
            )),
            None => Ok(None),
            Some(id) if goals::is_valid_id(id) => Ok(Some(id.to_owned())),
            Some(_) => Err(ApiError::bad_param(
                "goal",
                "must be a goal id of 1-64 characters from [a-z0-9_-]",
            )),
        }
    }

    /// The funnel of `/v1/stats/funnel` (`funnel` or `steps`, exactly one) and `within`.
    fn funnel(
        &self,
        endpoint: StatsEndpoint,
    ) -> Result<(Option<FunnelRef>, FunnelWithin), ApiError> {
        if endpoint != StatsEndpoint::Funnel {
            return Ok((None, FunnelWithin::Visit));
        }
        let within = match self.get("within") {
            None | Some("visit") => FunnelWithin::Visit,
            Some("day") => FunnelWithin::Day,
            Some(_) => return Err(ApiError::bad_param("within", "must be visit or day")),
        };
        let id_rule = "must be goal ids of 1-64 characters from [a-z0-9_-], separated by commas";
        let funnel = match (self.get("funnel"), self.get("steps")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_param("steps", "is not accepted with funnel"));
            }
            (None, None) => {
                return Err(ApiError::bad_param(
                    "funnel",
                    "is required (a funnel id, or the goal ids as steps=a,b,c)",
                ));
            }
            (Some(id), None) if goals::is_valid_id(id) => FunnelRef::Named(id.to_owned()),
            (Some(_), None) => {
                return Err(ApiError::bad_param(
                    "funnel",
                    "must be a funnel id of 1-64 characters from [a-z0-9_-]",
                ));
            }
            (None, Some(list)) => {
                let steps: Vec<String> = list.split(',').map(str::to_owned).collect();
                if steps.len() > *goals::FUNNEL_STEPS.end() {
                    return Err(ApiError::bad_param("steps", "a funnel has 2 to 8 steps"));
                }
                if !steps.iter().all(|s| goals::is_valid_id(s)) {
                    return Err(ApiError::bad_param("steps", id_rule));
                }
                FunnelRef::Steps(steps)
            }
        };
        Ok((Some(funnel), within))
    }

    /// `limit` rows per page and the 1-based `page`.
    fn paging(&self) -> Result<(u32, u32), ApiError> {
        let limit = self
            .get("limit")
            .map(|v| parse_bounded("limit", v, MAX_LIMIT))
            .transpose()?
            .unwrap_or(DEFAULT_LIMIT);
        let page = self
            .get("page")
            .map(|v| parse_bounded("page", v, MAX_PAGE))
            .transpose()?
            .unwrap_or(1);
        Ok((limit, page))
    }

    /// Whether the answer is CSV (`format=csv`) rather than JSON.
    fn csv(&self) -> Result<bool, ApiError> {
        match self.get("format") {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(ApiError::bad_param("format", "must be json or csv")),
        }
    }
}

fn secs(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::params::testing::{at, pairs};

    fn now() -> DateTime<Utc> {
        at("2025-11-30T12:00:00Z")
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
            ("site_id=s&compare=custom", Timeseries, "compare_from"),
            (
                "site_id=s&compare=custom&compare_from=2025-01-01",
                Breakdown,
                "compare_to",
            ),
            (
                "site_id=s&compare=custom&compare_from=2025-01-02&compare_to=2025-01-01",
                Aggregate,
                "compare_to",
            ),
            (
                "site_id=s&compare=previous_period&compare_from=2025-01-01",
                Aggregate,
                "compare_from",
            ),
            ("site_id=s&compare_to=2025-01-01", Aggregate, "compare_to"),
            (
                "site_id=s&match_day_of_week=true",
                Aggregate,
                "match_day_of_week",
            ),
            (
                "site_id=s&compare=custom&compare_from=2025-01-01&compare_to=2025-01-02&match_day_of_week=true",
                Aggregate,
                "match_day_of_week",
            ),
            (
                "site_id=s&compare=year_over_year&match_day_of_week=1",
                Aggregate,
                "match_day_of_week",
            ),
            (
                "site_id=s&compare=custom&compare_from=1969-12-31&compare_to=2025-01-01",
                Aggregate,
                "compare_from",
            ),
            (
                "site_id=s&period=today&interval=minute&compare=custom&compare_from=2025-01-01&compare_to=2025-01-31",
                Timeseries,
                "compare_to",
            ),
            ("site_id=s&compare=previous_period", Realtime, "query"),
            ("site_id=s&compare=previous_period", Funnel, "query"),
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
            ("site_id=s&property=source", Goals, "goal"),
            ("site_id=s&goal=Signup", Goals, "goal"),
            ("site_id=s&goal=a&property=x", Goals, "property"),
            ("site_id=s&goal=a", Breakdown, "query"),
            ("site_id=s&limit=5", Goals, "limit"),
            ("site_id=s", Funnel, "funnel"),
            ("site_id=s&funnel=a&steps=a,b", Funnel, "steps"),
            ("site_id=s&steps=a,B", Funnel, "steps"),
            ("site_id=s&steps=a,b,c,d,e,f,g,h,i", Funnel, "steps"),
            ("site_id=s&funnel=a&within=week", Funnel, "within"),
            ("site_id=s&funnel=a&within=day&limit=3", Funnel, "query"),
        ] {
            assert_eq!(param(q, e), p, "{q}");
        }
    }

    #[test]
    fn comparisons_resolve_to_local_days_and_instants() {
        let c = |q: &str| {
            StatsRequest::parse(StatsEndpoint::Timeseries, &pairs(q), now())
                .unwrap()
                .comparison
                .unwrap()
        };
        let base = "site_id=s&period=7d&date=2025-11-26&timezone=Europe/Berlin";
        let prev = c(&format!("{base}&compare=previous_period"));
        assert_eq!(prev.head()["first_day"], "2025-11-13");
        assert_eq!(prev.head()["last_day"], "2025-11-19");
        assert_eq!(prev.from.to_rfc3339(), "2025-11-12T23:00:00+00:00");
        let yoy = c(&format!(
            "{base}&compare=year_over_year&match_day_of_week=true"
        ));
        assert_eq!(
            (
                yoy.head()["first_day"].as_str(),
                yoy.head()["mode"].as_str()
            ),
            (Some("2024-11-21"), Some("year_over_year"))
        );
        let custom = c(&format!(
            "{base}&compare=custom&compare_from=2025-06-01&compare_to=2025-06-30"
        ));
        assert_eq!(custom.days.days(), 30);
        assert_eq!(custom.to.to_rfc3339(), "2025-06-30T22:00:00+00:00");
        // Without compare, none.
        let plain = StatsRequest::parse(StatsEndpoint::Aggregate, &pairs(base), now()).unwrap();
        assert_eq!(plain.comparison, None);
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
}
