//! Sites managed centrally, end to end (issue 19): ta-query's registry and admin API, two
//! edges and a loader following its signed snapshot over TLS, the real broker and ClickHouse.
//!
//! Three ta-query processes share one registry file, as a deployment may run them: one serves
//! the snapshot over HTTPS (what edges and the loader follow), one the admin API on loopback
//! (the test's reqwest speaks plain HTTP only), one reads stats (it learns of revocations
//! through the registry's revision, within `TA_QUERY_ACCESS_RELOAD_SECS`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ta_tests::tls::TestCerts;
use ta_tests::{
    Service, artifacts_dir, binary, clickhouse_url, free_port, kafka_brokers, metric_sum, unique,
    wait_healthy,
};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// `ta-query admin …` on `registry`; its standard output, trimmed.
fn admin_cli(registry: &Path, key: &Path, args: &[&str]) -> String {
    let out = Command::new(binary("ta-query"))
        .arg("admin")
        .args(args)
        .env("TA_QUERY_REGISTRY", registry)
        .env("TA_QUERY_REGISTRY_SIGNING_KEY", key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ta-query admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn collect(edge: &str, site: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{edge}/v1/collect"))
        .header("X-TA-API-Key", key)
        .header("User-Agent", UA)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"site_id":"{site}","event_name":"pageview","url":"https://{site}.example/"}}"#
        ))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Poll `check` every 200 ms until it holds; how long that took (panics after `within`).
async fn until<F, Fut>(what: &str, within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within {within:?}");
}

async fn admin(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let res = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

struct Edge {
    region: String,
    service: Service,
    url: String,
    metrics: String,
}

fn start_edge(name: &str, dir: &Path, registry_url: &str, common: &[(&str, String)]) -> Edge {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("spool"));
    // A snapshot cached by an earlier run was signed with another key.
    if name != "edge-tampered" {
        let _ = std::fs::remove_file(dir.join("snapshot.json"));
    }
    let (port, metrics) = (free_port(), free_port());
    let mut env = common.to_vec();
    env.extend([
        ("TA_EDGE_LISTEN", format!("127.0.0.1:{port}")),
        ("TA_EDGE_METRICS_LISTEN", format!("127.0.0.1:{metrics}")),
        ("TA_TRUST_FORWARDED_FOR", "true".into()),
        ("TA_EDGE_REGION", name.into()),
        ("TA_SPOOL_DIR", dir.join("spool").display().to_string()),
        ("TA_REGISTRY_URL", registry_url.to_owned()),
        (
            "TA_REGISTRY_CACHE_FILE",
            dir.join("snapshot.json").display().to_string(),
        ),
    ]);
    Edge {
        region: name.to_owned(),
        service: Service::start("ta-edge", &env, &dir),
        url: format!("http://127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{metrics}"),
    }
}

async fn fetches(edge: &Edge, outcome: &str) -> f64 {
    let text = ta_tests::get_text(&format!("{}/metrics", edge.metrics)).await;
    metric_sum(
        &text,
        &format!(
            "ta_edge_registry_fetches_total{{outcome=\"{outcome}\",region=\"{}\"}}",
            edge.region
        ),
    )
}

fn start_query(name: &str, dir: &Path, port: u16, env: &[(&str, String)]) -> Service {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = env.to_vec();
    all.push(("TA_QUERY_LISTEN", format!("127.0.0.1:{port}")));
    Service::start("ta-query", &all, &dir)
}

#[tokio::test]
async fn sites_keys_and_share_links_follow_the_registry_to_two_edges_and_the_loader() {
    let dir = artifacts_dir("registry");
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let certs = TestCerts::generate(&state.join("certs"));
    let registry = state.join("registry.db");
    let key = state.join("signing.pk8");
    let public_key = admin_cli(&registry, &key, &["keygen", "--out", key.to_str().unwrap()])
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert_eq!(public_key.len(), 44, "{public_key}");
    let admin_token = admin_cli(
        &registry,
        &key,
        &["create-credential", "--kind", "admin", "--label", "e2e"],
    );
    let edge_token = admin_cli(
        &registry,
        &key,
        &["create-credential", "--kind", "edge", "--label", "edges"],
    );
    let token_file = state.join("edge-token");
    std::fs::write(&token_file, format!("{edge_token}\n")).unwrap();

    let topic = unique("registry");
    let database = unique("registry");
    let (tls_port, admin_port, read_port) = (free_port(), free_port(), free_port());
    let query_env = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("TA_CLICKHOUSE_URL", clickhouse_url()),
            ("TA_CLICKHOUSE_DATABASE", database.clone()),
            ("TA_CLICKHOUSE_USER", "ta_query".into()),
            ("TA_QUERY_REGISTRY", registry.display().to_string()),
            ("TA_QUERY_REGISTRY_SIGNING_KEY", key.display().to_string()),
            ("TA_QUERY_ACCESS_RELOAD_SECS", "1".into()),
        ];
        env.extend(extra);
        env
    };
    let tls_env = query_env(vec![
        ("TA_QUERY_TLS_CERT", certs.server_cert.display().to_string()),
        ("TA_QUERY_TLS_KEY", certs.server_key.display().to_string()),
    ]);
    let mut central = start_query("query-tls", &dir, tls_port, &tls_env);
    let central_admin = start_query("query-admin", &dir, admin_port, &query_env(vec![]));
    let reader = start_query("query-read", &dir, read_port, &query_env(vec![]));
    let admin_url = format!("http://127.0.0.1:{admin_port}");
    let read_url = format!("http://127.0.0.1:{read_port}");
    wait_healthy(
        &format!("{admin_url}/healthz"),
        &central_admin,
        Duration::from_secs(30),
    )
    .await;
    wait_healthy(
        &format!("{read_url}/healthz"),
        &reader,
        Duration::from_secs(30),
    )
    .await;

    let registry_url = format!("https://127.0.0.1:{tls_port}");
    let follow = vec![
        ("TA_KAFKA_BROKERS", kafka_brokers()),
        ("TA_KAFKA_TOPIC", topic.clone()),
        ("TA_REGISTRY_TOKEN_FILE", token_file.display().to_string()),
        ("TA_REGISTRY_PUBLIC_KEY", public_key.clone()),
        ("TA_REGISTRY_CA_FILE", certs.ca.display().to_string()),
        ("TA_LOG", "info,rskafka=warn".into()),
    ];
    let loader_port = free_port();
    let mut loader_env = follow.clone();
    loader_env.extend([
        ("TA_REGISTRY_URL", registry_url.clone()),
        ("TA_CLICKHOUSE_URL", clickhouse_url()),
        ("TA_CLICKHOUSE_DATABASE", database.clone()),
        ("TA_CLICKHOUSE_USER", "ta_loader".into()),
        ("TA_LOADER_LISTEN", format!("127.0.0.1:{loader_port}")),
        ("TA_LOADER_BATCH_MAX_WAIT_MS", "200".into()),
        (
            "TA_REGISTRY_CACHE_FILE",
            state.join("loader-snapshot.json").display().to_string(),
        ),
    ]);
    let loader = Service::start("ta-loader", &loader_env, &dir);
    let edges = [
        start_edge("edge-eu", &dir, &registry_url, &follow),
        start_edge("edge-us", &dir, &registry_url, &follow),
    ];
    for e in &edges {
        wait_healthy(
            &format!("{}/readyz", e.url),
            &e.service,
            Duration::from_secs(60),
        )
        .await;
    }
    wait_healthy(
        &format!("http://127.0.0.1:{loader_port}/healthz"),
        &loader,
        Duration::from_secs(60),
    )
    .await;

    // 1. A site created through the admin API is accepted at both edges within 10 s.
    let (s, created) = admin(
        &admin_url,
        &admin_token,
        reqwest::Method::POST,
        "/v1/admin/sites",
        json!({"id": "reg-shop", "allowed_origins": ["*"]}),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let first_key = created["site"]["ingest_keys"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut took = Vec::new();
    for e in &edges {
        took.push(
            until("the new site accepted", Duration::from_secs(10), || async {
                collect(&e.url, "reg-shop", &first_key).await == 202
            })
            .await,
        );
    }
    println!("new site accepted at both edges after {took:?}");

    // 2. The loader stores its events; a forged record of a site the registry does not know
    // (as a leaked broker credential could produce) is a dead letter.
    let mut forged = ta_shared::testing::event(1, chrono::Utc::now().timestamp_millis());
    forged.site_id = "forged-site".into();
    ta_tests::infra::produce(&kafka_brokers(), &topic, 3, vec![forged.to_json()]).await;
    let ch = clickhouse_url();
    until(
        "events of reg-shop loaded",
        Duration::from_secs(30),
        || async {
            ta_tests::infra::clickhouse_number(
                &ch,
                &database,
                "SELECT count() FROM events WHERE site_id = 'reg-shop'",
            )
            .await
            .is_some_and(|n| n >= 2)
        },
    )
    .await;
    until("the forged record dead-lettered", Duration::from_secs(30), || async {
        ta_tests::infra::clickhouse_number(
            &ch,
            &database,
            "SELECT count() FROM dead_letters WHERE reason LIKE 'unknown_site%' AND raw LIKE '%forged-site%'",
        )
        .await
        == Some(1)
    })
    .await;
    assert_eq!(
        ta_tests::infra::clickhouse_number(
            &ch,
            &database,
            "SELECT count() FROM events WHERE site_id = 'forged-site'"
        )
        .await,
        Some(0)
    );

    // 3. A rotation: both keys work during the grace, the old one is refused at both edges
    // after it.
    let (s, rotated) = admin(
        &admin_url,
        &admin_token,
        reqwest::Method::POST,
        "/v1/admin/sites/reg-shop/rotate-key",
        json!({"grace_secs": 8}),
    )
    .await;
    assert_eq!(s, 200, "{rotated}");
    let new_key = rotated["site"]["ingest_keys"][1]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let grace_ends = rotated["site"]["ingest_keys"][0]["not_after"]
        .as_i64()
        .unwrap();
    for e in &edges {
        until("the new key accepted", Duration::from_secs(10), || async {
            collect(&e.url, "reg-shop", &new_key).await == 202
        })
        .await;
        if chrono::Utc::now().timestamp() < grace_ends - 1 {
            assert_eq!(
                collect(&e.url, "reg-shop", &first_key).await,
                202,
                "old key within the grace"
            );
        }
    }
    for e in &edges {
        until(
            "the old key refused after the grace",
            Duration::from_secs(20),
            || async { collect(&e.url, "reg-shop", &first_key).await == 401 },
        )
        .await;
        assert!(
            chrono::Utc::now().timestamp() >= grace_ends,
            "refused before the grace ended"
        );
        assert_eq!(collect(&e.url, "reg-shop", &new_key).await, 202);
    }

    // 4. A share link read by another ta-query is refused there within its reload interval
    // once revoked.
    let (_, link) = admin(
        &admin_url,
        &admin_token,
        reqwest::Method::POST,
        "/v1/admin/credentials",
        json!({"kind": "share", "sites": ["reg-shop"]}),
    )
    .await;
    let (share, share_id) = (
        link["secret"].as_str().unwrap().to_owned(),
        link["credential"]["id"].as_str().unwrap().to_owned(),
    );
    let shared = format!("{read_url}/v1/sites?share={share}");
    until(
        "the new share link read",
        Duration::from_secs(5),
        || async { reqwest::get(&shared).await.is_ok_and(|r| r.status() == 200) },
    )
    .await;
    let (s, _) = admin(
        &admin_url,
        &admin_token,
        reqwest::Method::DELETE,
        &format!("/v1/admin/credentials/{share_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(s, 204);
    let revoked_after = until(
        "the revoked share link refused",
        Duration::from_secs(3),
        || async { reqwest::get(&shared).await.is_ok_and(|r| r.status() == 401) },
    )
    .await;
    println!("revoked share link refused by the other ta-query after {revoked_after:?}");

    // 5. Central unreachable for a minute: the edges keep accepting known sites; a site
    // created meanwhile arrives once central is back.
    central.kill();
    let unreachable_before = fetches(&edges[0], "unreachable").await;
    let (s, late) = admin(
        &admin_url,
        &admin_token,
        reqwest::Method::POST,
        "/v1/admin/sites",
        json!({"id": "reg-late", "allowed_origins": ["*"]}),
    )
    .await;
    assert_eq!(s, 201, "{late}");
    let late_key = late["site"]["ingest_keys"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let cut = Instant::now();
    while cut.elapsed() < Duration::from_secs(60) {
        for e in &edges {
            assert_eq!(
                collect(&e.url, "reg-shop", &new_key).await,
                202,
                "known site while cut off"
            );
            assert_ne!(
                collect(&e.url, "reg-late", &late_key).await,
                202,
                "no snapshot, no new site"
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!(fetches(&edges[0], "unreachable").await > unreachable_before);
    central = start_query("query-tls", &dir, tls_port, &tls_env);
    for e in &edges {
        until(
            "the late site after central is back",
            Duration::from_secs(20),
            || async { collect(&e.url, "reg-late", &late_key).await == 202 },
        )
        .await;
    }

    // 6. A proxy that alters the snapshot (adds a site, keeps the signature) is refused: the
    // edge behind it keeps its last good snapshot (from its disk) and never accepts the site.
    let proxy = tampering_proxy(
        format!("{admin_url}/v1/registry/snapshot"),
        edge_token.clone(),
    )
    .await;
    let third_dir = dir.join("edge-tampered");
    std::fs::create_dir_all(&third_dir).unwrap();
    std::fs::copy(
        dir.join("edge-eu/snapshot.json"),
        third_dir.join("snapshot.json"),
    )
    .unwrap();
    let plain: Vec<_> = follow
        .iter()
        .filter(|(k, _)| *k != "TA_REGISTRY_CA_FILE")
        .cloned()
        .collect();
    let third = start_edge("edge-tampered", &dir, &proxy, &plain);
    wait_healthy(
        &format!("{}/readyz", third.url),
        &third.service,
        Duration::from_secs(30),
    )
    .await;
    until(
        "the tampered snapshot refused",
        Duration::from_secs(15),
        || async { fetches(&third, "bad_signature").await >= 1.0 },
    )
    .await;
    // Every later poll is refused too (the one `ok` is the cache file read at start).
    let ok = fetches(&third, "ok").await;
    assert!(ok <= 1.0, "{ok}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(fetches(&third, "ok").await, ok);
    assert!(fetches(&third, "bad_signature").await >= 2.0);
    assert_eq!(
        collect(&third.url, "reg-shop", &new_key).await,
        202,
        "last good snapshot in force"
    );
    assert_ne!(collect(&third.url, "forged", "forged-key-0000").await, 202);

    // No secret in any log or metrics.
    for url in [
        format!("{admin_url}/metrics"),
        format!("{read_url}/metrics"),
        format!("{}/metrics", edges[0].metrics),
        format!("{}/metrics", third.metrics),
        format!("http://127.0.0.1:{loader_port}/metrics"),
    ] {
        let text = ta_tests::get_text(&url).await;
        assert!(
            text.contains("_registry_") || text.contains("ta_query_"),
            "{url}"
        );
        for secret in [&admin_token, &edge_token, &share] {
            assert!(!text.contains(secret.as_str()), "a secret in {url}");
        }
    }
    let _ = central.terminate(Duration::from_secs(5));
    let logs: Vec<PathBuf> = [
        "query-tls",
        "query-admin",
        "query-read",
        "edge-eu",
        "edge-us",
        "edge-tampered",
    ]
    .iter()
    .map(|d| dir.join(d))
    .chain([dir.clone()])
    .flat_map(|d| std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()))
    .filter(|p| p.extension().is_some_and(|x| x == "log"))
    .collect();
    assert!(logs.len() >= 7, "{logs:?}");
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        for secret in [&admin_token, &edge_token, &share] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret in {}",
                log.display()
            );
        }
    }
}

#[test]
fn admin_import_copies_today_s_files_once_and_refuses_development_files_outside_dev() {
    let dir = artifacts_dir("registry-import");
    let registry = dir.join("registry.db");
    let _ = std::fs::remove_file(&registry);
    let root = ta_tests::workspace_root();
    let sites = root.join("deploy/config/sites.dev.toml");
    let access = root.join("deploy/config/access.dev.toml");
    let import = |dev: bool| {
        Command::new(binary("ta-query"))
            .args(["admin", "import", "--sites"])
            .arg(&sites)
            .arg("--access")
            .arg(&access)
            .env("TA_QUERY_REGISTRY", &registry)
            .env("TA_DEV", dev.to_string())
            .output()
            .unwrap()
    };
    let refused = import(false);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("development_only"), "{why}");
    let first = import(true);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        out.contains("Imported 3 site(s) and 6 credential(s)"),
        "{out}"
    );
    let again = import(true);
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        out.contains("Imported 0 site(s) and 0 credential(s)") && out.contains("Left alone"),
        "{out}"
    );
}

/// A plain-HTTP server on loopback that fetches the real snapshot from `upstream` and serves it
/// with a site added to the payload, the signature unchanged (what a compromised proxy
/// terminating TLS could do). Its base URL.
async fn tampering_proxy(upstream: String, token: String) -> String {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = conn.read(&mut buf).await;
                let real: Value = reqwest::Client::new()
                    .get(&upstream)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let b64 = base64::engine::general_purpose::STANDARD;
                let mut payload: Value =
                    serde_json::from_slice(&b64.decode(real["payload"].as_str().unwrap()).unwrap())
                        .unwrap();
                let mut forged = payload["sites"][0].clone();
                forged["config"]["id"] = json!("forged");
                forged["config"]["api_keys"] = json!(["forged-key-0000"]);
                forged["key_not_after"] = json!([null]);
                payload["sites"].as_array_mut().unwrap().push(forged);
                let body = json!({
                    "payload": b64.encode(serde_json::to_vec(&payload).unwrap()),
                    "signature": real["signature"],
                })
                .to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}
