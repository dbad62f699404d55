//! What both deployment tests (`make deploy-test`, `make deploy-test-cluster`) drive podman
//! and podman-compose with. Each of the two test binaries uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ta_tests::workspace_root;

pub(crate) fn say(line: impl AsRef<str>) {
    eprintln!("[deploy-test] {}", line.as_ref());
}

/// Run a command to completion; panic with its output on failure.
pub(crate) fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{shown} failed:\n{text}");
    text
}

/// One compose project: a compose file, a project name and the variables it reads.
pub(crate) struct Project {
    pub(crate) name: String,
    /// The compose file, then any overrides (`-f` each, merged in order).
    pub(crate) files: Vec<PathBuf>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) log: PathBuf,
}

impl Project {
    /// `podman-compose -p <name> -f <file>...` with the project's variables in the environment
    /// (podman-compose 1.0 interpolates from it; it has no --env-file) and podman's settings.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new("podman-compose");
        cmd.args(["-p", &self.name]);
        for file in &self.files {
            cmd.arg("-f").arg(file);
        }
        cmd.envs(&self.env)
            .env("CONTAINERS_CONF", containers_conf());
        cmd
    }

    /// Remove what an earlier run left (containers, network, volumes); nothing there is fine.
    pub(crate) fn down_leftovers(&self) {
        let _ = self.command().args(["down", "-v"]).output();
    }

    /// `podman-compose … <args>`; panics when it fails.
    pub(crate) fn compose(&self, args: &[&str]) -> String {
        let mut cmd = self.command();
        cmd.args(args);
        let started = Instant::now();
        let out = run(&mut cmd);
        std::fs::write(
            self.log
                .with_extension(format!("{}.log", args.join("_").replace('/', "_"))),
            &out,
        )
        .ok();
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                let shown = f.strip_prefix(workspace_root()).unwrap_or(f).display();
                format!("-f {shown}")
            })
            .collect();
        say(format!(
            "podman-compose -p {} {} {} ({:.0}s)",
            self.name,
            files.join(" "),
            args.join(" "),
            started.elapsed().as_secs_f64()
        ));
        out
    }

    pub(crate) fn container(&self, service: &str) -> String {
        format!("{}_{}_1", self.name, service)
    }

    /// podman-compose 1.0 exits 0 whatever podman did: check that the services' containers run.
    pub(crate) fn assert_running(&self, services: &[&str]) {
        for service in services {
            let state = podman(&[
                "inspect",
                "--format",
                "{{.State.Status}}",
                &self.container(service),
            ]);
            assert_eq!(
                state.trim(),
                "running",
                "{} is {}",
                self.container(service),
                state.trim()
            );
        }
    }

    /// The image a service's container runs, or that `build` tagged for it.
    /// This edge project's `/metrics`, read inside its container (the ops port is not published).
    pub(crate) fn edge_exposition(&self) -> String {
        podman(&[
            "exec",
            &self.container("ta-edge"),
            "curl",
            "-sf",
            "http://127.0.0.1:9464/metrics",
        ])
    }

    pub(crate) fn image_of(&self, service: &str) -> String {
        let prefix = &self.env["TA_IMAGE_PREFIX"];
        format!("{prefix}/{service}:latest")
    }

    /// Write the variables as an env file beside the logs (what an operator's .env holds).
    pub(crate) fn write_env(&self) {
        let text: String = self.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(self.log.with_extension("env"), text).unwrap();
    }
}

pub(crate) fn containers_conf() -> PathBuf {
    workspace_root().join("deploy/local/containers/containers.conf")
}

pub(crate) fn podman(args: &[&str]) -> String {
    run(Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", containers_conf()))
}

pub(crate) fn image(name: &str) -> String {
    let out =
        run(Command::new(workspace_root().join("deploy/local/images/build")).args(["name", name]));
    out.trim().to_owned()
}

/// Poll `check` every 500 ms until it holds, or panic after `within` with `what`.
pub(crate) async fn until(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    started.elapsed()
}
