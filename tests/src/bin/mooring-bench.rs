//! `mooring-bench`: runs Mooring's benchmark scenarios over real hub and
//! agent processes and prints one Markdown table per scenario (see
//! BENCHMARKS.md). Build the binaries under test first:
//! `cargo build --release -p mooring-hub -p mooring-agent`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use mooring_tests::bench::{self, Options, Size, SCENARIOS};

/// Benchmarks of Mooring over real processes: stream throughput, request
/// latency, concurrency, scale of one hub, push, footprint.
#[derive(Debug, Parser)]
#[command(name = "mooring-bench", version)]
struct Cli {
    /// Scenario to run (footprint, latency, throughput, concurrency, push, scale) or `all`; repeatable.
    #[arg(long, default_value = "all", env = "MOORING_BENCH_SCENARIO")]
    scenario: Vec<String>,
    /// `small` (seconds, a smoke test) or `full` (the sizes BENCHMARKS.md reports).
    #[arg(long, value_enum, default_value = "full", env = "MOORING_BENCH_SIZE")]
    size: SizeArg,
    /// Repetitions of each measurement (default: 5 full, 1 small).
    #[arg(long, env = "MOORING_BENCH_REPEAT")]
    repeat: Option<usize>,
    /// Write the whole report as JSON to this file.
    #[arg(long, env = "MOORING_BENCH_JSON")]
    json: Option<PathBuf>,
    /// The mooring-hub binary (default: target/release/mooring-hub).
    #[arg(long, env = "MOORING_HUB_BIN")]
    hub_bin: Option<PathBuf>,
    /// The mooring-agent binary (default: target/release/mooring-agent).
    #[arg(long, env = "MOORING_AGENT_BIN")]
    agent_bin: Option<PathBuf>,
    /// Agent counts for the scale scenario, comma-separated (default: 1000,10000 full; 50 small).
    #[arg(long, value_delimiter = ',', env = "MOORING_BENCH_AGENTS")]
    agents: Option<Vec<usize>>,
    /// Seconds of steady state in the scale scenario (default: 60 full, 5 small).
    #[arg(long, env = "MOORING_BENCH_STEADY_SECS")]
    steady_secs: Option<u64>,
    /// The scale hub's `--ping-interval-secs` (default: the hub's own default).
    #[arg(long, env = "MOORING_BENCH_HUB_PING_SECS")]
    hub_ping_secs: Option<u64>,
    /// Print only the tables (no progress lines).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SizeArg {
    Small,
    Full,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let size = match cli.size {
        SizeArg::Small => Size::Small,
        SizeArg::Full => Size::Full,
    };
    let scenarios: Vec<String> = if cli.scenario.iter().any(|s| s == "all") {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        cli.scenario.clone()
    };
    let rig = match mooring_tests::rig::Rig::load() {
        Ok(rig) => Some(rig),
        Err(why) => {
            eprintln!("note: the rig is not running ({why}); scenarios that need it will fail");
            None
        }
    };
    let opts = Options {
        scenarios,
        size,
        repeat: cli.repeat.unwrap_or(match size {
            Size::Small => 1,
            Size::Full => 5,
        }),
        hub_bin: cli
            .hub_bin
            .unwrap_or_else(|| bench::procs::default_bin("mooring-hub")),
        agent_bin: cli
            .agent_bin
            .unwrap_or_else(|| bench::procs::default_bin("mooring-agent")),
        rig,
        scale_agents: cli.agents,
        steady_secs: cli.steady_secs,
        hub_ping_secs: cli.hub_ping_secs,
        verbose: !cli.quiet,
    };
    for bin in [&opts.hub_bin, &opts.agent_bin] {
        if !bin.exists() {
            anyhow::bail!(
                "{} not found: cargo build --release -p mooring-hub -p mooring-agent (or pass --hub-bin/--agent-bin)",
                bin.display()
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let report = runtime.block_on(bench::run(&opts))?;
    println!("{}", report.markdown());
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
