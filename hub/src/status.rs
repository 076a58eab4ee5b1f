//! Connectivity status of environments: what happens when an agent
//! connects, disconnects, is refused, or reports metrics and container
//! events, and the per-environment history of host metrics.
//!
//! The status an environment shows is assembled from three places:
//! - the live link ([`crate::link::LinkHandle`]): agent, connected-at,
//!   last-seen, ping round trip;
//! - the [`Monitor`] (memory): a bounded ring of metrics samples per
//!   environment ([`MAX_SAMPLES`], 24 h at 30 s) and the last sample;
//! - the store: disconnect reason and count, last-seen, last metrics, so
//!   an environment reads `offline` with the right facts after a restart.
//!   Last-seen is written at most every 30 s per link (and at its end).
//!
//! Each transition is published on [`crate::events::Events`] and counted
//! in [`crate::metrics::HubMetrics`].
//!
//! This module never holds a lock across an await, and never keeps more
//! than [`MAX_SAMPLES`] samples for more than `max_envs` environments.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use mooring_protocol::{ContainerEvent, HostMetrics, MetricsFrame};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::EventKind;
use crate::link::LinkHandle;
use crate::state::AppState;
use crate::store::now_secs;

/// Samples kept per environment: 24 h at one sample per 30 s.
pub const MAX_SAMPLES: usize = 2880;

/// Oldest sample kept, relative to the newest, in seconds.
pub const MAX_SAMPLE_AGE_SECS: i64 = 86_400;

/// Environments with a metrics history, at most (by default).
pub const MAX_ENVS: usize = 10_000;

/// How far in the future an agent's clock may be before the hub's
/// receive time is used instead.
const MAX_CLOCK_AHEAD_SECS: i64 = 300;

/// Why an agent link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DisconnectReason {
    /// The agent closed the connection, or it broke (TCP reset, write error).
    Closed,
    /// Nothing arrived (not even a pong) for the silence timeout.
    Timeout,
    /// A newer connection for the same environment took over.
    Replaced,
    /// The hub refused to keep the agent.
    Refused,
    /// The agent's token was revoked or expired.
    Revoked,
    /// The environment (or the token's row) was deleted.
    Deleted,
    /// The hub shut down.
    Shutdown,
}

impl DisconnectReason {
    /// The wire name (`closed`, `timeout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Closed => "closed",
            DisconnectReason::Timeout => "timeout",
            DisconnectReason::Replaced => "replaced",
            DisconnectReason::Refused => "refused",
            DisconnectReason::Revoked => "revoked",
            DisconnectReason::Deleted => "deleted",
            DisconnectReason::Shutdown => "shutdown",
        }
    }

    /// Classifies the text a link was closed with (see `link::session`,
    /// `link::endpoint`, the token and environment routes, `server`).
    pub fn classify(text: &str, hub_shutting_down: bool) -> DisconnectReason {
        let t = text.to_ascii_lowercase();
        // What the peer or the socket did comes first: an agent's own close
        // text may contain any word.
        if t.starts_with("agent closed the connection")
            || t.starts_with("connection to the agent broke")
            || t.starts_with("writing to the agent failed")
        {
            return if hub_shutting_down {
                DisconnectReason::Shutdown
            } else {
                DisconnectReason::Closed
            };
        }
        if t.contains("shutting down") {
            DisconnectReason::Shutdown
        } else if t.contains("silent") || t.contains("timeout") || t.contains("timed out") {
            DisconnectReason::Timeout
        } else if t.contains("replaced") {
            DisconnectReason::Replaced
        } else if t.contains("revoked") || t.contains("expired") {
            DisconnectReason::Revoked
        } else if t.contains("deleted") {
            DisconnectReason::Deleted
        } else if t.contains("refused") || t.contains("max-links") {
            DisconnectReason::Refused
        } else if hub_shutting_down {
            DisconnectReason::Shutdown
        } else {
            DisconnectReason::Closed
        }
    }
}

/// One metrics sample, as `GET /api/environments/{id}/metrics` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix seconds (the agent's clock when sane, else the hub's).
    pub timestamp: i64,
    /// The readings.
    #[serde(flatten)]
    pub metrics: HostMetrics,
}

#[derive(Debug)]
struct History {
    samples: VecDeque<Sample>,
    updated: Instant,
}

/// Per-environment metrics history. Bounded in samples per environment and
/// in environments (the least recently updated history is dropped first).
#[derive(Debug)]
pub struct Monitor {
    envs: Mutex<HashMap<i64, History>>,
    max_envs: usize,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor::new(MAX_ENVS)
    }
}

impl Monitor {
    /// A monitor keeping histories of at most `max_envs` environments.
    pub fn new(max_envs: usize) -> Monitor {
        Monitor {
            envs: Mutex::new(HashMap::new()),
            max_envs: max_envs.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i64, History>> {
        self.envs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a `metrics` frame of `env_id` received at `now` (unix s);
    /// returns the sample as stored.
    pub fn record(&self, env_id: i64, frame: &MetricsFrame, now: i64) -> Sample {
        let mut envs = self.lock();
        if !envs.contains_key(&env_id) && envs.len() >= self.max_envs {
            let oldest = envs
                .iter()
                .min_by_key(|(_, h)| h.updated)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                envs.remove(&id);
            }
        }
        let history = envs.entry(env_id).or_insert_with(|| History {
            samples: VecDeque::new(),
            updated: Instant::now(),
        });
        let sane = frame.timestamp > now - MAX_SAMPLE_AGE_SECS
            && frame.timestamp <= now + MAX_CLOCK_AHEAD_SECS;
        let mut timestamp = if sane { frame.timestamp } else { now };
        if let Some(last) = history.samples.back() {
            // Keep the ring ordered even if the agent's clock steps back.
            timestamp = timestamp.max(last.timestamp);
        }
        let sample = Sample {
            timestamp,
            metrics: frame.metrics.clone(),
        };
        if history.samples.len() >= MAX_SAMPLES {
            history.samples.pop_front();
        }
        history.samples.push_back(sample.clone());
        while history
            .samples
            .front()
            .is_some_and(|s| s.timestamp < timestamp - MAX_SAMPLE_AGE_SECS)
        {
            history.samples.pop_front();
        }
        history.updated = Instant::now();
        sample
    }

    /// The samples of `env_id`, oldest first.
    pub fn samples(&self, env_id: i64) -> Vec<Sample> {
        self.lock()
            .get(&env_id)
            .map(|h| h.samples.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest sample of `env_id`.
    pub fn last(&self, env_id: i64) -> Option<Sample> {
        self.lock()
            .get(&env_id)
            .and_then(|h| h.samples.back().cloned())
    }

    /// Forgets an environment's history (after it was deleted).
    pub fn forget(&self, env_id: i64) {
        self.lock().remove(&env_id);
    }

    /// Environments with a history.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No history at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An agent link was established (called once per link, after it is
/// registered and recorded in the store, which clears the stored
/// disconnect reason): publishes `agent.connected`.
pub(crate) async fn on_connect(state: &AppState, link: &LinkHandle) {
    let agent = link.agent();
    state.metrics.agent_connected();
    state.events.publish(
        EventKind::AgentConnected,
        link.env_id(),
        json!({
            "agentId": agent.id,
            "agentName": agent.name,
            "version": agent.version,
            "hostname": agent.hostname,
            "dockerVersion": agent.docker_version,
        }),
    );
}

/// An agent link ended with `text` (called once per link, after it was
/// closed): records reason, count, last-seen and last metrics in the
/// store, unregisters the link (if it is still the environment's), then
/// counts and publishes `agent.disconnected`. In that order, so whoever
/// sees the environment offline also sees why.
pub(crate) async fn on_disconnect(state: &AppState, link: &LinkHandle, text: &str) {
    let env_id = link.env_id();
    let reason = DisconnectReason::classify(text, state.shutdown.is_cancelled());
    let env_gone =
        reason == DisconnectReason::Deleted && state.store.get_environment(env_id).await.is_err();
    if env_gone {
        state.monitor.forget(env_id);
    } else {
        let last = state
            .monitor
            .last(env_id)
            .and_then(|s| serde_json::to_string(&s).ok());
        let recorded = state
            .store
            .record_disconnect(
                env_id,
                reason.as_str(),
                now_secs(),
                link.last_seen_ms() / 1000,
                last.as_deref(),
            )
            .await;
        if let Err(err) = recorded {
            tracing::warn!(%err, "could not record the disconnect in the store");
        }
    }
    state.links.disconnect_if(env_id, link.conn_id(), text);
    state.metrics.agent_disconnected(reason.as_str());
    let agent = link.agent();
    state.events.publish(
        EventKind::AgentDisconnected,
        env_id,
        json!({
            "agentId": agent.id,
            "agentName": agent.name,
            "reason": reason.as_str(),
            "message": text,
        }),
    );
}

/// A second agent was refused for `env_id` while `live` holds the link.
pub(crate) fn on_conflict(
    state: &AppState,
    env_id: i64,
    agent_id: &str,
    agent_name: &str,
    live: &LinkHandle,
) {
    state.events.publish(
        EventKind::AgentConflict,
        env_id,
        json!({
            "agentId": agent_id,
            "agentName": agent_name,
            "liveAgentId": live.agent().id,
            "liveAgentName": live.agent().name,
        }),
    );
}

/// A `metrics` frame arrived on `link`.
pub(crate) fn on_metrics(state: &AppState, link: &LinkHandle, frame: &MetricsFrame) {
    let sample = state.monitor.record(link.env_id(), frame, now_secs());
    match serde_json::to_value(&sample) {
        Ok(detail) => {
            state
                .events
                .publish(EventKind::Metrics, link.env_id(), detail);
        }
        Err(err) => tracing::warn!(%err, "metrics sample not serialisable (NaN?)"),
    }
}

/// A `container_event` frame arrived on `link`.
pub(crate) fn on_container_event(state: &AppState, link: &LinkHandle, event: &ContainerEvent) {
    match serde_json::to_value(event) {
        Ok(detail) => {
            state
                .events
                .publish(EventKind::Container, link.env_id(), detail);
        }
        Err(err) => tracing::warn!(%err, "container event not serialisable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts: i64, cpu: f64) -> MetricsFrame {
        MetricsFrame {
            timestamp: ts,
            metrics: HostMetrics {
                cpu_usage: cpu,
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_ring_is_bounded_ordered_and_aged() {
        let m = Monitor::new(10);
        let now = 1_000_000;
        for i in 0..(MAX_SAMPLES as i64 + 10) {
            m.record(1, &frame(now - 80_000 + i * 25, i as f64), now);
        }
        let s = m.samples(1);
        assert_eq!(s.len(), MAX_SAMPLES);
        assert!(s.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert_eq!(
            m.last(1).unwrap().metrics.cpu_usage,
            (MAX_SAMPLES + 9) as f64
        );
        // An agent clock far in the future or past: the hub's time is used.
        let m = Monitor::new(10);
        assert_eq!(m.record(2, &frame(now + 10_000, 1.0), now).timestamp, now);
        assert_eq!(m.record(2, &frame(0, 1.0), now).timestamp, now);
        // Stepping back never reorders the ring.
        assert_eq!(m.record(2, &frame(now - 100, 1.0), now).timestamp, now);
        // Samples older than 24 h before the newest go.
        let m = Monitor::new(10);
        m.record(3, &frame(now - 86_300, 1.0), now);
        m.record(3, &frame(now + 200, 1.0), now + 500);
        assert_eq!(m.samples(3).len(), 1);
    }

    #[test]
    fn environments_are_bounded() {
        let m = Monitor::new(2);
        m.record(1, &frame(100, 1.0), 100);
        m.record(2, &frame(100, 1.0), 100);
        m.record(1, &frame(130, 1.0), 130);
        m.record(3, &frame(130, 1.0), 130);
        assert_eq!(m.len(), 2);
        assert!(m.samples(2).is_empty(), "the least recently updated went");
        assert_eq!(m.samples(1).len(), 2);
    }

    #[test]
    fn samples_serialise_flat() {
        let s = Sample {
            timestamp: 5,
            metrics: HostMetrics {
                cpu_usage: 12.5,
                memory_total: 10,
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["timestamp"], 5);
        assert_eq!(v["cpuUsage"], 12.5);
        assert_eq!(v["memoryTotal"], 10);
        assert!(v.get("networkRxBytes").is_some() && v.get("uptime").is_some());
    }

    #[test]
    fn every_close_text_of_the_hub_has_a_reason() {
        use DisconnectReason::*;
        let cases = [
            ("agent closed the connection", Closed),
            ("agent closed the connection (1000: bye)", Closed),
            (
                "agent closed the connection (1001: heartbeat timeout)",
                Closed,
            ),
            ("connection to the agent broke: reset", Closed),
            ("writing to the agent failed: broken pipe", Closed),
            (
                "agent silent for 91s (no frame, no pong): link presumed dead",
                Timeout,
            ),
            ("Connection replaced by new agent", Replaced),
            (
                "Connection replaced by agent \"x\" (this link did not answer a probe)",
                Replaced,
            ),
            ("Token revoked", Revoked),
            ("Token expired", Revoked),
            ("Environment deleted", Deleted),
            ("Environment or token deleted", Deleted),
            ("Hub shutting down", Shutdown),
        ];
        for (text, want) in cases {
            assert_eq!(DisconnectReason::classify(text, false), want, "{text}");
        }
        assert_eq!(DisconnectReason::classify("link closed", true), Shutdown);
        assert_eq!(DisconnectReason::classify("link closed", false), Closed);
    }
}
