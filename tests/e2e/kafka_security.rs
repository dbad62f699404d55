//! Kafka over TLS with SCRAM authentication, against the real broker: every combination the
//! edge and the loader offer, and the start-up refusals that name the setting to fix.
//!
//! What runs where (README, "Kafka security"): SASL SCRAM-SHA-256/512 is tansu's own (users
//! created with `tansu user create`, `--authentication` on); TLS, and mutual TLS, is stunnel's
//! in front of tansu, because tansu 0.6 takes `--cert`/`--key` but never applies them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rskafka::client::ClientBuilder;
use ta_tests::infra::{PrivateBroker, clickhouse_number};
use ta_tests::tls::{TestCerts, TlsFront};
use ta_tests::{
    Service, artifacts_dir, clickhouse_url, free_port, unique, wait_healthy, workspace_root,
};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const EDGE_USER: (&str, &str) = ("edge-eu", "edge-eu-password-for-the-tls-tests");
const LOADER_USER: (&str, &str) = ("loader", "loader-password-for-the-tls-tests");

/// A tansu broker with the two test users (edge: SCRAM-SHA-256, loader: SCRAM-SHA-512) and
/// authentication required, advertising `advertised` (a TLS front's port) when given.
fn secured_broker(dir: &Path, advertised: Option<u16>) -> PrivateBroker {
    let mut broker = PrivateBroker::start_advertising(&dir.join("broker"), advertised);
    broker.create_user(EDGE_USER.0, EDGE_USER.1, "scram256");
    broker.create_user(LOADER_USER.0, LOADER_USER.1, "scram512");
    broker.require_authentication();
    broker
}

fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(format!("{name}.password"));
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.display().to_string()
}

/// The TA_KAFKA_* settings of one client.
fn kafka_env(
    brokers: String,
    protocol: &str,
    user: Option<(&str, &str, &str)>,
    ca: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    dir: &Path,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("TA_KAFKA_BROKERS", brokers),
        ("TA_KAFKA_SECURITY_PROTOCOL", protocol.to_owned()),
        ("TA_KAFKA_STARTUP_CHECK_SECS", "5".into()),
    ];
    if let Some((name, password, mechanism)) = user {
        env.push(("TA_KAFKA_SASL_USERNAME", name.to_owned()));
        env.push(("TA_KAFKA_SASL_MECHANISM", mechanism.to_owned()));
        env.push((
            "TA_KAFKA_SASL_PASSWORD_FILE",
            password_file(dir, name, password),
        ));
    }
    if let Some(ca) = ca {
        env.push(("TA_KAFKA_TLS_CA_FILE", ca.display().to_string()));
    }
    if let Some((cert, key)) = client_cert {
        env.push(("TA_KAFKA_TLS_CERT_FILE", cert.display().to_string()));
        env.push(("TA_KAFKA_TLS_KEY_FILE", key.display().to_string()));
    }
    env
}

struct Edge {
    service: Service,
    url: String,
}

fn start_edge(dir: &Path, topic: &str, kafka: Vec<(&'static str, String)>) -> Edge {
    let (port, ops) = (free_port(), free_port());
    let spool = dir.join(format!("spool-{port}"));
    let mut env = vec![
        ("TA_EDGE_LISTEN", format!("127.0.0.1:{port}")),
        ("TA_EDGE_METRICS_LISTEN", format!("127.0.0.1:{ops}")),
        (
            "TA_SITES_FILE",
            workspace_root()
                .join("deploy/config/sites.dev.toml")
                .display()
                .to_string(),
        ),
        ("TA_KAFKA_TOPIC", topic.to_owned()),
        ("TA_SPOOL_DIR", spool.display().to_string()),
        ("TA_LOG", "info,rskafka=warn".into()),
    ];
    env.extend(kafka);
    Edge {
        service: Service::start("ta-edge", &env, dir),
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn start_loader(
    dir: &Path,
    topic: &str,
    db: &str,
    kafka: Vec<(&'static str, String)>,
) -> (Service, String) {
    let port = free_port();
    let mut env = vec![
        ("TA_LOADER_LISTEN", format!("127.0.0.1:{port}")),
        ("TA_KAFKA_TOPIC", topic.to_owned()),
        ("TA_CLICKHOUSE_URL", clickhouse_url()),
        ("TA_CLICKHOUSE_DATABASE", db.to_owned()),
        ("TA_LOADER_BATCH_MAX_WAIT_MS", "200".into()),
        ("TA_LOG", "info,rskafka=warn".into()),
    ];
    env.extend(kafka);
    (
        Service::start("ta-loader", &env, dir),
        format!("http://127.0.0.1:{port}"),
    )
}

/// Wait until the process has exited (a refusal) and return its log, or panic.
fn refused(mut service: Service, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = service.try_wait() {
            assert!(!status.success(), "exited 0; log:\n{}", service.log_text());
            return service.log_text();
        }
        assert!(
            Instant::now() < deadline,
            "{} kept running; expected it to refuse to start. Log:\n{}",
            service.name,
            service.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send `n` pageviews through the edge and wait until ClickHouse holds exactly `n` events.
async fn events_arrive(edge: &Edge, db: &str, n: u32) {
    let http = reqwest::Client::new();
    wait_healthy(
        &format!("{}/healthz", edge.url),
        &edge.service,
        Duration::from_secs(60),
    )
    .await;
    for i in 0..n {
        let body = format!(
            r#"{{"site_id":"site-1","event_name":"pageview","url":"https://example.com/tls/{i}","user_id":"u{i}"}}"#
        );
        let answer = http
            .post(format!("{}/v1/collect", edge.url))
            .header("X-TA-API-Key", "dev-key-site-1")
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
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stored = clickhouse_number(&clickhouse_url(), db, "SELECT count() FROM events").await;
        if stored == Some(u64::from(n)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stored {stored:?} of {n} events; edge log:\n{}",
            edge.service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn setup(test: &str) -> (PathBuf, String, String) {
    let dir = artifacts_dir(test);
    (dir, unique(test), unique(test))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_256_and_512_carry_events_from_the_edge_to_clickhouse() {
    let (dir, topic, db) = setup("kafka_sasl");
    let broker = secured_broker(&dir, None);
    let edge = start_edge(
        &dir,
        &topic,
        kafka_env(
            broker.address(),
            "sasl_plaintext",
            Some((EDGE_USER.0, EDGE_USER.1, "SCRAM-SHA-256")),
            None,
            None,
            &dir,
        ),
    );
    let (_loader, _) = start_loader(
        &dir,
        &topic,
        &db,
        kafka_env(
            broker.address(),
            "sasl_plaintext",
            Some((LOADER_USER.0, LOADER_USER.1, "SCRAM-SHA-512")),
            None,
            None,
            &dir,
        ),
    );
    events_arrive(&edge, &db, 25).await;
    assert!(
        edge.service
            .log_text()
            .contains("sasl_plaintext, SCRAM-SHA-256 as edge-eu")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_over_tls_carries_events_and_mutual_tls_needs_the_ca_s_client_certificate() {
    let (dir, topic, db) = setup("kafka_sasl_ssl");
    let certs = TestCerts::generate(&dir.join("certs"));
    let tls_port = free_port();
    let broker = secured_broker(&dir, Some(tls_port));
    let _front = TlsFront::start(&dir, tls_port, broker.port, &certs, true);
    let tls = format!("127.0.0.1:{tls_port}");
    let client = Some((certs.client_cert.as_path(), certs.client_key.as_path()));
    let edge = start_edge(
        &dir,
        &topic,
        kafka_env(
            tls.clone(),
            "sasl_ssl",
            Some((EDGE_USER.0, EDGE_USER.1, "SCRAM-SHA-256")),
            Some(&certs.ca),
            client,
            &dir,
        ),
    );
    let (_loader, _) = start_loader(
        &dir,
        &topic,
        &db,
        kafka_env(
            tls.clone(),
            "sasl_ssl",
            Some((LOADER_USER.0, LOADER_USER.1, "SCRAM-SHA-512")),
            Some(&certs.ca),
            client,
            &dir,
        ),
    );
    events_arrive(&edge, &db, 25).await;

    // The same broker refuses a client without a certificate, or with one of another CA.
    for (name, cert) in [
        ("no client certificate", None),
        (
            "a stranger's certificate",
            Some((certs.stranger_cert.as_path(), certs.stranger_key.as_path())),
        ),
    ] {
        let edge = start_edge(
            &dir,
            &topic,
            kafka_env(
                tls.clone(),
                "sasl_ssl",
                Some((EDGE_USER.0, EDGE_USER.1, "SCRAM-SHA-256")),
                Some(&certs.ca),
                cert,
                &dir,
            ),
        );
        let log = refused(edge.service, Duration::from_secs(30));
        assert!(
            log.contains("refused this client's TLS certificate"),
            "{name}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_sasl_carries_events_from_the_edge_to_clickhouse() {
    let (dir, topic, db) = setup("kafka_ssl");
    let certs = TestCerts::generate(&dir.join("certs"));
    let tls_port = free_port();
    // No authentication on the broker: the protocol `ssl` sends no SASL.
    let broker = PrivateBroker::start_advertising(&dir.join("broker"), Some(tls_port));
    let _front = TlsFront::start(&dir, tls_port, broker.port, &certs, false);
    let tls = format!("127.0.0.1:{tls_port}");
    let edge = start_edge(
        &dir,
        &topic,
        kafka_env(tls.clone(), "ssl", None, Some(&certs.ca), None, &dir),
    );
    let (_loader, _) = start_loader(
        &dir,
        &topic,
        &db,
        kafka_env(tls, "ssl", None, Some(&certs.ca), None, &dir),
    );
    events_arrive(&edge, &db, 25).await;
    assert!(
        edge.service.log_text().contains("security=ssl, TLS"),
        "{}",
        edge.service.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_or_a_wrong_password_stops_edge_and_loader_at_start() {
    let (dir, topic, db) = setup("kafka_refusals");
    let certs = TestCerts::generate(&dir.join("certs"));
    let tls_port = free_port();
    let broker = secured_broker(&dir, Some(tls_port));
    let _front = TlsFront::start(&dir, tls_port, broker.port, &certs, false);
    let tls = format!("127.0.0.1:{tls_port}");
    let user = Some((EDGE_USER.0, EDGE_USER.1, "SCRAM-SHA-256"));

    let untrusted = kafka_env(
        tls.clone(),
        "sasl_ssl",
        user,
        Some(&certs.other_ca),
        None,
        &dir,
    );
    let log = refused(
        start_edge(&dir, &topic, untrusted.clone()).service,
        Duration::from_secs(30),
    );
    assert!(log.contains("TLS certificate is not accepted"), "{log}");
    let (loader, _) = start_loader(&dir, &topic, &db, untrusted);
    let log = refused(loader, Duration::from_secs(30));
    assert!(log.contains("TLS certificate is not accepted"), "{log}");

    let wrong = Some((EDGE_USER.0, "not-the-password", "SCRAM-SHA-256"));
    let bad_password = kafka_env(tls.clone(), "sasl_ssl", wrong, Some(&certs.ca), None, &dir);
    let log = refused(
        start_edge(&dir, &topic, bad_password.clone()).service,
        Duration::from_secs(30),
    );
    assert!(
        log.contains("SASL SCRAM-SHA-256 authentication as `edge-eu` failed"),
        "{log}"
    );
    assert!(
        !log.contains("not-the-password"),
        "the password is logged:\n{log}"
    );
    let (loader, _) = start_loader(&dir, &topic, &db, bad_password);
    let log = refused(loader, Duration::from_secs(30));
    assert!(log.contains("authentication as `edge-eu` failed"), "{log}");

    // TLS towards the broker's plaintext port.
    let plaintext_port = kafka_env(
        broker.address(),
        "sasl_ssl",
        user,
        Some(&certs.ca),
        None,
        &dir,
    );
    let log = refused(
        start_edge(&dir, &topic, plaintext_port).service,
        Duration::from_secs(30),
    );
    assert!(log.contains("did not complete a TLS handshake"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_the_broker_serves_nothing() {
    let (dir, _, _) = setup("kafka_unauthenticated");
    let broker = secured_broker(&dir, None);
    let client = ClientBuilder::new(vec![broker.address()])
        .backoff_config(rskafka::BackoffConfig {
            deadline: Some(Duration::from_secs(3)),
            ..Default::default()
        })
        .build()
        .await;
    let topics = match client {
        Ok(c) => c.list_topics().await.map(|t| t.len()),
        Err(e) => Err(e),
    };
    assert!(
        topics.is_err(),
        "an unauthenticated client listed topics: {topics:?}"
    );
    // The same broker serves an authenticated client: it was up all along.
    let password = dir.join("loader.password");
    std::fs::write(&password, LOADER_USER.1).unwrap();
    let security = ta_shared::kafka_security::KafkaSecurity {
        protocol: ta_shared::kafka_security::SecurityProtocol::SaslPlaintext,
        sasl_mechanism: ta_shared::kafka_security::SaslMechanism::ScramSha512,
        sasl_username: Some(LOADER_USER.0.into()),
        sasl_password_file: Some(password),
        ..Default::default()
    };
    let client = ta_shared::kafka::client_builder(
        vec![broker.address()],
        "test",
        &security,
        Some(Duration::from_secs(10)),
    )
    .unwrap()
    .build()
    .await
    .expect("the loader's user connects");
    client.list_topics().await.expect("and lists topics");
}
