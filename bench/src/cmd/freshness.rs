//! `ta-bench freshness`: at a steady event rate into the edge, how long from the edge's 202 to
//! the event being visible through ta-query (cache included)?
//!
//! Starts its own ta-edge, ta-loader and ta-query (release builds) on a fresh topic and
//! database, sends realistic traffic at `--rate` events/s for `--seconds`, and every 100 ms a
//! probe pageview with a unique path. A poller asks ta-query's top-pages for the probe site
//! every 50 ms, exactly as a dashboard would; a probe's freshness is the time from its 202 to
//! the first answer that lists it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proc::{Proc, free_port};
use crate::report::{Latency, Row, Section, percentile};
use crate::{TrafficPlan, load_sites};
use clap::Parser;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "freshness",
    about = "Edge 202 to visible in ta-query, under steady load"
)]
pub struct Args {
    /// Events per second into the edge (probes included).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Length of the steady phase.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, env = "TA_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(
        long,
        env = "TA_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse: String,
    /// Directory with the release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[arg(long, default_value = "deploy/config/sites.dev.toml")]
    sites_file: PathBuf,
    /// ta-query's access file; the poller reads with its dev admin token.
    #[arg(long, default_value = "deploy/config/access.dev.toml")]
    access_file: PathBuf,
}

const PROBE_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// Run the benchmark; prints the table and returns the row for the harness report.
pub async fn run(args: Args) -> anyhow::Result<Vec<Section>> {
    let run = format!("{:08x}", rand::random::<u32>());
    let (edge_port, query_port, loader_port) = (free_port(), free_port(), free_port());
    let spool = std::env::temp_dir().join(format!("ta_fresh_spool_{run}"));
    let common = [
        ("TA_KAFKA_BROKERS", args.brokers.clone()),
        ("TA_KAFKA_TOPIC", format!("ta_bench_fresh_{run}")),
        ("TA_CLICKHOUSE_URL", args.clickhouse.clone()),
        ("TA_CLICKHOUSE_DATABASE", format!("ta_bench_fresh_{run}")),
        ("TA_LOG", "warn".to_owned()),
    ];
    let start = |name: &str, extra: Vec<(&str, String)>| -> anyhow::Result<Proc> {
        let bin = args.bin_dir.join(name);
        anyhow::ensure!(
            bin.exists(),
            "{} not found: run `cargo build --release --bins`",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.env("TA_DEV", "true")
            .envs(common.iter().cloned())
            .envs(extra)
            .stdout(Stdio::null());
        Ok(Proc::new(cmd.spawn()?))
    };
    let _loader = start(
        "ta-loader",
        vec![("TA_LOADER_LISTEN", format!("127.0.0.1:{loader_port}"))],
    )?;
    let _query = start(
        "ta-query",
        vec![
            ("TA_QUERY_LISTEN", format!("127.0.0.1:{query_port}")),
            (
                "TA_QUERY_ACCESS_FILE",
                args.access_file.display().to_string(),
            ),
        ],
    )?;
    let _edge = start(
        "ta-edge",
        vec![
            ("TA_EDGE_LISTEN", format!("127.0.0.1:{edge_port}")),
            (
                "TA_EDGE_METRICS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ),
            ("TA_SITES_FILE", args.sites_file.display().to_string()),
            ("TA_TRUST_FORWARDED_FOR", "true".into()),
            ("TA_SPOOL_DIR", spool.display().to_string()),
        ],
    )?;
    let edge = format!("http://127.0.0.1:{edge_port}");
    let query = format!("http://127.0.0.1:{query_port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()?;
    let ready = Instant::now();
    loop {
        let edge_ok = http
            .get(format!("{edge}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let query_ok = http
            .get(format!("{query}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let loader_ok = http
            .get(format!("http://127.0.0.1:{loader_port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if edge_ok && query_ok && loader_ok {
            break;
        }
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "services did not start within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sites = load_sites(&args.sites_file)?;
    let plan = Arc::new(TrafficPlan::generate(&sites, 20_000, 7));
    let from = chrono::Utc::now() - chrono::Duration::seconds(5);
    let to = from + chrono::Duration::hours(1);
    println!(
        "bench-freshness: {} events/s for {} s into {edge}; probes every 100 ms, ta-query polled every 50 ms",
        args.rate, args.seconds
    );

    let accepted_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen_after: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Poller: what a dashboard sees.
    let poller = {
        let (http, query, accepted_at, seen_after, stop) = (
            http.clone(),
            query.clone(),
            accepted_at.clone(),
            seen_after.clone(),
            stop.clone(),
        );
        let (from, to) = (from.to_rfc3339(), to.to_rfc3339());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = http
                    .get(format!("{query}/v1/metrics/top-pages"))
                    .bearer_auth(crate::DEV_QUERY_TOKEN)
                    .query(&[
                        ("site_id", "site-2"),
                        ("from", &from),
                        ("to", &to),
                        ("limit", "1000"),
                    ])
                    .send()
                    .await;
                if let Ok(res) = res
                    && let Ok(body) = res.json::<serde_json::Value>().await
                {
                    let now = Instant::now();
                    let accepted = accepted_at.lock().await;
                    let mut seen = seen_after.lock().await;
                    for page in body["pages"].as_array().into_iter().flatten() {
                        let path = page["path"].as_str().unwrap_or_default();
                        if let Some(t) = accepted.get(path)
                            && !seen.contains_key(path)
                        {
                            seen.insert(path.to_owned(), now.duration_since(*t).as_secs_f64());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Load: a paced stream of plan requests, plus probes.
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let total = args.rate * args.seconds;
    let mut sent = 0u64;
    let mut probes = 0u64;
    let tick = Duration::from_millis(10);
    let per_tick = (args.rate as f64 * tick.as_secs_f64()).max(1.0) as u64;
    let mut ticker = tokio::time::interval(tick);
    while sent < total {
        ticker.tick().await;
        for _ in 0..per_tick {
            let probe = sent.is_multiple_of(args.rate / 10);
            let permit = sem.clone().acquire_owned().await?;
            let (http, edge, errors, accepted_at) = (
                http.clone(),
                edge.clone(),
                errors.clone(),
                accepted_at.clone(),
            );
            let plan = plan.clone();
            let run = run.clone();
            let i = sent;
            if probe {
                probes += 1;
            }
            tokio::spawn(async move {
                let _permit = permit;
                let mut req = http.post(format!("{edge}/v1/collect"));
                let path = format!("/probe/{run}/{i}");
                if probe {
                    let body = serde_json::json!({"site_id": "site-2", "event_name": "pageview",
                        "url": format!("https://shop.example.org{path}")});
                    req = req
                        .header("X-TA-API-Key", "dev-key-site-2")
                        .header("User-Agent", PROBE_UA)
                        .header("X-Forwarded-For", "203.0.113.250")
                        .json(&body);
                } else {
                    let r = &plan.requests[(i as usize) % plan.requests.len()];
                    req = req.body(r.body.clone());
                    for (k, v) in &r.headers {
                        req = req.header(k, v);
                    }
                }
                match req.send().await {
                    Ok(res) if res.status().as_u16() == 202 => {
                        if probe {
                            accepted_at.lock().await.insert(path, Instant::now());
                        }
                    }
                    Ok(res) if res.status().is_client_error() => {} // planned invalid requests
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
            sent += 1;
        }
    }
    let send_secs = started.elapsed().as_secs_f64();
    // Let the last probes arrive.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if seen_after.lock().await.len() as u64 >= probes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = poller.await;
    let accepted = accepted_at.lock().await.len();
    let mut fresh: Vec<f64> = seen_after.lock().await.values().copied().collect();
    fresh.sort_by(|a, b| a.total_cmp(b));
    let _ = std::fs::remove_dir_all(&spool);

    println!();
    println!("| load | achieved | probes accepted | probes seen | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} ev/s × {} s | {:.0} ev/s | {} | {} | {:.2} s | {:.2} s | **{:.2} s** | {:.2} s |",
        args.rate,
        args.seconds,
        sent as f64 / send_secs,
        accepted,
        fresh.len(),
        percentile(&fresh, 50.0),
        percentile(&fresh, 90.0),
        percentile(&fresh, 99.0),
        fresh.last().copied().unwrap_or(f64::NAN)
    );
    let errs = errors.load(std::sync::atomic::Ordering::Relaxed);
    println!("requests failed or refused with 5xx: {errs}");
    anyhow::ensure!(
        fresh.len() == accepted,
        "{} accepted probes never became visible",
        accepted - fresh.len()
    );
    anyhow::ensure!(accepted > 0, "no probe was accepted");
    let ms: Vec<f64> = fresh.iter().map(|s| s * 1000.0).collect();
    let latency = Latency::of_sorted(&ms).expect("probes were seen");
    let section = Section::new(
        "5. End-to-end freshness: edge 202 → visible in ta-query",
        format!(
            "ta-edge, ta-loader and ta-query (release) on a fresh topic and database; realistic traffic at {} events/s for {} s \
             with a probe pageview every 100 ms; a poller asks ta-query (cache included) every 50 ms, as a dashboard would.",
            args.rate, args.seconds
        ),
    )
    .row(
        Row::new(
            format!("probe visible after its 202 ({accepted} probes, {:.0} events/s achieved)", sent as f64 / send_secs),
            latency.p50,
            "ms p50",
        )
        .latency(latency)
        .target("p99 ≤ 2 s", latency.p99 <= 2000.0),
    );
    Ok(vec![section])
}
