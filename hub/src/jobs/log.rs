//! The bounded event log of one job, and its policy when full.
//!
//! Every event gets the next id (1, 2, 3, …) and is kept as compact JSON
//! text. The log holds at most [`JobLimits::max_lines`] events and
//! [`JobLimits::max_bytes`] bytes of JSON. When an append would pass either
//! limit, room is made in this order:
//!
//! 1. a *progress tick* (an object with a layer `id` and a
//!    `progressDetail.current`, e.g. `Pushing [==>   ]`) replaces the
//!    previous tick **of the same layer**: the newer one carries everything
//!    the older one said;
//! 2. otherwise the oldest progress tick of any layer is dropped;
//! 3. otherwise the oldest non-terminal event is dropped.
//!
//! The terminal event (`complete` / `error`) is appended last and never
//! evicted. Ids are never reused or renumbered, so a reader resuming "after
//! id N" sees every surviving event once and in order: eviction can thin
//! out what a slow reader sees, never duplicate or reorder it. Every drop is
//! counted ([`EventLog::dropped`]).
//!
//! This module does no locking and no waking: [`super::job`] does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::JobLimits;

/// One event of a job, as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// Monotonic per job, starting at 1.
    pub id: u64,
    /// The event object as compact JSON text.
    pub json: Arc<str>,
    /// Whether this is the job's last event.
    pub terminal: bool,
}

/// What the log knows about one stored event, beyond its text.
#[derive(Debug, Clone)]
struct Entry {
    json: Arc<str>,
    terminal: bool,
    /// Layer id, when this event is a progress tick.
    tick_layer: Option<String>,
}

/// A bounded, coalescing log of job events. See the module docs.
#[derive(Debug)]
pub(crate) struct EventLog {
    entries: BTreeMap<u64, Entry>,
    /// Ids of stored progress ticks, oldest first.
    ticks: BTreeSet<u64>,
    /// Latest stored tick per layer id.
    tick_by_layer: HashMap<String, u64>,
    next_id: u64,
    bytes: usize,
    dropped: u64,
    max_lines: usize,
    max_bytes: usize,
}

impl EventLog {
    /// An empty log with the given limits (a limit of 0 is taken as 1).
    pub(crate) fn new(limits: &JobLimits) -> Self {
        EventLog {
            entries: BTreeMap::new(),
            ticks: BTreeSet::new(),
            tick_by_layer: HashMap::new(),
            next_id: 1,
            bytes: 0,
            dropped: 0,
            max_lines: limits.max_lines.max(1),
            max_bytes: limits.max_bytes.max(1),
        }
    }

    /// Appends an event and returns its id, evicting per the module policy.
    pub(crate) fn append(&mut self, value: &Value, terminal: bool) -> u64 {
        let json: Arc<str> = Arc::from(value.to_string());
        let tick_layer = if terminal { None } else { tick_layer(value) };
        let id = self.next_id;
        self.next_id += 1;

        if let Some(layer) = &tick_layer {
            if self.would_overflow(json.len()) {
                if let Some(old) = self.tick_by_layer.get(layer).copied() {
                    self.remove(old);
                }
            }
        }
        while self.would_overflow(json.len()) {
            let victim = self
                .ticks
                .first()
                .copied()
                .or_else(|| self.oldest_non_terminal());
            match victim {
                Some(old) => self.remove(old),
                None => break,
            }
        }

        self.bytes += json.len();
        if let Some(layer) = &tick_layer {
            self.ticks.insert(id);
            self.tick_by_layer.insert(layer.clone(), id);
        }
        self.entries.insert(
            id,
            Entry {
                json,
                terminal,
                tick_layer,
            },
        );
        id
    }

    /// The first stored event with an id greater than `after`.
    pub(crate) fn next_after(&self, after: u64) -> Option<JobEvent> {
        let (id, entry) = self.entries.range(after.saturating_add(1)..).next()?;
        Some(JobEvent {
            id: *id,
            json: entry.json.clone(),
            terminal: entry.terminal,
        })
    }

    /// Every stored event, oldest first.
    pub(crate) fn all(&self) -> Vec<JobEvent> {
        self.entries
            .iter()
            .map(|(id, e)| JobEvent {
                id: *id,
                json: e.json.clone(),
                terminal: e.terminal,
            })
            .collect()
    }

    /// The id of the last event appended (0 when none).
    pub(crate) fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// How many events were evicted so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Number of stored events.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of JSON stored.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn would_overflow(&self, incoming: usize) -> bool {
        !self.entries.is_empty()
            && (self.entries.len() + 1 > self.max_lines || self.bytes + incoming > self.max_bytes)
    }

    fn oldest_non_terminal(&self) -> Option<u64> {
        self.entries
            .iter()
            .find(|(_, e)| !e.terminal)
            .map(|(id, _)| *id)
    }

    fn remove(&mut self, id: u64) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        self.bytes -= entry.json.len();
        self.dropped += 1;
        self.ticks.remove(&id);
        if let Some(layer) = entry.tick_layer {
            if self.tick_by_layer.get(&layer) == Some(&id) {
                self.tick_by_layer.remove(&layer);
            }
        }
    }
}

/// The layer id of a progress tick (`{"id": L, "progressDetail": {"current": …}}`).
fn tick_layer(value: &Value) -> Option<String> {
    let layer = value.get("id")?.as_str()?;
    value.get("progressDetail")?.get("current")?;
    Some(layer.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits(max_lines: usize, max_bytes: usize) -> JobLimits {
        JobLimits {
            max_lines,
            max_bytes,
            ..JobLimits::default()
        }
    }

    fn tick(layer: &str, current: u64) -> Value {
        json!({"id": layer, "status": "Pushing", "progressDetail": {"current": current, "total": 100}})
    }

    fn ids(log: &EventLog) -> Vec<u64> {
        log.all().iter().map(|e| e.id).collect()
    }

    #[test]
    fn ids_are_monotonic_and_replay_resumes_after_an_id() {
        let mut log = EventLog::new(&JobLimits::default());
        for n in 0..5 {
            assert_eq!(log.append(&json!({"n": n}), false), n + 1);
        }
        assert_eq!(log.next_after(0).map(|e| e.id), Some(1));
        assert_eq!(log.next_after(3).map(|e| e.id), Some(4));
        assert_eq!(log.next_after(5), None);
        assert_eq!(log.last_id(), 5);
        assert_eq!(&*log.all()[2].json, r#"{"n":2}"#);
    }

    #[test]
    fn full_log_replaces_the_same_layers_previous_tick() {
        let mut log = EventLog::new(&limits(4, usize::MAX));
        log.append(
            &json!({"id": "a", "status": "Preparing", "progressDetail": {}}),
            false,
        );
        log.append(&tick("a", 1), false); // 2
        log.append(&tick("b", 1), false); // 3
        log.append(&tick("a", 2), false); // 4 (log now full)
        log.append(&tick("a", 3), false); // 5 replaces 4, the latest tick of "a"
        assert_eq!(ids(&log), vec![1, 2, 3, 5]);
        assert_eq!(log.dropped(), 1);
        // A tick of a layer with no stored tick evicts the oldest tick.
        log.append(&tick("c", 1), false); // 6 evicts 2
        assert_eq!(ids(&log), vec![1, 3, 5, 6]);
    }

    #[test]
    fn state_changes_outlive_ticks_and_the_terminal_event_is_never_lost() {
        let mut log = EventLog::new(&limits(3, usize::MAX));
        log.append(&json!({"status": "tagging"}), false); // 1
        log.append(&tick("a", 1), false); // 2
        log.append(
            &json!({"id": "a", "status": "Pushed", "progressDetail": {}}),
            false,
        ); // 3
        log.append(&json!({"status": "complete"}), true); // 4 evicts tick 2
        assert_eq!(ids(&log), vec![1, 3, 4]);
        let last = log.next_after(3).expect("terminal event");
        assert!(last.terminal);
        // Without ticks, the oldest non-terminal event goes.
        let mut log = EventLog::new(&limits(2, usize::MAX));
        log.append(&json!({"status": "one"}), false);
        log.append(&json!({"status": "two"}), false);
        log.append(&json!({"status": "error"}), true);
        assert_eq!(ids(&log), vec![2, 3]);
        assert_eq!(log.dropped(), 1);
    }

    #[test]
    fn byte_budget_is_enforced() {
        let line = json!({"status": "x".repeat(90)});
        let size = line.to_string().len();
        let mut log = EventLog::new(&limits(1000, size * 3));
        for _ in 0..10 {
            log.append(&line, false);
        }
        assert_eq!(log.len(), 3);
        assert!(log.bytes() <= size * 3);
        assert_eq!(log.dropped(), 7);
        assert_eq!(ids(&log), vec![8, 9, 10]);
    }

    #[test]
    fn ten_thousand_lines_hold_with_a_flood_of_ticks() {
        let mut log = EventLog::new(&limits(100, usize::MAX));
        log.append(&json!({"status": "pushing"}), false);
        for n in 0..10_000 {
            log.append(&tick(if n % 2 == 0 { "a" } else { "b" }, n), false);
        }
        log.append(&json!({"status": "complete"}), true);
        assert!(log.len() <= 100);
        assert_eq!(log.next_after(0).map(|e| e.id), Some(1));
        let all = log.all();
        assert!(all.last().is_some_and(|e| e.terminal));
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    }
}
