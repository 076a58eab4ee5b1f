//! Telemetry through the real link: with telemetry on, `hello` announces
//! `metrics` and `events` (probed on the rig's real Docker), and `metrics`
//! and `container_event` frames reach the hub over the same connection,
//! across a reconnect too.

mod common;

use std::time::Duration;

use common::*;
use mooring_protocol::{caps, Frame};

/// The next frame of the wanted kind, skipping pings and others.
async fn next_of(conn: &mut HubConn, pick: impl Fn(&Frame) -> bool) -> Frame {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn.recv_within(left).await {
            Ok(Some(f)) if pick(&f) => return f,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("link closed while waiting"),
            Err(()) => panic!("the wanted frame did not arrive in 20 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_container_events_flow_to_the_hub_and_survive_a_reconnect() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let mut cfg = config(&hub.url(), &rig.docker_sock);
    cfg.metrics_interval = Some(Duration::from_millis(300));
    let agent = start_agent(cfg).await;
    let mut conn = hub.accept_welcomed().await;
    for cap in [caps::METRICS, caps::EVENTS] {
        assert!(
            conn.hello.capabilities.iter().any(|c| c == cap),
            "{cap} works on the rig but was not announced: {:?}",
            conn.hello.capabilities
        );
    }
    let Frame::Metrics(m) = next_of(&mut conn, |f| matches!(f, Frame::Metrics(_))).await else {
        unreachable!()
    };
    assert!(m.metrics.cpu_cores >= 1 && m.metrics.memory_total > 0);

    let name = format!("tl-{}", uuid::Uuid::new_v4().simple());
    let id = rig
        .docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            &rig.image,
            "sleep",
            "30",
        ])
        .expect("docker run");
    let started = next_of(&mut conn, |f| {
        matches!(f, Frame::ContainerEvent(e) if e.event.container_id == id && e.event.action == "start")
    })
    .await;
    let Frame::ContainerEvent(ev) = started else {
        unreachable!()
    };
    assert_eq!(ev.event.container_name, name);

    // Drop the link: the agent reconnects, and events keep flowing there.
    drop(conn);
    let mut conn = hub.accept_welcomed().await;
    rig.docker_ok(&["rm", "-f", &name]).expect("docker rm");
    next_of(&mut conn, |f| {
        matches!(f, Frame::ContainerEvent(e) if e.event.container_id == id && e.event.action == "destroy")
    })
    .await;
    agent.stop().await;
}
