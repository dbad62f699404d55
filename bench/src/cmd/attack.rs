//! `ta-bench attack`: the edge under hostile traffic, measured. While legitimate visitors send
//! events at a steady rate, attackers hold hundreds of slowloris connections open and send a
//! closed-loop stream of abusive requests: oversized bodies, gzip bombs, deeply nested and
//! invalid-UTF-8 JSON, wrong keys, header floods, oversized batches, extreme timestamps.
//!
//! Two floods beside it: one address flooding with a site's valid key (the per-address limit
//! answers 429 before reading any body; the site's other visitors keep their 202s) and one
//! address opening thousands of connections (the per-address cap closes all but
//! `TA_EDGE_MAX_CONNECTIONS_PER_ADDRESS`).
//!
//! The legitimate visitors come through a proxy the edge trusts (127.0.0.1, `X-Forwarded-For`
//! naming each visitor); every attacker connects from its own loopback address (127.0.0.9 and
//! up), as a client on the internet would.
//!
//! Reports the edge's peak RSS before and under attack, every abusive answer by status (each
//! must be a 4xx or a closed connection, never a 2xx or 5xx), and the legitimate traffic's
//! latency and answers (each must be a 202).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use tokio::io::AsyncWriteExt;

use super::load::Traffic;
use crate::http_load::{self, LoadSpec, Pace, Requests};
use crate::proc::{Proc, free_port, http_get, metric, sample_rss, wait_http};
use crate::report::{Latency, MEMORY, Row, Section};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "attack",
    about = "The edge under hostile traffic: memory, answers, latency"
)]
pub struct Args {
    /// Seconds of attack.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Slowloris connections held open (each sends half a request head, then nothing).
    #[arg(long, default_value_t = 1000)]
    slowloris: usize,
    /// Connections sending abusive requests back to back.
    #[arg(long, default_value_t = 32)]
    attackers: usize,
    /// Legitimate requests per second during the attack.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Connections of the single-key flood (one address, a valid key, closed loop).
    #[arg(long, default_value_t = 16)]
    key_flooders: usize,
    /// Connections one address tries to open and hold in the connection flood.
    #[arg(long, default_value_t = 2000)]
    connection_flood: usize,
    #[arg(long, default_value = "target/release/ta-edge")]
    edge: PathBuf,
    #[arg(long, default_value = "deploy/config/sites.dev.toml")]
    sites: PathBuf,
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// Where each party connects from (all loopback): the visitors' proxy, then one address per
/// attack. Slowloris and the abusive requests spread over many addresses, as a botnet would,
/// so that they reach the request deadline and the body checks rather than only the
/// per-address limits; the two floods use one address each.
const PROXY: std::net::IpAddr = loopback(0, 1);
const KEY_FLOODER: std::net::IpAddr = loopback(0, 10);
const CONNECTION_FLOODER: std::net::IpAddr = loopback(0, 11);

const fn loopback(c: u8, d: u8) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, c, d))
}

/// `n` loopback addresses in `127.0.<c>.1..`.
fn addresses(c: u8, n: usize) -> Vec<std::net::IpAddr> {
    (0..n).map(|i| loopback(c, (i % 250 + 1) as u8)).collect()
}

/// A valid pageview with site-1's public key, as a page would send it.
fn valid_event(host: &str) -> Vec<u8> {
    http_load::post(
        "/v1/collect",
        host,
        &[
            ("X-TA-API-Key", "dev-key-site-1"),
            ("User-Agent", UA),
            ("Content-Type", "application/json"),
        ],
        br#"{"site_id":"site-1","event_name":"pageview","url":"https://example.com/flood"}"#,
    )
}

/// The abusive requests, each with what it is.
fn abusive(host: &str) -> Vec<(&'static str, Vec<u8>)> {
    let key = [
        ("X-TA-API-Key", "dev-key-site-1"),
        ("User-Agent", UA),
        ("Content-Type", "application/json"),
    ];
    let post =
        |headers: &[(&str, &str)], body: &[u8]| http_load::post("/v1/collect", host, headers, body);
    let event = br#"{"site_id":"site-1","event_name":"pageview","url":"https://example.com/"}"#;
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 64 << 20]).expect("gzip");
    let bomb = bomb.finish().expect("gzip");
    let mut gz_headers = key.to_vec();
    gz_headers.push(("Content-Encoding", "gzip"));
    let mut flood = key.to_vec();
    let names: Vec<String> = (0..300).map(|i| format!("X-Flood-{i}")).collect();
    for n in &names {
        flood.push((n.as_str(), "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"));
    }
    let batch: Vec<&[u8]> = (0..1000).map(|_| &event[..]).collect();
    let batch = format!(
        "[{}]",
        batch
            .iter()
            .map(|e| String::from_utf8_lossy(e))
            .collect::<Vec<_>>()
            .join(",")
    );
    vec![
        ("body over 1 MiB", post(&key, &vec![b' '; (1 << 20) + 10])),
        ("gzip bomb (64 MiB inflated)", post(&gz_headers, &bomb)),
        (
            "JSON nested 100,000 deep",
            post(&key, &vec![b'['; 100_000]),
        ),
        (
            "invalid UTF-8",
            post(&key, b"{\"site_id\":\"site-1\",\"event_name\":\"\xff\xfe\"}"),
        ),
        (
            "wrong key",
            post(
                &[
                    ("X-TA-API-Key", "not-a-key"),
                    ("User-Agent", UA),
                    ("Content-Type", "application/json"),
                ],
                event,
            ),
        ),
        ("300 headers", post(&flood, event)),
        (
            "batch of 1,000",
            http_load::post("/v1/batch", host, &key, batch.as_bytes()),
        ),
        (
            "timestamp in the year 9999",
            post(
                &key,
                br#"{"site_id":"site-1","event_name":"pageview","url":"https://example.com/","ts":253402300799000}"#,
            ),
        ),
    ]
}

/// Run the attack; prints the figures and returns them as report rows.
pub fn run(args: Args) -> anyhow::Result<Vec<Section>> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // The ops listener (/metrics): the attack's figures are read there, off the attacked port.
    let ops: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let spool = tempfile::tempdir()?;
    let edge = Proc::new(
        Command::new(&args.edge)
            .env("TA_EDGE_LISTEN", addr.to_string())
            .env("TA_EDGE_METRICS_LISTEN", ops.to_string())
            .env("TA_DEV", "true")
            .env("TA_SITES_FILE", &args.sites)
            .env("TA_KAFKA_BROKERS", format!("127.0.0.1:{}", free_port()))
            .env("TA_SPOOL_DIR", spool.path())
            // Only the legitimate visitors' proxy is trusted; attackers connect as themselves.
            .env("TA_TRUSTED_PROXIES", "127.0.0.1/32")
            .env(
                "TA_LOG",
                std::env::var("TA_ATTACK_EDGE_LOG").unwrap_or("error".into()),
            )
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_http(addr, "/healthz", Duration::from_secs(30))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let duration = Duration::from_secs(args.seconds);
    let legit_spec = |secs: Duration| LoadSpec {
        addr,
        connections: 16,
        duration: secs,
        warmup: Duration::ZERO,
        pace: Pace::Rate(args.rate),
        requests: Traffic::from_sites_file(&args.sites)
            .map(|mut t| {
                t.bots = 0;
                t.requests(&addr.to_string())
            })
            .expect("sites file"),
        events_per_request: 1,
        record_ids: false,
        sources: vec![PROXY],
    };

    // Baseline: the same legitimate traffic alone.
    let calm = rt.block_on(http_load::run(legit_spec(Duration::from_secs(5)), "calm"));
    let calm_rss = edge.peak_rss();

    let built = std::time::Instant::now();
    let kinds = abusive(&addr.to_string());
    eprintln!(
        "attack: abusive requests built in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let rss = sample_rss(edge.pid(), stop.clone());
    let (legit, bad, flood, held, flood_opened) = rt.block_on(async {
        // Slowloris: half a head each, then silence.
        let mut held = Vec::new();
        let slow_sources = addresses(1, args.slowloris.div_ceil(40));
        for i in 0..args.slowloris {
            let source = slow_sources[i % slow_sources.len()];
            if let Ok(mut s) = http_load::connect_from(addr, Some(source)).await {
                let _ = s
                    .write_all(b"POST /v1/collect HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await;
                held.push(s);
            }
        }
        // The connection flood: one address opens as many as it can and keeps them idle.
        let mut flood_held = Vec::new();
        for _ in 0..args.connection_flood {
            if let Ok(s) = http_load::connect_from(addr, Some(CONNECTION_FLOODER)).await {
                flood_held.push(s);
            }
        }
        let flood_opened = flood_held.len();
        let key_flood = tokio::spawn(http_load::run(
            LoadSpec {
                addr,
                connections: args.key_flooders,
                duration,
                warmup: Duration::ZERO,
                pace: Pace::Closed,
                requests: Requests::Fixed(Arc::new(vec![valid_event(&addr.to_string())])),
                events_per_request: 1,
                record_ids: false,
                sources: vec![KEY_FLOODER],
            },
            "single-key flood",
        ));
        let bad = tokio::spawn(http_load::run(
            LoadSpec {
                addr,
                connections: args.attackers,
                duration,
                warmup: Duration::ZERO,
                pace: Pace::Closed,
                requests: Requests::Fixed(Arc::new(kinds.iter().map(|(_, r)| r.clone()).collect())),
                events_per_request: 1,
                record_ids: false,
                sources: addresses(2, args.attackers),
            },
            "abuse",
        ));
        let legit = http_load::run(legit_spec(duration), "legitimate under attack").await;
        let bad = bad.await.expect("abuse task");
        let flood = key_flood.await.expect("key flood task");
        // While the slowloris connections are still held.
        let during = http_get(ops, "/metrics");
        eprintln!(
            "attack: {} connections open at the end of the attack, {} timed out so far",
            metric(&during, "ta_edge_open_connections").unwrap_or(0.0),
            metric(&during, "ta_edge_connections_timed_out_total").unwrap_or(0.0)
        );
        drop(flood_held);
        (legit, bad, flood, held.len(), flood_opened)
    });
    stop.store(true, Ordering::Relaxed);
    let attack_rss = rss.join().unwrap_or(0);
    let m = http_get(ops, "/metrics");
    let alive = http_get(addr, "/healthz").starts_with("HTTP/1.1 200");
    drop(edge);

    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!(
        "\n{} slowloris connections held, {} attackers, {} legitimate req/s for {} s",
        held, args.attackers, args.rate, args.seconds
    );
    println!(
        "abusive answers: {} (requests cycle through: {})",
        bad.statuses_text(),
        kinds.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
    );
    println!(
        "legitimate: {} answers, p50 {:.2} ms, p99 {:.2} ms (calm: p50 {:.2} ms, p99 {:.2} ms)",
        legit.statuses_text(),
        legit.ms(50.0),
        legit.ms(99.0),
        calm.ms(50.0),
        calm.ms(99.0)
    );
    println!(
        "edge RSS: calm {:.1} MiB, under attack {:.1} MiB; refused connections {}, timed out {}",
        mib(calm_rss),
        mib(attack_rss),
        metric(&m, "ta_edge_connections_refused_total").unwrap_or(0.0),
        metric(&m, "ta_edge_connections_timed_out_total").unwrap_or(0.0)
    );
    let refused_per_address =
        metric(&m, "ta_edge_connections_refused_per_address_total").unwrap_or(0.0) as u64;
    let limited_address = metric(&m, r#"ta_edge_requests_limited_total{limit="address"}"#)
        .or_else(|| {
            m.lines()
                .find(|l| {
                    l.starts_with("ta_edge_requests_limited_total")
                        && l.contains(r#"limit="address""#)
                })
                .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
        })
        .unwrap_or(0.0) as u64;
    let flood_429 = flood.statuses.get(&429).copied().unwrap_or(0);
    let flood_202 = flood.statuses.get(&202).copied().unwrap_or(0);
    println!(
        "single-key flood from one address: {} answers ({:.0} req/s), {} of them 429 before the body was read; \
         {limited_address} requests refused by the per-address limit in all",
        flood.statuses_text(),
        flood.requests_per_sec(),
        flood_429
    );
    println!(
        "connection flood from one address: {flood_opened} connections opened, {refused_per_address} closed at once \
         by the per-address cap"
    );
    anyhow::ensure!(alive, "the edge stopped answering /healthz");
    anyhow::ensure!(
        flood_429 > 0 && flood_202 <= flood_429,
        "the single-key flood was not limited: {}",
        flood.statuses_text()
    );
    anyhow::ensure!(
        refused_per_address > 0,
        "the connection flood was not capped ({flood_opened} opened, none refused)"
    );
    let wrong: u64 = bad
        .statuses
        .iter()
        .filter(|(s, _)| !(400..500).contains(*s))
        .map(|(_, n)| n)
        .sum();
    anyhow::ensure!(
        wrong == 0,
        "abusive requests got non-4xx answers: {}",
        bad.statuses_text()
    );
    anyhow::ensure!(
        legit.statuses.keys().all(|s| *s == 202) && legit.requests > 0,
        "legitimate requests failed under attack: {}",
        legit.statuses_text()
    );
    let section = Section::new(
        "8. Edge under attack",
        format!(
            "{held} slowloris connections held open (from {} addresses), {} connections sending abusive requests back to back \
             from as many addresses ({}), one address flooding with a valid key and one opening {} connections, \
             while legitimate visitors behind a trusted proxy send {} req/s, {} s",
            args.slowloris.div_ceil(40),
            args.attackers,
            kinds.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
            args.connection_flood,
            args.rate,
            args.seconds
        ),
    )
    .row(
        Row::new(format!("abusive requests answered 4xx ({})", bad.statuses_text()), bad.requests_per_sec(), "req/s")
            .latency(Latency::of(&bad))
            .target("every answer 4xx or a closed connection", wrong == 0),
    )
    .row(
        Row::new(
            format!("single-key flood from one address ({}): 429 before the body", flood.statuses_text()),
            flood.requests_per_sec(),
            "req/s",
        )
        .latency(Latency::of(&flood))
        .target("refused with 429, others unaffected", flood_429 > 0 && flood_202 <= flood_429),
    )
    .row(
        Row::new(
            format!("connection flood from one address: {flood_opened} opened, closed at once"),
            refused_per_address as f64,
            "connections",
        )
        .target("all but the per-address cap closed", refused_per_address > 0),
    )
    .row(
        Row::new("legitimate events under attack, all 202", legit.requests_per_sec(), "req/s")
            .latency(Latency::of(&legit)),
    )
    .row(
        Row::new("legitimate events alone (same run, before)", calm.requests_per_sec(), "req/s")
            .latency(Latency::of(&calm)),
    );
    let memory = Section::new(MEMORY, "").row(
        Row::new(
            "ta-edge under attack (sampled every 100 ms)",
            mib(attack_rss),
            "MiB",
        )
        .baseline("calm, same traffic without the attack", mib(calm_rss))
        .target("≤ 100 MB (95.4 MiB)", attack_rss as f64 <= 100e6),
    );
    Ok(vec![section, memory])
}
