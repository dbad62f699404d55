//! Privacy audit: traffic with known IPs and user agents through two edge nodes, then every
//! place data goes — the broker's topic, every ClickHouse table of the pipeline's database,
//! every service's log (debug level) and metrics — searched for those IPs and user agents,
//! plain and in simple encodings. None may appear. The same visitor gets the same hash on both
//! nodes (the second started from a copy of the first's salt-ratchet state), and different
//! visitors different hashes. (That hashes differ across days is a unit test of the ratchet,
//! `shared/src/visitor.rs`: a process cannot wait for tomorrow.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ta_tests::infra::topic_bytes;
use ta_tests::{
    Service, artifacts_dir, base64, clickhouse_url, free_port, hex, kafka_brokers, unique,
    wait_healthy, workspace_root,
};

const VISITORS: usize = 25;

fn ip(i: usize) -> String {
    format!("203.0.113.{}", 10 + i)
}

fn ua(i: usize) -> String {
    format!(
        "Mozilla/5.0 (X11; Linux x86_64; rv:12{}.0) Gecko/20100101 Firefox/12{}.0",
        i % 10,
        i % 10
    )
}

async fn ch(db: &str, sql: &str) -> String {
    ta_tests::infra::clickhouse_text(&clickhouse_url(), db, sql)
        .await
        .unwrap_or_else(|| panic!("ClickHouse refused {sql}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ip_or_user_agent_reaches_the_topic_clickhouse_logs_or_metrics_and_nodes_agree_on_hashes()
 {
    let dir = artifacts_dir("privacy_audit");
    let _ = std::fs::remove_dir_all(dir.join("spool-a"));
    let _ = std::fs::remove_dir_all(dir.join("spool-b"));
    // Each edge logs to `ta-edge.log` in a directory of its own.
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    let (topic, db) = (unique("privacy"), unique("privacy"));
    let sites = workspace_root()
        .join("deploy/config/sites.dev.toml")
        .display()
        .to_string();
    let common = vec![
        ("TA_KAFKA_BROKERS", kafka_brokers()),
        ("TA_KAFKA_TOPIC", topic.clone()),
        ("TA_CLICKHOUSE_URL", clickhouse_url()),
        ("TA_CLICKHOUSE_DATABASE", db.clone()),
        ("TA_LOG", "debug,rskafka=info,hyper=info,h2=info".to_owned()),
    ];
    let with = |extra: Vec<(&'static str, String)>| {
        let mut v = common.clone();
        v.extend(extra);
        v
    };
    let ports = [free_port(), free_port(), free_port(), free_port()];
    // The edges' ops listeners (/metrics): their expositions are checked too.
    let edge_metrics_ports = [free_port(), free_port()];
    let edge_env = |port: u16, spool: &str, extra: Vec<(&'static str, String)>| {
        let ops = edge_metrics_ports[usize::from(port == ports[1])];
        let mut v = with(vec![
            ("TA_EDGE_LISTEN", format!("127.0.0.1:{port}")),
            ("TA_EDGE_METRICS_LISTEN", format!("127.0.0.1:{ops}")),
            ("TA_SITES_FILE", sites.clone()),
            ("TA_TRUST_FORWARDED_FOR", "true".into()),
            ("TA_SPOOL_DIR", dir.join(spool).display().to_string()),
        ]);
        v.extend(extra);
        v
    };
    let edge_a = Service::start(
        "ta-edge",
        &edge_env(
            ports[0],
            "spool-a",
            vec![
                ("TA_EDGE_REGION", "eu".into()),
                (
                    "TA_SALT_SECRET",
                    "privacy-audit-salt-secret-of-32-chars-or-more".into(),
                ),
            ],
        ),
        &dir.join("a"),
    );
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    wait_healthy(
        &format!("{}/healthz", url(ports[0])),
        &edge_a,
        Duration::from_secs(60),
    )
    .await;
    // The second node starts from a copy of the first's ratchet state, as deploy/README.md says.
    let state = std::fs::read_to_string(dir.join("spool-a/salt-ratchet")).unwrap();
    let edge_b = Service::start(
        "ta-edge",
        &edge_env(
            ports[1],
            "spool-b",
            vec![
                ("TA_EDGE_REGION", "us".into()),
                ("TA_SALT_RATCHET", state.trim().to_owned()),
            ],
        ),
        &dir.join("b"),
    );
    let loader = Service::start(
        "ta-loader",
        &with(vec![
            ("TA_LOADER_LISTEN", format!("127.0.0.1:{}", ports[2])),
            ("TA_LOADER_BATCH_MAX_WAIT_MS", "200".into()),
        ]),
        &dir,
    );
    let query = Service::start(
        "ta-query",
        &with(vec![
            ("TA_QUERY_LISTEN", format!("127.0.0.1:{}", ports[3])),
            (
                "TA_QUERY_ACCESS_FILE",
                workspace_root()
                    .join("deploy/config/access.dev.toml")
                    .display()
                    .to_string(),
            ),
        ]),
        &dir,
    );
    for (service, port) in [(&edge_b, ports[1]), (&loader, ports[2]), (&query, ports[3])] {
        wait_healthy(
            &format!("{}/healthz", url(port)),
            service,
            Duration::from_secs(60),
        )
        .await;
    }

    // Each visitor: one pageview through each node.
    let http = reqwest::Client::new();
    for i in 0..VISITORS {
        for (node, port) in [("a", ports[0]), ("b", ports[1])] {
            let res = http
                .post(format!("{}/v1/collect", url(port)))
                .header("X-TA-API-Key", "dev-key-site-1")
                .header("User-Agent", ua(i))
                .header("X-Forwarded-For", ip(i))
                .header("Content-Type", "application/json")
                .body(format!(
                    r#"{{"site_id":"site-1","event_name":"pageview","url":"https://example.com/v{i}/{node}","referrer":"https://www.google.com/"}}"#
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 202);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n: usize = ch(&db, "SELECT count() FROM events")
            .await
            .trim()
            .parse()
            .unwrap_or(0);
        if n == 2 * VISITORS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {} events loaded",
            2 * VISITORS
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A read through ta-query, so its paths are exercised before its log is searched.
    let stats = http
        .get(format!(
            "{}/v1/stats/breakdown?site_id=site-1&period=today&property=page",
            url(ports[3])
        ))
        .bearer_auth(ta_bench::DEV_QUERY_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);

    // Same visitor, same day: the same hash on both nodes; different visitors differ.
    let rows = ch(
        &db,
        "SELECT path, toString(visitor_hash) FROM events FORMAT TabSeparated",
    )
    .await;
    let by_path: BTreeMap<&str, &str> = rows.lines().filter_map(|l| l.split_once('\t')).collect();
    let mut hashes = BTreeSet::new();
    for i in 0..VISITORS {
        let (a, b) = (by_path[&*format!("/v{i}/a")], by_path[&*format!("/v{i}/b")]);
        assert_eq!(a, b, "visitor {i} hashed differently by the two nodes");
        hashes.insert(a);
    }
    assert_eq!(hashes.len(), VISITORS, "distinct visitors, distinct hashes");

    // Everywhere data went.
    let mut haystacks: Vec<(String, String)> = vec![(
        format!("topic {topic}"),
        String::from_utf8_lossy(&topic_bytes(&kafka_brokers(), &topic).await).into_owned(),
    )];
    let tables = ch(
        &db,
        &format!("SELECT name FROM system.tables WHERE database = '{db}' FORMAT TabSeparated"),
    )
    .await;
    let tables: Vec<&str> = tables.lines().collect();
    assert!(
        tables.contains(&"events") && tables.len() >= 2,
        "{tables:?}"
    );
    for table in &tables {
        haystacks.push((
            format!("ClickHouse table {table}"),
            ch(&db, &format!("SELECT * FROM {table} FORMAT TabSeparated")).await,
        ));
    }
    for (name, service) in [
        ("edge a", &edge_a),
        ("edge b", &edge_b),
        ("loader", &loader),
        ("query", &query),
    ] {
        haystacks.push((format!("{name} log"), service.log_text()));
    }
    // The edges' ingest ports serve no /metrics: their ops ports and the central services'.
    for port in [
        edge_metrics_ports[0],
        edge_metrics_ports[1],
        ports[2],
        ports[3],
    ] {
        let metrics = http
            .get(format!("{}/metrics", url(port)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        haystacks.push((format!("metrics on :{port}"), metrics));
    }
    assert!(
        haystacks[0].1.contains("/v0/a"),
        "the topic was read: {} bytes",
        haystacks[0].1.len()
    );
    for i in 0..VISITORS {
        let (ip, ua) = (ip(i), ua(i));
        let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
        let as_int = u32::from_be_bytes([octets[0], octets[1], octets[2], octets[3]]).to_string();
        let needles = [
            ip.clone(),
            hex(ip.as_bytes()),
            base64(ip.as_bytes()),
            hex(&octets),
            as_int,
            ua.clone(),
            hex(ua.as_bytes()),
            base64(ua.as_bytes()),
            ua.replace(' ', "%20"),
        ];
        for (name, text) in &haystacks {
            for needle in &needles {
                assert!(
                    !text.contains(needle.as_str()),
                    "{name} contains {needle:?} (visitor {i}: {ip}, {ua})"
                );
            }
        }
    }
}
