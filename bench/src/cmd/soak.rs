//! `ta-bench soak` (`make soak`): the whole pipeline at a steady rate for a long time (30
//! minutes by default), to show memory stays flat and nothing is lost.
//!
//! Starts its own ta-edge, ta-loader and ta-query (release) on a fresh topic and database,
//! sends the load generator's realistic traffic at `--rate` requests/s, asks ta-query for the
//! dashboard's aggregate once a second, and samples every process's RSS (and the edge's replay
//! guard) every 10 s. At the end: the peak RSS of the fifth of the run right after warm-up
//! beside the last fifth's, and an exact count — rows in ClickHouse equal the events the edge
//! accepted. Warm-up is the first fifth, and at least until the bounded state is full: the
//! replay guard holds each signed request's signature for 2 × the signature window (10 min).

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
use ta_shared::signature::DEFAULT_REPLAY_WINDOW_SECS;

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

/// One sample of the processes, every 10 s.
struct Sample {
    secs: f64,
    rss_kb: [u64; 3],
    replay: u64,
}

/// Run the soak; prints the RSS table and returns rows for a report.
pub fn run(args: Args) -> anyhow::Result<Vec<Section>> {
    let run = format!("{:08x}", rand::random::<u32>());
    let (topic, db) = (format!("ta_soak_{run}"), format!("ta_soak_{run}"));
    let spool = tempfile::tempdir()?;
    // edge, loader, query, and the edge's ops listener (/metrics).
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let start = |name: &str, extra: Vec<(&str, String)>| -> anyhow::Result<Proc> {
        let bin = args.bin_dir.join(name);
        anyhow::ensure!(
            bin.exists(),
            "{} not found: run `cargo build --release --bins`",
            bin.display()
        );
        Ok(Proc::new(
            Command::new(bin)
                .env("TA_KAFKA_BROKERS", &args.brokers)
                .env("TA_KAFKA_TOPIC", &topic)
                .env("TA_CLICKHOUSE_URL", &args.clickhouse)
                .env("TA_CLICKHOUSE_DATABASE", &db)
                .env("TA_LOG", "warn")
                .env("TA_DEV", "true")
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
                ("TA_EDGE_METRICS_LISTEN", addr(3).to_string()),
                ("TA_SITES_FILE", args.sites_file.display().to_string()),
                ("TA_TRUST_FORWARDED_FOR", "true".into()),
                ("TA_SPOOL_DIR", spool.path().display().to_string()),
                // The warm-up below depends on it.
                (
                    "TA_SIGNATURE_WINDOW_SECS",
                    DEFAULT_REPLAY_WINDOW_SECS.to_string(),
                ),
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
    // Samples: seconds since start, [edge, loader, query] RSS in KiB, and the signatures the
    // edge's replay guard holds (it fills for 2 × the signature window, then stays level).
    let stop = Arc::new(AtomicBool::new(false));
    let pids: Vec<u32> = procs.iter().map(Proc::pid).collect();
    let sampler = {
        let stop = stop.clone();
        let (edge, query) = (addr(3), addr(2));
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut samples: Vec<Sample> = Vec::new();
            let mut next = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                if t0.elapsed() >= next {
                    let kb = [0, 1, 2].map(|i| status_kb(pids[i], "VmRSS:"));
                    let replay = metric(
                        &http_get(edge, "/metrics"),
                        "ta_edge_replay_guard_signatures",
                    )
                    .unwrap_or(0.0) as u64;
                    samples.push(Sample {
                        secs: t0.elapsed().as_secs_f64(),
                        rss_kb: kb,
                        replay,
                    });
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
                sources: Vec::new(),
            },
            "soak",
        ));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");

    // Nothing lost: every accepted event is loaded, once.
    let accepted = metric(
        &http_get(addr(3), "/metrics"),
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

    // Warm-up: the first fifth (caches fill, the allocator grows its arenas), and at least
    // until the bounded state has filled: the edge's replay guard keeps each signed request's
    // signature for 2 × the signature window. Memory is flat when the last fifth of the run
    // peaks no higher than the fifth right after warm-up.
    let secs = duration.as_secs_f64();
    let warm = (secs / 5.0).max(2.0 * DEFAULT_REPLAY_WINDOW_SECS as f64 + 60.0);
    let in_range = |from: f64, to: f64| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.secs >= from && s.secs < to)
            .collect()
    };
    let settled = in_range(warm, warm + secs / 5.0);
    let last = in_range(secs * 4.0 / 5.0, f64::INFINITY);
    let judged = warm + secs / 5.0 <= secs * 4.0 / 5.0 && !settled.is_empty() && !last.is_empty();
    // A process that is gone reads as 0 KiB: that is a failed run, not a flat one.
    if let Some(s) = samples.iter().find(|s| s.rss_kb.contains(&0)) {
        anyhow::bail!(
            "a service was gone at minute {:.1} of the soak (RSS edge/loader/query {:?} KiB)",
            s.secs / 60.0,
            s.rss_kb
        );
    }
    println!(
        "\n| minute | ta-edge RSS | ta-loader RSS | ta-query RSS | replay guard signatures |\n|---:|---:|---:|---:|---:|"
    );
    for s in samples.iter().step_by(6) {
        let mib = s.rss_kb.map(|kb| kb as f64 / 1024.0);
        println!(
            "| {:.0} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} |",
            s.secs / 60.0,
            mib[0],
            mib[1],
            mib[2],
            s.replay
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
            "soak: {:.1} min at {} req/s, peak RSS of the fifth of the run after warm-up (the first fifth, and at least 2 × the signature window + 1 min) and of the last fifth",
            args.minutes, args.rate
        ),
    );
    if !judged {
        println!(
            "flatness not judged: the run needs {:.0} minutes or more (warm-up {:.0} min, then a fifth before the last fifth)",
            (warm * 5.0 / 3.0 / 60.0).ceil(),
            warm / 60.0
        );
    }
    for (i, name) in NAMES.iter().enumerate() {
        let peak =
            |part: &[&Sample]| part.iter().map(|s| s.rss_kb[i]).max().unwrap_or(0) as f64 / 1024.0;
        let (a, b) = (peak(&settled), peak(&last));
        let row = Row::new(format!("{name}, last fifth of the soak"), b, "MiB");
        if judged {
            println!(
                "{name}: minutes {:.0}–{:.0} ≤ {a:.1} MiB, last fifth ≤ {b:.1} MiB ({:+.1}%)",
                warm / 60.0,
                (warm + secs / 5.0) / 60.0,
                (b / a - 1.0) * 100.0
            );
            memory.rows.push(
                row.baseline(
                    format!(
                        "minutes {:.0}–{:.0}, after warm-up",
                        warm / 60.0,
                        (warm + secs / 5.0) / 60.0
                    ),
                    a,
                )
                .target("flat: ≤ 10% growth", b <= a * 1.10),
            );
        } else {
            memory.rows.push(row);
        }
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
