use clap::Parser;

// Many small JSON and string allocations per request, freed on other threads: mimalloc handles
// them far more cheaply than glibc malloc (the README's performance section has the figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ta_edge::EdgeConfig;

#[async_std::main]
async fn main() -> anyhow::Result<()> {
    // Before anything else allocates much (see ta_shared::process); reported once logging is up.
    let thp = ta_shared::process::disable_transparent_huge_pages();
    let config = EdgeConfig::parse();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = thp {
        tracing::warn!(error = %e, "could not turn off transparent huge pages; resident memory may grow in 2 MiB steps");
    }
    ta_edge::run(config).await
}
