//! A fake Docker daemon on a unix socket, only for faults the real one
//! cannot produce on demand: a 1 GiB stream, a stall, a mid-stream cut.
//! `/_ping` and `/version` answer like Engine 20.10 so the agent starts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// What the fake daemon saw.
#[derive(Default)]
pub struct FakeDocker {
    /// Bytes of the `/big` body written so far.
    pub written: AtomicU64,
    /// The `/big` connection was closed by the client mid-body.
    pub big_closed: AtomicBool,
    /// Stalled connections (`/stall-*`) the client has since closed.
    pub stalls_closed: AtomicUsize,
}

/// Starts the fake on `dir/d.sock`; returns its socket path and state.
pub fn start(dir: &Path) -> (PathBuf, Arc<FakeDocker>) {
    let sock = dir.join("d.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let state = Arc::new(FakeDocker::default());
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_conn(stream, st.clone()));
        }
    });
    (sock, state)
}

fn small(ct: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Waits until the client closes the connection (or 60 s pass).
async fn hold(s: &mut UnixStream) {
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while !matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {}
    })
    .await;
}

async fn serve_conn(mut s: UnixStream, state: Arc<FakeDocker>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    match path.rsplit('/').next().unwrap_or("") {
        "_ping" => drop(s.write_all(small("text/plain", "OK").as_bytes()).await),
        "version" => {
            let body = small(
                "application/json",
                r#"{"Version":"fake-1.0","ApiVersion":"1.41"}"#,
            );
            drop(s.write_all(body.as_bytes()).await)
        }
        "big" => {
            let hdr = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {GIB}\r\n\r\n");
            if s.write_all(hdr.as_bytes()).await.is_err() {
                return;
            }
            let block: Vec<u8> = (0..MIB as usize)
                .map(|i| b"0123456789abcdef\n"[i % 17])
                .collect();
            for _ in 0..1024 {
                if s.write_all(&block).await.is_err() {
                    state.big_closed.store(true, Ordering::SeqCst);
                    return;
                }
                state.written.fetch_add(MIB, Ordering::SeqCst);
            }
        }
        "stall-headers" => {
            hold(&mut s).await;
            state.stalls_closed.fetch_add(1, Ordering::SeqCst);
        }
        "stall-body" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\":")
                .await;
            hold(&mut s).await;
            state.stalls_closed.fetch_add(1, Ordering::SeqCst);
        }
        "cut" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"status\":\"one\"}\n")
                .await;
            // Connection dropped with 980 bytes missing.
        }
        "slow" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            for i in 0..3 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let line = format!("{{\"n\":{i}}}\n");
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
        }
        _ => drop(
            s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await,
        ),
    }
}
