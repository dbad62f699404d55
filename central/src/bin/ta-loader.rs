use anyhow::Context;
use axum::Router;
use axum::routing::get;
use clap::Parser;
use ta_central::LoaderConfig;
use ta_central::config::LoaderCommand;
use ta_central::loader::{self, LoaderMetrics};
use ta_central::store::{self, lifecycle, rollup};

// The loader allocates and frees a few dozen strings per event; under glibc malloc a large share
// of its CPU went to malloc/free (bench/README.md has the profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = LoaderConfig::parse();
    ta_central::telemetry::init_process(&config.log);
    if let Some(command) = config.command.clone() {
        return operator_command(&config, command).await;
    }
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
    // Stopping at any point is safe: a batch is committed with its offsets or not at all
    // (central/src/store/offsets.rs), so SIGTERM simply ends the process.
    tokio::select! {
        result = loader::run(config, metrics) => result,
        signal = ta_central::telemetry::shutdown_signal() => {
            tracing::info!(message = "Stopped.", signal);
            Ok(())
        }
    }
}

async fn operator_command(config: &LoaderConfig, command: LoaderCommand) -> anyhow::Result<()> {
    let ch = &config.clickhouse;
    let applied = store::migrate(ch).await.with_context(|| {
        format!(
            "migrating the schema at {} (TA_CLICKHOUSE_URL)",
            ch.clickhouse_url
        )
    })?;
    let db = ch.store().await?;
    match command {
        LoaderCommand::Migrate => println!("schema is current (applied now: {applied:?})"),
        LoaderCommand::Retention => {
            let dropped =
                lifecycle::apply_retention(&db, &config.retention_policy(), chrono::Utc::now())
                    .await?;
            println!(
                "retention: dropped {} partition(s) {dropped:?}",
                dropped.len()
            );
            let expired = lifecycle::expire_dead_letters(
                &db,
                config.dead_letter_retention_days,
                chrono::Utc::now(),
            )
            .await?;
            println!(
                "retention: deleted {expired} dead letter(s) older than {} days",
                config.dead_letter_retention_days
            );
        }
        LoaderCommand::Rollup => {
            let started = std::time::Instant::now();
            let report = rollup::build_pending(
                &db,
                chrono::Utc::now(),
                config.rollup_days,
                |done, total, day| {
                    if done == 1 || done == total || done % 10 == 0 {
                        let date = chrono::DateTime::from_timestamp(i64::from(day.day) * 86_400, 0)
                            .map(|d| d.date_naive().to_string())
                            .unwrap_or_default();
                        println!(
                            "rollup: {done}/{total} site-days ({} {date}: {} events)",
                            day.site, day.n
                        );
                    }
                },
            )
            .await?;
            println!(
                "rollup: built {} site-day(s) holding {} events in {:.1}s",
                report.days,
                report.events,
                started.elapsed().as_secs_f64()
            );
        }
        LoaderCommand::EraseSite { site } => {
            anyhow::ensure!(
                ta_shared::site::is_valid_site_id(&site),
                "`{site}` is not a valid site id"
            );
            let n = lifecycle::erase_site(&db, &site).await?;
            println!(
                "erased site {site}: {n} partition(s) dropped, dead letters mentioning it deleted"
            );
        }
        LoaderCommand::EraseVisitor { site, visitor_hash } => {
            lifecycle::erase_visitor(&db, &site, visitor_hash).await?;
            println!("erased visitor {visitor_hash:016x} of site {site}");
        }
    }
    Ok(())
}
