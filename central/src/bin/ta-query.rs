use clap::Parser;
use ta_central::QueryConfig;
use ta_central::config::QueryCommand;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = QueryConfig::parse();
    if let Some(QueryCommand::Admin(command)) = &config.command {
        return ta_central::query::admin_command(&config, command);
    }
    ta_central::telemetry::init_process(&config.log);
    ta_central::query::run(config).await
}
