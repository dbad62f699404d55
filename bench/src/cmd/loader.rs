//! `ta-bench loader`: ta-loader against its neighbours' ceilings, side by side, same data.
//!
//! 1. produce N enriched events to a fresh topic (the broker's produce ceiling);
//! 2. baseline A: a bare rskafka fetch loop reading the whole topic, partitions concurrently;
//! 3. baseline B: `clickhouse-client` inserting the same rows natively (TabSeparated) into a
//!    fresh copy of the schema;
//! 4. ta-loader (release build, as a process) loading the topic into a fresh database, timed
//!    until every row is visible; its CPU time (utime+stime) and peak RSS (VmHWM) from /proc.
//!
//! Prints a table; the README quotes it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use ta_central::store::{EVENT_COLUMNS, EventRow, SourcePosition};
use ta_shared::{EnrichedEvent, SCHEMA_VERSION};

use crate::report::{MEMORY, Row, Section};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "loader",
    about = "ta-loader against a bare fetch and a native clickhouse-client insert"
)]
pub struct Args {
    /// Events in the topic.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Topic partitions.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[arg(long, env = "TA_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(
        long,
        env = "TA_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse: String,
    /// Native port of the same ClickHouse, for clickhouse-client.
    #[arg(long, env = "TA_CLICKHOUSE_TCP_PORT", default_value_t = 9000)]
    clickhouse_tcp_port: u16,
    /// The ta-loader binary to measure. Repeat it to measure several builds side by side on
    /// the same topic (e.g. a baseline and a candidate), each into its own fresh database.
    #[arg(long, default_value = "target/release/ta-loader")]
    loader: Vec<PathBuf>,
    /// Load the topic this many times with each `--loader`, alternating between them.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Loader processes per load. More than one shares the partitions through leases, so
    /// `TA_ZOOKEEPER` must be set (the children inherit the environment, as they do
    /// `TA_CLICKHOUSE_CLUSTER` for cluster mode). CPU is summed, peak RSS is the largest.
    #[arg(long, default_value_t = 1)]
    loaders: u32,
}

/// One ta-loader run: wall seconds until every row was visible, CPU seconds, peak RSS.
struct LoaderRun {
    loader: usize,
    /// The bare fetch loop measured right before this round, on the same topic: the machine is
    /// shared, so each load is compared with the baseline of its own moment.
    fetch_secs: f64,
    secs: f64,
    cpu_secs: f64,
    peak_rss: u64,
}

/// Load `topic` with `loader` into the fresh database `db`, timed until all `n` rows are
/// visible; checks the load was exact (n rows, n distinct ids), then drops the database.
async fn run_loader(
    args: &Args,
    loader: &std::path::Path,
    topic: &str,
    db: &str,
    n: u64,
) -> anyhow::Result<(f64, f64, u64)> {
    anyhow::ensure!(
        args.loaders <= 1 || std::env::var_os("TA_ZOOKEEPER").is_some(),
        "--loaders {} needs TA_ZOOKEEPER (leases)",
        args.loaders
    );
    let mut children = Vec::new();
    for _ in 0..args.loaders.max(1) {
        children.push(
            Command::new(loader)
                .env("TA_KAFKA_BROKERS", &args.brokers)
                .env("TA_KAFKA_TOPIC", topic)
                .env("TA_CLICKHOUSE_URL", &args.clickhouse)
                .env("TA_CLICKHOUSE_DATABASE", db)
                .env("TA_LOADER_LISTEN", "127.0.0.1:0")
                .env("TA_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()?,
        );
    }
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let usage = || -> anyhow::Result<(f64, u64)> {
        let mut total = (0.0, 0);
        for pid in &pids {
            let (cpu, rss) = proc_usage(*pid)?;
            total = (total.0 + cpu, total.1.max(rss));
        }
        Ok(total)
    };
    let started = Instant::now();
    let mut last = (0.0, 0);
    let loaded = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = usage().unwrap_or(last);
        let rows: u64 = ch_query(&args.clickhouse, Some(db), "SELECT count() FROM events")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if rows >= n || started.elapsed() > Duration::from_secs(600) {
            break rows;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let (cpu_secs, peak_rss) = usage().unwrap_or(last);
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    anyhow::ensure!(
        loaded == n,
        "{} stored {loaded} of {n} within 600 s",
        loader.display()
    );
    let distinct: u64 = ch_query(
        &args.clickhouse,
        Some(db),
        "SELECT uniqExact(event_id) FROM events",
    )?
    .trim()
    .parse()?;
    anyhow::ensure!(
        distinct == n,
        "{} stored duplicates: {distinct} distinct of {loaded}",
        loader.display()
    );
    let _ = ch_query(
        &args.clickhouse,
        None,
        &format!("DROP DATABASE IF EXISTS {db}"),
    );
    Ok((secs, cpu_secs, peak_rss))
}

fn event(i: u64, now_ms: i64) -> EnrichedEvent {
    let pages = [
        "/",
        "/pricing",
        "/blog/hello-world",
        "/docs/getting-started",
        "/about",
        "/signup",
    ];
    EnrichedEvent {
        v: SCHEMA_VERSION,
        event_id: uuid::Uuid::now_v7(),
        site_id: format!("site-{}", i % 3 + 1),
        event_name: if i.is_multiple_of(10) {
            "signup".into()
        } else {
            "pageview".into()
        },
        ts_ms: now_ms - (i % 3600) as i64 * 1000,
        received_ms: now_ms,
        visitor_hash: i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 50_000,
        session_id: format!("sess-{}", i % 20_000),
        url: format!(
            "https://site-{}.example.com{}?utm_source=newsletter",
            i % 3 + 1,
            pages[(i % 6) as usize]
        ),
        host: format!("site-{}.example.com", i % 3 + 1),
        path: pages[(i % 6) as usize].into(),
        referrer: "https://www.google.com/".into(),
        referrer_host: "google.com".into(),
        utm_source: "newsletter".into(),
        utm_medium: "email".into(),
        utm_campaign: "bf".into(),
        channel: "direct".into(),
        browser: "Chrome".into(),
        browser_version: "120".into(),
        os: "Windows 10".into(),
        os_version: "NT 10.0".into(),
        device: "desktop".into(),
        country: "DE".into(),
        edge_region: "bench".into(),
        props: BTreeMap::from([("plan".into(), "pro".into())]),
        ..EnrichedEvent::default()
    }
}

/// Run `sql` over ClickHouse's HTTP interface with curl (so the benchmark's own process
/// stays out of the measured paths).
fn ch_query(url: &str, database: Option<&str>, sql: &str) -> anyhow::Result<String> {
    // `in_order`: on a cluster, read the replica each shard's insert went to (the loader and
    // the native insert use it too), not one that may not have replicated the rows yet.
    let target = match database {
        Some(db) => format!("{url}/?load_balancing=in_order&database={db}"),
        None => format!("{url}/?load_balancing=in_order"),
    };
    let mut child = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--data-binary", "@-", &target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(sql.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "ClickHouse refused `{sql}`: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// (user+sys CPU seconds, peak RSS bytes) of a running process.
fn proc_usage(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let hz = 100.0; // USER_HZ is 100 on Linux x86_64 and aarch64
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM")?;
    Ok((ticks / hz, hwm_kb * 1024))
}

fn tsv_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

/// The row the loader would write for `e`, as a `TabSeparated` line in the order of
/// [`EVENT_COLUMNS`]: each column's value from the row's serde form.
fn tsv_row(e: &EnrichedEvent, partition: u32, offset: u64, topic: &str) -> anyhow::Result<String> {
    let pos = SourcePosition {
        topic,
        partition,
        offset,
    };
    let row = serde_json::to_value(EventRow::from_event(e.clone(), pos)?)?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let columns: Vec<String> = EVENT_COLUMNS
        .split(',')
        .map(|column| match &row[column] {
            serde_json::Value::Array(items) => {
                let items: Vec<String> = items.iter().map(|v| format!("'{}'", text(v))).collect();
                format!("[{}]", items.join(","))
            }
            v => text(v),
        })
        .map(|c: String| tsv_escape(&c))
        .collect();
    Ok(columns.join("\t"))
}

/// Read the whole topic with a bare rskafka fetch loop, partitions concurrently; seconds taken.
async fn bare_fetch(
    client: &rskafka::client::Client,
    topic: &str,
    partitions: i32,
    n: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut fetches = Vec::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await?;
        fetches.push(tokio::spawn(async move {
            let end = pc.get_offset(OffsetAt::Latest).await?;
            let (mut offset, mut count) = (0i64, 0u64);
            while offset < end {
                let (records, _) = pc.fetch_records(offset, 1..4 << 20, 200).await?;
                for r in records.iter().filter(|r| r.offset >= offset) {
                    std::hint::black_box(&r.record.value);
                    count += 1;
                }
                offset = records.last().map_or(offset, |r| r.offset + 1);
            }
            anyhow::Ok(count)
        }));
    }
    let mut fetched = 0;
    for f in fetches {
        fetched += f.await??;
    }
    anyhow::ensure!(fetched == n, "bare fetch read {fetched} of {n} records");
    Ok(started.elapsed().as_secs_f64())
}

/// Run the benchmark; prints the detailed tables and returns the rows for the harness report.
pub async fn run(args: Args) -> anyhow::Result<Vec<Section>> {
    for loader in &args.loader {
        anyhow::ensure!(
            loader.exists(),
            "{} not found: run `cargo build --release --bins` first",
            loader.display()
        );
    }
    let run = format!("{:08x}", rand::random::<u32>());
    let topic = format!("ta_bench_loader_{run}");
    let n = args.events;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let events: Vec<EnrichedEvent> = (0..n).map(|i| event(i, now_ms)).collect();
    let avg_bytes = events
        .iter()
        .take(1000)
        .map(|e| e.to_json().len())
        .sum::<usize>()
        / 1000.min(n as usize).max(1);
    println!(
        "bench-loader: {n} events (~{avg_bytes} B JSON each), {} partitions, topic {topic}",
        args.partitions
    );

    // 1. Produce (the broker's produce ceiling, 1000-record batches).
    let client = ClientBuilder::new(vec![args.brokers.clone()])
        .build()
        .await?;
    ta_shared::kafka::ensure_topic(&client, &topic, args.partitions).await?;
    let mut per: Vec<Vec<Record>> = vec![Vec::new(); args.partitions as usize];
    for e in &events {
        per[e.partition_for(args.partitions) as usize].push(Record {
            key: Some(e.kafka_key()),
            value: Some(e.to_json()),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        });
    }
    let started = Instant::now();
    let mut produces = Vec::new();
    for (p, records) in per.into_iter().enumerate() {
        let pc = client
            .partition_client(&topic, p as i32, UnknownTopicHandling::Retry)
            .await?;
        produces.push(tokio::spawn(async move {
            for chunk in records.chunks(1000) {
                pc.produce(chunk.to_vec(), Compression::NoCompression)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for p in produces {
        p.await??;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    println!("bench-loader: produced in {produce_secs:.1}s");

    // 2. Bare fetch loop (this process's CPU is measured around it).
    let (self_cpu_before, _) = proc_usage(std::process::id())?;
    let fetch_secs = bare_fetch(&client, &topic, args.partitions, n).await?;
    let fetch_cpu = proc_usage(std::process::id())?.0 - self_cpu_before;
    println!("bench-loader: bare fetch in {fetch_secs:.1}s");

    // 3. Native insert of the same rows with clickhouse-client.
    let native_db = format!("ta_bench_native_{run}");
    // The loader creates its schema; copy its DDL for the native baseline afterwards.
    let status = Command::new(&args.loader[0])
        .arg("migrate")
        .env("TA_CLICKHOUSE_URL", &args.clickhouse)
        .env("TA_CLICKHOUSE_DATABASE", &native_db)
        .env("TA_LOG", "warn")
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "ta-loader migrate failed");
    let tsv_path = std::env::temp_dir().join(format!("ta_bench_{run}.tsv"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tsv_path)?);
        for (i, e) in events.iter().enumerate() {
            writeln!(
                f,
                "{}",
                tsv_row(e, e.partition_for(args.partitions) as u32, i as u64, &topic)?
            )?;
        }
    }
    let started = Instant::now();
    let out = Command::new("clickhouse-client")
        // On a cluster the native insert goes through the Distributed table too; synchronous,
        // so it is timed until stored, as the loader's are.
        .args([
            "--port",
            &args.clickhouse_tcp_port.to_string(),
            "--insert_distributed_sync=1",
            "--load_balancing=in_order",
            "--query",
        ])
        .arg(format!(
            "INSERT INTO {native_db}.events ({}) FORMAT TabSeparated",
            *EVENT_COLUMNS
        ))
        .stdin(std::fs::File::open(&tsv_path)?)
        .output()?;
    let native_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "clickhouse-client insert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let native_rows: u64 = ch_query(
        &args.clickhouse,
        Some(&native_db),
        "SELECT count() FROM events",
    )?
    .trim()
    .parse()?;
    anyhow::ensure!(
        native_rows == n,
        "native insert stored {native_rows} of {n}"
    );
    let _ = std::fs::remove_file(&tsv_path);
    println!("bench-loader: clickhouse-client native insert in {native_secs:.1}s");

    // 4. ta-loader, each build in turn, each into a fresh database.
    let _ = ch_query(
        &args.clickhouse,
        None,
        &format!("DROP DATABASE IF EXISTS {native_db}"),
    );
    let mut runs = Vec::new();
    for round in 0..args.rounds.max(1) {
        let round_fetch_secs = if round == 0 {
            fetch_secs
        } else {
            let secs = bare_fetch(&client, &topic, args.partitions, n).await?;
            println!("bench-loader: round {round} bare fetch in {secs:.1}s");
            secs
        };
        for (i, loader) in args.loader.iter().enumerate() {
            let db = format!("ta_bench_loader_{run}_{round}_{i}");
            let (secs, cpu_secs, peak_rss) = run_loader(&args, loader, &topic, &db, n).await?;
            println!(
                "bench-loader: round {round} {}: {secs:.1}s, {:.2} µs/event",
                loader.display(),
                cpu_secs * 1e6 / n as f64
            );
            runs.push(LoaderRun {
                loader: i,
                fetch_secs: round_fetch_secs,
                secs,
                cpu_secs,
                peak_rss,
            });
        }
    }
    // The topic is left in place: tansu 0.6 can panic its storage task when a topic is
    // deleted while any client still fetches from it, which takes the whole broker down.

    let rate = |secs: f64| n as f64 / secs;
    println!();
    println!("| path | events | seconds | events/s | vs slower baseline |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| broker produce (rskafka, 1000-record batches) | {n} | {produce_secs:.2} | {:.0} | |",
        rate(produce_secs)
    );
    println!(
        "| baseline A: bare rskafka fetch loop | {n} | {fetch_secs:.2} | {:.0} | |",
        rate(fetch_secs)
    );
    println!(
        "| baseline B: clickhouse-client native insert | {n} | {native_secs:.2} | {:.0} | |",
        rate(native_secs)
    );
    for r in &runs {
        let ceiling = rate(r.fetch_secs).min(rate(native_secs));
        println!(
            "| **ta-loader** `{}` (fetch + decode + insert, exactly once; bare fetch of its round {:.0}/s) | {n} | {:.2} | {:.0} | **{:.0}%** |",
            args.loader[r.loader].display(),
            rate(r.fetch_secs),
            r.secs,
            rate(r.secs),
            100.0 * rate(r.secs) / ceiling
        );
    }
    println!();
    println!("| ta-loader | CPU user+sys | µs/event | peak RSS (VmHWM) |");
    println!("|---|---:|---:|---:|");
    for r in &runs {
        println!(
            "| `{}` | {:.2} s | **{:.2}** | {:.1} MiB |",
            args.loader[r.loader].display(),
            r.cpu_secs,
            r.cpu_secs * 1e6 / n as f64,
            r.peak_rss as f64 / (1024.0 * 1024.0)
        );
    }
    println!();
    println!(
        "bare fetch loop CPU (rskafka fetch + record decode only): {fetch_cpu:.2} s = {:.2} µs/event",
        fetch_cpu * 1e6 / n as f64
    );
    println!(
        "(loader time includes its start-up, schema migration and polling granularity of 100 ms)"
    );
    let native_rate = rate(native_secs);
    let mut section = Section::new(
        "3. Loader: topic → ClickHouse vs its neighbours' ceilings",
        format!(
            "{n} enriched events (~{avg_bytes} B JSON) in {} partitions; ta-loader (release, as a process) timed until every row is visible and checked exact (n rows, n distinct ids); compared with the slower of a bare rskafka fetch loop over the same topic (re-measured before each round) and clickhouse-client inserting the same rows natively.",
            args.partitions
        ),
    )
    .row(Row::new("baseline: clickhouse-client native insert (TabSeparated)", native_rate, "events/s"));
    let mut memory = Section::new(MEMORY, "");
    for (i, r) in runs.iter().enumerate() {
        let (base_name, base) = if rate(r.fetch_secs) <= native_rate {
            ("bare rskafka fetch", rate(r.fetch_secs))
        } else {
            ("clickhouse-client insert", native_rate)
        };
        let name = if args.loader.len() > 1 {
            format!("`{}`", args.loader[r.loader].display())
        } else {
            "ta-loader".to_owned()
        };
        let us = r.cpu_secs * 1e6 / n as f64;
        section.rows.push(
            Row::new(format!("**{name}** load {i}"), rate(r.secs), "events/s")
                .baseline(base_name, base)
                .target("≥ 70% of the slower baseline", rate(r.secs) >= 0.7 * base),
        );
        section.rows.push(
            Row::new(
                format!(
                    "{name} load {i}: CPU per event, user+sys (bare fetch loop alone: {:.2} µs)",
                    fetch_cpu * 1e6 / n as f64
                ),
                us,
                "µs",
            )
            .target("≤ 5 µs", us <= 5.0),
        );
        memory.rows.push(Row::new(
            format!("{name} under scenario 3, load {i} (VmHWM)"),
            r.peak_rss as f64 / (1024.0 * 1024.0),
            "MiB",
        ));
    }
    Ok(vec![section, memory])
}
