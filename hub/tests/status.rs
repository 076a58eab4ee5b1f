//! Connectivity status (issue #5): metrics history, live events over SSE,
//! disconnect reasons, conflicts, persistence across a restart — over real
//! sockets with the protocol-speaking test agent.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::web::*;
use common::{agent_id, AgentOptions, OnlineAgent, TestAgent, TestHub};

/* ------------------------------------------------------------------ tests */

#[tokio::test]
async fn metrics_frames_fill_the_history_and_last_metrics() {
    let hub = TestHub::start().await;
    let OnlineAgent { env, agent, .. } = hub
        .online_agent("nas", AgentOptions::new(&agent_id()))
        .await;
    let t0 = now() - 60;
    for (i, cpu) in [12.5, 50.0, 7.25].iter().enumerate() {
        agent
            .send_text(&metrics_frame(t0 + 30 * i as i64, *cpu))
            .await;
    }
    let path = format!("/api/environments/{env}/metrics");
    let samples = eventually(Duration::from_secs(5), "3 samples", || async {
        let (status, body) = hub.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let s = body["samples"].as_array().cloned().unwrap_or_default();
        (s.len() == 3).then_some(s)
    })
    .await;
    let ts: Vec<i64> = samples
        .iter()
        .map(|s| s["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(ts, vec![t0, t0 + 30, t0 + 60], "oldest first, agent clock");
    assert_eq!(samples[0]["cpuUsage"], 12.5);
    for field in [
        "cpuCores",
        "memoryTotal",
        "memoryUsed",
        "memoryFree",
        "diskTotal",
        "diskUsed",
        "diskFree",
        "networkRxBytes",
        "networkTxBytes",
        "uptime",
    ] {
        assert!(samples[2][field].is_u64(), "{field} in {}", samples[2]);
    }
    let shown = hub.env_json(env).await;
    assert_eq!(shown["lastMetrics"], samples[2]);
    assert_eq!(shown["disconnectCount"], 0);
    assert!(shown["disconnectReason"].is_null());
    assert!(shown["connectedAt"].as_str().unwrap().ends_with('Z'));
    // The hub pings every second: a round trip gets measured.
    let rtt = eventually(Duration::from_secs(5), "rttMs", || async {
        hub.env_json(env).await["rttMs"].as_f64()
    })
    .await;
    assert!((0.0..5000.0).contains(&rtt), "{rtt}");

    // Scope: a key for another environment cannot read this history.
    let other = hub.create_edge_env("other").await;
    let (_, key) = key_with(&hub, &["environments:read"], Some(vec![other])).await;
    let (status, _) = hub.api(Method::GET, &path, Some(&key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub
        .admin(Method::GET, "/api/environments/9999/metrics", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

#[tokio::test]
async fn events_stream_connects_container_events_and_a_killed_agent() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("edge").await;
    let (_, token) = hub.create_token(env, None).await;
    let auth = bearer(&hub.admin_key);
    let mut sse = Sse::open(&hub, &[("authorization", &auth)]).await;

    let id = agent_id();
    let agent = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&id))
        .await
        .unwrap();
    let connected = sse
        .wait_kind("agent.connected", Duration::from_secs(5))
        .await;
    assert_eq!(connected["envId"], env);
    assert_eq!(connected["detail"]["agentId"], id.as_str());
    assert_eq!(connected["detail"]["agentName"], format!("agent-{id}"));
    assert_eq!(connected["detail"]["version"], "test-0.1");
    assert_eq!(connected["detail"]["hostname"], format!("host-{id}"));
    assert!(connected["time"].as_str().unwrap().ends_with('Z'));

    agent.send_text(&container_frame("start")).await;
    let c = sse.wait_kind("container", Duration::from_secs(5)).await;
    assert_eq!(c["envId"], env);
    assert_eq!(c["detail"]["action"], "start");
    assert_eq!(c["detail"]["containerName"], "web");
    assert_eq!(c["detail"]["image"], "rig/busybox:1");
    assert_eq!(c["detail"]["actorAttributes"]["name"], "web");
    assert_eq!(c["detail"]["timestamp"], "2025-01-31T12:00:00.123456789Z");
    assert!(c["seq"].as_u64().unwrap() > connected["seq"].as_u64().unwrap());

    // Metrics are broadcast too.
    agent.send_text(&metrics_frame(now(), 33.0)).await;
    let m = sse.wait_kind("metrics", Duration::from_secs(5)).await;
    assert_eq!(m["detail"]["cpuUsage"], 33.0);

    // Killed: TCP dropped without a close frame.
    let started = tokio::time::Instant::now();
    agent.kill();
    let gone = sse
        .wait_kind("agent.disconnected", Duration::from_secs(10))
        .await;
    assert_eq!(gone["detail"]["reason"], "closed");
    assert_eq!(gone["detail"]["agentId"], id.as_str());
    let shown = hub
        .wait_status(env, "offline", Duration::from_secs(5))
        .await;
    assert!(
        started.elapsed() < hub.state.settings.silence_timeout,
        "a dropped TCP connection is noticed at once, not after the silence timeout"
    );
    assert_eq!(shown["disconnectReason"], "closed");
    assert_eq!(shown["disconnectCount"], 1);
    assert!(shown["lastSeen"].as_str().is_some());
    assert_eq!(shown["lastMetrics"]["cpuUsage"], 33.0);

    // The JSON list has the same events (no metrics), oldest first.
    let (status, list) = hub.admin(Method::GET, "/api/events?since=0", None).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["envId"] == env)
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["agent.connected", "container", "agent.disconnected"]
    );
    let since = connected["seq"].as_u64().unwrap();
    let (_, later) = hub
        .admin(Method::GET, &format!("/api/events?since={since}"), None)
        .await;
    assert_eq!(later["events"][0]["kind"], "container");
    let (status, _) = hub.admin(Method::GET, "/api/events?since=soon", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A reconnecting EventSource resumes after its Last-Event-ID.
    let mut resumed = Sse::open(
        &hub,
        &[
            ("authorization", &auth),
            ("last-event-id", &since.to_string()),
        ],
    )
    .await;
    let first = resumed.next(Duration::from_secs(5)).await.unwrap().json();
    assert_eq!(first["kind"], "container");
    let second = resumed.next(Duration::from_secs(5)).await.unwrap().json();
    assert_eq!(second["kind"], "agent.disconnected");
    hub.stop().await;
}

#[tokio::test]
async fn a_half_open_agent_goes_offline_with_reason_timeout() {
    let hub = TestHub::start().await;
    let OnlineAgent { env, agent, .. } = hub
        .online_agent("halfopen", AgentOptions::new(&agent_id()))
        .await;
    let auth = bearer(&hub.admin_key);
    let mut sse = Sse::open(&hub, &[("authorization", &auth)]).await;
    agent.go_silent();
    let silence = hub.state.settings.silence_timeout;
    let gone = sse
        .wait_kind("agent.disconnected", silence + Duration::from_secs(10))
        .await;
    assert_eq!(gone["envId"], env);
    assert_eq!(gone["detail"]["reason"], "timeout");
    let shown = hub.env_json(env).await;
    assert_eq!(shown["status"], "offline");
    assert_eq!(shown["disconnectReason"], "timeout");
    assert_eq!(shown["disconnectCount"], 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_refused_second_agent_is_a_conflict_event_and_status() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("shared").await;
    let (_, token) = hub.create_token(env, None).await;
    let auth = bearer(&hub.admin_key);
    let mut sse = Sse::open(&hub, &[("authorization", &auth)]).await;
    let live_id = agent_id();
    let _live = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&live_id))
        .await
        .unwrap();
    let other = agent_id();
    assert!(
        TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&other))
            .await
            .is_err(),
        "a second agent is refused"
    );
    let c = sse
        .wait_kind("agent.conflict", Duration::from_secs(5))
        .await;
    assert_eq!(c["detail"]["agentId"], other.as_str());
    assert_eq!(c["detail"]["liveAgentId"], live_id.as_str());
    assert_eq!(c["detail"]["liveAgentName"], format!("agent-{live_id}"));
    let shown = hub.env_json(env).await;
    assert_eq!(shown["status"], "conflict");
    assert_eq!(shown["conflict"]["agentId"], other.as_str());
    assert!(shown["conflict"]["at"].as_str().is_some());
    hub.stop().await;
}

#[tokio::test]
async fn events_are_filtered_by_the_keys_environments() {
    let hub = TestHub::start().await;
    let OnlineAgent {
        env: seen_env,
        agent: seen_agent,
        ..
    } = hub
        .online_agent("mine", AgentOptions::new(&agent_id()))
        .await;
    let OnlineAgent {
        env: hidden_env,
        agent: hidden_agent,
        ..
    } = hub
        .online_agent("theirs", AgentOptions::new(&agent_id()))
        .await;
    let (_, key) = key_with(&hub, &["environments:read"], Some(vec![seen_env])).await;
    let auth = bearer(&key);
    let mut sse = Sse::open(&hub, &[("authorization", &auth)]).await;
    hidden_agent.send_text(&container_frame("die")).await;
    seen_agent.send_text(&container_frame("stop")).await;
    let ev = sse.wait_kind("container", Duration::from_secs(5)).await;
    assert_eq!(
        ev["envId"], seen_env,
        "the other environment's event is not sent"
    );
    assert_eq!(ev["detail"]["action"], "stop");
    let (_, list) = hub
        .api(Method::GET, "/api/events?since=0", Some(&key), None)
        .await;
    assert!(list["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["envId"] == seen_env));
    // No environments:read, no events.
    let (_, nokey) = key_with(&hub, &["images:push"], None).await;
    let (status, _) = hub
        .api(Method::GET, "/api/events", Some(&nokey), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let _ = hidden_env;
    hub.stop().await;
}

#[tokio::test]
async fn status_survives_a_hub_restart() {
    let hub = TestHub::start().await;
    let id = agent_id();
    let OnlineAgent { env, agent, .. } = hub.online_agent("persist", AgentOptions::new(&id)).await;
    agent.send_text(&metrics_frame(now(), 42.0)).await;
    eventually(Duration::from_secs(5), "lastMetrics", || async {
        hub.env_json(env).await["lastMetrics"]["cpuUsage"]
            .as_f64()
            .filter(|c| *c == 42.0)
    })
    .await;
    agent.kill();
    let before = hub
        .wait_status(env, "offline", Duration::from_secs(5))
        .await;
    assert_eq!(before["disconnectCount"], 1);

    let hub = hub.restart().await;
    let after = hub.env_json(env).await;
    assert_eq!(after["status"], "offline");
    assert_eq!(
        after["lastSeen"].as_str().map(|s| &s[..19]),
        before["lastSeen"].as_str().map(|s| &s[..19]),
        "last-seen kept to the second"
    );
    assert_eq!(after["disconnectReason"], "closed");
    assert_eq!(after["disconnectCount"], 1);
    assert_eq!(after["agent"]["id"], id.as_str());
    assert_eq!(after["lastMetrics"]["cpuUsage"], 42.0);

    // An agent live while the hub stops: reason "shutdown", one more.
    let (_, token) = hub.create_token(env, None).await;
    let _again = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&id))
        .await
        .unwrap();
    let online = hub.wait_status(env, "online", Duration::from_secs(5)).await;
    assert!(online["disconnectReason"].is_null());
    let hub = hub.restart().await;
    let after = hub.env_json(env).await;
    assert_eq!(after["status"], "offline");
    assert_eq!(after["disconnectReason"], "shutdown");
    assert_eq!(after["disconnectCount"], 2);
    hub.stop().await;
}
