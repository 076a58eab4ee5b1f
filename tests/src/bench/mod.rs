//! `mooring-bench`: benchmarks of Mooring over real processes.
//!
//! Every scenario starts the release `mooring-hub` and `mooring-agent`
//! binaries as child processes (so RSS and CPU are their own, read from
//! `/proc`), measures a baseline in the same run with the same client code
//! (straight on a Docker socket), and reports median and spread of repeated
//! runs as [`Row`]s grouped in a [`ScenarioReport`].
//!
//! # Layout
//! - [`report`]: rows, tables, median/percentiles, the JSON and Markdown output.
//! - [`procs`]: the hub and agent processes, `/proc` sampling, temp dirs.
//! - [`http`]: the HTTP client of the hub's API and the body drainers.
//! - [`fake_docker`]: a unix-socket HTTP server streaming a large body fast.
//! - one module per scenario: [`throughput`], [`latency`], [`concurrency`],
//!   [`scale`] (with its protocol-speaking load generator), [`push`],
//!   [`footprint`].
//!
//! This module never asserts a speed: targets are reported as pass/miss.
//! It only talks to addresses on this machine (loopback and unix sockets).

pub mod concurrency;
pub mod fake_docker;
pub mod footprint;
pub mod http;
pub mod latency;
pub mod procs;
pub mod push;
pub mod report;
pub mod scale;
pub mod throughput;

use std::path::PathBuf;

pub use report::{Report, Row, ScenarioReport};

/// The scenarios, in the order `all` runs them.
pub const SCENARIOS: &[&str] = &[
    "footprint",
    "latency",
    "throughput",
    "concurrency",
    "push",
    "scale",
];

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Seconds per scenario: a smoke test, numbers are not meaningful.
    Small,
    /// The sizes the issue asks for (1 GiB, ≥200 MB image, N = 1,000 and 10,000).
    Full,
}

/// What to run and with which binaries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scenario names (see [`SCENARIOS`]).
    pub scenarios: Vec<String>,
    /// Small or full.
    pub size: Size,
    /// Repetitions of each timed measurement (latency: of the whole sample).
    pub repeat: usize,
    /// The `mooring-hub` binary.
    pub hub_bin: PathBuf,
    /// The `mooring-agent` binary.
    pub agent_bin: PathBuf,
    /// The rig (real Docker, registries); scenarios that need it fail without it.
    pub rig: Option<crate::rig::Rig>,
    /// Agent counts of the scale scenario (default by size).
    pub scale_agents: Option<Vec<usize>>,
    /// Seconds of steady state measured in the scale scenario (default by size).
    pub steady_secs: Option<u64>,
    /// The scale hub's ping interval in seconds (`None`: the hub's default).
    pub hub_ping_secs: Option<u64>,
    /// Print progress lines on stderr.
    pub verbose: bool,
}

/// Runs the selected scenarios one after the other.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    procs::raise_fd_limit();
    let mut report = Report::new(opts);
    for name in &opts.scenarios {
        if opts.verbose {
            eprintln!("== scenario {name} ({:?})", opts.size);
        }
        let started = std::time::Instant::now();
        let result = match name.as_str() {
            "footprint" => footprint::run(opts).await,
            "latency" => latency::run(opts).await,
            "throughput" => throughput::run(opts).await,
            "concurrency" => concurrency::run(opts).await,
            "push" => push::run(opts).await,
            "scale" => scale::run(opts).await,
            other => anyhow::bail!(
                "unknown scenario {other:?}: choose one of {} or all",
                SCENARIOS.join(", ")
            ),
        };
        let mut scenario = result.map_err(|e| e.context(format!("scenario {name}")))?;
        scenario.seconds = started.elapsed().as_secs_f64();
        if opts.verbose {
            eprintln!("{}", scenario.markdown());
        }
        report.scenarios.push(scenario);
    }
    Ok(report)
}

/// Progress line on stderr when verbose.
pub(crate) fn say(opts: &Options, text: impl AsRef<str>) {
    if opts.verbose {
        eprintln!("   {}", text.as_ref());
    }
}

/// The rig, or an error saying how to start it.
pub(crate) fn need_rig(opts: &Options) -> anyhow::Result<&crate::rig::Rig> {
    opts.rig
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("this scenario needs the rig: run tests/rig/rig.sh up"))
}
