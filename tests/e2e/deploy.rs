//! The compose files must match the binaries and the shipped config files: the all-in-one
//! `deploy/compose.yaml`, one edge node `deploy/edge/compose.yaml` and the central side
//! `deploy/central/compose.yaml`. These are the quick structural checks of `make test`; the
//! files are run for real, with podman, by `make deploy-test` (tests/deploy/main.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ta_tests::{binary, workspace_root};

const COMPOSE_FILES: [&str; 3] = [
    "deploy/compose.yaml",
    "deploy/edge/compose.yaml",
    "deploy/central/compose.yaml",
];

/// One compose service as far as these tests read it.
#[derive(Debug, Default)]
struct Service {
    /// `TA_*` variables it sets.
    vars: Vec<String>,
    /// The binary its image runs, from `dockerfile: deploy/docker/<binary>.Dockerfile`.
    bin: Option<String>,
    /// `- source:target` entries under `volumes:`, `${VAR:-default}` resolved to the default.
    volumes: Vec<(String, String)>,
    /// Its lines, for presence checks.
    text: String,
}

struct Compose {
    path: PathBuf,
    services: BTreeMap<String, Service>,
    /// Named volumes declared at the top level.
    volumes: BTreeSet<String>,
}

/// `${VAR:-default}` → `default`; `${VAR}` → empty; `${VAR:?msg}` (a value the operator must
/// give, such as a host path) → `<VAR>`.
fn resolve_defaults(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        if let Some((_, default)) = inner.split_once(":-") {
            out.push_str(default);
        } else if let Some((var, _)) = inner.split_once(":?") {
            out.push_str(&format!("<{var}>"));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn compose(relative: &str) -> Compose {
    let path = workspace_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let mut volumes = BTreeSet::new();
    let mut section = "";
    let mut current: Option<String> = None;
    let mut in_volumes = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            section = line.trim_end_matches(':');
            current = None;
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
            && !name.starts_with('#')
        {
            match section {
                "services" => {
                    current = Some(name.to_owned());
                    services.insert(name.to_owned(), Service::default());
                }
                "volumes" => {
                    volumes.insert(name.to_owned());
                }
                _ => {}
            }
            continue;
        }
        let Some(svc) = current.as_ref().and_then(|c| services.get_mut(c)) else {
            continue;
        };
        svc.text.push_str(line);
        svc.text.push('\n');
        let trimmed = line.trim();
        let indent = line.len() - line.trim_start().len();
        if indent == 4 {
            in_volumes = trimmed == "volumes:";
        }
        if let Some((key, _)) = trimmed.split_once(':')
            && key.starts_with("TA_")
        {
            svc.vars.push(key.to_owned());
        }
        if let Some(bin) = trimmed
            .strip_prefix("dockerfile: deploy/docker/")
            .and_then(|d| d.strip_suffix(".Dockerfile"))
        {
            svc.bin = Some(bin.to_owned());
        }
        if in_volumes && let Some(entry) = trimmed.strip_prefix("- ") {
            let entry = resolve_defaults(entry);
            let mut parts = entry.splitn(3, ':');
            let source = parts.next().unwrap().to_owned();
            let target = parts.next().unwrap_or_default().to_owned();
            svc.volumes.push((source, target));
        }
    }
    Compose {
        path,
        services,
        volumes,
    }
}

fn help_vars(bin: &str) -> String {
    let help = Command::new(binary(bin)).arg("--help").output().unwrap();
    String::from_utf8(help.stdout).unwrap()
}

#[test]
fn every_variable_a_compose_file_sets_is_one_the_binary_reads() {
    let mut built = BTreeSet::new();
    for file in COMPOSE_FILES {
        let c = compose(file);
        for (name, svc) in &c.services {
            let Some(bin) = &svc.bin else {
                // The broker's services: their TA_* variables are read by the scripts they run.
                for var in &svc.vars {
                    let script = ["start", "init", "redpanda-init.sh"]
                        .iter()
                        .map(|f| {
                            std::fs::read_to_string(
                                workspace_root().join("deploy/central/kafka").join(f),
                            )
                            .unwrap()
                        })
                        .any(|text| text.contains(var.as_str()));
                    assert!(
                        script,
                        "{file}: {name} sets {var}, which no binary or broker script reads"
                    );
                }
                continue;
            };
            assert_eq!(name, bin, "{file}: service {name} builds binary {bin}");
            built.insert(bin.clone());
            assert!(
                !svc.vars.is_empty(),
                "{file}: {name} sets no TA_* variables"
            );
            let help = help_vars(bin);
            for var in &svc.vars {
                assert!(
                    help.contains(&format!("[env: {var}")),
                    "{file}: {name} sets {var}, which `{bin} --help` does not list"
                );
            }
        }
    }
    assert_eq!(
        built.into_iter().collect::<Vec<_>>(),
        ["ta-edge", "ta-loader", "ta-query"]
    );
}

#[test]
fn no_compose_file_uses_an_empty_default_podman_compose_would_not_substitute() {
    // podman-compose 1.0 leaves `${VAR:-}` as it is (its pattern needs a default character);
    // `${VAR}` is empty when unset in both compose implementations.
    for file in COMPOSE_FILES {
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        assert!(
            !text.contains(":-}"),
            "{file} has a ${{VAR:-}}: write ${{VAR}}"
        );
    }
}

#[test]
fn files_the_compose_files_mount_exist_in_the_repository_and_volumes_are_declared() {
    for file in COMPOSE_FILES {
        let c = compose(file);
        let dir = c.path.parent().unwrap();
        for (name, svc) in &c.services {
            for (source, target) in &svc.volumes {
                assert!(!target.is_empty(), "{file}: {name} mounts {source} nowhere");
                if source.starts_with('<') {
                    // A path the operator gives (`${VAR:?...}`): required, nothing to check here.
                    continue;
                }
                if source.starts_with('.') || source.starts_with('/') {
                    assert!(
                        dir.join(source).exists(),
                        "{file}: {name} mounts {source}, which does not exist"
                    );
                } else {
                    assert!(
                        c.volumes.contains(source),
                        "{file}: {name} uses volume {source}, not declared under volumes:"
                    );
                }
            }
        }
    }
}

/// `source` of the mount whose target is `target`, in `svc`.
fn mount_of<'a>(svc: &'a Service, target: &str) -> Option<&'a str> {
    svc.volumes
        .iter()
        .find(|(_, t)| t == target)
        .map(|(s, _)| s.as_str())
}

fn same_file(dir: &Path, source: &str, shipped: &str) -> bool {
    dir.join(source).canonicalize().unwrap()
        == workspace_root().join(shipped).canonicalize().unwrap()
}

#[test]
fn the_edge_compose_file_runs_a_durable_limited_checked_edge_and_its_prometheus() {
    let c = compose("deploy/edge/compose.yaml");
    let dir = c.path.parent().unwrap();
    assert_eq!(
        c.services.keys().collect::<Vec<_>>(),
        ["prometheus", "ta-edge"]
    );
    let edge = &c.services["ta-edge"];
    for key in [
        "restart:",
        "healthcheck:",
        "/readyz",
        "limits:",
        "memory:",
        "cpus:",
        "stop_grace_period:",
    ] {
        assert!(edge.text.contains(key), "ta-edge has {key}");
    }
    let spool = mount_of(edge, "/var/lib/tiny-analytics/spool").expect("a spool mount");
    assert!(c.volumes.contains(spool), "the spool is a named volume");
    assert!(
        edge.text
            .contains("TA_SPOOL_DIR: /var/lib/tiny-analytics/spool")
    );
    // The sites file, the Kafka CA and password have no default: the operator names them.
    for (target, var) in [
        ("/etc/tiny-analytics/sites.toml", "<TA_SITES_FILE_HOST>"),
        (
            "/etc/tiny-analytics/kafka-ca.pem",
            "<TA_KAFKA_CA_FILE_HOST>",
        ),
        (
            "/run/secrets/kafka-password",
            "<TA_KAFKA_PASSWORD_FILE_HOST>",
        ),
    ] {
        assert_eq!(mount_of(edge, target), Some(var), "{target}");
    }
    // Only the ingest port is published; /metrics stays on the ops listener inside.
    assert!(
        edge.text.contains(":8080\""),
        "the ingest port is published"
    );
    assert!(
        !edge.text.contains(":9464\""),
        "the ops listener is not published"
    );
    assert!(edge.text.contains("TA_KAFKA_SECURITY_PROTOCOL: sasl_ssl"));
    let prometheus = &c.services["prometheus"];
    let config = mount_of(prometheus, "/etc/prometheus/prometheus.yml").unwrap();
    assert!(
        same_file(dir, config, "deploy/prometheus/edge.yml"),
        "{config}"
    );
    assert!(prometheus.text.contains("limits:"));
}

#[test]
fn the_edge_env_example_documents_every_variable_the_edge_compose_file_reads() {
    let edge_dir = workspace_root().join("deploy/edge");
    let text = std::fs::read_to_string(edge_dir.join("compose.yaml")).unwrap();
    let used: BTreeSet<String> = text
        .split("${")
        .skip(1)
        .map(|s| {
            s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let example = std::fs::read_to_string(edge_dir.join(".env.example")).unwrap();
    let documented: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect();
    assert_eq!(used, documented, ".env.example vs ${{VAR}} in compose.yaml");
    // Each setting has a comment above it (a documented .env, not a bare list).
    let lines: Vec<&str> = example.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with('#') && line.contains('=') {
            let mut j = i;
            while j > 0 && !lines[j - 1].trim().is_empty() && !lines[j - 1].starts_with('#') {
                j -= 1;
            }
            assert!(
                j > 0 && lines[j - 1].starts_with('#'),
                ".env.example: {line} has no comment"
            );
        }
    }
}

#[test]
fn the_central_compose_file_runs_the_whole_central_side_with_the_shipped_configs() {
    let c = compose("deploy/central/compose.yaml");
    let dir = c.path.parent().unwrap();
    assert_eq!(
        c.services.keys().collect::<Vec<_>>(),
        [
            "clickhouse",
            "grafana",
            "kafka",
            "kafka-init",
            "prometheus",
            "ta-loader",
            "ta-query"
        ]
    );
    for (name, svc) in &c.services {
        assert!(
            svc.text.contains("restart:"),
            "{name} restarts (or says it does not)"
        );
        // The broker's start script is its own check: the deploy test waits for the edges.
        if !name.starts_with("kafka") {
            assert!(
                svc.text.contains("healthcheck:"),
                "{name} has a health check"
            );
        }
    }
    // The broker publishes only its TLS + SCRAM listener.
    let kafka = &c.services["kafka"];
    assert!(kafka.text.contains(":19093\""), "{}", kafka.text);
    assert!(
        !kafka.text.contains(":9092\""),
        "the internal listener stays inside"
    );
    let prometheus = &c.services["prometheus"];
    for (target, shipped) in [
        (
            "/etc/prometheus/prometheus.yml",
            "deploy/prometheus/central.yml",
        ),
        ("/etc/prometheus/rules", "deploy/prometheus/rules"),
        ("/etc/prometheus/edges", "deploy/prometheus/edges"), // TA_PROMETHEUS_EDGES_DIR's default
    ] {
        let source = mount_of(prometheus, target).unwrap_or_else(|| panic!("mount {target}"));
        assert!(same_file(dir, source, shipped), "{target} from {source}");
    }
    let grafana = &c.services["grafana"];
    for (target, shipped) in [
        ("/etc/grafana/provisioning", "deploy/grafana/provisioning"),
        ("/var/lib/grafana/dashboards", "deploy/grafana/dashboards"),
    ] {
        let source = mount_of(grafana, target).unwrap_or_else(|| panic!("mount {target}"));
        assert!(same_file(dir, source, shipped), "{target} from {source}");
    }
    // The dashboards provider reads where compose mounts them; the datasource is the service.
    let provider = std::fs::read_to_string(
        workspace_root().join("deploy/grafana/provisioning/dashboards/tiny-analytics.yml"),
    )
    .unwrap();
    assert!(provider.contains("path: /var/lib/grafana/dashboards"));
    let datasource = std::fs::read_to_string(
        workspace_root().join("deploy/grafana/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    assert!(datasource.contains("url: http://prometheus:9090"));
    let central =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/central.yml")).unwrap();
    for target in ["ta-loader:9465", "ta-query:8081"] {
        assert!(
            central.contains(target),
            "central Prometheus scrapes {target}"
        );
    }
    let loader = &c.services["ta-loader"];
    assert!(loader.text.contains("TA_LOADER_LISTEN: 0.0.0.0:9465"));
    let query = &c.services["ta-query"];
    assert!(query.text.contains("TA_QUERY_LISTEN: 0.0.0.0:8081"));
}

#[test]
fn each_binary_has_a_multi_stage_image_that_runs_it_as_a_non_root_user() {
    for bin in ["ta-edge", "ta-loader", "ta-query"] {
        let path = workspace_root().join(format!("deploy/docker/{bin}.Dockerfile"));
        let dockerfile = std::fs::read_to_string(&path).unwrap();
        let stages: Vec<&str> = dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .collect();
        assert_eq!(
            stages.len(),
            2,
            "{bin}: a build stage and a runtime stage: {stages:?}"
        );
        assert_eq!(stages[1], "FROM ${RUNTIME_IMAGE}", "{bin}");
        assert!(
            dockerfile.contains("ARG RUNTIME_IMAGE=debian:bookworm-slim"),
            "{bin}: small runtime image by default"
        );
        assert!(
            !dockerfile.contains("deploy/config"),
            "{bin}: no development configuration in the image"
        );
        assert!(
            dockerfile.contains(&format!("--bin {bin}")),
            "{bin}: builds only its binary"
        );
        assert!(dockerfile.contains(&format!("COPY --from=build /usr/local/bin/{bin}")));
        assert!(dockerfile.contains(&format!(r#"ENTRYPOINT ["/usr/local/bin/{bin}"]"#)));
        assert!(
            dockerfile.contains("HEALTHCHECK"),
            "{bin}: has a health check"
        );
        let user = dockerfile
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .expect("a USER line");
        assert!(
            !matches!(user.trim(), "root" | "0"),
            "{bin}: runs as {user}"
        );
    }
}

#[test]
fn the_operator_guide_covers_every_task_and_names_only_shipped_files() {
    let guide = std::fs::read_to_string(workspace_root().join("deploy/README.md")).unwrap();
    for heading in [
        "## Deploy an edge in a new region",
        "## Rotate site keys",
        "## Add a loader",
        "## Add partitions",
        "## Retention",
        "## Back up ClickHouse",
        "## Upgrade order",
    ] {
        assert!(guide.contains(heading), "deploy/README.md has {heading}");
    }
    // Every `deploy/...` path it names exists (but the .env the operator creates).
    for word in guide.split(['`', ' ', '\n', '(', ')', '[', ']']) {
        let path = word.trim_end_matches([',', '.', ':', ';']);
        if let Some(rel) = path.strip_prefix("deploy/")
            && !rel.contains('*')
            && !rel.is_empty()
            && !rel.ends_with("/.env")
        {
            assert!(
                workspace_root().join("deploy").join(rel).exists(),
                "deploy/README.md names {path}, which does not exist"
            );
        }
    }
}
