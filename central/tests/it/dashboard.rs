//! The dashboard in headless Chromium (playwright-core, `ta_tests::browser`): what the screen
//! shows equals the API's answers and the independent computation; filters, period changes,
//! CSV, dark mode and share links work; the admin view manages a registry's sites and
//! credentials. Screenshots: target/test-artifacts/browser/.

use serde_json::{Value, json};

use crate::admin::central;
use crate::stats_model::{START, admin, get_as, seeded, select, serve, totals};

#[tokio::test]
async fn the_dashboard_shows_the_apis_numbers_and_its_controls_work() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let args = json!({
        "base": base,
        "token": "test-read-site-1",
        "share": "test-share-site-1",
        "site": "site-1",
        "date": "2025-11-02",
        "screenshots": ta_tests::browser::artifacts_dir().display().to_string(),
    });
    let screen = tokio::task::spawn_blocking(move || ta_tests::browser::run("dashboard.js", &args))
        .await
        .unwrap();
    assert_eq!(
        screen["errors"],
        json!([]),
        "page errors or third-party requests"
    );
    assert_eq!(screen["login_shown"], true);
    let range = "site_id=site-1&period=30d&date=2025-11-02&timezone=UTC";

    // KPI cards equal the API, and the API equals the model (the 30 days end on 2 Nov).
    let initial = &screen["initial"];
    assert_eq!(initial["error"], Value::Null);
    let (_, agg) = admin(&format!(
        "{base}/v1/stats/aggregate?{range}&compare=previous_period"
    ))
    .await;
    for m in [
        "visitors",
        "visits",
        "pageviews",
        "views_per_visit",
        "bounce_rate",
        "visit_duration",
        "time_on_page",
        "conversions",
    ] {
        assert!(agg["results"][m]["value"].is_number(), "{m}: {agg}");
        assert_eq!(
            initial["kpis"][m]["value"].as_f64(),
            agg["results"][m]["value"].as_f64(),
            "{m} card"
        );
    }
    let end = START + 14 * 86_400;
    let expected = totals(&select(&s.events, "site-1", START, end, &[]));
    assert_eq!(initial["kpis"]["visitors"]["value"], expected.visitors);
    assert_eq!(initial["kpis"]["pageviews"]["value"], expected.pageviews);

    // Chart series and tables equal the API.
    let (_, ts) = admin(&format!("{base}/v1/stats/timeseries?{range}")).await;
    let api_visitors: Vec<u64> = ts["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["visitors"].as_u64().unwrap())
        .collect();
    assert_eq!(initial["series"]["visitors"], json!(api_visitors));
    assert_eq!(api_visitors.len(), 30);
    for table in [
        "page",
        "entry_page",
        "source",
        "utm_campaign",
        "country",
        "device",
        "browser",
        "os",
    ] {
        let (_, bd) = admin(&format!(
            "{base}/v1/stats/breakdown?{range}&property={table}&limit=10"
        ))
        .await;
        let api: Vec<Value> = bd["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!({"value": r["value"], "visitors": r["visitors"]}))
            .collect();
        let shown: Vec<Value> = initial["tables"][table]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!({"value": r["value"], "visitors": r["visitors"]}))
            .collect();
        assert_eq!(shown, api, "{table} table");
        // The page table shows each page's time on page and scroll depth as the API gives them
        // ("–" where a page has none); the other tables have no such columns.
        for (row, r) in initial["tables"][table]
            .as_array()
            .unwrap()
            .iter()
            .zip(bd["results"].as_array().unwrap())
        {
            for m in ["time_on_page", "scroll_depth"] {
                if table != "page" {
                    assert_eq!(row[m], Value::Null, "{table} {m}");
                    continue;
                }
                let data = row[m]["data"].as_str().unwrap();
                assert_eq!(data.parse::<f64>().ok(), r[m].as_f64(), "{table} {m} {row}");
                let text = row[m]["text"].as_str().unwrap();
                match r[m].as_f64() {
                    None => assert_eq!(text, "–"),
                    Some(v) if m == "scroll_depth" => assert_eq!(text, format!("{v}%")),
                    Some(v) => assert!(
                        text.ends_with('s') && text.contains(&format!("{}s", v as u64 % 60)),
                        "{text} {v}"
                    ),
                }
            }
        }
        if table == "page" {
            assert!(
                bd["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["time_on_page"].is_number()),
                "the seeds have engagement: {bd}"
            );
        }
    }

    // Clicking a device row filtered every number by it.
    let device = screen["filtered_device"].as_str().unwrap();
    let filtered = &screen["filtered"];
    assert_eq!(filtered["filters"], json!([format!("device:is:{device}")]));
    let want = totals(&select(
        &s.events,
        "site-1",
        START,
        end,
        &[("device", "is", device)],
    ));
    assert_eq!(filtered["kpis"]["visitors"]["value"], want.visitors);
    assert_eq!(filtered["tables"]["device"].as_array().unwrap().len(), 1);
    assert!(filtered["url"].as_str().unwrap().contains("filter=device"));

    // Clicking an entry page kept the visits that started there.
    let entry = screen["entry_page"].as_str().unwrap();
    let by_entry = &screen["entry_filtered"];
    assert_eq!(
        by_entry["filters"],
        json!([format!("entry_page:is:{entry}")])
    );
    let want = totals(&select(
        &s.events,
        "site-1",
        START,
        end,
        &[("entry_page", "is", entry)],
    ));
    assert!(want.visits > 0);
    assert_eq!(by_entry["kpis"]["visitors"]["value"], want.visitors);
    assert_eq!(by_entry["kpis"]["visits"]["value"], want.visits);
    assert_eq!(
        by_entry["tables"]["entry_page"].as_array().unwrap().len(),
        1
    );

    // The 7-day period: 27 Oct – 2 Nov.
    let week = &screen["week"];
    assert_eq!(week["period"], "7d");
    let want = totals(&select(&s.events, "site-1", START + 7 * 86_400, end, &[]));
    assert_eq!(week["kpis"]["visitors"]["value"], want.visitors);
    assert_eq!(week["series"]["visitors"].as_array().unwrap().len(), 7);

    // Compared with the week before (the default), as the API compares: the KPI changes, the
    // dashed earlier series, and each table row's change in visitors.
    let week_range =
        "site_id=site-1&period=7d&date=2025-11-02&timezone=UTC&compare=previous_period";
    assert_eq!(week["compare"], "previous_period");
    let (_, agg) = admin(&format!("{base}/v1/stats/aggregate?{week_range}")).await;
    let earlier = totals(&select(&s.events, "site-1", START, START + 7 * 86_400, &[]));
    assert_eq!(agg["results"]["visitors"]["previous"], earlier.visitors);
    // A change as the page writes it (`data-change`, "" for none) and as the API gives it.
    let shown_change = |v: &Value| v.as_str().and_then(|c| c.parse::<f64>().ok());
    assert_eq!(
        shown_change(&week["kpis"]["visitors"]["change"]),
        agg["results"]["visitors"]["change"].as_f64()
    );
    assert!(agg["results"]["visitors"]["change"].is_number());
    let (_, ts) = admin(&format!("{base}/v1/stats/timeseries?{week_range}")).await;
    let earlier_series: Vec<u64> = ts["comparison"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["visitors"].as_u64().unwrap())
        .collect();
    assert_eq!(week["series"]["visitors_comparison"], json!(earlier_series));
    assert!(earlier_series.iter().sum::<u64>() > 0);
    let (_, bd) = admin(&format!(
        "{base}/v1/stats/breakdown?{week_range}&property=source&limit=10"
    ))
    .await;
    let changes: Vec<Option<f64>> = bd["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["comparison"]["change"]["visitors"].as_f64())
        .collect();
    let shown: Vec<Option<f64>> = week["tables"]["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| shown_change(&r["change"]))
        .collect();
    assert_eq!(shown, changes);
    assert!(changes.iter().any(Option::is_some));
    // Off: no earlier series, no changes, in the URL; a year back: no earlier data.
    let off = &screen["week_uncompared"];
    assert!(off["url"].as_str().unwrap().contains("compare=off"));
    assert!(off["series"].get("visitors_comparison").is_none());
    assert_eq!(off["kpis"]["visitors"]["change"], "");
    assert!(
        off["tables"]["page"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["change"].is_null())
    );
    let yoy = &screen["week_yoy"];
    assert!(
        yoy["url"]
            .as_str()
            .unwrap()
            .contains("compare=year_over_year")
    );
    assert_eq!(yoy["kpis"]["visitors"]["change"], "");
    assert!(
        yoy["series"]["visitors_comparison"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v == 0)
    );

    // The CSV download is the API's CSV.
    let csv = reqwest::Client::new()
        .get(format!("{base}/v1/stats/breakdown?site_id=site-1&period=7d&date=2025-11-02&timezone=UTC&property=page&limit=1000&format=csv"))
        .bearer_auth("test-read-site-1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(screen["csv"].as_str().unwrap(), csv);
    assert_eq!(screen["dark_theme"], "dark");

    // Conversions: goals, the funnel (numbers and the bars drawn) and property values equal
    // the API (which the model checks in goals.rs), in each state the clicks put it in.
    // Numbers as f64: the browser writes 70 where the API writes 70.0.
    fn norm(v: Value) -> Value {
        match v {
            Value::Number(n) => json!(n.as_f64().unwrap()),
            Value::Array(a) => Value::Array(a.into_iter().map(norm).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, norm(v))).collect()),
            other => other,
        }
    }
    let rows = |v: &Value, keys: &[&str]| -> Vec<Value> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                Value::Object(
                    keys.iter()
                        .map(|k| ((*k).to_owned(), r[*k].clone()))
                        .collect(),
                )
            })
            .collect()
    };
    let conv = &screen["conversions"];
    let (_, goals) = admin(&format!("{base}/v1/stats/goals?{range}")).await;
    let shown: Vec<Value> = conv["goals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| json!({"goal": g["goal"], "visitors": g["visitors"], "conversions": g["conversions"], "conversion_rate": g["rate"]}))
        .collect();
    assert_eq!(
        norm(json!(shown)),
        norm(json!(rows(
            &goals,
            &["goal", "visitors", "conversions", "conversion_rate"]
        )))
    );
    assert!(shown.len() >= 8);
    // Revenue as the API gives it, and written per currency.
    let purchase = conv["goals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goal"] == "purchase")
        .unwrap();
    let api_purchase = goals["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goal"] == "purchase")
        .unwrap();
    assert_eq!(purchase["revenue"], api_purchase["revenue"]);
    assert_eq!(
        purchase["revenue_text"],
        "EUR 100000000000019.8999 (avg 50000000000009.95) · USD 12.5001 (avg 4.1667)"
    );
    let funnel_steps = |f: &Value| -> Vec<Value> {
        f["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| json!({"step": st["step"], "visitors": st["visitors"], "dropoff": st["dropoff"]}))
            .collect()
    };
    let (_, funnel) = admin(&format!(
        "{base}/v1/stats/funnel?{range}&funnel=read-then-buy"
    ))
    .await;
    assert_eq!(
        (
            conv["funnel"]["id"].as_str(),
            conv["funnel"]["within"].as_str()
        ),
        (Some("read-then-buy"), Some("visit"))
    );
    assert_eq!(
        json!(funnel_steps(&conv["funnel"])),
        json!(rows(&funnel, &["step", "visitors", "dropoff"]))
    );
    let population = funnel["visitors"].as_f64().unwrap();
    for st in conv["funnel"]["steps"].as_array().unwrap() {
        let drawn = st["width"].as_f64().unwrap();
        let want = st["visitors"].as_f64().unwrap() / population;
        assert!(
            (drawn - want).abs() < 0.01,
            "bar of step {}: {drawn} vs {want}",
            st["step"]
        );
        assert_eq!(st["color"], "rgb(79, 70, 229)", "light accent");
    }
    let (_, keys) = admin(&format!("{base}/v1/stats/properties?{range}&limit=50")).await;
    let key_names: Vec<Value> = keys["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["value"].clone())
        .collect();
    assert_eq!(conv["prop"]["keys"], json!(key_names));
    assert_eq!(conv["prop"]["key"], key_names[0]);
    let prop_values = |key: &str, extra: &str| {
        let url = format!("{base}/v1/stats/breakdown?{range}&property=prop.{key}&limit=10{extra}");
        async move { rows(&admin(&url).await.1, &["value", "visitors"]) }
    };
    assert_eq!(
        conv["prop"]["values"],
        json!(prop_values(key_names[0].as_str().unwrap(), "").await)
    );

    let selected = &screen["goal_selected"];
    let (_, by_source) = admin(&format!(
        "{base}/v1/stats/goals?{range}&goal=signup&property=source&limit=10"
    ))
    .await;
    assert_eq!(selected["goal_breakdown"]["goal"], "signup");
    assert_eq!(selected["goal_breakdown"]["by"], "source");
    assert_eq!(
        norm(json!(selected["goal_breakdown"]["rows"].as_array().unwrap().iter().map(|r| json!({"value": r["value"], "visitors": r["visitors"], "conversion_rate": r["rate"]})).collect::<Vec<_>>())),
        norm(json!(rows(&by_source, &["value", "visitors", "conversion_rate"])))
    );
    assert!(!by_source["results"].as_array().unwrap().is_empty());
    assert!(
        selected["goals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["goal"] == "signup" && g["selected"] == true)
    );
    let (_, by_page) = admin(&format!(
        "{base}/v1/stats/goals?{range}&goal=signup&property=page&limit=10"
    ))
    .await;
    let shown_by_page: Vec<Value> = screen["goal_by_page"]["goal_breakdown"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"value": r["value"], "visitors": r["visitors"]}))
        .collect();
    assert_eq!(
        json!(shown_by_page),
        json!(rows(&by_page, &["value", "visitors"]))
    );

    let with_props = &screen["goal_with_props"]["goal_breakdown"];
    assert_eq!(
        (with_props["goal"].as_str(), with_props["by"].as_str()),
        (Some("signup-pro"), Some("prop.plan"))
    );
    let (_, by_plan) = admin(&format!(
        "{base}/v1/stats/goals?{range}&goal=signup-pro&property=prop.plan&limit=10"
    ))
    .await;
    let shown_by_plan: Vec<Value> = with_props["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"value": r["value"], "visitors": r["visitors"]}))
        .collect();
    assert_eq!(
        json!(shown_by_plan),
        json!(rows(&by_plan, &["value", "visitors"]))
    );
    assert_eq!(by_plan["results"][0]["value"], "pro");
    let day = &screen["funnel_day"]["funnel"];
    assert_eq!(
        (day["id"].as_str(), day["within"].as_str()),
        (Some("pro"), Some("day"))
    );
    let (_, pro_day) = admin(&format!(
        "{base}/v1/stats/funnel?{range}&funnel=pro&within=day"
    ))
    .await;
    assert_eq!(
        json!(funnel_steps(day)),
        json!(rows(&pro_day, &["step", "visitors", "dropoff"]))
    );

    assert_eq!(screen["prop_variant"]["prop"]["key"], "variant");
    assert_eq!(
        screen["prop_variant"]["prop"]["values"],
        json!(prop_values("variant", "").await)
    );
    let value = screen["prop_variant"]["prop"]["values"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let last = &screen["prop_filtered"];
    assert_eq!(last["filters"], json!([format!("prop.variant:is:{value}")]));
    let url = last["url"].as_str().unwrap();
    for part in [
        "goal=signup-pro",
        "goal_by=prop.plan",
        "funnel=pro",
        "within=day",
        "prop=variant",
    ] {
        assert!(
            url.contains(part),
            "{part} in {url}: the view can be shared"
        );
    }
    // Dark mode redraws the funnel in the dark accent.
    for st in screen["dark"]["funnel"]["steps"].as_array().unwrap() {
        assert_eq!(st["color"], "rgb(139, 133, 255)", "dark accent");
    }

    // The share link opened without signing in, on its one site.
    assert_eq!(screen["shared_login_hidden"], true);
    assert_eq!(screen["shared_sites"], json!(["site-1"]));
    assert_eq!(
        screen["shared"]["kpis"]["visitors"]["value"],
        initial["kpis"]["visitors"]["value"]
    );

    // Fast: sign-in to a rendered 30-day view (8 tables, chart, KPIs with comparison).
    assert!(
        screen["first_render_ms"].as_u64().unwrap() < 3000,
        "{}",
        screen["first_render_ms"]
    );
}

/// One phase of tests/browser/admin.js; what the screen showed. Fails on any page error,
/// CSP refusal or request to another origin.
async fn admin_phase(phase: &str, mut args: Value) -> Value {
    args["phase"] = json!(phase);
    args["screenshots"] = json!(ta_tests::browser::artifacts_dir().display().to_string());
    let screen = tokio::task::spawn_blocking(move || ta_tests::browser::run("admin.js", &args))
        .await
        .unwrap();
    assert_eq!(
        screen["errors"],
        json!([]),
        "{phase}: page errors or third-party requests"
    );
    screen
}

/// A stats request with a share link and, optionally, its password: status and error code.
async fn shared(url: &str, password: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(p) = password {
        req = req.header("X-Share-Password", p);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_view_manages_sites_keys_and_credentials_that_the_api_then_honours() {
    let s = seeded().await;
    let c = central(&s.config).await;
    let base = c.base.as_str();
    let site = "site-1";
    let origins = ["https://one.example", "https://app.one.example"];
    let password = "open sesame 1";
    let edge = "https://edge.one.example";
    let args = json!({"base": base, "admin": c.admin, "site": site, "origins": origins,
        "password": password, "edge": edge, "date": "2025-11-02"});
    let registry_site = || async {
        let (st, v) = get_as(&c.admin, &format!("{base}/v1/admin/sites")).await;
        assert_eq!(st, 200, "{v}");
        v["sites"].clone()
    };

    // Sites created through the form: a wrong origin is refused on its field; an HMAC secret
    // is shown once; a deleted site is gone.
    let setup = admin_phase("setup", args.clone()).await;
    assert_eq!(setup["initial"]["views_shown"], true, "admin tab");
    assert_eq!(setup["initial"]["admin_shown"], true);
    assert_eq!(setup["initial"]["sites"], json!([]));
    assert!(
        setup["initial"]["url"]
            .as_str()
            .unwrap()
            .contains("view=admin")
    );
    let error = &setup["create_error"];
    assert_eq!(error["part"], "allowed_origins");
    assert_eq!(error["marked"], true);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("`one.example` is not an origin"),
        "{error}"
    );
    assert_eq!(
        setup["created"]["sites"],
        json!([{"id": site, "origins": origins[0], "selected": true}])
    );
    let scratch = &setup["scratch_secret"];
    assert_eq!(scratch["value"].as_str().unwrap().len(), 64, "{scratch}");
    assert!(scratch["once"].as_str().unwrap().starts_with("Shown once"));
    assert_eq!(scratch["stored"], false);
    assert_eq!(setup["scratch"]["selected"], "scratch");
    assert!(
        setup["delete_question"]
            .as_str()
            .unwrap()
            .contains("Delete scratch")
    );
    assert_eq!(
        setup["deleted"]["sites"],
        json!([{"id": site, "origins": origins[0], "selected": true}])
    );
    let sites = registry_site().await;
    assert_eq!(sites.as_array().unwrap().len(), 1, "{sites}");
    assert_eq!(sites[0]["id"], site);
    assert_eq!(sites[0]["allowed_origins"], json!([origins[0]]));
    assert_eq!(sites[0]["hostnames"], json!(["one.example"]));
    assert_eq!(sites[0]["has_hmac_secret"], false);
    let first_key = sites[0]["ingest_keys"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // Settings, key rotation, snippet, HMAC secret, a read token and a share link.
    let manage = admin_phase("manage", args.clone()).await;
    assert_eq!(manage["initial"]["selected"], site);
    let error = &manage["settings_error"];
    assert_eq!(
        (error["part"].as_str(), &error["marked"]),
        (Some("rate_limit_per_sec"), &json!(true)),
        "{error}"
    );
    assert_eq!(manage["saved"], "Saved.");
    assert_eq!(
        manage["edited"]["sites"][0]["origins"],
        json!(origins.join(" "))
    );
    assert_eq!(
        manage["edge_url"],
        format!("{edge}/"),
        "the edge URL is remembered as typed"
    );
    assert_eq!(
        manage["keys_before"],
        json!([{"key": first_key, "not_after": null, "ends": "current"}])
    );
    let sites = registry_site().await;
    let api = &sites[0];
    assert_eq!(api["allowed_origins"], json!(origins));
    assert_eq!(
        (
            &api["respect_dnt"],
            &api["rate_limit_per_sec"],
            &api["rate_limit_burst"]
        ),
        (&json!(true), &json!(50), &json!(100))
    );
    assert_eq!(api["has_hmac_secret"], true);
    // Two keys: the old one ends two hours after the rotation, the new one is current.
    let keys = api["ingest_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{api}");
    let old = keys
        .iter()
        .find(|k| k["key"] == first_key.as_str())
        .unwrap();
    let new = keys.iter().find(|k| k["not_after"].is_null()).unwrap();
    let new_key = new["key"].as_str().unwrap();
    let ends = old["not_after"].as_i64().unwrap();
    let rotated_at = new["created_at"].as_i64().unwrap();
    assert_eq!(ends - rotated_at, 7200);
    let shown = manage["rotated"]["keys"].as_array().unwrap();
    assert_eq!(shown.len(), 2, "{shown:?}");
    let shown_old = shown
        .iter()
        .find(|k| k["key"] == first_key.as_str())
        .unwrap();
    assert_eq!(shown_old["not_after"], ends);
    assert!(
        shown_old["ends"]
            .as_str()
            .unwrap()
            .ends_with("(rotated out)")
    );
    assert!(
        shown
            .iter()
            .any(|k| k["key"] == new_key && k["ends"] == "current")
    );
    let snippet = format!(
        r#"<script defer src="{edge}/t.js" data-site="{site}" data-key="{new_key}"></script>"#
    );
    assert_eq!(manage["snippet"], snippet);
    assert_eq!(manage["copied"], "true");
    assert_eq!(manage["clipboard"], snippet);
    for secret in [&manage["hmac_first"], &manage["hmac"]] {
        assert_eq!(secret["value"].as_str().unwrap().len(), 64, "{secret}");
        assert!(secret["once"].as_str().unwrap().starts_with("Shown once"));
        assert_eq!(secret["stored"], false);
    }
    assert_ne!(manage["hmac"]["value"], manage["hmac_first"]["value"]);

    // The read token reads the site.
    let read = manage["read"]["value"].as_str().unwrap().to_owned();
    let read_id = manage["read"]["credential"].as_str().unwrap().to_owned();
    assert_eq!(manage["read"]["kind"], "read");
    assert_eq!(manage["read"]["stored"], false);
    let (st, v) = get_as(&read, &format!("{base}/v1/sites")).await;
    assert_eq!((st, &v["sites"]), (200, &json!([site])), "{v}");
    // The share link: its full dashboard URL; without its password 401, with it 200.
    assert_eq!(manage["share_fields"], true);
    let error = &manage["password_error"];
    assert_eq!(
        (error["part"].as_str(), &error["marked"]),
        (Some("password"), &json!(true))
    );
    let share_url = manage["share"]["value"].as_str().unwrap().to_owned();
    let share = share_url
        .strip_prefix(&format!("{base}/?share="))
        .unwrap_or_else(|| panic!("{share_url}"))
        .to_owned();
    let range = format!(
        "{base}/v1/stats/aggregate?site_id={site}&period=30d&date=2025-11-02&timezone=UTC&share={share}"
    );
    let (st, v) = shared(&range, None).await;
    assert_eq!((st, &v["error"]), (401, &json!("share_password_required")));
    let (st, v) = shared(&range, Some("not the password")).await;
    assert_eq!((st, &v["error"]), (401, &json!("share_password_required")));
    let (st, agg) = shared(&range, Some(password)).await;
    assert_eq!(st, 200, "{agg}");
    let visitors = agg["results"]["visitors"]["value"].as_u64().unwrap();
    assert!(visitors > 0);
    // Listed by creation time, and the two created in one second by id: sorted here by kind.
    let mut listed: Vec<Value> = manage["listed"]["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!([
                c["kind"],
                c["label"],
                c["sites"],
                c["password"],
                c["expires_at"]
            ])
        })
        .collect();
    listed.sort_by_key(|c| c[0].as_str().unwrap_or_default().to_owned());
    // 2030-01-01T00:00 in the browser's time zone (UTC).
    assert_eq!(
        listed,
        vec![
            json!(["admin", "bootstrap", "all", false, null]),
            json!(["read", "ci reader", site, false, null]),
            json!(["share", "board", site, true, 1_893_456_000u64]),
        ]
    );

    // Light and dark both drawn from the palette; nothing overflows the window.
    assert_eq!(manage["light"]["theme"], "light");
    assert_eq!(manage["dark"]["theme"], "dark");
    assert_eq!(manage["light"]["body"], "rgb(247, 247, 249)");
    assert_eq!(manage["dark"]["body"], "rgb(17, 18, 22)");
    assert_eq!(manage["dark"]["card"], "rgb(27, 28, 34)");
    assert_eq!(manage["dark"]["text"], "rgb(232, 233, 238)");
    assert_eq!(manage["dark"]["snippet"], "rgb(17, 18, 22)");
    for mode in ["light", "dark"] {
        assert_eq!(manage[mode]["overflow"], false, "{mode}");
    }

    // The share link in the browser: a password form, a refused password, then the KPIs
    // (the API's numbers), the password sent with every request and kept for this tab only.
    let mut share_args = args.clone();
    share_args["share_url"] = json!(share_url);
    share_args["read"] = json!(read);
    let screen = admin_phase("share", share_args).await;
    assert_eq!(
        screen["prompted"],
        json!({"main_hidden": true, "login_hidden": true})
    );
    assert_eq!(screen["refused"], "That password was not accepted.");
    assert_eq!(screen["share_login_hidden"], true);
    assert_eq!(screen["kpis"]["visitors"], visitors);
    let sent = screen["sent_after"].as_array().unwrap();
    assert!(sent.len() > 5, "{sent:?}");
    assert!(sent.iter().all(|p| p == password), "{sent:?}");
    assert_eq!(
        screen["storage"]["session"],
        json!([format!("ta-share-password:{share}")])
    );
    assert_eq!(screen["storage"]["local"], json!([]));
    assert_eq!(screen["reload_prompted"], false);
    // A read token: no Admin tab, and ?view=admin shows the stats.
    let reader = &screen["reader"];
    assert_eq!(
        (
            &reader["views_shown"],
            &reader["admin_shown"],
            &reader["stats_shown"]
        ),
        (&json!(false), &json!(false), &json!(true))
    );
    assert!(!reader["url"].as_str().unwrap().contains("view=admin"));

    // Revoked in the UI: the token is refused from the next request on.
    let mut revoke_args = args.clone();
    revoke_args["read_id"] = json!(read_id);
    let revoke = admin_phase("revoke", revoke_args).await;
    let (st, _) = get_as(&read, &format!("{base}/v1/sites")).await;
    assert_eq!(st, 401);
    assert!(
        revoke["after"]["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != read_id.as_str())
    );
    // The Stats tab shows the registry's site; the Admin tab comes back to the admin view.
    let stats = &revoke["stats_tab"];
    assert_eq!(
        (
            &stats["stats_shown"],
            &stats["admin_shown"],
            &stats["views_shown"]
        ),
        (&json!(true), &json!(false), &json!(true))
    );
    assert_eq!(stats["site_options"], json!([site]));
    assert!(!stats["url"].as_str().unwrap().contains("view=admin"));
    assert_eq!(revoke["admin_tab"]["admin_shown"], true);
    assert!(
        revoke["admin_tab"]["url"]
            .as_str()
            .unwrap()
            .contains("view=admin")
    );
    // The audit log, newest first, as the API lists it.
    let (st, audit) = get_as(&c.admin, &format!("{base}/v1/admin/audit")).await;
    assert_eq!(st, 200);
    let api: Vec<Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"seq": e["seq"], "action": e["action"], "target": e["target"]}))
        .collect();
    assert_eq!(revoke["after"]["audit"], json!(api));
    let actions: Vec<&str> = api.iter().map(|e| e["action"].as_str().unwrap()).collect();
    // The settings save sent only what it changed.
    let update = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "site.update")
        .unwrap();
    let mut changed: Vec<&str> = update["detail"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    changed.sort_unstable();
    assert_eq!(
        changed,
        [
            "allowed_origins",
            "rate_limit_burst",
            "rate_limit_per_sec",
            "respect_dnt"
        ]
    );
    assert_eq!(
        actions,
        [
            "credential.delete",
            "credential.create",
            "credential.create",
            "site.rotate_hmac_secret",
            "site.rotate_hmac_secret",
            "site.rotate_key",
            "site.update",
            "site.delete",
            "site.create",
            "site.create",
            "credential.create",
        ]
    );

    for name in [
        "admin-light.png",
        "admin-dark.png",
        "share-password.png",
        "admin-audit-light.png",
    ] {
        let path = ta_tests::browser::artifacts_dir().join(name);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(size > 10_000, "{name}: {size} bytes");
    }
}
