//! Shared setup of the hub's integration tests: an in-process hub on an
//! ephemeral port, and a protocol-speaking test agent.
//!
//! The test agent speaks Hawser 1.0 like the reference Go agent: `hello`
//! with a token and agent id, `pong` for every `ping`, and `request` frames
//! relayed to the rig's real Docker through `mooring_docker::DockerClient`
//! (streams in 4 KiB `stream` frames without a status, then `stream_end`).
//! It can be killed abruptly (TCP dropped, no close frame) or made silent
//! (reads but answers nothing: a half-open link as the hub sees it).

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use mooring_docker::{DockerClient, DockerRequest, Endpoint};
use mooring_hub::{AppState, Settings};
use mooring_protocol::{
    b64, ErrorFrame, Frame, Hello, Pong, Response, StreamChunk, StreamEnd, Welcome,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Settings fast enough for tests: 1 s pings, 3 s silence, 1 s probe.
pub fn fast_settings() -> Settings {
    Settings {
        ping_interval: Duration::from_secs(1),
        silence_timeout: Duration::from_secs(3),
        probe_timeout: Duration::from_secs(1),
        reconnects_per_minute: 100,
        request_timeout: Duration::from_secs(20),
        stream_idle_timeout: Duration::from_secs(20),
        ..Settings::default()
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("mooring-hub-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An in-process hub on 127.0.0.1:0.
pub struct TestHub {
    pub addr: SocketAddr,
    pub state: AppState,
    pub admin_key: String,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::start_with(fast_settings(), None).await
    }

    /// A hub whose first start sees `docker_socket` (creating `local`).
    pub async fn start_with(settings: Settings, docker_socket: Option<&str>) -> TestHub {
        let dir = TempDir::new();
        let data_dir = dir.0.join("data");
        let socket = docker_socket.unwrap_or("/nonexistent/docker.sock");
        let (store, _) = mooring_hub::setup::open_store(&data_dir, socket, None)
            .await
            .expect("open store");
        let admin = mooring_hub::setup::bootstrap_admin_key(&store)
            .await
            .expect("admin key")
            .expect("first start creates the admin key");
        TestHub::serve(store, settings, admin.key, data_dir, dir).await
    }

    /// Serves `store` on 127.0.0.1:0 (shared by the first start and a restart).
    async fn serve(
        store: mooring_hub::store::Store,
        settings: Settings,
        admin_key: String,
        data_dir: PathBuf,
        dir: TempDir,
    ) -> TestHub {
        let shutdown = CancellationToken::new();
        let state = AppState::new(store, settings, shutdown.clone())
            .await
            .expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(mooring_hub::run(listener, state.clone(), shutdown.clone()));
        TestHub {
            addr,
            state,
            admin_key,
            data_dir,
            shutdown,
            server: Some(server),
            _dir: dir,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/hawser/connect", self.addr)
    }

    /// Calls the API in-process (no socket) as `key`.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, bytes) = self
            .api_raw(method, path, key, body.map(|b| b.to_string().into_bytes()))
            .await;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    pub async fn api_raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = mooring_hub::api::router(self.state.clone())
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, bytes)
    }

    /// Same, as the admin.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let key = self.admin_key.clone();
        self.api(method, path, Some(&key), body).await
    }

    pub async fn create_edge_env(&self, name: &str) -> i64 {
        let (status, env) = self
            .admin(
                Method::POST,
                "/api/environments",
                Some(serde_json::json!({"name": name, "type": "edge"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{env}");
        env["id"].as_i64().expect("integer id")
    }

    pub async fn create_token(&self, env_id: i64, expires: Option<u64>) -> (i64, String) {
        let body = expires.map(|e| serde_json::json!({"expiresInSecs": e}));
        let (status, tok) = self
            .admin(
                Method::POST,
                &format!("/api/environments/{env_id}/tokens"),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{tok}");
        (
            tok["id"].as_i64().unwrap(),
            tok["token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn env_json(&self, env_id: i64) -> Value {
        let (status, env) = self
            .admin(Method::GET, &format!("/api/environments/{env_id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{env}");
        env
    }

    /// Waits until `status` of the environment is `want` (polls, bounded).
    pub async fn wait_status(&self, env_id: i64, want: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let env = self.env_json(env_id).await;
            if env["status"] == want {
                return env;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("environment {env_id} not {want} within {within:?}: {env}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The usual setup of a test that needs a live link: a new edge
    /// environment named `name`, a token for it without expiry, a test agent
    /// connected with that token and `opts` (e.g. `.relaying_to(sock)`), and
    /// the environment reading `online` within 5 s. Panics, naming the hub's
    /// refusal, if the agent is not accepted.
    pub async fn online_agent(&self, name: &str, opts: AgentOptions) -> OnlineAgent {
        let env = self.create_edge_env(name).await;
        let (token_id, token) = self.create_token(env, None).await;
        let agent = TestAgent::connect(&self.ws_url(), &token, opts)
            .await
            .unwrap_or_else(|r| panic!("agent of environment {name:?} refused: {r:?}"));
        self.wait_status(env, "online", Duration::from_secs(5))
            .await;
        OnlineAgent {
            env,
            token_id,
            token,
            agent,
        }
    }

    /// Stops the hub gracefully and starts a new one on the same data dir
    /// (same store, same admin key, a new port).
    pub async fn restart(mut self) -> TestHub {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
        }
        self.state.store.close().await;
        let settings = (*self.state.settings).clone();
        let (store, _) =
            mooring_hub::setup::open_store(&self.data_dir, "/nonexistent/docker.sock", None)
                .await
                .expect("reopen store");
        let dir = std::mem::replace(&mut self._dir, TempDir(PathBuf::new()));
        let (admin_key, data_dir) = (self.admin_key.clone(), self.data_dir.clone());
        TestHub::serve(store, settings, admin_key, data_dir, dir).await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An edge environment with a live test agent, from [`TestHub::online_agent`].
///
/// Destructure it with a named binding for `agent` (e.g. `agent: _agent`):
/// dropping the agent drops its link.
pub struct OnlineAgent {
    /// Id of the edge environment.
    pub env: i64,
    /// Id of the agent token.
    pub token_id: i64,
    /// The agent token itself (for a second connection with it).
    pub token: String,
    /// The connected agent.
    pub agent: TestAgent,
}

/// How the hub refused an agent.
#[derive(Debug)]
pub struct Refused {
    pub error: Option<ErrorFrame>,
    pub close: Option<CloseFrame>,
}

/// Options of a test agent.
#[derive(Clone)]
pub struct AgentOptions {
    pub agent_id: String,
    pub name: String,
    pub docker: Option<PathBuf>,
    pub capabilities: Vec<String>,
}

impl AgentOptions {
    pub fn new(agent_id: &str) -> Self {
        AgentOptions {
            agent_id: agent_id.to_owned(),
            name: format!("agent-{agent_id}"),
            docker: None,
            capabilities: vec![],
        }
    }

    pub fn relaying_to(mut self, sock: PathBuf) -> Self {
        self.docker = Some(sock);
        self
    }
}

/// What the agent saw, for assertions.
#[derive(Default)]
pub struct Seen {
    pub requests: Vec<mooring_protocol::Request>,
    pub cancelled: Vec<String>,
    pub pings: usize,
}

/// A protocol-speaking test agent.
pub struct TestAgent {
    pub welcome: Welcome,
    pub seen: Arc<Mutex<Seen>>,
    silent: Arc<AtomicBool>,
    out: mpsc::Sender<Message>,
    closed: Arc<Mutex<Option<Option<CloseFrame>>>>,
    task: JoinHandle<()>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn read_handshake(ws: &mut Ws) -> Result<Welcome, Refused> {
    let mut error = None;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("hub answered the hello within 15 s");
        match msg {
            Some(Ok(Message::Text(text))) => {
                match Frame::decode(text.as_str()).expect("hub frames decode") {
                    Frame::Welcome(w) => return Ok(w),
                    Frame::Error(e) => error = Some(e),
                    other => panic!("unexpected frame during handshake: {other:?}"),
                }
            }
            Some(Ok(Message::Close(close))) => return Err(Refused { error, close }),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return Err(Refused { error, close: None }),
        }
    }
}

impl TestAgent {
    /// Connects and sends `hello`; `Err` is the hub's refusal.
    pub async fn connect(url: &str, token: &str, opts: AgentOptions) -> Result<TestAgent, Refused> {
        let hello = Hello {
            version: "test-0.1".into(),
            protocol: "1.0".into(),
            agent_id: opts.agent_id.clone(),
            agent_name: opts.name.clone(),
            token: token.to_owned(),
            docker_version: "20.10.24".into(),
            hostname: format!("host-{}", opts.agent_id),
            capabilities: opts.capabilities.clone(),
        };
        Self::connect_raw(url, &Frame::Hello(hello).encode(), opts).await
    }

    /// Connects and sends `first` as the first text frame.
    pub async fn connect_raw(
        url: &str,
        first: &str,
        opts: AgentOptions,
    ) -> Result<TestAgent, Refused> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connect");
        ws.send(Message::Text(first.to_owned().into()))
            .await
            .expect("send hello");
        let welcome = read_handshake(&mut ws).await?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::channel::<Message>(256);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let silent = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(Mutex::new(None));
        let docker = opts
            .docker
            .clone()
            .map(|p| DockerClient::new(Endpoint::Unix(p)));
        let task = {
            let seen = seen.clone();
            let silent = silent.clone();
            let closed = closed.clone();
            let out = out.clone();
            tokio::spawn(async move {
                let mut relays: HashMap<String, JoinHandle<()>> = HashMap::new();
                loop {
                    tokio::select! {
                        msg = out_rx.recv() => match msg {
                            Some(m) => if sink.send(m).await.is_err() { break },
                            None => break,
                        },
                        msg = stream.next() => {
                            let text = match msg {
                                Some(Ok(Message::Text(t))) => t,
                                Some(Ok(Message::Close(c))) => {
                                    *closed.lock().unwrap() = Some(c);
                                    break;
                                }
                                Some(Ok(_)) => continue,
                                None | Some(Err(_)) => {
                                    *closed.lock().unwrap() = Some(None);
                                    break;
                                }
                            };
                            if silent.load(Ordering::SeqCst) {
                                continue;
                            }
                            match Frame::decode(text.as_str()) {
                                Ok(Frame::Ping(p)) => {
                                    seen.lock().unwrap().pings += 1;
                                    let pong = Frame::Pong(Pong { timestamp: p.timestamp }).encode();
                                    let _ = sink.send(Message::Text(pong.into())).await;
                                }
                                Ok(Frame::Request(req)) => {
                                    seen.lock().unwrap().requests.push(req.clone());
                                    if let Some(docker) = docker.clone() {
                                        let id = req.request_id.clone();
                                        relays.insert(id, tokio::spawn(relay(docker, req, out.clone())));
                                    }
                                }
                                Ok(Frame::StreamEnd(end)) => {
                                    seen.lock().unwrap().cancelled.push(end.request_id.clone());
                                    if let Some(task) = relays.remove(&end.request_id) {
                                        task.abort();
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                for (_, t) in relays {
                    t.abort();
                }
            })
        };
        Ok(TestAgent {
            welcome,
            seen,
            silent,
            out,
            closed,
            task,
        })
    }

    /// Stops answering anything (pings included), keeping TCP open.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Sends a raw text frame.
    pub async fn send_text(&self, text: &str) {
        self.out
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("agent task alive");
    }

    /// Drops the TCP connection without a close frame.
    pub fn kill(self) {
        self.task.abort();
    }

    /// Waits until the hub closes the link; returns its close frame.
    pub async fn wait_closed(&self, within: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(c) = self.closed.lock().unwrap().clone() {
                return c;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("hub did not close the link within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.lock().unwrap().is_some()
    }

    /// Waits until the agent received `n` requests.
    pub async fn wait_requests(
        &self,
        n: usize,
        within: Duration,
    ) -> Vec<mooring_protocol::Request> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let reqs = self.seen.lock().unwrap().requests.clone();
            if reqs.len() >= n {
                return reqs;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent got {} of {n} requests",
                reqs.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the hub cancelled `request_id`.
    pub async fn wait_cancelled(&self, request_id: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self
                .seen
                .lock()
                .unwrap()
                .cancelled
                .iter()
                .any(|c| c == request_id)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hub never cancelled {request_id}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one request to Docker like the reference agent: a `response`, or
/// 4 KiB `stream` chunks without status and a `stream_end`.
async fn relay(docker: DockerClient, req: mooring_protocol::Request, out: mpsc::Sender<Message>) {
    let send = |f: Frame| {
        let out = out.clone();
        async move {
            let _ = out.send(Message::Text(f.encode().into())).await;
        }
    };
    let body = match (&req.body, req.is_binary) {
        (None, _) => bytes::Bytes::new(),
        (Some(Value::String(s)), true) => {
            b64::decode(s).map(bytes::Bytes::from).unwrap_or_default()
        }
        (Some(v), _) => bytes::Bytes::from(v.to_string()),
    };
    let dreq = DockerRequest {
        method: req.method.parse().unwrap_or(http::Method::GET),
        path: req.path.clone(),
        headers: req.headers.clone(),
        body,
    };
    let resp = match docker.send(dreq).await {
        Ok(r) => r,
        Err(e) => {
            return send(Frame::Error(ErrorFrame::for_request(
                &req.request_id,
                "DOCKER_ERROR",
                e.to_string(),
            )))
            .await;
        }
    };
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = resp.into_body();
    if req.streaming {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                for chunk in data.chunks(4096) {
                    send(Frame::Stream(StreamChunk {
                        request_id: req.request_id.clone(),
                        data: chunk.to_vec(),
                        ..Default::default()
                    }))
                    .await;
                }
            }
        }
        send(Frame::StreamEnd(StreamEnd {
            request_id: req.request_id.clone(),
            reason: Some("completed".into()),
            ..Default::default()
        }))
        .await;
    } else {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let binary = mooring_protocol::docker::is_binary(ct.as_deref(), &bytes);
        let mut headers = mooring_protocol::Headers::new();
        if let Some(ct) = ct {
            headers.insert("Content-Type".into(), ct);
        }
        send(Frame::Response(Response {
            request_id: req.request_id.clone(),
            status_code: status,
            headers,
            body: if binary {
                b64::encode(&bytes)
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            },
            is_binary: binary,
        }))
        .await;
    }
}

/// Fresh agent id.
pub fn agent_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
