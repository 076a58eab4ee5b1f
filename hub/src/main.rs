//! `mooring-hub`: parses the command line, sets up logging, and either runs
//! an admin subcommand or serves. All logic lives in the library.

use anyhow::Context;
use clap::Parser;
use mooring_hub::config::{Cli, Command, ServeArgs};
use mooring_hub::{admin, server, setup, AppState};
use tokio_util::sync::CancellationToken;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOORING_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Push(args)) = &cli.command {
        // A client of a running hub: no store, no data dir.
        mooring_hub::client::run_push(args).await?;
        return Ok(());
    }
    let global = cli.global;
    let (store, _fresh) = setup::open_store(
        &global.data_dir,
        &global.docker_socket,
        global.secret_key.as_deref(),
    )
    .await
    .with_context(|| format!("opening the store in {}", global.data_dir.display()))?;
    let serve_args = match cli.command {
        None => cli.serve,
        Some(Command::Serve(args)) => args,
        Some(other) => {
            let result = admin::run(&store, other, global.json).await;
            store.close().await;
            admin::print(&result?)?;
            return Ok(());
        }
    };
    serve(store, serve_args, global.json).await
}

async fn serve(
    store: mooring_hub::store::Store,
    args: ServeArgs,
    json: bool,
) -> anyhow::Result<()> {
    let settings = args.settings().map_err(anyhow::Error::msg)?;
    if settings.no_auth {
        tracing::warn!("!!! --no-auth: API AUTHENTICATION IS DISABLED. Anyone who can reach {} controls every Docker host of this hub. Use it for a local demo only. !!!", args.listen);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls_acceptor(cert, key)?),
        _ => None,
    };
    if let Some(admin_key) = setup::bootstrap_admin_key(&store).await? {
        tracing::info!(
            key_id = admin_key.id,
            "first start: created the admin API key (printed once on stdout)"
        );
        let text = if json {
            format!(
                "{}\n",
                serde_json::json!({"adminKey": admin_key.key, "id": admin_key.id})
            )
        } else {
            format!(
                "Admin API key (shown once, store it now; use as \"Authorization: Bearer <key>\"):\n{}\n",
                admin_key.key
            )
        };
        admin::print(&text)?;
    }
    let shutdown = CancellationToken::new();
    let state = AppState::new(store.clone(), settings, shutdown.clone()).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    tracing::info!(
        version = mooring_hub::state::HUB_VERSION,
        "mooring-hub listening on {}://{local} (agents: {}://{local}{})",
        scheme.0,
        scheme.1,
        mooring_protocol::limits::CONNECT_PATH
    );
    if let Some(addr) = args.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
        tracing::info!("metrics without authentication on http://{addr}/metrics");
        state.tracker.spawn(mooring_hub::metrics::run_listener(
            metrics,
            state.clone(),
            shutdown.clone(),
        ));
    }
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        signals.cancel();
    });
    match tls {
        Some(acceptor) => server::run_tls(listener, state, acceptor, shutdown).await,
        None => server::run(listener, state, shutdown).await,
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
