//! One client interface for every environment, local or edge.
//!
//! The rest of the hub (push jobs, passthrough, status probes) talks to a
//! Docker Engine only through [`EnvClient`]: `request` for one whole answer,
//! `stream` for a chunked one. A `local` environment is the hub host's own
//! socket; an `edge` environment is a live agent link. Timeouts are idle
//! timeouts that reset on every chunk. Dropping a [`DockerStream`] cancels
//! the Docker request (for edge: a `stream_end` "cancelled" to the agent).
//!
//! This module never parses what Docker says: callers do.

use std::time::Duration;

use bytes::Bytes;
use mooring_protocol::Headers;

/// One Docker Engine API call.
#[derive(Debug, Clone)]
pub struct DockerCall {
    /// HTTP method.
    pub method: http::Method,
    /// API path with query, without a version prefix (`/images/json`).
    pub path: String,
    /// Extra headers (`X-Registry-Auth`, `Content-Type`).
    pub headers: Headers,
    /// Raw request body, if any.
    pub body: Option<Bytes>,
}

/// A whole Docker answer.
#[derive(Debug, Clone)]
pub struct DockerResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, first value of each.
    pub headers: Headers,
    /// Body bytes.
    pub body: Bytes,
}

/// Why a call to an environment failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnvError {
    /// No agent is connected for this edge environment.
    #[error("Edge agent not connected")]
    NotConnected,
    /// The agent link dropped while the call was in flight.
    #[error("Edge agent disconnected: {0}")]
    Disconnected(String),
    /// Nothing arrived for the idle timeout.
    #[error("no answer from Docker for {0:?}")]
    Timeout(Duration),
    /// Docker (or the agent on its behalf) reported a failure.
    #[error("Docker error: {0}")]
    Docker(String),
    /// The call was cancelled.
    #[error("cancelled")]
    Cancelled,
}
