//! One push, from a validated request to success or failure.
//!
//! [`prepare`] checks the image exists in the environment and finds its
//! tag; [`execute`] tags the image as the target and pushes it, emitting
//! `tagging`, `pushing` and every Docker progress object, and returns what
//! happened; [`terminal_event`] turns that into the job's last event.
//!
//! Failure is failure wherever it shows: a non-2xx status (tag or push),
//! an `error` line, an API error body, a lost agent, a cancel, or a stream
//! that ends without the digest every successful push reports. This module
//! never reports `complete` without that digest, and never logs the
//! registry auth header.

use std::fmt;

use bytes::Bytes;
use mooring_protocol::Headers;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::message::{format_error, AGENT_NOT_CONNECTED, IMAGE_NOT_FOUND};
use super::ops::{ChunkStream, DockerOps};
use super::progress::{PushProgress, Step};
use super::target::{is_none_tag, PushTarget, TagError};
use crate::envs::{DockerCall, DockerResponse, EnvError};
use crate::jobs::JobStatus;

/// Longest image id / name accepted from a request.
pub const MAX_IMAGE_REF_LEN: usize = 512;

/// How much of an error body is kept for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// `encodeURIComponent`'s set, less the sub-delimiters: RFC 3986 unreserved
/// characters stay, everything else is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment or query value.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Why a push could not be started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrepareError {
    /// The image id is empty, too long or holds control characters.
    #[error("Invalid image ID")]
    InvalidImageId,
    /// Docker does not know the image.
    #[error("Image not found")]
    ImageNotFound,
    /// No tag could be computed, or the computed one is invalid.
    #[error(transparent)]
    Tag(#[from] TagError),
    /// The environment could not be reached.
    #[error("{}", env_message(.0))]
    Env(EnvError),
    /// Docker answered the inspect with an unexpected status.
    #[error("Docker answered {status} to the image inspect: {message}")]
    Docker {
        /// HTTP status.
        status: u16,
        /// Docker's message.
        message: String,
    },
}

/// What a push needs once validated. Its `Debug` hides the auth header.
#[derive(Clone)]
pub struct PushPlan {
    /// The image to push, as the client named it (an id or a reference).
    pub image_id: String,
    /// Where it goes.
    pub target: PushTarget,
    /// `X-Registry-Auth` value (a secret).
    pub registry_auth: String,
}

impl fmt::Debug for PushPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushPlan")
            .field("image_id", &self.image_id)
            .field("target", &self.target.to_string())
            .field("registry_auth", &"<redacted>")
            .finish()
    }
}

/// A push that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The reference pushed (`host:port/repo:tag`).
    pub target: String,
    /// The manifest digest Docker reported.
    pub digest: String,
}

/// A push that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushFailure {
    /// The sentence for people ([`format_error`]).
    pub message: String,
    /// What Docker or the environment said, when it differs.
    pub detail: Option<String>,
    /// Whether the push was cancelled rather than refused.
    pub cancelled: bool,
}

impl PushFailure {
    fn docker(raw: &str, status: Option<u16>) -> Self {
        let message = format_error(raw, status);
        let raw = raw.trim();
        let detail = (raw != message && !raw.is_empty()).then(|| raw.to_owned());
        PushFailure {
            message,
            detail,
            cancelled: false,
        }
    }

    fn env(err: &EnvError) -> Self {
        match err {
            EnvError::Docker(raw) => Self::docker(raw, None),
            other => PushFailure {
                message: env_message(other),
                detail: None,
                cancelled: matches!(other, EnvError::Cancelled),
            },
        }
    }

    fn cancelled() -> Self {
        PushFailure {
            message: "Push cancelled".into(),
            detail: None,
            cancelled: true,
        }
    }
}

/// The message for an environment failure.
fn env_message(err: &EnvError) -> String {
    match err {
        EnvError::NotConnected => AGENT_NOT_CONNECTED.to_owned(),
        EnvError::Docker(raw) => format_error(raw, None),
        other => other.to_string(),
    }
}

/// Checks `image_id` exists in the environment and returns the tag to push
/// from: `image_name` when given, else the image's first real `RepoTag`.
pub async fn prepare<D: DockerOps>(
    docker: &D,
    image_id: &str,
    image_name: Option<&str>,
) -> Result<Option<String>, PrepareError> {
    let id = image_id.trim();
    if id.is_empty() || id.len() > MAX_IMAGE_REF_LEN || id.chars().any(char::is_control) {
        return Err(PrepareError::InvalidImageId);
    }
    let call = call(
        http::Method::GET,
        format!("/images/{}/json", encode_component(id)),
    );
    let answer = docker.request(call).await.map_err(PrepareError::Env)?;
    match answer.status {
        200..=299 => {}
        404 => return Err(PrepareError::ImageNotFound),
        status => {
            return Err(PrepareError::Docker {
                status,
                message: body_message(&answer.body),
            })
        }
    }
    let given = image_name.map(str::trim).filter(|s| !s.is_empty());
    if let Some(name) = given {
        return Ok(Some(name.to_owned()));
    }
    let inspect: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let first = inspect
        .get("RepoTags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|t| !is_none_tag(t));
    Ok(first.map(str::to_owned))
}

/// Tags and pushes per `plan`, emitting progress; never emits the terminal
/// event (see [`terminal_event`]).
pub async fn execute<D: DockerOps>(
    docker: &D,
    plan: &PushPlan,
    cancel: &CancellationToken,
    mut emit: impl FnMut(&Value) + Send,
) -> Result<Pushed, PushFailure> {
    emit(&json!({"status": "tagging", "message": "Tagging image..."}));
    let tag = call(
        http::Method::POST,
        format!(
            "/images/{}/tag?repo={}&tag={}",
            encode_component(plan.image_id.trim()),
            encode_component(&plan.target.repository),
            encode_component(&plan.target.tag)
        ),
    );
    let answer = tokio::select! {
        _ = cancel.cancelled() => return Err(PushFailure::cancelled()),
        r = docker.request(tag) => r.map_err(|e| PushFailure::env(&e))?,
    };
    check_tagged(&answer)?;

    emit(&json!({"status": "pushing", "message": "Pushing to registry..."}));
    let mut push = call(
        http::Method::POST,
        format!(
            "/images/{}/push?tag={}",
            encode_component(&plan.target.repository),
            encode_component(&plan.target.tag)
        ),
    );
    push.headers
        .insert("X-Registry-Auth".into(), plan.registry_auth.clone());
    let mut stream = tokio::select! {
        _ = cancel.cancelled() => return Err(PushFailure::cancelled()),
        s = docker.stream(push) => s.map_err(|e| PushFailure::env(&e))?,
    };
    let digest = follow(&mut stream, cancel, &mut emit).await?;
    Ok(Pushed {
        target: plan.target.to_string(),
        digest,
    })
}

/// Reads the push stream to its end; the digest on success.
async fn follow<S: ChunkStream>(
    stream: &mut S,
    cancel: &CancellationToken,
    emit: &mut (impl FnMut(&Value) + Send),
) -> Result<String, PushFailure> {
    let mut progress = PushProgress::new();
    let mut head: Vec<u8> = Vec::new();
    let mut steps = Vec::new();
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return Err(PushFailure::cancelled()),
            n = stream.next_chunk() => n.map_err(|e| PushFailure::env(&e))?,
        };
        let ended = next.is_none();
        if let Some(chunk) = &next {
            let room = MAX_ERROR_BODY.saturating_sub(head.len());
            head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if let Some(status) = stream.status().filter(|s| !(200..300).contains(s)) {
            if ended || head.len() >= MAX_ERROR_BODY {
                return Err(PushFailure::docker(&body_message(&head), Some(status)));
            }
            continue;
        }
        match &next {
            Some(chunk) => progress.feed(chunk, &mut steps),
            None => progress.finish(&mut steps),
        }
        for step in steps.drain(..) {
            match step {
                Step::Event(value) => emit(&value),
                Step::Failed(raw) => return Err(PushFailure::docker(&raw, stream.status())),
            }
        }
        if ended {
            break;
        }
    }
    match progress.digest() {
        Some(digest) => Ok(digest.to_owned()),
        None => {
            let said = progress
                .last_text()
                .map(|t| format!(" Docker's last message: {t}"))
                .unwrap_or_default();
            Err(PushFailure {
                message: format!(
                    "The push ended without the registry confirming it (no digest was reported).{said}"
                ),
                detail: None,
                cancelled: false,
            })
        }
    }
}

fn check_tagged(answer: &DockerResponse) -> Result<(), PushFailure> {
    if (200..300).contains(&answer.status) {
        return Ok(());
    }
    let raw = body_message(&answer.body);
    let mut failure = PushFailure::docker(&raw, Some(answer.status));
    if answer.status == 404 {
        failure.message = IMAGE_NOT_FOUND.to_owned();
    }
    Err(failure)
}

/// The job's last event and status for a push outcome.
pub fn terminal_event(outcome: &Result<Pushed, PushFailure>) -> (JobStatus, Value) {
    match outcome {
        Ok(p) => (
            JobStatus::Done,
            json!({
                "status": "complete",
                "message": format!("Image pushed to {}", p.target),
                "targetTag": p.target,
                "digest": p.digest,
            }),
        ),
        Err(f) => {
            let mut event = json!({"status": "error", "error": f.message});
            if let Some(detail) = &f.detail {
                event["detail"] = Value::String(detail.clone());
            }
            (JobStatus::Error, event)
        }
    }
}

/// Docker's error text from a body: `{"message": …}`, else the text itself.
fn body_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(msg) = parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("error")))
        .and_then(Value::as_str)
    {
        return msg.to_owned();
    }
    let text = String::from_utf8_lossy(body);
    text.trim().chars().take(1000).collect()
}

fn call(method: http::Method, path: String) -> DockerCall {
    DockerCall {
        method,
        path,
        headers: Headers::new(),
        body: None::<Bytes>,
    }
}
