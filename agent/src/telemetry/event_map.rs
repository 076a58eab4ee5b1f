//! From one line of Docker's event stream to a `container_event` payload,
//! and the resume cursor that makes reconnects lossless and duplicate-free.
//!
//! Pure: no I/O, no clock. It decides which actions are forwarded (the
//! Hawser list), how they are named, and which replayed events were already
//! sent. It never forwards non-container events.

use std::collections::{BTreeMap, HashSet, VecDeque};

use mooring_protocol::ContainerEvent;
use serde::Deserialize;

use super::timefmt::rfc3339_nanos;

/// Container actions forwarded to the hub (Hawser 1.0).
pub const FORWARDED_ACTIONS: [&str; 13] = [
    "create",
    "start",
    "stop",
    "die",
    "kill",
    "restart",
    "pause",
    "unpause",
    "destroy",
    "rename",
    "update",
    "oom",
    "health_status",
];

/// Attribute that carries the health state of a `health_status` event
/// (Docker sends the action `health_status: healthy`; the frame's action is
/// `health_status` and this attribute holds `healthy`). Not set when a
/// container label of the same name already occupies the key.
pub const HEALTH_STATUS_ATTRIBUTE: &str = "healthStatus";

/// Most event keys remembered for de-duplication across a reconnect.
const SEEN_LIMIT: usize = 1024;

/// Docker's event message (the fields we read).
#[derive(Debug, Deserialize)]
struct DockerEvent {
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(rename = "Action", default)]
    action: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "Actor", default)]
    actor: Option<Actor>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    time: Option<i64>,
    #[serde(rename = "timeNano", default)]
    time_nano: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
struct Actor {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "Attributes", default)]
    attributes: BTreeMap<String, String>,
}

/// A container event to forward, with what the cursor needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    /// The payload of the frame.
    pub(crate) event: ContainerEvent,
    /// Docker's `timeNano`.
    pub(crate) time_nano: i64,
    /// Identity for de-duplication: time, id and Docker's full action.
    pub(crate) key: String,
}

/// Parses one event line. `Ok(None)` for events that are not forwarded
/// (other object types, other actions); `Err` names what was wrong.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<Parsed>, String> {
    let ev: DockerEvent =
        serde_json::from_slice(line).map_err(|e| format!("event is not the JSON expected: {e}"))?;
    if ev.kind.as_deref().is_some_and(|k| k != "container") {
        return Ok(None);
    }
    let Some(raw_action) = ev.action.or(ev.status).filter(|a| !a.is_empty()) else {
        return Err("event without Action".to_owned());
    };
    let (action, health) = match raw_action.strip_prefix("health_status") {
        Some(rest) => ("health_status", rest.trim_start_matches(':').trim()),
        None => (raw_action.as_str(), ""),
    };
    if !FORWARDED_ACTIONS.contains(&action) {
        return Ok(None);
    }
    let actor = ev.actor.unwrap_or_default();
    let Some(container_id) = actor.id.or(ev.id).filter(|id| !id.is_empty()) else {
        return Err(format!("{action} event without a container id"));
    };
    let Some(time_nano) = ev
        .time_nano
        .or_else(|| ev.time.and_then(|t| t.checked_mul(1_000_000_000)))
    else {
        return Err(format!("{action} event without time"));
    };
    let mut attributes = actor.attributes;
    if !health.is_empty() {
        attributes
            .entry(HEALTH_STATUS_ATTRIBUTE.to_owned())
            .or_insert_with(|| health.to_owned());
    }
    let image = attributes
        .get("image")
        .cloned()
        .or(ev.from)
        .unwrap_or_default();
    let key = format!("{time_nano}/{container_id}/{raw_action}");
    Ok(Some(Parsed {
        event: ContainerEvent {
            container_name: attributes.get("name").cloned().unwrap_or_default(),
            container_id,
            image,
            action: action.to_owned(),
            actor_attributes: attributes,
            timestamp: rfc3339_nanos(time_nano),
        },
        time_nano,
        key,
    }))
}

/// Where the event stream resumes after a reconnect, and which events were
/// already forwarded (Docker replays `since` inclusively).
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    latest_nano: Option<i64>,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Cursor {
    /// True the first time an event is seen (then remembered, bounded);
    /// false for a replayed duplicate.
    pub(crate) fn admit(&mut self, parsed: &Parsed) -> bool {
        if self.seen.contains(&parsed.key) {
            return false;
        }
        if self.order.len() >= SEEN_LIMIT {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(parsed.key.clone());
        self.order.push_back(parsed.key.clone());
        self.latest_nano = Some(
            self.latest_nano
                .map_or(parsed.time_nano, |t| t.max(parsed.time_nano)),
        );
        true
    }

    /// Records that a stream was open at `unix_nanos` (local clock) with no
    /// event: a later reconnect resumes from there, not from the last event.
    pub(crate) fn open_at(&mut self, unix_nanos: i64) {
        self.latest_nano = Some(self.latest_nano.map_or(unix_nanos, |t| t.max(unix_nanos)));
    }

    /// The `since` value to resume with (`secs.nanos`), if any.
    pub(crate) fn since(&self) -> Option<String> {
        self.latest_nano.map(since_param)
    }
}

/// Docker's `since` form of unix nanoseconds: `seconds.nanoseconds`.
pub(crate) fn since_param(unix_nanos: i64) -> String {
    format!(
        "{}.{:09}",
        unix_nanos.div_euclid(1_000_000_000),
        unix_nanos.rem_euclid(1_000_000_000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIE: &str = r#"{"status":"die","id":"b60c","from":"rig/busybox:1","Type":"container","Action":"die","Actor":{"ID":"b60c","Attributes":{"exitCode":"0","image":"rig/busybox:1","name":"nifty"}},"scope":"local","time":1796398595,"timeNano":1796398595339616247}"#;

    #[test]
    fn container_event_maps_every_field() {
        let p = parse_line(DIE.as_bytes()).unwrap().unwrap();
        assert_eq!(p.event.container_id, "b60c");
        assert_eq!(p.event.container_name, "nifty");
        assert_eq!(p.event.image, "rig/busybox:1");
        assert_eq!(p.event.action, "die");
        assert_eq!(p.event.actor_attributes["exitCode"], "0");
        assert_eq!(p.event.timestamp, "2026-12-04T15:36:35.339616247Z");
        assert_eq!(p.time_nano, 1796398595339616247);
    }

    #[test]
    fn health_status_is_normalised_and_keeps_the_state() {
        let line = r#"{"Type":"container","Action":"health_status: unhealthy","Actor":{"ID":"c1","Attributes":{"name":"web","image":"nginx"}},"time":10,"timeNano":10000000001}"#;
        let p = parse_line(line.as_bytes()).unwrap().unwrap();
        assert_eq!(p.event.action, "health_status");
        assert_eq!(
            p.event.actor_attributes[HEALTH_STATUS_ATTRIBUTE],
            "unhealthy"
        );
        assert_eq!(p.event.timestamp, "1970-01-01T00:00:10.000000001Z");
    }

    #[test]
    fn other_types_and_actions_are_not_forwarded() {
        let net = r#"{"Type":"network","Action":"disconnect","Actor":{"ID":"n","Attributes":{}},"timeNano":1}"#;
        assert_eq!(parse_line(net.as_bytes()).unwrap(), None);
        let exec = r#"{"Type":"container","Action":"exec_start: sh -c true","Actor":{"ID":"c","Attributes":{}},"timeNano":1}"#;
        assert_eq!(parse_line(exec.as_bytes()).unwrap(), None);
    }

    #[test]
    fn old_style_fields_and_missing_time_nano() {
        let line = r#"{"status":"start","id":"abc","from":"alpine","time":2}"#;
        let p = parse_line(line.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (p.event.container_id.as_str(), p.event.image.as_str()),
            ("abc", "alpine")
        );
        assert_eq!(p.time_nano, 2_000_000_000);
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(parse_line(b"not json").is_err());
        assert!(parse_line(br#"{"Type":"container","Action":"start","timeNano":1}"#).is_err());
        assert!(parse_line(br#"{"Type":"container","Actor":{"ID":"x"},"timeNano":1}"#).is_err());
        assert!(
            parse_line(br#"{"Type":"container","Action":"start","Actor":{"ID":"x"}}"#).is_err()
        );
    }

    #[test]
    fn cursor_drops_replays_and_resumes_from_the_latest_event() {
        let mut c = Cursor::default();
        assert_eq!(c.since(), None);
        c.open_at(5);
        assert_eq!(c.since().as_deref(), Some("0.000000005"));
        let p = parse_line(DIE.as_bytes()).unwrap().unwrap();
        assert!(c.admit(&p));
        assert!(!c.admit(&p), "a replayed event must not be sent twice");
        assert_eq!(c.since().as_deref(), Some("1796398595.339616247"));
        c.open_at(1); // an older open time never moves the cursor back
        assert_eq!(c.since().as_deref(), Some("1796398595.339616247"));
    }

    #[test]
    fn cursor_memory_is_bounded() {
        let mut c = Cursor::default();
        for i in 0..(SEEN_LIMIT as i64 + 10) {
            let line = format!(
                r#"{{"Type":"container","Action":"start","Actor":{{"ID":"c"}},"timeNano":{i}}}"#
            );
            let p = parse_line(line.as_bytes()).unwrap().unwrap();
            assert!(c.admit(&p));
        }
        assert_eq!(c.seen.len(), SEEN_LIMIT);
        assert_eq!(c.order.len(), SEEN_LIMIT);
    }
}
