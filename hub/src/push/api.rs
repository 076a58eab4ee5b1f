//! `POST /api/images/push?env={id}`: validate, resolve the environment and
//! registry, start the push job, answer.
//!
//! Checks run in this order, each with its exact answer: missing `imageId`
//! or `registryId` (400), no `images:push` on the environment (403),
//! unknown environment (404), unknown registry (404 "Registry not found"),
//! image unknown in the environment (404 "Image not found"), no usable tag
//! (400). Then the push runs as a job: the default answer is
//! `{"jobId": …}` at once; `Accept: application/json` (without
//! `text/event-stream`) waits and answers the terminal event (500 when it
//! is an error); `Accept: text/event-stream` answers the job's event stream
//! directly. Every push leaves one audit row with its outcome and duration.

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::run::PrepareError;
use super::{prepare, registry_auth, target_tag, terminal_event, PushPlan, RegistryLocation};
use crate::api::{ApiError, JsonBody};
use crate::auth::Auth;
use crate::events::EventKind;
use crate::jobs::api::{event_stream, wants_event_stream};
use crate::jobs::{JobMeta, JobsError};
use crate::metrics::PushOutcome;
use crate::state::AppState;
use crate::store::{Registry, StoreError};

/// The permission a push needs on its environment.
pub const PUSH_PERMISSION: &str = "images:push";

/// Name of the environment used when a push names none.
pub const LOCAL_ENV_NAME: &str = "local";

/// `POST /api/images/push`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/images/push", post(push_image))
}

/// The request body. Every field is optional here so that a missing one
/// gets the spec's message rather than a deserializer's.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushRequest {
    image_id: Option<String>,
    image_name: Option<String>,
    /// An integer, or a string holding one (both seen from clients).
    registry_id: Option<Value>,
    new_tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PushQuery {
    env: Option<String>,
}

fn required() -> ApiError {
    ApiError::bad_request("Image ID and registry ID are required")
}

async fn push_image(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PushQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<PushRequest>,
) -> Result<Response, ApiError> {
    let image_id = req
        .image_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(required)?
        .to_owned();
    let registry_id = match &req.registry_id {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(required)?,
        Some(Value::String(s)) if !s.trim().is_empty() => s
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("registryId must be a registry id (an integer)"))?,
        _ => return Err(required()),
    };
    let env_id = resolve_env(&state, query.env.as_deref(), &auth).await?;
    let registry = state
        .store
        .get_registry(registry_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Registry not found"))?;
    let client = state.env_client(env_id).await?;
    let source = prepare(&client, &image_id, req.image_name.as_deref())
        .await
        .map_err(prepare_error)?;
    let location =
        RegistryLocation::parse(&registry.url).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let target = target_tag(source.as_deref(), req.new_tag.as_deref(), &location)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let plan = PushPlan {
        image_id: image_id.clone(),
        target,
        registry_auth: registry_auth(
            &location,
            registry.username.as_deref(),
            registry.password.as_deref(),
        ),
    };
    let audit = AuditFacts {
        actor: auth.actor(),
        env_id,
        image_id,
        image_name: req.image_name.clone(),
        registry: registry_label(&registry),
    };
    let meta = JobMeta {
        env_id: Some(env_id),
        actor: audit.actor.clone(),
        permission: PUSH_PERMISSION,
    };
    let job_state = state.clone();
    let job = state
        .jobs
        .start("push", meta, move |writer| async move {
            let job_id = writer.job().id();
            let started = Instant::now();
            let outcome = super::run(&client, &plan, &writer).await;
            let took = started.elapsed();
            audit.write(&job_state, &plan, &outcome, took).await;
            announce(&job_state, env_id, job_id, &plan, &outcome, took);
            let (status, event) = terminal_event(&outcome);
            writer.finish(status, &event);
        })
        .map_err(jobs_error)?;
    tracing::info!(job = %job.id(), env_id, "push started");

    if wants_event_stream(&headers) {
        let mut answer = event_stream(&job, 0);
        if let Ok(v) = job.id().to_string().parse() {
            answer.headers_mut().insert("x-job-id", v);
        }
        return Ok(answer);
    }
    if wants_json_only(&headers) {
        let end = job.wait().await;
        let value: Value = serde_json::from_str(&end.json).unwrap_or(Value::Null);
        let status = if value["status"] == "error" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        let mut answer = (status, Json(value)).into_response();
        if let Ok(v) = job.id().to_string().parse() {
            answer.headers_mut().insert("x-job-id", v);
        }
        return Ok(answer);
    }
    Ok(Json(json!({ "jobId": job.id() })).into_response())
}

/// The environment of the push: `?env=` or the hub's `local` one; checks
/// the permission before revealing whether it exists.
async fn resolve_env(state: &AppState, env: Option<&str>, auth: &Auth) -> Result<i64, ApiError> {
    let env_id = match env.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("env must be an environment id (an integer)"))?,
        None => {
            auth.require(PUSH_PERMISSION, None)?;
            match state.store.find_environment(LOCAL_ENV_NAME).await {
                Ok(env) => env.id,
                Err(StoreError::NotFound(_)) => return Err(ApiError::not_found(
                    "Environment not found: this hub has no \"local\" environment; pass ?env=ID",
                )),
                Err(e) => return Err(e.into()),
            }
        }
    };
    auth.require(PUSH_PERMISSION, Some(env_id))?;
    match state.store.get_environment(env_id).await {
        Ok(_) => Ok(env_id),
        Err(StoreError::NotFound(_)) => Err(ApiError::not_found("Environment not found")),
        Err(e) => Err(e.into()),
    }
}

fn wants_json_only(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"))
}

fn prepare_error(err: PrepareError) -> ApiError {
    match err {
        PrepareError::ImageNotFound => ApiError::not_found("Image not found"),
        PrepareError::InvalidImageId => ApiError::bad_request("Invalid image ID"),
        PrepareError::Tag(e) => ApiError::bad_request(e.to_string()),
        PrepareError::Env(e) => ApiError::from(e),
        PrepareError::Docker { status, message } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("Docker answered {status} to the image inspect: {message}"),
        ),
    }
}

fn jobs_error(err: JobsError) -> ApiError {
    ApiError::unavailable(err.to_string())
}

fn registry_label(registry: &Registry) -> String {
    format!("{} (id {})", registry.name, registry.id)
}

/// Tells the rest of the hub a push ended: a `push.finished` event for
/// dashboards and `/api/events`, and the Prometheus push counters.
fn announce(
    state: &AppState,
    env_id: i64,
    job_id: uuid::Uuid,
    plan: &PushPlan,
    outcome: &Result<super::Pushed, super::PushFailure>,
    took: Duration,
) {
    let target = plan.target.to_string();
    let (metric, detail) = match outcome {
        Ok(p) => (
            PushOutcome::Ok,
            json!({"jobId": job_id, "status": "ok", "targetTag": target, "digest": p.digest}),
        ),
        Err(f) => (
            if f.cancelled {
                PushOutcome::Cancelled
            } else {
                PushOutcome::Error
            },
            json!({"jobId": job_id, "status": "error", "targetTag": target, "error": f.message}),
        ),
    };
    state.metrics.push_finished(metric, took);
    state
        .events
        .publish(EventKind::PushFinished, env_id, detail);
}

/// What the audit row of a push records, besides its outcome.
struct AuditFacts {
    actor: String,
    env_id: i64,
    image_id: String,
    image_name: Option<String>,
    registry: String,
}

impl AuditFacts {
    async fn write(
        &self,
        state: &AppState,
        plan: &PushPlan,
        outcome: &Result<super::Pushed, super::PushFailure>,
        took: Duration,
    ) {
        let target = plan.target.to_string();
        let mut detail = json!({
            "environment": self.env_id,
            "imageId": self.image_id,
            "imageName": self.image_name.clone().unwrap_or_else(|| target.clone()),
            "targetTag": target,
            "registry": self.registry,
            "durationMs": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        });
        match outcome {
            Ok(p) => {
                detail["outcome"] = "done".into();
                detail["digest"] = p.digest.clone().into();
            }
            Err(f) => {
                detail["outcome"] = if f.cancelled { "cancelled" } else { "error" }.into();
                detail["error"] = f.message.clone().into();
            }
        }
        let target_obj = format!("environment:{}", self.env_id);
        state
            .audit(
                &self.actor,
                "image.push",
                Some(&target_obj),
                Some(&detail.to_string()),
            )
            .await;
    }
}
