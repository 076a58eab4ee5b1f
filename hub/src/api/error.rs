//! The one error type of the HTTP API: `{"error": "…"}` with a status.
//!
//! 4xx answers are expected conditions and are not logged as errors; 5xx
//! are logged in full and answered with a short text. Nothing here ever
//! puts a secret in a message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::envs::EnvError;
use crate::store::StoreError;

/// An API failure: a status and a message for the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// Any status with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no or bad credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403 "Permission denied".
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Permission denied")
    }

    /// 404: the object does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: conflicts with the current state (name taken, …).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 503: a dependency (agent, Docker) is not available right now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: logged in full, answered with a short text.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error: see the hub log",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The client-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(msg) => ApiError::conflict(msg),
            StoreError::Invalid(msg) => ApiError::bad_request(msg),
            other => ApiError::internal(other),
        }
    }
}

impl From<EnvError> for ApiError {
    fn from(err: EnvError) -> Self {
        let status = match &err {
            EnvError::NotConnected | EnvError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            EnvError::Disconnected(_) | EnvError::Docker(_) => StatusCode::BAD_GATEWAY,
            EnvError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            EnvError::Invalid(_) => StatusCode::BAD_REQUEST,
            EnvError::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, err.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rej: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::new(
            rej.status(),
            format!("Invalid JSON body: {}", rej.body_text()),
        )
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rej: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request(format!("Invalid path: {}", rej.body_text()))
    }
}
