//! Backpressure, end to end and out of process: a fake Docker socket
//! streams 1 GiB as fast as it can, the hub reads slowly, and the agent's
//! resident memory stays bounded while hundreds of MiB pass through. The
//! fake daemon also sees the brake directly: it cannot get far ahead of
//! what the hub has read, and a hub cancel closes its connection.
//!
//! A fake Docker is used because the real one cannot produce a 1 GiB
//! stream on demand.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_docker::{self, GIB, MIB};
use common::*;
use futures_util::StreamExt;
use mooring_protocol::{Frame, StreamEnd};
use tokio_tungstenite::tungstenite::Message;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mb-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn_agent(dir: &Path, sock: &Path, url: &str) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_mooring-agent"))
        .env_clear()
        .env("DOCKHAND_SERVER_URL", url)
        .env("TOKEN", "t")
        .env("DOCKER_SOCKET", sock)
        .env("MOORING_STATE_DIR", dir)
        .env("PORT", "0")
        .env("MOORING_LISTEN_ADDR", "127.0.0.1")
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_docker_stream_over_a_slow_link_keeps_agent_memory_bounded() {
    let dir = scratch();
    let (sock, docker) = fake_docker::start(&dir);
    let hub = FakeHub::start().await;
    let mut child = spawn_agent(&dir, &sock, &hub.url());
    let pid = child.0.id();
    let mut conn = hub.accept_welcomed().await;
    assert_eq!(conn.hello.docker_version, "fake-1.0");

    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let mut big = request("GET", "/big");
    big.streaming = true;
    let id = big.request_id.clone();
    conn.send(&Frame::Request(big)).await;
    let started = Instant::now();
    let target = 320 * MIB;
    let mut received: u64 = 0;
    let mut frames: u64 = 0;
    let mut max_lead: u64 = 0;
    while received < target {
        let msg = tokio::time::timeout(Duration::from_secs(20), conn.ws.next())
            .await
            .expect("stream stalled")
            .expect("link closed")
            .unwrap();
        let Message::Text(text) = msg else { continue };
        match Frame::decode(&text).unwrap() {
            Frame::Stream(c) if c.request_id == id => received += c.data.len() as u64,
            Frame::StreamEnd(e) => panic!("stream ended early: {e:?}"),
            _ => {}
        }
        frames += 1;
        // The slow link: about 1 ms per frame, well below what Docker offers.
        if frames.is_multiple_of(4) {
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        let lead = docker
            .written
            .load(Ordering::SeqCst)
            .saturating_sub(received);
        max_lead = max_lead.max(lead);
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "too slow: {received} bytes"
        );
    }
    let peak_mib = peak.load(Ordering::SeqCst) / 1024;
    eprintln!(
        "streamed {} MiB in {:?}; agent peak RSS {peak_mib} MiB; Docker's max lead {} MiB",
        received / MIB,
        started.elapsed(),
        max_lead / MIB
    );
    assert!(peak.load(Ordering::SeqCst) > 0, "RSS never sampled");
    assert!(peak_mib < 200, "agent RSS reached {peak_mib} MiB");
    // Without backpressure Docker would be hundreds of MiB ahead by now.
    assert!(
        max_lead < 64 * MIB,
        "Docker ran {} MiB ahead of the hub",
        max_lead / MIB
    );
    assert!(docker.written.load(Ordering::SeqCst) < GIB);

    // The hub cancels: the agent closes the daemon connection mid-body.
    conn.send(&Frame::StreamEnd(StreamEnd {
        request_id: id.clone(),
        reason: Some("cancelled".into()),
        ..Default::default()
    }))
    .await;
    let d = docker.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.big_closed.load(Ordering::SeqCst) {
        // Keep reading so the agent is never blocked on the link.
        let _ = tokio::time::timeout(Duration::from_millis(50), conn.ws.next()).await;
        assert!(
            Instant::now() < deadline,
            "Docker connection still open after cancel"
        );
    }
    sampling.store(false, Ordering::SeqCst);
    sampler.await.unwrap();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            Instant::now() < deadline,
            "agent did not exit after SIGTERM"
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), conn.ws.next()).await;
    };
    assert_eq!(code, Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}
