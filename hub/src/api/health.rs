//! `GET /api/health`: liveness, without authentication.

use axum::routing::get;
use axum::{Json, Router};

use crate::state::{AppState, HUB_VERSION};

/// The health route.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/health",
        get(|| async { Json(serde_json::json!({"status": "ok", "version": HUB_VERSION})) }),
    )
}
