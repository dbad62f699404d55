//! The dashboard in headless Chromium (playwright-core, `ta_tests::browser`): what the screen
//! shows equals the API's answers and the independent computation; filters, period changes,
//! CSV, dark mode and share links work. Screenshots: target/test-artifacts/browser/.

use serde_json::{Value, json};

use crate::stats_model::{START, admin, seeded, select, serve, totals};

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
        "conversions",
    ] {
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
        assert_eq!(initial["tables"][table], json!(api), "{table} table");
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
