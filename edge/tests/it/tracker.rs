//! The tracker script `/t.js` in headless Chromium against a real page on another origin, with
//! the edge producing to the real broker: the events it sends are the ones that arrive.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use ta_edge::EdgeNode;

use crate::*;

/// Serve the test pages on a loopback port until the process ends.
fn serve_pages(edge: std::net::SocketAddr) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tag = |extra: &str| {
        format!(
            r#"<script>window.ta = window.ta || function () {{ (ta.q = ta.q || []).push(arguments) }}; ta("queued_before_load");</script>
<script defer src="http://{edge}/t.js" data-site="site-1" data-key="k1" data-outbound data-downloads {extra}></script>"#
        )
    };
    let page = |title: &str, extra: &str| {
        format!(
            r#"<!doctype html><html><head><title>{title}</title>{}</head><body>
<h1>{title}</h1>
<a id="download" href="/files/report.pdf" onclick="return false">report</a>
<a id="outbound" href="https://other.example/path?q=1#top" onclick="return false">elsewhere</a>
</body></html>"#,
            tag(extra)
        )
    };
    let index = page("Tracker test", "");
    let dnt = page("Do not track", "data-respect-dnt");
    let missing = page("Not found", "data-404");
    let routed = page("Hash-routed app", "data-hash");
    // A page five screens tall, for scroll depth.
    let long = page("Long read", "").replace(
        "</body>",
        r#"<div style="height: 5000px">text</div></body>"#,
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut first = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            // Drain the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = if path.starts_with("/dnt") {
                ("200 OK", &dnt)
            } else if path.starts_with("/missing") {
                ("404 Not Found", &missing)
            } else if path.starts_with("/routed") {
                ("200 OK", &routed)
            } else if path.starts_with("/long") {
                ("200 OK", &long)
            } else {
                ("200 OK", &index)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[async_std::test]
async fn the_tracker_in_chromium_sends_pageviews_spa_navigation_custom_and_link_events() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("tracker");
    let mut cfg = config(dir.path(), brokers(), &topic);
    // The page's origin is only known once its server listens: start the edge with a
    // placeholder and let the sites-file reload pick the real origin up.
    cfg.sites_reload_secs = 1;
    let sites_file = cfg.sites_file.clone().unwrap();
    let node = EdgeNode::start(cfg).await.unwrap();
    let edge = node.local_addr();
    let page_port = serve_pages(edge);
    let origin = format!("http://127.0.0.1:{page_port}");
    std::fs::write(
        &sites_file,
        format!("[[site]]\nid = 'site-1'\napi_keys = ['k1']\nallowed_origins = ['{origin}']\n"),
    )
    .unwrap();
    // Wait for the reload: a body without `url` gets 400 once the origin is allowed (403
    // before), and is not stored either way.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let probe = http(
            edge,
            "POST",
            "/v1/collect?key=k1",
            &[("Origin", &origin), ("Content-Type", "text/plain")],
            r#"{"site_id":"site-1","event_name":"probe"}"#,
        )
        .await;
        if probe.status == 400 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sites file never reloaded: {probe:?}"
        );
        async_std::task::sleep(Duration::from_millis(200)).await;
    }

    let script = http(edge, "GET", "/t.js", &[], "").await;
    assert_eq!(script.status, 200);
    assert!(script.headers["content-type"].starts_with("application/javascript"));
    assert!(
        script.body.len() < 8 * 1024,
        "a few KB: {}",
        script.body.len()
    );

    let screenshots = ta_tests::browser::artifacts_dir();
    let result = ta_tests::browser::run(
        "tracker.js",
        &serde_json::json!({"page": origin, "screenshots": screenshots}),
    );
    assert_eq!(result["storage"]["cookie"], "");
    assert_eq!(result["storage"]["local"], 0);
    assert_eq!(result["storage"]["session"], 0);
    assert_eq!(result["cookies"], 0, "the tracker sets no cookie");
    assert!(screenshots.join("tracker-page.png").exists());
    let sent = result["sent"].as_array().unwrap();
    assert!(
        sent.iter().all(|r| !r["body"]
            .as_str()
            .unwrap_or("")
            .contains("should_not_be_sent")),
        "the DNT page sent nothing: {sent:?}"
    );

    // What reached Kafka: the main page's nine events, the 404 page's three, the hash-routed
    // page's three, the long page's two, and engagement events; nothing from the DNT page,
    // nothing from the headless user agent (a bot).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (events, engagement) = loop {
        let read = read_topic(brokers(), &topic).await;
        let (engagement, events): (Vec<EnrichedEvent>, Vec<EnrichedEvent>) = read
            .into_values()
            .flatten()
            .partition(|e| e.event_name == "engagement");
        let left_long = engagement.iter().any(|e| e.path == "/long");
        if (events.len() >= 17 && left_long) || std::time::Instant::now() > deadline {
            break (events, engagement);
        }
        async_std::task::sleep(Duration::from_millis(300)).await;
    };
    check_engagement(&engagement, &result);
    let mut seen: Vec<(String, String, BTreeMap<String, String>)> = events
        .iter()
        .map(|e| (e.event_name.clone(), e.path.clone(), e.props.clone()))
        .collect();
    seen.sort();
    let props = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut expected = vec![
        (
            "file_download".to_owned(),
            "/app/settings".to_owned(),
            props(&[("url", &format!("{origin}/files/report.pdf"))]),
        ),
        (
            "outbound_link".to_owned(),
            "/app/settings".to_owned(),
            props(&[("url", "https://other.example/path?q=1")]),
        ),
        ("pageview".to_owned(), "/".to_owned(), props(&[])),
        (
            "pageview".to_owned(),
            "/app/settings".to_owned(),
            props(&[]),
        ),
        ("queued_before_load".to_owned(), "/".to_owned(), props(&[])),
        (
            "signup".to_owned(),
            "/app/settings".to_owned(),
            props(&[("plan", "pro"), ("seats", "3")]),
        ),
        (
            "purchase".to_owned(),
            "/app/settings".to_owned(),
            props(&[("plan", "pro")]),
        ),
        (
            "purchase".to_owned(),
            "/app/settings".to_owned(),
            props(&[]),
        ),
        (
            "purchase_bad".to_owned(),
            "/app/settings".to_owned(),
            props(&[]),
        ),
        // data-404: the pageview, then the "404" event, on the missing page.
        (
            "queued_before_load".to_owned(),
            "/missing".to_owned(),
            props(&[]),
        ),
        ("pageview".to_owned(), "/missing".to_owned(), props(&[])),
        ("404".to_owned(), "/missing".to_owned(), props(&[])),
        // data-hash: the route is the page (its own query dropped); a hash change to another
        // route navigates, setting the same route again does not.
        (
            "queued_before_load".to_owned(),
            "/routed#/users/7".to_owned(),
            props(&[]),
        ),
        (
            "pageview".to_owned(),
            "/routed#/users/7".to_owned(),
            props(&[]),
        ),
        (
            "pageview".to_owned(),
            "/routed#/settings".to_owned(),
            props(&[]),
        ),
        (
            "queued_before_load".to_owned(),
            "/long".to_owned(),
            props(&[]),
        ),
        ("pageview".to_owned(), "/long".to_owned(), props(&[])),
    ];
    expected.sort();
    assert_eq!(seen, expected, "browser saw: {}", result["answers"]);
    // Revenue reached Kafka exactly; the refused amount was dropped with a warning.
    let mut revenue: Vec<(&str, i64, &str)> = events
        .iter()
        .map(|e| {
            (
                e.event_name.as_str(),
                e.revenue_e4,
                e.revenue_currency.as_str(),
            )
        })
        .filter(|(name, _, _)| name.starts_with("purchase"))
        .collect();
    revenue.sort();
    assert_eq!(
        revenue,
        [
            ("purchase", 50_000, "USD"),
            ("purchase", 199_000, "EUR"),
            ("purchase_bad", 0, "")
        ]
    );
    assert!(
        result["answers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["console"]
                .as_str()
                .is_some_and(|c| c.contains("revenue needs"))),
        "{}",
        result["answers"]
    );
    let visitors: std::collections::BTreeSet<u64> = events.iter().map(|e| e.visitor_hash).collect();
    assert_eq!(visitors.len(), 1, "one browser, one visitor");
    assert!(
        events
            .iter()
            .all(|e| e.browser == "Chrome" && e.host == "127.0.0.1")
    );

    let metrics = http(node.metrics_addr(), "GET", "/metrics", &[], "")
        .await
        .body;
    let bots: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ta_edge_bot_events_total{") && l.contains(r#"site_id="site-1""#))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(
        bots >= 1.0,
        "the headless user agent was counted as a bot:\n{metrics}"
    );
    node.shutdown().await.unwrap();
}

/// The engagement events the browser sent: one for each page left by a navigation (the main
/// page's `/` by `pushState`, the routed app's first route by a hash change, the long page by
/// closing its tab), the long page's with the time it was read and how far it was scrolled; any
/// other (a page hidden when the browser closed) of a page that was shown.
fn check_engagement(engagement: &[EnrichedEvent], result: &serde_json::Value) {
    let paths: BTreeSet<&str> = engagement.iter().map(|e| e.path.as_str()).collect();
    for left in ["/", "/routed#/users/7", "/long"] {
        assert!(
            paths.contains(left),
            "no engagement for {left}: {engagement:?}, browser: {}",
            result["answers"]
        );
    }
    let shown = [
        "/",
        "/app/settings",
        "/missing",
        "/routed#/users/7",
        "/routed#/settings",
        "/long",
    ];
    for e in engagement {
        assert!(shown.contains(&e.path.as_str()), "{e:?}");
        assert!(e.props.is_empty() && e.revenue_currency.is_empty(), "{e:?}");
        assert!(e.engaged_ms <= 60_000 && e.scroll_depth <= 100, "{e:?}");
    }
    let long: Vec<&EnrichedEvent> = engagement.iter().filter(|e| e.path == "/long").collect();
    assert_eq!(
        long.len(),
        1,
        "left once, reported once (pagehide and hidden both fire): {long:?}"
    );
    // Read for 1.5 s after load (the load counts as activity), scrolled half-way down a page
    // five screens tall: about 57 % seen.
    assert!(
        (1_400..=15_000).contains(&long[0].engaged_ms),
        "{:?}",
        long[0]
    );
    assert!((45..=75).contains(&long[0].scroll_depth), "{:?}", long[0]);
    // Short pages are seen whole.
    let home = engagement.iter().find(|e| e.path == "/").unwrap();
    assert_eq!(home.scroll_depth, 100, "{home:?}");
}
