//! The registry of jobs: creation under a count limit, lookup, retention
//! after the end, and the task that does each job's work.
//!
//! At most [`JobLimits::max_jobs`] jobs exist at once. A new job first
//! makes room by forgetting expired jobs, then the job that ended longest
//! ago; when every job is still running the new one is refused
//! ([`JobsError::Full`]). A job is forgotten [`JobLimits::retention`] after
//! it ended, by a periodic sweep (and lazily on lookup).
//!
//! Every job's work runs on the registry's `TaskTracker` with a child of its
//! root `CancellationToken`: [`Jobs::shutdown`] cancels them all and waits.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::job::{Job, JobMeta, JobStatus, JobWriter};
use super::{JobLimits, JobsError};

/// The hub's jobs. Cheap to clone: all clones share one registry.
#[derive(Debug, Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: Mutex<HashMap<Uuid, Arc<Job>>>,
    limits: JobLimits,
    root: CancellationToken,
    tracker: TaskTracker,
}

impl Jobs {
    /// An empty registry whose jobs stop when `shutdown` is cancelled.
    pub fn new(limits: JobLimits, shutdown: CancellationToken) -> Jobs {
        Self::with_tracker(limits, shutdown, TaskTracker::new())
    }

    /// Like [`Jobs::new`], running job tasks on `tracker` (the hub's, so
    /// its drain waits for them).
    pub fn with_tracker(
        limits: JobLimits,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                jobs: Mutex::new(HashMap::new()),
                limits,
                root: shutdown,
                tracker,
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &JobLimits {
        &self.inner.limits
    }

    /// Creates a job of `kind` and runs `work` with its writer on the
    /// registry's tracker. Fails when the registry is full of running jobs
    /// or shutting down.
    pub fn start<F, Fut>(
        &self,
        kind: &'static str,
        meta: JobMeta,
        work: F,
    ) -> Result<Arc<Job>, JobsError>
    where
        F: FnOnce(JobWriter) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.inner.root.is_cancelled() || self.inner.tracker.is_closed() {
            return Err(JobsError::ShuttingDown);
        }
        let job = Job::new(
            kind,
            meta,
            &self.inner.limits,
            self.inner.root.child_token(),
        );
        {
            let mut jobs = self.lock();
            self.make_room(&mut jobs)?;
            jobs.insert(job.id(), job.clone());
        }
        let fut = work(JobWriter::new(job.clone()));
        self.inner.tracker.spawn(fut);
        Ok(job)
    }

    /// The job with this id, unless unknown or expired.
    pub fn get(&self, id: Uuid) -> Option<Arc<Job>> {
        let mut jobs = self.lock();
        let job = jobs.get(&id)?.clone();
        if self.expired(&job, Instant::now()) {
            jobs.remove(&id);
            return None;
        }
        Some(job)
    }

    /// Number of jobs held (running and retained).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no job is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every job that ended more than the retention ago; returns how
    /// many were forgotten.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut jobs = self.lock();
        let before = jobs.len();
        jobs.retain(|_, job| !self.expired(job, now));
        before - jobs.len()
    }

    /// Runs [`Jobs::sweep`] every [`JobLimits::sweep_interval`] on the
    /// registry's tracker until shutdown.
    pub fn spawn_sweeper(&self) {
        let jobs = self.clone();
        let stop = self.inner.root.clone();
        let every = self.inner.limits.sweep_interval;
        self.inner.tracker.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let gone = jobs.sweep();
                        if gone > 0 {
                            tracing::debug!(gone, "forgot expired jobs");
                        }
                    }
                }
            }
        });
    }

    /// Cancels every job and the sweeper, and waits for their tasks to end.
    pub async fn shutdown(&self) {
        self.inner.root.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Job>>> {
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, job: &Job, now: Instant) -> bool {
        job.ended_at()
            .is_some_and(|end| now.saturating_duration_since(end) >= self.inner.limits.retention)
    }

    fn make_room(&self, jobs: &mut HashMap<Uuid, Arc<Job>>) -> Result<(), JobsError> {
        let max = self.inner.limits.max_jobs.max(1);
        if jobs.len() < max {
            return Ok(());
        }
        let now = Instant::now();
        jobs.retain(|_, job| !self.expired(job, now));
        while jobs.len() >= max {
            let oldest_ended = jobs
                .values()
                .filter(|j| j.status() != JobStatus::Running)
                .filter_map(|j| j.ended_at().map(|t| (t, j.id())))
                .min();
            match oldest_ended {
                Some((_, id)) => {
                    jobs.remove(&id);
                }
                None => return Err(JobsError::Full { limit: max }),
            }
        }
        Ok(())
    }
}
