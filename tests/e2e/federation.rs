//! Two edge nodes in different regions, each scraped by its own Prometheus running the shipped
//! `deploy/prometheus/edge.yml`, and a central Prometheus running `deploy/prometheus/central.yml`
//! that federates both: the central one must hold each edge's series, with its region, at the
//! values the edge itself reports.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ta_tests::prometheus::{Prometheus, samples, shipped_config};
use ta_tests::{
    Service, artifacts_dir, free_port, kafka_brokers, unique, wait_healthy, workspace_root,
};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// Series compared between each edge's /metrics and the central Prometheus.
const COMPARED: [&str; 4] = [
    "ta_edge_events_accepted_total",
    "ta_edge_events_produced_total",
    "ta_edge_kafka_up",
    "ta_edge_spool_events",
];

struct Edge {
    region: &'static str,
    url: String,
    /// The ops listener (`/metrics`), which the edge's Prometheus scrapes.
    metrics_url: String,
    service: Service,
    prometheus: Prometheus,
}

fn start_edge(test: &str, region: &'static str, topic: &str) -> Edge {
    let dir = artifacts_dir(&format!("{test}/{region}"));
    let spool = dir.join("spool");
    let _ = std::fs::remove_dir_all(&spool);
    let (port, metrics_port) = (free_port(), free_port());
    let sites = workspace_root().join("deploy/config/sites.dev.toml");
    let service = Service::start(
        "ta-edge",
        &[
            ("TA_EDGE_LISTEN", format!("127.0.0.1:{port}")),
            (
                "TA_EDGE_METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            ),
            ("TA_EDGE_REGION", region.to_owned()),
            ("TA_KAFKA_BROKERS", kafka_brokers()),
            ("TA_KAFKA_TOPIC", topic.to_owned()),
            ("TA_SITES_FILE", sites.display().to_string()),
            ("TA_SPOOL_DIR", spool.display().to_string()),
            ("TA_LOG", "info,rskafka=warn".to_owned()),
        ],
        &dir,
    );
    let config = shipped_config(
        "prometheus/edge.yml",
        &[
            ("ta-edge:9464", format!("127.0.0.1:{metrics_port}")),
            ("scrape_interval: 15s", "scrape_interval: 1s".into()),
            ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
        ],
    );
    let prometheus = Prometheus::start(&dir, "prometheus", Prometheus::port(), &config);
    Edge {
        region,
        url: format!("http://127.0.0.1:{port}"),
        metrics_url: format!("http://127.0.0.1:{metrics_port}"),
        service,
        prometheus,
    }
}

async fn collect(client: &reqwest::Client, edge: &Edge, site: u8, n: u32) {
    for seq in 0..n {
        let body = format!(
            r#"{{"site_id":"site-{site}","event_name":"pageview","url":"https://example.com/{}/{seq}","user_id":"u{seq}"}}"#,
            edge.region
        );
        let answer = client
            .post(format!("{}/v1/collect", edge.url))
            .header("X-TA-API-Key", format!("dev-key-site-{site}"))
            .header("Content-Type", "application/json")
            .header("User-Agent", UA)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            202,
            "{}",
            answer.text().await.unwrap()
        );
    }
}

async fn exposition(edge: &Edge) -> String {
    reqwest::get(format!("{}/metrics", edge.metrics_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

type Labels = BTreeSet<(String, String)>;

/// The central Prometheus's current samples of `name` in `region`, without the target labels
/// (`job`, `instance`) that the edge Prometheus attached.
async fn central_samples(central: &Prometheus, name: &str, region: &str) -> Vec<(Labels, f64)> {
    let answer = central
        .query(&format!(r#"{name}{{region="{region}"}}"#))
        .await;
    assert_eq!(answer["status"], "success", "{answer}");
    let mut got: Vec<(Labels, f64)> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (labels, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_prometheus_federates_each_edge_with_its_region_and_values() {
    let test = "federation";
    let dir = artifacts_dir(test);
    let topic = unique(test);
    let edges = [
        start_edge(test, "eu", &topic),
        start_edge(test, "us", &topic),
    ];

    let edges_file = dir.join("edges.yml");
    let targets: String = edges
        .iter()
        .map(|e| format!("- targets: [\"127.0.0.1:{}\"]\n", e.prometheus.port))
        .collect();
    std::fs::write(&edges_file, targets).unwrap();
    let central_port = Prometheus::port();
    let central_config = shipped_config(
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
            // No loader or query API in this test: those targets are simply down.
            ("ta-loader:9465", format!("127.0.0.1:{}", free_port())),
            ("ta-query:8081", format!("127.0.0.1:{}", free_port())),
            ("scrape_interval: 15s", "scrape_interval: 1s".into()),
            ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
        ],
    );
    let central = Prometheus::start(&dir, "central-prometheus", central_port, &central_config);

    for edge in &edges {
        wait_healthy(
            &format!("{}/readyz", edge.url),
            &edge.service,
            Duration::from_secs(60),
        )
        .await;
        edge.prometheus.wait_ready().await;
    }
    central.wait_ready().await;

    // Different, known traffic per region and site.
    let client = reqwest::Client::new();
    collect(&client, &edges[0], 1, 3).await;
    collect(&client, &edges[0], 2, 2).await;
    collect(&client, &edges[1], 1, 5).await;

    // Wait until both edges have delivered everything and freed it from their spools, so
    // their values stop moving (the spool gauge drops after the produce counter rises).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reported = Vec::new();
    for edge in &edges {
        // eu: 3 + 2 events, us: 5.
        let want = 5.0;
        loop {
            let text = exposition(edge).await;
            let produced: f64 = samples(&text, "ta_edge_events_produced_total")
                .iter()
                .map(|s| s.1)
                .sum();
            let spooled: f64 = samples(&text, "ta_edge_spool_events")
                .iter()
                .map(|s| s.1)
                .sum();
            if produced == want && spooled == 0.0 {
                reported.push(text);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "edge {} produced {produced} of {want}, {spooled} still spooled; log:\n{}",
                edge.region,
                edge.service.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // What each edge reports on /metrics, per series.
    let accepted = |i: usize, site: &str| {
        samples(&reported[i], "ta_edge_events_accepted_total")
            .into_iter()
            .find(|(labels, _)| labels.contains(&("site_id".to_owned(), site.to_owned())))
            .map(|s| s.1)
    };
    assert_eq!(accepted(0, "site-1"), Some(3.0));
    assert_eq!(accepted(0, "site-2"), Some(2.0));
    assert_eq!(accepted(1, "site-1"), Some(5.0));
    assert_eq!(
        accepted(1, "site-2"),
        Some(0.0),
        "configured sites start at 0"
    );

    // The central Prometheus converges on exactly those series and values.
    let deadline = Instant::now() + Duration::from_secs(45);
    for (edge, text) in edges.iter().zip(&reported) {
        for name in COMPARED {
            let mut want = samples(text, name);
            want.sort_by(|a, b| a.0.cmp(&b.0));
            assert!(!want.is_empty(), "edge {} exports {name}", edge.region);
            assert!(
                want.iter()
                    .all(|(l, _)| l.contains(&("region".to_owned(), edge.region.to_owned()))),
                "{name} of {} carries its region: {want:?}",
                edge.region
            );
            loop {
                let got = central_samples(&central, name, edge.region).await;
                if got == want {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "central Prometheus has {got:?} for {name} in {}, the edge reports {want:?}; central log:\n{}",
                    edge.region,
                    central.log_text()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    // honor_labels: the series keep the edge Prometheus's job, not the federation job's.
    let answer = central
        .query(r#"count by (job, region) (ta_edge_events_accepted_total)"#)
        .await;
    let mut jobs: Vec<(String, String)> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap_or("").to_owned(),
                r["metric"]["region"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    jobs.sort();
    assert_eq!(
        jobs,
        [
            ("ta-edge".into(), "eu".into()),
            ("ta-edge".into(), "us".into())
        ]
    );
}
