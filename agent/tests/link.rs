//! The link: handshake, liveness, refusal and reconnect behaviour against a
//! fake hub, with the rig's real Docker behind the agent.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mooring_protocol::{caps, ErrorFrame, Frame, Ping};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_carries_identity_docker_version_and_only_wired_capabilities() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let cfg = config(&hub.url(), &rig.docker_sock);
    let agent_id = cfg.agent_id.clone();
    let agent = start_agent(cfg).await;
    let conn = hub.accept_welcomed().await;
    let h = &conn.hello;
    assert_eq!(h.agent_id, agent_id);
    assert_eq!(h.agent_name, "test-agent");
    assert_eq!(h.token, "test-token-123");
    assert_eq!(h.protocol, "1.0");
    assert_eq!(h.version, mooring_agent::VERSION);
    assert_eq!(h.docker_version, rig.docker_version);
    assert!(!h.hostname.is_empty());
    // Telemetry off in this config: neither metrics nor events announced.
    assert_eq!(
        h.capabilities,
        vec![
            caps::STREAM_STATUS.to_string(),
            caps::BINARY_STREAM.to_string()
        ]
    );
    for absent in [caps::EXEC, caps::METRICS, caps::EVENTS, caps::COMPOSE] {
        assert!(
            !h.capabilities.iter().any(|c| c == absent),
            "{absent} announced but not wired"
        );
    }
    let handle = agent.handle.clone();
    eventually("connected", WAIT, || handle.stats().connected).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_ping_is_answered_with_pong_carrying_the_timestamp() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    conn.send(&Frame::Ping(Ping {
        timestamp: Some(1764860000000u64.into()),
    }))
    .await;
    loop {
        match conn.recv().await {
            Some(Frame::Pong(p)) => {
                assert_eq!(p.timestamp, Some(1764860000000u64.into()));
                break;
            }
            Some(_) => continue,
            None => panic!("link closed"),
        }
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_pings_on_its_heartbeat_and_drops_a_silent_hub() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let mut cfg = config(&hub.url(), &rig.docker_sock);
    cfg.heartbeat_interval = Duration::from_millis(300);
    cfg.idle_timeout = Duration::from_secs(2);
    let agent = start_agent(cfg).await;
    let mut conn = hub.accept_welcomed().await;
    // The hub reads but never sends anything: the agent pings, then gives up.
    let started = Instant::now();
    let mut pings = 0;
    loop {
        match conn.recv_within(Duration::from_secs(10)).await {
            Ok(Some(Frame::Ping(_))) => pings += 1,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(()) => panic!("agent kept a silent link open for 10 s"),
        }
    }
    let lasted = started.elapsed();
    assert!(pings >= 3, "only {pings} pings in {lasted:?}");
    assert!(
        lasted >= Duration::from_millis(1800) && lasted < Duration::from_secs(8),
        "{lasted:?}"
    );
    // ...and comes back.
    let again = hub.accept().await;
    assert_eq!(again.hello.token, "test-token-123");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_on_hello_backs_off_and_honours_retry_after() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let mut cfg = config(&hub.url(), &rig.docker_sock);
    cfg.reconnect_delay = Duration::from_millis(200);
    cfg.max_reconnect_delay = Duration::from_secs(10);
    let agent = start_agent(cfg).await;
    // Refuse four times without retryAfter: gaps must grow (no tight loop).
    let mut times = Vec::new();
    for _ in 0..4 {
        let mut conn = hub.accept().await;
        times.push(Instant::now());
        let mut err = ErrorFrame::new("Invalid token");
        err.error = None; // the reference hub only fills `message`
        conn.send(&Frame::Error(err)).await;
        let _ = conn.ws.close(None).await;
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Jitter takes at most a quarter off: 200 ms, 400 ms, 800 ms nominal.
    assert!(gaps[0] >= Duration::from_millis(140), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(290), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(590), "{gaps:?}");
    assert!(gaps[2] > gaps[0], "{gaps:?}");
    // retryAfter wins over a shorter backoff.
    let mut conn = hub.accept().await;
    conn.send(&Frame::Error(ErrorFrame {
        retry_after: Some(3),
        ..ErrorFrame::new("Reconnection throttled. Retry after 3s.")
    }))
    .await;
    let refused = Instant::now();
    let _ = conn.ws.close(None).await;
    let conn = hub.accept().await;
    let waited = refused.elapsed();
    assert!(
        waited >= Duration::from_millis(2900),
        "retryAfter ignored: {waited:?}"
    );
    assert_eq!(conn.hello.agent_name, "test-agent");
    assert!(!agent.handle.stats().connected);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_backoff_after_a_hub_restart_and_resets_after_welcome() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let addr = hub.addr;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let conn = hub.accept_welcomed().await;
    let first_id = conn.hello.agent_id.clone();
    let handle = agent.handle.clone();
    eventually("connected", WAIT, || handle.stats().connected).await;

    // The hub goes away: listener and connection closed.
    drop(conn);
    drop(hub);
    eventually("disconnected", WAIT, || !handle.stats().connected).await;
    let dials_before = handle.stats().dial_attempts;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dials_down = handle.stats().dial_attempts - dials_before;
    // 200 ms doubling to 2 s: about 4-5 attempts in 3 s, not hundreds.
    assert!(
        (2..=8).contains(&dials_down),
        "{dials_down} dial attempts in 3 s"
    );

    // The hub is back on the same port: the agent comes back by itself.
    let hub = FakeHub::start_on(addr).await;
    let back = Instant::now();
    let conn = hub.accept_welcomed().await;
    assert!(
        back.elapsed() < Duration::from_secs(4),
        "{:?}",
        back.elapsed()
    );
    assert_eq!(conn.hello.agent_id, first_id, "agent id must be stable");
    eventually("reconnected", WAIT, || handle.stats().connected).await;
    assert_eq!(handle.stats().links_welcomed, 2);

    // After a welcome the backoff starts over: the next drop is retried fast.
    drop(conn);
    let dropped = Instant::now();
    let _conn = hub.accept_welcomed().await;
    assert!(
        dropped.elapsed() < Duration::from_millis(1500),
        "{:?}",
        dropped.elapsed()
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_info_report_link_and_docker_state() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let addr = agent.handle.health_addr().unwrap();
    let (status, body) = http_get(addr, "/_hawser/health").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["mode"], "edge");
    assert_eq!(v["connected"], false);

    let _conn = hub.accept_welcomed().await;
    let handle = agent.handle.clone();
    eventually("connected", WAIT, || handle.stats().connected).await;
    let (_, body) = http_get(addr, "/_hawser/health").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["connected"], true);

    let (status, body) = http_get(addr, "/_hawser/info").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["agentName"], "test-agent");
    assert_eq!(v["mode"], "edge");
    assert_eq!(v["dockerVersion"], rig.docker_version);
    assert_eq!(v["apiVersion"], "1.41");
    assert!(!body.contains("test-token-123"), "token leaked: {body}");
    let (status, _) = http_get(addr, "/nope").await;
    assert_eq!(status, 404);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_down_still_connects_as_unknown_and_reports_unhealthy() {
    // A socket file nobody listens on: Docker "down", not misconfigured.
    let dir = std::env::temp_dir().join(format!("ma-{}", &uuid::Uuid::new_v4().to_string()[..8]));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("d.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &sock)).await;
    let mut conn = hub.accept_welcomed().await;
    assert_eq!(conn.hello.docker_version, "unknown");
    let (status, body) = http_get(agent.handle.health_addr().unwrap(), "/_hawser/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"unhealthy\""), "{body}");
    // A request while Docker is down: a DOCKER_ERROR, not silence.
    match conn.call(request("GET", "/_ping")).await {
        Frame::Error(e) => {
            assert_eq!(e.code.as_deref(), Some("DOCKER_ERROR"));
            assert!(e.text().contains("d.sock"), "{}", e.text());
        }
        other => panic!("{other:?}"),
    }
    // Streaming: error, then exactly one stream_end.
    let s = conn.stream(request("GET", "/events")).await;
    assert_eq!(s.errors.len(), 1, "{s:?}");
    assert_eq!(s.end.unwrap().reason.as_deref(), Some("error"));
    agent.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
