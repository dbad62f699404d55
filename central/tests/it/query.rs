//! The stats API served by `ta_central::query::app` over a real ClickHouse.

use ta_central::QueryConfig;
use ta_central::store::{self, EventRow};

use crate::{fresh_db, sample_row};

const DAY: u32 = 1_764_460_800; // 2025-11-30T00:00:00Z

async fn serve(config: QueryConfig) -> String {
    crate::stats_model::serve(&config).await
}

/// The seed endpoints, read with the admin token.
async fn get(url: &str) -> (u16, serde_json::Value) {
    crate::stats_model::admin(url).await
}

async fn seeded() -> (QueryConfig, ta_central::store::Store) {
    let args = fresh_db("query");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    // site-1: 3 visitors; /a ×3, /b ×2, /c ×1 inside the day, plus one event the next day.
    let rows = [
        ("site-1", "/a", 1, DAY + 10),
        ("site-1", "/a", 2, DAY + 20),
        ("site-1", "/a", 3, DAY + 30),
        ("site-1", "/b", 1, DAY + 40),
        ("site-1", "/b", 2, DAY + 50),
        ("site-1", "/c", 1, DAY + 60),
        ("site-1", "/late", 9, DAY + 86_400),
        ("site-2", "/a", 5, DAY + 10),
    ];
    for (i, (site, path, visitor, ts)) in rows.into_iter().enumerate() {
        insert
            .write(&sample_row(site, path, visitor, ts, i as u64))
            .await
            .unwrap();
    }
    let mut custom = sample_row("site-1", "/a", 4, DAY + 70, 99);
    custom.event_name = "signup".into();
    insert.write(&custom).await.unwrap();
    insert.end().await.unwrap();
    (crate::stats_model::unlimited(args), db)
}

#[tokio::test]
async fn seed_endpoints_return_exact_counts_for_the_range() {
    let (config, _db) = seeded().await;
    let base = serve(config).await;
    let range = "site_id=site-1&from=2025-11-30&to=2025-11-30";
    let (s, pv) = get(&format!("{base}/v1/metrics/pageviews?{range}")).await;
    assert_eq!((s, pv["pageviews"].as_u64()), (200, Some(6)));
    let (s, uu) = get(&format!("{base}/v1/metrics/unique-users?{range}")).await;
    assert_eq!(
        (s, uu["unique_users"].as_u64()),
        (200, Some(4)),
        "custom events count as visits"
    );
    let (s, top) = get(&format!("{base}/v1/metrics/top-pages?{range}&limit=2")).await;
    assert_eq!(s, 200);
    assert_eq!(
        top["pages"],
        serde_json::json!([{"path": "/a", "pageviews": 3}, {"path": "/b", "pageviews": 2}])
    );
    let (_, other) = get(&format!(
        "{base}/v1/metrics/pageviews?site_id=site-2&from=2025-11-30&to=2025-11-30"
    ))
    .await;
    assert_eq!(other["pageviews"], 1);
}

#[tokio::test]
async fn bad_parameters_get_400_naming_the_parameter() {
    let (config, _db) = seeded().await;
    let base = serve(config).await;
    for (query, param) in [
        ("from=2025-11-30", "site_id"),
        ("site_id=x%27%20OR%201%3D1--", "site_id"),
        ("site_id=site-1&from=last-week", "from"),
        ("site_id=site-1&limit=0", "limit"),
        ("site_id=site-1&from=2025-12-01&to=2025-11-01", "from"),
    ] {
        let (status, body) = get(&format!("{base}/v1/metrics/top-pages?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["parameter"], param, "{query}: {body}");
    }
}

#[tokio::test]
async fn seed_endpoints_refuse_unknown_parameters_naming_them() {
    let (config, _db) = seeded().await;
    let base = serve(config).await;
    for (path, unknown) in [
        ("pageviews", "sort"),
        ("unique-users", "form"),
        ("top-pages", "period"),
    ] {
        let url = format!("{base}/v1/metrics/{path}?site_id=site-1&{unknown}=1");
        let (status, body) = get(&url).await;
        assert_eq!(status, 400, "{url}");
        assert_eq!(body["parameter"], "query", "{url}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{unknown}`")), "{url}: {body}");
    }
    // Every endpoint still takes the parameters callers send to all three.
    for path in ["pageviews", "unique-users", "top-pages"] {
        let url = format!("{base}/v1/metrics/{path}?site_id=site-1&from=2025-11-30&limit=2");
        assert_eq!(get(&url).await.0, 200, "{url}");
    }
}

#[tokio::test]
async fn answers_are_cached_until_their_ttl_expires() {
    let (mut config, db) = seeded().await;
    // Long enough that the insert below and the second request fit in it on a loaded machine.
    config.cache_recent_ttl_ms = 3_000;
    let base = serve(config).await;
    let url = format!("{base}/v1/metrics/pageviews?site_id=site-2");
    let t0 = std::time::Instant::now();
    let (_, first) = get(&url).await;
    // The cached answer expires 3 s after its query started, so by `answered + 3 s` at the latest.
    let answered = std::time::Instant::now();
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    let now = chrono::Utc::now().timestamp() as u32;
    insert
        .write(&sample_row("site-2", "/new", 77, now - 5, 500))
        .await
        .unwrap();
    insert.end().await.unwrap();
    // The range is open ("up to now"): a second later it is still the same question, answered
    // from the cache (an open bound is keyed as "now", not by the current second).
    tokio::time::sleep(std::time::Duration::from_millis(1_100).saturating_sub(t0.elapsed())).await;
    let (_, cached) = get(&url).await;
    assert_eq!(
        cached["pageviews"], first["pageviews"],
        "served from cache within the TTL"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3_100).saturating_sub(answered.elapsed()))
        .await;
    let (_, fresh) = get(&url).await;
    assert_eq!(
        fresh["pageviews"].as_u64(),
        first["pageviews"].as_u64().map(|n| n + 1)
    );
    let metrics = ta_tests::get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"ta_query_cache_requests_total{endpoint="pageviews",result="hit"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn api_answers_are_never_sniffed_framed_or_stored_and_the_dashboard_keeps_its_policy() {
    let (config, _db) = seeded().await;
    let base = serve(config).await;
    let http = reqwest::Client::new();
    let answered = http
        .get(format!("{base}/v1/metrics/pageviews?site_id=site-2"))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    let refused = http
        .get(format!("{base}/v1/metrics/pageviews?site_id=site-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (answered.status().as_u16(), refused.status().as_u16()),
        (200, 401)
    );
    for res in [&answered, &refused] {
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "private, no-store");
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }
    let page = http.get(format!("{base}/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn ta_query_s_clickhouse_user_reads_but_cannot_write_and_every_statement_is_bounded() {
    let (mut config, _db) = seeded().await;
    config.clickhouse.clickhouse_user = "ta_query".into();
    config.query_max_execution_secs = 7;
    let state = ta_central::query::QueryState::with_access(
        &config,
        ta_central::query::access::AccessList::default(),
    );
    let count = || async {
        state
            .db
            .query("SELECT count() FROM events")
            .fetch_one::<u64>()
            .await
            .unwrap()
    };
    let before = count().await;
    assert!(before > 0);
    for write in [
        "ALTER TABLE events DELETE WHERE 1",
        "TRUNCATE TABLE events",
        "DROP TABLE events",
        "CREATE TABLE x (a UInt8) ENGINE = Memory",
    ] {
        let err = state
            .db
            .query(write)
            .execute()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.to_lowercase().contains("readonly"), "{write}: {err}");
    }
    assert_eq!(count().await, before);
    // The per-statement limits reach ClickHouse with every query of this client.
    let limit: String = state
        .db
        .query("SELECT value FROM system.settings WHERE name = 'max_execution_time'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(limit, "7");
}

#[tokio::test]
async fn a_credential_over_its_rate_or_in_flight_limit_gets_429_with_retry_after() {
    let (mut config, _db) = seeded().await;
    config.credential_rate_limit = 1;
    config.credential_rate_burst = 2;
    let base = serve(config).await;
    let url = format!("{base}/v1/metrics/pageviews?site_id=site-2");
    let http = reqwest::Client::new();
    let send = |token: &'static str| http.get(&url).bearer_auth(token).send();
    assert_eq!(send("test-admin-token").await.unwrap().status(), 200);
    assert_eq!(send("test-admin-token").await.unwrap().status(), 200);
    let limited = send("test-admin-token").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // Another credential is not affected.
    assert_eq!(send("test-read-site-2").await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_erasure_drops_ta_query_s_cached_answers() {
    let (mut config, db) = seeded().await;
    config.cache_past_ttl_secs = 3_600;
    let list = ta_central::query::access::AccessList::parse(
        crate::stats_model::ACCESS,
        std::path::Path::new("test"),
    )
    .unwrap();
    let state = ta_central::query::QueryState::with_access(&config, list);
    let _watch =
        ta_central::query::watch_erasures(state.clone(), std::time::Duration::from_millis(200));
    let base = crate::stats_model::serve_state(state).await;
    // A closed day: cached for an hour.
    let url = format!("{base}/v1/metrics/pageviews?site_id=site-2&from=2025-11-30&to=2025-11-30");
    assert_eq!(get(&url).await.1["pageviews"], 1);
    ta_central::store::lifecycle::erase_site(&db, "site-2")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(&url).await.1["pageviews"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the erased site's answer stayed cached"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
