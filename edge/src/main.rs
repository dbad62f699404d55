use clap::Parser;
use ta_edge::EdgeConfig;

#[async_std::main]
async fn main() -> anyhow::Result<()> {
    let config = EdgeConfig::parse();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    ta_edge::run(config).await
}
