//! Environments CRUD with live status.
//!
//! An environment reads `{"id", "name", "type", "socket", "createdAt",
//! "status": "online"|"offline"|"conflict", "agent": {…}|null,
//! "conflict": {…}|null}`. For an edge environment `agent` is the live
//! agent, or the last one seen when offline; `conflict` names a second
//! agent refused recently. Deleting an environment drops its link.
//!
//! Connectivity fields (issue #5): `connectedAt`, `lastSeen` (RFC 3339 or
//! null), `rttMs` (round trip of the hub's last timed ping; for a local
//! environment, of Docker's `/_ping`), `lastMetrics` (the last sample or
//! null), `disconnectReason` (`closed`, `timeout`, `replaced`, `refused`,
//! `revoked`, `deleted`, `shutdown`; null while online) and
//! `disconnectCount`. They survive a hub restart (see [`crate::status`]).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{rfc3339, ApiError, IdPath, JsonBody};
use crate::auth::Auth;
use crate::link::Conflict;
use crate::state::AppState;
use crate::store::{EnvKind, Environment, EnvironmentPatch, NewEnvironment};

/// Environment routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/environments", get(list).post(create))
        .route(
            "/api/environments/{id}",
            get(show).patch(update).delete(remove),
        )
}

/// The agent fields of an environment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// Agent version.
    pub version: String,
    /// Docker Engine version.
    pub docker_version: String,
    /// Host name.
    pub hostname: String,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Link established (RFC 3339).
    pub connected_at: String,
    /// Last frame seen (RFC 3339).
    pub last_seen: String,
}

/// A second agent refused recently.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictView {
    /// Refused agent id.
    pub agent_id: String,
    /// Refused agent name.
    pub agent_name: String,
    /// Its host.
    pub hostname: String,
    /// Last refusal (RFC 3339).
    pub at: String,
    /// What an operator should do.
    pub message: String,
}

/// An environment as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView {
    /// Integer id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// `local` or `edge`.
    #[serde(rename = "type")]
    pub kind: EnvKind,
    /// Docker socket (local).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// `online`, `offline` or `conflict`.
    pub status: &'static str,
    /// The live (or last seen) agent.
    pub agent: Option<AgentView>,
    /// A refused second agent, if recent.
    pub conflict: Option<ConflictView>,
    /// When the current (or last) link was established (RFC 3339).
    pub connected_at: Option<String>,
    /// Last frame from the agent (RFC 3339, ms).
    pub last_seen: Option<String>,
    /// Round trip of the last timed ping, ms.
    pub rtt_ms: Option<f64>,
    /// The last host metrics sample.
    pub last_metrics: Option<crate::status::Sample>,
    /// Why the last link ended, while offline.
    pub disconnect_reason: Option<String>,
    /// Links ended so far.
    pub disconnect_count: i64,
}

fn rfc3339_ms(ms: i64) -> String {
    let base = rfc3339(ms.div_euclid(1000));
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// Builds the view of `env` with its live status.
pub async fn view(state: &AppState, env: Environment) -> EnvironmentView {
    let mut status = "offline";
    let mut agent = env.agent.clone();
    let mut conflict: Option<Conflict> = None;
    let mut last_seen = env
        .agent
        .as_ref()
        .filter(|a| a.last_seen > 0)
        .map(|a| rfc3339(a.last_seen));
    let mut rtt_ms = None;
    let mut online = false;
    match env.kind {
        EnvKind::Edge => {
            if let Some(link) = state.links.get(env.id) {
                online = true;
                let mut live = link.agent().clone();
                live.last_seen = link.last_seen_ms() / 1000;
                last_seen = Some(rfc3339_ms(link.last_seen_ms()));
                rtt_ms = link.rtt_ms();
                agent = Some(live);
                conflict = state.links.conflict(env.id);
                status = if conflict.is_some() {
                    "conflict"
                } else {
                    "online"
                };
            }
        }
        EnvKind::Local => {
            if let Ok(client) = state.env_client(env.id).await {
                let ping = mooring_docker::DockerRequest::get("/_ping");
                let call = crate::envs::DockerCall {
                    method: ping.method,
                    path: ping.path,
                    headers: Default::default(),
                    body: None,
                };
                let started = std::time::Instant::now();
                let answered =
                    tokio::time::timeout(Duration::from_secs(2), client.request(call)).await;
                if matches!(answered, Ok(Ok(ref r)) if r.status == 200) {
                    status = "online";
                    online = true;
                    rtt_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
    }
    // Read after the link check: a link is unregistered only once its end
    // is recorded, so "offline" here always comes with that record (count,
    // reason, last-seen), never with the state from before it.
    let stored = state.store.env_status(env.id).await.unwrap_or_default();
    if !online {
        if let Some(seen) = stored.last_seen.filter(|s| *s > 0) {
            last_seen = Some(rfc3339(seen));
        }
    }
    let last_metrics = state.monitor.last(env.id).or_else(|| {
        stored
            .last_metrics
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    });
    let connected_at = agent
        .as_ref()
        .filter(|a| a.connected_at > 0)
        .map(|a| rfc3339(a.connected_at));
    EnvironmentView {
        connected_at,
        last_seen,
        rtt_ms,
        last_metrics,
        disconnect_reason: if online {
            None
        } else {
            stored.disconnect_reason
        },
        disconnect_count: stored.disconnect_count,
        id: env.id,
        name: env.name,
        kind: env.kind,
        socket: env.socket,
        created_at: rfc3339(env.created_at),
        status,
        agent: agent.map(|a| AgentView {
            id: a.id,
            name: a.name,
            version: a.version,
            docker_version: a.docker_version,
            hostname: a.hostname,
            capabilities: a.capabilities,
            connected_at: rfc3339(a.connected_at),
            last_seen: rfc3339(a.last_seen),
        }),
        conflict: conflict.map(|c| ConflictView {
            message: format!(
                "agent {:?} (id {}, host {}) was refused because agent {} holds this environment; \
                 stop one of them or give it its own environment",
                c.agent_name, c.agent_id, c.hostname, c.live_agent_id
            ),
            agent_id: c.agent_id,
            agent_name: c.agent_name,
            hostname: c.hostname,
            at: rfc3339(c.at),
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    socket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    socket: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<EnvironmentView>>, ApiError> {
    auth.require("environments:read", None)?;
    let mut out = Vec::new();
    for env in state.store.list_environments().await? {
        if auth.can_see_env(env.id) {
            out.push(view(&state, env).await);
        }
    }
    Ok(Json(out))
}

async fn show(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<EnvironmentView>, ApiError> {
    auth.require("environments:read", Some(id))?;
    let env = state.store.get_environment(id).await?;
    Ok(Json(view(&state, env).await))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require_global("environments:write")?;
    let kind = EnvKind::parse(&body.kind)?;
    let env = state
        .store
        .create_environment(NewEnvironment {
            name: body.name,
            kind,
            socket: body.socket,
        })
        .await?;
    state
        .audit(
            &auth.actor(),
            "environment.create",
            Some(&format!("environment:{}", env.id)),
            Some(&env.name),
        )
        .await;
    Ok((StatusCode::CREATED, Json(view(&state, env).await)))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchBody>,
) -> Result<Json<EnvironmentView>, ApiError> {
    auth.require("environments:write", Some(id))?;
    let env = state
        .store
        .update_environment(
            id,
            EnvironmentPatch {
                name: body.name,
                socket: body.socket,
            },
        )
        .await?;
    state.forget_env(id);
    state
        .audit(
            &auth.actor(),
            "environment.update",
            Some(&format!("environment:{id}")),
            None,
        )
        .await;
    Ok(Json(view(&state, env).await))
}

async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require("environments:write", Some(id))?;
    state.store.delete_environment(id).await?;
    state.links.disconnect(id, "Environment deleted");
    state.forget_env(id);
    state.monitor.forget(id);
    state
        .audit(
            &auth.actor(),
            "environment.delete",
            Some(&format!("environment:{id}")),
            None,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
