//! The authorization matrix: every endpoint of ta-edge and ta-query × {no credential, another
//! site's credential, a revoked credential, the right credential, the admin token}, with the
//! status each must answer — then no secret used anywhere may appear in a log or in metrics.

use std::time::Duration;

use ta_tests::{
    Service, artifacts_dir, base64, clickhouse_url, free_port, hex, kafka_brokers, unique,
    wait_healthy,
};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// Every secret of this test: none may leak.
const KEY_1: &str = "authz-key-site-1-current";
const KEY_1_REVOKED: &str = "authz-key-site-1-rotated-out";
const KEY_2: &str = "authz-key-site-2-current";
const HMAC_1: &str = "authz-hmac-secret-site-1-long-enough-01";
const ADMIN: &str = "authz-admin-token-0001";
const READ_1: &str = "authz-read-site-1-token";
const READ_1_REVOKED: &str = "authz-read-site-1-revoked";
const READ_2: &str = "authz-read-site-2-token";
const SHARE_1: &str = "authz-share-site-1-link";
const SECRETS: [&str; 9] = [
    KEY_1,
    KEY_1_REVOKED,
    KEY_2,
    HMAC_1,
    ADMIN,
    READ_1,
    READ_1_REVOKED,
    READ_2,
    SHARE_1,
];

fn sites(with_revoked: bool) -> String {
    let keys = if with_revoked {
        format!("[\"{KEY_1}\", \"{KEY_1_REVOKED}\"]")
    } else {
        format!("[\"{KEY_1}\"]")
    };
    format!(
        "[[site]]\nid = \"site-1\"\napi_keys = {keys}\nhmac_secret = \"{HMAC_1}\"\n\n\
         [[site]]\nid = \"site-2\"\napi_keys = [\"{KEY_2}\"]\n"
    )
}

fn access(with_revoked: bool) -> String {
    let read_1 = if with_revoked {
        format!("[\"{READ_1}\", \"{READ_1_REVOKED}\"]")
    } else {
        format!("[\"{READ_1}\"]")
    };
    format!(
        "admin_tokens = [\"{ADMIN}\"]\n\n[sites.site-1]\nread_tokens = {read_1}\nshare_links = [\"{SHARE_1}\"]\n\n\
         [sites.site-2]\nread_tokens = [\"{READ_2}\"]\n"
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Credential {
    None,
    OtherSite,
    Revoked,
    Right,
    Admin,
}

const CREDENTIALS: [Credential; 5] = [
    Credential::None,
    Credential::OtherSite,
    Credential::Revoked,
    Credential::Right,
    Credential::Admin,
];

async fn wait_for_log(service: &Service, needle: &str) {
    for _ in 0..100 {
        if service.log_text().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} never logged {needle:?}:\n{}",
        service.name,
        service.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_each_credential_as_it_must_and_no_secret_leaks() {
    let dir = artifacts_dir("authz");
    let (sites_file, access_file) = (dir.join("sites.toml"), dir.join("access.toml"));
    std::fs::write(&sites_file, sites(true)).unwrap();
    std::fs::write(&access_file, access(true)).unwrap();
    let (topic, db) = (unique("authz"), unique("authz"));
    let (edge_port, query_port, loader_port) = (free_port(), free_port(), free_port());
    let edge_metrics_port = free_port();
    let common = [
        ("TA_KAFKA_BROKERS", kafka_brokers()),
        ("TA_KAFKA_TOPIC", topic),
        ("TA_CLICKHOUSE_URL", clickhouse_url()),
        ("TA_CLICKHOUSE_DATABASE", db),
        // Debug logs too: a secret must not leak at any level.
        ("TA_LOG", "debug,rskafka=info,hyper=info,h2=info".to_owned()),
    ];
    let with = |extra: &[(&'static str, String)]| {
        let mut v = common.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let loader = Service::start(
        "ta-loader",
        &with(&[("TA_LOADER_LISTEN", format!("127.0.0.1:{loader_port}"))]),
        &dir,
    );
    wait_healthy(
        &format!("http://127.0.0.1:{loader_port}/healthz"),
        &loader,
        Duration::from_secs(60),
    )
    .await;
    let edge = Service::start(
        "ta-edge",
        &with(&[
            ("TA_EDGE_LISTEN", format!("127.0.0.1:{edge_port}")),
            (
                "TA_EDGE_METRICS_LISTEN",
                format!("127.0.0.1:{edge_metrics_port}"),
            ),
            ("TA_SITES_FILE", sites_file.display().to_string()),
            ("TA_SITES_RELOAD_SECS", "1".into()),
            ("TA_SPOOL_DIR", dir.join("spool").display().to_string()),
        ]),
        &dir,
    );
    let query = Service::start(
        "ta-query",
        &with(&[
            ("TA_QUERY_LISTEN", format!("127.0.0.1:{query_port}")),
            ("TA_QUERY_ACCESS_FILE", access_file.display().to_string()),
            ("TA_QUERY_ACCESS_RELOAD_SECS", "1".into()),
        ]),
        &dir,
    );
    let (edge_url, query_url) = (
        format!("http://127.0.0.1:{edge_port}"),
        format!("http://127.0.0.1:{query_port}"),
    );
    wait_healthy(
        &format!("{edge_url}/healthz"),
        &edge,
        Duration::from_secs(60),
    )
    .await;
    wait_healthy(
        &format!("{query_url}/healthz"),
        &query,
        Duration::from_secs(60),
    )
    .await;

    // Both sides prove the to-be-revoked credentials work, then the operator removes them.
    let http = reqwest::Client::new();
    let collect = |key: &'static str| {
        http.post(format!("{edge_url}/v1/collect"))
            .header("X-TA-API-Key", key)
            .header("User-Agent", UA)
            .header("Content-Type", "application/json")
            .body(r#"{"site_id":"site-1","event_name":"pageview","url":"https://example.com/"}"#)
            .send()
    };
    assert_eq!(collect(KEY_1_REVOKED).await.unwrap().status(), 202);
    let stats = |token: &'static str| {
        http.get(format!(
            "{query_url}/v1/stats/aggregate?site_id=site-1&period=today"
        ))
        .bearer_auth(token)
        .send()
    };
    assert_eq!(stats(READ_1_REVOKED).await.unwrap().status(), 200);
    std::fs::write(&sites_file, sites(false)).unwrap();
    std::fs::write(&access_file, access(false)).unwrap();
    wait_for_log(&edge, "Sites file reloaded").await;
    wait_for_log(&query, "Access file reloaded").await;

    // ta-edge: ingest needs the site's current key; the rest is public.
    let event = r#"{"site_id":"site-1","event_name":"pageview","url":"https://example.com/m"}"#;
    let batch = format!("[{event}]");
    let mut rows = Vec::new();
    // (route, whether it needs the ingest key, its status without one). The ingest port serves
    // no /metrics: it names every site; it is on the ops listener.
    for (method, path, body, needs_key, open) in [
        ("POST", "/v1/collect", event.to_owned(), true, 0),
        ("POST", "/v1/batch", batch, true, 0),
        ("GET", "/t.js", String::new(), false, 200),
        ("GET", "/healthz", String::new(), false, 200),
        ("GET", "/readyz", String::new(), false, 200),
        ("GET", "/metrics", String::new(), false, 404),
    ] {
        for cred in CREDENTIALS {
            let key = match cred {
                Credential::None => None,
                Credential::OtherSite => Some(KEY_2),
                Credential::Revoked => Some(KEY_1_REVOKED),
                Credential::Right => Some(KEY_1),
                // The query side's admin token is not an ingest key.
                Credential::Admin => Some(ADMIN),
            };
            let mut req = http
                .request(method.parse().unwrap(), format!("{edge_url}{path}"))
                .header("User-Agent", UA)
                .header("Content-Type", "application/json")
                .body(body.clone());
            if let Some(k) = key {
                req = req.header("X-TA-API-Key", k);
            }
            let got = req.send().await.unwrap().status().as_u16();
            let want = match (needs_key, cred) {
                (false, _) => open,
                (true, Credential::Right) => 202,
                (true, _) => 401,
            };
            rows.push(format!(
                "edge {method} {path} {cred:?}: {got} (want {want})"
            ));
            assert_eq!(got, want, "ta-edge {method} {path} with {cred:?}");
        }
    }

    // ta-query: every data endpoint needs a credential for the site; the dashboard page, its
    // assets, the OpenAPI document, health and metrics are public.
    let data = [
        "/v1/sites",
        "/v1/stats/aggregate?site_id=site-1&period=7d",
        "/v1/stats/timeseries?site_id=site-1&period=7d",
        "/v1/stats/breakdown?site_id=site-1&period=7d&property=page",
        "/v1/stats/breakdown?site_id=site-1&period=7d&property=page&format=csv",
        "/v1/stats/realtime?site_id=site-1",
        "/v1/metrics/pageviews?site_id=site-1&from=2026-01-01&to=2026-02-01",
        "/v1/metrics/unique-users?site_id=site-1&from=2026-01-01&to=2026-02-01",
        "/v1/metrics/top-pages?site_id=site-1&from=2026-01-01&to=2026-02-01",
    ];
    let public = [
        "/",
        "/assets/dashboard.js",
        "/assets/dashboard.css",
        "/openapi.json",
        "/healthz",
        "/metrics",
    ];
    for path in data.iter().chain(public.iter()) {
        let is_data = data.contains(path);
        for cred in CREDENTIALS {
            let token = match cred {
                Credential::None => None,
                Credential::OtherSite => Some(READ_2),
                Credential::Revoked => Some(READ_1_REVOKED),
                Credential::Right => Some(READ_1),
                Credential::Admin => Some(ADMIN),
            };
            let mut req = http.get(format!("{query_url}{path}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let got = req.send().await.unwrap().status().as_u16();
            let want = match (is_data, cred) {
                (false, _) => 200,
                // /v1/sites lists what the credential may read: site-2's token reads site-2.
                (true, Credential::OtherSite) if *path == "/v1/sites" => 200,
                (true, Credential::None | Credential::Revoked) => 401,
                (true, Credential::OtherSite) => 403,
                (true, Credential::Right | Credential::Admin) => 200,
            };
            rows.push(format!("query GET {path} {cred:?}: {got} (want {want})"));
            assert_eq!(got, want, "ta-query {path} with {cred:?}");
        }
        // The share link reads its site, read-only, without a token.
        if is_data && *path != "/v1/sites" {
            let sep = if path.contains('?') { '&' } else { '?' };
            let got = http
                .get(format!("{query_url}{path}{sep}share={SHARE_1}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(got, 200, "share link on {path}");
        }
    }
    std::fs::write(dir.join("matrix.txt"), rows.join("\n")).unwrap();

    // No secret in any log or metrics exposition, also not base64- or hex-encoded.
    let mut haystacks = vec![
        ("ta-edge log", edge.log_text()),
        ("ta-query log", query.log_text()),
        ("ta-loader log", loader.log_text()),
    ];
    for (name, url) in [
        (
            "ta-edge /metrics",
            format!("http://127.0.0.1:{edge_metrics_port}/metrics"),
        ),
        ("ta-query /metrics", format!("{query_url}/metrics")),
        (
            "ta-loader /metrics",
            format!("http://127.0.0.1:{loader_port}/metrics"),
        ),
    ] {
        haystacks.push((
            name,
            http.get(url).send().await.unwrap().text().await.unwrap(),
        ));
    }
    for secret in SECRETS {
        let encodings = [
            secret.to_owned(),
            hex(secret.as_bytes()),
            base64(secret.as_bytes()),
        ];
        for (name, text) in &haystacks {
            for e in &encodings {
                assert!(
                    !text.contains(e.as_str()),
                    "{name} contains {secret:?} as {e:?}"
                );
            }
        }
    }
}
