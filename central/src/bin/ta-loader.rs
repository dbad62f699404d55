use axum::Router;
use axum::routing::get;
use clap::Parser;
use ta_central::LoaderConfig;
use ta_central::loader::{self, LoaderMetrics};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = LoaderConfig::parse();
    ta_central::telemetry::init_logging(&config.log);
    let metrics = LoaderMetrics::new();
    let registry = metrics.registry.clone();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {} (TA_LOADER_LISTEN): {e}", config.listen))?;
    let ops = Router::new()
        .route(
            "/metrics",
            get(move || async move { ta_central::telemetry::metrics_response(&registry) }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, ops).await });
    loader::run(config, metrics).await
}
