//! `POST /v2/query` against an independent evaluation over the generated events: random
//! metrics × dimensions × filter trees, on every seeded database (raw and partly rolled up,
//! one server and the 2x2 cluster). The model forms visits from the range's events with the
//! visit rule of `stats_model`, evaluates the tree on each event with its visit's attributes,
//! and groups in plain Rust; it shares no code with the SQL or the validator.

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::stats_model::{self as model, Ev, VISIT_DIMS, Visit, every_seed, seeded, serve, ts};

/// POST a JSON body with a bearer token; status and JSON answer.
pub(crate) async fn post_as(token: &str, url: &str, body: &Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    post_as("test-admin-token", url, body).await
}

const EVENT_METRICS: &[&str] = &["visitors", "pageviews", "events"];
const VISIT_METRICS: &[&str] = &["visits", "views_per_visit", "bounce_rate", "visit_duration"];

/// A filter tree of the model.
#[derive(Debug, Clone)]
enum F {
    Test(&'static str, &'static str, Vec<String>),
    And(Vec<F>),
    Or(Vec<F>),
    Not(Box<F>),
}

impl F {
    fn json(&self) -> Value {
        match self {
            F::Test(op, dim, values) => json!([op, dim, values]),
            F::And(xs) => json!(["and", xs.iter().map(F::json).collect::<Vec<_>>()]),
            F::Or(xs) => json!(["or", xs.iter().map(F::json).collect::<Vec<_>>()]),
            F::Not(x) => json!(["not", x.json()]),
        }
    }

    fn tests(&self) -> usize {
        match self {
            F::Test(..) => 1,
            F::And(xs) | F::Or(xs) => xs.iter().map(F::tests).sum(),
            F::Not(x) => x.tests(),
        }
    }

    fn keeps(&self, e: &Ev, v: &Visit) -> bool {
        match self {
            F::Test(op, dim, values) => {
                let x = value(dim, e, v);
                match *op {
                    "is" => values.contains(&x),
                    "is_not" => values.iter().all(|w| *w != x),
                    "contains" => values
                        .iter()
                        .any(|w| x.to_lowercase().contains(&w.to_lowercase())),
                    "matches" => values
                        .iter()
                        .any(|w| regex::Regex::new(w).unwrap().is_match(&x)),
                    other => unreachable!("{other}"),
                }
            }
            F::And(xs) => xs.iter().all(|x| x.keeps(e, v)),
            F::Or(xs) => xs.iter().any(|x| x.keeps(e, v)),
            F::Not(x) => !x.keeps(e, v),
        }
    }
}

/// A dimension's value for an event of a visit: visit dimensions at the visit's first event
/// (exit_page: last), the others the event's own.
fn value(dim: &str, e: &Ev, v: &Visit) -> String {
    match dim {
        "entry_page" => v.attr("page", false),
        "exit_page" => v.attr("page", true),
        d if VISIT_DIMS.contains(&d) => v.attr(d, false),
        d => e.dim(d),
    }
}

/// A question to the model and the API.
#[derive(Debug, Clone)]
struct Q {
    metrics: Vec<&'static str>,
    dims: Vec<&'static str>,
    filter: Vec<F>,
    /// First and last local day, and the time zone.
    days: (&'static str, &'static str),
    tz: Tz,
}

impl Q {
    fn body(&self) -> Value {
        json!({
            "site_id": "site-1",
            "metrics": self.metrics,
            "dimensions": self.dims,
            "filters": self.filter.iter().map(F::json).collect::<Vec<_>>(),
            "date_range": [self.days.0, self.days.1],
            "timezone": self.tz.name(),
            "pagination": {"limit": 10000},
        })
    }

    /// `[from, to)` of the local days.
    fn range(&self) -> (u32, u32) {
        let start = |d: &str| {
            let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
            date.and_hms_opt(0, 0, 0)
                .unwrap()
                .and_local_timezone(self.tz)
                .unwrap()
                .timestamp() as u32
        };
        (
            start(self.days.0),
            start(self.days.1) + 86_400 + dst_shift(self.tz, self.days.1),
        )
    }
}

/// Seconds to add to `start(last) + 1 day` to reach the next local midnight: the generated
/// fortnight's only DST change is Berlin's on 2025-10-26 (a 25-hour day).
fn dst_shift(tz: Tz, last: &str) -> u32 {
    if tz == chrono_tz::Europe::Berlin && last == "2025-10-26" {
        3600
    } else {
        0
    }
}

#[derive(Debug, Default, Clone)]
struct Counts {
    visitors: BTreeSet<u64>,
    pageviews: u64,
    events: u64,
    visits: u64,
    bounces: u64,
    duration: u64,
    visit_pageviews: u64,
}

fn rate(n: u64, d: u64, scale: f64, dec: i32) -> f64 {
    if d == 0 {
        0.0
    } else {
        model::round(n as f64 * scale / d as f64, dec)
    }
}

impl Counts {
    fn metric(&self, m: &str) -> Value {
        match m {
            "visitors" => json!(self.visitors.len()),
            "pageviews" => json!(self.pageviews),
            "events" => json!(self.events),
            "visits" => json!(self.visits),
            "views_per_visit" => json!(rate(self.visit_pageviews, self.visits, 1.0, 2)),
            "bounce_rate" => json!(rate(self.bounces, self.visits, 100.0, 1)),
            "visit_duration" => json!(rate(self.duration, self.visits, 1.0, 0)),
            other => unreachable!("{other}"),
        }
    }
}

/// The model's groups: dimension values → counts.
fn evaluate(events: &[Ev], q: &Q, dims: &[&str]) -> BTreeMap<Vec<String>, Counts> {
    let (from, to) = q.range();
    let in_range: Vec<Ev> = events
        .iter()
        .filter(|e| e.site == "site-1" && e.ts >= from && e.ts < to)
        .cloned()
        .collect();
    let key = |e: &Ev, v: &Visit, time: u32| -> Vec<String> {
        dims.iter()
            .map(|d| match *d {
                "time:day" | "time:week" | "time:month" => {
                    model::bucket_label(time, q.tz, &d["time:".len()..])
                }
                d => value(d, e, v),
            })
            .collect()
    };
    let mut out: BTreeMap<Vec<String>, Counts> = BTreeMap::new();
    for v in model::visits(&in_range) {
        let kept: Vec<&Ev> = v
            .evs
            .iter()
            .filter(|e| q.filter.iter().all(|f| f.keeps(e, &v)))
            .collect();
        for e in &kept {
            let c = out.entry(key(e, &v, e.ts)).or_default();
            c.visitors.insert(e.visitor);
            c.pageviews += u64::from(e.name == "pageview");
            c.events += 1;
        }
        if let Some(first) = kept.first()
            && q.metrics.iter().any(|m| VISIT_METRICS.contains(m))
        {
            // Visit dimensions are the same on every event of the visit; time is its start.
            let c = out.entry(key(first, &v, v.start)).or_default();
            c.visits += 1;
            c.bounces += u64::from(v.bounce());
            c.duration += v.duration();
            c.visit_pageviews += kept.iter().filter(|e| e.name == "pageview").count() as u64;
        }
    }
    // A group only the visit statement has (a visit whose kept events are all in later
    // buckets) is a row; a group with nothing to show for the metrics asked is not.
    let only_events = !q.metrics.iter().any(|m| VISIT_METRICS.contains(m));
    let only_visits = !q.metrics.iter().any(|m| EVENT_METRICS.contains(m));
    out.retain(|_, c| !(only_events && c.events == 0 || only_visits && c.visits == 0));
    out
}

/// The model's answer rows in the default order: the time dimension ascending if one, else
/// the first metric descending; then the dimensions ascending.
fn expected_rows(events: &[Ev], q: &Q) -> (Vec<Value>, Value) {
    let groups = evaluate(events, q, &q.dims);
    let mut rows: Vec<(Vec<String>, Vec<Value>)> = groups
        .iter()
        .map(|(k, c)| (k.clone(), q.metrics.iter().map(|m| c.metric(m)).collect()))
        .collect();
    let time = q.dims.iter().position(|d| d.starts_with("time"));
    rows.sort_by(|a, b| {
        let first = match time {
            Some(t) => a.0[t].cmp(&b.0[t]),
            None => b.1[0]
                .as_f64()
                .unwrap()
                .total_cmp(&a.1[0].as_f64().unwrap()),
        };
        first.then_with(|| a.0.cmp(&b.0))
    });
    if q.dims.is_empty() && rows.is_empty() {
        // Without dimensions the answer is always one row, of zeros when nothing matched.
        rows.push((
            Vec::new(),
            q.metrics
                .iter()
                .map(|m| Counts::default().metric(m))
                .collect(),
        ));
    }
    let totals = evaluate(events, q, &[]);
    let t = totals.values().next().cloned().unwrap_or_default();
    let totals: serde_json::Map<String, Value> = q
        .metrics
        .iter()
        .map(|m| ((*m).to_owned(), t.metric(m)))
        .collect();
    (
        rows.into_iter()
            .map(|(d, m)| json!({"dimensions": d, "metrics": m}))
            .collect(),
        totals.into(),
    )
}

/// The generated events' values of a dimension on site-1 (and one nobody has).
fn values_of(events: &[Ev], dim: &str) -> Vec<String> {
    let vs = model::visits(
        &events
            .iter()
            .filter(|e| e.site == "site-1")
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut out: BTreeSet<String> = BTreeSet::new();
    for v in vs.iter().take(400) {
        for e in &v.evs {
            out.insert(value(dim, e, v));
        }
    }
    out.insert("nobody-has-this".into());
    out.into_iter().collect()
}

const FILTER_DIMS: &[&str] = &[
    "page",
    "hostname",
    "device",
    "country",
    "event_name",
    "prop.plan",
    "browser",
    "entry_page",
    "exit_page",
    "source",
    "channel",
    "utm_campaign",
];

/// The dimensions the visit rollup holds (page, event name, properties, the rolled-up visit
/// attributes): a query of only these reads closed days from it.
const ROLLED_FILTER_DIMS: &[&str] = &[
    "page",
    "event_name",
    "prop.plan",
    "entry_page",
    "exit_page",
    "source",
    "channel",
    "utm_campaign",
];

fn random_test(rng: &mut StdRng, events: &[Ev], pool: &[&'static str]) -> F {
    let dim = pool[rng.random_range(0..pool.len())];
    let values = values_of(events, dim);
    let pick = |rng: &mut StdRng| values[rng.random_range(0..values.len())].clone();
    match rng.random_range(0..4) {
        0 => F::Test(
            "is",
            dim,
            (0..rng.random_range(1..=2)).map(|_| pick(rng)).collect(),
        ),
        1 => F::Test("is_not", dim, vec![pick(rng)]),
        2 => {
            // A piece of a value, in upper case: contains ignores case.
            let v: String = pick(rng).chars().skip(1).take(3).collect();
            let v = if v.is_empty() {
                "e".into()
            } else {
                v.to_uppercase()
            };
            F::Test("contains", dim, vec![v])
        }
        _ => {
            let v = pick(rng);
            let head: String = v.chars().take(2).collect();
            let pattern = match rng.random_range(0..3) {
                0 => format!("^{}", regex::escape(&head)),
                1 => format!("^(?:{}|/nowhere)$", regex::escape(&v)),
                _ => "^[a-z/]+$".to_owned(),
            };
            F::Test("matches", dim, vec![pattern])
        }
    }
}

fn random_tree(rng: &mut StdRng, events: &[Ev], depth: u32, pool: &[&'static str]) -> F {
    if depth == 0 || rng.random_range(0..3) == 0 {
        return random_test(rng, events, pool);
    }
    match rng.random_range(0..3) {
        0 => F::Not(Box::new(random_tree(rng, events, depth - 1, pool))),
        k => {
            let xs = (0..rng.random_range(2..=3))
                .map(|_| random_tree(rng, events, depth - 1, pool))
                .collect();
            if k == 1 { F::And(xs) } else { F::Or(xs) }
        }
    }
}

const DIM_POOL: &[&str] = &[
    "page",
    "device",
    "country",
    "event_name",
    "prop.plan",
    "hostname",
    "entry_page",
    "exit_page",
    "source",
    "channel",
    "time:day",
    "time:week",
    "time:month",
];

const ROLLED_DIM_POOL: &[&str] = &[
    "page",
    "event_name",
    "prop.plan",
    "entry_page",
    "exit_page",
    "source",
    "channel",
    "time:day",
    "time:week",
    "time:month",
];

/// Half the queries use only rolled-up dimensions, so that on the partly rolled-up databases
/// they read the covered days from the visit rollup.
fn random_query(rng: &mut StdRng, events: &[Ev]) -> Q {
    let rolled = rng.random_range(0..2) == 0;
    let (dim_pool, filter_pool) = if rolled {
        (ROLLED_DIM_POOL, ROLLED_FILTER_DIMS)
    } else {
        (DIM_POOL, FILTER_DIMS)
    };
    let mut dims: Vec<&'static str> = Vec::new();
    for _ in 0..rng.random_range(0..=2) {
        let d = dim_pool[rng.random_range(0..dim_pool.len())];
        // One time bucket at most (a second is a 400, tested in the unit tests).
        let second_time = d.starts_with("time:") && dims.iter().any(|x| x.starts_with("time:"));
        if !dims.contains(&d) && !second_time {
            dims.push(d);
        }
    }
    let event_dim = dims
        .iter()
        .any(|d| !VISIT_DIMS.contains(d) && !d.starts_with("time"));
    let pool: Vec<&'static str> = EVENT_METRICS
        .iter()
        .chain(if event_dim { &[][..] } else { VISIT_METRICS })
        .copied()
        .collect();
    let mut metrics: Vec<&'static str> = pool
        .iter()
        .copied()
        .filter(|_| rng.random_range(0..2) == 0)
        .collect();
    if metrics.is_empty() {
        metrics.push(pool[rng.random_range(0..pool.len())]);
    }
    // At most 20 tests in all (the API's limit; more is a 400, tested in the unit tests).
    let filter: Vec<F> = loop {
        let trees: Vec<F> = (0..rng.random_range(0..=2))
            .map(|_| random_tree(rng, events, 3, filter_pool))
            .collect();
        if trees.iter().map(F::tests).sum::<usize>() <= 20 {
            break trees;
        }
    };
    let (days, tz) = if rng.random_range(0..2) == 0 {
        (("2025-10-20", "2025-11-02"), Tz::UTC)
    } else {
        (("2025-10-24", "2025-10-26"), chrono_tz::Europe::Berlin)
    };
    Q {
        metrics,
        dims,
        filter,
        days,
        tz,
    }
}

#[tokio::test]
async fn random_queries_equal_an_independent_evaluation() {
    for (n, s) in every_seed().await.into_iter().enumerate() {
        let base = serve(&s.config).await;
        let mut rng = StdRng::seed_from_u64(2026 + n as u64);
        let (mut rows_seen, mut nonempty) = (0, 0);
        for _ in 0..60 {
            let q = random_query(&mut rng, &s.events);
            let body = q.body();
            let (status, answer) = post(&format!("{base}/v2/query"), &body).await;
            assert_eq!(status, 200, "{body}: {answer}");
            let (rows, totals) = expected_rows(&s.events, &q);
            assert_eq!(
                answer["results"],
                json!(rows),
                "seed {n}, query {body}\nanswer {answer}"
            );
            assert_eq!(answer["meta"]["totals"], totals, "seed {n}, query {body}");
            assert_eq!(answer["meta"]["total_rows"], json!(rows.len()));
            rows_seen += rows.len();
            nonempty += usize::from(!rows.is_empty());
        }
        // The generator asks questions with answers, not only empty ones.
        assert!(nonempty >= 30 && rows_seen >= 200, "{nonempty} {rows_seen}");
    }
}

/// Hand-made cases the generator may miss: every operator and connective on a visit and an
/// event dimension, hour buckets across the DST change, ordering and paging.
#[tokio::test]
async fn ordering_paging_and_hour_buckets_follow_the_query() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let url = format!("{base}/v2/query");
    let q = Q {
        metrics: vec!["visits", "visitors", "bounce_rate"],
        dims: vec!["source", "entry_page"],
        filter: vec![F::Or(vec![
            F::Test("matches", "page", vec!["^/blog/".into()]),
            F::Not(Box::new(F::Test(
                "is",
                "country",
                vec!["DE".into(), "".into()],
            ))),
        ])],
        days: ("2025-10-20", "2025-11-02"),
        tz: Tz::UTC,
    };
    let (rows, _) = expected_rows(&s.events, &q);
    let dims = |r: &Value| -> Vec<String> {
        r["dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(rows.len() > 8, "{}", rows.len());
    // Ordered by bounce rate ascending, then visits descending.
    let mut body = q.body();
    body["order_by"] = json!([["bounce_rate", "asc"], ["visits", "desc"]]);
    let (status, all) = post(&url, &body).await;
    assert_eq!(status, 200, "{all}");
    let mut expected = rows.clone();
    expected.sort_by(|a, b| {
        let m = |r: &Value, i: usize| r["metrics"][i].as_f64().unwrap();
        m(a, 2)
            .total_cmp(&m(b, 2))
            .then(m(b, 0).total_cmp(&m(a, 0)))
            .then_with(|| dims(a).cmp(&dims(b)))
    });
    assert_eq!(all["results"], json!(expected));
    // Pages of 3: the same rows, `has_more` until the last.
    for offset in [0, 3, rows.len() as u64 - 2] {
        body["pagination"] = json!({"limit": 3, "offset": offset});
        let (_, page) = post(&url, &body).await;
        let want: Vec<Value> = expected
            .iter()
            .skip(offset as usize)
            .take(3)
            .cloned()
            .collect();
        assert_eq!(page["results"], json!(want), "offset {offset}");
        assert_eq!(
            page["meta"]["has_more"],
            json!(offset + 3 < rows.len() as u64)
        );
        assert_eq!(page["meta"]["total_rows"], json!(rows.len()));
    }
    // Hour buckets in Berlin across the DST change: local RFC 3339 labels in time order,
    // events by their hour and visits by their start's.
    let body = json!({"site_id": "site-1", "metrics": ["events", "visits"], "dimensions": ["time:hour"],
                      "date_range": ["2025-10-26", "2025-10-26"], "timezone": "Europe/Berlin"});
    let (status, answer) = post(&url, &body).await;
    assert_eq!(status, 200, "{answer}");
    let (from, to) = (ts("2025-10-25T22:00:00Z"), ts("2025-10-26T23:00:00Z"));
    let day: Vec<Ev> = s
        .events
        .iter()
        .filter(|e| e.site == "site-1" && e.ts >= from && e.ts < to)
        .cloned()
        .collect();
    let tz = chrono_tz::Europe::Berlin;
    let mut want: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let hour = |t: u32| t - t % 3600; // Berlin's offsets are whole hours
    for e in &day {
        want.entry(hour(e.ts)).or_default().0 += 1;
    }
    for v in model::visits(&day) {
        want.entry(hour(v.start)).or_default().1 += 1;
    }
    let want: Vec<Value> = want
        .into_iter()
        .map(|(h, (e, v))| json!({"dimensions": [model::bucket_label(h, tz, "hour")], "metrics": [e, v]}))
        .collect();
    assert!(want.len() > 12, "{}", want.len());
    assert_eq!(answer["results"], json!(want));
    assert!(
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dimensions"][0].as_str().unwrap().ends_with("+01:00"))
    );
}

/// Bad bodies get a 400 naming the part, over HTTP; the credential rules are v1's.
#[tokio::test]
async fn bad_bodies_and_credentials_are_refused_over_http() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let url = format!("{base}/v2/query");
    let ok = json!({"site_id": "site-1", "metrics": ["visitors"]});
    let (status, body) = post(&url, &json!({"site_id": "site-1", "metrics": ["visitors"], "dimensions": ["page"], "filters": [["matches", "page", ["(?<x>a)"]]]})).await;
    assert_eq!(
        (status, body["error"].as_str(), body["part"].as_str()),
        (400, Some("bad_query"), Some("filters[0][2][0]")),
        "{body}"
    );
    let res = reqwest::Client::new()
        .post(&url)
        .bearer_auth("test-admin-token")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let big = "x".repeat(70_000);
    let (status, _) = post(
        &url,
        &json!({"site_id": "site-1", "metrics": ["visitors"], "pad": big}),
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = post_as("wrong-token", &url, &ok).await;
    assert_eq!(status, 401);
    let (status, _) = post_as("test-read-site-2", &url, &ok).await;
    assert_eq!(status, 403);
    let (status, body) = post_as("test-read-site-1", &url, &ok).await;
    assert_eq!(status, 200, "{body}");
    let res = reqwest::Client::new()
        .post(format!("{url}?share=test-share-site-1"))
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let res = reqwest::Client::new()
        .post(format!("{url}?site_id=site-1"))
        .bearer_auth("test-admin-token")
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        400,
        "query-string parameters other than share"
    );
    let res = reqwest::Client::new()
        .get(&url)
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
}

/// Without filters v2 and v1 mean the same: the totals equal the aggregate's, a visit
/// dimension's rows the v1 breakdown's, a day's buckets the timeseries'.
#[tokio::test]
async fn without_filters_v2_agrees_with_v1() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        let range = "site_id=site-1&period=custom&from=2025-10-20&to=2025-11-02";
        let all = [
            "visitors",
            "visits",
            "pageviews",
            "views_per_visit",
            "bounce_rate",
            "visit_duration",
            "events",
        ];
        let v2 = |dims: Value, metrics: &[&str]| {
            json!({"site_id": "site-1", "metrics": metrics, "dimensions": dims,
                   "date_range": ["2025-10-20", "2025-11-02"]})
        };
        let (status, v1) = model::admin(&format!("{base}/v1/stats/aggregate?{range}")).await;
        assert_eq!(status, 200);
        let (status, answer) = post(&format!("{base}/v2/query"), &v2(json!([]), &all)).await;
        assert_eq!(status, 200, "{answer}");
        for (i, m) in all.iter().enumerate() {
            assert_eq!(
                answer["results"][0]["metrics"][i], v1["results"][m]["value"],
                "{m}"
            );
            assert_eq!(
                answer["meta"]["totals"][m], v1["results"][m]["value"],
                "{m}"
            );
        }
        let visit_metrics = [
            "visitors",
            "visits",
            "pageviews",
            "bounce_rate",
            "visit_duration",
        ];
        for dim in ["source", "entry_page", "exit_page", "utm_campaign"] {
            let (_, v1) = model::admin(&format!(
                "{base}/v1/stats/breakdown?{range}&property={dim}&limit=1000"
            ))
            .await;
            let (status, answer) = post(
                &format!("{base}/v2/query"),
                &v2(json!([dim]), &visit_metrics),
            )
            .await;
            assert_eq!(status, 200, "{answer}");
            let v1_rows: BTreeMap<String, Vec<Value>> = v1["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let key = r["value"].as_str().unwrap().to_owned();
                    (key, visit_metrics.iter().map(|m| r[m].clone()).collect())
                })
                .collect();
            let v2_rows: BTreeMap<String, Vec<Value>> = answer["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let key = r["dimensions"][0].as_str().unwrap().to_owned();
                    (key, r["metrics"].as_array().unwrap().clone())
                })
                .collect();
            assert!(v1_rows.len() > 1, "{dim}");
            assert_eq!(v2_rows, v1_rows, "{dim}");
        }
        let (_, v1) = model::admin(&format!(
            "{base}/v1/stats/timeseries?{range}&interval=day&timezone=Europe/Berlin"
        ))
        .await;
        let mut body = v2(json!(["time:day"]), &all);
        body["timezone"] = json!("Europe/Berlin");
        let (status, answer) = post(&format!("{base}/v2/query"), &body).await;
        assert_eq!(status, 200, "{answer}");
        let v2_rows: Vec<&Value> = answer["results"].as_array().unwrap().iter().collect();
        let v1_rows: Vec<&Value> = v1["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["events"] != 0 || r["visits"] != 0)
            .collect();
        assert_eq!(v2_rows.len(), v1_rows.len());
        for (a, b) in v2_rows.iter().zip(&v1_rows) {
            assert_eq!(a["dimensions"][0], b["date"]);
            for (i, m) in all.iter().enumerate() {
                // v1 divides the bucket's pageviews (by event time) by its visits (by start);
                // v2 the pageviews of the visits started in it: they differ for a visit
                // across local midnight.
                if *m != "views_per_visit" {
                    assert_eq!(a["metrics"][i], b[m], "{m} on {}", b["date"]);
                }
            }
        }
    }
}
