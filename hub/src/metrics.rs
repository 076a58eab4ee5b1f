//! Prometheus metrics of the hub (`GET /metrics`, OpenMetrics text).
//!
//! [`HubMetrics`] owns the registry and a typed handle for everything the
//! hub counts: agent connects and disconnects (by reason), authentication
//! failures, frames and bytes relayed per direction, relayed Docker
//! requests (by outcome, with a latency histogram), push jobs (by outcome,
//! with a duration histogram). Gauges that describe the present (agents
//! connected, seconds since each environment's agent was last seen, live
//! event subscribers) are computed at scrape time, so they are never stale.
//!
//! The per-frame path is lock-free: a link holds [`LinkCounters`], plain
//! counters resolved once, so counting a frame is two relaxed atomic adds.
//!
//! `/metrics` needs the `metrics:read` permission; `--metrics-listen`
//! serves it without authentication on a separate address (meant for
//! loopback or a private network) through [`run_listener`].
//!
//! This module never exposes a secret, an agent token or a key prefix in
//! a label; label values are bounded sets or environment ids and names.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::ApiError;
use crate::auth::Auth;
use crate::envs::EnvError;
use crate::state::AppState;
use crate::store::EnvKind;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Label = [(&'static str, &'static str); 1];
type EnvLabel = [(&'static str, String); 2];
type HistogramFamily = Family<Label, Histogram, fn() -> Histogram>;

/// How a push job ended, for [`HubMetrics::push_finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The registry accepted the image.
    Ok,
    /// The push failed (Docker, registry, agent or validation error).
    Error,
    /// The job was cancelled.
    Cancelled,
}

impl PushOutcome {
    fn label(self) -> &'static str {
        match self {
            PushOutcome::Ok => "ok",
            PushOutcome::Error => "error",
            PushOutcome::Cancelled => "cancelled",
        }
    }
}

/// Which credential failed, for [`HubMetrics::auth_failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// An agent's token in `hello`.
    AgentToken,
    /// An API key (Bearer header or dashboard login).
    ApiKey,
    /// An unknown or expired dashboard session cookie.
    Session,
}

impl AuthKind {
    fn label(self) -> &'static str {
        match self {
            AuthKind::AgentToken => "agent_token",
            AuthKind::ApiKey => "api_key",
            AuthKind::Session => "session",
        }
    }
}

/// Counters of one agent link, resolved once (lock-free to update).
#[derive(Debug, Clone)]
pub struct LinkCounters {
    frames_in: Counter,
    bytes_in: Counter,
    frames_out: Counter,
    bytes_out: Counter,
    requests: Family<Label, Counter>,
    latency: HistogramFamily,
}

impl LinkCounters {
    /// One frame of `bytes` received from the agent.
    pub fn frame_in(&self, bytes: usize) {
        self.frames_in.inc();
        self.bytes_in.inc_by(bytes as u64);
    }

    /// One frame of `bytes` sent to the agent.
    pub fn frame_out(&self, bytes: usize) {
        self.frames_out.inc();
        self.bytes_out.inc_by(bytes as u64);
    }

    /// A relayed Docker request ended after `elapsed` (`stream`: a
    /// streaming request, timed until its end).
    pub fn request_done(&self, stream: bool, outcome: &'static str, elapsed: Duration) {
        self.requests.get_or_create(&[("outcome", outcome)]).inc();
        let mode = if stream { "stream" } else { "whole" };
        self.latency
            .get_or_create(&[("mode", mode)])
            .observe(elapsed.as_secs_f64());
    }
}

/// Outcome label of a relayed request's result.
pub fn outcome_of(err: Option<&EnvError>) -> &'static str {
    match err {
        None => "ok",
        Some(EnvError::NotConnected) => "not_connected",
        Some(EnvError::Disconnected(_)) => "disconnected",
        Some(EnvError::Timeout(_)) => "timeout",
        Some(EnvError::Docker(_)) => "error",
        Some(EnvError::Cancelled) => "cancelled",
        Some(EnvError::Busy(_)) => "busy",
        Some(EnvError::Invalid(_)) => "invalid",
    }
}

/// The hub's metrics. Shared as `Arc<HubMetrics>` in
/// [`AppState::metrics`](crate::state::AppState).
#[derive(Debug)]
pub struct HubMetrics {
    registry: Registry,
    /// Serialises scrapes (the scrape-time gauges are rebuilt per scrape).
    scrape: Mutex<()>,
    connects: Counter,
    disconnects: Family<Label, Counter>,
    auth_failures: Family<Label, Counter>,
    agents_connected: Gauge,
    event_subscribers: Gauge,
    last_seen_age: Family<EnvLabel, Gauge<f64, AtomicU64>>,
    push_jobs: Family<Label, Counter>,
    push_duration: Histogram,
    link: LinkCounters,
}

impl Default for HubMetrics {
    fn default() -> Self {
        HubMetrics::new()
    }
}

impl HubMetrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> HubMetrics {
        let mut registry = Registry::with_prefix("mooring");
        let connects = Counter::default();
        registry.register(
            "agent_connects",
            "Agent links established",
            connects.clone(),
        );
        let disconnects = Family::<Label, Counter>::default();
        registry.register(
            "agent_disconnects",
            "Agent links ended, by reason (closed, timeout, replaced, refused, revoked, deleted, shutdown)",
            disconnects.clone(),
        );
        let auth_failures = Family::<Label, Counter>::default();
        registry.register(
            "auth_failures",
            "Rejected credentials, by kind (agent_token, api_key, session)",
            auth_failures.clone(),
        );
        let agents_connected = Gauge::default();
        registry.register(
            "agents_connected",
            "Agent links live right now",
            agents_connected.clone(),
        );
        let event_subscribers = Gauge::default();
        registry.register(
            "event_subscribers",
            "Live event-stream subscribers (dashboards)",
            event_subscribers.clone(),
        );
        let last_seen_age = Family::<EnvLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "agent_last_seen_age_seconds",
            "Seconds since the last frame from each edge environment's agent (environments never connected are absent)",
            last_seen_age.clone(),
        );
        let frames = Family::<Label, Counter>::default();
        registry.register(
            "relay_frames",
            "Protocol frames relayed, by direction (agent_to_hub, hub_to_agent)",
            frames.clone(),
        );
        let bytes = Family::<Label, Counter>::default();
        registry.register(
            "relay_frame_bytes",
            "Bytes of protocol frames relayed, by direction",
            bytes.clone(),
        );
        let requests = Family::<Label, Counter>::default();
        registry.register(
            "relay_requests",
            "Docker requests relayed to agents, by outcome (ok, error, timeout, disconnected, cancelled, busy, invalid)",
            requests.clone(),
        );
        let latency: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.5, 12)));
        registry.register(
            "relay_request_duration_seconds",
            "Duration of relayed Docker requests until their answer (whole) or their end (stream)",
            latency.clone(),
        );
        let push_jobs = Family::<Label, Counter>::default();
        registry.register(
            "push_jobs",
            "Push jobs finished, by outcome (ok, error, cancelled)",
            push_jobs.clone(),
        );
        let push_duration = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        registry.register(
            "push_job_duration_seconds",
            "Duration of push jobs, from start to end",
            push_duration.clone(),
        );
        let dir = |f: &Family<Label, Counter>, d: &'static str| {
            f.get_or_create(&[("direction", d)]).clone()
        };
        let link = LinkCounters {
            frames_in: dir(&frames, "agent_to_hub"),
            bytes_in: dir(&bytes, "agent_to_hub"),
            frames_out: dir(&frames, "hub_to_agent"),
            bytes_out: dir(&bytes, "hub_to_agent"),
            requests,
            latency,
        };
        HubMetrics {
            registry,
            scrape: Mutex::new(()),
            connects,
            disconnects,
            auth_failures,
            agents_connected,
            event_subscribers,
            last_seen_age,
            push_jobs,
            push_duration,
            link,
        }
    }

    /// The counters a new agent link updates.
    pub fn link_counters(&self) -> LinkCounters {
        self.link.clone()
    }

    /// An agent link was established.
    pub fn agent_connected(&self) {
        self.connects.inc();
    }

    /// An agent link ended for `reason` (a [`crate::status::DisconnectReason`] name).
    pub fn agent_disconnected(&self, reason: &'static str) {
        self.disconnects.get_or_create(&[("reason", reason)]).inc();
    }

    /// A credential was rejected.
    pub fn auth_failed(&self, kind: AuthKind) {
        self.auth_failures
            .get_or_create(&[("kind", kind.label())])
            .inc();
    }

    /// A push job ended after `duration`. Called by the push jobs.
    pub fn push_finished(&self, outcome: PushOutcome, duration: Duration) {
        self.push_jobs
            .get_or_create(&[("outcome", outcome.label())])
            .inc();
        self.push_duration.observe(duration.as_secs_f64());
    }

    /// The exposition text, with the present-time gauges computed now.
    pub async fn render(&self, state: &AppState) -> Result<String, ApiError> {
        let envs = state.store.list_environments().await?;
        let now_ms = crate::link::now_ms();
        let mut ages = Vec::new();
        for env in envs.iter().filter(|e| e.kind == EnvKind::Edge) {
            let seen_ms = match state.links.get(env.id) {
                Some(link) => Some(link.last_seen_ms()),
                None => env.agent.as_ref().map(|a| a.last_seen * 1000),
            };
            if let Some(seen) = seen_ms.filter(|s| *s > 0) {
                let age = ((now_ms - seen).max(0) as f64) / 1000.0;
                ages.push((
                    [("env_id", env.id.to_string()), ("env", env.name.clone())],
                    age,
                ));
            }
        }
        let _one_scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.agents_connected.set(state.links.len() as i64);
        self.event_subscribers
            .set(state.events.subscribers() as i64);
        self.last_seen_age.clear();
        for (labels, age) in ages {
            self.last_seen_age.get_or_create(&labels).set(age);
        }
        let mut out = String::with_capacity(8 * 1024);
        encode(&mut out, &self.registry).map_err(ApiError::internal)?;
        Ok(out)
    }
}

/// `GET /metrics` (needs `metrics:read`).
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    auth.require("metrics:read", None)?;
    exposition(&state).await
}

async fn exposition(state: &AppState) -> Result<Response, ApiError> {
    let text = state.metrics.render(state).await?;
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Serves only `GET /metrics`, without authentication, on `listener`
/// (`--metrics-listen`) until `shutdown`.
pub async fn run_listener(listener: TcpListener, state: AppState, shutdown: CancellationToken) {
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { exposition(&state).await }),
        )
        .fallback(|| async { ApiError::not_found("Only /metrics is served here") })
        .with_state(state);
    let serve = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
    if let Err(err) = serve.await {
        tracing::warn!(%err, "metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_counters_share_the_registry_families() {
        let m = HubMetrics::new();
        let c = m.link_counters();
        c.frame_in(10);
        c.frame_in(5);
        c.frame_out(7);
        c.request_done(false, "ok", Duration::from_millis(3));
        m.push_finished(PushOutcome::Error, Duration::from_secs(2));
        m.agent_disconnected("timeout");
        m.auth_failed(AuthKind::ApiKey);
        let mut out = String::new();
        encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains("mooring_relay_frames_total{direction=\"agent_to_hub\"} 2"),
            "{out}"
        );
        assert!(out.contains("mooring_relay_frame_bytes_total{direction=\"agent_to_hub\"} 15"));
        assert!(out.contains("mooring_relay_frames_total{direction=\"hub_to_agent\"} 1"));
        assert!(out.contains("mooring_relay_requests_total{outcome=\"ok\"} 1"));
        assert!(out.contains("mooring_relay_request_duration_seconds_count{mode=\"whole\"} 1"));
        assert!(out.contains("mooring_push_jobs_total{outcome=\"error\"} 1"));
        assert!(out.contains("mooring_push_job_duration_seconds_count 1"));
        assert!(out.contains("mooring_agent_disconnects_total{reason=\"timeout\"} 1"));
        assert!(out.contains("mooring_auth_failures_total{kind=\"api_key\"} 1"));
        assert!(out.trim_end().ends_with("# EOF"));
    }
}
