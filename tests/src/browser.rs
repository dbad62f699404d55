//! Headless Chromium for tests: [`ta_bench::browser`] (shared with the dashboard benchmark),
//! failing the test on any error.

pub use ta_bench::browser::{artifacts_dir, node_modules};

/// Run `tests/browser/<script>` with `args`; its JSON result. Panics when the script fails.
pub fn run(script: &str, args: &serde_json::Value) -> serde_json::Value {
    ta_bench::browser::run(script, args).unwrap_or_else(|e| panic!("{e:#}"))
}
