//! The hub's shared state, handed to every handler and task.
//!
//! Owns nothing by itself: it bundles the store, the registry of live
//! links, the limits in force, and the process-wide shutdown token and
//! task tracker, and resolves an environment id to an [`EnvClient`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mooring_docker::{DockerClient, Endpoint};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::agent_binary::AgentBinaries;
use crate::api::ApiError;
use crate::auth::KeyCache;
use crate::envs::{EnvClient, EnvError, Timeouts};
use crate::events::Events;
use crate::jobs::{JobLimits, Jobs};
use crate::link::ratelimit::{FailedAuth, ReconnectThrottle};
use crate::link::{LinkLimits, Links};
use crate::metrics::HubMetrics;
use crate::sessions::Sessions;
use crate::status::Monitor;
use crate::store::{EnvKind, Store};

/// Default hub → agent ping interval, seconds. The hub pings only links
/// that were quiet this long (see `link::heartbeat`); the reference hub
/// pings every link every 5 s. 15 s keeps NAT mappings and half-open
/// detection well inside the 90 s silence timeout (six chances) at a third
/// of the frames.
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 15;

/// Version of this hub build.
pub const HUB_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runtime limits and timings (from flags; see `config`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A link quiet this long gets a hub → agent ping.
    pub ping_interval: Duration,
    /// A link silent this long is dropped.
    pub silence_timeout: Duration,
    /// How long a live link has to answer the probe when another agent
    /// presents a token of its environment.
    pub probe_timeout: Duration,
    /// How long an agent has to send `hello` after the upgrade.
    pub handshake_timeout: Duration,
    /// Largest WebSocket message accepted from an agent.
    pub max_frame_bytes: usize,
    /// Live agent links per hub.
    pub max_links: usize,
    /// Requests in flight per link.
    pub max_pending_per_link: usize,
    /// Chunks buffered per stream.
    pub stream_buffer_chunks: usize,
    /// Longest wait for a stalled stream consumer before failing it.
    pub stream_stall: Duration,
    /// Idle timeout of a whole (non-streaming) Docker call.
    pub request_timeout: Duration,
    /// Idle timeout between two chunks of a stream.
    pub stream_idle_timeout: Duration,
    /// Accepted agent connections per environment per minute.
    pub reconnects_per_minute: usize,
    /// Failed agent authentications per IP before delays start.
    pub auth_free_failures: u32,
    /// Cap of the failed-auth delay.
    pub auth_max_delay: Duration,
    /// The hub's public URL (`--public-url`), for agent install commands;
    /// `None`: derived from each request's Host header.
    pub public_url: Option<String>,
    /// Concurrent HTTP connections.
    pub max_connections: usize,
    /// API authentication disabled (local demo only).
    pub no_auth: bool,
    /// Limits of the job registry (pushes).
    pub job_limits: JobLimits,
    /// Directory of the agent binaries served to installers
    /// (`--agent-binaries`); `None`: next to the hub's executable.
    pub agent_binaries: Option<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ping_interval: Duration::from_secs(DEFAULT_PING_INTERVAL_SECS),
            silence_timeout: Duration::from_secs(90),
            probe_timeout: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(
                mooring_protocol::limits::HANDSHAKE_TIMEOUT_SECS,
            ),
            max_frame_bytes: mooring_protocol::limits::MAX_FRAME_BYTES,
            max_links: 1000,
            max_pending_per_link: 512,
            stream_buffer_chunks: 64,
            stream_stall: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            stream_idle_timeout: Duration::from_secs(300),
            reconnects_per_minute: 12,
            auth_free_failures: 5,
            auth_max_delay: Duration::from_secs(30),
            public_url: None,
            max_connections: 4096,
            no_auth: false,
            job_limits: JobLimits::default(),
            agent_binaries: None,
        }
    }
}

impl Settings {
    pub(crate) fn link_limits(&self) -> LinkLimits {
        LinkLimits {
            max_pending: self.max_pending_per_link,
            stream_buffer: self.stream_buffer_chunks,
            stream_stall: self.stream_stall,
            writer_queue: 256,
        }
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            request: self.request_timeout,
            stream_idle: self.stream_idle_timeout,
            max_body: self.max_frame_bytes,
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The durable store.
    pub store: Store,
    /// Live agent links.
    pub links: Links,
    /// Limits and timings.
    pub settings: Arc<Settings>,
    /// Root shutdown token: cancelling it stops every link and task.
    pub shutdown: CancellationToken,
    /// Owner of every task the hub spawns.
    pub tracker: TaskTracker,
    /// This hub's identity, sent in `welcome`.
    pub server_id: Arc<str>,
    /// Background jobs (pushes) and their event logs.
    pub jobs: Jobs,
    pub(crate) failed_auth: Arc<FailedAuth>,
    pub(crate) reconnects: Arc<ReconnectThrottle>,
    /// Bounds concurrent argon2 verifications (CPU-heavy).
    pub(crate) verify_slots: Arc<Semaphore>,
    pub(crate) key_cache: Arc<KeyCache>,
    /// Live events (`GET /api/events`); `events.publish(…)` to emit one.
    pub events: Events,
    /// Metrics history and connectivity status of environments.
    pub monitor: Arc<Monitor>,
    /// Prometheus metrics; e.g. `metrics.push_finished(outcome, duration)`.
    pub metrics: Arc<HubMetrics>,
    /// Dashboard sessions.
    pub sessions: Arc<Sessions>,
    /// Agent binaries served to installers (`GET /api/agent/binary`).
    pub agent_binaries: Arc<AgentBinaries>,
    locals: Arc<Mutex<HashMap<i64, (String, DockerClient)>>>,
}

/// Why a secret could not be checked at all (not: it did not match).
#[derive(Debug, Clone, Copy)]
pub(crate) struct VerifyUnavailable;

impl AppState {
    /// Checks `secret` against the argon2 hashes of the records that share
    /// its prefix, on a bounded verify slot off the async threads; returns
    /// the index of the match. With no candidate it still burns one check
    /// (no timing oracle between unknown and wrong secrets).
    pub(crate) async fn verify_secret_against(
        &self,
        secret: &str,
        hashes: Vec<String>,
    ) -> Result<Option<usize>, VerifyUnavailable> {
        let permit = self
            .verify_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| VerifyUnavailable)?;
        let secret = secret.to_owned();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if hashes.is_empty() {
                crate::crypto::verify_dummy(&secret);
                return None;
            }
            hashes
                .iter()
                .position(|h| crate::crypto::verify_secret(&secret, h))
        })
        .await
        .map_err(|_| VerifyUnavailable)
    }

    /// State over an opened store.
    pub async fn new(
        store: Store,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Result<AppState, crate::store::StoreError> {
        let server_id = store.server_id().await?;
        let tracker = TaskTracker::new();
        let jobs = Jobs::with_tracker(
            settings.job_limits.clone(),
            shutdown.child_token(),
            tracker.clone(),
        );
        jobs.spawn_sweeper();
        let state = AppState {
            links: Links::new(settings.max_links),
            failed_auth: Arc::new(FailedAuth::new(
                settings.auth_free_failures,
                settings.auth_max_delay,
                10_000,
            )),
            reconnects: Arc::new(ReconnectThrottle::new(settings.reconnects_per_minute)),
            verify_slots: Arc::new(Semaphore::new(4)),
            key_cache: Arc::new(KeyCache::new(1024)),
            events: Events::default(),
            monitor: Arc::new(Monitor::default()),
            metrics: Arc::new(HubMetrics::new()),
            sessions: Arc::new(Sessions::default()),
            agent_binaries: Arc::new(AgentBinaries::new(settings.agent_binaries.clone())),
            locals: Arc::new(Mutex::new(HashMap::new())),
            settings: Arc::new(settings),
            store,
            shutdown,
            tracker,
            server_id: server_id.into(),
            jobs,
        };
        crate::link::heartbeat::spawn(&state);
        Ok(state)
    }

    /// A client for environment `env_id`: 404 when it does not exist, 503
    /// ([`EnvError::NotConnected`]) for an edge environment with no agent.
    pub async fn env_client(&self, env_id: i64) -> Result<EnvClient, ApiError> {
        let timeouts = self.settings.timeouts();
        // Only an existing edge environment has a live link (deleting one
        // drops it, and its type cannot change): no store read on this
        // per-request path while the agent is connected.
        if self.links.get(env_id).is_some() {
            return Ok(EnvClient::edge(env_id, self.links.clone(), timeouts));
        }
        let env = self.store.get_environment(env_id).await?;
        match env.kind {
            EnvKind::Local => {
                let socket = env.socket.unwrap_or_else(|| "/var/run/docker.sock".into());
                let docker = self.local_docker(env_id, &socket)?;
                Ok(EnvClient::local(env_id, docker, timeouts))
            }
            EnvKind::Edge => {
                if self.links.get(env_id).is_none() {
                    return Err(EnvError::NotConnected.into());
                }
                Ok(EnvClient::edge(env_id, self.links.clone(), timeouts))
            }
        }
    }

    fn local_docker(&self, env_id: i64, socket: &str) -> Result<DockerClient, ApiError> {
        let mut locals = self.locals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, client)) = locals.get(&env_id) {
            if known == socket {
                return Ok(client.clone());
            }
        }
        let endpoint = Endpoint::parse(socket).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let client = DockerClient::new(endpoint);
        locals.insert(env_id, (socket.to_owned(), client.clone()));
        Ok(client)
    }

    /// Forgets cached clients of an environment (after PATCH / DELETE).
    pub fn forget_env(&self, env_id: i64) {
        self.locals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&env_id);
    }

    /// Writes an audit entry; failures are logged, never returned.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) {
        if let Err(err) = self.store.audit(actor, action, target, detail).await {
            tracing::warn!(%err, action, "audit log write failed");
        }
    }
}

impl axum::extract::FromRef<AppState> for Jobs {
    fn from_ref(state: &AppState) -> Jobs {
        state.jobs.clone()
    }
}
