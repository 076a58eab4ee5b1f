//! The agent endpoint: handshake, token checks, one link per environment,
//! liveness, and failure of pending work when a link dies.

mod common;

use std::time::Duration;

use axum::http::Method;
use common::{agent_id, AgentOptions, OnlineAgent, TestAgent, TestHub};
use mooring_hub::envs::{DockerCall, EnvError};
use mooring_protocol::Headers;

fn call(path: &str) -> DockerCall {
    DockerCall {
        method: http::Method::GET,
        path: path.into(),
        headers: Headers::new(),
        body: None,
    }
}

async fn refused(hub: &TestHub, token: &str) -> common::Refused {
    match TestAgent::connect(&hub.ws_url(), token, AgentOptions::new(&agent_id())).await {
        Ok(_) => panic!("agent with token {token:?} was accepted"),
        Err(r) => r,
    }
}

fn assert_refusal(r: &common::Refused, text: &str) {
    let err = r.error.as_ref().expect("an error frame before the close");
    assert_eq!(err.error.as_deref(), Some(text), "{err:?}");
    assert_eq!(
        err.message.as_deref(),
        Some(text),
        "both fields carry the text: {err:?}"
    );
    let close = r.close.as_ref().expect("a close frame");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
}

#[tokio::test]
async fn agent_with_good_token_goes_online_with_its_fields() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("nas").await;
    let before = hub.env_json(env).await;
    assert_eq!(before["status"], "offline");
    assert!(before["agent"].is_null());
    let (_, token) = hub.create_token(env, None).await;
    let id = agent_id();
    let mut opts = AgentOptions::new(&id);
    opts.capabilities = vec!["metrics".into()];
    let agent = TestAgent::connect(&hub.ws_url(), &token, opts)
        .await
        .expect("accepted");
    assert_eq!(agent.welcome.environment_id, Some(env));
    assert_eq!(agent.welcome.version.as_deref(), Some("1.0"));
    assert!(agent
        .welcome
        .server_id
        .as_deref()
        .is_some_and(|s| !s.is_empty()));

    let shown = hub.wait_status(env, "online", Duration::from_secs(5)).await;
    let a = &shown["agent"];
    assert_eq!(a["id"], id.as_str());
    assert_eq!(a["name"], format!("agent-{id}"));
    assert_eq!(a["version"], "test-0.1");
    assert_eq!(a["dockerVersion"], "20.10.24");
    assert_eq!(a["hostname"], format!("host-{id}"));
    assert_eq!(a["capabilities"], serde_json::json!(["metrics"]));
    assert!(a["connectedAt"].as_str().unwrap().ends_with('Z'));
    assert!(a["lastSeen"].as_str().is_some());
    // The hub pings every second; the agent answers.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(agent.seen.lock().unwrap().pings >= 1);
    assert_eq!(hub.env_json(env).await["status"], "online");
    // Recorded durably too.
    let stored = hub.state.store.get_environment(env).await.unwrap();
    assert_eq!(stored.agent.unwrap().id, id);
    hub.stop().await;
}

#[tokio::test]
async fn bad_missing_expired_and_revoked_tokens_are_refused() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("edge1").await;
    let (_, good) = hub.create_token(env, None).await;

    let r = refused(&hub, "").await;
    assert_refusal(&r, "No token provided");

    // Right prefix, wrong rest; and a completely unknown token.
    let wrong = format!("{}{}", &good[..8], "x".repeat(35));
    assert_refusal(&refused(&hub, &wrong).await, "Invalid token");
    assert_refusal(
        &refused(&hub, "totally-unknown-token-value-123456789").await,
        "Invalid token",
    );

    let (revoked_id, revoked) = hub.create_token(env, None).await;
    let (status, _) = hub
        .admin(Method::DELETE, &format!("/api/tokens/{revoked_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_refusal(&refused(&hub, &revoked).await, "Token revoked");

    let (_, expiring) = hub.create_token(env, Some(1)).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_refusal(&refused(&hub, &expiring).await, "Token expired");

    // The good token still works after all these failures (4 < 5 free).
    TestAgent::connect(&hub.ws_url(), &good, AgentOptions::new(&agent_id()))
        .await
        .expect("good token accepted");
    hub.stop().await;
}

#[tokio::test]
async fn failed_auth_delays_escalate_per_ip_with_retry_after() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("edge1").await;
    let (_, good) = hub.create_token(env, None).await;
    for _ in 0..5 {
        let r = refused(&hub, "bad-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
        assert!(r.error.unwrap().retry_after.is_none());
    }
    let r = refused(&hub, "bad-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(r.error.unwrap().retry_after, Some(1), "first delay is 1 s");
    // While blocked even the good token waits, but only briefly.
    let r = refused(&hub, &good).await;
    let err = r.error.unwrap();
    assert_eq!(err.text(), "Too many failed attempts");
    assert!(err.retry_after.is_some_and(|s| s <= 1), "{err:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    TestAgent::connect(&hub.ws_url(), &good, AgentOptions::new(&agent_id()))
        .await
        .expect("a correct agent is not locked out once the short delay passed");
    hub.stop().await;
}

#[tokio::test]
async fn another_agent_on_a_live_environment_is_refused_and_the_conflict_shown() {
    let hub = TestHub::start().await;
    let first_id = agent_id();
    let OnlineAgent {
        env,
        token,
        agent: first,
        ..
    } = hub
        .online_agent("shared", AgentOptions::new(&first_id))
        .await;

    let second_id = agent_id();
    let r = match TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&second_id)).await {
        Ok(_) => panic!("second agent accepted while the first is alive"),
        Err(r) => r,
    };
    let err = r.error.expect("error frame");
    assert!(
        err.text().contains(&first_id),
        "names the live agent: {}",
        err.text()
    );
    assert_eq!(u16::from(r.close.unwrap().code), 1008);

    let shown = hub.env_json(env).await;
    assert_eq!(shown["status"], "conflict");
    assert_eq!(
        shown["agent"]["id"],
        first_id.as_str(),
        "the live agent keeps the link"
    );
    assert_eq!(shown["conflict"]["agentId"], second_id.as_str());
    assert!(!first.is_closed());
    hub.stop().await;
}

#[tokio::test]
async fn the_same_agent_reconnecting_replaces_its_link() {
    let hub = TestHub::start().await;
    let id = agent_id();
    let OnlineAgent {
        env,
        token,
        agent: old,
        ..
    } = hub.online_agent("nas", AgentOptions::new(&id)).await;
    let old_conn = hub.state.links.get(env).unwrap().conn_id();

    // A request pending on the old link (the test agent does not relay).
    let client = hub.state.env_client(env).await.unwrap();
    let pending = tokio::spawn(async move { client.request(call("/version")).await });
    old.wait_requests(1, Duration::from_secs(5)).await;

    let new = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&id))
        .await
        .expect("same agent id replaces its stale link");
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    match result {
        Err(EnvError::Disconnected(reason)) => assert!(reason.contains("replaced"), "{reason}"),
        other => panic!("pending request should fail with the replacement: {other:?}"),
    }
    old.wait_closed(Duration::from_secs(5)).await;
    let link = hub.state.links.get(env).unwrap();
    assert_ne!(link.conn_id(), old_conn);
    assert!(!new.is_closed());
    assert_eq!(hub.env_json(env).await["status"], "online");
    hub.stop().await;
}

#[tokio::test]
async fn a_half_open_live_link_is_replaced_by_a_newcomer() {
    let hub = TestHub::start().await;
    let OnlineAgent {
        env,
        token,
        agent: old,
        ..
    } = hub
        .online_agent("reinstalled", AgentOptions::new(&agent_id()))
        .await;
    old.go_silent();
    let new_id = agent_id();
    let started = std::time::Instant::now();
    let _new = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&new_id))
        .await
        .expect("a dead link does not block a reinstalled host");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let shown = hub.wait_status(env, "online", Duration::from_secs(5)).await;
    assert_eq!(shown["agent"]["id"], new_id.as_str());
    hub.stop().await;
}

#[tokio::test]
async fn a_killed_agent_goes_offline_and_its_pending_stream_fails_at_once() {
    let hub = TestHub::start().await;
    let OnlineAgent { env, agent, .. } = hub
        .online_agent("nas", AgentOptions::new(&agent_id()))
        .await;
    let client = hub.state.env_client(env).await.unwrap();
    let mut stream = client.stream(call("/events")).await.unwrap();
    agent.wait_requests(1, Duration::from_secs(5)).await;

    let killed_at = std::time::Instant::now();
    agent.kill();
    let result = tokio::time::timeout(Duration::from_secs(5), stream.next_chunk())
        .await
        .expect("the stream fails within seconds, not at its idle timeout");
    match result {
        Err(EnvError::Disconnected(_)) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(EnvError::Disconnected("x".into())
        .to_string()
        .starts_with("Edge agent disconnected"));
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    hub.wait_status(env, "offline", Duration::from_secs(5))
        .await;
    assert!(matches!(
        hub.state
            .env_client(env)
            .await
            .map(|_| ())
            .unwrap_err()
            .status()
            .as_u16(),
        503
    ));
    hub.stop().await;
}

#[tokio::test]
async fn a_silent_agent_is_dropped_after_the_silence_timeout() {
    let hub = TestHub::start().await; // ping 1 s, silence 3 s
    let OnlineAgent { env, agent, .. } = hub
        .online_agent("nas", AgentOptions::new(&agent_id()))
        .await;
    let client = hub.state.env_client(env).await.unwrap();
    let mut stream = client.stream(call("/events")).await.unwrap();
    agent.wait_requests(1, Duration::from_secs(5)).await;
    agent.go_silent();
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), stream.next_chunk())
        .await
        .expect("the pending stream fails when the link is declared dead");
    match result {
        Err(EnvError::Disconnected(reason)) => assert!(reason.contains("silent"), "{reason}"),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "not before the silence timeout: {waited:?}"
    );
    hub.wait_status(env, "offline", Duration::from_secs(5))
        .await;
    hub.stop().await;
}

#[tokio::test]
async fn revoking_a_token_disconnects_its_agent() {
    let hub = TestHub::start().await;
    let OnlineAgent {
        env,
        token_id,
        agent,
        ..
    } = hub
        .online_agent("nas", AgentOptions::new(&agent_id()))
        .await;
    let (status, body) = hub
        .admin(Method::DELETE, &format!("/api/tokens/{token_id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "revoked");
    agent.wait_closed(Duration::from_secs(5)).await;
    hub.wait_status(env, "offline", Duration::from_secs(5))
        .await;
    hub.stop().await;
}

#[tokio::test]
async fn deleting_an_environment_drops_its_link() {
    let hub = TestHub::start().await;
    let OnlineAgent { env, agent, .. } = hub
        .online_agent("gone", AgentOptions::new(&agent_id()))
        .await;
    let (status, _) = hub
        .admin(Method::DELETE, &format!("/api/environments/{env}"), None)
        .await;
    assert_eq!(status, 204);
    agent.wait_closed(Duration::from_secs(5)).await;
    assert!(hub.state.links.get(env).is_none());
    let (status, _) = hub
        .admin(Method::GET, &format!("/api/environments/{env}"), None)
        .await;
    assert_eq!(status, 404);
    hub.stop().await;
}

#[tokio::test]
async fn dropping_a_stream_sends_cancelled_to_the_agent() {
    let hub = TestHub::start().await;
    let OnlineAgent { env, agent, .. } = hub
        .online_agent("nas", AgentOptions::new(&agent_id()))
        .await;
    let client = hub.state.env_client(env).await.unwrap();
    let stream = client.stream(call("/events")).await.unwrap();
    let req = agent
        .wait_requests(1, Duration::from_secs(5))
        .await
        .remove(0);
    assert!(req.streaming);
    assert_eq!(hub.state.links.get(env).unwrap().pending_count(), 1);
    drop(stream);
    agent
        .wait_cancelled(&req.request_id, Duration::from_secs(5))
        .await;
    assert_eq!(hub.state.links.get(env).unwrap().pending_count(), 0);
    hub.stop().await;
}

#[tokio::test]
async fn malformed_frames_are_ignored_and_the_link_lives_on() {
    let hub = TestHub::start().await;
    let OnlineAgent { env, agent, .. } = hub
        .online_agent("nas", AgentOptions::new(&agent_id()))
        .await;
    agent.send_text("this is not json").await;
    agent.send_text(r#"{"no":"type"}"#).await;
    agent.send_text(r#"{"type":"from_the_future","x":1}"#).await;
    agent
        .send_text(r#"{"type":"response","requestId":"nobody-waits"}"#)
        .await;
    // A malformed answer to a pending request fails that request at once.
    let client = hub.state.env_client(env).await.unwrap();
    let pending = tokio::spawn(async move { client.request(call("/version")).await });
    let req = agent
        .wait_requests(1, Duration::from_secs(5))
        .await
        .remove(0);
    agent
        .send_text(&format!(
            r#"{{"type":"response","requestId":"{}","statusCode":"bad"}}"#,
            req.request_id
        ))
        .await;
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(EnvError::Docker(ref m)) if m.contains("malformed")),
        "{result:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!agent.is_closed());
    assert_eq!(hub.env_json(env).await["status"], "online");
    hub.stop().await;
}

#[tokio::test]
async fn a_reconnect_storm_is_throttled_with_retry_after() {
    let settings = mooring_hub::Settings {
        reconnects_per_minute: 2,
        ..common::fast_settings()
    };
    let hub = TestHub::start_with(settings, None).await;
    let env = hub.create_edge_env("flappy").await;
    let (_, token) = hub.create_token(env, None).await;
    let id = agent_id();
    for _ in 0..2 {
        let a = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&id))
            .await
            .unwrap();
        a.kill();
    }
    let r = match TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&id)).await {
        Ok(_) => panic!("third connection within a minute accepted"),
        Err(r) => r,
    };
    let err = r.error.unwrap();
    assert!(
        err.text()
            .starts_with("Reconnection throttled. Retry after "),
        "{err:?}"
    );
    assert!(
        err.retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "{err:?}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_first_frame_that_is_not_hello_is_refused() {
    let hub = TestHub::start().await;
    let r =
        match TestAgent::connect_raw(&hub.ws_url(), r#"{"type":"ping"}"#, AgentOptions::new("x"))
            .await
        {
            Ok(_) => panic!("accepted without hello"),
            Err(r) => r,
        };
    assert!(r.error.unwrap().text().contains("hello"));
    assert_eq!(u16::from(r.close.unwrap().code), 1008);
    hub.stop().await;
}

#[tokio::test]
async fn a_full_pending_table_refuses_new_calls_with_busy() {
    let settings = mooring_hub::Settings {
        max_pending_per_link: 2,
        ..common::fast_settings()
    };
    let hub = TestHub::start_with(settings, None).await;
    let OnlineAgent {
        env, agent: _agent, ..
    } = hub
        .online_agent("nas", AgentOptions::new(&agent_id()))
        .await;
    let client = hub.state.env_client(env).await.unwrap();
    let a = client.stream(call("/events")).await.unwrap();
    let _b = client.stream(call("/events")).await.unwrap();
    match client.stream(call("/events")).await {
        Err(EnvError::Busy(msg)) => assert!(msg.contains("2 requests"), "{msg}"),
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(a);
    client
        .stream(call("/events"))
        .await
        .expect("a freed slot is usable again");
    hub.stop().await;
}

#[tokio::test]
async fn a_stalled_stream_consumer_fails_its_stream_but_not_the_link() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let settings = mooring_hub::Settings {
        stream_buffer_chunks: 2,
        stream_stall: Duration::from_secs(1),
        ..common::fast_settings()
    };
    let hub = TestHub::start_with(settings, None).await;
    let OnlineAgent { env, agent, .. } = hub
        .online_agent(
            "nas",
            AgentOptions::new(&agent_id()).relaying_to(rig.docker_sock.clone()),
        )
        .await;
    let client = hub.state.env_client(env).await.unwrap();
    let path = format!("/images/{}/get", rig.image.replace('/', "%2F"));
    let mut slow = client.stream(call(&path)).await.unwrap();
    let req = agent
        .wait_requests(1, Duration::from_secs(5))
        .await
        .remove(0);
    // Take one chunk, then stall past the limit while the agent keeps sending.
    slow.next_chunk().await.unwrap().expect("first chunk");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut outcome = Ok(Some(bytes::Bytes::new()));
    for _ in 0..10 {
        outcome = slow.next_chunk().await;
        if !matches!(outcome, Ok(Some(_))) {
            break;
        }
    }
    match outcome {
        Err(EnvError::Busy(msg)) => assert!(msg.contains("too slow"), "{msg}"),
        other => panic!("expected the stalled stream to fail, got {other:?}"),
    }
    agent
        .wait_cancelled(&req.request_id, Duration::from_secs(5))
        .await;
    // The link carries on.
    let version = client
        .request(call("/version"))
        .await
        .expect("link still serves");
    assert_eq!(version.status, 200);
    assert_eq!(hub.env_json(env).await["status"], "online");
    hub.stop().await;
}

/// The hub pings an agent to hear from it: a quiet agent about once per
/// ping interval; an agent that keeps talking (here: its own pings) only
/// right after connecting and then every fourth interval, to keep its round
/// trip current.
#[tokio::test]
async fn the_hub_pings_quiet_agents_and_times_every_link() {
    let hub = TestHub::start().await; // ping 1 s
    let mut agents = Vec::new();
    let mut envs = Vec::new();
    for name in ["quiet", "chatty"] {
        let env = hub.create_edge_env(name).await;
        let (_, token) = hub.create_token(env, None).await;
        let agent = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&agent_id()))
            .await
            .unwrap();
        agents.push(agent);
        envs.push(env);
    }
    let chatty = &agents[1];
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(5000) {
        chatty.send_text(r#"{"type":"ping","timestamp":1}"#).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let quiet_pings = agents[0].seen.lock().unwrap().pings;
    let chatty_pings = chatty.seen.lock().unwrap().pings;
    assert!(
        (3..=7).contains(&quiet_pings),
        "a quiet agent is pinged about every second: {quiet_pings} pings in 5 s"
    );
    assert!(
        (1..=2).contains(&chatty_pings),
        "an agent that talks every 200 ms is pinged on connect and every 4 s: got {chatty_pings}"
    );
    for env in envs {
        let link = hub.state.links.get(env).expect("link");
        assert!(link.rtt_ms().is_some(), "env {env} has a round trip");
    }
    hub.stop().await;
}

/// A token revoked, or an environment deleted, by another process (the
/// admin CLI writes the store directly; the API would drop the link itself)
/// ends the link at the sweep's next store check: a third of the silence
/// timeout (1 s here, 30 s by default).
#[tokio::test]
async fn a_token_revoked_in_the_store_by_another_process_ends_its_link() {
    let hub = TestHub::start().await; // silence 3 s: store check every 1 s
    let OnlineAgent {
        env,
        token_id,
        agent,
        ..
    } = hub
        .online_agent("cli-revoked", AgentOptions::new(&agent_id()))
        .await;
    hub.state.store.revoke_token(token_id).await.unwrap();
    assert!(
        hub.state.links.get(env).is_some(),
        "not dropped by the API path"
    );
    // Panics if the hub does not close the link in time.
    let close = agent.wait_closed(Duration::from_secs(10)).await;
    let reason = close.map(|c| c.reason.to_string()).unwrap_or_default();
    assert!(reason.contains("Token revoked"), "close reason: {reason:?}");
    hub.wait_status(env, "offline", Duration::from_secs(5))
        .await;
    hub.stop().await;
}

/// The sweep records every live agent's last-seen time in the store (in
/// one batch, every third of the silence timeout: 1 s here), so it
/// survives a hub restart.
#[tokio::test]
async fn the_sweep_records_last_seen_in_the_store() {
    let hub = TestHub::start().await; // ping 1 s, silence 3 s
    let OnlineAgent {
        env, agent: _agent, ..
    } = hub
        .online_agent("seen", AgentOptions::new(&agent_id()))
        .await;
    let first = hub.state.store.get_environment(env).await.unwrap();
    let connected = first.agent.expect("agent recorded").connected_at;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = hub.state.store.get_environment(env).await.unwrap();
        let seen = stored.agent.expect("agent").last_seen;
        if seen > connected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_seen {seen} never moved past connected_at {connected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.stop().await;
}
