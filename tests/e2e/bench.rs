//! The load generator (`ta-bench load`) against a real pipeline: its traffic is what the edge
//! counts, its signed requests are never replays, and everything accepted is loaded.

use std::time::{Duration, Instant};

use clap::Parser;
use ta_bench::cmd::load;
use ta_tests::{Pipeline, clickhouse_url, metric_sum, workspace_root};

async fn loaded_rows(database: &str) -> u64 {
    ta_tests::infra::clickhouse_number(&clickhouse_url(), database, "SELECT count() FROM events")
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_traffic_is_counted_accepted_and_loaded_exactly() {
    let p = Pipeline::start("bench_load").await;
    let sites = workspace_root().join("deploy/config/sites.dev.toml");
    let mut answered = 0u64;
    let mut events = 0u64;
    for batch in ["1", "20"] {
        let args = load::Args::try_parse_from([
            "load",
            "--edge",
            p.edge_url.as_str(),
            "--sites-file",
            sites.to_str().unwrap(),
            "--connections",
            "4",
            "--seconds",
            "2",
            "--warmup",
            "0",
            "--batch",
            batch,
            "--bots",
            "10",
            // Any refusal (a replayed signature, a bad key) fails the run.
            "--max-error-ratio",
            "0",
        ])
        .unwrap();
        let (report, sections) = tokio::task::spawn_blocking(move || load::run(args))
            .await
            .unwrap()
            .expect("the load run succeeds with only 2xx answers");
        assert!(report.requests > 20, "{report:?}");
        assert_eq!(report.statuses.keys().copied().collect::<Vec<_>>(), [202]);
        assert!(report.ms(99.0) > 0.0 && report.ms(99.0) <= report.max_ms());
        assert_eq!(sections[0].rows.len(), 2);
        answered += report.requests;
        events += report.requests * batch.parse::<u64>().unwrap();
    }

    // Every event of every answered request was either accepted or dropped as a bot.
    let edge = reqwest::get(format!("{}/metrics", p.edge_metrics_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let accepted = metric_sum(&edge, "ta_edge_events_accepted_total") as u64;
    let bots = metric_sum(&edge, "ta_edge_bot_events_total") as u64;
    assert_eq!(accepted + bots, events, "{answered} requests answered");
    assert!(
        bots > 0 && accepted > bots,
        "bots {bots}, accepted {accepted}"
    );

    // And every accepted event reaches ClickHouse, once.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = loaded_rows(&p.database).await;
        if rows == accepted {
            break;
        }
        assert!(
            rows < accepted,
            "{rows} rows loaded for {accepted} accepted"
        );
        assert!(
            Instant::now() < deadline,
            "{rows} of {accepted} accepted events loaded after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
