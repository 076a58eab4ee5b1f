//! The hub's live event bus: agent connects and disconnects, conflicts,
//! container events, finished pushes and host metrics, numbered and fanned
//! out to every subscriber (the dashboard's `GET /api/events`).
//!
//! Every event gets the next sequence number (`seq`, starting at 1, never
//! reused within a process). Events other than `metrics` are also kept in a
//! bounded list of recent events ([`RECENT_EVENTS`]), from which a client
//! catches up (`?since=SEQ`, SSE `Last-Event-ID`). `metrics` events are only
//! broadcast: their history is the per-environment ring buffer of
//! [`crate::status`].
//!
//! # Slow subscribers
//! The broadcast channel holds [`BROADCAST_CAPACITY`] events. A subscriber
//! that falls further behind does not slow anyone down: it is told it
//! lagged, re-reads what it missed from the recent list
//! ([`Events::since`]), and when even the recent list no longer reaches
//! back far enough, it is told so with a gap marker ([`Replay::gap`]).
//!
//! This module never blocks a publisher: publishing is a short lock, a
//! push onto a bounded queue and a non-blocking broadcast.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept for catching up.
pub const RECENT_EVENTS: usize = 1000;

/// Events buffered per live subscriber before it counts as lagging.
pub const BROADCAST_CAPACITY: usize = 256;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    /// An agent completed the handshake: `{agentId, agentName, version, hostname}`.
    #[serde(rename = "agent.connected")]
    AgentConnected,
    /// An agent link ended: `{agentId, agentName, reason}`.
    #[serde(rename = "agent.disconnected")]
    AgentDisconnected,
    /// A second agent was refused: `{agentId, agentName, liveAgentId, liveAgentName}`.
    #[serde(rename = "agent.conflict")]
    AgentConflict,
    /// A Docker container event relayed by the agent (its `container_event` fields).
    #[serde(rename = "container")]
    Container,
    /// A push job ended: `{jobId, status: ok|error, targetTag, error?}`.
    #[serde(rename = "push.finished")]
    PushFinished,
    /// Host metrics from the agent (the `metrics` object plus `timestamp`).
    #[serde(rename = "metrics")]
    Metrics,
}

impl EventKind {
    /// The wire name (`agent.connected`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AgentConnected => "agent.connected",
            EventKind::AgentDisconnected => "agent.disconnected",
            EventKind::AgentConflict => "agent.conflict",
            EventKind::Container => "container",
            EventKind::PushFinished => "push.finished",
            EventKind::Metrics => "metrics",
        }
    }

    /// Whether events of this kind are kept in the recent list.
    pub fn is_kept(self) -> bool {
        self != EventKind::Metrics
    }
}

/// One event, as sent to clients.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubEvent {
    /// Sequence number, increasing by one per event.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The environment concerned.
    pub env_id: i64,
    /// When the hub saw it (RFC 3339 UTC).
    pub time: String,
    /// Kind-specific fields.
    pub detail: Value,
}

/// What a catching-up reader gets from the recent list.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Kept events after the asked sequence number, oldest first.
    pub events: Vec<Arc<HubEvent>>,
    /// Set when events after the asked sequence number have already left
    /// the recent list: `(first lost, last lost)` sequence numbers.
    pub gap: Option<(u64, u64)>,
}

struct Inner {
    next_seq: u64,
    recent: VecDeque<Arc<HubEvent>>,
    /// Highest sequence number evicted from `recent` (0: none yet).
    evicted_up_to: u64,
    capacity: usize,
}

/// The event bus. Cheap to clone; all clones are the same bus.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Arc<HubEvent>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::new(RECENT_EVENTS, BROADCAST_CAPACITY)
    }
}

impl Events {
    /// A bus keeping `recent` events, buffering `broadcast` per subscriber.
    pub fn new(recent: usize, broadcast: usize) -> Events {
        let (tx, _) = broadcast::channel(broadcast.max(1));
        Events {
            inner: Arc::new(Mutex::new(Inner {
                next_seq: 1,
                recent: VecDeque::new(),
                evicted_up_to: 0,
                capacity: recent.max(1),
            })),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes an event about environment `env_id`; returns its sequence
    /// number. Never blocks and never fails (no subscriber is fine).
    pub fn publish(&self, kind: EventKind, env_id: i64, detail: Value) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let event = Arc::new(HubEvent {
            seq,
            kind,
            env_id,
            time: rfc3339_now(),
            detail,
        });
        if kind.is_kept() {
            if inner.recent.len() >= inner.capacity {
                if let Some(old) = inner.recent.pop_front() {
                    inner.evicted_up_to = old.seq;
                }
            }
            inner.recent.push_back(event.clone());
        }
        // Sent under the lock so that subscribers see the same order as the
        // recent list. `send` only fails when nobody listens.
        let _ = self.tx.send(event);
        seq
    }

    /// A live subscription. Subscribe *before* reading [`Events::since`]
    /// and skip duplicates by `seq`, so nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<HubEvent>> {
        self.tx.subscribe()
    }

    /// Kept events with a sequence number above `after`, oldest first, and
    /// whether some were already evicted.
    pub fn since(&self, after: u64) -> Replay {
        let inner = self.lock();
        let events: Vec<Arc<HubEvent>> = inner
            .recent
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        let gap = (inner.evicted_up_to > after).then_some((after + 1, inner.evicted_up_to));
        Replay { events, gap }
    }

    /// Sequence number of the newest event (0 when none yet).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Live subscribers right now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn rfc3339_now() -> String {
    let ms = crate::link::now_ms();
    let secs = ms.div_euclid(1000);
    let base = crate::api::rfc3339(secs);
    // `…Z` → `….mmmZ`
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_numbered_kept_and_serialised() {
        let bus = Events::new(3, 8);
        let mut rx = bus.subscribe();
        let a = bus.publish(EventKind::AgentConnected, 1, json!({"agentId": "a"}));
        let m = bus.publish(EventKind::Metrics, 1, json!({"cpuUsage": 1}));
        let b = bus.publish(EventKind::Container, 2, json!({"action": "start"}));
        assert_eq!((a, m, b), (1, 2, 3));
        assert_eq!(rx.try_recv().unwrap().seq, 1);
        assert_eq!(rx.try_recv().unwrap().kind, EventKind::Metrics);
        let replay = bus.since(0);
        let seqs: Vec<u64> = replay.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 3], "metrics are broadcast, not kept");
        assert!(replay.gap.is_none());
        let text = serde_json::to_value(&*replay.events[0]).unwrap();
        assert_eq!(text["kind"], "agent.connected");
        assert_eq!(text["envId"], 1);
        assert!(text["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn the_recent_list_is_bounded_and_reports_gaps() {
        let bus = Events::new(3, 8);
        for i in 0..5 {
            bus.publish(EventKind::Container, i, json!({}));
        }
        let replay = bus.since(0);
        assert_eq!(
            replay.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(replay.gap, Some((1, 2)));
        assert!(bus.since(2).gap.is_none());
        assert!(bus.since(5).events.is_empty());
        assert_eq!(bus.last_seq(), 5);
    }

    #[test]
    fn a_lagging_subscriber_is_told_and_can_catch_up() {
        let bus = Events::new(100, 2);
        let mut rx = bus.subscribe();
        for i in 0..5 {
            bus.publish(EventKind::Container, i, json!({}));
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        ));
        assert_eq!(bus.since(0).events.len(), 5);
    }
}
