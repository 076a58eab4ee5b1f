//! Pushing an image from an environment to a registry, as a job.
//!
//! The path of one push: the API validates the request and resolves the
//! environment and registry; [`prepare`] checks the image and finds its tag;
//! [`target_tag`] computes the reference; [`registry_auth`] builds the
//! header; [`run`] tags and pushes through [`DockerOps`] while the job's
//! writer records every event; [`terminal_event`] ends the job.
//!
//! This module owns the push rules (names, auth header, messages, reading
//! Docker's progress) and nothing about HTTP routing, storage or transport.
//! It must never report success without Docker's digest, and never let
//! the registry password reach a log, an event or an error.
//!
//! # Layout
//! - [`target`]: the pure tag function and registry URL parsing.
//! - [`auth`]: the `X-Registry-Auth` header.
//! - [`message`]: user-facing error sentences.
//! - [`progress`]: the progress stream parser.
//! - [`ops`]: the [`DockerOps`] trait the push runs over.
//! - [`run`]: prepare, execute, terminal event.
//! - [`api`]: `POST /api/images/push`.

pub mod api;
pub mod auth;
pub mod message;
pub mod ops;
pub mod progress;
pub mod run;
pub mod target;

pub use auth::registry_auth;
pub use message::format_error;
pub use ops::{ChunkStream, DockerOps};
pub use run::{
    encode_component, execute, prepare, terminal_event, PrepareError, PushFailure, PushPlan, Pushed,
};
pub use target::{target_tag, PushTarget, RegistryLocation, TagError};

use crate::jobs::JobWriter;

/// Runs the push of `plan` for the job of `writer`: every progress event
/// goes to the job, cancellation comes from it. Returns the outcome without
/// ending the job, so the caller can record it (audit) first and then call
/// `writer.finish` with [`terminal_event`].
pub async fn run<D: DockerOps>(
    docker: &D,
    plan: &PushPlan,
    writer: &JobWriter,
) -> Result<Pushed, PushFailure> {
    let outcome = execute(docker, plan, writer.cancel_token(), |event| {
        writer.emit(event)
    })
    .await;
    match &outcome {
        Ok(p) => tracing::info!(target = %p.target, digest = %p.digest, "push complete"),
        Err(f) => tracing::warn!(target = %plan.target, error = %f.message, "push failed"),
    }
    outcome.map_err(|mut failure| {
        if failure.cancelled && writer.cancel_token().is_cancelled() {
            failure.message = format!("Push {}", writer.cancel_reason());
        }
        failure
    })
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
