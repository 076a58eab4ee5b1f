//! End to end with real processes only (issues #3 and #5): the
//! `mooring-hub` binary serving on a temporary store, the `mooring-agent`
//! binary dialing it, and the rig's real Docker behind the agent.
//!
//! Each test starts its own hub (so its events, counters and statuses are
//! its own) and its own agents; they share only the rig's dockerd, so every
//! assertion about Docker filters on what that test itself created.

mod stack;

use std::process::Command;
use std::time::{Duration, Instant};

use mooring_tests::procs::{Proc, TempDir};
use mooring_tests::rig::Rig;
use serde_json::Value;
use stack::{online, sample, Agent, PING_SECS, SILENCE_SECS, WAIT};

/* ---------------------------------------------------------------- tests */

#[test]
fn real_agent_comes_online_with_its_identity() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let (hub, agent, _state) = online(&rig, "e2e-identity", SILENCE_SECS);
    let id = agent.id_from_state();
    // The hub shows the link a moment before the agent has read `welcome`.
    let deadline = Instant::now() + WAIT;
    let info = loop {
        let info = agent.info();
        if info["connected"] == true {
            break info;
        }
        assert!(Instant::now() < deadline, "agent never connected: {info}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(info["agentId"], id.as_str(), "{info}");

    let env = hub.env();
    let a = &env["agent"];
    assert_eq!(a["id"], id.as_str(), "{env}");
    assert_eq!(a["name"], "e2e-identity-agent");
    assert_eq!(a["version"], info["version"]);
    assert!(a["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(a["dockerVersion"], rig.docker_version.as_str());
    assert_eq!(a["hostname"], info["hostname"]);
    assert!(a["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    let caps: Vec<&str> = a["capabilities"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for want in ["metrics", "events", "mooring.stream-status"] {
        assert!(caps.contains(&want), "capability {want} in {caps:?}");
    }
    assert_eq!(
        info["capabilities"], a["capabilities"],
        "info says what hello said"
    );
    for field in ["connectedAt", "lastSeen"] {
        assert!(
            a[field].as_str().is_some_and(|t| t.ends_with('Z')),
            "agent.{field}: {env}"
        );
        assert!(env[field].as_str().is_some(), "{field}: {env}");
    }
    assert!(env["disconnectReason"].is_null(), "{env}");
    // The hub pings every second and the agent answers: a round trip.
    hub.wait_env("timed by a ping", WAIT, |e| e["rttMs"].is_number());
    // The hub's `local` environment is the rig's Docker, too.
    let local = hub.get("/api/environments/1");
    assert_eq!(local["type"], "local", "{local}");
    assert!(
        !hub.proc.output().contains(&hub.token),
        "hub logged the token"
    );
    assert!(!agent.proc.output().contains(&hub.token), "agent logged it");
}

#[test]
fn passthrough_through_the_real_agent_is_the_rigs_docker_and_is_counted() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let (hub, agent, _state) = online(&rig, "e2e-relay", SILENCE_SECS);
    let before = hub.prometheus();
    let docker = format!("/api/environments/{}/docker", hub.env_id);
    let mut calls = 0u32;
    let mut relayed_bytes = 0usize;
    let mut via_hub = |path: &str| -> Value {
        let (code, body) = hub.get_raw(&format!("{docker}{path}"), &[]);
        calls += 1;
        relayed_bytes += body.len();
        assert_eq!(
            code,
            200,
            "{path} via the hub: {body}\nagent:\n{}",
            agent.proc.output()
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    };
    let direct = |path: &str| -> Value {
        let (code, body) = rig
            .docker_api_get(path)
            .unwrap_or_else(|| panic!("rig docker did not answer {path}"));
        assert_eq!(code, 200, "{path} on the rig: {body}");
        serde_json::from_str(&body).expect("docker JSON")
    };

    let version = via_hub("/version");
    assert_eq!(version, direct("/version"));
    assert_eq!(version["Version"], rig.docker_version.as_str());
    let versioned = via_hub("/v1.41/version");
    assert_eq!(versioned, version);

    // The rig image, exactly as Docker lists it.
    let filter = "/images/json?filters=%7B%22reference%22%3A%5B%22rig%2Fbusybox%3A1%22%5D%7D";
    let mine = via_hub(filter);
    assert_eq!(mine, direct(filter));
    assert_eq!(mine[0]["Id"], rig.image_id.as_str(), "{mine}");
    // The whole list too (other tests add and remove images on the shared
    // rig meanwhile: equal on some attempt within a few).
    let mut last = (Value::Null, Value::Null);
    let equal = (0..10).any(|_| {
        last = (via_hub("/images/json"), direct("/images/json"));
        last.0 == last.1
    });
    assert!(
        equal,
        "image lists differ:\nhub: {}\nrig: {}",
        last.0, last.1
    );
    let ids: Vec<&str> = last.0.as_array().map_or(vec![], |l| {
        l.iter().filter_map(|i| i["Id"].as_str()).collect()
    });
    assert!(ids.contains(&rig.image_id.as_str()), "{ids:?}");

    // Unknown object: Docker's own 404 comes through.
    let (code, body) = hub.get_raw(&format!("{docker}/containers/mooring-no-such/json"), &[]);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("No such container"), "{body}");
    calls += 1;

    // A quiet stream (a silent container's logs, followed) is answered at
    // once, not at its first line, and ends cleanly when the container stops.
    let silent = rig
        .docker_ok(&["run", "-d", "--network", "none", &rig.image, "sleep", "300"])
        .unwrap_or_else(|e| panic!("{e}"));
    let _cleanup = Container(&rig, silent.clone());
    let mut cmd = Command::new("curl");
    // Headers to stderr: with `-i` curl holds them back until body data.
    cmd.args(["-N", "-sS", "-D", "/dev/stderr", "--max-time", "120"])
        .args(["-H", &hub.auth()])
        .arg(format!(
            "{}{docker}/containers/{silent}/logs?follow=1&stdout=1&stderr=1",
            hub.base
        ));
    let mut logs = Proc::spawn("curl logs", cmd);
    logs.wait_output("HTTP/1.1 200", Duration::from_secs(10));
    rig.docker_ok(&["stop", "-t", "1", &silent])
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + WAIT;
    let ended = loop {
        if let Some(status) = logs.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "logs stream still open: {}",
            logs.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(ended.success(), "a clean end: {ended:?} {}", logs.output());
    let stream_calls = 1.0;

    // Prometheus: every relayed call counted, and their bytes.
    let after = hub.prometheus();
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    let ok = delta("mooring_relay_requests_total{outcome=\"ok\"}");
    assert_eq!(
        ok,
        f64::from(calls) + stream_calls,
        "requests ok delta\n{after}"
    );
    assert_eq!(
        delta("mooring_relay_request_duration_seconds_count{mode=\"whole\"}"),
        f64::from(calls)
    );
    assert_eq!(
        delta("mooring_relay_request_duration_seconds_count{mode=\"stream\"}"),
        stream_calls
    );
    assert!(delta("mooring_relay_frames_total{direction=\"hub_to_agent\"}") >= f64::from(calls));
    assert!(delta("mooring_relay_frames_total{direction=\"agent_to_hub\"}") >= f64::from(calls));
    let bytes_in = delta("mooring_relay_frame_bytes_total{direction=\"agent_to_hub\"}");
    assert!(
        bytes_in >= relayed_bytes as f64,
        "{bytes_in} frame bytes in for {relayed_bytes} body bytes"
    );
    assert!(delta("mooring_relay_frame_bytes_total{direction=\"hub_to_agent\"}") > 0.0);
    assert_eq!(sample(&after, "mooring_agents_connected"), 1.0);
}

/// Removes a container of the rig when dropped.
struct Container<'a>(&'a Rig, String);

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.0.docker(&["rm", "-f", &self.1]);
    }
}

#[test]
fn real_agent_reports_host_metrics_and_container_events() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let (hub, _agent, _state) = online(&rig, "e2e-telemetry", SILENCE_SECS);
    let path = format!("/api/environments/{}/metrics", hub.env_id);
    let deadline = Instant::now() + WAIT;
    let samples = loop {
        let samples = hub.get(&path)["samples"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if samples.len() >= 2 {
            break samples;
        }
        assert!(Instant::now() < deadline, "no metrics samples: {samples:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let s = samples.last().expect("a sample");
    assert!(s["cpuCores"].as_u64().is_some_and(|c| c >= 1), "{s}");
    assert!(s["memoryTotal"].as_u64().is_some_and(|m| m > 0), "{s}");
    assert!(s["timestamp"].as_i64().is_some_and(|t| t > 0), "{s}");
    let env = hub.wait_env("with lastMetrics", WAIT, |e| e["lastMetrics"].is_object());
    assert!(env["lastMetrics"]["memoryTotal"]
        .as_u64()
        .is_some_and(|m| m > 0));

    let id = rig
        .docker_ok(&["run", "-d", "--network", "none", &rig.image, "sleep", "30"])
        .unwrap_or_else(|e| panic!("{e}"));
    let _cleanup = Container(&rig, id.clone());
    let is = |action: &'static str| {
        let id = id.clone();
        let env_id = hub.env_id;
        move |e: &Value| {
            e["kind"] == "container"
                && e["envId"] == env_id
                && e["detail"]["containerId"] == id.as_str()
                && e["detail"]["action"] == action
        }
    };
    let start = hub.wait_event("container start", WAIT, is("start"));
    assert_eq!(start["detail"]["image"], rig.image.as_str(), "{start}");
    rig.docker_ok(&["stop", "-t", "1", &id])
        .unwrap_or_else(|e| panic!("{e}"));
    let die = hub.wait_event("container die", WAIT, is("die"));
    assert!(die["seq"].as_u64() > start["seq"].as_u64());
}

#[test]
fn killed_agent_ends_open_streams_goes_offline_and_returns_with_its_id() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let (hub, mut agent, state) = online(&rig, "e2e-kill", SILENCE_SECS);
    let id = agent.id_from_state();

    // A stream open through the agent: Docker's event stream.
    let mut cmd = Command::new("curl");
    // Headers to stderr: with `-i` curl holds them back until body data.
    cmd.args(["-N", "-sS", "-D", "/dev/stderr", "--max-time", "120"])
        .args(["-H", &hub.auth()])
        .arg(format!(
            "{}/api/environments/{}/docker/events",
            hub.base, hub.env_id
        ));
    let mut stream = Proc::spawn("curl events", cmd);
    stream.wait_output("HTTP/1.1 200", WAIT);
    assert!(stream.exited().is_none(), "{}", stream.output());

    let killed = Instant::now();
    agent.proc.kill();
    let ended = loop {
        if let Some(status) = stream.exited() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the stream stayed open 10 s after its agent died:\n{}",
            stream.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !ended.success(),
        "a stream cut by a dead agent must end with an error, not like a complete answer: {ended:?}\n{}",
        stream.output()
    );

    let gone = hub.wait_env("offline", Duration::from_secs(SILENCE_SECS + 10), |e| {
        e["status"] == "offline"
    });
    assert_eq!(gone["disconnectReason"], "closed", "{gone}");
    assert_eq!(gone["disconnectCount"], 1, "{gone}");
    assert_eq!(gone["agent"]["id"], id.as_str(), "the last agent is kept");
    let event = hub.wait_event("agent.disconnected", WAIT, |e| {
        e["kind"] == "agent.disconnected" && e["envId"] == hub.env_id
    });
    assert_eq!(event["detail"]["reason"], "closed", "{event}");
    assert_eq!(event["detail"]["agentId"], id.as_str(), "{event}");

    // Restarted on the same state directory: the same agent again.
    let again = Agent::start(&hub, &rig, "e2e-kill-agent", state.path());
    let back = hub.wait_env("online again", WAIT, |e| e["status"] == "online");
    assert_eq!(again.id_from_state(), id);
    assert_eq!(back["agent"]["id"], id.as_str(), "{back}");
    assert!(back["disconnectReason"].is_null(), "{back}");
    // The event follows the status by a moment.
    let after = event["seq"].as_u64().unwrap_or(u64::MAX);
    let reconnected = hub.wait_event("agent.connected again", WAIT, |e| {
        e["kind"] == "agent.connected"
            && e["envId"] == hub.env_id
            && e["seq"].as_u64().is_some_and(|s| s > after)
    });
    assert_eq!(
        reconnected["detail"]["agentId"],
        id.as_str(),
        "{reconnected}"
    );
    let connects: Vec<Value> = hub
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "agent.connected" && e["envId"] == hub.env_id)
        .collect();
    assert_eq!(
        connects.len(),
        2,
        "{connects:#?}\nhub:\n{}",
        hub.proc.output()
    );
}

#[test]
fn second_agent_on_the_same_token_is_refused_and_the_same_id_replaces_its_link() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    // A silence timeout far above the steps below: the replacement must
    // happen because of the agent id, not because the old link timed out.
    let silence = 30;
    let (hub, first, first_state) = online(&rig, "e2e-conflict", silence);
    let first_id = first.id_from_state();

    let other_state = TempDir::new("mt-e2e-state-other");
    let mut other = Agent::start(&hub, &rig, "e2e-intruder", other_state.path());
    let other_id = other.id_from_state();
    assert_ne!(other_id, first_id);
    // The refused agent says why, naming the live one.
    other.proc.wait_output("already served by agent", WAIT);
    let log = other.proc.output();
    assert!(log.contains(&first_id), "names the live agent's id:\n{log}");
    assert!(log.contains("e2e-conflict-agent"), "and its name:\n{log}");
    let conflict = hub.wait_env("in conflict", WAIT, |e| e["status"] == "conflict");
    assert_eq!(conflict["agent"]["id"], first_id.as_str(), "{conflict}");
    assert_eq!(
        conflict["conflict"]["agentId"],
        other_id.as_str(),
        "{conflict}"
    );
    assert_eq!(conflict["conflict"]["agentName"], "e2e-intruder");
    let event = hub.wait_event("agent.conflict", WAIT, |e| {
        e["kind"] == "agent.conflict" && e["envId"] == hub.env_id
    });
    assert_eq!(event["detail"]["agentId"], other_id.as_str(), "{event}");
    assert_eq!(event["detail"]["liveAgentId"], first_id.as_str(), "{event}");
    assert!(
        !other.proc.output().contains("connected to the hub"),
        "never welcomed"
    );
    other.proc.kill();

    // The first agent's host hangs (its TCP connection stays open) and the
    // agent is restarted with the same id: the new link replaces the old
    // one at once, without waiting for the silence timeout.
    first.freeze();
    let hung_at = Instant::now();
    let restarted = Agent::start(&hub, &rig, "e2e-conflict-agent", first_state.path());
    let replaced = hub.wait_event("agent.disconnected (replaced)", WAIT, |e| {
        e["kind"] == "agent.disconnected" && e["envId"] == hub.env_id
    });
    assert_eq!(replaced["detail"]["reason"], "replaced", "{replaced}");
    assert!(hung_at.elapsed() < Duration::from_secs(silence));
    // (connectedAt has second resolution: the new link is told by its event.)
    let after = replaced["seq"].as_u64().unwrap_or(u64::MAX);
    let connected = hub.wait_event("agent.connected of the new link", WAIT, |e| {
        e["kind"] == "agent.connected"
            && e["envId"] == hub.env_id
            && e["seq"].as_u64().is_some_and(|s| s > after)
    });
    assert_eq!(
        connected["detail"]["agentId"],
        first_id.as_str(),
        "{connected}"
    );
    let env = hub.wait_env("online with the new link", WAIT, |e| {
        e["status"] == "online"
    });
    assert_eq!(env["agent"]["id"], first_id.as_str(), "{env}");
    assert_eq!(restarted.id_from_state(), first_id);
    assert!(
        env["conflict"].is_null(),
        "the new link clears the conflict: {env}"
    );

    // The hung process dies for good: its late TCP close must not take the
    // environment offline (it no longer owns the link).
    let mut first = first;
    first.proc.kill();
    let watch_until = Instant::now() + Duration::from_secs(PING_SECS * 3);
    while Instant::now() < watch_until {
        let env = hub.env();
        assert_eq!(env["status"], "online", "{env}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let disconnects: Vec<Value> = hub
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "agent.disconnected" && e["envId"] == hub.env_id)
        .collect();
    assert_eq!(disconnects.len(), 1, "{disconnects:#?}");
}
