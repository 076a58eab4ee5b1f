//! One job: its event log, its state, its cancellation, and the two kinds of
//! handle on it: the single [`JobWriter`] owned by the task doing the work,
//! and any number of [`Subscription`]s reading it (bounded per job).
//!
//! Readers never get a queue: each keeps a cursor (the last event id it
//! saw) and reads the next event from the log, waiting on a `watch`
//! channel when it has caught up. A slow reader therefore cannot lose
//! events to a full buffer nor make the writer wait; it can only see fewer
//! progress ticks if the log had to coalesce them (see [`super::log`]).
//!
//! A job ends exactly once, with a terminal event. Dropping the writer
//! without ending the job (a panic, an aborted task) ends it in error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::log::{EventLog, JobEvent};
use super::{JobLimits, JobsError};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Still working.
    Running,
    /// Ended with success.
    Done,
    /// Ended with failure (including cancellation).
    Error,
}

/// Who started a job and where it acts: used to decide who may cancel it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobMeta {
    /// The environment the job acts on.
    pub env_id: Option<i64>,
    /// Who started it (audit actor string).
    pub actor: String,
    /// The permission that allowed starting it; holding it (or
    /// `jobs:cancel`) on the job's environment allows cancelling it.
    pub permission: &'static str,
}

/// What a finished job's JSON answer and a running one's have in common.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    /// The job id.
    pub id: Uuid,
    /// What the job does (`"push"`).
    pub kind: &'static str,
    /// Current status.
    pub status: JobStatus,
    /// Stored events, oldest first (terminal one included).
    pub lines: Vec<JobEvent>,
    /// The terminal event, once the job ended.
    pub result: Option<JobEvent>,
    /// Events evicted from the bounded log.
    pub dropped: u64,
    /// When the job was created (wall clock).
    pub created: SystemTime,
}

#[derive(Debug)]
struct State {
    log: EventLog,
    status: JobStatus,
    result: Option<JobEvent>,
    ended_at: Option<Instant>,
}

/// A job as the registry holds it. Read it through [`Job::subscribe`] and
/// [`Job::snapshot`]; only its [`JobWriter`] changes it.
#[derive(Debug)]
pub struct Job {
    id: Uuid,
    kind: &'static str,
    meta: JobMeta,
    created: SystemTime,
    state: Mutex<State>,
    /// Bumped (to the last event id) on every append and at the end.
    changed: watch::Sender<u64>,
    cancel: CancellationToken,
    user_cancelled: std::sync::atomic::AtomicBool,
    subscribers: AtomicUsize,
    max_subscribers: usize,
}

impl Job {
    pub(crate) fn new(
        kind: &'static str,
        meta: JobMeta,
        limits: &JobLimits,
        cancel: CancellationToken,
    ) -> Arc<Job> {
        let (changed, _) = watch::channel(0);
        Arc::new(Job {
            id: Uuid::new_v4(),
            kind,
            meta,
            created: SystemTime::now(),
            state: Mutex::new(State {
                log: EventLog::new(limits),
                status: JobStatus::Running,
                result: None,
                ended_at: None,
            }),
            changed,
            cancel,
            user_cancelled: std::sync::atomic::AtomicBool::new(false),
            subscribers: AtomicUsize::new(0),
            max_subscribers: limits.max_subscribers.max(1),
        })
    }

    /// The job id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// What the job does (`"push"`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Who started the job and where it acts.
    pub fn meta(&self) -> &JobMeta {
        &self.meta
    }

    /// Current status.
    pub fn status(&self) -> JobStatus {
        self.lock().status
    }

    /// When the job ended, if it has.
    pub(crate) fn ended_at(&self) -> Option<Instant> {
        self.lock().ended_at
    }

    /// Asks the work to stop (a `DELETE`). Returns false if it already ended.
    pub fn cancel(&self) -> bool {
        if self.status() != JobStatus::Running {
            return false;
        }
        self.user_cancelled.store(true, Ordering::SeqCst);
        self.cancel.cancel();
        true
    }

    /// The terminal event once the job has ended; waits for it otherwise.
    pub async fn wait(&self) -> JobEvent {
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(result) = self.lock().result.clone() {
                return result;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`: unreachable while we hold it,
                // but never spin if it were.
                std::future::pending::<()>().await;
            }
        }
    }

    /// A reader that will see every stored event with an id above `after`,
    /// then follow live until the terminal event.
    ///
    /// Fails when the job already has its maximum number of readers.
    pub fn subscribe(self: &Arc<Self>, after: u64) -> Result<Subscription, JobsError> {
        let taken = self
            .subscribers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_subscribers).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(JobsError::TooManySubscribers {
                limit: self.max_subscribers,
            });
        }
        Ok(Subscription {
            rx: self.changed.subscribe(),
            job: self.clone(),
            cursor: after,
        })
    }

    /// A consistent copy of the job's state and stored events.
    pub fn snapshot(&self) -> JobSnapshot {
        let state = self.lock();
        JobSnapshot {
            id: self.id,
            kind: self.kind,
            status: state.status,
            lines: state.log.all(),
            result: state.result.clone(),
            dropped: state.log.dropped(),
            created: self.created,
        }
    }

    /// The id of the last event appended (0 when none).
    pub fn last_event_id(&self) -> u64 {
        self.lock().log.last_id()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the log inconsistent
        // in a way readers care about: keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, value: &Value, end: Option<JobStatus>) -> bool {
        let id = {
            let mut state = self.lock();
            if state.status != JobStatus::Running {
                return false;
            }
            let id = state.log.append(value, end.is_some());
            if let Some(status) = end {
                state.status = status;
                state.result = state.log.next_after(id - 1);
                state.ended_at = Some(Instant::now());
            }
            id
        };
        self.changed.send_replace(id);
        true
    }
}

/// The one handle allowed to add events to a job and end it.
///
/// Dropping it while the job still runs ends the job with an error event,
/// so a job never stays `running` without a worker.
#[derive(Debug)]
pub struct JobWriter {
    job: Arc<Job>,
}

impl JobWriter {
    pub(crate) fn new(job: Arc<Job>) -> Self {
        JobWriter { job }
    }

    /// The job this writer feeds.
    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// Adds a non-terminal event. Ignored once the job has ended.
    pub fn emit(&self, event: &Value) {
        self.job.append(event, None);
    }

    /// Ends the job with `status` (`Done` or `Error`) and its terminal event.
    /// The first end wins; later calls are ignored.
    pub fn finish(&self, status: JobStatus, event: &Value) {
        let status = match status {
            JobStatus::Running => JobStatus::Error,
            other => other,
        };
        self.job.append(event, Some(status));
    }

    /// Resolves when the job is cancelled (by `DELETE` or hub shutdown).
    pub async fn cancelled(&self) {
        self.job.cancel.cancelled().await;
    }

    /// The job's cancellation token, for `select!` in the work.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.job.cancel
    }

    /// Why the job was cancelled, as words to follow a subject
    /// (`"cancelled by request"`).
    pub fn cancel_reason(&self) -> &'static str {
        if self.job.user_cancelled.load(Ordering::SeqCst) {
            "cancelled by request"
        } else {
            "cancelled: the hub is shutting down"
        }
    }
}

impl Drop for JobWriter {
    fn drop(&mut self) {
        self.job.append(
            &json!({"status": "error", "error": "The job stopped unexpectedly"}),
            Some(JobStatus::Error),
        );
    }
}

/// A reader of one job's events: replay from a cursor, then live.
#[derive(Debug)]
pub struct Subscription {
    job: Arc<Job>,
    rx: watch::Receiver<u64>,
    cursor: u64,
}

impl Subscription {
    /// The next event after the cursor; `None` once the terminal event has
    /// been returned (or had been passed before subscribing).
    pub async fn next(&mut self) -> Option<JobEvent> {
        loop {
            self.rx.borrow_and_update();
            {
                let state = self.job.lock();
                if let Some(event) = state.log.next_after(self.cursor) {
                    self.cursor = event.id;
                    return Some(event);
                }
                if state.status != JobStatus::Running {
                    return None;
                }
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The id of the last event returned (or the starting cursor).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The job read.
    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.job.subscribers.fetch_sub(1, Ordering::SeqCst);
    }
}
