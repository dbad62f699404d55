//! The ingest API over HTTP against a running node and the real broker: batches with partial
//! failures, gzip bodies and decompression bombs, CORS, key rotation through a sites-file
//! reload, rate limits, signed requests with a replay window, and the visitor's country.

use std::io::Write;
use std::time::{Duration, Instant};

use ta_edge::EdgeNode;
use ta_shared::signature;

use crate::*;

const SITES_API: &str = r#"
[[site]]
id = "site-1"
api_keys = ["k1"]
allowed_origins = ["https://example.com"]

[[site]]
id = "shop"
api_keys = ["k-shop"]
allowed_origins = ["https://shop.example.org"]

[[site]]
id = "server"
api_keys = ["k-server"]
hmac_secret = "server-secret-for-the-ingest-api-tests"
require_signature = true

[[site]]
id = "limited"
api_keys = ["k-limited"]
rate_limit_per_sec = 1
rate_limit_burst = 3
"#;

async fn start(
    test: &str,
    sites: &str,
    tune: impl FnOnce(&mut EdgeConfig),
) -> (EdgeNode, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic(test);
    let mut cfg = config(dir.path(), brokers(), &topic);
    std::fs::write(cfg.sites_file.as_ref().unwrap(), sites).unwrap();
    tune(&mut cfg);
    (EdgeNode::start(cfg).await.unwrap(), topic, dir)
}

fn event(site: &str, path: &str) -> String {
    format!(r#"{{"site_id":"{site}","event_name":"pageview","url":"https://example.com{path}"}}"#)
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[async_std::test]
async fn a_batch_reports_every_event_by_index_and_only_accepted_ones_reach_kafka() {
    let (node, topic, _dir) = start("batch", SITES_API, |_| {}).await;
    let addr = node.local_addr();
    let body = format!(
        "[{}, {}, {}, {}]",
        event("site-1", "/a"),
        r#"{"site_id":"site-1","event_name":"pageview","url":"/relative"}"#,
        event("shop", "/wrong-site-for-this-key"),
        event("site-1", "/b"),
    );
    let answer = http(
        addr,
        "POST",
        "/v1/batch",
        &[("X-TA-API-Key", "k1"), ("User-Agent", UA), JSON],
        &body,
    )
    .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let json = answer.json();
    assert_eq!(
        (json["accepted"].as_u64(), json["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    let results = json["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["status"], "rejected");
    assert_eq!(results[1]["field"], "url");
    assert_eq!(results[1]["index"], 1);
    assert_eq!(results[2]["error"], "invalid_api_key");
    assert_eq!(results[3]["status"], "accepted");
    let ids: Vec<String> = [&results[0], &results[3]]
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    let read = wait_for_ids(brokers(), &topic, &ids, Duration::from_secs(30)).await;
    let mut paths: Vec<String> = read.values().flatten().map(|e| e.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/a", "/b"],
        "only the accepted events are in the topic"
    );

    // Whole-request failures are not per-event: too many events, not an array, all refused.
    let too_many = format!("[{}]", vec![event("site-1", "/x"); 101].join(","));
    let big = http(
        addr,
        "POST",
        "/v1/batch",
        &[("X-TA-API-Key", "k1"), ("User-Agent", UA), JSON],
        &too_many,
    )
    .await;
    assert_eq!(
        (big.status, big.json()["error"].as_str()),
        (413, Some("batch_too_large"))
    );
    let object = http(
        addr,
        "POST",
        "/v1/batch",
        &[("X-TA-API-Key", "k1"), ("User-Agent", UA), JSON],
        &event("site-1", "/x"),
    )
    .await;
    assert_eq!(
        (object.status, object.json()["error"].as_str()),
        (400, Some("bad_json"))
    );
    let all_bad = http(
        addr,
        "POST",
        "/v1/batch",
        &[("X-TA-API-Key", "k1"), ("User-Agent", UA), JSON],
        "[1, 2]",
    )
    .await;
    assert_eq!(all_bad.status, 400, "{all_bad:?}");
    assert_eq!(all_bad.json()["rejected"], 2);
    node.shutdown().await.unwrap();
}

#[async_std::test]
async fn gzip_bodies_are_accepted_and_decompression_bombs_refused() {
    let (node, topic, _dir) = start("gzip", SITES_API, |_| {}).await;
    let addr = node.local_addr();
    let headers = [
        ("X-TA-API-Key", "k1"),
        ("User-Agent", UA),
        ("Content-Type", "text/plain"),
        ("Content-Encoding", "gzip"),
    ];
    let one = http_bytes(
        addr,
        "POST",
        "/v1/collect",
        &headers,
        &gzip(event("site-1", "/gz").as_bytes()),
    )
    .await;
    let batch_body = format!("[{},{}]", event("site-1", "/gz1"), event("site-1", "/gz2"));
    let batch = http_bytes(
        addr,
        "POST",
        "/v1/batch",
        &headers,
        &gzip(batch_body.as_bytes()),
    )
    .await;
    assert_eq!(batch.status, 202, "{batch:?}");
    let mut ids = vec![accepted_id(&one)];
    ids.extend(
        batch.json()["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["event_id"].as_str().unwrap().to_owned()),
    );
    wait_for_ids(brokers(), &topic, &ids, Duration::from_secs(30)).await;

    // 8 MiB of spaces inside valid JSON compress to ~8 KiB: under the 32 KiB wire limit,
    // far over the decompressed one.
    let bomb = gzip(format!("{{\"site_id\":\"site-1\"{}}}", " ".repeat(8 << 20)).as_bytes());
    assert!(bomb.len() < 32 * 1024, "{} bytes", bomb.len());
    let refused = http_bytes(addr, "POST", "/v1/collect", &headers, &bomb).await;
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(refused.json()["error"], "decompressed_too_large");
    let garbage = http_bytes(addr, "POST", "/v1/collect", &headers, b"\x1f\x8b not gzip").await;
    assert_eq!(
        (garbage.status, garbage.json()["error"].as_str()),
        (400, Some("bad_gzip"))
    );
    let br = http(
        addr,
        "POST",
        "/v1/collect",
        &[
            ("X-TA-API-Key", "k1"),
            ("User-Agent", UA),
            ("Content-Encoding", "br"),
            JSON,
        ],
        "{}",
    )
    .await;
    assert_eq!(
        (br.status, br.json()["error"].as_str()),
        (415, Some("unsupported_encoding"))
    );
    // The node is still up and accepting.
    accepted_id(&collect(addr, 1, 1).await);
    node.shutdown().await.unwrap();
}

#[async_std::test]
async fn cors_is_per_site() {
    let (node, _topic, _dir) = start("cors", SITES_API, |_| {}).await;
    let addr = node.local_addr();
    for path in ["/v1/collect", "/v1/batch"] {
        let ok = http(
            addr,
            "OPTIONS",
            path,
            &[
                ("Origin", "https://example.com"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "content-type,x-ta-api-key",
                ),
            ],
            "",
        )
        .await;
        assert_eq!(ok.status, 204, "{ok:?}");
        assert_eq!(
            ok.headers["access-control-allow-origin"],
            "https://example.com"
        );
        assert!(ok.headers["access-control-allow-headers"].contains("X-TA-API-Key"));
        assert!(ok.headers["access-control-allow-methods"].contains("POST"));
    }
    let unknown = http(
        addr,
        "OPTIONS",
        "/v1/collect",
        &[("Origin", "https://evil.example")],
        "",
    )
    .await;
    assert_eq!(unknown.status, 403, "{unknown:?}");
    assert!(!unknown.headers.contains_key("access-control-allow-origin"));

    // site-1's page may post for site-1 ...
    let from_site = http(
        addr,
        "POST",
        "/v1/collect",
        &[
            ("X-TA-API-Key", "k1"),
            ("User-Agent", UA),
            ("Origin", "https://example.com"),
            JSON,
        ],
        &event("site-1", "/c"),
    )
    .await;
    assert_eq!(from_site.status, 202, "{from_site:?}");
    assert_eq!(
        from_site.headers["access-control-allow-origin"],
        "https://example.com"
    );
    // ... but the shop's origin, allowed for another site only, may not.
    let cross = http(
        addr,
        "POST",
        "/v1/collect",
        &[
            ("X-TA-API-Key", "k1"),
            ("User-Agent", UA),
            ("Origin", "https://shop.example.org"),
            JSON,
        ],
        &event("site-1", "/c"),
    )
    .await;
    assert_eq!(
        (cross.status, cross.json()["error"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    node.shutdown().await.unwrap();
}

/// Poll until `f` holds (the reload interval is 1 s in these tests).
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "never: {what}");
        async_std::task::sleep(Duration::from_millis(200)).await;
    }
}

#[async_std::test]
async fn keys_rotate_through_a_sites_file_reload_without_a_restart() {
    let (node, _topic, dir) = start("rotate", "[[site]]\nid='site-1'\napi_keys=['old']\n", |c| {
        c.sites_reload_secs = 1;
    })
    .await;
    let addr = node.local_addr();
    let sites_file = dir.path().join("sites.toml");
    let send = async |key: &str| {
        http(
            addr,
            "POST",
            "/v1/collect",
            &[("X-TA-API-Key", key), ("User-Agent", UA), JSON],
            &event("site-1", "/r"),
        )
        .await
        .status
    };
    assert_eq!(send("old").await, 202);
    assert_eq!(send("new").await, 401);

    // Step 1 of a rotation: both keys valid.
    std::fs::write(
        &sites_file,
        "[[site]]\nid='site-1'\napi_keys=['old','new']\n",
    )
    .unwrap();
    eventually("the new key is accepted", async || send("new").await == 202).await;
    assert_eq!(
        send("old").await,
        202,
        "the old key still works during the rotation"
    );

    // A broken file is refused and the sites in force stay.
    std::fs::write(&sites_file, "[[site]]\nid='site-1'\napi_key=['typo']\n").unwrap();
    eventually("the bad file is reported", async || {
        let m = http(node.metrics_addr(), "GET", "/metrics", &[], "")
            .await
            .body;
        metric(
            &m,
            r#"ta_edge_config_reloads_total{result="error",region="it"}"#,
        ) == Some(1.0)
    })
    .await;
    assert_eq!(send("new").await, 202);

    // Step 2: the old key retired.
    std::fs::write(&sites_file, "[[site]]\nid='site-1'\napi_keys=['new']\n").unwrap();
    eventually("the old key is refused", async || send("old").await == 401).await;
    assert_eq!(send("new").await, 202);
    let m = http(node.metrics_addr(), "GET", "/metrics", &[], "")
        .await
        .body;
    assert_eq!(
        metric(
            &m,
            r#"ta_edge_config_reloads_total{result="ok",region="it"}"#
        ),
        Some(2.0)
    );
    node.shutdown().await.unwrap();
}

#[async_std::test]
async fn a_site_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not() {
    let (node, _topic, _dir) = start("ratelimit", SITES_API, |_| {}).await;
    let addr = node.local_addr();
    let send = async |site: &str, key: &str| {
        http(
            addr,
            "POST",
            "/v1/collect",
            &[("X-TA-API-Key", key), ("User-Agent", UA), JSON],
            &event(site, "/l"),
        )
        .await
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send("limited", "k-limited").await.status);
    }
    assert_eq!(&statuses[..3], [202, 202, 202], "the burst passes");
    let limited = send("limited", "k-limited").await;
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_eq!(limited.headers["retry-after"], "1");
    assert_eq!(limited.json()["error"], "rate_limited");
    for _ in 0..20 {
        assert_eq!(
            send("site-1", "k1").await.status,
            202,
            "other sites are not limited"
        );
    }
    async_std::task::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        send("limited", "k-limited").await.status,
        202,
        "a token came back"
    );
    node.shutdown().await.unwrap();
}

#[async_std::test]
async fn signed_requests_carry_a_timestamp_and_cannot_be_replayed() {
    let (node, topic, _dir) = start("signed", SITES_API, |_| {}).await;
    let addr = node.local_addr();
    let body = r#"{"site_id":"server","event_name":"signup","url":"https://example.com/s","user_id":"u1"}"#;
    let post = async |ts: i64, sig: &str| {
        let ts = ts.to_string();
        http(
            addr,
            "POST",
            "/v1/collect",
            &[
                ("X-TA-API-Key", "k-server"),
                ("X-TA-Timestamp", &ts),
                ("X-TA-Signature", sig),
                ("User-Agent", "billing-service/2.1"),
                JSON,
            ],
            body,
        )
        .await
    };
    let now = chrono::Utc::now().timestamp();
    let sig = format!(
        "sha256={}",
        signature::sign(
            b"server-secret-for-the-ingest-api-tests",
            now,
            body.as_bytes()
        )
    );
    let first = post(now, &sig).await;
    let id = accepted_id(&first);
    let replay = post(now, &sig).await;
    assert_eq!(
        (replay.status, replay.json()["error"].as_str()),
        (401, Some("replayed_signature"))
    );
    let old = now - 3600;
    let stale = post(
        old,
        &signature::sign(
            b"server-secret-for-the-ingest-api-tests",
            old,
            body.as_bytes(),
        ),
    )
    .await;
    assert_eq!(
        (stale.status, stale.json()["error"].as_str()),
        (401, Some("stale_timestamp"))
    );
    let moved = post(now + 1, &sig).await;
    assert_eq!(
        (moved.status, moved.json()["error"].as_str()),
        (401, Some("bad_signature"))
    );
    let unsigned = http(
        addr,
        "POST",
        "/v1/collect",
        &[("X-TA-API-Key", "k-server"), ("User-Agent", UA), JSON],
        body,
    )
    .await;
    assert_eq!(
        (unsigned.status, unsigned.json()["error"].as_str()),
        (401, Some("missing_signature"))
    );
    let read = wait_for_ids(brokers(), &topic, &[id], Duration::from_secs(30)).await;
    assert_eq!(
        read.values().flatten().count(),
        1,
        "only the first request was accepted"
    );
    node.shutdown().await.unwrap();
}

#[async_std::test]
async fn the_country_comes_from_the_cdn_header_or_the_maxmind_database_and_nothing_else_leaves() {
    let dir_db = tempfile::tempdir().unwrap();
    let db = dir_db.path().join("country.mmdb");
    std::fs::write(
        &db,
        ta_tests::mmdb::country_database(&[("203.0.113.0".parse().unwrap(), 24, "DE")]),
    )
    .unwrap();
    let (node, topic, _dir) = start("country", SITES_API, |c| {
        c.country_header = Some("CF-IPCountry".into());
        c.geoip_db = Some(db.clone());
        c.trust_forwarded_for = true;
    })
    .await;
    let addr = node.local_addr();
    let send = async |ip: &str, cdn: Option<&str>, path: &str| {
        let mut headers = vec![
            ("X-TA-API-Key", "k1"),
            ("User-Agent", UA),
            ("X-Forwarded-For", ip),
            JSON,
        ];
        if let Some(c) = cdn {
            headers.push(("CF-IPCountry", c));
        }
        accepted_id(
            &http(
                addr,
                "POST",
                "/v1/collect",
                &headers,
                &event("site-1", path),
            )
            .await,
        )
    };
    let ids = vec![
        send("203.0.113.77", None, "/db").await,
        send("203.0.113.77", Some("JP"), "/header").await,
        send("198.51.100.1", Some("XX"), "/unknown").await,
    ];
    let read = wait_for_ids(brokers(), &topic, &ids, Duration::from_secs(30)).await;
    let by_path: std::collections::BTreeMap<String, String> = read
        .values()
        .flatten()
        .map(|e| (e.path.clone(), e.country.clone()))
        .collect();
    assert_eq!(by_path["/db"], "DE");
    assert_eq!(by_path["/header"], "JP");
    assert_eq!(by_path["/unknown"], "");
    for e in read.values().flatten() {
        let json = String::from_utf8(e.to_json()).unwrap();
        assert!(
            !json.contains("203.0.113") && !json.contains("198.51.100"),
            "{json}"
        );
    }
    node.shutdown().await.unwrap();
}

#[async_std::test]
async fn metrics_are_served_on_the_ops_listener_only_never_on_the_ingest_port() {
    let (node, _topic, _dir) = start("ops_listener", SITES_API, |_| {}).await;
    assert_ne!(node.local_addr(), node.metrics_addr());
    let public = http(node.local_addr(), "GET", "/metrics", &[], "").await;
    assert_eq!(
        public.status, 404,
        "the ingest port lists no site: {}",
        public.body
    );
    let ops = http(node.metrics_addr(), "GET", "/metrics", &[], "").await;
    assert_eq!(ops.status, 200);
    assert!(
        ops.body.contains("ta_edge_events_accepted_total"),
        "{}",
        ops.body
    );
    for addr in [node.local_addr(), node.metrics_addr()] {
        assert_eq!(http(addr, "GET", "/healthz", &[], "").await.status, 200);
        assert_eq!(http(addr, "GET", "/readyz", &[], "").await.status, 200);
    }
}

#[async_std::test]
async fn a_missing_sites_file_is_reported_stale_and_with_fail_closed_every_event_gets_503() {
    for fail_closed in [false, true] {
        let name = format!("stale_{fail_closed}");
        let (node, _topic, dir) = start(&name, SITES_API, |c| {
            c.sites_reload_secs = 1;
            c.sites_fail_closed = fail_closed;
        })
        .await;
        let (addr, ops) = (node.local_addr(), node.metrics_addr());
        let send = async || {
            http(
                addr,
                "POST",
                "/v1/collect",
                &[("X-TA-API-Key", "k1"), ("User-Agent", UA), JSON],
                &event("site-1", "/stale"),
            )
            .await
        };
        let stale = async || {
            let m = http(ops, "GET", "/metrics", &[], "").await.body;
            metric(&m, r#"ta_edge_sites_file_stale{region="it"}"#)
        };
        assert_eq!(stale().await, Some(0.0));
        let file = dir.path().join("sites.toml");
        let kept = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        eventually("the missing file is reported", async || {
            stale().await == Some(1.0)
        })
        .await;
        let answer = send().await;
        if fail_closed {
            assert_eq!(answer.status, 503, "{}", answer.body);
            assert_eq!(answer.json()["error"], "sites_file_stale");
            assert!(answer.headers.contains_key("retry-after"));
        } else {
            assert_eq!(
                answer.status, 202,
                "the sites in force stay: {}",
                answer.body
            );
        }
        std::fs::write(&file, kept).unwrap();
        eventually("the file is good again", async || {
            stale().await == Some(0.0)
        })
        .await;
        assert_eq!(send().await.status, 202);
        node.shutdown().await.unwrap();
    }
}

#[async_std::test]
async fn abuse_limits_one_address_or_one_key_is_refused_with_429_before_its_body_is_read() {
    let (node, _topic, _dir) = start("abuse_limits", SITES_API, |c| {
        c.address_rate_limit = 1;
        c.address_rate_burst = 3;
        c.key_rate_limit = 1;
        c.key_rate_burst = 5;
        // The test speaks for visitors behind one proxy, 127.0.0.1, naming them.
        c.trusted_proxies = ta_edge::config::ProxyList(vec!["127.0.0.1/32".parse().unwrap()]);
    })
    .await;
    let (addr, ops) = (node.local_addr(), node.metrics_addr());
    let send = async |visitor: &str, key: &str, body: &str| {
        http(
            addr,
            "POST",
            "/v1/collect",
            &[
                ("X-TA-API-Key", key),
                ("User-Agent", UA),
                ("X-Forwarded-For", visitor),
                JSON,
            ],
            body,
        )
        .await
    };
    let good = event("site-1", "/a");
    // One address: its burst, then 429 — also for a body that is not even JSON, which shows
    // the refusal comes before the body is parsed.
    for _ in 0..3 {
        assert_eq!(send("198.51.100.1", "k1", &good).await.status, 202);
    }
    let limited = send("198.51.100.1", "k1", "not json at all").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.json()["error"], "address_rate_limited");
    assert_eq!(limited.headers["retry-after"], "1");
    // The client cannot escape by writing the left of the chain (the proxy's right-most entry
    // is the address), nor by adding a `Forwarded` header of its own, which the proxy passes
    // through: only the header the proxies write (TA_FORWARDED_HEADER) is read.
    let spoofed = send("6.6.6.6, 198.51.100.1", "k1", &good).await;
    assert_eq!(spoofed.status, 429, "{}", spoofed.body);
    let forwarded = http(
        addr,
        "POST",
        "/v1/collect",
        &[
            ("X-TA-API-Key", "k1"),
            ("User-Agent", UA),
            ("X-Forwarded-For", "198.51.100.1"),
            ("Forwarded", "for=6.6.6.6;proto=https"),
            JSON,
        ],
        &good,
    )
    .await;
    assert_eq!(forwarded.status, 429, "{}", forwarded.body);
    // Another visitor of the same site is not affected by that address; the key's own limit
    // (burst 5, 3 used) lets two more through, then refuses the key for everyone.
    assert_eq!(send("198.51.100.2", "k1", &good).await.status, 202);
    assert_eq!(send("198.51.100.3", "k1", &good).await.status, 202);
    let key_limited = send("198.51.100.4", "k1", &good).await;
    assert_eq!(key_limited.status, 429);
    assert_eq!(key_limited.json()["error"], "key_rate_limited");
    // Another site's key is its own bucket; a key no site holds is 401 without a body read.
    assert_eq!(
        send("198.51.100.5", "k-shop", &event("shop", "/s"))
            .await
            .status,
        202
    );
    assert_eq!(
        send("198.51.100.6", "nobody-has-it", "not json")
            .await
            .status,
        401
    );
    let m = http(ops, "GET", "/metrics", &[], "").await.body;
    assert_eq!(
        metric(
            &m,
            r#"ta_edge_requests_limited_total{limit="address",region="it"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"ta_edge_requests_limited_total{limit="key",region="it"}"#
        ),
        Some(1.0)
    );
    node.shutdown().await.unwrap();
}

#[async_std::test]
async fn abuse_limits_one_address_cannot_hold_more_than_its_share_of_connections() {
    let (node, _topic, _dir) = start("abuse_connections", SITES_API, |c| {
        c.max_connections_per_address = 3;
    })
    .await;
    let addr = node.local_addr();
    // Three idle connections from 127.0.0.1 are held; the fourth is closed at once.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(async_std::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut fourth = async_std::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = async_std::future::timeout(
        Duration::from_secs(5),
        async_std::io::ReadExt::read(&mut fourth, &mut buf),
    )
    .await
    .expect("the fourth connection is closed, not left hanging");
    assert_eq!(read.unwrap_or(0), 0, "closed without an answer");
    drop(held);
    // Once the held ones are closed, the address may connect again.
    // (The server notices the closes a moment later: until then a new connection is still
    // closed at once, so each try must survive that rather than panic in `http`.)
    eventually("the address connects again", async || {
        async_std::future::timeout(Duration::from_secs(2), async {
            let mut s = async_std::net::TcpStream::connect(addr).await.ok()?;
            async_std::io::WriteExt::write_all(
                &mut s,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await
            .ok()?;
            let mut raw = Vec::new();
            async_std::io::ReadExt::read_to_end(&mut s, &mut raw)
                .await
                .ok()?;
            Some(raw.starts_with(b"HTTP/1.1 200"))
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
    })
    .await;
    let m = http(node.metrics_addr(), "GET", "/metrics", &[], "")
        .await
        .body;
    assert!(
        metric(
            &m,
            r#"ta_edge_connections_refused_per_address_total{region="it"}"#
        ) >= Some(1.0),
        "{m}"
    );
    node.shutdown().await.unwrap();
}

#[async_std::test]
async fn traffic_lists_reload_without_a_restart_and_flagged_events_reach_kafka_marked() {
    let dir_lists = tempfile::tempdir().unwrap();
    let spam_file = dir_lists.path().join("spam.txt");
    let ranges_file = dir_lists.path().join("ranges.txt");
    std::fs::write(&spam_file, "spam.example\n").unwrap();
    // The test's client is 127.0.0.1.
    std::fs::write(&ranges_file, "# test\n192.0.2.0/24\n").unwrap();
    let sites = "[[site]]\nid='site-1'\napi_keys=['k1']\n\
        [[site]]\nid='flagging'\napi_keys=['k-flag']\ndatacenter_traffic='flag'\n";
    let (node, topic, _dir) = start("lists", sites, |c| {
        c.sites_reload_secs = 1;
        c.referrer_spam_file = Some(spam_file.clone());
        c.datacenter_ranges = Some(ranges_file.clone());
    })
    .await;
    let addr = node.local_addr();
    let send = async |key: &str, site: &str, referrer: &str| {
        let body = format!(
            r#"{{"site_id":"{site}","event_name":"pageview","url":"https://example.com/","referrer":"{referrer}"}}"#
        );
        http(
            addr,
            "POST",
            "/v1/collect",
            &[("X-TA-API-Key", key), ("User-Agent", UA), JSON],
            &body,
        )
        .await
        .json()
    };
    let metrics = async || {
        http(node.metrics_addr(), "GET", "/metrics", &[], "")
            .await
            .body
    };
    assert_eq!(
        send("k1", "site-1", "https://a.spam.example/").await["reason"],
        "bot"
    );
    // The operator's file replaced the built-in list: Matomo's domains pass.
    assert_eq!(
        send("k1", "site-1", "https://semalt.com/").await["status"],
        "accepted"
    );
    let m = metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"ta_edge_list_entries{list="referrer_spam",region="it"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, r#"ta_edge_list_entries{list="datacenter",region="it"}"#),
        Some(1.0)
    );

    // A refreshed spam list applies without a restart.
    std::fs::write(&spam_file, "spam.example\nsemalt.com\n").unwrap();
    eventually("the refreshed spam list applies", async || {
        send("k1", "site-1", "https://semalt.com/").await["reason"] == "bot"
    })
    .await;

    // The data-centre list now holds the client: one site drops, the other flags.
    std::fs::write(&ranges_file, "192.0.2.0/24\n127.0.0.0/8\n").unwrap();
    eventually("the refreshed data-centre list applies", async || {
        send("k1", "site-1", "").await["reason"] == "bot"
    })
    .await;
    let flagged = send("k-flag", "flagging", "").await;
    assert_eq!(flagged["status"], "accepted", "{flagged}");
    let id = flagged["event_id"].as_str().unwrap().to_owned();

    // A broken file is reported and the list in force stays.
    std::fs::write(&ranges_file, "127.0.0.0/8\nnot-a-network\n").unwrap();
    eventually("the bad list file is reported", async || {
        metric(
            &metrics().await,
            r#"ta_edge_list_reloads_total{list="datacenter",result="error",region="it"}"#,
        ) == Some(1.0)
    })
    .await;
    assert_eq!(send("k1", "site-1", "").await["reason"], "bot");
    let m = metrics().await;
    // Label order in the exposition is the library's: match the labels, not the string.
    let bots = |reason: &str| -> Option<f64> {
        m.lines()
            .find(|l| {
                l.starts_with("ta_edge_bot_events_total{")
                    && l.contains(r#"site_id="site-1""#)
                    && l.contains(&format!(r#"reason="{reason}""#))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(bots("datacenter"), Some(2.0), "{m}");
    assert_eq!(bots("referrer_spam"), Some(2.0), "{m}");

    // The flagged event reaches Kafka with the edge's property.
    let read = wait_for_ids(
        brokers(),
        &topic,
        std::slice::from_ref(&id),
        Duration::from_secs(30),
    )
    .await;
    let event = read
        .values()
        .flatten()
        .find(|e| e.event_id.to_string() == id)
        .unwrap();
    assert_eq!(
        event
            .props
            .get(ta_shared::site::DATACENTER_PROP)
            .map(String::as_str),
        Some("true")
    );
    node.shutdown().await.unwrap();
}
