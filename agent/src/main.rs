//! `mooring-agent`: parse the configuration, set up logging and signals,
//! run the agent. Exit codes: 0 clean stop, 1 runtime failure, 2 bad
//! configuration (one line on stderr naming the setting and the fix).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mooring_agent::Cli;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Hard limit between a signal and the process exit.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_level = cli.log_level.clone();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("mooring-agent: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(log_level.trim().to_ascii_lowercase()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mooring-agent: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// The agent's runtime: one worker thread unless `TOKIO_WORKER_THREADS`
/// asks for more. An agent serves one link whose every request is a chain
/// of hand-offs (reader → relay task → hyper's Docker connection task →
/// writer). On one worker each hand-off is a local wake-up; with two, the
/// relay's answer and hyper's connection task become runnable together and
/// one of them moves to the other worker: a futex wake and a context switch
/// per request. Docker, not the agent's one core, bounds the relay (100
/// concurrent streams and the throughput scenario ran as fast on one
/// worker); blocking work (DNS, files) still runs on the blocking pool.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder.build()
}

fn run(config: mooring_agent::Config) -> anyhow::Result<()> {
    let runtime = runtime().context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let agent = mooring_agent::Agent::start(config, shutdown.clone())
            .await
            .context("starting the agent")?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let waiting = agent.wait();
        tokio::pin!(waiting);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            r = &mut waiting => return r.context("agent failed"),
        }
        shutdown.cancel();
        match tokio::time::timeout(SHUTDOWN_LIMIT, waiting).await {
            Ok(r) => r.context("agent failed"),
            Err(_) => {
                tracing::warn!("shutdown took longer than {SHUTDOWN_LIMIT:?}; exiting anyway");
                Ok(())
            }
        }
    })?;
    // Leftover tasks (if any) are abandoned here, within the limit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}
