//! `ta-bench`: Tiny Analytics' load generator and benchmark harness.
//!
//! ```text
//! ta-bench load       realistic traffic into a running edge (rate or closed loop, batches)
//! ta-bench edge       edge accept path and forwarder vs null tide/hyper and bare rskafka
//! ta-bench loader     ta-loader vs a bare fetch and a native clickhouse-client insert
//! ta-bench query      ta-query uncached/cached on N generated events
//! ta-bench freshness  edge 202 → visible in ta-query at a steady rate
//! ta-bench attack     the edge under hostile traffic: memory, answers, legitimate latency
//! ta-bench soak       the pipeline for 30 min at a steady rate: flat memory, nothing lost
//! ta-bench all        every scenario into bench/results/results.{md,json,svg} (make bench)
//! ta-bench demo       the README's demo traffic, checked against ta-query
//! ta-bench null       a null tide or hyper server (the edge benchmark's ceiling)
//! ta-bench render     results.md and results.svg again from a results.json
//! ```

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ta_bench::cmd::{all, attack, demo, edge, freshness, load, loader, null, query, soak};
use ta_bench::report::{Report, Section};

#[derive(Debug, Parser)]
#[command(
    name = "ta-bench",
    version,
    about = "Tiny Analytics load generator and benchmarks"
)]
struct Cli {
    /// Also write the scenario's figures as JSON here (`all` writes its own files).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Load(load::Args),
    Edge(edge::Args),
    Loader(loader::Args),
    Query(query::Args),
    Freshness(freshness::Args),
    Soak(soak::Args),
    Attack(attack::Args),
    All(all::Args),
    Demo(demo::Args),
    Null(null::Args),
    /// Write results.md and results.svg again from a results.json (e.g. after a renderer change).
    Render {
        /// The report written by `ta-bench all`.
        #[arg(default_value = "bench/results/results.json")]
        json: PathBuf,
    },
}

fn tokio() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    let sections: Vec<Section> = match cli.command {
        Cmd::Load(a) => load::run(a)?.1,
        Cmd::Edge(a) => edge::run(a)?,
        Cmd::Loader(a) => tokio()?.block_on(loader::run(a))?,
        Cmd::Query(a) => tokio()?.block_on(query::run(a))?,
        Cmd::Freshness(a) => tokio()?.block_on(freshness::run(a))?,
        Cmd::Soak(a) => soak::run(a)?,
        Cmd::Attack(a) => attack::run(a)?,
        Cmd::All(a) => {
            let report = all::run(a, command)?;
            if let Some(path) = &cli.json {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
            }
            return Ok(());
        }
        Cmd::Demo(a) => return tokio()?.block_on(demo::run(a)),
        Cmd::Null(a) => return null::run(a),
        Cmd::Render { json } => {
            let report: Report = serde_json::from_slice(&std::fs::read(&json)?)?;
            let dir = json.parent().unwrap_or(std::path::Path::new("."));
            std::fs::write(dir.join("results.md"), report.markdown())?;
            std::fs::write(dir.join("results.svg"), report.svg())?;
            eprintln!("wrote {0}/results.md and {0}/results.svg", dir.display());
            return Ok(());
        }
    };
    let mut report = Report {
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: ta_bench::proc::machine(),
        command,
        quick: false,
        sections: Vec::new(),
    };
    report.add(sections);
    println!("\n{}", report.markdown());
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
