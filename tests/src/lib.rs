//! Helpers for end-to-end tests: build and start the real binaries as processes against the
//! real broker and ClickHouse, each test with its own topic, database and ports.

pub mod browser;
pub mod infra;
pub mod mmdb;
pub mod prometheus;
pub mod proxy;
pub mod reconcile;
pub mod tls;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use ta_devsupport::{
    Proc, clickhouse_url, free_port, kafka_brokers, metric_sum, metric_value, tools_dir,
};

/// Root of the workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

static BUILD_EDGE: Once = Once::new();
static BUILD_CENTRAL: Once = Once::new();

/// Path of a workspace binary, building its package once per test run.
pub fn binary(name: &str) -> PathBuf {
    let (once, package) = match name {
        "ta-edge" => (&BUILD_EDGE, "ta-edge"),
        "ta-loader" | "ta-query" => (&BUILD_CENTRAL, "ta-central"),
        other => panic!("unknown service binary {other}"),
    };
    once.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", package, "--bins"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build for the service binaries");
        assert!(status.success(), "building {package} failed");
    });
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(path.exists(), "{} not found after building", path.display());
    path
}

/// Unique name for a test's topic or database: `ta_e2e_<test>_<random>`.
pub fn unique(test: &str) -> String {
    ta_devsupport::unique("ta_e2e", test)
}

/// Where a test keeps its logs and other artifacts.
pub fn artifacts_dir(test: &str) -> PathBuf {
    let dir = workspace_root().join("tests/artifacts").join(test);
    std::fs::create_dir_all(&dir).expect("create artifacts dir");
    dir
}

/// A running service process, killed when dropped.
pub struct Service {
    pub name: String,
    pub log: PathBuf,
    child: Proc,
}

impl Service {
    pub fn start(name: &str, envs: &[(&str, String)], log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log handle");
        // Every edge needs its own ops port: the default (9464) is one per machine.
        assert!(
            name != "ta-edge" || envs.iter().any(|(k, _)| *k == "TA_EDGE_METRICS_LISTEN"),
            "start ta-edge with TA_EDGE_METRICS_LISTEN (a free port): parallel tests share the machine"
        );
        let mut cmd = Command::new(binary(name));
        cmd.current_dir(workspace_root())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // Only what the test sets: no inherited TA_* settings leak in from the shell.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TA_")) {
            cmd.env_remove(k);
        }
        // Development mode: the tests use the shipped development files and salt. A test of
        // the production refusals sets TA_DEV=false.
        cmd.env("TA_DEV", "true");
        // The tests send from 127.0.0.1 at rates no visitor would; the abuse limits have their
        // own tests (edge/tests/it, ta-bench attack). A test may set them.
        cmd.env("TA_ADDRESS_RATE_LIMIT", "0")
            .env("TA_KEY_RATE_LIMIT", "0");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = Proc::new(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("starting {name}: {e}")),
        );
        Self {
            name: name.to_owned(),
            log,
            child,
        }
    }

    /// KiB of the process's memory in transparent huge pages (`AnonHugePages` in
    /// `/proc/<pid>/smaps_rollup`).
    pub fn huge_pages_kib(&self) -> u64 {
        let path = format!("/proc/{}/smaps_rollup", self.child.pid());
        ta_devsupport::proc_kb(&path, "AnonHugePages:")
            .unwrap_or_else(|| panic!("no AnonHugePages in {path}"))
    }

    /// The exit status, once the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait()
    }

    /// Stop with SIGKILL (as a crash would).
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Send SIGTERM and wait up to `within` for the process to exit. Its exit status, or
    /// `None` when it was still running (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.child.terminate(within)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Wait until `url` answers 200 or panic with the service's log.
pub async fn wait_healthy(url: &str, service: &Service, within: Duration) {
    let deadline = Instant::now() + within;
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(res) = client.get(url).send().await
            && res.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} did not become healthy at {url}; log:\n{}",
        service.name,
        service.log_text()
    );
}

/// The body of `GET url`, whatever its status (panics when there is no answer).
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The three services of one pipeline, on their own ports, topic and database.
pub struct Pipeline {
    pub edge: Service,
    pub loader: Service,
    pub query: Service,
    pub edge_url: String,
    /// The edge's ops listener: `/metrics`, `/healthz`, `/readyz`.
    pub edge_metrics_url: String,
    pub query_url: String,
    /// Reads every dev site through ta-query (`Authorization: Bearer`).
    pub query_token: String,
    pub loader_url: String,
    pub topic: String,
    pub database: String,
}

impl Pipeline {
    pub async fn start(test: &str) -> Self {
        Self::start_with_query_env(test, Vec::new()).await
    }

    /// The pipeline, with `query_env` added to ta-query's environment.
    pub async fn start_with_query_env(test: &str, query_env: Vec<(&'static str, String)>) -> Self {
        let dir = artifacts_dir(test);
        let topic = unique(test);
        let database = unique(test);
        // A spool left by an earlier run would replay its events into this run's topic.
        let spool = dir.join("edge-spool");
        let _ = std::fs::remove_dir_all(&spool);
        let (edge_port, loader_port, query_port) = (free_port(), free_port(), free_port());
        let edge_metrics_port = free_port();
        let sites = workspace_root()
            .join("deploy/config/sites.dev.toml")
            .display()
            .to_string();
        let common = vec![
            ("TA_KAFKA_BROKERS", kafka_brokers()),
            ("TA_KAFKA_TOPIC", topic.clone()),
            ("TA_CLICKHOUSE_URL", clickhouse_url()),
            ("TA_CLICKHOUSE_DATABASE", database.clone()),
            ("TA_LOG", "info,rskafka=warn".to_owned()),
        ];
        let with = |extra: Vec<(&'static str, String)>| {
            let mut all = common.clone();
            all.extend(extra);
            all
        };
        let edge = Service::start(
            "ta-edge",
            &with(vec![
                ("TA_EDGE_LISTEN", format!("127.0.0.1:{edge_port}")),
                (
                    "TA_EDGE_METRICS_LISTEN",
                    format!("127.0.0.1:{edge_metrics_port}"),
                ),
                ("TA_SITES_FILE", sites),
                ("TA_TRUST_FORWARDED_FOR", "true".into()),
                ("TA_EDGE_REGION", "e2e".into()),
                ("TA_SPOOL_DIR", spool.display().to_string()),
            ]),
            &dir,
        );
        let loader = Service::start(
            "ta-loader",
            &with(vec![
                ("TA_LOADER_LISTEN", format!("127.0.0.1:{loader_port}")),
                ("TA_LOADER_BATCH_MAX_WAIT_MS", "200".into()),
                ("TA_CLICKHOUSE_USER", "ta_loader".into()),
                // Closed days the tests load (yesterday's events) are rolled up promptly.
                ("TA_ROLLUP_INTERVAL_SECS", "2".into()),
            ]),
            &dir,
        );
        let query = Service::start(
            "ta-query",
            &with(vec![
                ("TA_QUERY_LISTEN", format!("127.0.0.1:{query_port}")),
                ("TA_QUERY_CACHE_RECENT_TTL_MS", "100".into()),
                // Read-only, as deployed (deploy/local/clickhouse/users.xml).
                ("TA_CLICKHOUSE_USER", "ta_query".into()),
                (
                    "TA_QUERY_ACCESS_FILE",
                    workspace_root()
                        .join("deploy/config/access.dev.toml")
                        .display()
                        .to_string(),
                ),
            ])
            .into_iter()
            .chain(query_env)
            .collect::<Vec<_>>(),
            &dir,
        );
        let p = Self {
            edge_url: format!("http://127.0.0.1:{edge_port}"),
            edge_metrics_url: format!("http://127.0.0.1:{edge_metrics_port}"),
            query_url: format!("http://127.0.0.1:{query_port}"),
            query_token: ta_bench::DEV_QUERY_TOKEN.to_owned(),
            loader_url: format!("http://127.0.0.1:{loader_port}"),
            edge,
            loader,
            query,
            topic,
            database,
        };
        wait_healthy(
            &format!("{}/readyz", p.edge_url),
            &p.edge,
            Duration::from_secs(60),
        )
        .await;
        wait_healthy(
            &format!("{}/healthz", p.loader_url),
            &p.loader,
            Duration::from_secs(30),
        )
        .await;
        wait_healthy(
            &format!("{}/healthz", p.query_url),
            &p.query,
            Duration::from_secs(30),
        )
        .await;
        p
    }
}

/// Lowercase hex of `b`: one of the encodings a leak check looks for.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Unpadded standard base64 of `b`: a prefix that any padded or embedded encoding of the same
/// bytes at the same alignment also contains.
pub fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
