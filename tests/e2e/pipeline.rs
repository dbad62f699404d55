use std::time::Duration;

use ta_bench::{TrafficPlan, load_sites, send, wait_for_match};
use ta_tests::{Pipeline, metric_sum, workspace_root};

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ta_query_reports_exactly_the_traffic_sent_through_the_edge() {
    let p = Pipeline::start("pipeline_exact").await;
    let sites = load_sites(&workspace_root().join("deploy/config/sites.dev.toml")).unwrap();
    let plan = TrafficPlan::generate(&sites, 1500, 2026);
    let expected = plan.expected();
    let from = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();

    let report = send(&p.edge_url, &plan, 16).await.unwrap();
    assert!(
        report.mismatches.is_empty(),
        "edge answers differed from the plan: {:?}",
        &report.mismatches[..report.mismatches.len().min(5)]
    );

    let to = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let (matched, got) = wait_for_match(
        &p.query_url,
        &p.query_token,
        &expected,
        &from,
        &to,
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    for (site, exp) in &expected.sites {
        let r = &got[site];
        assert_eq!(r.pageviews, exp.pageviews, "pageviews of {site}");
        assert_eq!(
            r.unique_users,
            exp.visitors.len() as u64,
            "unique users of {site}"
        );
        assert_eq!(r.top_pages, exp.top_pages(10), "top pages of {site}");
    }
    assert!(matched);

    let edge = metrics(&p.edge_metrics_url).await;
    assert_eq!(
        metric_sum(&edge, "ta_edge_events_accepted_total") as u64,
        expected.accepted()
    );
    assert_eq!(
        metric_sum(&edge, "ta_edge_bot_events_total") as u64,
        expected.bots
    );
    assert_eq!(
        metric_sum(&edge, "ta_edge_events_rejected_total") as u64,
        expected.rejected
    );
    let loader = metrics(&p.loader_url).await;
    assert_eq!(
        metric_sum(&loader, "ta_loader_events_inserted_total") as u64,
        expected.accepted()
    );

    // No service holds transparent huge pages (`ta_shared::process`): mimalloc is built
    // without its MADV_HUGEPAGE request and each service turns THP off at start. A kernel in
    // `always` mode can still give huge pages to what the runtime allocates before `main`.
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !thp.contains("[always]") {
        for service in [&p.edge, &p.loader, &p.query] {
            assert_eq!(
                service.huge_pages_kib(),
                0,
                "{} holds transparent huge pages (THP: {})",
                service.name,
                thp.trim()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ips_and_user_agents_reach_neither_clickhouse_nor_logs() {
    let p = Pipeline::start("pipeline_privacy").await;
    let sites = load_sites(&workspace_root().join("deploy/config/sites.dev.toml")).unwrap();
    let plan = TrafficPlan::generate(&sites, 300, 99);
    let expected = plan.expected();
    let from = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    send(&p.edge_url, &plan, 8).await.unwrap();
    let to = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let (matched, _) = wait_for_match(
        &p.query_url,
        &p.query_token,
        &expected,
        &from,
        &to,
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    assert!(matched, "traffic was loaded");

    // Every row, every column, as text.
    let dump = reqwest::Client::new()
        .post(ta_tests::clickhouse_url())
        .query(&[("database", p.database.as_str())])
        .body("SELECT * FROM events FORMAT TabSeparated")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dump.lines().count() as u64 >= expected.accepted());
    let logs = format!(
        "{}{}{}",
        p.edge.log_text(),
        p.loader.log_text(),
        p.query.log_text()
    );
    for r in &plan.requests {
        for (k, v) in &r.headers {
            if k == "X-Forwarded-For" || k == "User-Agent" {
                assert!(
                    !dump.contains(v.as_str()),
                    "{k} value {v} found in ClickHouse"
                );
                assert!(
                    !logs.contains(v.as_str()),
                    "{k} value {v} found in service logs"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_loader_rolls_up_a_closed_day_and_ta_query_answers_from_it() {
    let p = Pipeline::start("pipeline_rollup").await;
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let noon = yesterday.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let client = reqwest::Client::new();
    // Two visitors yesterday (one with two pageviews 10 minutes apart), sent late, as an edge
    // spool draining after an outage would; one browser asks for German, the other sends no
    // language.
    for (user, minutes, path) in [("a", 0, "/"), ("a", 10, "/pricing"), ("b", 5, "/docs")] {
        let ts = (noon + chrono::Duration::minutes(minutes)).timestamp_millis();
        let mut request = client.post(format!("{}/v1/collect", p.edge_url));
        if user == "a" {
            request = request.header("Accept-Language", "de-CH, de;q=0.9, en;q=0.8");
        }
        let answer = request
            .header("X-TA-API-Key", "dev-key-site-1")
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            )
            .body(format!(
                r#"{{"site_id":"site-1","event_name":"pageview","url":"https://example.com{path}","user_id":"{user}","ts":{ts}}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 202);
    }
    // Loader 0 builds the day (every 2 s here) once the events are loaded.
    let day = noon.timestamp() / 86_400;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let built = ta_tests::infra::clickhouse_number(
            &ta_tests::clickhouse_url(),
            &p.database,
            &format!("SELECT toUInt64(argMax(events, build_id)) FROM rollup_days WHERE site_id = 'site-1' AND day = {day}"),
        )
        .await;
        if built == Some(3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loader did not roll up {yesterday} (built: {built:?}); log:\n{}",
            p.loader.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The counter moves after the build's bookkeeping (recording the build, then deleting the
    // day's earlier builds), a moment after the recorded build is visible: wait for it too.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let built = metric_sum(
            &metrics(&p.loader_url).await,
            "ta_loader_rollup_days_built_total",
        );
        if built >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ta_loader_rollup_days_built_total stayed {built} for 30 s after the build was recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ta-query reads the day from the rollup (its coverage check runs) and answers exactly.
    let res = client
        .get(format!(
            "{}/v1/stats/aggregate?site_id=site-1&period=custom&from={yesterday}&to={yesterday}",
            p.query_url
        ))
        .bearer_auth(&p.query_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let r = &body["results"];
    assert_eq!(
        (
            &r["visitors"]["value"],
            &r["visits"]["value"],
            &r["pageviews"]["value"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(2),
            &serde_json::json!(3)
        ),
        "{body}"
    );
    assert_eq!(r["bounce_rate"]["value"], 50.0, "{body}");
    assert_eq!(r["visit_duration"]["value"], 300.0, "{body}");
    // The language dimension, from the edge's Accept-Language to the breakdown.
    let res = client
        .get(format!(
            "{}/v1/stats/breakdown?site_id=site-1&period=custom&from={yesterday}&to={yesterday}&property=language",
            p.query_url
        ))
        .bearer_auth(&p.query_token)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    let languages: Vec<(&str, u64)> = body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|row| {
            (
                row["value"].as_str().unwrap(),
                row["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(languages, [("de", 2), ("", 1)], "{body}");
    let query = metrics(&p.query_url).await;
    assert!(
        query.contains(r#"ta_query_rollup_checks_total{result="run"} 1"#),
        "{query}"
    );
}
