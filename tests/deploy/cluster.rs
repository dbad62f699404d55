//! `make deploy-test-cluster`: the cluster variant of the central compose deployment
//! (`deploy/central/compose.yaml` with `deploy/central/compose.cluster.yaml`) run for real with
//! podman. podman-compose starts its three keeper servers and four ClickHouse servers (2 shards
//! x 2 replicas) from the files as shipped; only image names differ, because no registry is
//! reachable here: ZooKeeper 3.8 stands in for ClickHouse Keeper (same protocol) and Debian's
//! ClickHouse 18.16 for the current image (`deploy/local/images/build cluster`).
//!
//! The two loaders and ta-query run on the same podman network from this checkout's release
//! binaries (mounted into a container of the ClickHouse image, so no Rust image build), with
//! the environment the compose files give the `ta-loader`, `ta-loader-2` and `ta-query`
//! services (read from podman-compose's dry run, so the override's settings are what runs).
//! One exception: the broker is a plaintext tansu on the network's gateway instead of the
//! TLS + SCRAM one; that path is `make deploy-test`'s.
//!
//! Steps:
//! 1. the cluster forms: each node lists 4 nodes in `system.clusters` and reads Keeper;
//! 2. `ta-loader migrate` makes the replicated and Distributed tables ON CLUSTER;
//! 3. two leased loaders share the topic's 6 partitions; mid-load one loader is SIGKILLed, one
//!    replica (clickhouse-2-2) and one keeper (keeper-3) are stopped, more events are produced,
//!    then both are started again;
//! 4. exact: every produced event id is stored once (read through the Distributed table), the
//!    two replicas of each shard hold the same rows, the shards' rows add up, and ta-query
//!    (read-only user, cluster mode) answers the same pageviews.
//!
//! Not a `cargo test` target of `make test` (it builds images): `test = false` in Cargo.toml.

mod podman;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podman::{Project, image, podman, run, say, until};
use ta_tests::{free_port, workspace_root};

const TOPIC: &str = "events.enriched";
const PARTITIONS: i32 = 6;
const DATABASE: &str = "tiny_analytics";
const NODES: [&str; 4] = [
    "clickhouse",
    "clickhouse-1-2",
    "clickhouse-2-1",
    "clickhouse-2-2",
];
const KEEPERS: [&str; 3] = ["keeper-1", "keeper-2", "keeper-3"];

/// The environment podman-compose gives `service`'s first container, from its dry run.
fn compose_env(project: &Project, service: &str) -> BTreeMap<String, String> {
    let out = project
        .command()
        .args(["--dry-run", "up", "-d", "--no-deps", service])
        .output()
        .expect("podman-compose --dry-run");
    let text = String::from_utf8_lossy(&out.stdout);
    let name = format!("--name={}_{service}_1", project.name);
    let line = text
        .lines()
        .find(|l| l.starts_with("podman run") && l.contains(&name))
        .unwrap_or_else(|| panic!("no `podman run {name}` in the dry run:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "-e")
        .filter_map(|w| w[1].split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `sql` run by clickhouse-client inside `node`'s container; `None` when it fails. Tables of
/// the analytics database are named `db.t` (it exists only after the migrations).
fn clickhouse(project: &Project, node: &str, sql: &str) -> Option<String> {
    let out = Command::new("podman")
        .args([
            "exec",
            &project.container(node),
            "clickhouse-client",
            "-q",
            sql,
        ])
        .env("CONTAINERS_CONF", podman::containers_conf())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A service binary of this checkout run in a container of the ClickHouse image on the
/// project's network (the binary is built on this Debian 12 machine; the image is Debian 12).
fn binary_container(
    name: &str,
    network: &str,
    binary: &str,
    env: &BTreeMap<String, String>,
    extra: &[&str],
    args: &[&str],
) -> Command {
    let bin = workspace_root().join("target/release").join(binary);
    assert!(
        bin.exists(),
        "{} missing: `make deploy-test-cluster` builds it (cargo build --release --bins)",
        bin.display()
    );
    let mut cmd = Command::new("podman");
    cmd.args(["run", "--name", name, "--network", network])
        .arg("-v")
        .arg(format!("{}:/usr/local/bin/{binary}:ro", bin.display()))
        .args(["--entrypoint", &format!("/usr/local/bin/{binary}")])
        .args(extra);
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(image("clickhouse"))
        .args(args)
        .env("CONTAINERS_CONF", podman::containers_conf());
    cmd
}

/// The events' ids as stored, once per row, read through the Distributed table.
fn stored_ids(project: &Project) -> Option<Vec<String>> {
    let text = clickhouse(
        project,
        "clickhouse",
        &format!("SELECT event_id FROM {DATABASE}.events"),
    )?;
    Some(text.lines().map(str::to_owned).collect())
}

/// Rows and an order-free digest of the ids of `node`'s local table.
fn local_rows(project: &Project, node: &str) -> Option<(u64, String)> {
    let text = clickhouse(
        project,
        node,
        &format!("SELECT count(), sum(cityHash64(event_id)) FROM {DATABASE}.events_local"),
    )?;
    let (n, digest) = text.split_once('\t')?;
    Some((n.parse().ok()?, digest.to_owned()))
}

/// A plaintext tansu broker on the network's gateway (reachable by the host and every container).
struct Broker {
    child: std::process::Child,
    address: String,
}

impl Broker {
    fn start(dir: &Path, gateway: &str) -> Self {
        // A new topic each run: an earlier run's events would be loaded again into new tables.
        let dir = tempdir(dir, "broker");
        for file in std::fs::read_dir(&dir).unwrap().flatten() {
            std::fs::remove_file(file.path()).unwrap();
        }
        let port = free_port();
        let address = format!("{gateway}:{port}");
        let url = format!("tcp://{address}");
        let log = std::fs::File::create(dir.join("tansu.log")).unwrap();
        let child = Command::new(ta_tests::infra::tansu_binary())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting tansu (deploy/local/install services)");
        let started = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Self { child, address }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn produce(broker: &str, from: u64, n: u64) -> BTreeSet<String> {
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<_> = (from..from + n)
        .map(|i| ta_shared::testing::event(i, now))
        .collect();
    let ids = events.iter().map(|e| e.event_id.to_string()).collect();
    ta_tests::infra::produce(
        broker,
        TOPIC,
        PARTITIONS,
        events.iter().map(|e| e.to_json()).collect(),
    )
    .await;
    ids
}

fn remove_containers(names: &[&str]) {
    for name in names {
        let _ = Command::new("podman")
            .args(["rm", "-f", name])
            .env("CONTAINERS_CONF", podman::containers_conf())
            .output();
    }
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let dir = ta_tests::artifacts_dir("deploy-cluster");
    say(format!("logs: {}", dir.display()));
    run(Command::new(workspace_root().join("deploy/local/images/build")).arg("cluster"));

    let scratch = tempdir(&dir, "inputs");
    let project = Project {
        name: "ta-deploytest-cluster".into(),
        files: vec![
            workspace_root().join("deploy/central/compose.yaml"),
            workspace_root().join("deploy/central/compose.cluster.yaml"),
        ],
        env: [
            ("TA_CLICKHOUSE_IMAGE", image("clickhouse")),
            ("TA_KEEPER_IMAGE", image("keeper")),
            // What containers.conf allows here.
            ("TA_CLICKHOUSE_NOFILE", "20000".into()),
            ("TA_CLICKHOUSE_NPROC", "4096".into()),
            ("TA_LOADER_LEASE_SECS", "4".into()),
            // Read by compose.yaml's services this test does not start.
            ("TA_KAFKA_ADVERTISED", "kafka".into()),
            ("TA_KAFKA_CERTS_DIR", scratch.display().to_string()),
            ("TA_KAFKA_SECRETS_DIR", scratch.display().to_string()),
            ("TA_EDGE_REGIONS", "eu".into()),
            ("GF_SECURITY_ADMIN_PASSWORD", "unused".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        log: dir.join("central"),
    };
    project.write_env();
    let loaders = [
        "ta-deploytest-cluster-loader-1",
        "ta-deploytest-cluster-loader-2",
    ];
    let query_container = "ta-deploytest-cluster-query";
    let cleanup = || {
        remove_containers(&loaders);
        remove_containers(&[query_container, "ta-deploytest-cluster-migrate"]);
        project.down_leftovers();
    };
    cleanup();

    // 1. Keepers and ClickHouse servers, as the compose files define them.
    let mut services: Vec<&str> = KEEPERS.to_vec();
    services.extend(NODES);
    let mut args = vec!["up", "-d"];
    args.extend(&services);
    project.compose(&args);
    project.assert_running(&services);
    let took = until(
        "every node lists the 4 nodes of cluster ta and reads Keeper",
        Duration::from_secs(180),
        async || {
            NODES.iter().all(|node| {
                clickhouse(
                    &project,
                    node,
                    "SELECT (SELECT count() FROM system.clusters WHERE cluster = 'ta') * 10 \
                     + (SELECT count() > 0 FROM system.zookeeper WHERE path = '/')",
                )
                .is_some_and(|v| v == "41")
            })
        },
    )
    .await;
    say(format!("1. cluster formed in {:.0}s", took.as_secs_f64()));

    // The loaders' and ta-query's environment as the compose files give it.
    let network = format!("{}_default", project.name);
    let inspect = podman(&["network", "inspect", &network]);
    let gateway = serde_json::from_str::<serde_json::Value>(&inspect)
        .ok()
        .and_then(|v| {
            v.pointer("/0/subnets/0/gateway")
                .or_else(|| v.pointer("/0/plugins/0/ipam/ranges/0/0/gateway"))
                .and_then(|g| g.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| panic!("no gateway in `podman network inspect {network}`:\n{inspect}"));
    let broker = Broker::start(&dir, &gateway);
    say(format!("broker (plaintext tansu) at {}", broker.address));
    let loader_env = |service: &str| {
        let mut env = compose_env(&project, service);
        assert_eq!(
            env.get("TA_CLICKHOUSE_CLUSTER").map(String::as_str),
            Some("ta")
        );
        assert!(
            env.get("TA_ZOOKEEPER")
                .is_some_and(|z| KEEPERS.iter().all(|k| z.contains(k))),
            "{service}: TA_ZOOKEEPER {:?}",
            env.get("TA_ZOOKEEPER")
        );
        env.retain(|k, _| !k.starts_with("TA_KAFKA_SASL") && !k.starts_with("TA_KAFKA_TLS"));
        env.insert("TA_KAFKA_BROKERS".into(), broker.address.clone());
        env.insert("TA_KAFKA_SECURITY_PROTOCOL".into(), "plaintext".into());
        env
    };
    let env_1 = loader_env("ta-loader");
    let env_2 = loader_env("ta-loader-2");

    // 2. The schema, ON CLUSTER.
    run(&mut binary_container(
        "ta-deploytest-cluster-migrate",
        &network,
        "ta-loader",
        &env_1,
        &["--rm"],
        &["migrate"],
    ));
    for node in NODES {
        let engine = clickhouse(
            &project,
            node,
            &format!(
                "SELECT engine FROM system.tables WHERE database = '{DATABASE}' AND name = 'events_local'"
            ),
        );
        assert!(
            engine
                .as_deref()
                .is_some_and(|e| e.starts_with("Replicated")),
            "{node}: events_local is {engine:?}"
        );
    }
    say("2. migrated: events_local is replicated on every node");

    // 3. Two leased loaders; faults while events keep arriving.
    for (name, env) in loaders.iter().zip([&env_1, &env_2]) {
        run(&mut binary_container(
            name,
            &network,
            "ta-loader",
            env,
            &["-d"],
            &[],
        ));
    }
    let count = || {
        clickhouse(
            &project,
            "clickhouse",
            &format!("SELECT count() FROM {DATABASE}.events"),
        )
        .and_then(|n| n.parse::<u64>().ok())
    };
    // 60 rounds of 500 events, 150 ms apart: about 10 s of traffic.
    let address = broker.address.clone();
    let producing = tokio::spawn(async move {
        let mut ids = BTreeSet::new();
        for round in 0..60 {
            ids.extend(produce(&address, round * 500, 500).await);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        ids
    });
    until(
        "the loaders store the first events",
        Duration::from_secs(120),
        async || count().is_some_and(|n| n >= 2_000),
    )
    .await;
    podman(&["kill", "--signal", "KILL", loaders[0]]);
    podman(&["stop", "-t", "5", &project.container("clickhouse-2-2")]);
    podman(&["stop", "-t", "5", &project.container("keeper-3")]);
    let at_fault = count();
    say(format!(
        "3. mid-load ({} rows stored): {} SIGKILLed, clickhouse-2-2 and keeper-3 stopped",
        at_fault.map_or("no answer".into(), |n| n.to_string()),
        loaders[0],
    ));
    let expected = producing.await.expect("the producer");
    let after_traffic = count();
    say(format!(
        "   all 30000 events produced; {} stored; 10 s more with the replica and the keeper down",
        after_traffic.map_or("no answer".into(), |n| n.to_string()),
    ));
    tokio::time::sleep(Duration::from_secs(10)).await;
    podman(&["start", &project.container("clickhouse-2-2")]);
    podman(&["start", &project.container("keeper-3")]);
    // podman gives a restarted container a new address, and ClickHouse 18.16 keeps the one it
    // resolved until told otherwise (current releases refresh theirs every 15 s and on a failed
    // connection: dns_cache_update_period): what an operator of 18.16 runs after moving a node.
    until(
        "every node forgot the old address of clickhouse-2-2",
        Duration::from_secs(60),
        async || {
            NODES
                .iter()
                .all(|node| clickhouse(&project, node, "SYSTEM DROP DNS CACHE").is_some())
        },
    )
    .await;
    say("   clickhouse-2-2 and keeper-3 started again");

    // 4. Exact, through the Distributed table and on every replica.
    let took = until(
        "every event is stored",
        Duration::from_secs(300),
        async || stored_ids(&project).is_some_and(|ids| ids.len() >= expected.len()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ids = stored_ids(&project).expect("the cluster answers");
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), distinct.len(), "an event is stored twice");
    let missing: Vec<_> = expected.difference(&distinct).take(5).collect();
    let foreign: Vec<_> = distinct.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && foreign.is_empty(),
        "stored ids differ from the produced ones: {} stored, {} produced; missing e.g. {missing:?}, never produced e.g. {foreign:?}",
        distinct.len(),
        expected.len()
    );
    say(format!(
        "4. all {} events stored exactly once ({:.0}s after the restart)",
        expected.len(),
        took.as_secs_f64()
    ));
    until(
        "the replicas of each shard hold the same rows",
        Duration::from_secs(180),
        async || {
            let rows: Vec<_> = NODES.iter().map(|n| local_rows(&project, n)).collect();
            rows.iter().all(Option::is_some) && rows[0] == rows[1] && rows[2] == rows[3]
        },
    )
    .await;
    let shard_1 = local_rows(&project, NODES[0]).unwrap().0;
    let shard_2 = local_rows(&project, NODES[2]).unwrap().0;
    assert_eq!(shard_1 + shard_2, expected.len() as u64);
    assert!(shard_1 > 0 && shard_2 > 0, "one shard holds everything");
    say(format!(
        "   replicas converged: shard 1 {shard_1} rows x2, shard 2 {shard_2} rows x2"
    ));

    // ta-query, as the compose files configure it (read-only user, cluster mode).
    let mut query_env = compose_env(&project, "ta-query");
    assert_eq!(
        query_env.get("TA_CLICKHOUSE_CLUSTER").map(String::as_str),
        Some("ta")
    );
    assert_eq!(
        query_env.get("TA_CLICKHOUSE_USER").map(String::as_str),
        Some("ta_query")
    );
    query_env.remove("TA_PROMETHEUS_URL");
    query_env.insert("TA_DEV".into(), "true".into());
    query_env.insert(
        "TA_QUERY_ACCESS_FILE".into(),
        "/etc/tiny-analytics/access.dev.toml".into(),
    );
    let port = free_port();
    let access = workspace_root().join("deploy/config");
    run(&mut binary_container(
        query_container,
        &network,
        "ta-query",
        &query_env,
        &[
            "-d",
            "-p",
            &format!("127.0.0.1:{port}:8081"),
            "-v",
            &format!("{}:/etc/tiny-analytics:ro", access.display()),
        ],
        &[],
    ));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut pageviews = 0;
    for site in ["site-1", "site-2"] {
        let url = format!("{base}/v1/stats/aggregate?site_id={site}&period=today&timezone=UTC");
        let mut answer = None;
        until("ta-query answers", Duration::from_secs(60), async || {
            answer = match http
                .get(&url)
                .bearer_auth(ta_bench::DEV_QUERY_TOKEN)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                _ => None,
            };
            answer.is_some()
        })
        .await;
        pageviews += answer.unwrap()["results"]["pageviews"]["value"]
            .as_u64()
            .expect("pageviews in the answer");
    }
    assert_eq!(pageviews, expected.len() as u64, "ta-query's pageviews");
    say(format!(
        "   ta-query (ta_query, cluster mode) answers {pageviews} pageviews"
    ));

    // The services' logs, beside the test's own.
    for name in loaders.iter().chain([&query_container]) {
        let out = Command::new("podman")
            .args(["logs", name])
            .env("CONTAINERS_CONF", podman::containers_conf())
            .output()
            .expect("podman logs");
        let mut text = out.stdout;
        text.extend(out.stderr);
        std::fs::write(dir.join(format!("{name}.log")), text).unwrap();
    }
    cleanup();
    say(format!(
        "deploy-test-cluster: OK in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
}

fn tempdir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    path
}
