//! The stats API against an independent computation over the same generated events.

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::stats_model::{
    self as model, DAYS, START, admin, aggregate_json, bucket_label, every_seed, seeded, select,
    serve, totals, ts,
};

const RANGE: &str = "site_id=site-1&period=custom&from=2025-10-20&to=2025-11-02";
const END: u32 = START + DAYS * 86_400;

fn results(body: &Value) -> Value {
    body["results"].clone()
}

#[tokio::test]
async fn aggregate_metrics_equal_an_independent_computation() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        let filters: [&[(&str, &str, &str)]; 11] = [
            &[],
            &[("page", "is", "/pricing")],
            &[("hostname", "is", "docs.example.com")],
            &[("hostname", "contains", "WWW."), ("page", "is_not", "/")],
            &[("device", "is_not", "mobile"), ("country", "is", "DE")],
            &[("page", "contains", "BLOG")],
            &[("prop.plan", "is", "pro")],
            &[("event_name", "is", "signup"), ("source", "is", "Google")],
            &[("entry_page", "is", "/pricing")],
            &[
                ("exit_page", "contains", "BLOG"),
                ("device", "is_not", "mobile"),
            ],
            &[("entry_page", "is_not", "/"), ("exit_page", "is", "/docs")],
        ];
        for f in filters {
            let q: String = f
                .iter()
                .map(|(d, o, v)| format!("&filter={}", urlencode(&format!("{d}:{o}:{v}"))))
                .collect();
            let (status, body) = admin(&format!("{base}/v1/stats/aggregate?{RANGE}{q}")).await;
            assert_eq!(status, 200, "{body}");
            let expected = totals(&select(&s.events, "site-1", START, END, f));
            assert!(expected.visits > 0 || !f.is_empty());
            let engaged = s.engagement_of(START, END, f).overall;
            assert_eq!(
                results(&body),
                aggregate_json(&expected, engaged),
                "filters {f:?}"
            );
        }
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn comparison_uses_the_period_just_before() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        let (status, body) = admin(&format!(
            "{base}/v1/stats/aggregate?site_id=site-1&period=7d&date=2025-11-02&compare=previous_period"
        ))
        .await;
        assert_eq!(status, 200, "{body}");
        let now = totals(&select(&s.events, "site-1", START + 7 * 86_400, END, &[]));
        let before = totals(&select(&s.events, "site-1", START, START + 7 * 86_400, &[]));
        let r = results(&body);
        assert_eq!(r["visitors"]["value"], now.visitors);
        assert_eq!(r["visitors"]["previous"], before.visitors);
        let change = model::round(
            (now.pageviews as f64 - before.pageviews as f64) / before.pageviews as f64 * 100.0,
            1,
        );
        assert_eq!(r["pageviews"]["change"], json!(change));
        assert_eq!(body["previous"]["from"], "2025-10-20T00:00:00+00:00");
    }
}

#[tokio::test]
async fn timeseries_buckets_follow_the_time_zone_across_dst_and_fill_empty_ones() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        let two_weeks = "period=custom&from=2025-10-20&to=2025-11-02";
        for (tz_name, query, interval, from, to, buckets) in [
            // Fall back: Sunday 26 October 2025 has 25 hours in Berlin.
            (
                "Europe/Berlin",
                "period=today&date=2025-10-26&interval=hour",
                "hour",
                ts("2025-10-25T22:00:00Z"),
                ts("2025-10-26T23:00:00Z"),
                25,
            ),
            (
                "Europe/Berlin",
                "period=custom&from=2025-10-20&to=2025-11-02&interval=day",
                "day",
                ts("2025-10-19T22:00:00Z"),
                ts("2025-11-02T23:00:00Z"),
                14,
            ),
            // In UTC, days, weeks and months hold whole visits: on rolled-up days their event
            // counts come from the visit rows.
            ("UTC", two_weeks, "day", START, START + DAYS * 86_400, 14),
            ("UTC", two_weeks, "week", START, START + DAYS * 86_400, 2),
            ("UTC", two_weeks, "month", START, START + DAYS * 86_400, 2),
        ] {
            let tz: Tz = tz_name.parse().unwrap();
            let query = if query == two_weeks {
                format!("{query}&interval={interval}")
            } else {
                query.to_owned()
            };
            let (status, body) = admin(&format!(
                "{base}/v1/stats/timeseries?site_id=site-1&timezone={tz_name}&{query}"
            ))
            .await;
            assert_eq!(status, 200, "{body}");
            let rows = body["results"].as_array().unwrap();
            assert_eq!(rows.len(), buckets, "{query}");
            let events = select(&s.events, "site-1", from, to, &[]);
            let mut by_bucket: BTreeMap<String, (BTreeSet<u64>, u64, u64)> = BTreeMap::new();
            for e in &events {
                let b = by_bucket
                    .entry(bucket_label(e.ts, tz, interval))
                    .or_default();
                b.0.insert(e.visitor);
                b.1 += u64::from(e.name == "pageview");
                b.2 += 1;
            }
            // Visits by their start: count, bounces, duration (s).
            let mut visits_by_bucket: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
            for v in model::visits(&events) {
                let b = visits_by_bucket
                    .entry(bucket_label(v.start, tz, interval))
                    .or_default();
                (b.0, b.1, b.2) = (b.0 + 1, b.1 + u64::from(v.bounce()), b.2 + v.duration());
            }
            for row in rows {
                let label = row["date"].as_str().unwrap();
                let (visitors, pageviews, evs) = by_bucket
                    .get(label)
                    .map(|(v, p, n)| (v.len() as u64, *p, *n))
                    .unwrap_or((0, 0, 0));
                assert_eq!(row["visitors"], visitors, "{tz_name} {label}");
                assert_eq!(row["pageviews"], pageviews, "{tz_name} {label}");
                assert_eq!(row["events"], evs, "{tz_name} {label}");
                let (n, bounces, duration) =
                    visits_by_bucket.get(label).copied().unwrap_or_default();
                assert_eq!(row["visits"], n, "{label}");
                let rate = |x: u64, scale: f64, dec: i32| {
                    if n == 0 {
                        0.0
                    } else {
                        model::round(x as f64 * scale / n as f64, dec)
                    }
                };
                assert_eq!(row["bounce_rate"], rate(bounces, 100.0, 1), "{label}");
                assert_eq!(row["visit_duration"], rate(duration, 1.0, 0), "{label}");
            }
            let labels: BTreeSet<&str> = rows.iter().map(|r| r["date"].as_str().unwrap()).collect();
            assert!(
                by_bucket.keys().all(|k| labels.contains(k.as_str())),
                "every bucket with events is listed"
            );
            let total: u64 = rows.iter().map(|r| r["pageviews"].as_u64().unwrap()).sum();
            assert_eq!(
                total,
                events.iter().filter(|e| e.name == "pageview").count() as u64
            );
        }
        // The 02:00 hour happens twice that night, as two buckets with distinct offsets.
        let (_, body) = admin(&format!(
            "{base}/v1/stats/timeseries?site_id=site-1&timezone=Europe/Berlin&period=today&date=2025-10-26&interval=hour"
        ))
        .await;
        let labels: Vec<&str> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["date"].as_str().unwrap())
            .collect();
        assert!(
            labels.contains(&"2025-10-26T02:00:00+02:00")
                && labels.contains(&"2025-10-26T02:00:00+01:00"),
            "{labels:?}"
        );
    }
}

/// `compare=` on aggregate, timeseries and breakdowns: the compared figures are the model's
/// over the compared range, whichever way the range was chosen.
#[tokio::test]
async fn comparisons_on_every_endpoint_equal_an_independent_computation() {
    // The second week of the data, compared with the first.
    const WEEK2: &str = "site_id=site-1&period=custom&from=2025-10-27&to=2025-11-02";
    let week1 = (START, START + 7 * 86_400);
    let compares = [
        "compare=custom&compare_from=2025-10-20&compare_to=2025-10-26",
        "compare=previous_period",
        "compare=previous_period&match_day_of_week=true",
    ];
    for s in every_seed().await {
        let base = serve(&s.config).await;
        let earlier = select(&s.events, "site-1", week1.0, week1.1, &[]);
        let expected_totals = aggregate_json(
            &totals(&earlier),
            s.engagement_of(week1.0, week1.1, &[]).overall,
        );
        for compare in compares {
            let (status, body) =
                admin(&format!("{base}/v1/stats/aggregate?{WEEK2}&{compare}")).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["comparison"]["first_day"], "2025-10-20", "{compare}");
            assert_eq!(body["comparison"]["last_day"], "2025-10-26", "{compare}");
            for (metric, v) in expected_totals.as_object().unwrap() {
                assert_eq!(
                    body["results"][metric]["previous"], v["value"],
                    "{compare} {metric}"
                );
            }
        }
        // A year back there is nothing: every earlier value is zero, every change null.
        let (_, yoy) = admin(&format!(
            "{base}/v1/stats/aggregate?{WEEK2}&compare=year_over_year"
        ))
        .await;
        assert_eq!(yoy["comparison"]["first_day"], "2024-10-27");
        assert_eq!(yoy["results"]["visitors"]["previous"], 0);
        assert_eq!(yoy["results"]["visitors"]["change"], Value::Null);
        assert!(yoy["results"]["visitors"]["value"].as_u64().unwrap() > 0);

        // Timeseries: the second series equals the timeseries of the compared range.
        let (status, series) = admin(&format!(
            "{base}/v1/stats/timeseries?{WEEK2}&interval=day&timezone=Europe/Berlin&{}",
            compares[0]
        ))
        .await;
        assert_eq!(status, 200, "{series}");
        let (_, plain) = admin(&format!(
            "{base}/v1/stats/timeseries?site_id=site-1&period=custom&from=2025-10-20&to=2025-10-26&interval=day&timezone=Europe/Berlin"
        ))
        .await;
        assert_eq!(series["comparison"]["results"], plain["results"]);
        assert_eq!(series["results"].as_array().unwrap().len(), 7);
        let pageviews: u64 = series["comparison"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["pageviews"].as_u64().unwrap())
            .sum();
        let berlin_week1 = select(
            &s.events,
            "site-1",
            ts("2025-10-19T22:00:00Z"),
            ts("2025-10-26T23:00:00Z"),
            &[],
        );
        assert_eq!(
            pageviews,
            berlin_week1.iter().filter(|e| e.name == "pageview").count() as u64
        );

        // Breakdowns: each row's comparison is the model's row of the same value a week
        // earlier (zeros when the value had none), and the change follows.
        let later = select(&s.events, "site-1", week1.1, START + 14 * 86_400, &[]);
        for dim in ["page", "source", "country", "entry_page", "prop.plan"] {
            let (status, body) = admin(&format!(
                "{base}/v1/stats/breakdown?{WEEK2}&property={dim}&limit=3&{}",
                compares[0]
            ))
            .await;
            assert_eq!(status, 200, "{body}");
            let rows = body["results"].as_array().unwrap();
            let expected_now = expected_breakdown(
                &later,
                dim,
                &s.engagement_of(week1.1, START + 14 * 86_400, &[]),
            );
            assert_eq!(
                json!(
                    rows.iter()
                        .map(|r| {
                            let mut r = r.clone();
                            r.as_object_mut().unwrap().remove("comparison");
                            r
                        })
                        .collect::<Vec<_>>()
                ),
                json!(expected_now[..rows.len()]),
                "{dim}"
            );
            let before = expected_breakdown(&earlier, dim, &s.engagement_of(week1.0, week1.1, &[]));
            for row in rows {
                let value = &row["value"];
                let old = before.iter().find(|b| &b["value"] == value);
                let c = &row["comparison"];
                for (metric, now) in row.as_object().unwrap() {
                    if metric == "value" || metric == "comparison" {
                        continue;
                    }
                    // A value with no earlier row had no engagement either.
                    let none = if metric == "time_on_page" || metric == "scroll_depth" {
                        Value::Null
                    } else {
                        json!(0)
                    };
                    let was = old.map_or(none, |o| o[metric].clone());
                    assert_eq!(c[metric].as_f64(), was.as_f64(), "{dim} {value} {metric}");
                    let change = match (now.as_f64(), was.as_f64()) {
                        (Some(n), Some(w)) if w != 0.0 => {
                            json!(((n - w) / w * 1000.0).round() / 10.0)
                        }
                        _ => Value::Null,
                    };
                    assert_eq!(c["change"][metric], change, "{dim} {value} {metric}");
                }
            }
        }
        // CSV: the compared values and changes as columns.
        let res = reqwest::Client::new()
            .get(format!(
                "{base}/v1/stats/breakdown?{WEEK2}&property=source&format=csv&{}",
                compares[0]
            ))
            .bearer_auth("test-admin-token")
            .send()
            .await
            .unwrap();
        let csv = res.text().await.unwrap();
        assert!(
            csv.starts_with("\"source\",\"visitors\",\"visits\",\"pageviews\",\"bounce_rate\",\"visit_duration\",\"visitors_comparison\","),
            "{csv}"
        );
    }
}

#[tokio::test]
async fn empty_ranges_and_empty_sites_answer_zeros_with_every_bucket() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    for site in ["site-1", "empty-site"] {
        let (status, body) = admin(&format!(
            "{base}/v1/stats/timeseries?site_id={site}&period=custom&from=2020-01-01&to=2020-01-03"
        ))
        .await;
        assert_eq!(status, 200);
        let rows = body["results"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert!(
            rows.iter()
                .all(|r| r["visitors"] == 0 && r["bounce_rate"] == 0.0)
        );
        let (_, agg) = admin(&format!(
            "{base}/v1/stats/aggregate?site_id={site}&period=custom&from=2020-01-01&to=2020-01-03"
        ))
        .await;
        assert_eq!(
            results(&agg),
            aggregate_json(&model::Totals::default(), None)
        );
        let (_, bd) = admin(&format!(
            "{base}/v1/stats/breakdown?site_id={site}&period=today&date=2020-01-01&property=source"
        ))
        .await;
        assert_eq!(bd["results"], json!([]));
    }
}

/// Expected breakdown rows for `dim`, sorted as the API sorts them.
/// The model's breakdown rows of `events` by `dim`; a page row also has its time on page and
/// scroll depth from `engaged` (the same range and filters).
fn expected_breakdown(events: &[model::Ev], dim: &str, engaged: &model::Engagement) -> Vec<Value> {
    let visit_level = matches!(
        dim,
        "entry_page"
            | "exit_page"
            | "referrer"
            | "source"
            | "channel"
            | "utm_source"
            | "utm_medium"
            | "utm_campaign"
            | "utm_term"
            | "utm_content"
    );
    let mut rows: Vec<(u64, u64, String, Value)> = Vec::new();
    if visit_level {
        let (column, at_exit) = match dim {
            "entry_page" => ("page", false),
            "exit_page" => ("page", true),
            d => (d, false),
        };
        let mut groups: BTreeMap<String, Vec<model::Visit>> = BTreeMap::new();
        for v in model::visits(events) {
            groups.entry(v.attr(column, at_exit)).or_default().push(v);
        }
        for (value, vs) in groups {
            let visitors = vs.iter().map(|v| v.visitor).collect::<BTreeSet<_>>().len() as u64;
            let n = vs.len() as u64;
            let bounces = vs.iter().filter(|v| v.bounce()).count() as u64;
            let duration: u64 = vs.iter().map(model::Visit::duration).sum();
            rows.push((
                visitors,
                n,
                value.clone(),
                json!({
                    "value": value,
                    "visitors": visitors,
                    "visits": n,
                    "pageviews": vs.iter().map(|v| v.pageviews).sum::<u64>(),
                    "bounce_rate": model::round(bounces as f64 * 100.0 / n as f64, 1),
                    "visit_duration": model::round(duration as f64 / n as f64, 0),
                }),
            ));
        }
    } else {
        let mut groups: BTreeMap<String, Vec<&model::Ev>> = BTreeMap::new();
        for e in events {
            if let Some(key) = dim.strip_prefix("prop.")
                && !e.props.iter().any(|(k, _)| k == key)
            {
                continue;
            }
            groups.entry(e.dim(dim)).or_default().push(e);
        }
        for (value, es) in groups {
            let visitors = es.iter().map(|e| e.visitor).collect::<BTreeSet<_>>().len() as u64;
            let mut row = json!({
                "value": value,
                "visitors": visitors,
                "pageviews": es.iter().filter(|e| e.name == "pageview").count(),
                "events": es.len(),
            });
            if dim == "page" {
                let (time, depth) = engaged.page_columns(&value);
                row["time_on_page"] = time;
                row["scroll_depth"] = depth;
            }
            rows.push((visitors, es.len() as u64, value.clone(), row));
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    rows.into_iter().map(|r| r.3).collect()
}

#[tokio::test]
async fn every_breakdown_equals_an_independent_computation() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        let events = select(&s.events, "site-1", START, END, &[]);
        for dim in [
            "page",
            "hostname",
            "entry_page",
            "exit_page",
            "referrer",
            "source",
            "channel",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "device",
            "browser",
            "os",
            "country",
            "event_name",
            "language",
            "prop.plan",
        ] {
            let (status, body) = admin(&format!(
                "{base}/v1/stats/breakdown?{RANGE}&property={dim}&limit=1000"
            ))
            .await;
            assert_eq!(status, 200, "{dim}: {body}");
            assert_eq!(
                body["results"],
                json!(expected_breakdown(
                    &events,
                    dim,
                    &s.engagement_of(START, END, &[])
                )),
                "{dim}"
            );
            assert_eq!(body["has_more"], false);
        }
        // Visit filters: the pages of the visits that entered on the pricing page, the entry
        // pages of the visits that left from the docs.
        for (dim, filter) in [
            ("page", ("entry_page", "is", "/pricing")),
            ("entry_page", ("exit_page", "is", "/docs")),
            ("country", ("exit_page", "is_not", "/")),
            ("page", ("language", "is", "de")),
        ] {
            let (status, body) = admin(&format!(
                "{base}/v1/stats/breakdown?{RANGE}&property={dim}&limit=1000&filter={}",
                urlencode(&format!("{}:{}:{}", filter.0, filter.1, filter.2))
            ))
            .await;
            assert_eq!(status, 200, "{body}");
            let expected = expected_breakdown(
                &select(&s.events, "site-1", START, END, &[filter]),
                dim,
                &s.engagement_of(START, END, &[filter]),
            );
            assert!(!expected.is_empty(), "{dim} {filter:?}");
            assert_eq!(body["results"], json!(expected), "{dim} {filter:?}");
            assert_eq!(body["filters"][0]["dimension"], filter.0);
        }
        // With a filter: sources of visits that saw the pricing page's events only.
        let filtered = select(
            &s.events,
            "site-1",
            START,
            END,
            &[("page", "is", "/pricing")],
        );
        let (_, body) = admin(&format!(
            "{base}/v1/stats/breakdown?{RANGE}&property=source&filter=page:is:/pricing&limit=1000"
        ))
        .await;
        assert_eq!(
            body["results"],
            json!(expected_breakdown(
                &filtered,
                "source",
                &model::Engagement::default()
            ))
        );
    }
}

/// One meaning per dimension: a breakdown row counts what `filter=<dim>:is:<value>` selects,
/// so a page's row and the aggregate under that page's filter agree (they did not: the page
/// row counted pageviews only, the filter every event on the page).
#[tokio::test]
async fn a_breakdown_row_equals_the_aggregate_under_its_value_as_a_filter() {
    for s in every_seed().await {
        let base = serve(&s.config).await;
        let mut with_custom_events = 0;
        for dim in ["page", "hostname", "event_name", "device", "prop.plan"] {
            let (status, body) = admin(&format!(
                "{base}/v1/stats/breakdown?{RANGE}&property={dim}&limit=1000"
            ))
            .await;
            assert_eq!(status, 200, "{dim}: {body}");
            let rows = body["results"].as_array().unwrap();
            assert!(rows.len() > 1, "{dim}: {body}");
            for row in rows {
                let value = row["value"].as_str().unwrap();
                let (status, totals) = admin(&format!(
                    "{base}/v1/stats/aggregate?{RANGE}&filter={}",
                    urlencode(&format!("{dim}:is:{value}"))
                ))
                .await;
                assert_eq!(status, 200, "{dim} {value}: {totals}");
                let r = &totals["results"];
                for metric in ["visitors", "pageviews", "events"] {
                    assert_eq!(row[metric], r[metric]["value"], "{dim} {value} {metric}");
                }
                if dim == "page" && row["events"] != row["pageviews"] {
                    with_custom_events += 1;
                }
            }
        }
        // The seeds' custom events happen on pages, so the two meanings would differ.
        assert!(with_custom_events > 0, "no page row with custom events");
    }
}

#[tokio::test]
async fn breakdowns_page_through_all_rows_and_export_the_same_rows_as_csv() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let events = select(&s.events, "site-1", START, END, &[]);
    let all = expected_breakdown(&events, "page", &s.engagement_of(START, END, &[]));
    assert!(all.len() >= 5);
    let mut paged = Vec::new();
    for page in 1.. {
        let (_, body) = admin(&format!(
            "{base}/v1/stats/breakdown?{RANGE}&property=page&limit=2&page={page}"
        ))
        .await;
        paged.extend(body["results"].as_array().unwrap().clone());
        if body["has_more"] == false {
            break;
        }
    }
    assert_eq!(json!(paged), json!(all));

    let res = reqwest::Client::new()
        .get(format!(
            "{base}/v1/stats/breakdown?{RANGE}&property=page&limit=1000&format=csv"
        ))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("site-1-page-2025-10-20-2025-11-02.csv")
    );
    let csv = res.text().await.unwrap();
    let mut lines = csv.split("\r\n");
    // Every text cell quoted (a page path cannot start like a formula: it starts with `/`).
    assert_eq!(
        lines.next(),
        Some("\"page\",\"visitors\",\"pageviews\",\"events\",\"time_on_page\",\"scroll_depth\"")
    );
    let mut expected_lines = Vec::new();
    let cell = |v: &Value| {
        if v.is_null() {
            String::new()
        } else {
            v.to_string()
        }
    };
    for row in &all {
        let v = row["value"].as_str().unwrap();
        let value = format!("\"{}\"", v.replace('"', "\"\""));
        expected_lines.push(format!(
            "{value},{},{},{},{},{}",
            row["visitors"],
            row["pageviews"],
            row["events"],
            cell(&row["time_on_page"]),
            cell(&row["scroll_depth"])
        ));
    }
    assert_eq!(
        lines.filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        expected_lines
    );
}

#[tokio::test]
async fn realtime_counts_the_last_five_minutes() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let db = s.config.clickhouse.client();
    let now = chrono::Utc::now().timestamp() as u32;
    let mut insert = db
        .insert::<ta_central::store::EventRow>("events")
        .await
        .unwrap();
    for (visitor, ago) in [(901, 10), (902, 200), (902, 100), (903, 400)] {
        insert
            .write(&crate::sample_row(
                "site-2",
                "/live",
                visitor,
                now - ago,
                7_000 + visitor,
            ))
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    let (status, body) = admin(&format!("{base}/v1/stats/realtime?site_id=site-2")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["visitors"].as_u64(), body["pageviews"].as_u64()),
        (Some(2), Some(3)),
        "{body}"
    );
}

#[tokio::test]
async fn bad_parameters_get_400_naming_the_parameter_and_the_rule() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    for (path, query, param) in [
        ("aggregate", "period=30d", "site_id"),
        (
            "aggregate",
            "site_id=site-1&timezone=Europe/Nowhere",
            "timezone",
        ),
        ("aggregate", "site_id=site-1&period=fortnight", "period"),
        (
            "aggregate",
            "site_id=site-1&period=custom&from=2025-13-01&to=2025-12-01",
            "from",
        ),
        ("aggregate", "site_id=site-1&compare=last_year", "compare"),
        ("aggregate", "site_id=site-1&limit=3", "query"),
        (
            "timeseries",
            "site_id=site-1&interval=fortnight",
            "interval",
        ),
        (
            "timeseries",
            "site_id=site-1&period=12mo&interval=minute",
            "interval",
        ),
        ("breakdown", "site_id=site-1&property=password", "property"),
        (
            "breakdown",
            "site_id=site-1&property=page&limit=1001",
            "limit",
        ),
        ("breakdown", "site_id=site-1&property=page&page=0", "page"),
        (
            "breakdown",
            "site_id=site-1&property=page&filter=page~/x",
            "filter",
        ),
        ("realtime", "site_id=site-1&period=today", "query"),
    ] {
        let (status, body) = admin(&format!("{base}/v1/stats/{path}?{query}")).await;
        assert_eq!(status, 400, "{path}?{query}: {body}");
        assert_eq!(body["error"], "bad_parameter");
        assert_eq!(body["parameter"], param, "{path}?{query}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("parameter `{param}`")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_unknown_site_is_404_for_the_admin() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let (status, body) = admin(&format!("{base}/v1/stats/aggregate?site_id=no-such-site")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_site"))
    );
}

#[tokio::test]
async fn injection_attempts_are_refused_or_matched_literally() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let attacks = [
        "' OR 1=1 --",
        "x'); DROP TABLE events; --",
        "\\' OR ''='",
        "/pricing' UNION SELECT 1,2,3 --",
        "?",
        "{site_id:String}",
        "\u{0}",
    ];
    for a in attacks {
        let enc = urlencode(a);
        // As a filter value: a literal that matches nothing (or a 400 for control characters).
        for dim in ["page", "prop.plan"] {
            let (status, body) = admin(&format!(
                "{base}/v1/stats/aggregate?{RANGE}&filter={dim}:is:{enc}"
            ))
            .await;
            if a.contains('\u{0}') {
                assert_eq!(status, 400);
                continue;
            }
            assert_eq!(status, 200, "{a}: {body}");
            assert_eq!(body["results"]["visitors"]["value"], 0, "{a}");
            let (status, _) = admin(&format!(
                "{base}/v1/stats/breakdown?{RANGE}&property=page&filter={dim}:contains:{enc}"
            ))
            .await;
            assert_eq!(status, 200, "{a}");
        }
        // Anywhere else it is refused by validation.
        for q in [
            format!("site_id={enc}"),
            format!("site_id=site-1&property={enc}"),
            format!("site_id=site-1&property=prop.{enc}"),
            format!("site_id=site-1&property=page&filter={enc}:is:x"),
            format!("site_id=site-1&property=page&timezone={enc}"),
            format!("site_id=site-1&property=page&limit={enc}"),
            format!("site_id=site-1&property=page&period={enc}"),
        ] {
            let (status, body) = admin(&format!("{base}/v1/stats/breakdown?{q}")).await;
            assert_eq!(status, 400, "{q}: {body}");
        }
    }
    // Nothing was dropped or changed.
    let (_, body) = admin(&format!("{base}/v1/stats/aggregate?{RANGE}")).await;
    assert_eq!(
        body["results"]["events"]["value"],
        select(&s.events, "site-1", START, END, &[]).len()
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_every_documented_route_answers() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let (status, doc) = admin(&format!("{base}/openapi.json")).await;
    assert_eq!(status, 200);
    let paths: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routes: BTreeSet<String> = ta_central::query::ROUTES
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(paths, routes);
    for path in &paths {
        if path.starts_with("/v1/admin/") || path.starts_with("/v1/registry/") {
            // They need a registry (this ta-query reads an access file): admin.rs calls each
            // of them with every kind of credential.
            continue;
        }
        if doc["paths"][path]["post"].is_object() {
            // `POST /v2/query`: a body of its schema's required parts.
            let schema = &doc["components"]["schemas"]["Query"];
            assert_eq!(schema["required"], json!(["site_id", "metrics"]));
            let body = json!({"site_id": "site-1", "metrics": ["visitors"]});
            let (status, answer) =
                crate::query_v2::post_as("test-admin-token", &format!("{base}{path}"), &body).await;
            assert_eq!(status, 200, "{path} answers as documented: {answer}");
            continue;
        }
        let required: Vec<String> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["required"] == true)
                    .map(|p| match p["name"].as_str().unwrap() {
                        "site_id" => "site_id=site-1".to_owned(),
                        "property" => "property=page".to_owned(),
                        other => panic!("no sample value for {other}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut required = required;
        if path == "/v1/stats/funnel" {
            // `funnel` or `steps`, one of the two: not expressible as a required parameter.
            required.push("funnel=pro".into());
        }
        let (status, _) = admin(&format!("{base}{path}?{}", required.join("&"))).await;
        assert_eq!(status, 200, "{path} answers as documented");
    }
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Covered {
    day: u32,
    build: u64,
}

#[tokio::test]
async fn queries_read_rollups_only_for_days_whose_build_holds_every_event() {
    use ta_central::sql::stats::{Coverage, Scope, coverage};
    let s = model::seeded_rolled_up().await;
    let db = s.config.clickhouse.client();
    let covered = |from: u32, to: u32| {
        let db = db.clone();
        async move {
            let scope = Scope {
                site_id: "site-1",
                from,
                to,
                filters: &[],
            };
            let rows: Vec<Covered> = coverage(&scope).query(&db).fetch_all().await.unwrap();
            assert!(rows.iter().all(|r| r.build > 0));
            let pairs: Vec<(u32, u64)> = rows.iter().map(|r| (r.day, r.build)).collect();
            Coverage::of(&scope, &pairs)
        }
    };
    let first = START / 86_400;
    let all = covered(START, END).await;
    let expected: Vec<u32> = (0..DAYS)
        .filter(|d| {
            !model::UNROLLED_DAYS.contains(d)
                && *d != model::STALE_DAY
                && *d != model::LATE_ENGAGEMENT_DAY
        })
        .map(|d| first + d)
        .collect();
    assert_eq!(
        all.days, expected,
        "built days minus unbuilt and stale ones"
    );
    assert!(!all.complete);
    // A range inside one built day is answered from the rollup alone; a range that cuts a
    // day in half reads that day raw (unless no event of the day falls outside the range).
    let day = covered(START, START + 86_400).await;
    assert_eq!((day.days.clone(), day.complete), (vec![first], true));
    let half = covered(START + 43_200, START + 86_400).await;
    let events_before_noon = s
        .events
        .iter()
        .any(|e| e.site == "site-1" && e.ts >= START && e.ts < START + 43_200);
    assert_eq!(half.days.is_empty(), events_before_noon);
}

#[tokio::test]
async fn concurrent_requests_for_one_range_share_one_rollup_check() {
    use ta_central::sql::stats::Scope;
    let s = model::seeded_rolled_up().await;
    let checks =
        prometheus::IntCounterVec::new(prometheus::Opts::new("checks", "test"), &["result"])
            .unwrap();
    let parts = prometheus::IntCounterVec::new(prometheus::Opts::new("parts", "test"), &["result"])
        .unwrap();
    let db = ta_central::query::stats::StatsDb::new(s.config.clickhouse.client(), &checks, &parts);
    let scope = Scope {
        site_id: "site-1",
        from: START,
        to: END,
        filters: &[],
    };
    let alone = ta_central::query::stats::coverage(&db, &scope).await;
    assert!(!alone.is_empty());
    let together =
        futures::future::join_all((0..10).map(|_| ta_central::query::stats::coverage(&db, &scope)))
            .await;
    assert!(together.iter().all(|c| *c == alone));
    let count = |r: &str| checks.with_label_values(&[r]).get();
    assert_eq!((count("run"), count("joined")), (2, 9));
    // Finished checks are not kept: the next request runs its own.
    ta_central::query::stats::coverage(&db, &scope).await;
    assert_eq!(count("run"), 3);
}

/// The coverage check counts each part of `events` once and follows what changes parts: a
/// late insert (a new part), a merge (new names, same events) and an erasure (a mutation),
/// always agreeing with the statement that counts every event of the range; on the cluster,
/// where `events` is `Distributed`, it is that statement.
#[tokio::test]
async fn coverage_counts_each_part_of_events_once_and_follows_inserts_merges_and_erasures() {
    use ta_central::query::stats::{StatsDb, coverage};
    use ta_central::sql::stats::{self as sql, Coverage, Scope};
    use ta_central::store;

    let counters = |name: &str| {
        prometheus::IntCounterVec::new(prometheus::Opts::new(name, "test"), &["result"]).unwrap()
    };
    // 2025-11-28 .. 2025-12-01 (three days, across a month: two partitions).
    let first: u32 = 20_420;
    let scope = Scope {
        site_id: "site-1",
        from: first * 86_400,
        to: (first + 3) * 86_400,
        filters: &[],
    };
    // What the single statement says for the same range, to hold every answer against.
    let by_statement = |db: clickhouse::Client| async move {
        let rows: Vec<Covered> = sql::coverage(&scope).query(&db).fetch_all().await.unwrap();
        let pairs: Vec<(u32, u64)> = rows.iter().map(|r| (r.day, r.build)).collect();
        Coverage::of(&scope, &pairs)
    };

    let args = crate::fresh_db("coverage_parts");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let client = args.client();
    let insert = |rows: Vec<ta_central::store::EventRow>| {
        let client = client.clone();
        async move {
            let mut insert = client
                .insert::<ta_central::store::EventRow>("events")
                .await
                .unwrap();
            for r in &rows {
                insert.write(r).await.unwrap();
            }
            insert.end().await.unwrap();
        }
    };
    let mut offset = 0;
    let mut rows = |visitor: u64, ts: u32| {
        offset += 1;
        crate::sample_row("site-1", "/a", visitor, ts, offset)
    };
    // Two inserts: two parts per month to start with.
    let (a, b) = (first * 86_400, (first + 2) * 86_400);
    insert(vec![
        rows(1, a + 10),
        rows(1, a + 20),
        rows(2, a + 86_400 + 5),
    ])
    .await;
    insert(vec![rows(3, a + 30), rows(4, b + 40), rows(5, b + 50)]).await;
    for d in 0..3 {
        store::rollup::build_day(&db, "site-1", first + d)
            .await
            .unwrap();
    }

    let (checks, parts) = (counters("checks"), counters("parts"));
    let stats = StatsDb::new(client.clone(), &checks, &parts);
    let part_count = |r: &str| parts.with_label_values(&[r]).get();
    let all: Vec<u32> = (first..first + 3).collect();
    let checked = coverage(&stats, &scope).await;
    assert_eq!(
        (checked.days.clone(), checked.complete),
        (all.clone(), true)
    );
    assert_eq!(checked, by_statement(client.clone()).await);
    let counted = part_count("counted");
    assert!(counted >= 2, "each month's parts counted once ({counted})");
    assert_eq!(part_count("reused"), 0);

    // Nothing changed: nothing is read again.
    assert_eq!(coverage(&stats, &scope).await, checked);
    assert_eq!(
        (part_count("counted"), part_count("reused")),
        (counted, counted)
    );

    // A late event on the middle day is a new part: only it is counted, and the day is read
    // raw until built again.
    insert(vec![rows(6, a + 86_400 + 600)]).await;
    let late = coverage(&stats, &scope).await;
    assert_eq!(late.days, vec![first, first + 2]);
    assert_eq!(late, by_statement(client.clone()).await);
    assert_eq!(part_count("counted"), counted + 1);

    // A merge writes new parts holding the same events: counted again, same answer.
    client
        .query("OPTIMIZE TABLE events FINAL")
        .execute()
        .await
        .unwrap();
    let merged = coverage(&stats, &scope).await;
    assert_eq!(merged, late);
    assert!(
        part_count("counted") > counted + 1,
        "merged parts are new parts"
    );

    // Built again, the day is covered again.
    store::rollup::build_day(&db, "site-1", first + 1)
        .await
        .unwrap();
    let rebuilt = coverage(&stats, &scope).await;
    assert_eq!(rebuilt.days, all);
    assert_eq!(rebuilt, by_statement(client.clone()).await);

    // An erasure rewrites the parts (a mutation); the erased visitor's day no longer matches
    // the count its build recorded.
    store::lifecycle::erase_visitor(&db, "site-1", 4)
        .await
        .unwrap();
    let erased = coverage(&stats, &scope).await;
    assert_eq!(erased.days, vec![first, first + 1]);
    assert_eq!(erased, by_statement(client.clone()).await);

    // A range that cuts a day reads that day raw.
    let cut = Scope {
        from: a + 43_200,
        ..scope
    };
    assert_eq!(coverage(&stats, &cut).await.days, vec![first + 1]);

    // On the cluster `events` is `Distributed`: the check is the single statement.
    let s = model::seeded_rolled_up_cluster().await;
    let (checks, parts) = (counters("checks"), counters("parts"));
    let stats = StatsDb::new(s.config.clickhouse.client(), &checks, &parts);
    let whole = Scope {
        site_id: "site-1",
        from: START,
        to: END,
        filters: &[],
    };
    let on_cluster = coverage(&stats, &whole).await;
    assert!(!on_cluster.is_empty());
    let rows: Vec<Covered> = sql::coverage(&whole)
        .query(&s.config.clickhouse.client())
        .fetch_all()
        .await
        .unwrap();
    let pairs: Vec<(u32, u64)> = rows.iter().map(|r| (r.day, r.build)).collect();
    assert_eq!(on_cluster, Coverage::of(&whole, &pairs));
    assert_eq!(parts.with_label_values(&["counted"]).get(), 0);
    assert_eq!(parts.with_label_values(&["reused"]).get(), 0);
}
