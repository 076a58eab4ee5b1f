//! Docker faults the real daemon cannot show on demand (fake socket):
//! REQUEST_TIMEOUT as an idle timeout for non-streaming requests only, and
//! a stream cut mid-body reported as a failure, never as "completed".

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use mooring_protocol::Frame;

fn scratch() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mf-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_docker_fails_a_non_streaming_request_after_request_timeout() {
    let dir = scratch();
    let (sock, docker) = fake_docker::start(&dir);
    let hub = FakeHub::start().await;
    let mut cfg = config(&hub.url(), &sock);
    cfg.request_timeout = Duration::from_secs(1);
    let agent = start_agent(cfg).await;
    let mut conn = hub.accept_welcomed().await;

    let t = Instant::now();
    match conn.call(request("GET", "/stall-headers")).await {
        Frame::Error(e) => {
            assert_eq!(e.code.as_deref(), Some("DOCKER_ERROR"));
            assert!(
                e.text().contains("did not answer within 1s"),
                "{}",
                e.text()
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(5));

    match conn.call(request("GET", "/stall-body")).await {
        Frame::Error(e) => {
            assert_eq!(e.code.as_deref(), Some("READ_ERROR"));
            assert!(e.text().contains("sent nothing for 1s"), "{}", e.text());
        }
        other => panic!("{other:?}"),
    }
    // Both stalled daemon connections were closed by the agent.
    let d = docker.clone();
    eventually("stalled connections closed", Duration::from_secs(5), || {
        d.stalls_closed.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(agent.handle.stats().in_flight, 0);
    agent.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_does_not_apply_to_streams() {
    let dir = scratch();
    let (sock, _docker) = fake_docker::start(&dir);
    let hub = FakeHub::start().await;
    let mut cfg = config(&hub.url(), &sock);
    cfg.request_timeout = Duration::from_secs(1);
    let agent = start_agent(cfg).await;
    let mut conn = hub.accept_welcomed().await;
    // Lines 1.5 s apart, longer than REQUEST_TIMEOUT: all arrive.
    let s = conn.stream(request("GET", "/slow")).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.text(), "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");
    let end = s.end.unwrap();
    assert_eq!(
        (end.reason.as_deref(), end.status_code),
        (Some("completed"), Some(200))
    );
    agent.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_body_ends_with_an_error_not_completed() {
    let dir = scratch();
    let (sock, _docker) = fake_docker::start(&dir);
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &sock)).await;
    let mut conn = hub.accept_welcomed().await;
    let s = conn.stream(request("GET", "/cut")).await;
    assert_eq!(s.text(), "{\"status\":\"one\"}\n");
    assert_eq!(s.errors.len(), 1, "{s:?}");
    assert_eq!(s.errors[0].code.as_deref(), Some("READ_ERROR"));
    let end = s.end.unwrap();
    assert_eq!(end.reason.as_deref(), Some("error"));
    assert_eq!(end.status_code, Some(200));
    assert!(end.error.is_some());
    // Non-streaming: the same cut is a READ_ERROR, not a truncated 200.
    match conn.call(request("GET", "/cut")).await {
        Frame::Error(e) => assert_eq!(e.code.as_deref(), Some("READ_ERROR")),
        other => panic!("{other:?}"),
    }
    agent.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
