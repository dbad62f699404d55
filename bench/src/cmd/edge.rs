//! `ta-bench edge`: the edge's accept path and forwarder against their ceilings, side by side.
//!
//! 1. single-event `POST /v1/collect`, closed loop: null handlers (this executable's `null`
//!    subcommand: tide served as the edge serves it, tide on async-h1, hyper on async-std and
//!    hyper on tokio) vs `ta-edge` (auth,
//!    validation, UA parse, visitor hash, URL/source enrichment, durable spool with
//!    fsync=always);
//! 2. `ta-edge` at half the rate it reached in 1, open loop: latency percentiles;
//! 3. `POST /v1/batch` of 50 events, closed loop: events/s, against the null handlers;
//! 4. forwarder drain: an edge that accepted N events while the broker was unreachable
//!    restarts with the broker up; time until its spool is empty vs a bare rskafka producer
//!    sending the very same records (read back from the topic) in the same shape (per-partition
//!    batches of ≤ 1 MiB, lz4, acks = all, partitions concurrently);
//! 5. peak RSS of `ta-edge` during 1–3.
//!
//! Needs release binaries (`cargo build --release --bins`) and the local broker
//! (`deploy/local/infra up`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http_load::{self, LoadReport, LoadSpec, Pace, Requests};
use crate::proc::{Proc, free_port, http_get, metric, sample_rss, wait_http};
use crate::report::{Latency, MEMORY, Row, Section};
use crate::{BROWSER_USER_AGENTS, PAGES, REFERRERS};
use anyhow::Context;
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::json;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "edge",
    about = "Edge accept path and forwarder vs their baselines, side by side"
)]
pub struct Args {
    /// Measured seconds per throughput scenario (the targets are stated for 60).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Unmeasured warm-up seconds before each scenario.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Concurrent keep-alive connections of the load generator. With fsync=always every answer
    /// waits for a group commit, so throughput is about connections / fsync latency: an edge
    /// serving the public has many clients in flight.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// Run the accept scenarios with the local broker reachable, so the forwarder (and the
    /// broker itself, on this same machine) compete for the CPU. By default the broker address
    /// is unreachable: the edge accepts into its spool exactly as in production, where the
    /// broker runs elsewhere, and the forwarder only backs off.
    #[arg(long)]
    accept_with_broker: bool,
    /// Threads of the load generator's runtime (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Events the forwarder-drain scenario spools and drains.
    #[arg(long, default_value_t = 200_000)]
    drain_events: u64,
    /// A few seconds per scenario and a small drain: checks the harness, not the speed.
    #[arg(long)]
    quick: bool,
    #[arg(long, env = "TA_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "target/release/ta-edge")]
    edge: PathBuf,
    #[arg(long, default_value = "deploy/config/sites.dev.toml")]
    sites: PathBuf,
}

const KEY: &str = "dev-key-site-1";

/// A realistic pageview body.
fn event_json(rng: &mut StdRng) -> serde_json::Value {
    let (page, _) = PAGES.choose(rng).expect("pages");
    let utm = if rng.random_range(0..10) == 0 {
        "?utm_source=newsletter&utm_medium=email&utm_campaign=launch"
    } else {
        ""
    };
    json!({
        "site_id": "site-1",
        "event_name": "pageview",
        "url": format!("https://example.com{page}{utm}"),
        "referrer": REFERRERS.choose(rng).expect("referrers"),
        "props": {"plan": if rng.random_bool(0.5) { "free" } else { "pro" }},
    })
}

fn headers<'a>(ip: &'a str, ua: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("Content-Type", "text/plain"),
        ("X-TA-API-Key", KEY),
        ("User-Agent", ua),
        ("X-Forwarded-For", ip),
    ]
}

/// `count` requests from many visitors (IP × UA) with realistic pages and referrers: one event
/// each for `/v1/collect`, or `batch` events each for `/v1/batch`.
fn requests(host: &str, count: usize, batch: Option<usize>, seed: u64) -> Arc<Vec<Vec<u8>>> {
    let mut rng = StdRng::seed_from_u64(seed);
    Arc::new(
        (0..count)
            .map(|_| {
                let ip = format!(
                    "10.{}.{}.{}",
                    rng.random_range(0..256),
                    rng.random_range(0..256),
                    rng.random_range(1..255)
                );
                let ua = BROWSER_USER_AGENTS.choose(&mut rng).expect("uas");
                let (path, body) = match batch {
                    None => ("/v1/collect", serde_json::to_vec(&event_json(&mut rng))),
                    Some(n) => (
                        "/v1/batch",
                        serde_json::to_vec(
                            &(0..n).map(|_| event_json(&mut rng)).collect::<Vec<_>>(),
                        ),
                    ),
                };
                http_load::post(path, host, &headers(&ip, ua), &body.expect("json"))
            })
            .collect(),
    )
}

fn collect_requests(host: &str) -> Arc<Vec<Vec<u8>>> {
    requests(host, 4096, None, 7)
}

fn batch_requests(host: &str, size: usize) -> Arc<Vec<Vec<u8>>> {
    requests(host, 256, Some(size), 8)
}

struct EdgeOpts<'a> {
    brokers: &'a str,
    topic: &'a str,
    spool: &'a std::path::Path,
}

/// A started edge: the process, its ingest address and its ops (`/metrics`) address.
fn start_edge(args: &Args, opts: &EdgeOpts<'_>) -> anyhow::Result<(Proc, SocketAddr, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let ops: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let child = Command::new(&args.edge)
        .env("TA_EDGE_LISTEN", addr.to_string())
        .env("TA_EDGE_METRICS_LISTEN", ops.to_string())
        .env("TA_EDGE_REGION", "bench")
        .env("TA_DEV", "true")
        .env("TA_SITES_FILE", &args.sites)
        .env("TA_KAFKA_BROKERS", opts.brokers)
        .env("TA_KAFKA_TOPIC", opts.topic)
        .env("TA_SPOOL_DIR", opts.spool)
        .env("TA_SPOOL_MAX_BYTES", (64u64 << 30).to_string())
        .env("TA_TRUST_FORWARDED_FOR", "true")
        .env("TA_SHUTDOWN_DRAIN_SECS", "0")
        .env("TA_KAFKA_PRODUCE_TIMEOUT_SECS", "2")
        // The limiters run (their cost is on the hot path) but never refuse: the benchmark is
        // one key from a few simulated addresses at tens of thousands of requests a second.
        .env("TA_ADDRESS_RATE_LIMIT", "1000000000")
        .env("TA_KEY_RATE_LIMIT", "1000000000")
        .env("TA_SITE_RATE_LIMIT", "1000000000")
        // The broker is unreachable on purpose in the accept scenarios: its retries are not news.
        .env("TA_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (cargo build --release --bins)",
                args.edge.display()
            )
        })?;
    let proc = Proc::new(child);
    wait_http(addr, "/healthz", Duration::from_secs(30))?;
    Ok((proc, addr, ops))
}

fn load(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    pace: Pace,
    requests: Arc<Vec<Vec<u8>>>,
    events: u64,
    label: &str,
) -> LoadReport {
    rt.block_on(http_load::run(
        LoadSpec {
            addr,
            connections: args.connections,
            duration: Duration::from_secs(args.seconds),
            warmup: Duration::from_secs(args.warmup),
            pace,
            requests: Requests::Fixed(requests),
            events_per_request: events,
            record_ids: false,
            sources: Vec::new(),
        },
        label,
    ))
}

/// Every record of `topic`, per partition, in offset order.
async fn fetch_all(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<BTreeMap<i32, Vec<Record>>> {
    let client = ClientBuilder::new(vec![brokers.to_owned()]).build().await?;
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await?;
        let mut offset = 0;
        let mut records = Vec::new();
        loop {
            let (batch, high) = pc.fetch_records(offset, 1..4_000_000, 1_000).await?;
            for r in batch {
                offset = r.offset + 1;
                records.push(r.record);
            }
            if offset >= high {
                break;
            }
        }
        out.insert(p, records);
    }
    Ok(out)
}

/// Produce `records` like the forwarder does: rounds of ≤ `max_bytes` per partition, the
/// partitions of a round concurrently, lz4.
async fn bare_produce(
    brokers: &str,
    topic: &str,
    records: &BTreeMap<i32, Vec<Record>>,
    max_bytes: usize,
) -> anyhow::Result<Duration> {
    let client = ClientBuilder::new(vec![brokers.to_owned()]).build().await?;
    let mut clients = BTreeMap::new();
    for p in records.keys() {
        clients.insert(
            *p,
            client
                .partition_client(topic, *p, UnknownTopicHandling::Retry)
                .await?,
        );
    }
    let started = Instant::now();
    let mut cursors: BTreeMap<i32, usize> = records.keys().map(|p| (*p, 0)).collect();
    loop {
        let mut round = Vec::new();
        for (p, recs) in records {
            let start = cursors[p];
            let mut end = start;
            let mut bytes = 0;
            while end < recs.len()
                && (end == start || bytes + recs[end].approximate_size() <= max_bytes)
            {
                bytes += recs[end].approximate_size();
                end += 1;
            }
            if end > start {
                round.push((*p, recs[start..end].to_vec()));
                cursors.insert(*p, end);
            }
        }
        if round.is_empty() {
            break;
        }
        let results = futures::future::join_all(round.into_iter().map(|(p, batch)| {
            let pc = &clients[&p];
            async move { pc.produce(batch, Compression::Lz4).await }
        }))
        .await;
        for r in results {
            r?;
        }
    }
    Ok(started.elapsed())
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let client = ClientBuilder::new(vec![brokers.to_owned()]).build().await?;
    ta_shared::kafka::ensure_topic(&client, topic, partitions).await?;
    Ok(())
}

struct DrainResult {
    events: u64,
    edge_secs: f64,
    bare_secs: f64,
    records_checked: usize,
}

fn drain_scenario(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    n_events: u64,
) -> anyhow::Result<DrainResult> {
    let spool = tempfile::tempdir()?;
    let suffix: u32 = rand::random();
    let topic = format!("ta_bench_drain_{suffix:08x}");
    let bare_topic = format!("ta_bench_drain_bare_{suffix:08x}");
    rt.block_on(create_topic(&args.brokers, &topic, 3))?;
    rt.block_on(create_topic(&args.brokers, &bare_topic, 3))?;

    // 1. Spool n events while the broker is unreachable.
    let dead = format!("127.0.0.1:{}", free_port());
    let (mut edge, addr, ops) = start_edge(
        args,
        &EdgeOpts {
            brokers: &dead,
            topic: &topic,
            spool: spool.path(),
        },
    )?;
    let requests = batch_requests(&addr.to_string(), 50);
    let sent = Arc::new(AtomicU64::new(0));
    let target = n_events.div_ceil(50);
    rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let requests = requests.clone();
                let sent = sent.clone();
                tokio::spawn(async move {
                    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    let mut buf = Vec::new();
                    let mut k = w;
                    while sent.fetch_add(1, Ordering::Relaxed) < target {
                        use tokio::io::AsyncWriteExt;
                        stream
                            .write_all(&requests[k % requests.len()])
                            .await
                            .expect("write");
                        k += 8;
                        let status = http_load::read_response(&mut stream, &mut buf)
                            .await
                            .expect("read");
                        assert_eq!(status, 202, "spooling with the broker down");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("spooling task");
        }
    });
    let spooled = metric(&http_get(ops, "/metrics"), "ta_edge_spool_events").unwrap_or(0.0) as u64;
    edge.terminate(Duration::from_secs(15));
    anyhow::ensure!(
        spooled == target * 50,
        "spooled {spooled} events, expected {}",
        target * 50
    );

    // 2. Restart with the broker reachable; time until the spool is empty.
    let started = Instant::now();
    let (edge, _addr, ops) = start_edge(
        args,
        &EdgeOpts {
            brokers: &args.brokers,
            topic: &topic,
            spool: spool.path(),
        },
    )?;
    loop {
        let m = http_get(ops, "/metrics");
        if metric(&m, "ta_edge_spool_events") == Some(0.0)
            && metric(&m, "ta_edge_events_produced_total").unwrap_or(0.0) as u64 >= spooled
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the spool did not drain in 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let edge_secs = started.elapsed().as_secs_f64();
    drop(edge);

    // 3. The same records, produced bare.
    let records = rt.block_on(fetch_all(&args.brokers, &topic, 3))?;
    let total: usize = records.values().map(Vec::len).sum();
    anyhow::ensure!(
        total as u64 >= spooled,
        "the topic holds {total} of {spooled} events"
    );
    let bare = rt.block_on(bare_produce(&args.brokers, &bare_topic, &records, 1 << 20))?;
    Ok(DrainResult {
        events: spooled,
        edge_secs,
        bare_secs: bare.as_secs_f64(),
        records_checked: total,
    })
}

fn row(name: &str, r: &LoadReport) -> String {
    format!(
        "| {name} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        r.requests_per_sec(),
        r.events_per_sec(),
        r.ms(50.0),
        r.ms(90.0),
        r.ms(99.0),
        r.max_ms(),
        r.statuses_text()
    )
}

/// Start this executable's `null` subcommand (a null tide or hyper server) on a free port.
fn start_null(server: &str) -> anyhow::Result<(Proc, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let exe = std::env::current_exe()?;
    let null = Proc::new(
        Command::new(&exe)
            .args(["null", "--server", server, "--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} null", exe.display()))?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the null {server} server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((null, addr))
}

/// Null servers measured as the ceiling: (name, single-event report, batch report).
struct Ceiling {
    name: &'static str,
    single: LoadReport,
    batch: LoadReport,
}

/// One row per null server, the ceiling (null hyper on tokio, the last) first, every other as
/// a fraction of it.
fn null_rows(
    ceilings: &[Ceiling],
    what: &str,
    unit: &str,
    rate: fn(&LoadReport) -> f64,
    pick: fn(&Ceiling) -> &LoadReport,
) -> Vec<Row> {
    let Some(hyper) = ceilings.last() else {
        return Vec::new();
    };
    ceilings
        .iter()
        .rev()
        .map(|c| {
            let r = Row::new(format!("{} {what}", c.name), rate(pick(c)), unit)
                .latency(Latency::of(pick(c)));
            if std::ptr::eq(c, hyper) {
                r
            } else {
                r.baseline("null hyper on tokio", rate(pick(hyper)))
            }
        })
        .collect()
}

/// Run the scenarios; prints the detailed tables and returns the rows for the harness report.
pub fn run(mut args: Args) -> anyhow::Result<Vec<Section>> {
    if args.quick {
        args.seconds = args.seconds.min(3);
        args.warmup = 1;
        args.drain_events = args.drain_events.min(5_000);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    eprintln!(
        "edge: {} s per scenario, {} connections, {} client thread(s)",
        args.seconds, args.connections, args.client_threads
    );

    // 1a. The ceilings: the edge's own server stack (tide through hyper) with a null handler,
    // tide on its own codec (async-h1), and null hyper on both runtimes.
    let mut ceilings = Vec::new();
    for (server, name) in [
        ("tide", "null tide"),
        ("tide-h1", "null tide on async-h1"),
        ("hyper-async-std", "null hyper on async-std"),
        ("hyper", "null hyper on tokio"),
    ] {
        let (null, addr) = start_null(server)?;
        let single = load(
            &args,
            &rt,
            addr,
            Pace::Closed,
            collect_requests(&addr.to_string()),
            1,
            &format!("{name}, collect"),
        );
        let batch = load(
            &args,
            &rt,
            addr,
            Pace::Closed,
            batch_requests(&addr.to_string(), 50),
            50,
            &format!("{name}, batch of 50"),
        );
        drop(null);
        ceilings.push(Ceiling {
            name,
            single,
            batch,
        });
    }
    let (null_single, null_batch) = (&ceilings[0].single, &ceilings[0].batch);

    // 1b–3. The edge.
    let spool = tempfile::tempdir()?;
    let topic = format!("ta_bench_edge_{:08x}", rand::random::<u32>());
    rt.block_on(create_topic(&args.brokers, &topic, 3))?;
    let unreachable = format!("127.0.0.1:{}", free_port());
    let accept_brokers = if args.accept_with_broker {
        args.brokers.clone()
    } else {
        unreachable
    };
    let (edge, edge_addr, edge_ops) = start_edge(
        &args,
        &EdgeOpts {
            brokers: &accept_brokers,
            topic: &topic,
            spool: spool.path(),
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let rss = sample_rss(edge.pid(), stop.clone());
    let edge_single = load(
        &args,
        &rt,
        edge_addr,
        Pace::Closed,
        collect_requests(&edge_addr.to_string()),
        1,
        "ta-edge, collect",
    );
    let half = edge_single.requests_per_sec() / 2.0;
    let edge_half = load(
        &args,
        &rt,
        edge_addr,
        Pace::Rate(half),
        collect_requests(&edge_addr.to_string()),
        1,
        "ta-edge, collect at half rate",
    );
    let edge_batch = load(
        &args,
        &rt,
        edge_addr,
        Pace::Closed,
        batch_requests(&edge_addr.to_string(), 50),
        50,
        "ta-edge, batch of 50",
    );
    stop.store(true, Ordering::Relaxed);
    let peak_rss = rss.join().unwrap_or(0);
    let m = http_get(edge_ops, "/metrics");
    let fsyncs = metric(&m, "ta_edge_spool_fsync_duration_seconds_count").unwrap_or(0.0);
    let accepted = metric(&m, "ta_edge_events_accepted_total").unwrap_or(0.0);
    drop(edge);

    // 4. Forwarder drain vs bare producer.
    eprintln!(
        "  forwarder drain: spooling {} events with the broker unreachable, then draining",
        args.drain_events
    );
    let drain = drain_scenario(&args, &rt, args.drain_events)?;

    let drain_rate = drain.events as f64 / drain.edge_secs;
    let bare_rate = drain.records_checked as f64 / drain.bare_secs;
    let broker_state = if args.accept_with_broker {
        "reachable: forwarding concurrently"
    } else {
        "unreachable: spool only"
    };
    println!(
        "\n### Edge accept path ({} s measured per row, {} connections, load generator on {} thread(s) of the same 2-core machine, broker {broker_state})\n",
        args.seconds, args.connections, args.client_threads,
    );
    println!("| scenario | requests/s | events/s | p50 ms | p90 ms | p99 ms | max ms | answers |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for c in &ceilings {
        println!(
            "{}",
            row(
                &format!("{} handler, single event (ceiling)", c.name),
                &c.single
            )
        );
    }
    println!(
        "{}",
        row("**ta-edge `/v1/collect`**, closed loop", &edge_single)
    );
    println!(
        "{}",
        row(
            &format!("ta-edge `/v1/collect` at half rate ({half:.0}/s), open loop"),
            &edge_half
        )
    );
    for c in &ceilings {
        println!(
            "{}",
            row(
                &format!("{} handler, batch of 50 (ceiling)", c.name),
                &c.batch
            )
        );
    }
    println!(
        "{}",
        row("**ta-edge `/v1/batch`** of 50, closed loop", &edge_batch)
    );
    println!(
        "\nspool fsyncs per accepted event: {:.3}",
        fsyncs / accepted.max(1.0)
    );

    if args.quick {
        // A smoke check of the harness: every scenario produced answers and they were 2xx.
        let mut checked = vec![
            ("edge", &edge_single),
            ("edge half", &edge_half),
            ("edge batch", &edge_batch),
        ];
        for c in &ceilings {
            checked.push((c.name, &c.single));
            checked.push((c.name, &c.batch));
        }
        for (name, r) in checked {
            anyhow::ensure!(r.requests > 0, "{name}: no answers");
            anyhow::ensure!(
                r.error_ratio() < 0.01,
                "{name}: {} errors",
                r.statuses_text()
            );
        }
        anyhow::ensure!(
            drain.events > 0 && drain.records_checked as u64 >= drain.events,
            "drain scenario lost events"
        );
    }

    let setup = format!(
        "{} s measured per row after {} s warm-up, {} keep-alive connections, load generator on {} thread(s) of the same machine, \
         realistic pageviews (pages, referrers, UTM, 8 browser UAs, many IPs), broker {broker_state}, spool fsync=always.",
        args.seconds, args.warmup, args.connections, args.client_threads
    );
    let hyper = &ceilings[3];
    let mut accept = Section::new("1. Edge accept path vs null handlers", setup);
    for r in null_rows(
        &ceilings,
        "`/v1/collect`",
        "req/s",
        LoadReport::requests_per_sec,
        |c| &c.single,
    ) {
        accept = accept.row(r);
    }
    let of_hyper = edge_single.requests_per_sec() / hyper.single.requests_per_sec();
    accept = accept
        .row(
            Row::new(
                "**ta-edge `/v1/collect`**, closed loop",
                edge_single.requests_per_sec(),
                "req/s",
            )
            .baseline("null hyper on tokio", hyper.single.requests_per_sec())
            .latency(Latency::of(&edge_single))
            .target("≥ 50% of null hyper on tokio", of_hyper >= 0.5),
        )
        .row(
            Row::new(
                "ta-edge `/v1/collect` vs the same stack's null handler",
                edge_single.requests_per_sec(),
                "req/s",
            )
            .baseline("null tide", null_single.requests_per_sec()),
        )
        .row(
            Row::new(
                format!("ta-edge `/v1/collect` at half load ({half:.0}/s), open loop"),
                edge_half.requests_per_sec(),
                "req/s",
            )
            .latency(Latency::of(&edge_half))
            .target("p99 ≤ 10 ms", edge_half.ms(99.0) <= 10.0),
        );
    for r in null_rows(
        &ceilings,
        "`/v1/batch` of 50",
        "events/s",
        LoadReport::events_per_sec,
        |c| &c.batch,
    ) {
        accept = accept.row(r);
    }
    let batch_ratio = edge_batch.events_per_sec() / null_batch.events_per_sec();
    accept = accept.row(
        Row::new(
            "**ta-edge `/v1/batch`** of 50, closed loop",
            edge_batch.events_per_sec(),
            "events/s",
        )
        .baseline("null tide", null_batch.events_per_sec())
        .latency(Latency::of(&edge_batch))
        .target("≥ 30% of null tide", batch_ratio >= 0.3),
    );
    let forward = Section::new(
        "2. Forwarder drain vs a bare rskafka producer",
        format!(
            "{} events spooled while the broker was unreachable, then drained (lz4, acks=all, ≤ 1 MiB per partition batch); \
             the bare producer sends the very same records read back from the topic, in the same shape.",
            drain.events
        ),
    )
    .row(
        Row::new("**ta-edge forwarder** spool → broker", drain_rate, "events/s")
            .baseline("bare rskafka producer", bare_rate)
            .target("≥ 80% of bare", drain_rate >= 0.8 * bare_rate),
    );
    let memory = Section::new(MEMORY, "").row(
        Row::new(
            "ta-edge under scenario 1 (sampled every 100 ms)",
            peak_rss as f64 / (1u64 << 20) as f64,
            "MiB",
        )
        .target("≤ 100 MB (95.4 MiB)", (peak_rss as f64) <= 100e6),
    );
    Ok(vec![accept, forward, memory])
}
