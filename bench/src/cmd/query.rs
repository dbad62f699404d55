//! `ta-bench query`: ta-query on N (default 10 million) events: uncached p50/p99 per endpoint for a 30-day range of one site,
//! cached latency (client and server side), cached requests/s, and the dashboard's first
//! render in Chromium. The closed days' visit rollups are built first (`ta-loader rollup`, timed).
//!
//! Generates the events straight into the local ClickHouse with one `INSERT … SELECT` over
//! `numbers()` (seconds, not the pipeline), then starts two release `ta-query`s on that
//! database: one with every cache TTL at 0 (each request reaches ClickHouse) and one with the
//! defaults. `--reuse` keeps an already generated database.
//!
//! Data shape: 3 sites, 90 days ending today, visits of 8 events one minute apart, one
//! visitor hash per visit (hashes rotate daily), 5 paths, 4 sources, 4 countries, 3 devices.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::proc::{Proc, free_port};
use crate::report::{Latency, MEMORY, Row, Section, percentile};

#[derive(Debug, Clone, Parser)]
#[command(name = "query", about = "ta-query latency and throughput on N events")]
pub struct Args {
    #[arg(
        long,
        env = "TA_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse: String,
    /// Database to generate into (dropped and recreated unless --reuse finds it complete);
    /// default `ta_bench_query_<events>`.
    #[arg(long)]
    database: Option<String>,
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Keep the database when it already holds `--events` events.
    #[arg(long)]
    reuse: bool,
    /// Uncached requests per endpoint.
    #[arg(long, default_value_t = 40)]
    uncached: usize,
    /// Seconds of the cached throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in flight during the throughput run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[arg(long, default_value = "deploy/config/access.dev.toml")]
    access_file: PathBuf,
    /// Dashboard first renders per ta-query (headless Chromium; 0 skips them).
    #[arg(long, default_value_t = 5)]
    dashboard_runs: usize,
    /// Fail unless every part of the run produced figures (for the harness's quick mode).
    #[arg(long)]
    quick_check: bool,
    /// Cluster mode, read as ta-loader and ta-query read it (they inherit it): the database is
    /// dropped on every node and generated through the Distributed table, synchronously.
    #[arg(long, env = "TA_CLICKHOUSE_CLUSTER")]
    cluster: Option<String>,
    /// Every cluster node's HTTP address (`deploy/local/cluster env`), for the drop and the merge.
    #[arg(long, env = "TA_CLICKHOUSE_CLUSTER_NODES", value_delimiter = ',')]
    cluster_nodes: Vec<String>,
}

const TOKEN: &str = crate::DEV_QUERY_TOKEN;

async fn ch(http: &reqwest::Client, url: &str, db: &str, sql: &str) -> anyhow::Result<String> {
    let res = http
        .post(url)
        .query(&[("database", db)])
        .body(sql.to_owned())
        .send()
        .await?;
    let status = res.status();
    let text = res.text().await?;
    anyhow::ensure!(status.is_success(), "ClickHouse refused {sql}: {text}");
    Ok(text)
}

/// Smallest histogram bound holding half of `endpoint`'s requests (server-side p50 bound).
fn server_p50(metrics: &str, endpoint: &str) -> Option<f64> {
    let prefix = format!("ta_query_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"");
    let count: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "ta_query_request_duration_seconds_count{{endpoint=\"{endpoint}\"}}"
            ))
        })?
        .rsplit_once(' ')?
        .1
        .parse()
        .ok()?;
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .find_map(|rest| {
            let (le, n) = rest.split_once("\"} ")?;
            let n: f64 = n.parse().ok()?;
            (n >= count / 2.0).then(|| le.parse().ok()).flatten()
        })
}

/// Run the benchmark; prints the detailed table and returns the rows for the harness report.
pub async fn run(args: Args) -> anyhow::Result<Vec<Section>> {
    let http = reqwest::Client::new();
    let db = &args
        .database
        .clone()
        .unwrap_or_else(|| format!("ta_bench_query_{}", args.events));
    let today = chrono::Utc::now().date_naive();
    let start = (today - chrono::Days::new(89))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    // On a cluster the generating insert goes through the Distributed table and returns once
    // every shard holds its rows; drops and merges go to each node's local tables.
    let ch_url = match &args.cluster {
        Some(_) => format!(
            "{}/?insert_distributed_sync=1",
            args.clickhouse.trim_end_matches('/')
        ),
        None => args.clickhouse.clone(),
    };
    let nodes: Vec<&str> = match &args.cluster {
        Some(_) => args.cluster_nodes.iter().map(String::as_str).collect(),
        None => vec![args.clickhouse.as_str()],
    };
    anyhow::ensure!(
        !nodes.is_empty(),
        "TA_CLICKHOUSE_CLUSTER is set but TA_CLICKHOUSE_CLUSTER_NODES is empty (eval \"$(deploy/local/cluster env)\")"
    );
    let have = ch(
        &http,
        &ch_url,
        "default",
        &format!("SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'events'"),
    )
    .await?;
    let complete = have.trim() == "1"
        && ch(
            &http,
            &ch_url,
            db,
            "SELECT count() FROM events WHERE event_name != 'engagement'",
        )
        .await?
        .trim()
            == args.events.to_string();
    let migrate = || -> anyhow::Result<()> {
        let status = Command::new(args.bin_dir.join("ta-loader"))
            .arg("migrate")
            .env("TA_CLICKHOUSE_URL", &args.clickhouse)
            .env("TA_CLICKHOUSE_DATABASE", db)
            .env("TA_LOG", "warn")
            .status()?;
        anyhow::ensure!(
            status.success(),
            "ta-loader migrate failed (build with `cargo build --release --bins`)"
        );
        Ok(())
    };
    if !(args.reuse && complete) {
        for node in &nodes {
            ch(
                &http,
                node,
                "default",
                &format!("DROP DATABASE IF EXISTS {db}"),
            )
            .await?;
        }
        migrate()?;
        let t = Instant::now();
        // Event n belongs to visit n / 8; the visit starts at a hashed moment of the 90 days,
        // its events one minute apart.
        let sql = format!(
            "INSERT INTO events (site_id, ts, event_id, event_name, visitor_hash, url, host, path, referrer_host, source, channel, \
             utm_source, utm_campaign, browser, os, device, country, revenue_amount, revenue_currency, props_keys, props_values, received_at, kafka_topic, kafka_partition, kafka_offset) \
             SELECT concat('site-', toString(1 + visit % 3)) AS site, toDateTime({start} + intHash32(visit) % (90 * 86400) + (number % 8) * 60) AS t, \
             toString(number), multiIf(intHash32(number) % 10 = 0, 'signup', intHash32(number) % 10 = 1, 'purchase', 'pageview') AS name, intHash64(visit), \
             concat('https://example.com', p), 'example.com', \
             arrayElement(['/', '/pricing', '/blog/hello-world', '/docs', '/about'], 1 + intHash32(number * 7 + 1) % 5) AS p, \
             arrayElement(['', 'www.google.com', 'news.ycombinator.com', ''], 1 + visit % 4), \
             arrayElement(['', 'Google', 'Hacker News', 'Newsletter'], 1 + visit % 4), \
             arrayElement(['direct', 'organic_search', 'social', 'email'], 1 + visit % 4), \
             if(visit % 4 = 3, 'newsletter', ''), if(visit % 4 = 3, 'autumn', ''), \
             arrayElement(['Firefox', 'Chrome', 'Safari'], 1 + intHash32(visit * 7 + 2) % 3), \
             arrayElement(['Linux', 'Windows', 'macOS', 'iOS'], 1 + intHash32(visit * 7 + 3) % 4), \
             arrayElement(['desktop', 'mobile', 'tablet'], 1 + intHash32(visit * 7 + 4) % 3), \
             arrayElement(['DE', 'FR', 'US', 'GB'], 1 + intHash32(visit * 7 + 5) % 4), \
             if(name = 'purchase', toDecimal64(concat(toString(intHash32(number * 3) % 500), '.', toString(number % 100)), 4), toDecimal64('0', 4)), \
             if(name = 'purchase', if(visit % 3 = 0, 'USD', 'EUR'), ''), \
             ['plan'], [if(visit % 2 = 0, 'pro', 'free')], t, 'bench', 0, number \
             FROM (SELECT number, intDiv(number, 8) AS visit FROM numbers({n}))",
            n = args.events
        );
        ch(&http, &ch_url, db, &sql).await?;
        let table = if args.cluster.is_some() {
            "events_local"
        } else {
            "events"
        };
        for node in &nodes {
            ch(&http, node, db, &format!("OPTIMIZE TABLE {table} FINAL"))
                .await
                .ok();
        }
        println!(
            "generated {} events in {:.1}s",
            args.events,
            t.elapsed().as_secs_f64()
        );
    } else {
        println!("reusing {db} ({} events)", args.events);
        // Brought to the current schema (a database made by an older build).
        migrate()?;
    }
    // Engagement events, as the tracker sends them: for two of three pageviews, one 5 s to
    // 10 min later with that engaged time and a scroll depth (none join a visit's count; they
    // change bounce, duration, time on page). Added once, also to a database made before them.
    let engaged = ch(
        &http,
        &ch_url,
        db,
        "SELECT count() FROM events WHERE event_name = 'engagement'",
    )
    .await?;
    if engaged.trim() == "0" {
        let t = Instant::now();
        let sql = "INSERT INTO events (site_id, ts, event_id, event_name, visitor_hash, url, host, path, referrer_host, source, channel, \
             utm_source, utm_campaign, browser, os, device, country, engaged_ms, scroll_depth, received_at, kafka_topic, kafka_partition, kafka_offset) \
             SELECT site_id, ts + 5 + intHash32(kafka_offset * 13) % 600 AS t, concat('e', event_id), 'engagement', visitor_hash, url, host, path, \
             referrer_host, source, channel, utm_source, utm_campaign, browser, os, device, country, \
             toUInt32((5 + intHash32(kafka_offset * 13) % 600) * 1000 - intHash32(kafka_offset) % 4000), toUInt8(intHash32(kafka_offset * 17) % 101), \
             t, 'bench', 1, kafka_offset FROM events WHERE event_name = 'pageview' AND intHash32(kafka_offset * 11) % 3 != 0";
        ch(&http, &ch_url, db, sql).await?;
        let n = ch(
            &http,
            &ch_url,
            db,
            "SELECT count() FROM events WHERE event_name = 'engagement'",
        )
        .await?;
        println!(
            "added {} engagement events in {:.1}s",
            n.trim(),
            t.elapsed().as_secs_f64()
        );
    }
    // The visit rollups of the closed days, as loader 0 keeps them (a no-op when current).
    let t = Instant::now();
    let out = Command::new(args.bin_dir.join("ta-loader"))
        .arg("rollup")
        .env("TA_CLICKHOUSE_URL", &args.clickhouse)
        .env("TA_CLICKHOUSE_DATABASE", db)
        .env("TA_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ta-loader rollup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rollup_secs = t.elapsed().as_secs_f64();
    let rollup_summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    println!("{rollup_summary}");

    let start_query = |ttl_zero: bool| -> anyhow::Result<(Proc, String)> {
        let port = free_port();
        let mut cmd = Command::new(args.bin_dir.join("ta-query"));
        cmd.env("TA_QUERY_LISTEN", format!("127.0.0.1:{port}"))
            .env("TA_DEV", "true")
            // The benchmark measures the queries, with thousands of requests from one token.
            .env("TA_QUERY_CREDENTIAL_RATE_LIMIT", "0")
            .env("TA_QUERY_CREDENTIAL_MAX_IN_FLIGHT", "0")
            .env("TA_CLICKHOUSE_URL", &args.clickhouse)
            .env("TA_CLICKHOUSE_DATABASE", db)
            .env("TA_QUERY_ACCESS_FILE", &args.access_file)
            .env("TA_LOG", "warn")
            .stdout(Stdio::null());
        if ttl_zero {
            for k in [
                "TA_QUERY_CACHE_RECENT_TTL_MS",
                "TA_QUERY_CACHE_SETTLING_TTL_SECS",
                "TA_QUERY_CACHE_PAST_TTL_SECS",
                "TA_QUERY_CACHE_REALTIME_TTL_MS",
            ] {
                cmd.env(k, "0");
            }
        }
        Ok((Proc::new(cmd.spawn()?), format!("http://127.0.0.1:{port}")))
    };
    let (uncached_proc, uncached) = start_query(true)?;
    let (cached_proc, cached) = start_query(false)?;
    for base in [&uncached, &cached] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "ta-query did not start at {base}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A closed 30-day range of site-1 (ending yesterday), as the dashboard asks for it.
    let end = today - chrono::Days::new(1);
    let range = format!("site_id=site-1&period=30d&date={end}&timezone=UTC");
    let from = (end - chrono::Days::new(29)).to_string();
    let mut endpoints: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        (
            "aggregate+compare",
            format!("/v1/stats/aggregate?{range}&compare=previous_period"),
            None,
        ),
        (
            "timeseries (day)",
            format!("/v1/stats/timeseries?{range}"),
            None,
        ),
        (
            "breakdown page",
            format!("/v1/stats/breakdown?{range}&property=page"),
            None,
        ),
        (
            "breakdown source (visits)",
            format!("/v1/stats/breakdown?{range}&property=source"),
            None,
        ),
        (
            "breakdown country",
            format!("/v1/stats/breakdown?{range}&property=country"),
            None,
        ),
        (
            "breakdown filtered",
            format!("/v1/stats/breakdown?{range}&property=browser&filter=device:is:mobile"),
            None,
        ),
        (
            "breakdown by entry page",
            format!("/v1/stats/breakdown?{range}&property=page&filter=entry_page:is:/pricing"),
            None,
        ),
        (
            "timeseries + compare",
            format!("/v1/stats/timeseries?{range}&compare=previous_period"),
            None,
        ),
        (
            "breakdown page + compare",
            format!("/v1/stats/breakdown?{range}&property=page&compare=previous_period"),
            None,
        ),
        (
            "breakdown source + compare",
            format!("/v1/stats/breakdown?{range}&property=source&compare=previous_period"),
            None,
        ),
        (
            "breakdown hostname",
            format!("/v1/stats/breakdown?{range}&property=hostname"),
            None,
        ),
        (
            "goals (6, with revenue)",
            format!("/v1/stats/goals?{range}"),
            None,
        ),
        (
            "goal signup by source",
            format!("/v1/stats/goals?{range}&goal=signup&property=source"),
            None,
        ),
        (
            "revenue (purchase) by source",
            format!("/v1/stats/goals?{range}&goal=purchase&property=source"),
            None,
        ),
        (
            "goal blog by page",
            format!("/v1/stats/goals?{range}&goal=blog&property=page"),
            None,
        ),
        (
            "funnel, 4 steps, per visit",
            format!("/v1/stats/funnel?{range}&funnel=four-steps"),
            None,
        ),
        (
            "funnel, 4 steps, per day",
            format!("/v1/stats/funnel?{range}&funnel=four-steps&within=day"),
            None,
        ),
        (
            "property keys",
            format!("/v1/stats/properties?{range}"),
            None,
        ),
        (
            "realtime",
            "/v1/stats/realtime?site_id=site-1".to_owned(),
            None,
        ),
        (
            "seed pageviews",
            format!("/v1/metrics/pageviews?site_id=site-1&from={from}&to={end}"),
            None,
        ),
        (
            "seed unique-users",
            format!("/v1/metrics/unique-users?site_id=site-1&from={from}&to={end}"),
            None,
        ),
        (
            "seed top-pages",
            format!("/v1/metrics/top-pages?site_id=site-1&from={from}&to={end}"),
            None,
        ),
    ];
    // `POST /v2/query`: two dimensions and an OR filter over the same 30 days, read from the
    // visit rollup for the closed days (every dimension is in it).
    let v2_range = serde_json::json!({"site_id": "site-1", "date_range": "30d", "date": end.to_string(), "timezone": "UTC"});
    let by_country = serde_json::json!([[
        "or",
        [
            ["is", "country", ["DE", "US"]],
            ["contains", "page", ["/blog"]]
        ]
    ]]);
    let by_page = serde_json::json!([[
        "or",
        [
            ["is", "event_name", ["signup"]],
            ["contains", "page", ["/blog"]]
        ]
    ]]);
    let event_metrics = serde_json::json!(["visitors", "pageviews", "events"]);
    let visit_metrics = serde_json::json!(["visitors", "visits", "bounce_rate", "visit_duration"]);
    for (name, metrics, dims, filters) in [
        (
            "v2 source × day, OR country",
            &event_metrics,
            serde_json::json!(["source", "time:day"]),
            &by_country,
        ),
        (
            "v2 page × device, OR country",
            &event_metrics,
            serde_json::json!(["page", "device"]),
            &by_country,
        ),
        (
            "v2 entry × source, visits, OR country",
            &visit_metrics,
            serde_json::json!(["entry_page", "source"]),
            &by_country,
        ),
        (
            "v2 source × day, OR page",
            &event_metrics,
            serde_json::json!(["source", "time:day"]),
            &by_page,
        ),
        (
            "v2 page × event, OR page",
            &event_metrics,
            serde_json::json!(["page", "event_name"]),
            &by_page,
        ),
        (
            "v2 entry × source, visits, OR page",
            &visit_metrics,
            serde_json::json!(["entry_page", "source"]),
            &by_page,
        ),
    ] {
        let mut body = v2_range.clone();
        body["metrics"] = metrics.clone();
        body["dimensions"] = dims;
        body["filters"] = filters.clone();
        endpoints.push((name, "/v2/query".to_owned(), Some(body)));
    }
    let get = |base: &str, path: &str, body: &Option<serde_json::Value>| {
        let req = match body {
            Some(b) => http.post(format!("{base}{path}")).json(b),
            None => http.get(format!("{base}{path}")),
        }
        .bearer_auth(TOKEN);
        async move {
            let t = Instant::now();
            let res = req.send().await?;
            anyhow::ensure!(
                res.status().is_success(),
                "{} answered {}",
                res.url(),
                res.status()
            );
            res.bytes().await?;
            anyhow::Ok(t.elapsed().as_secs_f64() * 1000.0)
        }
    };
    println!(
        "\n{:<44} {:>12} {:>12} {:>14} {:>16}",
        "endpoint (30 days, site-1)",
        "uncached p50",
        "uncached p99",
        "cached p50",
        "cached p50 server"
    );
    let mut rows = Vec::new();
    for (name, path, body) in &endpoints {
        get(&uncached, path, body).await?; // warm ClickHouse's caches once
        let mut un = Vec::new();
        for _ in 0..args.uncached {
            un.push(get(&uncached, path, body).await?);
        }
        un.sort_by(f64::total_cmp);
        let mut ca = Vec::new();
        for _ in 0..200 {
            ca.push(get(&cached, path, body).await?);
        }
        ca.sort_by(f64::total_cmp);
        rows.push((
            name,
            percentile(&un, 50.0),
            percentile(&un, 99.0),
            percentile(&ca, 50.0),
            Latency::of_sorted(&un),
            Latency::of_sorted(&ca),
        ));
    }
    let metrics = http
        .get(format!("{cached}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let millions = args.events as f64 / 1e6;
    let on = match &args.cluster {
        Some(name) => format!(" (cluster {name}, {} nodes)", nodes.len()),
        None => String::new(),
    };
    let mut section = Section::new(
        format!("4. Query API on {millions} M events{on}"),
        format!(
            "{} events of 3 sites over 90 days generated into ClickHouse{on}, visit rollups of the closed days built by `ta-loader rollup`; a closed 30-day range of one site; uncached = a ta-query with every cache TTL at 0 ({} requests per endpoint after one warm-up), cached = a ta-query with the default TTLs (200 requests); latencies measured by the client on the same machine.",
            args.events, args.uncached
        ),
    );
    section.rows.push(Row::new(
        format!("visit rollup of the closed days (`ta-loader rollup`: {rollup_summary})"),
        rollup_secs,
        "s",
    ));
    let mut server_p50s = Vec::new();
    for ((name, p50, p99, c50, un, ca), (_, path, _)) in rows.iter().zip(&endpoints) {
        let endpoint = match path.as_str() {
            "/v2/query" => "v2_query",
            p => p.split('?').next().unwrap().rsplit('/').next().unwrap(),
        };
        let server_s = server_p50(&metrics, endpoint);
        let server = server_s.map_or("?".into(), |s| format!("≤ {:.2} ms", s * 1000.0));
        println!("{name:<44} {p50:>9.1} ms {p99:>9.1} ms {c50:>11.2} ms {server:>16}");
        if let Some(un) = un {
            section.rows.push(
                Row::new(format!("{name}, uncached"), *p50, "ms p50")
                    .latency(*un)
                    .target(
                        "p50 ≤ 100 ms, p99 ≤ 300 ms",
                        un.p50 <= 100.0 && un.p99 <= 300.0,
                    ),
            );
        }
        if let Some(ca) = ca {
            let mut row = Row::new(
                format!("{name}, cached (server-side p50 {server})"),
                *c50,
                "ms p50",
            )
            .latency(*ca);
            if let Some(s) = server_s {
                row = row.target("server-side p50 ≤ 1 ms", s <= 0.001);
                server_p50s.push(s);
            }
            section.rows.push(row);
        }
    }

    // Cached throughput: the dashboard's aggregate request, `concurrency` in flight.
    let path = &endpoints[0].1;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    let t = Instant::now();
    for _ in 0..args.concurrency {
        let (http, url, done) = (http.clone(), format!("{cached}{path}"), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Ok(r) = http.get(&url).bearer_auth(TOKEN).send().await
                    && r.status().is_success()
                    && r.bytes().await.is_ok()
                {
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let n = done.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "\ncached throughput: {:.0} requests/s ({n} in {:.1}s, {} in flight, client on the same 2 cores)",
        n as f64 / t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64(),
        args.concurrency
    );
    let cached_rps = n as f64 / t.elapsed().as_secs_f64();
    section.rows.push(
        Row::new(
            format!("cached `aggregate+compare`, {} in flight", args.concurrency),
            cached_rps,
            "req/s",
        )
        .target("≥ 2,000 req/s", cached_rps >= 2_000.0),
    );

    // The dashboard's first render of the same 30-day view, in headless Chromium: every KPI,
    // the chart and the tables drawn (ten API requests, the browser's six connections), then
    // the conversions. Comparisons with the previous period are the dashboard's default; the
    // same view with them off is measured just before, as the baseline of what they cost.
    // Each run also reports the CPU it took: Chromium's (with its driver), and the servers'
    // (the local infra's ClickHouse when it is the one measured, and ta-query), since on one
    // machine they share its cores.
    if args.dashboard_runs > 0 {
        let mut without_comparisons = None;
        let clickhouse_pid = local_clickhouse_pid(&args.clickhouse);
        for (which, base, extra, query_pid) in [
            (
                "uncached, comparisons off",
                &uncached,
                "&compare=off",
                uncached_proc.pid(),
            ),
            ("uncached", &uncached, "", uncached_proc.pid()),
            ("cached", &cached, "", cached_proc.pid()),
        ] {
            let server_pids: Vec<u32> = clickhouse_pid.into_iter().chain([query_pid]).collect();
            let browser_args = serde_json::json!({
                "base": base, "site": "site-1", "date": end.to_string(), "token": TOKEN,
                "runs": args.dashboard_runs, "extra": extra, "server_pids": server_pids,
            });
            let result = tokio::task::spawn_blocking(move || {
                crate::browser::run("first_render.js", &browser_args)
            })
            .await??;
            let mut runs: Vec<f64> = serde_json::from_value(result["runs"].clone())?;
            anyhow::ensure!(!runs.is_empty(), "the dashboard never rendered");
            println!(
                "dashboard first render, {which} ta-query, each run: {} ms",
                runs.iter()
                    .map(|ms| format!("{ms:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            runs.sort_by(f64::total_cmp);
            let lat = Latency::of_sorted(&runs).expect("at least one run");
            println!(
                "dashboard first render, {which} ta-query: p50 {:.0} ms, max {:.0} ms ({} runs)",
                lat.p50,
                lat.max,
                runs.len()
            );
            let median = |key: &str| -> anyhow::Result<f64> {
                let mut v: Vec<f64> = serde_json::from_value(result[key].clone())?;
                v.sort_by(f64::total_cmp);
                Ok(v.get(v.len() / 2).copied().unwrap_or(0.0))
            };
            let (browser_cpu, server_cpu) = (median("browser_cpu")?, median("server_cpu")?);
            let servers = match clickhouse_pid {
                Some(_) => "ClickHouse and ta-query",
                None => "ta-query (ClickHouse not local)",
            };
            println!(
                "dashboard first render, {which} ta-query, CPU per render (median): Chromium and its driver {browser_cpu:.0} ms, {servers} {server_cpu:.0} ms"
            );
            let mut row = Row::new(
                format!("dashboard first render (30 days, Chromium), {which} ta-query"),
                lat.p50,
                "ms p50",
            )
            .latency(lat);
            if !extra.is_empty() {
                without_comparisons = Some(lat.p50);
            } else {
                if which == "uncached"
                    && let Some(off) = without_comparisons
                {
                    row = row.baseline("comparisons off, same run", off);
                }
                row = row.target("< 1 s, every run", lat.max < 1_000.0);
            }
            section.rows.push(row);
            if which == "uncached" {
                section.rows.push(Row::new(
                    format!("CPU of one uncached first render: Chromium and its driver (beside it: {servers})"),
                    browser_cpu,
                    "ms",
                ).baseline(servers, server_cpu));
            }
        }
    }
    if args.quick_check {
        anyhow::ensure!(n > 0, "no cached request succeeded");
        anyhow::ensure!(
            !server_p50s.is_empty(),
            "ta-query's /metrics had no request histogram"
        );
    }
    let mib = |p: &Proc| p.peak_rss() as f64 / (1024.0 * 1024.0);
    let memory = Section::new(MEMORY, "")
        .row(Row::new(
            format!("ta-query, uncached, under scenario 4 on {millions} M events (VmHWM)"),
            mib(&uncached_proc),
            "MiB",
        ))
        .row(Row::new(
            format!("ta-query, cached, under scenario 4 on {millions} M events (VmHWM)"),
            mib(&cached_proc),
            "MiB",
        ));
    Ok(vec![section, memory])
}

/// The pid of the local infra's ClickHouse server (`deploy/local/infra`), when `url` is its
/// address and it runs here: its CPU is read from /proc.
fn local_clickhouse_pid(url: &str) -> Option<u32> {
    let local = ["http://127.0.0.1:8123", "http://localhost:8123"];
    if !local.contains(&url.trim_end_matches('/')) {
        return None;
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.data/clickhouse.pid");
    let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}
