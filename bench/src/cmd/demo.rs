//! `ta-bench demo`: send realistic traffic through a running edge, then read the numbers
//! back through ta-query and compare them with what was sent.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::{TrafficPlan, load_sites, send, wait_for_match};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "demo",
    about = "Send a burst of demo traffic and check what ta-query reports for it"
)]
pub struct Args {
    /// Base URL of the edge node.
    #[arg(long, env = "TA_EDGE_URL", default_value = "http://127.0.0.1:8080")]
    edge: String,
    /// Base URL of ta-query.
    #[arg(long, env = "TA_QUERY_URL", default_value = "http://127.0.0.1:8081")]
    query: String,
    /// Read token for ta-query (`Authorization: Bearer`); the default is the dev admin
    /// token of deploy/config/access.dev.toml.
    #[arg(long, env = "TA_QUERY_TOKEN", default_value = crate::DEV_QUERY_TOKEN)]
    query_token: String,
    /// Sites file with the ingest keys to use.
    #[arg(
        long,
        env = "TA_SITES_FILE",
        default_value = "deploy/config/sites.dev.toml"
    )]
    sites_file: PathBuf,
    /// Number of requests to send.
    #[arg(long, default_value_t = 5000)]
    events: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seed of the traffic plan (same seed, same traffic).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// How long to wait for the numbers to show up in ta-query, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

/// Send the demo traffic and compare ta-query's numbers with the plan's.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        edge,
        query,
        query_token,
        sites_file,
        events,
        concurrency,
        seed,
        timeout_secs,
    } = args;
    let sites = load_sites(&sites_file)?;
    let plan = TrafficPlan::generate(&sites, events, seed);
    let expected = plan.expected();
    // Events carry no timestamp, so the edge stamps them on arrival: the window from just
    // before sending to just after covers exactly this run's traffic.
    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    println!("demo: sending {events} requests to {edge} ({concurrency} in flight) ...");
    let sent = send(&edge, &plan, concurrency).await?;
    let to = chrono::Utc::now() + chrono::Duration::seconds(2);
    println!(
        "demo: sent {} in {:.2}s ({:.0} req/s): {} accepted, {} bots dropped, {} invalid refused",
        sent.sent,
        sent.elapsed.as_secs_f64(),
        sent.sent as f64 / sent.elapsed.as_secs_f64().max(1e-9),
        expected.accepted(),
        expected.bots,
        expected.rejected
    );
    if !sent.mismatches.is_empty() {
        for (i, want, got, body) in sent.mismatches.iter().take(10) {
            eprintln!("demo: request {i}: expected {want}, edge answered {got} {body}");
        }
        anyhow::bail!(
            "{} requests were answered differently than planned",
            sent.mismatches.len()
        );
    }
    let (from_s, to_s) = (from.to_rfc3339(), to.to_rfc3339());
    println!("demo: waiting for ta-query at {query} to report the loaded events ...");
    let (matched, got) = wait_for_match(
        &query,
        &query_token,
        &expected,
        &from_s,
        &to_s,
        Duration::from_secs(timeout_secs),
    )
    .await?;
    println!();
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10}  top pages (ta-query)",
        "site", "pageviews", "(sent)", "uniques", "(sent)"
    );
    for (site, exp) in &expected.sites {
        let r = &got[site];
        let top: Vec<String> = r
            .top_pages
            .iter()
            .take(3)
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        println!(
            "{:<8} {:>10} {:>10} {:>10} {:>10}  {}",
            site,
            r.pageviews,
            exp.pageviews,
            r.unique_users,
            exp.visitors.len(),
            top.join(", ")
        );
    }
    println!();
    if matched {
        println!(
            "demo: OK, ta-query's pageviews, unique users and top pages match the traffic sent."
        );
        Ok(())
    } else {
        anyhow::bail!("ta-query's numbers did not match the traffic sent within {timeout_secs}s")
    }
}
