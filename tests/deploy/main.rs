//! `make deploy-test`: the compose deployment run for real, with podman. The central compose
//! project and two edge projects (regions eu and us), each on its own podman network, from
//! `deploy/central/compose.yaml` and `deploy/edge/compose.yaml` as shipped; only image names and
//! published addresses differ (environment variables the files read), because no registry is
//! reachable here: tansu (with stunnel for TLS) stands in for Redpanda, Debian's ClickHouse
//! 18.16 and Prometheus for the official images (`deploy/local/images/build deploy`). Grafana
//! is not started (not installable here).
//!
//! The edges reach central only through its published Kafka listener (TLS + SCRAM, one user
//! per region). Steps, each ending in a count read back from ta-query (exact, see `step`):
//! 1. traffic to both edges' published ports;
//! 2. the central Prometheus federates both edges' Prometheus (same values per region);
//! 3. an edge container killed (SIGKILL) under load and started again (its spool volume keeps
//!    every answered event);
//! 4. the edge image rebuilt and the container rolled under load;
//! 5. central Kafka stopped for a minute (edges keep answering 202), then started.
//!
//! Not a `cargo test` target of `make test` (it builds images): `test = false` in Cargo.toml;
//! run with `make deploy-test`. It prints what each step sent, got answered and read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod podman;

use podman::{Project, containers_conf, image, podman, run, say, until};
use ta_tests::tls::TestCerts;
use ta_tests::{free_port, workspace_root};

const ADMIN: &str = "deploy-test-admin-token-0123456789";
const SITE: &str = "shop";
const KEY: &str = "shop-ingest-key-deploy-test";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const REGIONS: [&str; 2] = ["eu", "us"];

async fn get_ok(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Pageviews and visitors of the test site today, as ta-query reports them. Every event the
/// test sends has its own `user_id`, so visitors == pageviews means no event is stored twice.
async fn stored(http: &reqwest::Client, query: &str) -> Option<(u64, u64)> {
    let answer = http
        .get(format!(
            "{query}/v1/stats/aggregate?site_id={SITE}&period=today"
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .ok()?;
    let json: serde_json::Value = answer.json().await.ok()?;
    let results = &json["results"];
    Some((
        results["pageviews"]["value"].as_u64()?,
        results["visitors"]["value"].as_u64()?,
    ))
}

/// Requests sent, answered 202, and left without any answer (the connection failed: the edge
/// was down, or was killed after it had spooled the event but before it answered) by one edge.
#[derive(Default)]
struct Sent {
    sent: AtomicU64,
    accepted: AtomicU64,
    unanswered: AtomicU64,
}

/// Send pageviews to `edge` at about `rate` per second until `stop`.
fn traffic(
    edge: String,
    rate: f64,
    stop: Arc<AtomicBool>,
    counts: Arc<Sent>,
    tag: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let every = Duration::from_secs_f64(1.0 / rate);
        let mut next = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let body = format!(
                r#"{{"site_id":"{SITE}","event_name":"pageview","url":"https://shop.example.com/{tag}/{i}","user_id":"{tag}-{i}"}}"#
            );
            counts.sent.fetch_add(1, Ordering::Relaxed);
            let answer = http
                .post(format!("{edge}/v1/collect"))
                .header("X-TA-API-Key", KEY)
                .header("Content-Type", "application/json")
                .header("User-Agent", UA)
                .body(body)
                .send()
                .await;
            match answer {
                Ok(a) if a.status().as_u16() == 202 => {
                    counts.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => {
                    counts.unanswered.fetch_add(1, Ordering::Relaxed);
                }
            }
            next += every;
            tokio::time::sleep_until(next.into()).await;
        }
    })
}

struct Deployment {
    dir: PathBuf,
    central: Project,
    edges: Vec<(Project, String)>,
    query: String,
    prometheus: String,
    http: reqwest::Client,
    /// Events answered 202 so far, all regions.
    answered: u64,
    /// Pageviews ta-query reported at the end of the last step.
    stored: u64,
    report: Vec<String>,
}

impl Deployment {
    /// Steady traffic to every edge while `during` runs; then wait until ta-query holds every
    /// event answered 202 and its count stays put. One report row.
    ///
    /// Exact when every request got an answer. A request left without one may still have been
    /// spooled (SIGKILL between the spool's fsync and the answer), so each of those may add one
    /// event: the count must lie in [before + answered, before + answered + unanswered], and no
    /// event may be stored twice (visitors == pageviews, each event has its own user_id).
    async fn step(&mut self, name: &str, rate: f64, during: impl AsyncFnOnce(&mut Self)) {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let mut counts = Vec::new();
        for (i, (_, url)) in self.edges.iter().enumerate() {
            let c = Arc::new(Sent::default());
            senders.push(traffic(
                url.clone(),
                rate,
                stop.clone(),
                c.clone(),
                // Unique per step and region: each event has its own user_id (visitor).
                format!("{}-{}", REGIONS[i], self.report.len()),
            ));
            counts.push(c);
        }
        during(self).await;
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.await.unwrap();
        }
        let sent: u64 = counts.iter().map(|c| c.sent.load(Ordering::Relaxed)).sum();
        let accepted: u64 = counts
            .iter()
            .map(|c| c.accepted.load(Ordering::Relaxed))
            .sum();
        let unanswered: u64 = counts
            .iter()
            .map(|c| c.unanswered.load(Ordering::Relaxed))
            .sum();
        self.answered += accepted;
        let least = self.stored + accepted;
        let most = least + unanswered;
        let expected = if most == least {
            format!("{least}")
        } else {
            format!("{least}–{most}")
        };
        let (http, query) = (self.http.clone(), self.query.clone());
        let waited = until(
            &format!("ta-query reports at least {least} pageviews ({name})"),
            Duration::from_secs(300),
            async || stored(&http, &query).await.is_some_and(|(p, _)| p >= least),
        )
        .await;
        // And stays there: nothing arrives twice later.
        let mut now = stored(&http, &query).await.unwrap();
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let again = stored(&http, &query).await.unwrap();
            if again == now {
                break;
            }
            now = again;
        }
        let (pageviews, visitors) = now;
        assert!(
            (least..=most).contains(&pageviews),
            "{name}: ta-query reports {pageviews} pageviews, expected {expected}"
        );
        assert_eq!(
            visitors, pageviews,
            "{name}: an event is stored twice (visitors != pageviews)"
        );
        self.stored = pageviews;
        let row = format!(
            "| {name} | {sent} | {accepted} | {unanswered} | {pageviews} | {expected} | {:.0} s | {:.0} s |",
            started.elapsed().as_secs_f64(),
            waited.as_secs_f64()
        );
        say(&row);
        self.report.push(row);
    }
}

fn write_inputs(dir: &Path) -> (TestCerts, PathBuf, PathBuf, PathBuf, PathBuf) {
    let certs = TestCerts::generate_for(
        &dir.join("certs"),
        &["host.containers.internal", "localhost"],
    );
    // The layout the compose files expect: broker.pem, broker.key, ca.pem.
    std::fs::copy(&certs.server_cert, dir.join("certs/broker.pem")).unwrap();
    std::fs::copy(&certs.server_key, dir.join("certs/broker.key")).unwrap();
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for user in ["ta-admin", "loader", "edge-eu", "edge-us"] {
        std::fs::write(
            secrets.join(user),
            format!("{user}-password-{:016x}\n", rand::random::<u64>()),
        )
        .unwrap();
    }
    let sites = dir.join("sites.toml");
    std::fs::write(
        &sites,
        format!("[[site]]\nid = \"{SITE}\"\napi_keys = [\"{KEY}\"]\nallowed_origins = [\"https://shop.example.com\"]\n"),
    )
    .unwrap();
    let query = dir.join("query");
    std::fs::create_dir_all(&query).unwrap();
    std::fs::write(
        query.join("access.toml"),
        format!(
            "admin_tokens = [\"{ADMIN}\"]\n[sites.{SITE}]\nread_tokens = [\"deploy-test-read-{SITE}-0001\"]\n"
        ),
    )
    .unwrap();
    let edges = dir.join("prometheus-edges");
    std::fs::create_dir_all(&edges).unwrap();
    (certs, secrets, sites, query, edges)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let all = Instant::now();
    // podman-compose 1.0 reads <compose dir>/.env over the environment: an operator's file there
    // would silently replace the test's settings.
    for env in ["deploy/edge/.env", "deploy/central/.env"] {
        assert!(
            !workspace_root().join(env).exists(),
            "{env} exists: podman-compose would use it instead of the test's settings; move it away"
        );
    }
    let dir = workspace_root().join("tests/artifacts/deploy");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    say(format!("work folder {}", dir.display()));

    let started = Instant::now();
    run(Command::new(workspace_root().join("deploy/local/images/build")).arg("deploy"));
    say(format!(
        "local images ready ({:.0}s)",
        started.elapsed().as_secs_f64()
    ));

    let (certs, secrets, sites, query_dir, edges_dir) = write_inputs(&dir);
    let (kafka_port, query_port, prom_port) = (free_port(), free_port(), free_port());
    let common = |extra: &[(&str, String)]| -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            ("TA_IMAGE_PREFIX", "localhost/ta-deploy-test".to_owned()),
            ("TA_RUST_IMAGE", image("rust")),
            ("TA_RUNTIME_IMAGE", image("base")),
            ("TA_PROMETHEUS_IMAGE", image("prometheus")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    let central = Project {
        name: "ta-deploytest-central".into(),
        files: vec![workspace_root().join("deploy/central/compose.yaml")],
        env: common(&[
            ("TA_KAFKA_IMAGE", image("tansu")),
            // This machine's container limit (deploy/local/containers/containers.conf).
            ("TA_CLICKHOUSE_NOFILE", "20000".into()),
            ("TA_CLICKHOUSE_NPROC", "4096".into()),
            ("TA_CLICKHOUSE_IMAGE", image("clickhouse")),
            ("TA_KAFKA_ADVERTISED", "host.containers.internal".into()),
            ("TA_KAFKA_ADVERTISED_PORT", kafka_port.to_string()),
            // Reached from the edges' networks through the host, as across the internet.
            ("TA_KAFKA_PUBLISH", format!("0.0.0.0:{kafka_port}")),
            (
                "TA_KAFKA_CERTS_DIR",
                dir.join("certs").display().to_string(),
            ),
            ("TA_KAFKA_SECRETS_DIR", secrets.display().to_string()),
            ("TA_EDGE_REGIONS", "eu us".into()),
            (
                "TA_LOADER_KAFKA_BROKERS",
                format!("host.containers.internal:{kafka_port}"),
            ),
            ("TA_LOADER_KAFKA_SECURITY_PROTOCOL", "sasl_ssl".into()),
            (
                "TA_LOADER_KAFKA_TLS_CA_FILE",
                "/etc/tiny-analytics/kafka-ca.pem".into(),
            ),
            ("TA_QUERY_CONFIG_DIR", query_dir.display().to_string()),
            ("TA_QUERY_PUBLISH", format!("127.0.0.1:{query_port}")),
            ("TA_PROMETHEUS_PUBLISH", format!("127.0.0.1:{prom_port}")),
            ("TA_PROMETHEUS_EDGES_DIR", edges_dir.display().to_string()),
            (
                "GF_SECURITY_ADMIN_PASSWORD",
                "grafana-is-not-started-here".into(),
            ),
        ]),
        log: dir.join("central"),
    };
    let mut edges = Vec::new();
    let mut edge_targets = String::new();
    for region in REGIONS {
        let (port, prom) = (free_port(), free_port());
        edge_targets.push_str(&format!(
            "- targets: [\"host.containers.internal:{prom}\"]\n  labels:\n    edge: {region}\n"
        ));
        let project = Project {
            name: format!("ta-deploytest-edge-{region}"),
            files: vec![workspace_root().join("deploy/edge/compose.yaml")],
            env: common(&[
                ("TA_EDGE_REGION", region.into()),
                (
                    "TA_KAFKA_BROKERS",
                    format!("host.containers.internal:{kafka_port}"),
                ),
                ("TA_KAFKA_CA_FILE_HOST", certs.ca.display().to_string()),
                (
                    "TA_KAFKA_PASSWORD_FILE_HOST",
                    secrets.join(format!("edge-{region}")).display().to_string(),
                ),
                ("TA_SITES_FILE_HOST", sites.display().to_string()),
                (
                    "TA_SALT_SECRET",
                    "deploy-test-salt-secret-of-forty-characters".into(),
                ),
                ("TA_EDGE_PUBLISH", format!("127.0.0.1:{port}")),
                ("TA_EDGE_PROMETHEUS_PUBLISH", format!("0.0.0.0:{prom}")),
                // The image's data-centre list, as .env.example says to turn it on (the
                // test's traffic comes from the podman network, which no list holds).
                (
                    "TA_DATACENTER_RANGES",
                    "/usr/share/tiny-analytics/datacenter-ranges.txt.gz".into(),
                ),
            ]),
            log: dir.join(format!("edge-{region}")),
        };
        edges.push((project, format!("http://127.0.0.1:{port}")));
    }
    std::fs::write(edges_dir.join("edges.yml"), edge_targets).unwrap();

    // Leftovers of an earlier run of this test.
    for project in std::iter::once(&central).chain(edges.iter().map(|(p, _)| p)) {
        project.write_env();
        project.down_leftovers();
    }

    let started = Instant::now();
    for (project, service) in [
        (&central, "ta-loader"),
        (&central, "ta-query"),
        (&edges[0].0, "ta-edge"),
    ] {
        let image = project.image_of(service);
        let _ = Command::new("podman")
            .args(["rmi", "-f", &image])
            .env("CONTAINERS_CONF", containers_conf())
            .output();
        project.compose(&["build", service]);
        // podman-compose 1.0 exits 0 also when the build failed.
        podman(&["image", "exists", &image]);
    }
    say(format!(
        "service images built ({:.0}s)",
        started.elapsed().as_secs_f64()
    ));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let query = format!("http://127.0.0.1:{query_port}");
    let prometheus = format!("http://127.0.0.1:{prom_port}");
    let started = Instant::now();
    central.compose(&[
        "up",
        "-d",
        "kafka",
        "kafka-init",
        "clickhouse",
        "ta-loader",
        "ta-query",
        "prometheus",
    ]);
    central.assert_running(&["kafka", "clickhouse", "ta-loader", "ta-query", "prometheus"]);
    until("ta-query answers", Duration::from_secs(180), async || {
        get_ok(&http, &format!("{query}/healthz")).await && stored(&http, &query).await.is_some()
    })
    .await;
    let central_up = started.elapsed();
    say(format!(
        "central side up in {:.0}s",
        central_up.as_secs_f64()
    ));
    let started = Instant::now();
    for (project, _) in &edges {
        project.compose(&["up", "-d"]);
        project.assert_running(&["ta-edge", "prometheus"]);
    }
    for (project, url) in &edges {
        until(
            &format!("{} is ready (Kafka reachable)", project.name),
            Duration::from_secs(120),
            async || get_ok(&http, &format!("{url}/readyz")).await,
        )
        .await;
    }
    let edges_up = started.elapsed();
    say(format!(
        "both edges ready in {:.0}s",
        edges_up.as_secs_f64()
    ));

    let mut d = Deployment {
        dir,
        central,
        edges,
        query,
        prometheus,
        http,
        answered: 0,
        stored: 0,
        report: Vec::new(),
    };

    // 1. Traffic through both edges.
    d.step("1. traffic to both edges", 40.0, async |_| {
        tokio::time::sleep(Duration::from_secs(15)).await;
    })
    .await;

    // 2. Federation: per region, the central Prometheus holds what that edge reports on its own
    // ops listener (read inside its container: the ops port is not published).
    for (project, _) in &d.edges {
        let region = project.env["TA_EDGE_REGION"].clone();
        let exposition = project.edge_exposition();
        std::fs::write(
            d.dir.join(format!("edge-{region}.metrics.txt")),
            &exposition,
        )
        .unwrap();
        let at_edge = ta_tests::metric_sum(&exposition, "ta_edge_events_accepted_total");
        let (http, prometheus) = (d.http.clone(), d.prometheus.clone());
        let q = format!("sum(ta_edge_events_accepted_total{{region=\"{region}\"}})");
        let waited = until(
            &format!("central Prometheus federates region {region}'s {at_edge}"),
            Duration::from_secs(180),
            async || federated(&http, &prometheus, &q).await == Some(at_edge),
        )
        .await;
        say(format!(
            "2. central Prometheus: {q} = {at_edge}, as the edge says ({:.0}s)",
            waited.as_secs_f64()
        ));
    }
    let total: f64 = {
        let q = "sum(ta_edge_events_accepted_total)";
        let (http, prometheus, answered) =
            (d.http.clone(), d.prometheus.clone(), d.answered as f64);
        until(
            "the federated accepted count equals the events answered",
            Duration::from_secs(180),
            async || federated(&http, &prometheus, q).await == Some(answered),
        )
        .await;
        federated(&d.http, &d.prometheus, q).await.unwrap()
    };
    let row = format!(
        "| 2. federation: sum of ta_edge_events_accepted_total in the central Prometheus | | | | | {total} | | |"
    );
    say(&row);
    d.report.push(row);

    // 2b. Bots: each edge drops two crawlers; ta-query's "bots filtered today" (from the
    // central Prometheus, through federation) counts the four. Each edge loaded the image's
    // data-centre list.
    for (project, url) in &d.edges {
        let exposition = project.edge_exposition();
        let networks = exposition
            .lines()
            .find(|l| l.starts_with("ta_edge_list_entries{list=\"datacenter\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert!(
            networks.is_some_and(|n| n > 10_000.0),
            "edge {} loaded the data-centre list: {networks:?}",
            project.name
        );
        for seq in 0..2 {
            let answer = d
                .http
                .post(format!("{url}/v1/collect"))
                .header("X-TA-API-Key", KEY)
                .header("Content-Type", "application/json")
                .header(
                    "User-Agent",
                    "Mozilla/5.0 (compatible; OhDear/1.1; +https://ohdear.app/checker)",
                )
                .body(format!(
                    r#"{{"site_id":"{SITE}","event_name":"pageview","url":"https://shop.example/bot-{seq}"}}"#
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(
                answer.status().as_u16(),
                202,
                "a crawler gets 202 and is dropped"
            );
        }
    }
    let bots = {
        let (http, query) = (d.http.clone(), d.query.clone());
        let url = format!("{query}/v1/stats/bots?site_id={SITE}");
        let count = async move || -> Option<u64> {
            let answer = http.get(&url).bearer_auth(ADMIN).send().await.ok()?;
            let json: serde_json::Value = answer.json().await.ok()?;
            json["bots"].as_u64()
        };
        until(
            "ta-query reports the 4 bots the edges dropped",
            Duration::from_secs(180),
            async || count().await.is_some_and(|n| n >= 4),
        )
        .await;
        count().await.unwrap()
    };
    // No edge restarted yet: exact (max - min of the samples, no extrapolation).
    assert_eq!(bots, 4, "bots filtered today");
    let row = format!(
        "| 2b. bots filtered today: /v1/stats/bots (central Prometheus) after 4 crawler events | 4 | | | {bots} | 4 | | |"
    );
    say(&row);
    d.report.push(row);

    // 3. kill -9 of the eu edge under load, then start it again (its spool volume stays).
    d.step(
        "3. eu edge killed (SIGKILL) and started again",
        40.0,
        async |d| {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let container = d.edges[0].0.container("ta-edge");
            podman(&["kill", "--signal", "KILL", &container]);
            tokio::time::sleep(Duration::from_secs(3)).await;
            podman(&["start", &container]);
            let (http, url) = (d.http.clone(), d.edges[0].1.clone());
            until(
                "the eu edge answers again",
                Duration::from_secs(60),
                async || get_ok(&http, &format!("{url}/readyz")).await,
            )
            .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        },
    )
    .await;

    // 4. The edge image rebuilt (a new image: another build label) and the eu container rolled.
    d.step("4. edge image rebuilt and rolled", 40.0, async |d| {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let project = &d.edges[0].0;
        let before = podman(&[
            "inspect",
            "--format",
            "{{.Image}}",
            &project.container("ta-edge"),
        ]);
        let stamp = format!("TA_BUILD_STAMP={}", rand::random::<u32>());
        project.compose(&["build", "--build-arg", &stamp, "ta-edge"]);
        project.compose(&["up", "-d", "--force-recreate", "--no-deps", "ta-edge"]);
        let after = podman(&[
            "inspect",
            "--format",
            "{{.Image}}",
            &project.container("ta-edge"),
        ]);
        assert_ne!(
            before.trim(),
            after.trim(),
            "the rolled container runs a new image"
        );
        let (http, url) = (d.http.clone(), d.edges[0].1.clone());
        until(
            "the rolled eu edge answers",
            Duration::from_secs(60),
            async || get_ok(&http, &format!("{url}/readyz")).await,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;

    // 5. Central Kafka stopped for a minute: edges keep answering 202, everything arrives after.
    d.step("5. central Kafka stopped for 60 s", 20.0, async |d| {
        let kafka = d.central.container("kafka");
        podman(&["stop", "--time", "10", &kafka]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        podman(&["start", &kafka]);
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;

    let table = format!(
        "| step | sent | answered 202 | no answer | read back (ta-query) | expected | step time | wait |\n|---|---:|---:|---:|---:|---:|---:|---:|\n{}\n\nCentral side up in {:.0} s, both edges ready in {:.0} s after; whole test {:.0} s.\n",
        d.report.join("\n"),
        central_up.as_secs_f64(),
        edges_up.as_secs_f64(),
        all.elapsed().as_secs_f64()
    );
    std::fs::write(d.dir.join("result.md"), &table).unwrap();
    println!("{table}");

    for (project, _) in &d.edges {
        project.compose(&["down", "-v"]);
    }
    d.central.compose(&["down", "-v"]);
    say("OK: every event answered 202 read back, none twice, in every step");
}

async fn federated(http: &reqwest::Client, prometheus: &str, query: &str) -> Option<f64> {
    let answer: serde_json::Value = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}
