//! Telemetry the agent pushes to the hub on its own: host `metrics` frames
//! every interval and `container_event` frames as Docker reports them.
//!
//! [`Telemetry::run`] owns both loops (spawned on a `TaskTracker`, stopped
//! by the caller's `CancellationToken` or when the frame channel closes);
//! [`probe_capabilities`] says which of `metrics` / `events` really work on
//! this host, for the `hello` frame. This module only produces frames into
//! the channel it is given: it never touches the WebSocket, never blocks on
//! a congested link (bounded queues with a drop policy, see
//! `outbox` and [`metrics`]), and never advertises a
//! capability it could not exercise.
//!
//! # Layout
//! - [`metrics`]: [`HostSampler`] (`/proc` + statvfs) and the metrics loop.
//! - `procfs`: pure parsers of the `/proc` files.
//! - `events`: the Docker event stream loop (reconnect, resume, dedupe).
//! - `event_map`: Docker event JSON → `ContainerEvent`, the resume cursor.
//! - `outbox`: the bounded event queue in front of the link.
//! - `timefmt`: RFC 3339 from unix nanos (reconnect delays: [`crate::backoff`]).

use std::path::PathBuf;
use std::time::Duration;

use mooring_docker::{DockerClient, DockerError};
use mooring_protocol::Frame;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

mod event_map;
mod events;
pub mod metrics;
mod outbox;
mod procfs;
mod timefmt;

pub use event_map::{FORWARDED_ACTIONS, HEALTH_STATUS_ATTRIBUTE};
pub use metrics::HostSampler;

/// Default time between two `metrics` frames (Hawser: 30 s).
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(30);

/// Shortest metrics interval honoured; shorter ones are raised to it.
pub const MIN_METRICS_INTERVAL: Duration = Duration::from_millis(100);

/// What went wrong gathering telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A `/proc` file (or the disk's statvfs) could not be read or parsed.
    #[error("cannot read host metrics from {}: {reason} (is this Linux with /proc mounted?)", path.display())]
    Proc {
        /// The file or path concerned.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Docker could not be asked, or refused.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Docker's event stream broke or sent something unusable.
    #[error("Docker's event stream failed: {0}")]
    EventStream(String),
}

/// Knobs of the telemetry loops; [`Default`] is what the agent uses.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// Where the host's `/proc` is (default `/proc`; e.g. `/host/proc` for
    /// an agent in a container with the host's `/proc` mounted there).
    pub proc_root: PathBuf,
    /// Container events held while the link is congested (default 256);
    /// when full the oldest is dropped and counted.
    pub event_queue: usize,
    /// First reconnect delay of the event stream (default 1 s).
    pub reconnect_min: Duration,
    /// Longest reconnect delay (default 30 s).
    pub reconnect_max: Duration,
    /// A stream open this long resets the backoff when it ends (default 60 s).
    pub stable_after: Duration,
    /// A stream silent this long is reopened from the cursor (default 5 min).
    pub idle_recycle: Duration,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        TelemetryOptions {
            proc_root: PathBuf::from("/proc"),
            event_queue: 256,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            idle_recycle: Duration::from_secs(300),
        }
    }
}

/// Counters and state of the telemetry loops, for health and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryStatus {
    /// Metrics frames handed to the link.
    pub metrics_sent: u64,
    /// Metrics samples skipped because the link's channel was full.
    pub metrics_skipped: u64,
    /// Docker's event stream is open right now.
    pub events_connected: bool,
    /// Container event frames handed to the link.
    pub events_sent: u64,
    /// Container events dropped (oldest first) while the link was congested.
    pub events_dropped: u64,
    /// Reconnects of the event stream so far.
    pub events_reconnects: u64,
    /// Why the event stream last failed to open or broke, until it reopens.
    pub events_last_error: Option<String>,
}

/// The agent's telemetry: host metrics and container events.
#[derive(Debug)]
pub struct Telemetry {
    options: TelemetryOptions,
    status: watch::Sender<TelemetryStatus>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(TelemetryOptions::default())
    }
}

impl Telemetry {
    /// Telemetry with these options; nothing runs until [`Telemetry::run`].
    pub fn new(options: TelemetryOptions) -> Self {
        Telemetry {
            options,
            status: watch::Sender::new(TelemetryStatus::default()),
        }
    }

    /// A live view of the loops' state and counters.
    pub fn status(&self) -> watch::Receiver<TelemetryStatus> {
        self.status.subscribe()
    }

    /// The capabilities that work here, in Hawser's names: `metrics` when
    /// `/proc` can be sampled, `events` when Docker's event stream opens
    /// (opened, then dropped at once).
    pub async fn probe_capabilities(&self, docker: &DockerClient) -> Vec<&'static str> {
        let mut caps = Vec::new();
        match HostSampler::new(&self.options.proc_root) {
            Ok(_) => caps.push("metrics"),
            Err(err) => warn!(%err, "not offering the metrics capability"),
        }
        match events::open(docker, None).await {
            Ok(stream) => {
                drop(stream);
                caps.push("events");
            }
            Err(err) => warn!(%err, "not offering the events capability"),
        }
        caps
    }

    /// Runs the metrics loop (one frame every `interval`, at least
    /// [`MIN_METRICS_INTERVAL`]; the first after at most 1 s) and the event
    /// loop, sending frames into `out`, until `shutdown` is cancelled or
    /// `out` is closed; returns once both loops have stopped.
    ///
    /// The metrics loop runs only if `/proc` can be sampled (as
    /// [`Telemetry::probe_capabilities`] reports); the event loop always
    /// runs, and keeps reconnecting while Docker is down. Give it `out`
    /// for the agent's lifetime (not per hub connection) so events keep
    /// their order and resume point across link reconnects.
    pub async fn run(
        self,
        docker: DockerClient,
        out: mpsc::Sender<Frame>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let interval = interval.max(MIN_METRICS_INTERVAL);
        let stop = shutdown.child_token();
        // Dropping this future (instead of cancelling) still stops both loops.
        let _stop_on_drop = stop.clone().drop_guard();
        let tracker = TaskTracker::new();
        match HostSampler::new(&self.options.proc_root) {
            Ok(sampler) => {
                let task = metrics::run(
                    sampler,
                    docker.clone(),
                    out.clone(),
                    interval,
                    self.status.clone(),
                    stop.clone(),
                );
                spawn_linked(&tracker, &stop, tracing::info_span!("metrics"), task);
            }
            Err(err) => warn!(%err, "host metrics unavailable: sending container events only"),
        }
        let outbox = outbox::Outbox::new(out, self.options.event_queue, self.status.clone());
        let task = events::run(
            docker,
            outbox,
            self.options.clone(),
            self.status.clone(),
            stop.clone(),
        );
        spawn_linked(
            &tracker,
            &stop,
            tracing::info_span!("container_events"),
            task,
        );
        tracker.close();
        info!(?interval, "telemetry running");
        tracker.wait().await;
        info!("telemetry stopped");
    }
}

/// [`Telemetry::probe_capabilities`] with the default options.
pub async fn probe_capabilities(docker: &DockerClient) -> Vec<&'static str> {
    Telemetry::default().probe_capabilities(docker).await
}

/// Spawns one telemetry loop on `tracker`; when it ends, for any reason,
/// `stop` is cancelled so its sibling loop stops too.
fn spawn_linked(
    tracker: &TaskTracker,
    stop: &CancellationToken,
    span: tracing::Span,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let guard = stop.clone().drop_guard();
    tracker.spawn(
        async move {
            let _stop_all_on_exit = guard;
            task.await;
        }
        .instrument(span),
    );
}
