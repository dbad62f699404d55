use clap::Parser;

// glibc malloc showed up at ~17% of the edge's CPU under load (many small JSON/string
// allocations per request, freed on other threads).
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
