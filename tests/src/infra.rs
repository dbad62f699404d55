//! Private instances of the broker and ClickHouse for fault tests: a test may stop, kill and
//! restart them without disturbing the shared infrastructure other tests use.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use ta_shared::EnrichedEvent;

use ta_devsupport::{Proc, wait_until};

use crate::{free_port, workspace_root};

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A ClickHouse server of its own (same package and config template as `deploy/local/infra`).
pub struct PrivateClickHouse {
    dir: PathBuf,
    pub http_port: u16,
    tcp_port: u16,
    child: Option<Proc>,
}

impl PrivateClickHouse {
    pub fn start(dir: &Path) -> Self {
        let mut ch = Self {
            dir: dir.to_path_buf(),
            http_port: free_port(),
            tcp_port: free_port(),
            child: None,
        };
        for sub in ["data", "tmp", "user_files", "format_schemas", "logs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let template = workspace_root().join("deploy/local/clickhouse");
        let config = std::fs::read_to_string(template.join("config.xml"))
            .unwrap()
            .replace("@CH_DIR@", &dir.display().to_string())
            .replace("@HTTP_PORT@", &ch.http_port.to_string())
            .replace("@TCP_PORT@", &ch.tcp_port.to_string());
        std::fs::write(dir.join("config.xml"), config).unwrap();
        std::fs::copy(template.join("users.xml"), dir.join("users.xml")).unwrap();
        ch.restart();
        ch
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Start (again) on the same data and ports.
    pub fn restart(&mut self) {
        let bin = ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("clickhouse-server is installed (deploy/local/infra up installs it)");
        let log = self.dir.join("stdout.log");
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .current_dir(&self.dir)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("starting clickhouse-server");
        self.child = Some(Proc::new(child));
        let url = format!("{}/ping", self.url());
        wait_until("private ClickHouse", &log, Duration::from_secs(60), || {
            std::process::Command::new("curl")
                .args(["-sf", &url])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    /// Stop gracefully and wait until the process is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(30));
        }
        assert!(
            !port_open(self.http_port),
            "ClickHouse still answering after stop"
        );
    }
}

/// Path of the tansu binary that `deploy/local/infra up` installs.
pub fn tansu_binary() -> PathBuf {
    ta_devsupport::installed_tool("tansu-0.6.0/bin/tansu")
}

/// A tansu broker of its own, with sqlite storage in `dir`.
pub struct PrivateBroker {
    dir: PathBuf,
    pub port: u16,
    /// The port the broker tells clients to connect to (a proxy's), when not its own.
    advertised: Option<u16>,
    /// Require SASL authentication (`tansu broker --authentication`).
    authentication: bool,
    child: Option<Proc>,
}

impl PrivateBroker {
    pub fn start(dir: &Path) -> Self {
        Self::start_advertising(dir, None)
    }

    /// A broker whose metadata sends every client to `advertised` (e.g. a
    /// [`crate::proxy::Proxy`] in front of it), so all its traffic passes there.
    pub fn start_advertising(dir: &Path, advertised: Option<u16>) -> Self {
        Self::start_on(dir, free_port(), advertised)
    }

    /// As [`Self::start_advertising`], listening on `port`.
    pub fn start_on(dir: &Path, port: u16, advertised: Option<u16>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut b = Self {
            dir: dir.to_path_buf(),
            port,
            advertised,
            authentication: false,
            child: None,
        };
        b.restart();
        b
    }

    /// Create a SCRAM user (`tansu user create`, which talks to the running broker; tansu only
    /// lets it in while authentication is off, so call this before [`Self::require_authentication`]).
    pub fn create_user(&self, name: &str, password: &str, mechanism: &str) {
        let out = Command::new(tansu_binary())
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--mechanism", mechanism, name, password])
            .output()
            .expect("running tansu user create");
        assert!(
            out.status.success(),
            "tansu user create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Restart with client authentication required (same data, same ports).
    pub fn require_authentication(&mut self) {
        self.kill();
        self.authentication = true;
        self.restart();
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let log = self.dir.join("tansu.log");
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port));
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .args(self.authentication.then_some("--authentication"))
            .current_dir(&self.dir)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("starting tansu");
        self.child = Some(Proc::new(child));
        let port = self.port;
        wait_until("private broker", &log, Duration::from_secs(30), || {
            port_open(port)
        });
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        // Dropping the handle kills and reaps the process.
        self.child.take();
    }
}

/// Create `topic` (if needed) on `broker` (comma-separated bootstrap list) and produce
/// `values` round-robin over `partitions`.
pub async fn produce(broker: &str, topic: &str, partitions: i32, values: Vec<Vec<u8>>) {
    let client = ClientBuilder::new(broker.split(',').map(str::to_owned).collect())
        .build()
        .await
        .expect("broker reachable");
    ta_shared::kafka::ensure_topic(&client, topic, partitions)
        .await
        .unwrap();
    let mut per: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for (i, v) in values.into_iter().enumerate() {
        per.entry(i as i32 % partitions).or_default().push(Record {
            key: None,
            value: Some(v),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        });
    }
    for (p, records) in per {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        for chunk in records.chunks(500) {
            pc.produce(chunk.to_vec(), Compression::NoCompression)
                .await
                .unwrap();
        }
    }
}

/// The text ClickHouse answers `sql` with, or `None` when it refuses or cannot be reached.
pub async fn clickhouse_text(url: &str, database: &str, sql: &str) -> Option<String> {
    let res = reqwest::Client::new()
        .post(url)
        .query(&[("database", database)])
        .body(sql.to_owned())
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.text().await.ok()
}

/// One number from ClickHouse (`sql` must return a single value).
pub async fn clickhouse_number(url: &str, database: &str, sql: &str) -> Option<u64> {
    clickhouse_text(url, database, sql)
        .await?
        .trim()
        .parse()
        .ok()
}

/// Every enriched event in `topic` (comma-separated bootstrap list), per partition in offset
/// order.
pub async fn read_topic(brokers: &str, topic: &str) -> BTreeMap<i32, Vec<EnrichedEvent>> {
    records(brokers, topic)
        .await
        .into_iter()
        .map(|(p, rs)| {
            let events = rs
                .into_iter()
                .map(|r| EnrichedEvent::from_json(&r.value.unwrap()).unwrap())
                .collect();
            (p, events)
        })
        .collect()
}

/// Every byte of every record of `topic` (keys, values, header names and values), for
/// looking for what must never be there.
pub async fn topic_bytes(brokers: &str, topic: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records(brokers, topic).await.into_values().flatten() {
        out.extend(r.key.unwrap_or_default());
        out.extend(r.value.unwrap_or_default());
        for (k, v) in r.headers {
            out.extend(k.into_bytes());
            out.extend(v);
        }
        out.push(b'\n');
    }
    out
}

/// Every record of `topic`, per partition in offset order.
async fn records(brokers: &str, topic: &str) -> BTreeMap<i32, Vec<rskafka::record::Record>> {
    let client = ClientBuilder::new(brokers.split(',').map(str::to_owned).collect())
        .build()
        .await
        .unwrap();
    let partitions = client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == topic)
        .map_or(0, |t| t.partitions.len() as i32);
    let mut out = BTreeMap::new();
    for partition in 0..partitions {
        let pc = client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
        let mut offset = pc.get_offset(OffsetAt::Earliest).await.unwrap();
        let mut records = Vec::new();
        while offset < end {
            let (batch, _) = pc.fetch_records(offset, 1..5_000_000, 1_000).await.unwrap();
            for r in batch {
                offset = r.offset + 1;
                records.push(r.record);
            }
        }
        out.insert(partition, records);
    }
    out
}
