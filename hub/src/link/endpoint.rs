//! `GET /api/hawser/connect`: the WebSocket upgrade and the handshake.
//!
//! The first frame must be `hello` within the handshake timeout. The token
//! is checked (argon2id, one verification even for unknown prefixes),
//! failures are limited per source IP, accepted connections per
//! environment. Then one live link per environment:
//! - the same `agentId` replaces its stale link;
//! - a different agent is refused with a message naming the live one, and
//!   the conflict is shown in the environment's status — unless the live
//!   link fails a ping probe, in which case it was a dead half-open link
//!   and the newcomer replaces it.
//!
//! Refusals are an `error` frame with both `error` and `message` (and
//! `retryAfter` where it applies), then close code 1008.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use mooring_protocol::limits::{CONNECT_PATH, PROTOCOL_VERSION};
use mooring_protocol::{caps, ErrorFrame, Frame, Hello, Welcome};
use tracing::Instrument;

use super::{Conflict, LinkHandle};
use crate::crypto;
use crate::state::AppState;
use crate::store::{now_secs, AgentRecord, EnvKind, NewAudit};

/// The agent endpoint's routes.
pub fn router() -> Router<AppState> {
    Router::new().route(CONNECT_PATH, get(connect))
}

/// The peer's IP, when the server recorded it.
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Read buffer of an agent's WebSocket. tungstenite zero-fills up to this
/// much before every socket read, and an idle link keeps it resident: its
/// 128 KiB default cost 144 KiB of RSS per idle agent and a 128 KiB memset
/// per ping (40 % of a core at 10,000 agents). Larger frames still arrive
/// whole: the buffer grows to each frame's length as it is read.
const LINK_READ_BUFFER: usize = 16 * 1024;

async fn connect(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    ws: WebSocketUpgrade,
) -> Response {
    let max = state.settings.max_frame_bytes;
    let tracker = state.tracker.clone();
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(LINK_READ_BUFFER)
        .on_upgrade(move |socket| {
            let span = tracing::info_span!("link", peer = ?ip, env_id = tracing::field::Empty, agent_id = tracing::field::Empty);
            tracker.track_future(handle(socket, state, ip).instrument(span))
        })
}

/// The hub's extensions, as answered in `welcome`: binary stream data only
/// to an agent that offered it.
fn welcome_caps(hello: &Hello) -> Vec<String> {
    let mut caps = vec![caps::STREAM_STATUS.to_owned()];
    if hello.capabilities.iter().any(|c| c == caps::BINARY_STREAM) {
        caps.push(caps::BINARY_STREAM.to_owned());
    }
    caps
}

/// Why a handshake is refused.
struct Refusal {
    message: String,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn new(message: impl Into<String>) -> Self {
        Refusal {
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry(message: impl Into<String>, after: Duration) -> Self {
        Refusal {
            message: message.into(),
            retry_after: Some(after),
        }
    }
}

/// A token that verified.
struct Admitted {
    env_id: i64,
    env_name: String,
    token_id: i64,
}

async fn handle(mut ws: WebSocket, state: AppState, ip: Option<IpAddr>) {
    let hello = tokio::select! {
        hello = tokio::time::timeout(state.settings.handshake_timeout, first_frame(&mut ws, state.settings.max_frame_bytes)) => hello,
        _ = state.shutdown.cancelled() => return,
    };
    let hello = match hello {
        Ok(Ok(Some(hello))) => hello,
        Ok(Ok(None)) => return,
        Ok(Err(refusal)) => return refuse(ws, refusal).await,
        Err(_) => {
            return refuse(
                ws,
                Refusal::new("No hello frame within the handshake timeout"),
            )
            .await
        }
    };
    let span = tracing::Span::current();
    span.record("agent_id", hello.agent_id.as_str());
    let admitted = match authenticate(&state, ip, &hello).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(reason = %refusal.message, "agent refused");
            return refuse(ws, refusal).await;
        }
    };
    span.record("env_id", admitted.env_id);
    if let Err(refusal) = claim_environment(&state, &hello, &admitted).await {
        tracing::info!(reason = %refusal.message, "agent refused");
        return refuse(ws, refusal).await;
    }
    let now = now_secs();
    let agent = AgentRecord {
        id: hello.agent_id.clone(),
        name: if hello.agent_name.is_empty() {
            hello.hostname.clone()
        } else {
            hello.agent_name.clone()
        },
        version: hello.version.clone(),
        docker_version: hello.docker_version.clone(),
        hostname: hello.hostname.clone(),
        capabilities: hello.capabilities.clone(),
        connected_at: now,
        last_seen: now,
    };
    let (link, queues) = LinkHandle::new(
        admitted.env_id,
        state.links.next_conn_id(),
        admitted.token_id,
        agent.clone(),
        state.settings.link_limits(),
        &state.shutdown,
        state.metrics.link_counters(),
    );
    // The queue is empty: the welcome is the first frame the writer sends.
    link.try_send(Frame::Welcome(Welcome {
        environment_id: Some(admitted.env_id),
        server_id: Some(state.server_id.to_string()),
        version: Some(PROTOCOL_VERSION.to_owned()),
        message: Some(format!(
            "Connected to Mooring hub {} as environment {:?}",
            crate::state::HUB_VERSION,
            admitted.env_name
        )),
        capabilities: Some(welcome_caps(&hello)),
    }));
    let replaced = match state.links.insert(link.clone()) {
        Ok(Some(old)) => {
            let reason = if old.agent().id == agent.id {
                "Connection replaced by new agent".to_owned()
            } else {
                format!(
                    "Connection replaced by agent {:?} (this link did not answer a probe)",
                    agent.name
                )
            };
            old.close(&reason);
            Some(old)
        }
        Ok(None) => None,
        Err(full) => return refuse(ws, Refusal::new(full.to_string())).await,
    };
    // The old link's end is recorded and published before this one's start:
    // an event consumer (or the stored disconnect reason) must not end on
    // "disconnected" while the new link is up. Its session does that at once
    // after the close; the bound only guards against a stuck store.
    if let Some(old) = replaced {
        old.wait_retired(Duration::from_secs(5)).await;
    }
    let actor = format!("agent:{}", agent.id);
    let target = format!("environment:{}", admitted.env_id);
    let detail = format!(
        "name={} version={} host={} peer={}",
        agent.name,
        agent.version,
        agent.hostname,
        ip.map(|i| i.to_string()).unwrap_or_default()
    );
    let audit = NewAudit {
        actor: &actor,
        action: "agent.connect",
        target: Some(&target),
        detail: Some(&detail),
    };
    if let Err(err) = state
        .store
        .record_link_up(admitted.env_id, admitted.token_id, &agent, &audit)
        .await
    {
        tracing::warn!(%err, "could not record the agent's connect in the store");
    }
    tracing::info!(agent_name = %agent.name, version = %agent.version, "agent connected");
    crate::status::on_connect(&state, &link).await;
    super::session::run(ws, link, queues, state).await;
}

/// Reads the first frame; `Ok(None)` when the peer left quietly.
async fn first_frame(ws: &mut WebSocket, max: usize) -> Result<Option<Hello>, Refusal> {
    loop {
        match ws.next().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Text(text))) => {
                return match Frame::decode_limited(text.as_str(), max) {
                    Ok(Frame::Hello(hello)) => Ok(Some(hello)),
                    Ok(other) => Err(Refusal::new(format!(
                        "Expected a hello frame first, got {:?}",
                        other.kind()
                    ))),
                    Err(err) => Err(Refusal::new(format!("Malformed hello frame: {err}"))),
                };
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Checks the token of `hello`.
async fn authenticate(
    state: &AppState,
    ip: Option<IpAddr>,
    hello: &Hello,
) -> Result<Admitted, Refusal> {
    if let Some(ip) = ip {
        if let Err(wait) = state.failed_auth.check(ip) {
            return Err(Refusal::retry(
                "Too many failed attempts",
                wait.max(Duration::from_secs(1)),
            ));
        }
    }
    let fail = |message: &str| {
        state
            .metrics
            .auth_failed(crate::metrics::AuthKind::AgentToken);
        let delay = ip.and_then(|ip| state.failed_auth.failure(ip));
        match delay {
            Some(d) => Refusal::retry(message, d),
            None => Refusal::new(message),
        }
    };
    if hello.token.is_empty() {
        return Err(fail("No token provided"));
    }
    let candidates = match crypto::prefix_of(&hello.token) {
        Some(prefix) => state
            .store
            .tokens_by_prefix(prefix)
            .await
            .map_err(|e| Refusal::new(format!("Hub store unavailable: {e}")))?,
        None => Vec::new(),
    };
    let hashes: Vec<String> = candidates.iter().map(|c| c.hash.clone()).collect();
    let matched = state
        .verify_secret_against(&hello.token, hashes)
        .await
        .map_err(|_| Refusal::new("Hub shutting down"))?;
    let Some(index) = matched else {
        return Err(fail("Invalid token"));
    };
    let token = &candidates[index].record;
    if let Some(ip) = ip {
        state.failed_auth.success(ip);
    }
    if token.revoked_at.is_some() {
        return Err(Refusal::new("Token revoked"));
    }
    if token.expires_at.is_some_and(|e| e <= now_secs()) {
        return Err(Refusal::new("Token expired"));
    }
    if hello.agent_id.trim().is_empty() {
        return Err(Refusal::new(
            "hello carries no agentId: the agent must send a stable id",
        ));
    }
    let env = state
        .store
        .get_environment(token.env_id)
        .await
        .map_err(|_| Refusal::new("Token's environment no longer exists"))?;
    if env.kind != EnvKind::Edge {
        return Err(Refusal::new(format!(
            "Environment {:?} is a local environment: agents connect only to edge environments",
            env.name
        )));
    }
    if let Err(wait) = state.reconnects.admit(env.id) {
        let secs = wait.as_secs().max(1);
        return Err(Refusal::retry(
            format!("Reconnection throttled. Retry after {secs}s."),
            Duration::from_secs(secs),
        ));
    }
    Ok(Admitted {
        env_id: env.id,
        env_name: env.name,
        token_id: token.id,
    })
}

/// Decides whether this agent may hold the environment's link.
async fn claim_environment(
    state: &AppState,
    hello: &Hello,
    admitted: &Admitted,
) -> Result<(), Refusal> {
    let Some(live) = state.links.get(admitted.env_id) else {
        return Ok(());
    };
    if live.agent().id == hello.agent_id {
        return Ok(());
    }
    if !live.probe(state.settings.probe_timeout).await {
        tracing::info!(live_agent = %live.agent().id, "live link failed the probe: newcomer replaces it");
        return Ok(());
    }
    state.links.record_conflict(
        admitted.env_id,
        Conflict {
            agent_id: hello.agent_id.clone(),
            agent_name: hello.agent_name.clone(),
            hostname: hello.hostname.clone(),
            at: now_secs(),
            live_agent_id: live.agent().id.clone(),
        },
    );
    crate::status::on_conflict(
        state,
        admitted.env_id,
        &hello.agent_id,
        &hello.agent_name,
        &live,
    );
    let live_agent = live.agent();
    Err(Refusal::new(format!(
        "Environment {:?} is already served by agent {:?} (id {}, host {}). \
         Only one agent per environment: stop that agent, or revoke its token and create a new one for this host.",
        admitted.env_name, live_agent.name, live_agent.id, live_agent.hostname
    )))
}

/// Sends the refusal (`error` frame, then close 1008) and lets the peer go.
async fn refuse(mut ws: WebSocket, refusal: Refusal) {
    let mut frame = ErrorFrame::new(refusal.message.clone());
    frame.retry_after = refusal.retry_after.map(|d| d.as_secs().max(1));
    let _ = ws
        .send(Message::Text(Frame::Error(frame).encode().into()))
        .await;
    let mut reason = refusal.message;
    if reason.len() > 120 {
        let mut end = 120;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: 1008,
            reason: reason.into(),
        })))
        .await;
    // Wait briefly for the peer's close so the frames are flushed.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_streams_are_answered_only_to_agents_that_offer_them() {
        let reference = Hello {
            capabilities: vec!["exec".into(), "metrics".into()],
            ..Default::default()
        };
        assert_eq!(welcome_caps(&reference), vec![caps::STREAM_STATUS]);
        let mooring = Hello {
            capabilities: vec![caps::STREAM_STATUS.into(), caps::BINARY_STREAM.into()],
            ..Default::default()
        };
        assert_eq!(
            welcome_caps(&mooring),
            vec![caps::STREAM_STATUS, caps::BINARY_STREAM]
        );
    }
}
