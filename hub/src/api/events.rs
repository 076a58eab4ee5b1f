//! `GET /api/events`: the hub's live events ([`crate::events`]).
//!
//! - `Accept: text/event-stream`: Server-Sent Events. Each event is a
//!   default `message` whose `data` is the event JSON and whose `id` is its
//!   `seq`. A reconnecting client's `Last-Event-ID` (or `?since=SEQ`)
//!   replays what it missed from the recent list first. Keep-alive
//!   comments every 15 s. When events it should have seen are gone from
//!   the recent list, the client gets a `gap` event
//!   (`{"from":SEQ,"to":SEQ}`) and should reload its state.
//! - otherwise JSON: `{"events":[…]}`, kept events after `?since=SEQ`
//!   (default 0), oldest first, plus `"gap"` when some were evicted.
//!
//! Needs `environments:read`; a caller sees only events of environments
//! its key may see. A live stream re-checks its credential every 30 s and
//! ends when the key is revoked or the session ends, and ends at hub
//! shutdown.
//!
//! # Lag policy
//! A subscriber whose connection cannot keep up with the broadcast (see
//! [`crate::events::BROADCAST_CAPACITY`]) re-reads the missed kept events
//! from the recent list; missed `metrics` events are dropped (the next one
//! follows within 30 s). If the recent list no longer reaches back, a `gap`
//! event is sent and the stream ends, so the browser reconnects and the
//! dashboard reloads.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::ApiError;
use crate::auth::Auth;
use crate::events::HubEvent;
use crate::state::AppState;

/// How often a live stream re-checks its credential.
const RECHECK: Duration = Duration::from_secs(30);

/// Event route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/events", get(events))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    since: Option<u64>,
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

async fn events(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    auth.require("environments:read", None)?;
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "invalid query: {} (since must be a sequence number)",
            e.body_text()
        ))
    })?;
    if wants_stream(&headers) {
        let since = last_event_id(&headers).or(query.since);
        return Ok(stream(state, auth, since).into_response());
    }
    let replay = state.events.since(query.since.unwrap_or(0));
    let events: Vec<Arc<HubEvent>> = replay
        .events
        .into_iter()
        .filter(|e| auth.can_see_env(e.env_id))
        .collect();
    let mut body = serde_json::json!({ "events": events, "lastSeq": state.events.last_seq() });
    if let Some((from, to)) = replay.gap {
        body["gap"] = serde_json::json!({"from": from, "to": to});
    }
    Ok(Json(body).into_response())
}

/// State of one SSE subscriber.
struct Subscriber {
    state: AppState,
    auth: Auth,
    rx: broadcast::Receiver<Arc<HubEvent>>,
    /// Events to send before reading the broadcast again.
    queue: VecDeque<Event>,
    /// Highest seq sent (or skipped as invisible).
    last: u64,
    next_check: tokio::time::Instant,
    done: bool,
}

fn sse_event(e: &HubEvent) -> Option<Event> {
    Event::default().id(e.seq.to_string()).json_data(e).ok()
}

fn gap_event(from: u64, to: u64) -> Event {
    Event::default()
        .event("gap")
        .data(format!("{{\"from\":{from},\"to\":{to}}}"))
}

impl Subscriber {
    /// Queues the kept events after `self.last`; true when a gap was found.
    fn replay(&mut self) -> bool {
        let replay = self.state.events.since(self.last);
        let gap = replay.gap;
        if let Some((from, to)) = gap {
            self.queue.push_back(gap_event(from, to));
        }
        for e in replay.events {
            self.push(&e);
        }
        gap.is_some()
    }

    fn push(&mut self, e: &HubEvent) {
        if e.seq <= self.last {
            return;
        }
        self.last = e.seq;
        if self.auth.can_see_env(e.env_id) {
            if let Some(ev) = sse_event(e) {
                self.queue.push_back(ev);
            }
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            if self.done {
                return None;
            }
            let recv = tokio::select! {
                _ = self.state.shutdown.cancelled() => return None,
                _ = tokio::time::sleep_until(self.next_check) => {
                    if !self.auth.still_valid(&self.state).await {
                        return None;
                    }
                    self.next_check = tokio::time::Instant::now() + RECHECK;
                    continue;
                }
                recv = self.rx.recv() => recv,
            };
            match recv {
                Ok(e) => self.push(&e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(
                        missed = n,
                        "event subscriber lagged: replaying from the recent list"
                    );
                    if self.replay() {
                        // Lost for good: tell the client, then end so it
                        // reconnects and reloads.
                        self.done = true;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn stream(state: AppState, auth: Auth, since: Option<u64>) -> impl IntoResponse {
    // Subscribe first, then replay: nothing falls between the two, and
    // duplicates are skipped by seq.
    let rx = state.events.subscribe();
    let newest = state.events.last_seq();
    // An id above the newest comes from before a hub restart (numbering
    // starts again at 1): start live; the dashboard reloads on reconnect.
    let since = since.filter(|s| *s <= newest);
    let mut sub = Subscriber {
        last: since.unwrap_or(newest),
        state,
        auth,
        rx,
        queue: VecDeque::new(),
        next_check: tokio::time::Instant::now() + RECHECK,
        done: false,
    };
    if since.is_some() {
        sub.replay();
    }
    let events = futures_util::stream::unfold(sub, |mut sub| async move {
        let ev = sub.next().await?;
        Some((Ok::<Event, Infallible>(ev), sub))
    });
    let mut resp = Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keep-alive"),
        )
        .into_response();
    // Tell buffering proxies (nginx) to pass events through at once.
    resp.headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}
