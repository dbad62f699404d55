//! Outside development mode nothing secret has a default: `ta-edge` and `ta-query` refuse to
//! start without their secrets, with the public development ones, or with weak ones, and say
//! which setting to fix. Each refusal is checked on the real binary, beside a control that the
//! same node starts once the one setting is right.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ta_tests::{artifacts_dir, binary, free_port, workspace_root};

const SALT: &str = "a-production-salt-secret-of-40-characters";
const SITES: &str = "[[site]]\nid = \"shop\"\napi_keys = [\"shop-ingest-key-1\"]\n";

/// Run `name` with exactly `envs` (plus loopback ports and a private spool): its exit status
/// and log when it stopped, `None` and the log once it answered `/healthz` (it started; it is
/// then killed). Panics when it did neither within 30 s.
fn run(name: &str, dir: &Path, envs: &[(&str, String)]) -> (Option<i32>, String) {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(binary(name));
    cmd.current_dir(workspace_root())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TA_")) {
        cmd.env_remove(k);
    }
    let port = free_port();
    cmd.env("TA_EDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "TA_EDGE_METRICS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("TA_QUERY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TA_SPOOL_DIR", dir.join("spool"))
        // Nothing listens there: the edge starts anyway and spools.
        .env("TA_KAFKA_BROKERS", format!("127.0.0.1:{}", free_port()))
        .env("TA_KAFKA_STARTUP_CHECK_SECS", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if healthy() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        assert!(
            Instant::now() < deadline,
            "{name} neither exited nor answered /healthz in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// A fresh directory with a production-like sites file in it.
fn setup(test: &str, sites: &str) -> (PathBuf, String) {
    let dir = artifacts_dir(test);
    let _ = std::fs::remove_dir_all(dir.join("spool"));
    let file = dir.join("sites.toml");
    std::fs::write(&file, sites).unwrap();
    (dir, file.display().to_string())
}

#[track_caller]
fn assert_refused(outcome: &(Option<i32>, String), reason: &str) {
    let (status, log) = outcome;
    assert!(
        matches!(status, Some(code) if *code != 0),
        "expected a refusal to start ({reason}), got {status:?}; log:\n{log}"
    );
    assert!(
        log.contains(reason),
        "the log does not say `{reason}`:\n{log}"
    );
}

#[track_caller]
fn assert_started(outcome: &(Option<i32>, String)) {
    assert_eq!(
        outcome.0, None,
        "expected the process to start and answer; log:\n{}",
        outcome.1
    );
}

#[test]
fn the_edge_refuses_to_start_without_a_salt() {
    let (dir, sites) = setup("secrets_no_salt", SITES);
    let refused = run("ta-edge", &dir, &[("TA_SITES_FILE", sites.clone())]);
    assert_refused(&refused, "no salt ratchet");
    let started = run(
        "ta-edge",
        &dir,
        &[("TA_SITES_FILE", sites), ("TA_SALT_SECRET", SALT.into())],
    );
    assert_started(&started);
}

#[test]
fn the_edge_refuses_the_public_development_salt_without_dev() {
    let (dir, sites) = setup("secrets_dev_salt", SITES);
    let envs = [
        ("TA_SITES_FILE", sites),
        ("TA_SALT_SECRET", "dev-only-salt-secret".into()),
    ];
    assert_refused(&run("ta-edge", &dir, &envs), "public development salt");
    let mut dev = envs.to_vec();
    dev.push(("TA_DEV", "true".into()));
    assert_started(&run("ta-edge", &dir, &dev));
}

#[test]
fn the_edge_refuses_a_short_salt_secret() {
    let (dir, sites) = setup("secrets_short_salt", SITES);
    let envs = [
        ("TA_SITES_FILE", sites),
        ("TA_SALT_SECRET", "short-secret".into()),
    ];
    assert_refused(
        &run("ta-edge", &dir, &envs),
        "TA_SALT_SECRET is shorter than 32 characters",
    );
}

#[test]
fn the_edge_refuses_to_start_without_a_sites_file() {
    let (dir, _) = setup("secrets_no_sites", SITES);
    let refused = run("ta-edge", &dir, &[("TA_SALT_SECRET", SALT.into())]);
    assert_refused(&refused, "no sites file: set TA_SITES_FILE");
}

#[test]
fn the_edge_refuses_the_development_sites_file_without_dev() {
    let (dir, _) = setup("secrets_dev_sites", SITES);
    let dev_file = workspace_root().join("deploy/config/sites.dev.toml");
    let envs = [
        ("TA_SITES_FILE", dev_file.display().to_string()),
        ("TA_SALT_SECRET", SALT.into()),
    ];
    assert_refused(&run("ta-edge", &dir, &envs), "marked development_only");
    let mut dev = envs.to_vec();
    dev.push(("TA_DEV", "true".into()));
    assert_started(&run("ta-edge", &dir, &dev));
}

#[test]
fn the_edge_refuses_an_empty_or_short_hmac_secret_in_the_sites_file() {
    for secret in ["", "sixteen-chars-ok"] {
        let sites = format!("{SITES}hmac_secret = \"{secret}\"\n");
        let (dir, file) = setup("secrets_site_hmac", &sites);
        let refused = run(
            "ta-edge",
            &dir,
            &[("TA_SITES_FILE", file), ("TA_SALT_SECRET", SALT.into())],
        );
        assert_refused(&refused, "has an hmac_secret shorter than 32 characters");
        if !secret.is_empty() {
            assert!(
                !refused.1.contains(secret),
                "the secret is logged:\n{}",
                refused.1
            );
        }
    }
}

#[test]
fn the_edge_refuses_a_short_global_hmac_secret() {
    let (dir, sites) = setup("secrets_global_hmac", SITES);
    for secret in ["too-short", "thirty-one-characters-long-0123"] {
        let envs = [
            ("TA_SITES_FILE", sites.clone()),
            ("TA_SALT_SECRET", SALT.into()),
            ("TA_HMAC_SECRET", secret.into()),
        ];
        assert_refused(&run("ta-edge", &dir, &envs), "TA_HMAC_SECRET is");
    }
}

#[test]
fn ta_query_refuses_to_start_without_an_access_file() {
    let dir = artifacts_dir("secrets_no_access");
    assert_refused(
        &run("ta-query", &dir, &[]),
        "no access file: set TA_QUERY_ACCESS_FILE",
    );
}

#[test]
fn ta_query_refuses_the_development_access_file_without_dev() {
    let dir = artifacts_dir("secrets_dev_access");
    let dev_file = workspace_root().join("deploy/config/access.dev.toml");
    let envs = [("TA_QUERY_ACCESS_FILE", dev_file.display().to_string())];
    assert_refused(&run("ta-query", &dir, &envs), "marked development_only");
    let own = dir.join("access.toml");
    std::fs::write(
        &own,
        "admin_tokens = [\"an-admin-token-of-the-deployment\"]\n",
    )
    .unwrap();
    assert_started(&run(
        "ta-query",
        &dir,
        &[("TA_QUERY_ACCESS_FILE", own.display().to_string())],
    ));
}

#[test]
fn a_malformed_sites_or_access_file_is_refused_without_logging_the_secret_on_the_bad_line() {
    const SECRET: &str = "s3cret-on-the-bad-line-0123456789abcdef";
    let broken = format!("{SITES}hmac_secret = \"{SECRET}\n");
    let (dir, sites) = setup("secrets_malformed", &broken);
    let refused = run(
        "ta-edge",
        &dir,
        &[("TA_SITES_FILE", sites), ("TA_SALT_SECRET", SALT.into())],
    );
    assert_refused(&refused, "line 4");
    assert!(
        !refused.1.contains(SECRET),
        "the secret is logged:\n{}",
        refused.1
    );

    let access = dir.join("access.toml");
    std::fs::write(&access, format!("admin_tokens = [\"{SECRET}\"\n")).unwrap();
    let refused = run(
        "ta-query",
        &dir,
        &[("TA_QUERY_ACCESS_FILE", access.display().to_string())],
    );
    assert_refused(&refused, "is not valid");
    assert!(
        !refused.1.contains(SECRET),
        "the token is logged:\n{}",
        refused.1
    );
}
