//! `ta-bench load`: realistic traffic into a running edge, at a fixed rate (open loop) or as
//! fast as it answers (closed loop), with single events or batches.
//!
//! Traffic: every site of the sites file (its first API key), pages weighted as [`PAGES`],
//! referrers, UTM-tagged campaign visits (15%), visitors as (IP, real browser UA) pairs, a share
//! of bot user agents (`--bots`, dropped by the edge with a 202), custom events beside
//! pageviews. Sites that require signatures get server-side events signed when they are sent
//! (`X-TA-Timestamp` + `X-TA-Signature`, each body unique, so none is a replay).
//!
//! Reports requests/s, events/s, latency percentiles from an HDR histogram (open loop measures
//! from the scheduled send time: no coordinated omission) and answers by status.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use ta_shared::signature;

use crate::http_load::{self, LoadReport, LoadSpec, Pace, Requests};
use crate::report::{Latency, Row, Section};
use crate::{BOT_USER_AGENTS, BROWSER_USER_AGENTS, CAMPAIGNS, REFERRERS, load_sites, pick_page};

#[derive(Debug, Clone, Parser)]
#[command(name = "load", about = "Realistic traffic into a running edge")]
pub struct Args {
    /// The edge: `host:port` or `http://host:port`.
    #[arg(long, env = "TA_EDGE_URL", default_value = "http://127.0.0.1:8080")]
    edge: String,
    /// Sites file with the sites, keys and signing secrets to use.
    #[arg(
        long,
        env = "TA_SITES_FILE",
        default_value = "deploy/config/sites.dev.toml"
    )]
    sites_file: PathBuf,
    /// Requests per second, all connections together (open loop). Without it, closed loop:
    /// each connection sends its next request when the previous answer arrived.
    #[arg(long)]
    rate: Option<f64>,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Unmeasured warm-up seconds before.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Events per request: 1 sends `POST /v1/collect`, more sends `POST /v1/batch` arrays.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Percent of requests sent with a bot user agent.
    #[arg(long, default_value_t = 3)]
    bots: u32,
    /// Distinct visitors (IP × UA pairs).
    #[arg(long, default_value_t = 20_000)]
    visitors: u32,
    /// Seed of the traffic (same seed, same requests).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Exit non-zero when more than this share of answers was not 2xx (or failed).
    #[arg(long, default_value_t = 0.05)]
    max_error_ratio: f64,
}

/// One site as the generator sends for it.
struct SiteTraffic {
    id: String,
    key: String,
    /// Signing secret, when the site requires signed (server-side) events.
    secret: Option<String>,
}

/// One event body for `site`; `n` makes signed events unique.
fn event(rng: &mut StdRng, site: &str, n: u64, signed: bool) -> serde_json::Value {
    let path = pick_page(rng);
    let mut url = format!("https://{site}.example.com{path}");
    if rng.random_bool(0.15) {
        let (s, m, c) = CAMPAIGNS.choose(rng).expect("campaigns");
        url.push_str(&format!("?utm_source={s}&utm_medium={m}&utm_campaign={c}"));
    }
    let name = if rng.random_bool(0.9) {
        "pageview"
    } else {
        "signup"
    };
    let mut e = json!({
        "site_id": site,
        "event_name": name,
        "url": url,
        "referrer": REFERRERS.choose(rng).expect("referrers"),
        "props": {"plan": if rng.random_bool(0.5) { "free" } else { "pro" }},
    });
    if signed {
        e["user_id"] = format!("user-{}", rng.random_range(0..500)).into();
        e["session_id"] = format!("load-{n}").into();
    }
    e
}

/// Request `n` of the run: a site, a visitor, `batch` events; signed when the site says so.
fn request(
    sites: &[SiteTraffic],
    host: &str,
    seed: u64,
    n: u64,
    batch: usize,
    bots: u32,
    visitors: u32,
) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let site = &sites[rng.random_range(0..sites.len())];
    let visitor = rng.random_range(0..visitors.max(1));
    let ip = format!(
        "10.{}.{}.{}",
        visitor >> 16 & 0xff,
        visitor >> 8 & 0xff,
        visitor & 0xff
    );
    let signed = site.secret.is_some();
    let ua = if !signed && rng.random_range(0..100) < bots {
        BOT_USER_AGENTS.choose(&mut rng).expect("bots")
    } else {
        BROWSER_USER_AGENTS[visitor as usize % BROWSER_USER_AGENTS.len()]
    };
    let (path, body) = if batch <= 1 {
        ("/v1/collect", event(&mut rng, &site.id, n, signed))
    } else {
        let events: Vec<_> = (0..batch)
            .map(|i| event(&mut rng, &site.id, n * batch as u64 + i as u64, signed))
            .collect();
        ("/v1/batch", serde_json::Value::Array(events))
    };
    let body = serde_json::to_vec(&body).expect("json");
    let mut headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-TA-API-Key", site.key.clone()),
        ("User-Agent", ua.to_owned()),
        ("X-Forwarded-For", ip),
    ];
    if let Some(secret) = &site.secret {
        let now = chrono::Utc::now().timestamp();
        headers.push(("X-TA-Timestamp", now.to_string()));
        headers.push((
            "X-TA-Signature",
            signature::sign(secret.as_bytes(), now, &body),
        ));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http_load::post(path, host, &headers, &body)
}

/// The socket address of `--edge` (`host:port` or `http://host:port`).
pub fn resolve(edge: &str) -> anyhow::Result<SocketAddr> {
    let hostport = edge
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    anyhow::ensure!(
        !hostport.contains('/') && !edge.starts_with("https://"),
        "--edge must be host:port or http://host:port (no TLS, no path): {edge}"
    );
    hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .with_context(|| format!("{hostport} resolves to no address"))
}

/// Realistic traffic for an edge, as described in the module docs.
#[derive(Clone)]
pub struct Traffic {
    sites: Arc<Vec<SiteTraffic>>,
    /// Events per request (1: `/v1/collect`, more: `/v1/batch`).
    pub batch: usize,
    /// Percent of requests with a bot user agent.
    pub bots: u32,
    /// Distinct visitors.
    pub visitors: u32,
    pub seed: u64,
}

impl Traffic {
    /// Traffic for every site of `sites_file` with an API key.
    pub fn from_sites_file(sites_file: &std::path::Path) -> anyhow::Result<Self> {
        let registry = load_sites(sites_file)?;
        let sites: Vec<SiteTraffic> = registry
            .ids()
            .into_iter()
            .filter_map(|id| registry.get(id))
            .filter_map(|s| {
                Some(SiteTraffic {
                    id: s.id.clone(),
                    key: s.api_keys.first()?.clone(),
                    secret: s.hmac_secret.clone().filter(|_| s.require_signature),
                })
            })
            .collect();
        anyhow::ensure!(
            !sites.is_empty(),
            "{} has no site with an API key",
            sites_file.display()
        );
        Ok(Self {
            sites: Arc::new(sites),
            batch: 1,
            bots: 3,
            visitors: 20_000,
            seed: 1,
        })
    }

    pub fn sites(&self) -> usize {
        self.sites.len()
    }

    /// The requests for [`LoadSpec::requests`], addressed to `host`: request `n` is built
    /// when it is sent (signatures fresh, bodies unique).
    pub fn requests(&self, host: &str) -> Requests {
        let t = self.clone();
        let host = host.to_owned();
        Requests::Generated(Arc::new(move |n: u64| {
            request(&t.sites, &host, t.seed, n, t.batch, t.bots, t.visitors)
        }))
    }
}

/// Run the load; prints a summary and returns it as a report row.
pub fn run(args: Args) -> anyhow::Result<(LoadReport, Vec<Section>)> {
    anyhow::ensure!((1..=1000).contains(&args.batch), "--batch must be 1..=1000");
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let mut traffic = Traffic::from_sites_file(&args.sites_file)?;
    traffic.batch = args.batch;
    traffic.bots = args.bots;
    traffic.visitors = args.visitors;
    traffic.seed = args.seed;
    let addr = resolve(&args.edge)?;
    let pace = args.rate.map_or(Pace::Closed, Pace::Rate);
    eprintln!(
        "load: {} site(s), {} connections, {}, {} event(s) per request, {}% bots, {} s after {} s warm-up → {addr}",
        traffic.sites(),
        args.connections,
        args.rate.map_or("closed loop".to_owned(), |r| format!(
            "{r:.0} req/s open loop"
        )),
        args.batch,
        args.bots,
        args.seconds,
        args.warmup
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = rt.block_on(http_load::run(
        LoadSpec {
            addr,
            connections: args.connections,
            duration: Duration::from_secs(args.seconds),
            warmup: Duration::from_secs(args.warmup),
            pace,
            requests: traffic.requests(&addr.to_string()),
            events_per_request: args.batch as u64,
            record_ids: false,
            sources: Vec::new(),
        },
        "load",
    ));
    println!(
        "| requests/s | events/s (2xx) | p50 ms | p90 ms | p99 ms | max ms | answers |\n|---:|---:|---:|---:|---:|---:|---|\n| {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        report.requests_per_sec(),
        report.events_per_sec(),
        report.ms(50.0),
        report.ms(90.0),
        report.ms(99.0),
        report.max_ms(),
        report.statuses_text()
    );
    anyhow::ensure!(report.requests > 0, "the edge at {addr} answered nothing");
    anyhow::ensure!(
        report.error_ratio() <= args.max_error_ratio,
        "{:.1}% of answers were errors ({}), more than --max-error-ratio {}",
        report.error_ratio() * 100.0,
        report.statuses_text(),
        args.max_error_ratio
    );
    let section = Section::new(
        "Load generator run",
        format!(
            "{} connections, {}, {} event(s) per request, {} s measured",
            args.connections,
            args.rate.map_or("closed loop".to_owned(), |r| format!(
                "{r:.0} req/s open loop"
            )),
            args.batch,
            args.seconds
        ),
    )
    .row(
        Row::new(
            format!("requests to {addr} ({})", report.statuses_text()),
            report.requests_per_sec(),
            "req/s",
        )
        .latency(Latency::of(&report)),
    )
    .row(Row::new(
        "events in 2xx answers",
        report.events_per_sec(),
        "events/s",
    ));
    Ok((report, vec![section]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites() -> Vec<SiteTraffic> {
        vec![
            SiteTraffic {
                id: "a".into(),
                key: "ka".into(),
                secret: None,
            },
            SiteTraffic {
                id: "b".into(),
                key: "kb".into(),
                secret: Some("s".into()),
            },
        ]
    }

    #[test]
    fn requests_are_deterministic_per_sequence_number_and_signed_ones_unique() {
        let s = sites();
        assert_eq!(
            request(&s, "h", 1, 7, 1, 3, 100),
            request(&s, "h", 1, 7, 1, 3, 100)
        );
        let signed: Vec<Vec<u8>> = (0..200)
            .map(|n| request(&s, "h", 1, n, 1, 3, 100))
            .filter(|r| String::from_utf8_lossy(r).contains("X-TA-Signature"))
            .collect();
        assert!(signed.len() > 50, "both sites are picked");
        let bodies: std::collections::HashSet<_> = signed
            .iter()
            .map(|r| {
                let text = String::from_utf8_lossy(r).into_owned();
                text.split_once("\r\n\r\n").unwrap().1.to_owned()
            })
            .collect();
        assert_eq!(bodies.len(), signed.len(), "no two signed bodies repeat");
    }

    #[test]
    fn batches_are_arrays_of_the_asked_size() {
        let r = String::from_utf8(request(&sites(), "h", 1, 3, 25, 0, 100)).unwrap();
        assert!(r.starts_with("POST /v1/batch HTTP/1.1\r\n"));
        let body: serde_json::Value =
            serde_json::from_str(r.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body.as_array().unwrap().len(), 25);
    }

    #[test]
    fn edge_address_forms() {
        assert_eq!(
            resolve("http://127.0.0.1:8080/").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(resolve("127.0.0.1:9").unwrap().to_string(), "127.0.0.1:9");
        assert!(resolve("https://127.0.0.1:8080").is_err());
        assert!(resolve("http://127.0.0.1:8080/v1").is_err());
    }
}
