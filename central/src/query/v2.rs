//! `POST /v2/query`: a JSON body choosing metrics, dimensions (time buckets among them), a
//! filter tree with `and`/`or`/`not`, the order and a page of rows. The body is validated
//! into a [`QueryV2`] (each refusal a 400 naming the part at fault by its JSON path, e.g.
//! `filters[0][2][1]`), which is also the answer's cache key; the statements are in
//! [`crate::sql::stats::v2`], whose module documentation gives the meaning of every metric.
//!
//! ```json
//! {"site_id": "example.com", "metrics": ["visitors", "bounce_rate"],
//!  "date_range": "30d", "dimensions": ["source", "time:day"],
//!  "filters": [["or", [["is", "country", ["DE", "AT"]], ["contains", "page", ["/blog"]]]]],
//!  "order_by": [["visitors", "desc"]], "pagination": {"limit": 100, "offset": 0}}
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use clickhouse::Row;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::filter::{self, MAX_VALUE_LEN, Property};
use super::period::{self, DayRange, PeriodKind};
use super::stats::format::{bounce_rate, views_per_visit, visit_duration};
use super::stats::{self, StatsDb, StatsEndpoint, StatsRequest};
use crate::sql::stats::v2::{self as sql, Cond, Dim, MAX_GROUPS, Op};
use crate::sql::stats::{Bucket, Scope};

/// The body's keys.
pub const KEYS: &[&str] = &[
    "site_id",
    "metrics",
    "date_range",
    "date",
    "timezone",
    "dimensions",
    "filters",
    "order_by",
    "pagination",
];
/// Preset `date_range` values (a custom range is `[first_day, last_day]`).
pub const PRESETS: &[&str] = &["today", "7d", "30d", "month", "12mo"];
pub const MAX_DIMENSIONS: usize = 3;
/// Most tests in a filter tree, and its deepest nesting of `and`/`or`/`not`.
pub const MAX_TESTS: usize = 20;
pub const MAX_DEPTH: usize = 5;
/// Most values one test compares with.
pub const MAX_VALUES: usize = 20;
/// Longest regular expression of a `matches` test.
pub const MAX_PATTERN_LEN: usize = 256;
pub const DEFAULT_ROWS: u64 = 1000;
/// Largest body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_ROWS: u64 = 10_000;
/// Time dimensions (`time` alone takes the period's default interval).
pub const TIME_DIMENSIONS: &[&str] = &[
    "time",
    "time:minute",
    "time:hour",
    "time:day",
    "time:week",
    "time:month",
];
pub const OPERATORS: &[&str] = &["is", "is_not", "contains", "matches"];
pub const CONNECTIVES: &[&str] = &["and", "or", "not"];

/// A metric of a v2 query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Visitors,
    Visits,
    Pageviews,
    Events,
    ViewsPerVisit,
    BounceRate,
    VisitDuration,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Visitors,
        Metric::Visits,
        Metric::Pageviews,
        Metric::Events,
        Metric::ViewsPerVisit,
        Metric::BounceRate,
        Metric::VisitDuration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Visitors => "visitors",
            Metric::Visits => "visits",
            Metric::Pageviews => "pageviews",
            Metric::Events => "events",
            Metric::ViewsPerVisit => "views_per_visit",
            Metric::BounceRate => "bounce_rate",
            Metric::VisitDuration => "visit_duration",
        }
    }

    /// Whether it describes visits (computed per visit, so it has no value per event
    /// dimension).
    pub fn of_visits(self) -> bool {
        matches!(
            self,
            Metric::Visits | Metric::ViewsPerVisit | Metric::BounceRate | Metric::VisitDuration
        )
    }
}

/// What a row is ordered by: a requested metric or dimension (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderKey {
    Metric(usize),
    Dimension(usize),
}

/// A validated v2 query; every field changes the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryV2 {
    pub site_id: String,
    pub tz: Tz,
    pub period: PeriodKind,
    pub days: DayRange,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub metrics: Vec<Metric>,
    pub dimensions: Vec<Dim>,
    /// The dimensions as given (`time` resolved to its interval).
    pub dimension_names: Vec<String>,
    pub filter: Option<Cond>,
    /// `(key, descending)`; ties are always broken by the dimensions, ascending.
    pub order_by: Vec<(OrderKey, bool)>,
    pub limit: u64,
    pub offset: u64,
}

fn bad(part: impl Into<String>, rule: impl Into<String>) -> ApiError {
    ApiError::BadQuery {
        part: part.into(),
        rule: rule.into(),
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn string<'a>(part: &str, v: &'a Json) -> Result<&'a str, ApiError> {
    v.as_str()
        .ok_or_else(|| bad(part, format!("must be a string, not {}", kind(v))))
}

fn array<'a>(part: &str, v: &'a Json) -> Result<&'a [Json], ApiError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| bad(part, format!("must be an array, not {}", kind(v))))
}

fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}

impl QueryV2 {
    /// Validate a body. The parts are checked in the order of [`KEYS`], so a body with several
    /// faults is refused for the first.
    pub fn parse(body: &[u8], now: DateTime<Utc>) -> Result<Self, ApiError> {
        let body: Json =
            serde_json::from_slice(body).map_err(|e| bad("body", format!("is not JSON: {e}")))?;
        let Json::Object(map) = &body else {
            return Err(bad(
                "body",
                format!("must be an object, not {}", kind(&body)),
            ));
        };
        if let Some(k) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(
                cut(k),
                format!("is not a part of a query (accepted: {})", KEYS.join(", ")),
            ));
        }
        let get = |k: &str| map.get(k).filter(|v| !v.is_null());
        let (site_id, tz, period, days, from, to) = range(&get, now)?;
        let metrics = metrics(get("metrics"))?;
        let (dimensions, dimension_names) = dimensions(get("dimensions"), period, &days)?;
        for (i, m) in metrics.iter().enumerate() {
            if let Some(d) = m
                .of_visits()
                .then(|| dimensions.iter().position(|d| matches!(d, Dim::Event(_))))
                .flatten()
            {
                return Err(bad(
                    format!("metrics[{i}]"),
                    format!(
                        "`{}` describes whole visits and a visit has many values of the event dimension `{}`; group by a visit dimension (entry_page, exit_page, source, referrer, channel, utm_*) or time, or ask for visitors, pageviews or events",
                        m.name(),
                        dimension_names[d]
                    ),
                ));
            }
        }
        for (d, name) in dimensions.iter().zip(&dimension_names) {
            if let Dim::Time(b) = d {
                period::buckets(*b, tz, from, to).map_err(|_| {
                    bad(
                        "dimensions",
                        format!(
                            "`{name}` gives more than {} buckets for this date_range; choose a longer interval",
                            period::MAX_BUCKETS
                        ),
                    )
                })?;
            }
        }
        let filter = filters(get("filters"))?;
        let order_by = order_by(get("order_by"), &metrics, &dimension_names)?;
        let (limit, offset) = pagination(get("pagination"))?;
        Ok(QueryV2 {
            site_id,
            tz,
            period,
            days,
            from,
            to,
            metrics,
            dimensions,
            dimension_names,
            filter,
            order_by,
            limit,
            offset,
        })
    }

    /// Bytes of text the query holds (for the cache's weight).
    pub fn text_bytes(&self) -> usize {
        fn cond(c: &Cond) -> usize {
            match c {
                Cond::Test { values, .. } => values.iter().map(|v| v.len() + 24).sum(),
                Cond::And(xs) | Cond::Or(xs) => xs.iter().map(cond).sum::<usize>() + 24,
                Cond::Not(x) => cond(x) + 8,
            }
        }
        self.site_id.len()
            + self.dimension_names.iter().map(String::len).sum::<usize>()
            + self.filter.as_ref().map_or(0, cond)
            + self.metrics.len() * 8
            + self.order_by.len() * 16
    }
}

type Range = (
    String,
    Tz,
    PeriodKind,
    DayRange,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// Site, time zone and range, validated by the v1 rules (one code path for both versions).
fn range<'a>(
    get: &impl Fn(&str) -> Option<&'a Json>,
    now: DateTime<Utc>,
) -> Result<Range, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let site = get("site_id").ok_or_else(|| bad("site_id", "is required"))?;
    pairs.push(("site_id".into(), string("site_id", site)?.to_owned()));
    for k in ["date", "timezone"] {
        if let Some(v) = get(k) {
            pairs.push((k.into(), string(k, v)?.to_owned()));
        }
    }
    let rule = format!(
        "must be one of {} or [first_day, last_day] (YYYY-MM-DD, inclusive)",
        PRESETS.join(", ")
    );
    match get("date_range") {
        None => {}
        Some(Json::String(p)) if PRESETS.contains(&p.as_str()) => {
            pairs.push(("period".into(), p.clone()));
        }
        Some(Json::Array(ends)) => match ends.as_slice() {
            [Json::String(a), Json::String(b)] => {
                pairs.push(("period".into(), "custom".into()));
                pairs.push(("from".into(), a.clone()));
                pairs.push(("to".into(), b.clone()));
            }
            _ => return Err(bad("date_range", rule)),
        },
        Some(_) => return Err(bad("date_range", rule)),
    }
    let req = StatsRequest::parse(StatsEndpoint::Aggregate, &pairs, now).map_err(|e| match e {
        ApiError::BadParam { param, rule } => bad(
            match param {
                "period" | "from" | "to" => "date_range",
                other => other,
            },
            rule,
        ),
        other => other,
    })?;
    Ok((req.site_id, req.tz, req.period, req.days, req.from, req.to))
}

fn metrics(v: Option<&Json>) -> Result<Vec<Metric>, ApiError> {
    let v = v.ok_or_else(|| bad("metrics", "is required (one or more metric names)"))?;
    let items = array("metrics", v)?;
    if items.is_empty() || items.len() > Metric::ALL.len() {
        return Err(bad("metrics", "must name 1 to 7 metrics"));
    }
    let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let part = format!("metrics[{i}]");
        let name = string(&part, item)?;
        let m = *Metric::ALL
            .iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                bad(
                    &part,
                    format!("`{}` is not one of {}", cut(name), names.join(", ")),
                )
            })?;
        if out.contains(&m) {
            return Err(bad(part, format!("`{name}` is given twice")));
        }
        out.push(m);
    }
    Ok(out)
}

/// One dimension name: an event or visit dimension (as v1's `property`) or a time bucket.
fn dimension(part: &str, name: &str, period: PeriodKind, days: &DayRange) -> Result<Dim, ApiError> {
    if let Some(interval) = name.strip_prefix("time") {
        let bucket = match interval {
            "" => period::default_interval(period, days.days()),
            _ => interval
                .strip_prefix(':')
                .and_then(period::parse_interval)
                .filter(|_| TIME_DIMENSIONS.contains(&name))
                .ok_or_else(|| {
                    bad(
                        part,
                        format!("must be one of {}", TIME_DIMENSIONS.join(", ")),
                    )
                })?,
        };
        return Ok(Dim::Time(bucket));
    }
    match filter::parse_property(name) {
        Ok(Property::Event(c)) => Ok(Dim::Event(c)),
        Ok(Property::Visit(a)) => Ok(Dim::Visit(a)),
        Err(ApiError::BadParam { rule, .. }) => Err(bad(part, rule)),
        Err(e) => Err(e),
    }
}

fn dimensions(
    v: Option<&Json>,
    period: PeriodKind,
    days: &DayRange,
) -> Result<(Vec<Dim>, Vec<String>), ApiError> {
    let Some(v) = v else {
        return Ok((Vec::new(), Vec::new()));
    };
    let items = array("dimensions", v)?;
    if items.len() > MAX_DIMENSIONS {
        return Err(bad(
            "dimensions",
            format!("at most {MAX_DIMENSIONS} dimensions"),
        ));
    }
    let (mut dims, mut names) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        let part = format!("dimensions[{i}]");
        let name = string(&part, item)?;
        let d = dimension(&part, name, period, days)?;
        if dims.contains(&d)
            || (matches!(d, Dim::Time(_)) && dims.iter().any(|x| matches!(x, Dim::Time(_))))
        {
            return Err(bad(part, format!("`{name}` repeats a dimension")));
        }
        let name = match d {
            Dim::Time(b) => format!("time:{}", period::interval_name(b)),
            _ => name.to_owned(),
        };
        dims.push(d);
        names.push(name);
    }
    Ok((dims, names))
}

/// The top-level `filters` list (combined with `and`).
fn filters(v: Option<&Json>) -> Result<Option<Cond>, ApiError> {
    let Some(v) = v else {
        return Ok(None);
    };
    let items = array("filters", v)?;
    let mut tests = 0;
    let conds = items
        .iter()
        .enumerate()
        .map(|(i, f)| cond(&format!("filters[{i}]"), f, 1, &mut tests))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match conds.len() {
        0 => None,
        1 => conds.into_iter().next(),
        _ => Some(Cond::And(conds)),
    })
}

/// One node of the tree: `[connective, [nodes…]]`, `["not", node]` or
/// `[operator, dimension, [values…]]`.
fn cond(part: &str, v: &Json, depth: usize, tests: &mut usize) -> Result<Cond, ApiError> {
    let shape = "must be [\"and\"|\"or\", [filters…]], [\"not\", filter] or [operator, dimension, [values…]]";
    let items = array(part, v)?;
    let Some(head) = items.first() else {
        return Err(bad(part, shape));
    };
    let head = string(&format!("{part}[0]"), head)?;
    if CONNECTIVES.contains(&head) && depth > MAX_DEPTH {
        return Err(bad(part, format!("filters nest at most {MAX_DEPTH} deep")));
    }
    match (head, items.len()) {
        ("and" | "or", 2) => {
            let list_part = format!("{part}[1]");
            let list = array(&list_part, &items[1])?;
            if list.is_empty() {
                return Err(bad(
                    list_part,
                    format!("`{head}` needs at least one filter"),
                ));
            }
            let xs = list
                .iter()
                .enumerate()
                .map(|(i, x)| cond(&format!("{list_part}[{i}]"), x, depth + 1, tests))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if head == "and" {
                Cond::And(xs)
            } else {
                Cond::Or(xs)
            })
        }
        ("not", 2) => Ok(Cond::Not(Box::new(cond(
            &format!("{part}[1]"),
            &items[1],
            depth + 1,
            tests,
        )?))),
        (op, 3) if OPERATORS.contains(&op) => {
            *tests += 1;
            if *tests > MAX_TESTS {
                return Err(bad(
                    part,
                    format!("at most {MAX_TESTS} tests in all filters"),
                ));
            }
            test(part, op, &items[1], &items[2])
        }
        (op, _) if CONNECTIVES.contains(&op) || OPERATORS.contains(&op) => Err(bad(part, shape)),
        (other, _) => Err(bad(
            format!("{part}[0]"),
            format!(
                "`{}` is not one of {}, {}",
                cut(other),
                CONNECTIVES.join(", "),
                OPERATORS.join(", ")
            ),
        )),
    }
}

fn test(part: &str, op: &str, dim: &Json, values: &Json) -> Result<Cond, ApiError> {
    let dim_part = format!("{part}[1]");
    let name = string(&dim_part, dim)?;
    let dim = match filter::parse_property(name) {
        Ok(Property::Event(c)) => Dim::Event(c),
        Ok(Property::Visit(a)) => Dim::Visit(a),
        Err(_) if name.starts_with("time") => {
            return Err(bad(
                dim_part,
                "time is not filtered: choose the date_range instead",
            ));
        }
        Err(ApiError::BadParam { rule, .. }) => return Err(bad(dim_part, rule)),
        Err(e) => return Err(e),
    };
    let op = match op {
        "is" => Op::Is,
        "is_not" => Op::IsNot,
        "contains" => Op::Contains,
        _ => Op::Matches,
    };
    let values_part = format!("{part}[2]");
    let list = array(&values_part, values)?;
    if list.is_empty() || list.len() > MAX_VALUES {
        return Err(bad(
            values_part,
            format!("must hold 1 to {MAX_VALUES} values"),
        ));
    }
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let p = format!("{values_part}[{i}]");
        let v = string(&p, v)?;
        if v.len() > MAX_VALUE_LEN || v.chars().any(char::is_control) {
            return Err(bad(
                p,
                "must be at most 512 bytes without control characters",
            ));
        }
        match op {
            Op::Contains if v.is_empty() => {
                return Err(bad(p, "a `contains` value must not be empty"));
            }
            Op::Matches => check_pattern(v).map_err(|rule| bad(&p, rule))?,
            _ => {}
        }
        out.push(v.to_owned());
    }
    Ok(Cond::Test {
        dim,
        op,
        values: out,
    })
}

/// A `matches` pattern must be one that ClickHouse (RE2, in every supported release) and this
/// check read alike: at most [`MAX_PATTERN_LEN`] bytes, valid, and without the syntax where
/// the two differ or that old RE2 lacks (named groups, flags, Unicode classes, nested classes
/// and class set operations). Flags include `(?i)`: 18.16 first searches a pattern's fixed
/// text case-sensitively, so `(?i)EXAMPLE\.COM` matched nothing there (found by the random
/// query test). A pattern is refused here, never by
/// the store.
pub fn check_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "a regular expression must be 1 to {MAX_PATTERN_LEN} bytes"
        ));
    }
    let b = p.as_bytes();
    let mut class = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if matches!(
                    b.get(i + 1),
                    Some(b'p' | b'P' | b'x' | b'u' | b'U' | b'k' | b'g')
                ) {
                    return Err(format!(
                        "`\\{}` is not accepted (Unicode classes, code points and references differ between regex engines)",
                        b[i + 1] as char
                    ));
                }
                i += 2;
                continue;
            }
            b'[' if class => {
                if b.get(i + 1) != Some(&b':') {
                    return Err("nested character classes are not accepted".into());
                }
                // A POSIX class `[:alpha:]`: skip to its `:]`.
                match p[i..].find(":]") {
                    Some(end) => i += end + 2,
                    None => return Err("unterminated `[:` class".into()),
                }
                continue;
            }
            b'[' => {
                class = true;
                // A leading `]` or `^]` is a literal.
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if class => class = false,
            b'&' | b'~' | b'-' if class && b.get(i + 1) == Some(&b[i]) => {
                return Err("character class set operations are not accepted".into());
            }
            b'(' if !class && b.get(i + 1) == Some(&b'?') => {
                let rest = &p[i + 2..];
                if !rest.starts_with(':') {
                    return Err(
                        "only (?:…) groups are accepted: no named groups and no flags (ClickHouse 18.16 ignores (?i) where it looks for a pattern's fixed text first; for case-insensitive text use `contains` or classes such as [Bb])"
                            .into(),
                    );
                }
            }
            _ => {}
        }
        i += 1;
    }
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "the regular expression is too complex".to_owned(),
            other => format!(
                "is not a valid regular expression: {}",
                other.to_string().lines().last().unwrap_or("invalid")
            ),
        })
}

fn order_by(
    v: Option<&Json>,
    metrics: &[Metric],
    dims: &[String],
) -> Result<Vec<(OrderKey, bool)>, ApiError> {
    let Some(v) = v else {
        // Time first (ascending), else the first metric, most first.
        return Ok(match dims.iter().position(|d| d.starts_with("time:")) {
            Some(t) => vec![(OrderKey::Dimension(t), false)],
            None => vec![(OrderKey::Metric(0), true)],
        });
    };
    let items = array("order_by", v)?;
    let mut out: Vec<(OrderKey, bool)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let part = format!("order_by[{i}]");
        let pair = array(&part, item)?;
        let [name, dir] = pair else {
            return Err(bad(part, "must be [metric or dimension, \"asc\"|\"desc\"]"));
        };
        let name = string(&format!("{part}[0]"), name)?;
        let key = if let Some(m) = metrics.iter().position(|m| m.name() == name) {
            OrderKey::Metric(m)
        } else if let Some(d) = dims.iter().position(|d| d == name) {
            OrderKey::Dimension(d)
        } else {
            return Err(bad(
                format!("{part}[0]"),
                format!(
                    "`{}` is neither a requested metric nor a dimension",
                    cut(name)
                ),
            ));
        };
        let desc = match string(&format!("{part}[1]"), dir)? {
            "asc" => false,
            "desc" => true,
            _ => return Err(bad(format!("{part}[1]"), "must be asc or desc")),
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(bad(part, format!("orders by `{name}` twice")));
        }
        out.push((key, desc));
    }
    Ok(out)
}

fn pagination(v: Option<&Json>) -> Result<(u64, u64), ApiError> {
    let Some(v) = v else {
        return Ok((DEFAULT_ROWS, 0));
    };
    let Json::Object(map) = v else {
        return Err(bad(
            "pagination",
            format!("must be an object {{limit, offset}}, not {}", kind(v)),
        ));
    };
    if let Some(k) = map.keys().find(|k| *k != "limit" && *k != "offset") {
        return Err(bad(
            format!("pagination.{}", cut(k)),
            "is not accepted (limit, offset)",
        ));
    }
    let int = |k: &str, min: u64, max: u64, default: u64| match map.get(k) {
        None => Ok(default),
        Some(x) => x
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                bad(
                    format!("pagination.{k}"),
                    format!("must be an integer from {min} to {max}"),
                )
            }),
    };
    Ok((
        int("limit", 1, MAX_ROWS, DEFAULT_ROWS)?,
        int("offset", 0, MAX_GROUPS, 0)?,
    ))
}

#[derive(Debug, Row, Deserialize)]
struct EventGroup {
    dims: Vec<String>,
    visitors: u64,
    pageviews: u64,
    events: u64,
}

#[derive(Debug, Row, Deserialize)]
struct VisitGroup {
    dims: Vec<String>,
    visits: u64,
    bounces: u64,
    duration: u64,
    visit_pageviews: u64,
}

/// One group's counts: a row of [`sql::both`], or merged from the two statements' rows
/// (zeros where one had no row; `dims` is then left empty: the map's key holds it).
#[derive(Debug, Default, Clone, Row, Deserialize)]
struct Counts {
    dims: Vec<String>,
    visitors: u64,
    pageviews: u64,
    events: u64,
    visits: u64,
    bounces: u64,
    duration: u64,
    visit_pageviews: u64,
}

impl Counts {
    fn value(&self, m: Metric) -> Json {
        match m {
            Metric::Visitors => self.visitors.into(),
            Metric::Pageviews => self.pageviews.into(),
            Metric::Events => self.events.into(),
            Metric::Visits => self.visits.into(),
            Metric::ViewsPerVisit => views_per_visit(self.visit_pageviews, self.visits).into(),
            Metric::BounceRate => bounce_rate(self.bounces, self.visits).into(),
            Metric::VisitDuration => visit_duration(self.duration, self.visits).into(),
        }
    }
}

/// The groups of the query's dimensions: each statement the metrics need, merged by the
/// dimension values; with dimensions, the totals are the group `[]`.
async fn groups(db: &StatsDb, q: &QueryV2) -> Result<BTreeMap<Vec<String>, Counts>, ApiError> {
    let mut sq = sql::Query {
        scope: Scope {
            site_id: &q.site_id,
            from: q.from.timestamp() as u32,
            to: q.to.timestamp() as u32,
            filters: &[],
        },
        dims: &q.dimensions,
        filter: q.filter.as_ref(),
        tz: q.tz.name(),
        cover: None,
    };
    // Closed days with a current rollup build are read from their visit rows when every
    // dimension and test is rolled up.
    let cover = if sql::can_roll_up(&sq) {
        stats::coverage(db, &sq.scope).await
    } else {
        Default::default()
    };
    if !cover.is_empty() {
        sq.cover = Some(&cover);
    }
    let need_events = q.metrics.iter().any(|m| !m.of_visits());
    let need_visits = q.metrics.iter().any(|m| m.of_visits());
    if need_events && need_visits && sql::by_visit_rows(&sq) {
        let rows = sql::both(&sq)
            .query(&db.client)
            .fetch_all::<Counts>()
            .await?;
        check_group_count(rows.len())?;
        return Ok(rows
            .into_iter()
            .map(|mut c| (std::mem::take(&mut c.dims), c))
            .collect());
    }
    let by_event = async {
        if !need_events {
            return Ok(Vec::new());
        }
        sql::events(&sq)
            .query(&db.client)
            .fetch_all::<EventGroup>()
            .await
    };
    let by_visit = async {
        if !need_visits {
            return Ok(Vec::new());
        }
        sql::visits(&sq)
            .query(&db.client)
            .fetch_all::<VisitGroup>()
            .await
    };
    let (events, visits) = tokio::try_join!(by_event, by_visit)?;
    check_group_count(events.len().max(visits.len()))?;
    let mut out: BTreeMap<Vec<String>, Counts> = BTreeMap::new();
    for e in events {
        let c = out.entry(e.dims).or_default();
        (c.visitors, c.pageviews, c.events) = (e.visitors, e.pageviews, e.events);
    }
    for v in visits {
        let c = out.entry(v.dims).or_default();
        (c.visits, c.bounces, c.duration, c.visit_pageviews) =
            (v.visits, v.bounces, v.duration, v.visit_pageviews);
    }
    Ok(out)
}

/// A statement's rows within [`MAX_GROUPS`] (the totals' row is one more).
fn check_group_count(rows: usize) -> Result<(), ApiError> {
    if rows as u64 > MAX_GROUPS + 1 {
        return Err(bad(
            "dimensions",
            format!("give more than {MAX_GROUPS} rows; add filters or fewer dimensions"),
        ));
    }
    Ok(())
}

/// A value compared as the order asks: metrics as numbers, minute and hour buckets (Unix
/// seconds) as numbers, other dimensions as text.
fn compare(a: &Json, b: &Json) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.as_str().cmp(&b.as_str()),
    }
}

/// The answer: `results` rows of `{dimensions, metrics}` and `meta`.
pub async fn run(db: &StatsDb, q: &QueryV2) -> Result<Json, ApiError> {
    let mut rows = groups(db, q).await?;
    // Without dimensions the one row is the totals; with them, the group `[]` (none when
    // nothing matched).
    let totals = if q.dimensions.is_empty() {
        rows.values().next().cloned().unwrap_or_default()
    } else {
        rows.remove(&Vec::new()).unwrap_or_default()
    };
    // Time keys become labels; minute and hour keys (Unix seconds) sort as numbers.
    let labels: Vec<Option<HashMap<String, String>>> = q
        .dimensions
        .iter()
        .map(|d| match d {
            Dim::Time(b) => Some(
                period::buckets(*b, q.tz, q.from, q.to)
                    .map(|slots| slots.into_iter().map(|s| (s.key, s.label)).collect())
                    .unwrap_or_default(),
            ),
            _ => None,
        })
        .collect();
    let sort_key = |i: usize, key: &str| -> Json {
        match q.dimensions[i] {
            Dim::Time(Bucket::Minute | Bucket::Hour) => {
                key.parse::<u64>().map_or(key.into(), Json::from)
            }
            _ => key.into(),
        }
    };
    let mut table: Vec<(Vec<Json>, Vec<Json>, Vec<String>)> = rows
        .into_iter()
        .map(|(keys, counts)| {
            let sorted: Vec<Json> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| sort_key(i, k))
                .collect();
            let metrics = q.metrics.iter().map(|m| counts.value(*m)).collect();
            (sorted, metrics, keys)
        })
        .collect();
    table.sort_by(|a, b| {
        q.order_by
            .iter()
            .map(|(key, desc)| {
                let o = match key {
                    OrderKey::Metric(m) => compare(&a.1[*m], &b.1[*m]),
                    OrderKey::Dimension(d) => compare(&a.0[*d], &b.0[*d]),
                };
                if *desc { o.reverse() } else { o }
            })
            .chain((0..a.0.len()).map(|d| compare(&a.0[d], &b.0[d])))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    let total_rows = table.len() as u64;
    let results: Vec<Json> = table
        .into_iter()
        .skip(q.offset as usize)
        .take(q.limit as usize)
        .map(|(_, metrics, keys)| {
            let dims: Vec<String> = keys
                .into_iter()
                .enumerate()
                .map(|(i, k)| match &labels[i] {
                    Some(map) => map.get(&k).cloned().unwrap_or(k),
                    None => k,
                })
                .collect();
            json!({"dimensions": dims, "metrics": metrics})
        })
        .collect();
    let totals: serde_json::Map<String, Json> = q
        .metrics
        .iter()
        .map(|m| (m.name().to_owned(), totals.value(*m)))
        .collect();
    Ok(json!({
        "results": results,
        "meta": {
            "site_id": q.site_id,
            "metrics": q.metrics.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "dimensions": q.dimension_names,
            "timezone": q.tz.name(),
            "date_range": {
                "period": q.period.name(),
                "from": q.from.to_rfc3339(),
                "to": q.to.to_rfc3339(),
                "first_day": q.days.first.to_string(),
                "last_day": (q.days.end - Duration::days(1)).to_string(),
            },
            "order_by": q.order_by.iter().map(|(k, desc)| {
                let name = match k {
                    OrderKey::Metric(m) => q.metrics[*m].name().to_owned(),
                    OrderKey::Dimension(d) => q.dimension_names[*d].clone(),
                };
                json!([name, if *desc { "desc" } else { "asc" }])
            }).collect::<Vec<_>>(),
            "pagination": {"limit": q.limit, "offset": q.offset},
            "total_rows": total_rows,
            "has_more": q.offset + q.limit < total_rows,
            "totals": totals,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::params::testing::at;

    fn parse(body: Json) -> Result<QueryV2, ApiError> {
        QueryV2::parse(body.to_string().as_bytes(), at("2025-11-30T12:00:00Z"))
    }

    /// The part a body is refused for, and the message.
    fn refused(body: Json) -> (String, String) {
        match parse(body) {
            Err(e @ ApiError::BadQuery { .. }) => {
                let message = e.to_string();
                let ApiError::BadQuery { part, .. } = e else {
                    unreachable!()
                };
                (part, message)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_full_query_is_read_into_its_parts() {
        let q = parse(json!({
            "site_id": "s", "metrics": ["visitors", "bounce_rate"], "date_range": ["2025-11-01", "2025-11-07"],
            "timezone": "Europe/Berlin", "dimensions": ["source", "time:day"],
            "filters": [["or", [["is", "country", ["DE", "AT"]], ["not", ["matches", "entry_page", ["^/blog/"]]]]]],
            "order_by": [["bounce_rate", "asc"]], "pagination": {"limit": 5, "offset": 10}
        }))
        .unwrap();
        assert_eq!(q.metrics, [Metric::Visitors, Metric::BounceRate]);
        assert_eq!(q.dimension_names, ["source", "time:day"]);
        assert_eq!(q.from.to_rfc3339(), "2025-10-31T23:00:00+00:00");
        assert_eq!(q.order_by, [(OrderKey::Metric(1), false)]);
        assert_eq!((q.limit, q.offset), (5, 10));
        let Some(Cond::Or(xs)) = &q.filter else {
            panic!("{:?}", q.filter)
        };
        assert!(
            matches!(&xs[1], Cond::Not(x) if matches!(**x, Cond::Test { op: Op::Matches, .. }))
        );
        // Defaults: 30 days, time ordered first, else the first metric descending.
        let q =
            parse(json!({"site_id": "s", "metrics": ["events"], "dimensions": ["page", "time"]}))
                .unwrap();
        assert_eq!(q.dimension_names, ["page", "time:day"]);
        assert_eq!(q.order_by, [(OrderKey::Dimension(1), false)]);
        assert_eq!(q.days.days(), 30);
        let q = parse(json!({"site_id": "s", "metrics": ["events", "visitors"]})).unwrap();
        assert_eq!(q.order_by, [(OrderKey::Metric(0), true)]);
    }

    #[test]
    fn every_fault_is_refused_naming_its_part() {
        let ok = json!({"site_id": "s", "metrics": ["visitors"]});
        let with = |k: &str, v: Json| {
            let mut b = ok.clone();
            b[k] = v;
            b
        };
        for (body, part, says) in [
            (json!([1]), "body", "must be an object"),
            (json!({"metrics": ["visitors"]}), "site_id", "is required"),
            (with("site_id", json!("a b")), "site_id", "A-Za-z0-9"),
            (with("metrics", json!([])), "metrics", "1 to 7"),
            (
                with("metrics", json!(["visitors", "visitors"])),
                "metrics[1]",
                "twice",
            ),
            (
                with("metrics", json!([3])),
                "metrics[0]",
                "must be a string, not a number",
            ),
            (
                with("date_range", json!("yesterday")),
                "date_range",
                "[first_day, last_day]",
            ),
            (
                with("date_range", json!(["2025-11-07", "2025-11-01"])),
                "date_range",
                "",
            ),
            (with("timezone", json!("Mars/Olympus")), "timezone", "IANA"),
            (
                with("dimensions", json!(["page", "page"])),
                "dimensions[1]",
                "repeats",
            ),
            (
                with("dimensions", json!(["time:day", "time:hour"])),
                "dimensions[1]",
                "repeats",
            ),
            (
                with("dimensions", json!(["a", "b", "c", "d"])),
                "dimensions",
                "at most 3",
            ),
            (
                with("dimensions", json!(["pages"])),
                "dimensions[0]",
                "must be one of",
            ),
            (
                with("dimensions", json!(["time:minute"])),
                "dimensions",
                "buckets",
            ),
            (with("filters", json!({})), "filters", "must be an array"),
            (
                with("filters", json!([["is", "page"]])),
                "filters[0]",
                "must be [",
            ),
            (
                with("filters", json!([["is", "page", []]])),
                "filters[0][2]",
                "1 to 20",
            ),
            (
                with("filters", json!([["is", "time:day", ["x"]]])),
                "filters[0][1]",
                "date_range",
            ),
            (
                with("filters", json!([["is", "pgae", ["x"]]])),
                "filters[0][1]",
                "must be one of",
            ),
            (
                with("filters", json!([["contains", "page", [""]]])),
                "filters[0][2][0]",
                "empty",
            ),
            (
                with("filters", json!([["is", "page", ["a\u{1}"]]])),
                "filters[0][2][0]",
                "control",
            ),
            (
                with("filters", json!([["and", []]])),
                "filters[0][1]",
                "at least one",
            ),
            (
                with(
                    "filters",
                    json!([["or", [["is", "page", ["/"]], ["nope", 1]]]]),
                ),
                "filters[0][1][1][0]",
                "is not one of",
            ),
            (
                with("filters", json!([["matches", "page", ["(unclosed"]]])),
                "filters[0][2][0]",
                "not a valid regular expression",
            ),
            (
                with("filters", json!([["matches", "page", ["(?P<n>x)"]]])),
                "filters[0][2][0]",
                "named groups",
            ),
            (
                with("filters", json!([["matches", "page", ["(?i)/blog"]]])),
                "filters[0][2][0]",
                "no flags",
            ),
            (
                with("filters", json!([["matches", "page", ["\\p{Greek}"]]])),
                "filters[0][2][0]",
                "Unicode",
            ),
            (
                with("filters", json!([["matches", "page", ["[[a]]"]]])),
                "filters[0][2][0]",
                "nested",
            ),
            (
                with("filters", json!([["matches", "page", ["[a&&b]"]]])),
                "filters[0][2][0]",
                "set operations",
            ),
            (
                with("filters", json!([["matches", "page", ["a".repeat(257)]]])),
                "filters[0][2][0]",
                "1 to 256",
            ),
            (
                with("filters", json!([["matches", "page", ["a{1000}{1000}"]]])),
                "filters[0][2][0]",
                "",
            ),
            (
                with("order_by", json!([["events", "desc"]])),
                "order_by[0][0]",
                "neither",
            ),
            (
                with("order_by", json!([["visitors", "up"]])),
                "order_by[0][1]",
                "asc or desc",
            ),
            (
                with(
                    "order_by",
                    json!([["visitors", "asc"], ["visitors", "desc"]]),
                ),
                "order_by[1]",
                "twice",
            ),
            (
                with("pagination", json!({"limit": 0})),
                "pagination.limit",
                "1 to 10000",
            ),
            (
                with("pagination", json!({"page": 2})),
                "pagination.page",
                "not accepted",
            ),
            (
                with("pagination", json!({"offset": -1})),
                "pagination.offset",
                "integer",
            ),
        ] {
            let (p, message) = refused(body.clone());
            assert_eq!(p, part, "{body}: {message}");
            assert!(message.contains(says), "{body}: {message}");
        }
        let deep = (0..MAX_DEPTH).fold(json!(["is", "page", ["/"]]), |f, _| json!(["not", f]));
        assert!(parse(with("filters", json!([deep]))).is_ok());
        let (p, message) = refused(with("filters", json!([["not", deep]])));
        assert!(message.contains("nest at most"), "{p}: {message}");
        let many: Vec<Json> = (0..=MAX_TESTS)
            .map(|_| json!(["is", "page", ["/"]]))
            .collect();
        assert_eq!(refused(with("filters", json!(many))).0, "filters[20]");
        let (p, message) = refused(json!({"site_id": "s", "metrics": ["visitors"], "flters": []}));
        assert_eq!(p, "flters");
        assert!(message.contains("accepted: site_id"), "{message}");
    }

    #[test]
    fn visit_metrics_are_refused_with_event_dimensions_and_say_why() {
        for d in ["page", "device", "prop.plan", "event_name"] {
            let (part, message) = refused(
                json!({"site_id": "s", "metrics": ["visitors", "bounce_rate"], "dimensions": ["time:day", d]}),
            );
            assert_eq!(part, "metrics[1]");
            assert!(
                message.contains(&format!("event dimension `{d}`")),
                "{message}"
            );
        }
        for d in [
            "entry_page",
            "exit_page",
            "source",
            "utm_campaign",
            "time:week",
        ] {
            assert!(parse(json!({"site_id": "s", "metrics": ["visits", "bounce_rate", "visit_duration", "views_per_visit"], "dimensions": [d]})).is_ok(), "{d}");
        }
        // Event metrics take any dimension, and filters on event dimensions go with anything.
        assert!(parse(json!({"site_id": "s", "metrics": ["visitors", "events"], "dimensions": ["page", "source", "time:hour"], "date_range": "7d",
                             "filters": [["is", "page", ["/a"]]]})).is_ok());
        assert!(parse(json!({"site_id": "s", "metrics": ["bounce_rate"], "filters": [["is", "page", ["/a"]]]})).is_ok());
    }

    #[test]
    fn accepted_patterns_are_the_common_ones() {
        for p in [
            "^/blog/",
            "^/[Bb]log",
            "(?:a|b)+$",
            "[[:alpha:]]+",
            "[^]a-z]",
            "^/p/[0-9]{1,4}$",
            "\\.html$",
            "a-b--c",
        ] {
            assert_eq!(check_pattern(p), Ok(()), "{p}");
        }
    }
}
