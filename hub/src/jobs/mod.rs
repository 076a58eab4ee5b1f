//! Background jobs (image pushes today) and their event streams.
//!
//! A job is a task doing work plus a bounded log of JSON events describing
//! it, read by any number of clients: `GET /api/jobs/{id}` as JSON or as
//! Server-Sent Events that replay from a `Last-Event-ID` and then follow
//! live. This module owns the registry, the logs, event ids, retention and
//! cancellation, and (in [`api`]) how a job is read over HTTP; it knows
//! nothing of Docker or of what a push is.
//!
//! Everything is bounded (see [`JobLimits`]): jobs held, events and bytes
//! per job (with a coalescing policy that never loses a terminal event,
//! see [`log`]), readers per job. Readers have no queues to overflow: they
//! read the log at their own pace.
//!
//! # Layout
//! - [`log`]: the bounded event log and its eviction policy.
//! - [`job`]: one job, its writer and its subscriptions.
//! - [`registry`]: the [`Jobs`] registry, retention sweep, task ownership.
//! - [`api`]: `GET /api/jobs/{id}` as JSON or Server-Sent Events.

use std::time::Duration;

pub mod api;
pub mod job;
pub mod log;
pub mod registry;

pub use job::{Job, JobMeta, JobSnapshot, JobStatus, JobWriter, Subscription};
pub use log::JobEvent;
pub use registry::Jobs;

/// Limits of the job registry. The defaults suit a hub serving people.
#[derive(Debug, Clone)]
pub struct JobLimits {
    /// Jobs held at once, running and retained (default 1,000).
    pub max_jobs: usize,
    /// Events kept per job (default 10,000).
    pub max_lines: usize,
    /// Bytes of event JSON kept per job (default 4 MiB).
    pub max_bytes: usize,
    /// Concurrent readers per job (default 64).
    pub max_subscribers: usize,
    /// How long a job is kept after it ended (default 10 minutes).
    pub retention: Duration,
    /// How often expired jobs are swept (default 30 s).
    pub sweep_interval: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            max_jobs: 1_000,
            max_lines: 10_000,
            max_bytes: 4 * 1024 * 1024,
            max_subscribers: 64,
            retention: Duration::from_secs(600),
            sweep_interval: Duration::from_secs(30),
        }
    }
}

/// Why the registry refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobsError {
    /// Every slot holds a running job.
    #[error("Too many running jobs (limit {limit}); retry when one has finished")]
    Full {
        /// The job limit in force.
        limit: usize,
    },
    /// The job already has its maximum number of readers.
    #[error("Too many clients are following this job (limit {limit})")]
    TooManySubscribers {
        /// The reader limit in force.
        limit: usize,
    },
    /// The hub is shutting down and starts no new job.
    #[error("The hub is shutting down")]
    ShuttingDown,
}

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod tests;
