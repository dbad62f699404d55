//! Telemetry plumbing shared by both central binaries.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus::Registry;

/// `GET /metrics` body for `registry`.
pub fn metrics_response(registry: &Registry) -> Response {
    (
        [(CONTENT_TYPE, ta_shared::telemetry::TEXT_CONTENT_TYPE)],
        ta_shared::telemetry::encode_text(registry),
    )
        .into_response()
}

/// Initialise key/value logging with `filter` (tracing `EnvFilter` syntax), and turn off
/// transparent huge pages for the process ([`ta_shared::process`]).
pub fn init_process(filter: &str) {
    ta_shared::process::prepare().init_logging(filter, ta_shared::process::LogOutput::Stdout);
}

/// Resolves on SIGTERM or SIGINT, with the signal's name. A process that is PID 1 (a container's
/// entrypoint) gets no default action for SIGTERM, so without this `docker stop` waits its grace
/// period and then kills.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("could not install SIGTERM/SIGINT handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
