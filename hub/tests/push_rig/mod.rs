//! Shared setup of the end-to-end push tests: a hub whose `local`
//! environment is the rig's Docker, the real `mooring-agent` run in-process
//! on its own runtime (so it can be killed abruptly), registries created
//! through the API, fresh random images, and a throttling TCP proxy.
//!
//! The proxy sits between the rig's real dockerd and the rig's real open
//! registry: it only slows the upload down (or holds it) so that a test can
//! act *during* a push (cancel it, kill the agent, reconnect a reader). The
//! registry behind it stores exactly what Docker sent.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use mooring_agent::{Agent, AgentHandle, Config};
use mooring_docker::Endpoint;
use mooring_hub::client::{follow_job, HubClient, StreamedEvent};
use mooring_tests::rig::Rig;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::common::{fast_settings, TestHub};

/// Generous bound for anything a push test waits for.
pub const WAIT: Duration = Duration::from_secs(60);

/// A hub whose first start found the rig's Docker (`local` is env 1), and
/// a socket client to it as the admin.
pub struct PushHub {
    pub hub: TestHub,
    pub client: HubClient,
}

impl PushHub {
    pub async fn start(rig: &Rig) -> PushHub {
        let sock = rig.docker_sock.to_string_lossy().into_owned();
        let hub = TestHub::start_with(fast_settings(), Some(&sock)).await;
        let client = HubClient::new(&format!("http://{}", hub.addr), Some(hub.admin_key.clone()))
            .expect("client");
        PushHub { hub, client }
    }

    /// A client using another API key.
    pub fn client_with(&self, key: &str) -> HubClient {
        HubClient::new(&format!("http://{}", self.hub.addr), Some(key.to_owned())).expect("client")
    }

    /// Creates a registry through the API; returns its id.
    pub async fn registry(&self, name: &str, url: &str, auth: Option<(&str, &str)>) -> i64 {
        let mut body = json!({"name": name, "url": url});
        if let Some((user, password)) = auth {
            body["username"] = user.into();
            body["password"] = password.into();
        }
        let (status, reg) = self
            .hub
            .admin(Method::POST, "/api/registries", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reg}");
        reg["id"].as_i64().expect("registry id")
    }

    /// Creates an API key with `permissions` (and env scope); returns it.
    pub async fn key(&self, name: &str, permissions: &[&str], envs: Option<&[i64]>) -> String {
        let mut body = json!({"name": name, "permissions": permissions});
        if let Some(envs) = envs {
            body["environments"] = json!(envs);
        }
        let (status, created) = self
            .hub
            .admin(Method::POST, "/api/apikeys", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["key"].as_str().expect("key").to_owned()
    }

    /// An edge environment with the real agent connected to it.
    pub async fn edge_with_agent(&self, rig: &Rig, name: &str) -> (i64, RealAgent) {
        let env = self.hub.create_edge_env(name).await;
        let (_, token) = self.hub.create_token(env, None).await;
        let agent = RealAgent::start(&self.hub.ws_url(), &token, &rig.docker_sock).await;
        self.hub
            .wait_status(env, "online", Duration::from_secs(20))
            .await;
        (env, agent)
    }

    /// `POST /api/images/push` with `accept`; status and JSON answer.
    pub async fn push_raw(
        &self,
        client: &HubClient,
        env: Option<i64>,
        body: &Value,
        accept: &str,
    ) -> (StatusCode, Value) {
        let path = match env {
            Some(env) => format!("/api/images/push?env={env}"),
            None => "/api/images/push".to_owned(),
        };
        let resp = client
            .send(
                Method::POST,
                &path,
                &[("accept", accept)],
                Some(body.to_string().into_bytes()),
            )
            .await
            .expect("push request");
        let status = resp.status();
        let bytes = resp.bytes(1 << 20).await.expect("body");
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Starts a push as the admin; returns the job id.
    pub async fn start_push(&self, env: Option<i64>, body: &Value) -> String {
        let (status, answer) = self.push_raw(&self.client, env, body, "*/*").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["jobId"].as_str().expect("jobId").to_owned()
    }

    /// Follows a job over SSE to its end: every event and the terminal one.
    pub async fn follow(&self, job: &str) -> (Vec<StreamedEvent>, Value) {
        let mut events = Vec::new();
        let end = tokio::time::timeout(
            WAIT,
            follow_job(&self.client, job, None, 0, |e| events.push(e.clone())),
        )
        .await
        .expect("job ended in time")
        .expect("follow");
        (events, end.result)
    }

    /// `GET /api/jobs/{id}` as JSON.
    pub async fn job_json(&self, job: &str) -> Value {
        let (status, body) = self
            .client
            .json(Method::GET, &format!("/api/jobs/{job}"), None)
            .await
            .expect("get job");
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The audit rows of pushes, newest first, details parsed.
    pub async fn push_audit(&self) -> Vec<(String, Value)> {
        let rows = self.hub.state.store.list_audit(100).await.expect("audit");
        rows.into_iter()
            .filter(|r| r.action == "image.push")
            .map(|r| {
                let detail = r
                    .detail
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok());
                (r.actor, detail.unwrap_or(Value::Null))
            })
            .collect()
    }
}

/// A repository name no other test or run uses.
pub fn unique_repo(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("mooring-e2e/{prefix}-{}", &id[..12])
}

/// The real agent, in-process on a runtime of its own.
pub struct RealAgent {
    runtime: Option<tokio::runtime::Runtime>,
    pub handle: AgentHandle,
    shutdown: CancellationToken,
}

impl RealAgent {
    pub async fn start(url: &str, token: &str, docker_sock: &Path) -> RealAgent {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("agent runtime");
        let config = Config::new(url, token, Endpoint::Unix(docker_sock.to_path_buf()));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let agent = Agent::start(config, stop).await.expect("agent starts");
            let _ = tx.send(agent.handle());
            let _ = agent.wait().await;
        });
        let handle = rx.await.expect("agent handle");
        RealAgent {
            runtime: Some(runtime),
            handle,
            shutdown,
        }
    }

    /// Kills the agent abruptly: every task dropped, sockets closed, no
    /// goodbye to the hub (as a `kill -9` of the process).
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for RealAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.kill();
    }
}

/// An image of random bytes (one layer no registry has), removed on drop.
pub struct RandomImage {
    pub reference: String,
    pub id: String,
    docker_host: String,
}

impl RandomImage {
    /// A tagged random image (`mooring-e2e/src-…:rand`).
    pub fn create(rig: &Rig, bytes: usize) -> RandomImage {
        Self::make(rig, bytes, Some(format!("{}:rand", unique_repo("src"))))
    }

    /// A random image with no tag at all (`RepoTags` empty).
    pub fn untagged(rig: &Rig, bytes: usize) -> RandomImage {
        Self::make(rig, bytes, None)
    }

    fn make(rig: &Rig, bytes: usize, reference: Option<String>) -> RandomImage {
        let dir = std::env::temp_dir().join(format!("mooring-rand-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = format!(
            "head -c {bytes} /dev/urandom > {dir}/blob && tar -C {dir} -c blob | docker import - {reference}",
            dir = dir.display(),
            reference = reference.as_deref().unwrap_or("")
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("DOCKER_HOST", &rig.docker_host)
            .output()
            .expect("run docker import");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(id.starts_with("sha256:"), "docker import printed {id:?}");
        RandomImage {
            reference: reference.unwrap_or_else(|| id.clone()),
            id,
            docker_host: rig.docker_host.clone(),
        }
    }
}

impl Drop for RandomImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.id])
            .env("DOCKER_HOST", &self.docker_host)
            .output();
    }
}

/// A TCP proxy in front of a registry that limits the upload rate and can
/// hold it entirely.
pub struct SlowProxy {
    pub addr: String,
    gate: watch::Sender<bool>,
    stop: CancellationToken,
}

impl SlowProxy {
    /// Forwards `127.0.0.1:<port>` → `upstream`, uploads at `bytes_per_sec`.
    pub async fn start(upstream: &str, bytes_per_sec: usize) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let (gate, gate_rx) = watch::channel(true);
        let stop = CancellationToken::new();
        let upstream = upstream.to_owned();
        let done = stop.clone();
        tokio::spawn(async move {
            loop {
                let (down, _) = tokio::select! {
                    _ = done.cancelled() => break,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => break },
                };
                let upstream = upstream.clone();
                let gate = gate_rx.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = done.cancelled() => {}
                        _ = relay(down, up, gate, bytes_per_sec) => {}
                    }
                });
            }
        });
        SlowProxy { addr, gate, stop }
    }

    /// Holds (false) or releases (true) every upload.
    pub fn set_open(&self, open: bool) {
        self.gate.send_replace(open);
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn relay(down: TcpStream, up: TcpStream, gate: watch::Receiver<bool>, rate: usize) {
    let (mut down_r, mut down_w) = down.into_split();
    let (mut up_r, mut up_w) = up.into_split();
    let gate = Arc::new(tokio::sync::Mutex::new(gate));
    let upload = async move {
        let chunk = (rate / 20).clamp(1024, 64 * 1024);
        let mut buf = vec![0u8; chunk];
        loop {
            {
                let mut g = gate.lock().await;
                while !*g.borrow_and_update() {
                    if g.changed().await.is_err() {
                        return;
                    }
                }
            }
            let n = match down_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if up_w.write_all(&buf[..n]).await.is_err() {
                return;
            }
            let secs = n as f64 / rate.max(1) as f64;
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        }
    };
    let download = async move {
        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
    };
    tokio::join!(upload, download);
}
