use clap::Parser;
use ta_central::QueryConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = QueryConfig::parse();
    ta_central::telemetry::init_process(&config.log);
    ta_central::query::run(config).await
}
