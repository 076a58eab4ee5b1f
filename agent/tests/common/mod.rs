//! Shared helpers of the agent's integration tests: a fake hub (a real
//! WebSocket server on 127.0.0.1:0 speaking the hub side of the protocol),
//! an in-process agent, and small HTTP/Docker probes.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod fake_docker;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mooring_agent::{Agent, AgentHandle, Config};
use mooring_docker::Endpoint;
use mooring_protocol::{ErrorFrame, Frame, Hello, Request, StreamChunk, StreamEnd, Welcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// Generous bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// A hub that accepts agents.
pub struct FakeHub {
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

impl FakeHub {
    pub async fn start() -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        FakeHub { listener, addr }
    }

    /// A hub on a given address (to "restart" one on the same port).
    pub async fn start_on(addr: SocketAddr) -> FakeHub {
        let listener = TcpListener::bind(addr).await.unwrap();
        FakeHub { listener, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/api/hawser/connect", self.addr)
    }

    /// Accepts one agent and reads its hello (no welcome yet).
    pub async fn accept(&self) -> HubConn {
        let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("no agent connected in time")
            .unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut conn = HubConn {
            ws,
            hello: Hello::default(),
        };
        match conn.recv().await {
            Some(Frame::Hello(h)) => conn.hello = h,
            other => panic!("expected hello, got {other:?}"),
        }
        conn
    }

    /// Accepts one agent, reads hello, sends welcome.
    pub async fn accept_welcomed(&self) -> HubConn {
        let mut conn = self.accept().await;
        conn.send(&Frame::Welcome(Welcome {
            environment_id: Some(1),
            server_id: Some("fake-hub".into()),
            version: Some("1.0".into()),
            ..Default::default()
        }))
        .await;
        conn
    }
}

/// One agent connection, hub side.
pub struct HubConn {
    pub ws: WebSocketStream<TcpStream>,
    pub hello: Hello,
}

/// Everything a streaming request produced.
#[derive(Debug, Default)]
pub struct Streamed {
    pub chunks: Vec<StreamChunk>,
    pub errors: Vec<ErrorFrame>,
    pub end: Option<StreamEnd>,
}

impl Streamed {
    pub fn data(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|c| c.data.iter().copied())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data()).into_owned()
    }
}

impl HubConn {
    pub async fn send(&mut self, frame: &Frame) {
        self.ws.send(Message::text(frame.encode())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next frame (pings from the agent included); `None` on close.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.recv_within(WAIT)
            .await
            .expect("no frame from the agent in time")
    }

    /// `Err(())` on timeout, `Ok(None)` on close.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Frame>, ()> {
        loop {
            let msg = tokio::time::timeout(limit, self.ws.next())
                .await
                .map_err(|_| ())?;
            match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(t))) => return Ok(Some(Frame::decode(&t).unwrap())),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame about `request_id`, skipping others.
    pub async fn recv_for(&mut self, request_id: &str) -> Frame {
        loop {
            match self.recv().await {
                Some(f) if f.request_id() == Some(request_id) => return f,
                Some(_) => continue,
                None => panic!("link closed while waiting for {request_id}"),
            }
        }
    }

    /// Sends a non-streaming request and returns its answer frame.
    pub async fn call(&mut self, req: Request) -> Frame {
        let id = req.request_id.clone();
        self.send(&Frame::Request(req)).await;
        self.recv_for(&id).await
    }

    /// Sends a streaming request and collects until `stream_end`.
    pub async fn stream(&mut self, mut req: Request) -> Streamed {
        req.streaming = true;
        let id = req.request_id.clone();
        self.send(&Frame::Request(req)).await;
        self.collect(&id).await
    }

    /// Collects frames of `id` until its `stream_end`.
    pub async fn collect(&mut self, id: &str) -> Streamed {
        let mut out = Streamed::default();
        loop {
            match self.recv_for(id).await {
                Frame::Stream(c) => out.chunks.push(c),
                Frame::Error(e) => out.errors.push(e),
                Frame::StreamEnd(e) => {
                    out.end = Some(e);
                    return out;
                }
                other => panic!("unexpected frame in a stream: {other:?}"),
            }
        }
    }
}

/// A request frame with a fresh id.
pub fn request(method: &str, path: &str) -> Request {
    Request {
        request_id: uuid::Uuid::new_v4().to_string(),
        method: method.into(),
        path: path.into(),
        ..Default::default()
    }
}

/// A config for an in-process agent: fast reconnects, its own state, no
/// telemetry (tests of telemetry over the link turn it on).
pub fn config(hub_url: &str, docker_sock: &Path) -> Config {
    let mut c = Config::new(
        hub_url,
        "test-token-123",
        Endpoint::Unix(docker_sock.to_path_buf()),
    );
    c.agent_name = "test-agent".into();
    c.reconnect_delay = Duration::from_millis(200);
    c.max_reconnect_delay = Duration::from_secs(2);
    c.metrics_interval = None;
    c
}

/// A running in-process agent.
pub struct RunningAgent {
    pub handle: AgentHandle,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), mooring_agent::AgentError>>,
}

pub async fn start_agent(config: Config) -> RunningAgent {
    let shutdown = CancellationToken::new();
    let agent = Agent::start(config, shutdown.clone()).await.unwrap();
    let handle = agent.handle();
    let task = tokio::spawn(agent.wait());
    RunningAgent {
        handle,
        shutdown,
        task,
    }
}

impl RunningAgent {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("agent did not stop within 5 s")
            .unwrap()
            .unwrap();
    }
}

/// Polls `cond` every 50 ms until true, failing after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` over plain HTTP/1.0; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `X-Registry-Auth` value: base64url with padding of the auth JSON.
pub fn registry_auth(user: &str, password: &str, server: &str) -> String {
    use base64::Engine as _;
    let json = serde_json::json!({"username": user, "password": password, "serveraddress": server});
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

/// The rig daemon's count of `/events` listeners.
pub async fn events_listeners(rig: &mooring_tests::rig::Rig) -> u64 {
    let rig = rig.clone();
    tokio::task::spawn_blocking(move || {
        let (status, body) = rig.docker_api_get("/info").expect("rig /info");
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["NEventsListener"].as_u64().unwrap()
    })
    .await
    .unwrap()
}

/// A child process killed (and reaped) when the test ends, even on panic.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
