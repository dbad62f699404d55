//! `ta-bench all` (`make bench`): every scenario, each beside its same-run baseline, into one
//! report written as markdown, JSON and an SVG chart.
//!
//! 1. edge accept path vs null tide and null hyper handlers, single events and batches;
//! 2. the edge's forwarder vs a bare rskafka producer of the same records;
//! 3. the loader vs a bare fetch and a native `clickhouse-client` insert;
//! 4. the query API on 1M and 10M events, uncached and cached;
//! 5. end-to-end freshness (edge 202 → visible in ta-query) at a steady rate;
//! 6. peak RSS of each binary under 1, 3 and 4.
//!
//! `--quick` runs every scenario at a toy size as a smoke test of the harness (CI runs it with
//! debug binaries): it checks that every scenario produced sane figures, not that they are fast.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

use super::{edge, freshness, loader, query};
use crate::report::{MEMORY, Report};

#[derive(Debug, Clone, Parser)]
#[command(name = "all", about = "Every benchmark scenario into one report")]
pub struct Args {
    /// Toy sizes, a few seconds per scenario: checks the harness works and its figures are
    /// sane, not that anything is fast.
    #[arg(long)]
    quick: bool,
    /// Where `results.md`, `results.json` and `results.svg` go (default `bench/results`, or
    /// `target/bench-quick` with `--quick`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory with the ta-edge, ta-loader and ta-query binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Only these scenarios (comma separated: edge, loader, query, freshness).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Measured seconds per edge load scenario.
    #[arg(long, default_value_t = 15)]
    edge_seconds: u64,
    /// Events the forwarder drains.
    #[arg(long, default_value_t = 100_000)]
    drain_events: u64,
    /// Events the loader loads.
    #[arg(long, default_value_t = 200_000)]
    loader_events: u64,
    /// Event counts the query scenario runs on (generated once, reused while complete).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_000u64, 10_000_000])]
    query_sizes: Vec<u64>,
    /// Uncached requests per query endpoint.
    #[arg(long, default_value_t = 20)]
    query_uncached: usize,
    /// Events per second and seconds of the freshness scenario.
    #[arg(long, default_value_t = 5_000)]
    freshness_rate: u64,
    #[arg(long, default_value_t = 20)]
    freshness_seconds: u64,
}

fn parse<T: Parser>(name: &str, args: &[String]) -> anyhow::Result<T> {
    Ok(T::try_parse_from(
        std::iter::once(name.to_owned()).chain(args.iter().cloned()),
    )?)
}

fn argv(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| {
            if v.is_empty() {
                vec![(*k).to_owned()]
            } else {
                vec![(*k).to_owned(), v.clone()]
            }
        })
        .collect()
}

/// Run the scenarios; the report, also written to `--out`.
pub fn run(mut args: Args, command: String) -> anyhow::Result<Report> {
    if args.quick {
        args.edge_seconds = args.edge_seconds.min(3);
        args.drain_events = args.drain_events.min(5_000);
        args.loader_events = args.loader_events.min(5_000);
        args.query_sizes = vec![50_000];
        args.query_uncached = args.query_uncached.min(3);
        args.freshness_rate = args.freshness_rate.min(300);
        args.freshness_seconds = args.freshness_seconds.min(5);
    }
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            "target/bench-quick".into()
        } else {
            "bench/results".into()
        }
    });
    let bin = |name: &str| args.bin_dir.join(name).display().to_string();
    for name in ["ta-edge", "ta-loader", "ta-query"] {
        anyhow::ensure!(
            args.bin_dir.join(name).exists(),
            "{} not found: run `cargo build --release --bins` first (or pass --bin-dir)",
            bin(name)
        );
    }
    let wanted = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let mut report = Report {
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: crate::proc::machine(),
        command,
        quick: args.quick,
        sections: Vec::new(),
    };
    let started = Instant::now();
    let step = |name: &str| {
        eprintln!(
            "\n== ta-bench all: {name} ({:.0} s in) ==",
            started.elapsed().as_secs_f64()
        );
    };

    if wanted("edge") {
        step("1+2. edge accept path and forwarder");
        let mut a = vec![
            ("--edge", bin("ta-edge")),
            ("--seconds", args.edge_seconds.to_string()),
            ("--drain-events", args.drain_events.to_string()),
        ];
        if args.quick {
            a.push(("--quick", String::new()));
            a.push(("--connections", "16".into()));
        }
        report.add(edge::run(parse("edge", &argv(&a))?)?);
    }
    let rt = tokio::runtime::Runtime::new()?;
    if wanted("loader") {
        step("3. loader");
        let a = [
            ("--loader", bin("ta-loader")),
            ("--events", args.loader_events.to_string()),
        ];
        report.add(rt.block_on(loader::run(parse("loader", &argv(&a))?))?);
    }
    if wanted("query") {
        for events in &args.query_sizes {
            step(&format!("4. query API on {events} events"));
            let mut a = vec![
                ("--bin-dir", args.bin_dir.display().to_string()),
                ("--events", events.to_string()),
                ("--uncached", args.query_uncached.to_string()),
                ("--reuse", String::new()),
            ];
            if args.quick {
                a.push(("--seconds", "2".into()));
                a.push(("--dashboard-runs", "1".into()));
                a.push(("--quick-check", String::new()));
            }
            report.add(rt.block_on(query::run(parse("query", &argv(&a))?))?);
        }
    }
    if wanted("freshness") {
        step("5. freshness");
        let a = [
            ("--bin-dir", args.bin_dir.display().to_string()),
            ("--rate", args.freshness_rate.to_string()),
            ("--seconds", args.freshness_seconds.to_string()),
        ];
        report.add(rt.block_on(freshness::run(parse("freshness", &argv(&a))?))?);
    }
    eprintln!(
        "\n== ta-bench all: done in {:.0} s ==",
        started.elapsed().as_secs_f64()
    );

    if args.quick {
        check_sane(&report, &args)?;
    }
    std::fs::create_dir_all(&out)?;
    let md = report.markdown();
    std::fs::write(out.join("results.md"), &md)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(out.join("results.svg"), report.svg())?;
    println!("{md}");
    eprintln!(
        "wrote {0}/results.md, {0}/results.json, {0}/results.svg",
        out.display()
    );
    Ok(report)
}

/// Quick mode's check: every scenario that ran left its sections, every figure is a finite,
/// positive number, and each binary's memory was measured.
fn check_sane(report: &Report, args: &Args) -> anyhow::Result<()> {
    let mut expected: Vec<&str> = Vec::new();
    let ran = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    if ran("edge") {
        expected.extend(["1. ", "2. "]);
    }
    if ran("loader") {
        expected.push("3. ");
    }
    if ran("query") {
        expected.push("4. ");
    }
    if ran("freshness") {
        expected.push("5. ");
    }
    for prefix in expected {
        anyhow::ensure!(
            report
                .sections
                .iter()
                .any(|s| s.title.starts_with(prefix) && !s.rows.is_empty()),
            "no figures for scenario {prefix}"
        );
    }
    for (section, row) in report.rows() {
        anyhow::ensure!(
            row.value.is_finite() && row.value > 0.0,
            "{} / {}: {} is not a sane figure",
            section.title,
            row.name,
            row.value
        );
        if let Some(b) = &row.baseline {
            anyhow::ensure!(
                b.value.is_finite() && b.value > 0.0,
                "{}: baseline {} is {}",
                row.name,
                b.name,
                b.value
            );
        }
        if let Some(l) = &row.latency_ms {
            anyhow::ensure!(
                l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max,
                "{}: percentiles out of order {l:?}",
                row.name
            );
        }
    }
    let memory = report.sections.iter().find(|s| s.title == MEMORY);
    for binary in ["ta-edge", "ta-loader", "ta-query"] {
        let scenario = match binary {
            "ta-edge" => "edge",
            "ta-loader" => "loader",
            _ => "query",
        };
        if ran(scenario) {
            anyhow::ensure!(
                memory.is_some_and(|m| m.rows.iter().any(|r| r.name.contains(binary))),
                "no peak RSS for {binary}"
            );
        }
    }
    Ok(())
}
