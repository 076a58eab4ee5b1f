//! The benchmark harness at its small size: every scenario of
//! `mooring-bench` runs once against real hub and agent processes and
//! produces numbers. No speed is asserted here (BENCHMARKS.md reports them).
//!
//! Needs the rig: skipped without it, failed under `CI=true`.

use mooring_tests::bench::{self, procs::default_bin, Options, Size, SCENARIOS};
use mooring_tests::rig::rig;

/// The binary built with this test's profile (`target/debug` under
/// `cargo test`), else where `mooring-bench` would look.
fn beside_this_test(name: &str) -> std::path::PathBuf {
    let here = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(name)));
    match here {
        Some(path) if path.exists() => path,
        _ => default_bin(name),
    }
}

#[test]
fn every_scenario_runs_at_small_size_and_reports_numbers() {
    let Some(rig) = rig() else { return };
    let hub_bin = beside_this_test("mooring-hub");
    let agent_bin = beside_this_test("mooring-agent");
    for bin in [&hub_bin, &agent_bin] {
        assert!(
            bin.exists(),
            "{} missing: build the workspace binaries first (cargo build)",
            bin.display()
        );
    }
    let opts = Options {
        scenarios: SCENARIOS.iter().map(|s| s.to_string()).collect(),
        size: Size::Small,
        repeat: 1,
        hub_bin,
        agent_bin,
        rig: Some(rig),
        scale_agents: Some(vec![50]),
        steady_secs: Some(3),
        hub_ping_secs: None,
        verbose: true,
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let report = runtime
        .block_on(bench::run(&opts))
        .unwrap_or_else(|e| panic!("bench failed: {e:#}"));
    println!("{}", report.markdown());
    let names: Vec<&str> = report.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, SCENARIOS, "every scenario reported, in order");
    for s in &report.scenarios {
        assert!(!s.rows.is_empty(), "{} produced no rows", s.name);
        for row in &s.rows {
            // "added" rows are differences (edge − direct) of noisy
            // measurements: below zero is possible, not a number is not.
            let may_be_negative = row.metric.contains("added");
            assert!(
                row.median.is_finite() && (may_be_negative || row.median >= 0.0) && row.samples > 0,
                "{}: {} is not a number: {row:?}",
                s.name,
                row.metric
            );
        }
    }
    let find = |scenario: &str, metric: &str| -> f64 {
        report
            .scenarios
            .iter()
            .find(|s| s.name == scenario)
            .and_then(|s| s.rows.iter().find(|r| r.metric.contains(metric)))
            .unwrap_or_else(|| panic!("{scenario}: no row {metric:?}"))
            .median
    };
    // Work was really done: bytes moved, agents connected, streams completed.
    assert!(find("throughput", "fake socket, hub → agent MB/s") > 0.0);
    assert!(find("latency", "/_ping hub → agent p50 ms") > 0.0);
    assert_eq!(find("concurrency", "streams completed"), 100.0);
    assert!(find("push", "through hub → agent, s") > 0.0);
    assert!(find("scale", "hub RSS MiB with N idle agents") > 0.0);
    assert!(find("footprint", "agent idle RSS MiB") > 0.0);
}
