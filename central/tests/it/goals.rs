//! Goals (`/v1/goals`, `/v1/stats/goals`) against the independent model over the generated
//! events, on every seeded database (raw and partly rolled up, one server and the cluster).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::stats_model::{
    self as model, DAYS, GOALS, START, VISIT_DIMS, admin, every_seed, get_as, seeded, select, serve,
};

const RANGE: &str = "site_id=site-1&period=custom&from=2025-10-20&to=2025-11-02";
const END: u32 = START + DAYS * 86_400;

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn rate(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        model::round(n as f64 * 100.0 / d as f64, 1)
    }
}

/// Revenue of `events` per currency, as the API writes it.
fn revenue<'a>(events: impl Iterator<Item = &'a model::Ev>) -> Value {
    let mut by: BTreeMap<&str, (i128, u64)> = BTreeMap::new();
    for e in events {
        if let Some((e4, c)) = &e.revenue {
            let t = by.entry(c).or_default();
            t.0 += i128::from(*e4);
            t.1 += 1;
        }
    }
    let dec = |v: i128| format!("{}.{:04}", v / 10_000, v % 10_000);
    json!(
        by.into_iter()
            .map(|(c, (total, n))| {
                // Half up, in integers.
                let avg = (2 * total + i128::from(n)) / (2 * i128::from(n));
                json!({"currency": c, "total": dec(total), "average": dec(avg), "events": n})
            })
            .collect::<Vec<_>>()
    )
}

fn distinct<'a>(visitors: impl Iterator<Item = &'a u64>) -> u64 {
    visitors.collect::<BTreeSet<_>>().len() as u64
}

/// Every goal's row over `events` (already selected by range and filters).
fn expected_totals(events: &[model::Ev]) -> (u64, Vec<Value>) {
    let all = distinct(events.iter().map(|e| &e.visitor));
    let rows = GOALS
        .iter()
        .map(|g| {
            let hits: Vec<&model::Ev> = events.iter().filter(|e| g.matches(e)).collect();
            let visitors = distinct(hits.iter().map(|e| &e.visitor));
            json!({
                "goal": g.id,
                "name": if g.id == "pricing" { "Saw pricing" } else { g.id },
                "visitors": visitors,
                "conversions": hits.len(),
                "conversion_rate": rate(visitors, all),
                "revenue": revenue(hits.iter().copied()),
            })
        })
        .collect();
    (all, rows)
}

/// One goal's breakdown by `dim` over `events`, sorted as the API sorts it: per value, the
/// converting visitors, conversions, and the rate against the visitors of that value.
fn expected_breakdown(events: &[model::Ev], goal: &model::Goal, dim: &str) -> Vec<Value> {
    // value -> (visitors of the value, converting visitors, conversions, the conversions)
    type Group = (BTreeSet<u64>, BTreeSet<u64>, u64, Vec<model::Ev>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    if VISIT_DIMS.contains(&dim) {
        let (column, at_exit) = match dim {
            "entry_page" => ("page", false),
            "exit_page" => ("page", true),
            d => (d, false),
        };
        for v in model::visits(events) {
            let g = groups.entry(v.attr(column, at_exit)).or_default();
            let hits: Vec<model::Ev> = v.evs.iter().filter(|e| goal.matches(e)).cloned().collect();
            g.0.insert(v.visitor);
            if !hits.is_empty() {
                g.1.insert(v.visitor);
            }
            g.2 += hits.len() as u64;
            g.3.extend(hits);
        }
    } else {
        for e in events {
            if let Some(key) = dim.strip_prefix("prop.")
                && !e.props.iter().any(|(k, _)| k == key)
            {
                continue;
            }
            let g = groups.entry(e.dim(dim)).or_default();
            g.0.insert(e.visitor);
            if goal.matches(e) {
                g.1.insert(e.visitor);
                g.2 += 1;
                g.3.push(e.clone());
            }
        }
    }
    let mut rows: Vec<(u64, u64, String, Value)> = groups
        .into_iter()
        .filter(|(_, g)| g.2 > 0)
        .map(|(value, (all, converted, conversions, hits))| {
            let c = converted.len() as u64;
            let row = json!({
                "value": value,
                "visitors": c,
                "conversions": conversions,
                "conversion_rate": rate(c, all.len() as u64),
                "revenue": revenue(hits.iter()),
            });
            (c, conversions, value, row)
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    rows.into_iter().map(|r| r.3).collect()
}

#[tokio::test]
async fn goal_totals_equal_an_independent_computation_with_and_without_filters() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        for filters in [
            vec![],
            vec![("country", "is", "DE")],
            vec![("source", "is", "Google"), ("device", "is_not", "mobile")],
            vec![("prop.plan", "is", "pro")],
            vec![("entry_page", "is", "/pricing")],
            vec![("exit_page", "contains", "DOC")],
        ] {
            let query: String = filters
                .iter()
                .map(|(d, o, v)| format!("&filter={}", urlencode(&format!("{d}:{o}:{v}"))))
                .collect();
            let (status, body) = admin(&format!("{base}/v1/stats/goals?{RANGE}{query}")).await;
            assert_eq!(status, 200, "{filters:?}: {body}");
            let events = select(&s.events, "site-1", START, END, &filters);
            let (visitors, rows) = expected_totals(&events);
            assert_eq!(body["visitors"], visitors, "{filters:?}");
            assert_eq!(body["results"], json!(rows), "{filters:?}");
        }
        // Every goal reached by someone, except the one nobody can reach: the data exercise
        // each kind of pattern.
        let (_, rows) = expected_totals(&select(&s.events, "site-1", START, END, &[]));
        for row in &rows {
            let reached = row["visitors"].as_u64().unwrap() > 0;
            assert_eq!(reached, row["goal"] != "nobody", "{row}");
        }
        // Revenue by hand: two currencies, a sum beyond Decimal(18, 4), the average rounded.
        assert_eq!(
            rows[8]["revenue"],
            json!([
                {"currency": "EUR", "total": "100000000000019.8999", "average": "50000000000009.9500", "events": 2},
                {"currency": "USD", "total": "12.5001", "average": "4.1667", "events": 3},
            ])
        );
        assert_eq!(rows[8]["conversions"], 6);
        // One goal only.
        let (status, body) = admin(&format!("{base}/v1/stats/goals?{RANGE}&goal=signup-pro")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"], json!([rows[6]]));
    }
}

#[tokio::test]
async fn goal_breakdowns_by_every_dimension_equal_an_independent_computation() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        let events = select(&s.events, "site-1", START, END, &[]);
        for goal in GOALS
            .iter()
            .filter(|g| ["blog-post", "signup", "signup-pro", "purchase"].contains(&g.id))
        {
            for dim in [
                "page",
                "hostname",
                "entry_page",
                "exit_page",
                "referrer",
                "source",
                "channel",
                "utm_source",
                "utm_campaign",
                "utm_term",
                "device",
                "browser",
                "os",
                "country",
                "event_name",
                "language",
                "prop.plan",
            ] {
                let (status, body) = admin(&format!(
                    "{base}/v1/stats/goals?{RANGE}&goal={}&property={dim}&limit=1000",
                    goal.id
                ))
                .await;
                assert_eq!(status, 200, "{} {dim}: {body}", goal.id);
                let expected = expected_breakdown(&events, goal, dim);
                assert_eq!(body["results"], json!(expected), "{} by {dim}", goal.id);
                assert_eq!(body["goal"]["id"], goal.id);
                assert_eq!(body["has_more"], false);
                if dim != "utm_term" && dim != "prop.plan" {
                    assert!(!expected.is_empty(), "{} by {dim} has rows", goal.id);
                }
            }
        }
        // With a filter and paged: the signups by source among German visitors, one row a page.
        let filter = [("country", "is", "DE")];
        let expected = expected_breakdown(
            &select(&s.events, "site-1", START, END, &filter),
            &GOALS[5],
            "source",
        );
        assert!(expected.len() >= 2, "{expected:?}");
        for (i, row) in expected.iter().enumerate() {
            let (_, body) = admin(&format!(
                "{base}/v1/stats/goals?{RANGE}&goal=signup&property=source&filter=country:is:DE&limit=1&page={}",
                i + 1
            ))
            .await;
            assert_eq!(body["results"], json!([row]), "page {}", i + 1);
            assert_eq!(body["has_more"], i + 1 < expected.len());
        }
    }
}

#[tokio::test]
async fn goal_definitions_csv_errors_and_access() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    // The definitions, as configured.
    let (status, body) = get_as(
        "test-share-site-1",
        &format!("{base}/v1/goals?site_id=site-1"),
    )
    .await;
    assert_eq!(
        status, 401,
        "a share link is a query parameter, not a bearer token: {body}"
    );
    let res = reqwest::get(format!(
        "{base}/v1/goals?site_id=site-1&share=test-share-site-1"
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["goals"].as_array().unwrap().len(), GOALS.len());
    assert_eq!(
        body["goals"][0],
        json!({"id": "pricing", "name": "Saw pricing", "page": "/pricing"})
    );
    assert_eq!(
        body["goals"][6],
        json!({"id": "signup-pro", "name": "signup-pro", "event": "signup", "props": {"plan": "pro"}})
    );
    // A site without goals has none; another site's reader may not look.
    let (status, body) = admin(&format!("{base}/v1/goals?site_id=empty-site")).await;
    assert_eq!((status, body["goals"].clone()), (200, json!([])));
    let (status, _) = get_as(
        "test-read-site-2",
        &format!("{base}/v1/goals?site_id=site-1"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = get_as(
        "test-read-site-2",
        &format!("{base}/v1/stats/goals?{RANGE}"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = admin(&format!(
        "{base}/v1/stats/goals?site_id=empty-site&period=7d"
    ))
    .await;
    assert_eq!((status, body["results"].clone()), (200, json!([])));

    // Each bad parameter named.
    for (query, param) in [
        ("goal=unknown", "goal"),
        ("goal=Bad%20Id", "goal"),
        ("property=source", "goal"),
        ("goal=signup&property=nope", "property"),
        ("limit=5", "limit"),
        ("goal=signup&property=source&format=xml", "format"),
        ("goal=signup&goal=pricing", "goal"),
    ] {
        let (status, body) = admin(&format!("{base}/v1/stats/goals?{RANGE}&{query}")).await;
        assert_eq!(
            (status, body["parameter"].as_str()),
            (400, Some(param)),
            "{query}: {body}"
        );
    }
    let (status, body) = admin(&format!("{base}/v1/goals?site_id=site-1&period=7d")).await;
    assert_eq!(
        (status, body["parameter"].as_str()),
        (400, Some("query")),
        "{body}"
    );

    // CSV: the same rows as the JSON answer.
    let events = select(&s.events, "site-1", START, END, &[]);
    let csv = reqwest::Client::new()
        .get(format!("{base}/v1/stats/goals?{RANGE}&format=csv"))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("site-1-goals-2025-10-20-2025-11-02.csv")
    );
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("\"goal\",\"name\",\"visitors\",\"conversions\",\"conversion_rate\"")
    );
    let (_, rows) = expected_totals(&events);
    for (line, row) in lines.zip(&rows) {
        assert_eq!(
            line,
            format!(
                "\"{}\",\"{}\",{},{},{}",
                row["goal"].as_str().unwrap(),
                row["name"].as_str().unwrap(),
                row["visitors"],
                row["conversions"],
                row["conversion_rate"]
            )
        );
    }
    let csv = reqwest::Client::new()
        .get(format!(
            "{base}/v1/stats/goals?{RANGE}&goal=signup&property=source&format=csv&limit=1000"
        ))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + expected_breakdown(&events, &GOALS[5], "source").len()
    );
    assert!(csv.starts_with("\"source\",\"visitors\",\"conversions\",\"conversion_rate\""));
}

/// The funnel rule, on the scripted visitors whose paths were chosen for it, computed by hand.
#[test]
fn the_model_follows_the_funnel_rule_on_the_scripted_visitors() {
    let events = model::generate(42);
    let steps: Vec<&model::Goal> = ["blog-post", "pricing", "signup"]
        .iter()
        .map(|id| model::goal(id))
        .collect();
    // (visitor, deepest step per visit, deepest step per day)
    for (visitor, by_visit, by_day) in [
        (9001, 3, 3), // in order
        (9002, 3, 3), // out of order, then in order
        (9003, 2, 3), // signup in the next visit
        (9004, 2, 2), // signup after UTC midnight
        (9005, 3, 3), // pricing and signup in one second
        (9006, 2, 2), // step 1 twice, no signup
    ] {
        let mine: Vec<model::Ev> = events
            .iter()
            .filter(|e| e.visitor == visitor)
            .cloned()
            .collect();
        let visits = model::visits(&mine);
        let deepest_visit = visits
            .iter()
            .map(|v| model::funnel_level(&v.evs, &steps))
            .max()
            .unwrap();
        assert_eq!(deepest_visit, by_visit, "{visitor} per visit");
        let mut days: BTreeMap<u32, Vec<model::Ev>> = BTreeMap::new();
        for e in mine {
            days.entry(e.ts / 86_400).or_default().push(e);
        }
        let deepest_day = days
            .values()
            .map(|d| model::funnel_level(d, &steps))
            .max()
            .unwrap();
        assert_eq!(deepest_day, by_day, "{visitor} per day");
    }
    // One signup (plan pro) takes two consecutive steps of different goals.
    let pro: Vec<&model::Goal> = ["pricing", "signup", "signup-pro"]
        .iter()
        .map(|id| model::goal(id))
        .collect();
    let v9001: Vec<model::Ev> = events
        .iter()
        .filter(|e| e.visitor == 9001)
        .cloned()
        .collect();
    assert_eq!(model::funnel_level(&v9001, &pro), 3);
}

/// The API's rows for a funnel's counts.
fn expected_funnel(steps: &[&str], (visitors, reached): (u64, Vec<u64>)) -> Vec<Value> {
    let mut previous = visitors;
    let first = reached[0];
    steps
        .iter()
        .zip(&reached)
        .enumerate()
        .map(|(i, (id, &n))| {
            let lost = previous - n;
            let row = json!({
                "step": i + 1,
                "goal": id,
                "name": if *id == "pricing" { "Saw pricing" } else { id },
                "visitors": n,
                "conversion_from_previous": rate(n, previous),
                "conversion_from_first": rate(n, first),
                "dropoff": lost,
                "dropoff_rate": rate(lost, previous),
            });
            previous = n;
            row
        })
        .collect()
}

#[tokio::test]
async fn funnels_equal_an_independent_computation_per_visit_and_per_day_with_filters() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        for (id, step_ids) in model::FUNNELS {
            let steps: Vec<&model::Goal> = step_ids.iter().map(|g| model::goal(g)).collect();
            for within in ["visit", "day"] {
                for filters in [
                    vec![],
                    vec![("country", "is", "DE")],
                    vec![("prop.plan", "is", "pro")],
                    vec![("source", "is", "Google")],
                    vec![
                        ("entry_page", "is", "/blog/hello"),
                        ("device", "is_not", "mobile"),
                    ],
                ] {
                    let query: String = filters
                        .iter()
                        .map(|(d, o, v)| format!("&filter={}", urlencode(&format!("{d}:{o}:{v}"))))
                        .collect();
                    let (status, body) = admin(&format!(
                        "{base}/v1/stats/funnel?{RANGE}&funnel={id}&within={within}{query}"
                    ))
                    .await;
                    assert_eq!(status, 200, "{id} {within} {filters:?}: {body}");
                    let counts = model::funnel(
                        &s.events,
                        "site-1",
                        (START, END),
                        &filters,
                        &steps,
                        within == "day",
                    );
                    assert_eq!(body["visitors"], counts.0, "{id} {within} {filters:?}");
                    assert_eq!(
                        body["results"],
                        json!(expected_funnel(step_ids, counts.clone())),
                        "{id} {within} {filters:?}"
                    );
                    if filters.is_empty() {
                        assert!(
                            counts.1[step_ids.len() - 1] > 0,
                            "{id} {within}: someone finishes"
                        );
                        assert_eq!(body["funnel"]["steps"], json!(step_ids));
                        assert_eq!(body["within"], within);
                    }
                }
            }
        }
        // The visit rule makes a difference on these data: per day, more finish.
        let steps: Vec<&model::Goal> = model::FUNNELS[0].1.iter().map(|g| model::goal(g)).collect();
        let per_visit = model::funnel(&s.events, "site-1", (START, END), &[], &steps, false);
        let per_day = model::funnel(&s.events, "site-1", (START, END), &[], &steps, true);
        assert!(per_day.1[2] > per_visit.1[2], "{per_visit:?} {per_day:?}");
        // Steps given in the request, in an order no funnel has.
        for within in ["visit", "day"] {
            let ids = ["signup", "pricing", "blog-post"];
            let steps: Vec<&model::Goal> = ids.iter().map(|g| model::goal(g)).collect();
            let (status, body) = admin(&format!(
                "{base}/v1/stats/funnel?{RANGE}&steps=signup,pricing,blog-post&within={within}"
            ))
            .await;
            assert_eq!(status, 200, "{body}");
            let counts = model::funnel(
                &s.events,
                "site-1",
                (START, END),
                &[],
                &steps,
                within == "day",
            );
            assert_eq!(body["results"], json!(expected_funnel(&ids, counts)));
            assert_eq!(body["funnel"]["id"], Value::Null);
        }
    }
}

#[tokio::test]
async fn funnel_errors_definitions_and_csv() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    for (query, param) in [
        ("", "funnel"),
        ("funnel=nope", "funnel"),
        ("funnel=Pro", "funnel"),
        ("steps=pricing", "steps"),
        ("steps=pricing,unknown", "steps"),
        ("steps=pricing,pricing,signup", "steps"),
        ("funnel=pro&steps=pricing,signup", "steps"),
        ("funnel=pro&within=hour", "within"),
        ("funnel=pro&format=pdf", "format"),
    ] {
        let (status, body) = admin(&format!("{base}/v1/stats/funnel?{RANGE}&{query}")).await;
        assert_eq!(
            (status, body["parameter"].as_str()),
            (400, Some(param)),
            "{query}: {body}"
        );
    }
    let (_, body) = admin(&format!("{base}/v1/goals?site_id=site-1")).await;
    assert_eq!(
        body["funnels"][0],
        json!({"id": "read-then-buy", "name": "Read, then buy", "steps": ["blog-post", "pricing", "signup"]})
    );
    let res = reqwest::Client::new()
        .get(format!(
            "{base}/v1/stats/funnel?{RANGE}&funnel=read-then-buy&format=csv"
        ))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("site-1-funnel-read-then-buy-2025-10-20-2025-11-02.csv")
    );
    let csv = res.text().await.unwrap();
    let (_, json_body) = admin(&format!(
        "{base}/v1/stats/funnel?{RANGE}&funnel=read-then-buy"
    ))
    .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "\"step\",\"goal\",\"name\",\"visitors\",\"conversion_from_previous\",\"conversion_from_first\",\"dropoff\",\"dropoff_rate\""
    );
    assert_eq!(lines.len(), 4);
    assert!(lines[3].starts_with(&format!(
        "3,\"signup\",\"signup\",{},",
        json_body["results"][2]["visitors"]
    )));
}

#[tokio::test]
async fn property_keys_equal_an_independent_computation() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        for filters in [
            vec![],
            vec![("country", "is", "DE")],
            vec![("prop.variant", "is", "b")],
            vec![("entry_page", "is", "/blog/hello")],
        ] {
            let events = select(&s.events, "site-1", START, END, &filters);
            let mut keys: BTreeMap<&str, (BTreeSet<u64>, u64)> = BTreeMap::new();
            for e in &events {
                for (k, _) in &e.props {
                    let entry = keys.entry(k).or_default();
                    entry.0.insert(e.visitor);
                    entry.1 += 1;
                }
            }
            let mut rows: Vec<(u64, u64, &str)> = keys
                .iter()
                .map(|(k, (v, n))| (v.len() as u64, *n, *k))
                .collect();
            rows.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
            let expected: Vec<Value> = rows
                .iter()
                .map(|(v, n, k)| json!({"value": k, "visitors": v, "events": n}))
                .collect();
            if filters.is_empty() {
                assert_eq!(expected.len(), 2, "plan and variant: {expected:?}");
            }
            let query: String = filters
                .iter()
                .map(|(d, o, v)| format!("&filter={}", urlencode(&format!("{d}:{o}:{v}"))))
                .collect();
            let (status, body) = admin(&format!(
                "{base}/v1/stats/properties?{RANGE}{query}&limit=1000"
            ))
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["results"], json!(expected), "{filters:?}");
            // One key a page.
            for (i, row) in expected.iter().enumerate() {
                let (_, body) = admin(&format!(
                    "{base}/v1/stats/properties?{RANGE}{query}&limit=1&page={}",
                    i + 1
                ))
                .await;
                assert_eq!(body["results"], json!([row]));
                assert_eq!(body["has_more"], i + 1 < expected.len());
            }
        }
    }
}
