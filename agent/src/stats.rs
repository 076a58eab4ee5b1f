//! Live counters of the agent: link state and in-flight work, shared by the
//! link, the relay, the health server and [`crate::AgentHandle`].
//!
//! Gauges are moved by RAII guards ([`Gauge`]) held by the code that owns
//! the resource, so a count cannot drift from reality when a task is
//! cancelled. This module only counts; it never decides anything.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The counters; one per agent process.
#[derive(Debug, Default)]
pub struct Stats {
    /// A welcomed link to the hub is up.
    pub(crate) connected: AtomicBool,
    /// Links that reached `welcome`.
    pub(crate) links_welcomed: AtomicU64,
    /// Connection attempts made.
    pub(crate) dial_attempts: AtomicU64,
    /// Requests whose task is running.
    pub(crate) in_flight: AtomicUsize,
    /// Docker responses (connections to the daemon) held open by the relay.
    pub(crate) open_docker_responses: AtomicUsize,
    /// Requests started since start.
    pub(crate) requests_total: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// A welcomed link to the hub is up.
    pub connected: bool,
    /// Links that reached `welcome` since start.
    pub links_welcomed: u64,
    /// Connection attempts since start.
    pub dial_attempts: u64,
    /// Docker requests in flight.
    pub in_flight: usize,
    /// Docker responses the relay holds open (each one a daemon connection).
    pub open_docker_responses: usize,
    /// Requests started since start.
    pub requests_total: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            links_welcomed: self.links_welcomed.load(Ordering::Relaxed),
            dial_attempts: self.dial_attempts.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            open_docker_responses: self.open_docker_responses.load(Ordering::Relaxed),
            requests_total: self.requests_total.load(Ordering::Relaxed),
        }
    }
}

/// Which gauge a [`Gauge`] guard holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    /// [`Stats::in_flight`].
    InFlight,
    /// [`Stats::open_docker_responses`].
    OpenDocker,
}

/// Holds one unit of a gauge; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct Gauge {
    stats: Arc<Stats>,
    which: Which,
}

impl Gauge {
    /// Adds one to a gauge until the guard is dropped.
    pub(crate) fn inc(stats: &Arc<Stats>, which: Which) -> Self {
        stats.gauge(which).fetch_add(1, Ordering::Relaxed);
        Gauge {
            stats: stats.clone(),
            which,
        }
    }
}

impl Stats {
    fn gauge(&self, which: Which) -> &AtomicUsize {
        match which {
            Which::InFlight => &self.in_flight,
            Which::OpenDocker => &self.open_docker_responses,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.stats.gauge(self.which).fetch_sub(1, Ordering::Relaxed);
    }
}
