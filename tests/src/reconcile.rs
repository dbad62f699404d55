//! Steady load from the bench load generator (`ta_bench::cmd::load::Traffic` over
//! `ta_bench::http_load`, open loop) with the `event_id` of every 202 kept, and the exact
//! reconciliation of those ids against what ClickHouse holds.
//!
//! The edge assigns event ids, so a request whose answer was lost (the edge killed mid-request)
//! may have been stored without the client ever learning its id: those show up as
//! "loaded, never acknowledged" and must not outnumber the requests left without an answer.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use ta_bench::cmd::load::{Traffic, resolve};
use ta_bench::http_load::{self, LoadReport, LoadSpec, Pace};

use crate::infra::{clickhouse_number, clickhouse_text};
use crate::workspace_root;

/// Load running in a thread of its own (its own runtime), until its duration is over.
pub struct SteadyLoad {
    handle: std::thread::JoinHandle<LoadReport>,
    pub events_per_request: u64,
}

impl SteadyLoad {
    /// `rate` requests/s for `duration` into the edge at `edge_url`: the dev sites (browser
    /// events, 3% bots, signed server events for the site that requires them), `batch`
    /// events per request.
    pub fn start(edge_url: &str, rate: f64, duration: Duration, batch: usize) -> Self {
        let addr = resolve(edge_url).expect("edge address");
        let mut traffic =
            Traffic::from_sites_file(&workspace_root().join("deploy/config/sites.dev.toml"))
                .expect("dev sites");
        traffic.batch = batch;
        traffic.seed = rand::random();
        let spec = LoadSpec {
            addr,
            connections: 8,
            duration,
            warmup: Duration::ZERO,
            pace: Pace::Rate(rate),
            requests: traffic.requests(&addr.to_string()),
            events_per_request: batch as u64,
            record_ids: true,
            sources: Vec::new(),
        };
        let handle = std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
                .block_on(http_load::run(spec, "steady load"))
        });
        Self {
            handle,
            events_per_request: batch as u64,
        }
    }

    /// Wait for the end of the run.
    pub fn finish(self) -> LoadReport {
        self.handle.join().expect("load thread")
    }
}

/// One scenario's books.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub scenario: String,
    /// Requests answered (any status) and requests left without an answer.
    pub requests_answered: u64,
    pub requests_unanswered: u64,
    /// Events in the answered and unanswered requests.
    pub events_sent: u64,
    /// Distinct event ids in 202 answers.
    pub acknowledged: u64,
    /// Rows in ClickHouse.
    pub loaded_rows: u64,
    /// Acknowledged ids missing from ClickHouse.
    pub lost: u64,
    /// Rows beyond the first for any id.
    pub duplicated: u64,
    /// Ids in ClickHouse no answer acknowledged (accepted while the answer was cut).
    pub loaded_unacknowledged: u64,
    /// Answers by status.
    pub statuses: HashMap<u16, u64>,
    pub events_per_request: u64,
}

impl Reconciliation {
    /// A markdown table row: scenario, sent, acknowledged, loaded, lost, duplicated.
    pub fn markdown_row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.events_sent,
            self.acknowledged,
            self.loaded_rows,
            self.lost,
            self.duplicated,
            self.loaded_unacknowledged
        )
    }
}

/// Wait until ClickHouse holds every acknowledged event (or `within` passes) and the row
/// count has been still for 3 s, then compare ids exactly. Writes the result to
/// `target/test-artifacts/reconcile/<scenario>.json`.
pub async fn reconcile(
    scenario: &str,
    ch: &str,
    db: &str,
    report: &LoadReport,
    events_per_request: u64,
    within: Duration,
) -> Reconciliation {
    let acked: HashSet<&str> = report.accepted_ids.iter().map(String::as_str).collect();
    assert_eq!(
        acked.len(),
        report.accepted_ids.len(),
        "the edge never gives two events one id"
    );
    let deadline = Instant::now() + within;
    let (mut last, mut still_since) = (u64::MAX, Instant::now());
    loop {
        let rows = clickhouse_number(ch, db, "SELECT count() FROM events")
            .await
            .unwrap_or(0);
        if rows != last {
            (last, still_since) = (rows, Instant::now());
        }
        let settled = still_since.elapsed() >= Duration::from_secs(3);
        if (rows >= acked.len() as u64 && settled) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let text = clickhouse_text(
        ch,
        db,
        "SELECT toString(event_id), count() FROM events GROUP BY event_id FORMAT TabSeparated",
    )
    .await
    .expect("reading event ids");
    let mut loaded: HashMap<&str, u64> = HashMap::new();
    for line in text.lines() {
        let (id, n) = line.split_once('\t').expect("id\tcount");
        loaded.insert(id, n.parse().unwrap());
    }
    let lost = acked.iter().filter(|id| !loaded.contains_key(*id)).count() as u64;
    let duplicated = loaded.values().map(|n| n - 1).sum();
    let loaded_unacknowledged = loaded.keys().filter(|id| !acked.contains(*id)).count() as u64;
    let answered: u64 = report.statuses.values().sum();
    let r = Reconciliation {
        scenario: scenario.to_owned(),
        requests_answered: answered,
        requests_unanswered: report.unanswered,
        events_sent: (answered + report.unanswered) * events_per_request,
        acknowledged: acked.len() as u64,
        loaded_rows: loaded.values().sum(),
        lost,
        duplicated,
        loaded_unacknowledged,
        statuses: report.statuses.iter().map(|(k, v)| (*k, *v)).collect(),
        events_per_request,
    };
    let dir: PathBuf = workspace_root().join("target/test-artifacts/reconcile");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{scenario}.json")),
        serde_json::to_vec_pretty(&r).unwrap(),
    )
    .unwrap();
    eprintln!("{}", r.markdown_row());
    r
}

/// The invariants every scenario ends with: nothing acknowledged lost, nothing stored twice,
/// nothing stored that no request could have sent.
pub fn assert_exact(r: &Reconciliation) {
    assert!(r.acknowledged > 0, "{r:?}");
    assert_eq!(r.lost, 0, "acknowledged events lost: {r:?}");
    assert_eq!(r.duplicated, 0, "events stored twice: {r:?}");
    assert!(
        r.loaded_unacknowledged <= r.requests_unanswered * r.events_per_request,
        "events stored that no answer acknowledged, beyond the requests whose answer was cut: {r:?}"
    );
}
