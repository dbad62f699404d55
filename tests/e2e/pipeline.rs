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

    let edge = metrics(&p.edge_url).await;
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
