//! Headless Chromium for tests and benchmarks: runs a node script from `tests/browser/` with
//! playwright-core (installed by `deploy/local/infra up` into the tools cache) and Debian's
//! Chromium.
//!
//! A script `require`s `./lib.js`, reads its arguments from `args`, and reports one JSON value
//! through `main`; [`run`] returns it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// `node_modules` holding playwright-core.
pub fn node_modules() -> PathBuf {
    ta_devsupport::tools_dir().join("node/node_modules")
}

/// Where screenshots and other browser artifacts go (kept after the run).
pub fn artifacts_dir() -> PathBuf {
    let dir = workspace_root().join("target/test-artifacts/browser");
    std::fs::create_dir_all(&dir).expect("creating the browser artifacts directory");
    dir
}

/// Run `tests/browser/<script>` with `args`; its JSON result. Blocks until the script exits.
pub fn run(script: &str, args: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let path = workspace_root().join("tests/browser").join(script);
    let modules = node_modules();
    anyhow::ensure!(
        modules.join("playwright-core").exists(),
        "playwright-core is not installed in {}: run `deploy/local/infra up`",
        modules.display()
    );
    let output = Command::new("node")
        .arg(&path)
        .env("NODE_PATH", &modules)
        .env("TA_BROWSER_ARGS", args.to_string())
        .output()
        .context("running node (installed by `deploy/local/infra up`)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "{script} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TA_RESULT "))
        .with_context(|| format!("{script} printed no result:\n{stdout}\n{stderr}"))?;
    serde_json::from_str(line).context("the script's result is JSON")
}
