//! `ta-bench soak` (`make soak`): the whole pipeline at a steady rate for a long time (30
//! minutes by default), to show memory stays flat and nothing is lost.
//!
//! Starts its own ta-edge, ta-loader and ta-query (release) on a fresh topic and database,
//! sends the load generator's realistic traffic at `--rate` requests/s, asks ta-query for the
//! dashboard's aggregate once a second, and samples every process's RSS every 10 s. At the end:
//! the peak RSS of the second fifth of the run (after warm-up) beside the last fifth's, and an
//! exact count — rows in ClickHouse equal the events the edge accepted.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

use super::load::Traffic;
use crate::http_load::{self, LoadSpec, Pace};
use crate::proc::{Proc, free_port, http_get, metric, status_kb, wait_http};
use crate::report::{Latency, MEMORY, Row, Section};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "soak",
    about = "The pipeline at a steady rate for a long time: flat memory, nothing lost"
)]
pub struct Args {
    /// Minutes of steady load.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Requests per second into the edge.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Events per request (1: `/v1/collect`).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, env = "TA_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(
        long,
        env = "TA_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse: String,
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[arg(long, default_value = "deploy/config/sites.dev.toml")]
    sites_file: PathBuf,
    #[arg(long, default_value = "deploy/config/access.dev.toml")]
    access_file: PathBuf,
}

const NAMES: [&str; 3] = ["ta-edge", "ta-loader", "ta-query"];

fn ch_count(clickhouse: &str, db: &str) -> Option<u64> {
    let out = Command::new("curl")
        .args(["-sf", "--data-binary", "SELECT count() FROM events"])
        .arg(format!("{clickhouse}/?database={db}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Run the soak; prints the RSS table and returns rows for a report.
pub fn run(args: Args) -> anyhow::Result<Vec<Section>> {
    let run = format!("{:08x}", rand::random::<u32>());
    let (topic, db) = (format!("ta_soak_{run}"), format!("ta_soak_{run}"));
    let spool = tempfile::tempdir()?;
    let ports = [free_port(), free_port(), free_port()];
    let start = |name: &str, extra: Vec<(&str, String)>| -> anyhow::Result<Proc> {
        let bin = args.bin_dir.join(name);
        anyhow::ensure!(
            bin.exists(),
            "{} not found: run `cargo build --release --bins`",
            bin.display()
        );
        Ok(Proc(
            Command::new(bin)
                .env("TA_KAFKA_BROKERS", &args.brokers)
                .env("TA_KAFKA_TOPIC", &topic)
                .env("TA_CLICKHOUSE_URL", &args.clickhouse)
                .env("TA_CLICKHOUSE_DATABASE", &db)
                .env("TA_LOG", "warn")
                .envs(extra)
                .stdout(Stdio::null())
                .spawn()?,
        ))
    };
    let addr = |i: usize| -> std::net::SocketAddr { ([127, 0, 0, 1], ports[i]).into() };
    let procs = [
        start(
            "ta-edge",
            vec![
                ("TA_EDGE_LISTEN", addr(0).to_string()),
                ("TA_SITES_FILE", args.sites_file.display().to_string()),
                ("TA_TRUST_FORWARDED_FOR", "true".into()),
                ("TA_SPOOL_DIR", spool.path().display().to_string()),
            ],
        )?,
        start("ta-loader", vec![("TA_LOADER_LISTEN", addr(1).to_string())])?,
        start(
            "ta-query",
            vec![
                ("TA_QUERY_LISTEN", addr(2).to_string()),
                (
                    "TA_QUERY_ACCESS_FILE",
                    args.access_file.display().to_string(),
                ),
            ],
        )?,
    ];
    wait_http(addr(0), "/readyz", Duration::from_secs(60))?;
    wait_http(addr(1), "/healthz", Duration::from_secs(60))?;
    wait_http(addr(2), "/healthz", Duration::from_secs(60))?;

    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    eprintln!(
        "soak: {} req/s × {} event(s) for {:.1} min; RSS sampled every 10 s",
        args.rate, args.batch, args.minutes
    );
    // RSS samples: (seconds since start, [edge, loader, query] in KiB).
    let stop = Arc::new(AtomicBool::new(false));
    let pids: Vec<u32> = procs.iter().map(Proc::pid).collect();
    let sampler = {
        let stop = stop.clone();
        let query = addr(2);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut samples: Vec<(f64, [u64; 3])> = Vec::new();
            let mut next = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                if t0.elapsed() >= next {
                    let kb = [0, 1, 2].map(|i| status_kb(pids[i], "VmRSS:"));
                    samples.push((t0.elapsed().as_secs_f64(), kb));
                    next += Duration::from_secs(10);
                }
                // What a dashboard asks, once a second (cached most of the time).
                let _ = http_get(
                    query,
                    "/v1/stats/aggregate?site_id=site-1&period=today&share=dev-share-site-1",
                );
                std::thread::sleep(Duration::from_secs(1));
            }
            samples
        })
    };
    let mut traffic = Traffic::from_sites_file(&args.sites_file)?;
    traffic.batch = args.batch;
    let report = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(http_load::run(
            LoadSpec {
                addr: addr(0),
                connections: 16,
                duration,
                warmup: Duration::ZERO,
                pace: Pace::Rate(args.rate),
                requests: traffic.requests(&addr(0).to_string()),
                events_per_request: args.batch as u64,
                record_ids: false,
            },
            "soak",
        ));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");

    // Nothing lost: every accepted event is loaded, once.
    let accepted = metric(
        &http_get(addr(0), "/metrics"),
        "ta_edge_events_accepted_total",
    )
    .unwrap_or(0.0) as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut rows = 0;
    while Instant::now() < deadline {
        rows = ch_count(&args.clickhouse, &db).unwrap_or(0);
        if rows >= accepted {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(procs);

    let fifth = (samples.len() / 5).max(1);
    let peak = |part: &[(f64, [u64; 3])], i: usize| {
        part.iter().map(|(_, kb)| kb[i]).max().unwrap_or(0) as f64 / 1024.0
    };
    // The first fifth is warm-up (caches fill, the allocator grows its arenas): memory is
    // flat when the last fifth peaks no higher than the second.
    let second = &samples[fifth.min(samples.len() - 1)..(2 * fifth).min(samples.len())];
    let last = &samples[samples.len() - fifth..];
    println!("\n| minute | ta-edge RSS | ta-loader RSS | ta-query RSS |\n|---:|---:|---:|---:|");
    for (t, kb) in samples.iter().step_by(6) {
        println!(
            "| {:.0} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            t / 60.0,
            kb[0] as f64 / 1024.0,
            kb[1] as f64 / 1024.0,
            kb[2] as f64 / 1024.0
        );
    }
    println!(
        "\nrequests {} ({}), {:.0} req/s; events accepted {accepted}, rows in ClickHouse {rows}",
        report.requests,
        report.statuses_text(),
        report.requests_per_sec()
    );
    let mut memory = Section::new(
        MEMORY,
        format!(
            "soak: {:.1} min at {} req/s, peak RSS of the second fifth of the run (after warm-up) and of the last",
            args.minutes, args.rate
        ),
    );
    for (i, name) in NAMES.iter().enumerate() {
        let (a, b) = (peak(second, i), peak(last, i));
        println!(
            "{name}: second fifth ≤ {a:.1} MiB, last fifth ≤ {b:.1} MiB ({:+.1}%)",
            (b / a - 1.0) * 100.0
        );
        memory.rows.push(
            Row::new(format!("{name}, last fifth of the soak"), b, "MiB")
                .baseline("second fifth", a)
                .target("flat: ≤ 10% growth", b <= a * 1.10),
        );
    }
    let soak = Section::new(
        "7. Soak",
        format!("{:.1} min at {} req/s", args.minutes, args.rate),
    )
    .row(
        Row::new("requests answered", report.requests_per_sec(), "req/s")
            .latency(Latency::of(&report)),
    )
    .row(
        Row::new("events loaded / accepted", rows as f64, "events")
            .baseline("accepted by the edge", accepted as f64)
            .target("exactly equal", rows == accepted),
    );
    anyhow::ensure!(
        rows == accepted,
        "ClickHouse holds {rows} rows for {accepted} accepted events"
    );
    Ok(vec![soak, memory])
}
