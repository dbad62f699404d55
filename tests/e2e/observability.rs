//! The shipped alert rules and Grafana dashboards against a real Prometheus that scrapes the real
//! services: the pipeline's three processes, an edge Prometheus running `deploy/prometheus/edge.yml`
//! and a central one running `deploy/prometheus/central.yml` (federating the edge, loading the
//! rule files). Every expression must parse and name only metrics the services export.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use ta_tests::prometheus::{Prometheus, exposed_metrics, referenced_metrics, shipped_config};
use ta_tests::{Pipeline, artifacts_dir, workspace_root};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

fn rule_files() -> Vec<PathBuf> {
    files_in("deploy/prometheus/rules", "yml")
}

fn dashboards() -> Vec<PathBuf> {
    files_in("deploy/grafana/dashboards", "json")
}

fn files_in(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{ext} in {dir}");
    files
}

/// The pipeline, scraped by an edge Prometheus that a central Prometheus federates, with traffic
/// sent so every metric family has series.
struct Observed {
    pipeline: Pipeline,
    _edge_prometheus: Prometheus,
    central: Prometheus,
    /// Every metric name the three services expose on /metrics.
    exported: BTreeSet<String>,
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

impl Observed {
    async fn start(test: &str) -> Self {
        // ta-query asks the central Prometheus for "bots filtered today".
        let central_port = Prometheus::port();
        let pipeline = Pipeline::start_with_query_env(
            test,
            vec![(
                "TA_PROMETHEUS_URL",
                format!("http://127.0.0.1:{central_port}"),
            )],
        )
        .await;
        let dir = artifacts_dir(test);
        let edge_prometheus = Prometheus::start(
            &dir,
            "edge-prometheus",
            Prometheus::port(),
            &shipped_config(
                "prometheus/edge.yml",
                &[
                    ("ta-edge:9464", host_port(&pipeline.edge_metrics_url)),
                    ("scrape_interval: 15s", "scrape_interval: 1s".into()),
                    ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
                ],
            ),
        );
        let edges_file = dir.join("edges.yml");
        std::fs::write(
            &edges_file,
            format!("- targets: [\"127.0.0.1:{}\"]\n", edge_prometheus.port),
        )
        .unwrap();
        let central = Prometheus::start(
            &dir,
            "central-prometheus",
            central_port,
            &shipped_config(
                "prometheus/central.yml",
                &[
                    (
                        "/etc/prometheus/edges/*.yml",
                        edges_file.display().to_string(),
                    ),
                    (
                        "/etc/prometheus/rules/*.yml",
                        workspace_root()
                            .join("deploy/prometheus/rules/*.yml")
                            .display()
                            .to_string(),
                    ),
                    ("localhost:9090", format!("127.0.0.1:{central_port}")),
                    ("ta-loader:9465", host_port(&pipeline.loader_url)),
                    ("ta-query:8081", host_port(&pipeline.query_url)),
                    ("scrape_interval: 15s", "scrape_interval: 1s".into()),
                    ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
                ],
            ),
        );
        edge_prometheus.wait_ready().await;
        central.wait_ready().await;

        // A few events for two sites, one bad request, and stats requests (200 and 400), so the
        // labelled families have series.
        let client = reqwest::Client::new();
        for (site, seq) in [(1, 0), (1, 1), (2, 0), (1, 2)] {
            let answer = client
                .post(format!("{}/v1/collect", pipeline.edge_url))
                .header("X-TA-API-Key", format!("dev-key-site-{site}"))
                .header("Content-Type", "application/json")
                .header("User-Agent", UA)
                .body(format!(
                    r#"{{"site_id":"site-{site}","event_name":"pageview","url":"https://example.com/{seq}","user_id":"u{seq}"}}"#
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 202);
        }
        let bot = client
            .post(format!("{}/v1/collect", pipeline.edge_url))
            .header("X-TA-API-Key", "dev-key-site-1")
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
            )
            .body(r#"{"site_id":"site-1","event_name":"pageview","url":"https://example.com/"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            bot.status().as_u16(),
            202,
            "bots are answered 202 and dropped"
        );
        let bad = client
            .post(format!("{}/v1/collect", pipeline.edge_url))
            .header("X-TA-API-Key", "no-such-key")
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(bad.status().is_client_error(), "{}", bad.status());

        // Loaded: the loader's per-partition series exist once it has inserted the events.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let loader = metrics(&pipeline.loader_url).await;
            if ta_tests::metric_sum(&loader, "ta_loader_events_inserted_total") >= 4.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "loader did not insert 4 events:\n{loader}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for query in ["site_id=site-1", "site_id=no%20such%20site"] {
            let _ = client
                .get(format!(
                    "{}/v1/metrics/pageviews?{query}",
                    pipeline.query_url
                ))
                .bearer_auth(&pipeline.query_token)
                .send()
                .await
                .unwrap();
        }

        let mut exported = BTreeSet::new();
        for url in [
            &pipeline.edge_metrics_url,
            &pipeline.loader_url,
            &pipeline.query_url,
        ] {
            exported.extend(exposed_metrics(&metrics(url).await));
        }
        for must in [
            "ta_edge_events_accepted_total",
            "ta_loader_lag_seconds",
            "ta_loader_event_freshness_seconds_bucket",
            "ta_query_requests_total",
        ] {
            assert!(
                exported.contains(must),
                "services export {must}: {exported:?}"
            );
        }

        // The central Prometheus holds every one of them (edge ones through federation).
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let held = central.metric_names().await;
            let missing: Vec<_> = exported.difference(&held).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "central Prometheus lacks {missing:?}; log:\n{}",
                central.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Self {
            pipeline,
            _edge_prometheus: edge_prometheus,
            central,
            exported,
        }
    }

    /// `expr` parses and evaluates, and every metric it names is one the services export (or
    /// Prometheus's own `up`). A description of what is wrong, or `None`.
    async fn check(&self, what: &str, expr: &str) -> Option<String> {
        let answer = self.central.query(expr).await;
        if answer["status"] != "success" {
            return Some(format!("{what}: {expr}\n  does not evaluate: {answer}"));
        }
        let unknown: Vec<_> = referenced_metrics(expr)
            .into_iter()
            .filter(|m| m != "up" && !self.exported.contains(m))
            .collect();
        (!unknown.is_empty()).then(|| format!("{what}: {expr}\n  unknown metrics {unknown:?}"))
    }
}

/// (alert name, expression) of every alert in a rule file, read by `promtool`'s own parser
/// through `promtool check rules --lint=none` (for validity) and this minimal YAML reader (for the
/// expressions: `expr:` is either inline or a `|` block).
fn alerts(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(n) = trimmed.strip_prefix("- alert: ") {
            name = Some(n.trim().to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("expr:") {
            let indent = line.len() - trimmed.len();
            let rest = rest.trim();
            let expr = if rest == "|" || rest == ">-" || rest == "|-" {
                let mut block = Vec::new();
                while let Some(next) = lines.peek() {
                    let next_indent = next.len() - next.trim_start().len();
                    if next.trim().is_empty() || next_indent <= indent {
                        break;
                    }
                    block.push(next.trim().to_owned());
                    lines.next();
                }
                block.join(" ")
            } else {
                rest.to_owned()
            };
            out.push((name.take().expect("expr after - alert:"), expr));
        }
    }
    out
}

#[test]
fn every_rule_file_passes_promtool_check_rules() {
    for file in rule_files() {
        let out = Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&file)
            .output()
            .expect("promtool is installed (deploy/local/infra up installs it)");
        assert!(
            out.status.success(),
            "promtool check rules {}:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_expression_evaluates_on_prometheus_and_names_only_exported_metrics() {
    let observed = Observed::start("observability_alerts").await;
    let mut problems = Vec::new();
    let mut count = 0;
    for file in rule_files() {
        for (alert, expr) in alerts(&std::fs::read_to_string(&file).unwrap()) {
            count += 1;
            problems.extend(observed.check(&alert, &expr).await);
        }
    }
    assert!(count >= 6, "only {count} alerts found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The central Prometheus loaded the same rule files and evaluates every rule without error.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = observed.central.api("/api/v1/rules", &[]).await;
        let rules: Vec<&Value> = answer["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        let healthy = rules.iter().filter(|r| r["health"] == "ok").count();
        if rules.len() == count && healthy == count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "central Prometheus: {healthy} of {} loaded rules healthy, {count} in the files: {answer}",
            rules.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every `expr` of every panel target (rows included) and every templating query of a dashboard.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = var["query"]["query"].as_str().or(var["query"].as_str()) {
            out.push((format!("variable {}", var["name"]), q.to_owned()));
        }
    }
    out
}

/// Grafana's variables replaced by what Grafana would send with "All" selected.
fn substitute(expr: &str) -> String {
    let mut e = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    for var in ["$region", "$site", "$instance"] {
        e = e.replace(var, ".*");
    }
    assert!(!e.contains('$'), "unhandled Grafana variable in {expr}");
    e
}

/// `label_values(metric, label)` is Grafana's, not PromQL: check it as the series selector.
fn as_promql(query: &str) -> String {
    match query.strip_prefix("label_values(") {
        Some(rest) => rest.split(',').next().unwrap().trim().to_owned(),
        None => query.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_evaluates_on_prometheus_and_names_only_exported_metrics() {
    let provisioning = std::fs::read_to_string(
        workspace_root().join("deploy/grafana/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    let uid = provisioning
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid: "))
        .expect("the datasource has a uid");
    let observed = Observed::start("observability_dashboards").await;
    let mut problems = Vec::new();
    let mut titles = Vec::new();
    let mut count = 0;
    for file in dashboards() {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        titles.push(dashboard["title"].as_str().unwrap().to_owned());
        for panel in dashboard["panels"].as_array().unwrap() {
            assert_eq!(
                panel["datasource"]["uid"],
                uid,
                "{}: panel {} uses the provisioned datasource",
                file.display(),
                panel["title"]
            );
        }
        for (title, query) in dashboard_queries(&dashboard) {
            count += 1;
            let expr = substitute(&as_promql(&query));
            let what = format!("{} / {title}", file.file_name().unwrap().display());
            problems.extend(observed.check(&what, &expr).await);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(count >= 30, "only {count} queries found");
    titles.sort();
    assert_eq!(
        titles,
        [
            "Tiny Analytics / Edge node",
            "Tiny Analytics / Loader",
            "Tiny Analytics / Pipeline overview",
            "Tiny Analytics / Query API",
            "Tiny Analytics / Site traffic",
        ]
    );

    // The overview's first panel shows this edge's region (rate() needs two federated samples).
    let expr = substitute(
        r#"sum by (region) (rate(ta_edge_events_accepted_total{region=~"$region"}[$__rate_interval]))"#,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = observed.central.query(&expr).await;
        if answer["data"]["result"][0]["metric"]["region"] == "e2e" {
            break;
        }
        assert!(Instant::now() < deadline, "{expr}: {answer}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// "Bots filtered today" on the dashboard: the edges' drop counters, summed by the central
/// Prometheus (through federation), read by ta-query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_filtered_today_come_from_the_central_prometheus() {
    let o = Observed::start("bots_today").await;
    let p = &o.pipeline;
    let series = r#"ta_edge_bot_events_total{site_id="site-2",reason="referrer_spam"}"#;
    // The series is exported at 0 from the start; wait until the central Prometheus holds that
    // 0, so the increase of the events below is visible to increase().
    let deadline = Instant::now() + Duration::from_secs(45);
    while o.central.query(series).await["data"]["result"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(
            Instant::now() < deadline,
            "central Prometheus lacks {series}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let client = reqwest::Client::new();
    for seq in 0..3 {
        let answer = client
            .post(format!("{}/v1/collect", p.edge_url))
            .header("X-TA-API-Key", "dev-key-site-2")
            .header("Content-Type", "application/json")
            .header("User-Agent", UA)
            .body(format!(
                r#"{{"site_id":"site-2","event_name":"pageview","url":"https://example.com/{seq}","referrer":"https://semalt.com/"}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            202,
            "spam is answered 202 and dropped"
        );
    }
    let url = format!("{}/v1/stats/bots?site_id=site-2", p.query_url);
    let unauthenticated = client.get(&url).send().await.unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let answer = client
            .get(&url)
            .bearer_auth(&p.query_token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        let body: Value = answer.json().await.unwrap();
        if body["by_reason"]["referrer_spam"].as_u64().unwrap_or(0) >= 3 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "bots endpoint never saw the 3 spam events: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // No edge restarted: the count is exact (max - min of the samples, no extrapolation).
    let spam = body["by_reason"]["referrer_spam"].as_u64().unwrap();
    assert_eq!(spam, 3, "{body}");
    assert_eq!(
        body["bots"].as_u64(),
        Some(
            body["by_reason"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(Value::as_u64)
                .sum()
        )
    );
    assert_eq!(body["site_id"], "site-2");

    // The dashboard shows it, in a real browser.
    let args = serde_json::json!({
        "base": p.query_url,
        "token": p.query_token,
        "site": "site-2",
        "screenshots": ta_tests::browser::artifacts_dir().display().to_string(),
    });
    let screen = tokio::task::spawn_blocking(move || ta_tests::browser::run("bots.js", &args))
        .await
        .unwrap();
    assert_eq!(screen["errors"], serde_json::json!([]), "{screen}");
    let shown = screen["value"].as_u64().unwrap();
    assert_eq!(
        shown, 3,
        "the card shows {shown}, the API said {spam}: {screen}"
    );
    assert!(
        screen["text"]
            .as_str()
            .unwrap()
            .ends_with("bots filtered today"),
        "{screen}"
    );
    assert!(
        screen["title"].as_str().unwrap().contains("referrer_spam"),
        "{screen}"
    );
}
