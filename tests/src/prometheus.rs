//! Real Prometheus servers (the OS package `deploy/local/infra up` installs) for observability
//! tests: each on its own port and data directory, running one of the shipped configs with its
//! container addresses rewritten to the test's processes.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ta_devsupport::Proc;

use crate::{free_port, workspace_root};

/// A shipped file under `deploy/` with each `(from, to)` replaced. Panics when a `from` is
/// missing, so a test notices when the shipped file changes shape.
pub fn shipped_config(relative: &str, replacements: &[(&str, String)]) -> String {
    let path = workspace_root().join("deploy").join(relative);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{} no longer contains {from:?}",
            path.display()
        );
        text = text.replace(from, to);
    }
    text
}

/// One `prometheus` process, killed when dropped.
pub struct Prometheus {
    pub url: String,
    pub port: u16,
    pub config: PathBuf,
    log: PathBuf,
    child: Proc,
}

impl Prometheus {
    /// Start `prometheus` on a free port with `config` (YAML text), keeping its config, data and
    /// log in `dir/name`. `port` is the port to listen on (the config may need to know it). The
    /// port was free when picked, but another process may take it before Prometheus binds it:
    /// then it starts again on another port, with `127.0.0.1:<port>` in the config following.
    pub fn start(dir: &Path, name: &str, port: u16, config: &str) -> Self {
        let (mut port, mut config) = (port, config.to_owned());
        for _ in 0..5 {
            let mut started = Self::spawn(dir, name, port, &config);
            if !started.lost_its_port() {
                return started;
            }
            let next = free_port();
            config = config.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{next}"));
            port = next;
        }
        panic!("prometheus found no free port in five tries");
    }

    fn spawn(dir: &Path, name: &str, port: u16, config: &str) -> Self {
        let home = dir.join(name);
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(home.join("data")).unwrap();
        let config_path = home.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = home.join("prometheus.log");
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Proc::new(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    home.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .expect("starting prometheus (deploy/local/install installs it)"),
        );
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            config: config_path,
            log,
            child,
        }
    }

    /// Whether the process exited because its port was taken. Waits until it says it is ready
    /// or exits, at most 10 s (a connect would not tell: the port's taker answers it).
    fn lost_its_port(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().is_some() {
                return self.log_text().contains("address already in use");
            }
            if self
                .log_text()
                .contains("Server is ready to receive web requests")
            {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// A free port for [`Prometheus::start`].
    pub fn port() -> u16 {
        free_port()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(res) = reqwest::get(format!("{}/-/ready", self.url)).await
                && res.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "prometheus at {} not ready; log:\n{}",
            self.url,
            self.log_text()
        );
    }

    /// GET an API path with query parameters; the decoded JSON answer, whatever its status.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.url))
            .json()
            .await
            .unwrap()
    }

    /// An instant query: the whole answer (`status` is "success" or "error").
    pub async fn query(&self, expr: &str) -> Value {
        self.api("/api/v1/query", &[("query", expr)]).await
    }

    /// Every metric name this Prometheus holds series for.
    pub async fn metric_names(&self) -> BTreeSet<String> {
        let answer = self.api("/api/v1/label/__name__/values", &[]).await;
        answer["data"]
            .as_array()
            .unwrap_or_else(|| panic!("label values: {answer}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
}

/// The metric names a PromQL expression (or a Grafana `label_values(...)` query) refers to:
/// identifiers that start with `ta_`, plus `up`. Quoted strings are skipped.
pub fn referenced_metrics(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut unquoted = String::new();
    let mut quote = None;
    for c in expr.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => unquoted.push(c),
        }
    }
    for token in unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if token.starts_with("ta_") || token == "up" {
            names.insert(token.to_owned());
        }
    }
    names
}

/// Metric names (families, with `_bucket`/`_sum`/`_count` for histograms) in a text exposition.
pub fn exposed_metrics(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The samples of metric `name` in a text exposition: (labels, value).
pub fn samples(exposition: &str, name: &str) -> Vec<(BTreeSet<(String, String)>, f64)> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series
                .split_once('{')
                .map(|(_, rest)| rest.trim_end_matches('}'))
                .unwrap_or("")
                .split(',')
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_metrics_skips_functions_labels_and_strings() {
        let expr = r#"sum by (site_id) (rate(ta_edge_events_accepted_total{region=~"ta_x"}[5m])) / up{job="a"}"#;
        let names: Vec<_> = referenced_metrics(expr).into_iter().collect();
        assert_eq!(names, ["ta_edge_events_accepted_total", "up"]);
    }

    #[test]
    fn samples_reads_labels_and_values() {
        let text = "# TYPE a counter\nta_a_total{site_id=\"s\",region=\"eu\"} 3\nta_a_totalx 1\n";
        let got = samples(text, "ta_a_total");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, 3.0);
        assert!(got[0].0.contains(&("region".to_owned(), "eu".to_owned())));
        assert_eq!(exposed_metrics(text).len(), 2);
    }

    #[test]
    fn a_prometheus_whose_port_was_taken_starts_on_another_and_its_config_follows() {
        // The race of a free-port pick: something else binds the port first.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = crate::artifacts_dir("prometheus_port_race");
        let config = format!(
            "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        );
        let prometheus = Prometheus::start(&dir, "p", port, &config);
        assert_ne!(prometheus.port, port);
        let written = std::fs::read_to_string(&prometheus.config).unwrap();
        assert!(
            written.contains(&format!("127.0.0.1:{}", prometheus.port)),
            "{written}"
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(prometheus.wait_ready());
    }
}
