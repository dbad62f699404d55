//! Access control (every endpoint, every kind of credential), share-link revocation, and the
//! answer cache.

use std::time::Duration;

use ta_central::QueryConfig;
use ta_central::query::{QueryState, ROUTES};

use crate::stats_model::{ACCESS, admin, get_as, seeded, serve, serve_state};

/// A sample query for each data route, for `site`.
fn data_routes(site: &str) -> Vec<String> {
    ROUTES
        .iter()
        // The admin API and the snapshot have their own matrix (admin.rs).
        .filter(|r| {
            r.starts_with("/v1/")
                && **r != "/v1/sites"
                && !r.starts_with("/v1/admin/")
                && !r.starts_with("/v1/registry/")
        })
        .map(|r| {
            let extra = if r.ends_with("breakdown") {
                "&property=page"
            } else if r.ends_with("funnel") {
                "&funnel=pro"
            } else {
                ""
            };
            format!("{r}?site_id={site}{extra}")
        })
        .collect()
}

#[tokio::test]
async fn a_credential_for_one_site_never_reads_another_on_any_endpoint() {
    let s = seeded().await;
    let base = serve(&s.config).await;
    let client = reqwest::Client::new();
    let routes = data_routes("site-1");
    assert_eq!(routes.len(), 12, "every data endpoint is covered");
    for route in &routes {
        let url = format!("{base}{route}");
        let other = url.replace("site-1", "site-2");
        // No credential, a wrong one, an ingest key: 401.
        let res = client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 401, "{route}");
        assert!(res.headers().contains_key("www-authenticate"));
        for wrong in ["nope-nope-nope", "dev-key-site-1", "test-share-site-1"] {
            assert_eq!(get_as(wrong, &url).await.0, 401, "{route} with {wrong}");
        }
        // Site tokens read their own site only.
        assert_eq!(get_as("test-read-site-1", &url).await.0, 200, "{route}");
        assert_eq!(get_as("test-read-site-1", &other).await.0, 403, "{route}");
        assert_eq!(get_as("test-read-site-2", &url).await.0, 403, "{route}");
        assert_eq!(get_as("test-read-site-2", &other).await.0, 200, "{route}");
        // Share links likewise, and the admin reads both.
        let share = |u: &str, id: &str| format!("{u}&share={id}");
        assert_eq!(
            client
                .get(share(&url, "test-share-site-1"))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{route}"
        );
        assert_eq!(
            client
                .get(share(&other, "test-share-site-1"))
                .send()
                .await
                .unwrap()
                .status(),
            403,
            "{route}"
        );
        assert_eq!(admin(&url).await.0, 200, "{route}");
        assert_eq!(admin(&other).await.0, 200, "{route}");
    }
    // The site list shows each credential its own sites.
    assert_eq!(
        get_as("test-read-site-2", &format!("{base}/v1/sites"))
            .await
            .1["sites"],
        serde_json::json!(["site-2"])
    );
    assert_eq!(
        admin(&format!("{base}/v1/sites")).await.1["sites"],
        serde_json::json!(["empty-site", "site-1", "site-2"])
    );
    assert_eq!(
        client
            .get(format!("{base}/v1/sites"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn deleting_a_share_link_from_the_access_file_revokes_it() {
    let s = seeded().await;
    let path = std::env::temp_dir().join(format!("ta-access-{:08x}.toml", rand::random::<u32>()));
    std::fs::write(&path, ACCESS).unwrap();
    let config = QueryConfig {
        access_file: Some(path.clone()),
        ..s.config.clone()
    };
    let state = QueryState::new(&config).unwrap();
    let _watch = state.access.watch(
        path.clone(),
        Duration::from_millis(100),
        ta_central::query::access::Reload {
            dev: false,
            fail_closed: false,
            stale: state.metrics.access_file_stale.clone(),
        },
    );
    let base = serve_state(state).await;
    let url = format!("{base}/v1/stats/aggregate?site_id=site-1&share=test-share-site-1");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    std::fs::write(
        &path,
        ACCESS.replace("share_links = [\"test-share-site-1\"]", ""),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = reqwest::get(&url).await.unwrap().status();
        if status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "share link still valid: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Cached answers are not served to a revoked link: access is checked before the cache.
    assert_eq!(get_as("test-read-site-1", &url).await.0, 200);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_broken_access_file_is_reported_stale_and_with_fail_closed_refuses_everyone() {
    let s = seeded().await;
    for fail_closed in [false, true] {
        let path =
            std::env::temp_dir().join(format!("ta-access-{:08x}.toml", rand::random::<u32>()));
        std::fs::write(&path, ACCESS).unwrap();
        let config = QueryConfig {
            access_file: Some(path.clone()),
            ..s.config.clone()
        };
        let state = QueryState::new(&config).unwrap();
        let stale = state.metrics.access_file_stale.clone();
        let _watch = state.access.watch(
            path.clone(),
            Duration::from_millis(100),
            ta_central::query::access::Reload {
                dev: false,
                fail_closed,
                stale: stale.clone(),
            },
        );
        let base = serve_state(state).await;
        let url = format!("{base}/v1/stats/aggregate?site_id=site-1");
        assert_eq!(get_as("test-read-site-1", &url).await.0, 200);
        std::fs::write(&path, "admin_tokens = [\"unterminated").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stale.get() != 1 {
            assert!(std::time::Instant::now() < deadline, "never reported stale");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let want = if fail_closed { 401 } else { 200 };
        assert_eq!(
            get_as("test-read-site-1", &url).await.0,
            want,
            "fail_closed = {fail_closed}"
        );
        std::fs::write(&path, ACCESS).unwrap();
        while stale.get() != 0 {
            assert!(
                std::time::Instant::now() < deadline + Duration::from_secs(5),
                "never fresh again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(get_as("test-read-site-1", &url).await.0, 200);
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn a_new_event_shows_in_today_within_the_short_ttl_and_hits_are_counted() {
    let s = seeded().await;
    let config = QueryConfig {
        cache_recent_ttl_ms: 300,
        ..s.config.clone()
    };
    let base = serve(&config).await;
    let url = format!("{base}/v1/stats/aggregate?site_id=site-2&period=today");
    let first = admin(&url).await.1["results"]["pageviews"]["value"]
        .as_u64()
        .unwrap();
    let db = config.clickhouse.client();
    let mut insert = db
        .insert::<ta_central::store::EventRow>("events")
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp() as u32;
    insert
        .write(&crate::sample_row("site-2", "/today", 4242, now - 1, 9_999))
        .await
        .unwrap();
    insert.end().await.unwrap();
    let cached = admin(&url).await.1["results"]["pageviews"]["value"]
        .as_u64()
        .unwrap();
    assert_eq!(cached, first, "served from the cache within the TTL");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fresh = admin(&url).await.1["results"]["pageviews"]["value"]
        .as_u64()
        .unwrap();
    assert_eq!(fresh, first + 1, "visible once the short TTL passed");
    let metrics = ta_tests::get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"ta_query_cache_requests_total{endpoint="aggregate",result="hit"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ta_query_cache_requests_total{endpoint="aggregate",result="miss"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("ta_query_cache_bytes "), "{metrics}");
}

#[tokio::test]
async fn every_parameter_that_changes_the_answer_is_in_the_cache_key() {
    let s = seeded().await;
    let cached = serve(&s.config).await;
    let uncached = serve(&QueryConfig {
        cache_recent_ttl_ms: 0,
        cache_settling_ttl_secs: 0,
        cache_past_ttl_secs: 0,
        cache_realtime_ttl_ms: 0,
        ..s.config.clone()
    })
    .await;
    let range = "site_id=site-1&period=custom&from=2025-10-20&to=2025-11-02";
    let variants = [
        format!("aggregate?{range}"),
        format!("aggregate?{range}&filter=page:is:/pricing"),
        format!("aggregate?{range}&filter=page:is_not:/pricing"),
        format!("aggregate?{range}&filter=page:contains:pricing"),
        format!("aggregate?{range}&filter=prop.plan:is:pro"),
        format!("aggregate?{range}&timezone=Asia/Tokyo"),
        format!("aggregate?{range}&compare=previous_period"),
        "aggregate?site_id=site-2&period=custom&from=2025-10-20&to=2025-11-02".to_owned(),
        format!("timeseries?{range}&interval=week"),
        format!("timeseries?{range}&interval=day"),
        format!("breakdown?{range}&property=page"),
        format!("breakdown?{range}&property=page&limit=2"),
        format!("breakdown?{range}&property=page&limit=2&page=2"),
        format!("breakdown?{range}&property=entry_page"),
        format!("breakdown?{range}&property=prop.plan"),
    ];
    // Warm the cache with every variant, then each cached answer must be that variant's own.
    for v in &variants {
        admin(&format!("{cached}/v1/stats/{v}")).await;
    }
    for v in &variants {
        let hit = admin(&format!("{cached}/v1/stats/{v}")).await.1;
        let fresh = admin(&format!("{uncached}/v1/stats/{v}")).await.1;
        assert_eq!(hit, fresh, "{v}");
    }
    let metrics = reqwest::get(format!("{cached}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        ta_tests::metric_sum(&metrics, "ta_query_cache_requests_total"),
        2.0 * variants.len() as f64
    );
    assert!(
        metrics.contains(r#"ta_query_cache_requests_total{endpoint="breakdown",result="miss"} 5"#),
        "{metrics}"
    );
}
