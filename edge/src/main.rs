use clap::Parser;
use ta_edge::EdgeConfig;

#[async_std::main]
async fn main() -> anyhow::Result<()> {
    let config = EdgeConfig::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .init();
    ta_edge::run(config).await
}
