use clap::Parser;

// Many small JSON and string allocations per request, freed on other threads: mimalloc handles
// them far more cheaply than glibc malloc (the README's performance section has the figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ta_edge::EdgeConfig;

#[async_std::main]
async fn main() -> anyhow::Result<()> {
    // Before anything else allocates much (see ta_shared::process); reported once logging is up.
    let process = ta_shared::process::prepare();
    let config = EdgeConfig::parse();
    process.init_logging(&config.log, ta_shared::process::LogOutput::Stderr);
    ta_edge::run(config).await
}
