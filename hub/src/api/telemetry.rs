//! `GET /api/environments/{id}/metrics`: the environment's host metrics
//! history, `{"samples":[{timestamp, cpuUsage, cpuCores, memoryTotal,
//! memoryUsed, memoryFree, diskTotal, diskUsed, diskFree, networkRxBytes,
//! networkTxBytes, uptime}]}`, oldest first, at most 24 h
//! ([`crate::status::MAX_SAMPLES`]). Needs `environments:read` on it.
//!
//! The history lives in memory: after a hub restart it starts empty (the
//! environment's `lastMetrics` is kept in the store).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, IdPath};
use crate::auth::Auth;
use crate::state::AppState;

/// Metrics-history route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/environments/{id}/metrics", get(history))
}

async fn history(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Value>, ApiError> {
    auth.require("environments:read", Some(id))?;
    state.store.get_environment(id).await?;
    Ok(Json(json!({ "samples": state.monitor.samples(id) })))
}
