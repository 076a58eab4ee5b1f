//! # mooring-agent
//!
//! The Mooring edge agent: it dials a Hawser-protocol hub over WebSocket and
//! relays the hub's Docker Engine API requests to the local daemon.
//!
//! # Layout
//! - [`config`]: environment variables and flags, validated once.
//! - [`state`]: the agent id kept across restarts.
//! - `tls`: rustls client configuration for `wss://`.
//! - `link`: the one owner of the WebSocket (dial, hello/welcome, heartbeat,
//!   idle timeout, reconnect with [`backoff`]).
//! - `writer`: every outgoing frame, through bounded queues (backpressure).
//! - `relay` and `translate`: one task per request, frames ↔ Docker HTTP.
//! - `health`: `GET /_hawser/health` and `/_hawser/info`.
//! - [`stats`]: live counters for health, tests and operators.
//!
//! - [`telemetry`]: host metrics and container events; one instance for the
//!   agent's life, whose frames each live connection forwards to its outbox.
//!
//! The library never installs a tracing subscriber, reads the process
//! environment for settings, or exits the process: that is `main.rs`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mooring_docker::DockerClient;
use mooring_protocol::{caps, limits, Frame, Hello};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod backoff;
pub mod config;
mod health;
mod link;
mod relay;
pub mod state;
pub mod stats;
pub mod telemetry;
mod tls;
mod translate;
mod writer;

pub use config::{Cli, Config, ConfigError};
pub use stats::StatsSnapshot;

/// This agent's version, sent in `hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long shutdown may spend draining tasks.
const DRAIN_DEADLINE: Duration = Duration::from_secs(4);
/// How long the agent's own Docker calls (version at hello) may take.
const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The capabilities every connection announces in `hello`.
///
/// Relay is the base protocol and needs no name; the status-code extension
/// is always on. `metrics` and `events` are added per connection, only when
/// [`telemetry::probe_capabilities`] finds they work on this host, and the
/// binary stream-data extension when configured; `exec` and `compose` are
/// not offered.
pub fn capabilities() -> Vec<String> {
    vec![caps::STREAM_STATUS.to_owned()]
}

/// Frames telemetry queues for the hub between two connections.
const TELEMETRY_QUEUE: usize = 64;

/// What stops the agent from running at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The health server cannot listen.
    #[error("cannot listen on {addr} for /_hawser/health: {reason} (set PORT to a free port)")]
    HealthBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// The TLS configuration cannot be built.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// State shared by the link, the relay and the health server.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) docker: DockerClient,
    pub(crate) stats: Arc<stats::Stats>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) tracker: TaskTracker,
    docker_version: RwLock<String>,
    /// Capabilities found working at the last probe (telemetry's).
    probed_caps: RwLock<Vec<&'static str>>,
    /// Telemetry frames for the hub; the live connection drains it.
    telemetry_rx: tokio::sync::Mutex<mpsc::Receiver<Frame>>,
    health_addr: Option<SocketAddr>,
}

impl Shared {
    /// The daemon's version as last seen ("unknown" when unreachable).
    pub(crate) fn docker_version(&self) -> String {
        self.docker_version
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|_| "unknown".into())
    }

    /// Negotiates the API version and reads the daemon's version; on
    /// failure keeps going with "unknown".
    pub(crate) async fn refresh_docker_version(&self) {
        let probe = async {
            self.docker.negotiate().await?;
            self.docker.server_version().await
        };
        let version = match tokio::time::timeout(DOCKER_PROBE_TIMEOUT, probe).await {
            Ok(Ok(v)) => v,
            Ok(Err(err)) => {
                tracing::warn!(%err, "Docker is not reachable; connecting anyway (dockerVersion \"unknown\")");
                "unknown".into()
            }
            Err(_) => {
                tracing::warn!(
                    "Docker did not answer within {DOCKER_PROBE_TIMEOUT:?}; connecting anyway"
                );
                "unknown".into()
            }
        };
        if let Ok(mut slot) = self.docker_version.write() {
            *slot = version;
        }
        if self.config.metrics_interval.is_some() {
            let caps = tokio::time::timeout(
                DOCKER_PROBE_TIMEOUT,
                telemetry::probe_capabilities(&self.docker),
            )
            .await
            .unwrap_or_default();
            if let Ok(mut slot) = self.probed_caps.write() {
                *slot = caps;
            }
        }
    }

    /// Capabilities for `hello`: the fixed ones plus those probed working.
    pub(crate) fn capabilities(&self) -> Vec<String> {
        let mut all = capabilities();
        if self.config.binary_streams {
            all.push(caps::BINARY_STREAM.to_owned());
        }
        if let Ok(probed) = self.probed_caps.read() {
            all.extend(probed.iter().map(|c| (*c).to_owned()));
        }
        all
    }

    /// The `hello` frame for the current state.
    pub(crate) fn hello(&self) -> Hello {
        Hello {
            version: VERSION.into(),
            protocol: limits::PROTOCOL_VERSION.into(),
            agent_id: self.config.agent_id.clone(),
            agent_name: self.config.agent_name.clone(),
            token: self.config.token.expose().to_owned(),
            docker_version: self.docker_version(),
            hostname: self.config.hostname.clone(),
            capabilities: self.capabilities(),
        }
    }
}

/// A running agent; [`Agent::wait`] returns after shutdown.
pub struct Agent {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

/// A cheap view of a running agent, for tests and embedders.
#[derive(Clone)]
pub struct AgentHandle {
    shared: Arc<Shared>,
}

impl AgentHandle {
    /// Live counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Where the health server listens, when enabled.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.shared.health_addr
    }

    /// The Docker version as last seen.
    pub fn docker_version(&self) -> String {
        self.shared.docker_version()
    }
}

impl Agent {
    /// Binds the health server and starts the link; everything stops when
    /// `shutdown` is cancelled.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Agent, AgentError> {
        let tls = if config.server_url.starts_with("wss") {
            Some(
                tls::client_config(config.ca_cert.as_deref(), config.tls_skip_verify)
                    .map_err(AgentError::Tls)?,
            )
        } else {
            None
        };
        let listener = match config.health_addr {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                AgentError::HealthBind {
                    addr,
                    reason: e.to_string(),
                }
            })?),
            None => None,
        };
        let health_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let docker = DockerClient::new(config.docker.clone());
        let (telemetry_tx, telemetry_rx) = mpsc::channel(TELEMETRY_QUEUE);
        let metrics_interval = config.metrics_interval;
        let shared = Arc::new(Shared {
            config,
            docker,
            stats: Arc::default(),
            tls,
            tracker: TaskTracker::new(),
            docker_version: RwLock::new("unknown".into()),
            probed_caps: RwLock::new(Vec::new()),
            telemetry_rx: tokio::sync::Mutex::new(telemetry_rx),
            health_addr,
        });
        tracing::info!(
            agent_id = %shared.config.agent_id,
            agent_name = %shared.config.agent_name,
            hub = %shared.config.server_url,
            docker = %shared.config.docker,
            health = ?health_addr,
            "mooring-agent {VERSION} starting (edge mode)"
        );
        if let Some(listener) = listener {
            shared
                .tracker
                .spawn(health::serve(listener, shared.clone(), shutdown.clone()));
        }
        if let Some(interval) = metrics_interval {
            // One Telemetry for the agent's life: its resume point and event
            // order survive reconnects; the link forwards while connected.
            shared.tracker.spawn(telemetry::Telemetry::default().run(
                shared.docker.clone(),
                telemetry_tx,
                interval,
                shutdown.clone(),
            ));
        }
        shared
            .tracker
            .spawn(link::run(shared.clone(), shutdown.clone()));
        Ok(Agent { shared, shutdown })
    }

    /// A handle for observing the agent.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            shared: self.shared.clone(),
        }
    }

    /// Waits for shutdown, then for every task to stop (bounded).
    pub async fn wait(self) -> Result<(), AgentError> {
        self.shutdown.cancelled().await;
        let tracker = self.shared.tracker.clone();
        tracker.close();
        if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = tracker.len(),
                "tasks still running after {DRAIN_DEADLINE:?}; leaving them"
            );
        }
        tracing::info!("mooring-agent stopped");
        Ok(())
    }
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    Agent::start(config, shutdown).await?.wait().await
}
