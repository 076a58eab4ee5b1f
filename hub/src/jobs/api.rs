//! The HTTP face of jobs: `GET /api/jobs/{id}` as JSON or as Server-Sent
//! Events, built only on [`Jobs`] so it runs under any router state that
//! can hand out the registry (`Jobs: FromRef<S>`).
//!
//! SSE follows the spec's browser example: each job event is an event named
//! `data` whose data is `{"data": <event object>}` and whose `id` is the
//! event's id. A client (or a reconnecting `EventSource`) sending
//! `Last-Event-ID: N` gets every stored event after N, then the live ones,
//! and the stream ends after the terminal event. Reconnecting to an ended
//! job with nothing left after N answers `204 No Content`, which tells an
//! `EventSource` to stop reconnecting.
//!
//! Reading a job needs no API key: the job id is a capability (122 random
//! bits, given only to the client that started the job) and a browser's
//! `EventSource` cannot send an `Authorization` header. Events never carry
//! secrets. Changing a job (cancel) is authenticated elsewhere.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use uuid::Uuid;

use super::{Job, JobStatus, Jobs, JobsError};
use crate::api::ApiError;
use crate::auth::Auth;
use crate::state::AppState;

/// Comment sent on an idle SSE stream so proxies keep it open.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long `DELETE` waits for a cancelled job to end before answering.
pub const CANCEL_WAIT: Duration = Duration::from_secs(15);

/// Permission allowing to cancel any job (in the key's environments).
pub const CANCEL_PERMISSION: &str = "jobs:cancel";

/// `GET` and `DELETE /api/jobs/{id}` of the hub.
pub fn routes() -> Router<AppState> {
    read_routes::<AppState>().route("/api/jobs/{id}", delete(cancel_job))
}

/// `GET /api/jobs/{id}` for any state holding the registry.
pub fn read_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Jobs: FromRef<S>,
{
    Router::new().route("/api/jobs/{id}", get(get_job))
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The job of a path id (`None` for an unknown or malformed id).
pub fn find(jobs: &Jobs, id: &str) -> Option<Arc<Job>> {
    Uuid::parse_str(id).ok().and_then(|id| jobs.get(id))
}

/// The answer for an unknown job.
pub fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Job not found")
}

/// Whether the client asked for an event stream.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

async fn get_job(State(jobs): State<Jobs>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some(job) = find(&jobs, &id) else {
        return not_found();
    };
    if !wants_event_stream(&headers) {
        return json_answer(&job, StatusCode::OK);
    }
    let after = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => 0,
        Some(Ok(text)) if text.trim().is_empty() => 0,
        Some(Ok(text)) => match text.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Invalid Last-Event-ID: send the id of the last event received",
                )
            }
        },
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "Invalid Last-Event-ID"),
    };
    event_stream(&job, after)
}

/// `DELETE /api/jobs/{id}`: cancels a running job (its Docker request is
/// cancelled with it), waits up to [`CANCEL_WAIT`] for its end, and answers
/// the job as JSON (202 if it has not ended yet). An ended job is left as
/// is and answered the same way.
async fn cancel_job(
    State(jobs): State<Jobs>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(job) = find(&jobs, &id) else {
        return Ok(not_found());
    };
    let env = job.meta().env_id;
    let permission = job.meta().permission;
    let allowed = [CANCEL_PERMISSION, permission]
        .iter()
        .any(|p| !p.is_empty() && auth.require(p, env).is_ok());
    if !allowed {
        return Err(ApiError::forbidden());
    }
    if job.cancel() {
        tracing::info!(job = %job.id(), actor = %auth.actor(), "job cancelled");
        if tokio::time::timeout(CANCEL_WAIT, job.wait()).await.is_err() {
            return Ok(json_answer(&job, StatusCode::ACCEPTED));
        }
    }
    Ok(json_answer(&job, StatusCode::OK))
}

/// The job as JSON: `{id, kind, status, lines, result, droppedLines}`.
pub fn json_answer(job: &Job, status: StatusCode) -> Response {
    let snap = job.snapshot();
    let state = match snap.status {
        JobStatus::Running => "running",
        JobStatus::Done => "done",
        JobStatus::Error => "error",
    };
    let mut body =
        String::with_capacity(64 + snap.lines.iter().map(|l| l.json.len() + 1).sum::<usize>());
    body.push_str(&format!(
        r#"{{"id":"{}","kind":"{}","status":"{state}","lines":["#,
        snap.id, snap.kind
    ));
    for (n, line) in snap.lines.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&line.json);
    }
    body.push_str(r#"],"result":"#);
    body.push_str(snap.result.as_ref().map_or("null", |r| &r.json));
    body.push_str(&format!(r#","droppedLines":{}}}"#, snap.dropped));
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The job's events after `after` as Server-Sent Events (see module docs).
pub fn event_stream(job: &Arc<Job>, after: u64) -> Response {
    if job.status() != JobStatus::Running && after >= job.last_event_id() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let sub = match job.subscribe(after) {
        Ok(sub) => sub,
        Err(e @ JobsError::TooManySubscribers { .. }) => {
            return error(StatusCode::TOO_MANY_REQUESTS, &e.to_string())
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let events = futures_util::stream::unfold(sub, |mut sub| async move {
        let ev = sub.next().await?;
        let event = Event::default()
            .event("data")
            .id(ev.id.to_string())
            .data(format!(r#"{{"data":{}}}"#, ev.json));
        Some((Ok::<_, Infallible>(event), sub))
    });
    let mut answer = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE))
        .into_response();
    // Reverse proxies (nginx) must not buffer a live stream.
    answer
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    answer
}
