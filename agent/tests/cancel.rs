//! Cancellation reaches the real daemon: a hub `stream_end`, a lost link and
//! agent shutdown each end the Docker request itself (the daemon's own
//! count of `/events` listeners drops), not just the agent's bookkeeping.
//!
//! The rig daemon is shared, so counts are compared relative to what this
//! test itself added.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use mooring_protocol::{Frame, StreamEnd};
use mooring_tests::rig::Rig;
use tokio_tungstenite::tungstenite::Message;

/// Opens a streaming `GET /events` and waits for its first frame (status).
async fn open_events(conn: &mut HubConn) -> String {
    let mut ev = request("GET", "/events");
    ev.streaming = true;
    let id = ev.request_id.clone();
    conn.send(&Frame::Request(ev)).await;
    match conn.recv_for(&id).await {
        Frame::Stream(c) => assert_eq!(c.status_code, Some(200)),
        other => panic!("{other:?}"),
    }
    id
}

/// The tests of this file count the same daemon-wide listeners: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn listeners_reach(rig: &Rig, what: &str, cond: impl Fn(u64) -> bool) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = events_listeners(rig).await;
        if cond(n) {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemon listeners stuck at {n}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_stream_end_cancels_events_at_the_daemon() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    let before = events_listeners(&rig).await;
    let id = open_events(&mut conn).await;
    let during = listeners_reach(&rig, "events opened", |n| n > before).await;
    assert_eq!(agent.handle.stats().open_docker_responses, 1);

    conn.send(&Frame::StreamEnd(StreamEnd {
        request_id: id.clone(),
        reason: Some("cancelled".into()),
        ..Default::default()
    }))
    .await;
    // The agent confirms once, with the status it had.
    match conn.recv_for(&id).await {
        Frame::StreamEnd(e) => {
            assert_eq!(e.reason.as_deref(), Some("cancelled"));
            assert_eq!(e.status_code, Some(200));
        }
        other => panic!("{other:?}"),
    }
    listeners_reach(&rig, "events cancelled", |n| n < during).await;
    let s = agent.handle.stats();
    assert_eq!((s.in_flight, s.open_docker_responses), (0, 0), "{s:?}");
    // Nothing more arrives for that request.
    let mut ev = request("GET", "/_ping");
    ev.streaming = false;
    let ping_id = ev.request_id.clone();
    conn.send(&Frame::Request(ev)).await;
    loop {
        let f = conn.recv().await.unwrap();
        assert_ne!(
            f.request_id(),
            Some(id.as_str()),
            "frame after cancel: {f:?}"
        );
        if f.request_id() == Some(ping_id.as_str()) {
            break;
        }
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_loss_cancels_every_in_flight_request() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    let before = events_listeners(&rig).await;
    open_events(&mut conn).await;
    open_events(&mut conn).await;
    let during = listeners_reach(&rig, "two event streams", |n| n >= before + 2).await;
    assert_eq!(agent.handle.stats().in_flight, 2);

    drop(conn); // the hub vanishes without a close frame
    let handle = agent.handle.clone();
    eventually("relays stopped", Duration::from_secs(10), || {
        let s = handle.stats();
        s.in_flight == 0 && s.open_docker_responses == 0
    })
    .await;
    listeners_reach(&rig, "link lost", |n| n + 2 <= during).await;
    // The agent reconnects; the old requests do not come back.
    let mut conn = hub.accept_welcomed().await;
    let Frame::Response(r) = conn.call(request("GET", "/_ping")).await else {
        panic!()
    };
    assert_eq!(r.status_code, 200);
    assert_eq!(agent.handle.stats().in_flight, 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_a_close_frame_and_cancels_in_flight_work() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    let before = events_listeners(&rig).await;
    open_events(&mut conn).await;
    let during = listeners_reach(&rig, "events opened", |n| n > before).await;

    let started = std::time::Instant::now();
    agent.shutdown.cancel();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match conn.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("link ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("no close frame within 5 s");
    assert!(close.is_some_and(|f| f.reason.contains("shutting down")));
    tokio::time::timeout(Duration::from_secs(5), agent.task)
        .await
        .expect("run did not return within 5 s")
        .unwrap()
        .unwrap();
    // Every relay task ended (no drain deadline hit, nothing left open).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let s = agent.handle.stats();
    assert_eq!(
        (s.in_flight, s.open_docker_responses, s.connected),
        (0, 0, false),
        "{s:?}"
    );
    listeners_reach(&rig, "agent stopped", |n| n < during).await;
}
