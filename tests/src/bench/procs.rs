//! The processes under test: a `mooring-hub` in a temporary data dir on a
//! free loopback port, and `mooring-agent`s dialing it; plus what `/proc`
//! says about them (RSS, CPU time) and the fd limit of the harness.
//!
//! Readiness is awaited (the hub's "listening" log line, the agent answering
//! a passthrough `/_ping`), never slept for. Every child is killed and
//! reaped when its handle drops; nothing else is ever signalled.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::http::HubClient;

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under /tmp (short: unix socket paths < 108 bytes).
    pub fn new(tag: &str) -> anyhow::Result<TempDir> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("mb-{tag}-{}", &id[..8]));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Raises the soft fd limit to the hard limit (children inherit it).
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

/// The soft fd limit now in force.
pub fn fd_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// User + system CPU time of `pid` so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    // utime is field 14, stime 15 (1-based): 11 and 12 after ')' + state.
    let total = ticks(11) + ticks(12);
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(total as f64 / hz as f64))
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
struct Proc {
    child: Child,
    what: &'static str,
}

impl Proc {
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = self.what;
    }
}

/// Polls `f` every 20 ms until it yields, at most `within`.
async fn wait_for<T>(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `mooring-hub` process.
#[derive(Debug)]
pub struct Hub {
    proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The admin API key printed at first start.
    pub admin_key: String,
    /// Data dir and logs.
    pub dir: TempDir,
}

/// The data dir of a hub about to start (for pre-populating the store).
pub fn hub_data_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("data")
}

impl Hub {
    /// Starts a hub in `dir` (fresh: a new temp dir when `None`), with the
    /// rig's Docker as its `local` environment when `docker_sock` is given.
    pub async fn start(
        bin: &Path,
        dir: Option<TempDir>,
        docker_sock: Option<&Path>,
        extra: &[&str],
    ) -> anyhow::Result<Hub> {
        let dir = match dir {
            Some(d) => d,
            None => TempDir::new("hub")?,
        };
        let data = hub_data_dir(&dir);
        let stdout = std::fs::File::create(dir.path().join("stdout"))?;
        let stderr = std::fs::File::create(dir.path().join("stderr"))?;
        let socket = docker_sock
            .map(|s| format!("unix://{}", s.display()))
            .unwrap_or_else(|| "unix:///nonexistent/docker.sock".into());
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(&data)
            .args(["--docker-socket", &socket, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("MOORING_JSON", "true")
            .env("NO_COLOR", "1")
            .env(
                "MOORING_LOG",
                "warn,mooring_hub=info,mooring_hub::link=warn,mooring_hub::api=warn,mooring_hub::jobs=warn,mooring_hub::push=warn",
            )
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut proc = Proc { child, what: "hub" };
        let err_path = dir.path().join("stderr");
        let out_path = dir.path().join("stdout");
        let addr = wait_for(Duration::from_secs(60), "the hub to listen", || {
            if let Some(status) = proc.exited() {
                bail!(
                    "the hub exited ({status}): {}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(&err_path).unwrap_or_default();
            Ok(text.lines().find_map(listen_addr))
        })
        .await?;
        let admin_key = wait_for(Duration::from_secs(10), "the admin key", || {
            let text = std::fs::read_to_string(&out_path).unwrap_or_default();
            Ok(text.lines().find_map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()?
                    .get("adminKey")?
                    .as_str()
                    .map(str::to_owned)
            }))
        })
        .await
        .context("the hub printed no admin key (was the data dir fresh?)")?;
        Ok(Hub {
            proc,
            addr,
            admin_key,
            dir,
        })
    }

    /// The hub's process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// The agent WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://{}{}",
            self.addr,
            mooring_protocol::limits::CONNECT_PATH
        )
    }

    /// An API client with the admin key.
    pub fn client(&self) -> HubClient {
        HubClient::new(self.addr, &self.admin_key)
    }

    /// Fails if the hub died.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.proc.exited() {
            bail!(
                "the hub exited ({status}): {}",
                tail(&self.dir.path().join("stderr"))
            );
        }
        Ok(())
    }
}

/// `… listening on http://127.0.0.1:PORT (…` → the address.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let at = line.find("listening on http://")? + "listening on http://".len();
    let rest = &line[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A running `mooring-agent` process.
#[derive(Debug)]
pub struct Agent {
    proc: Proc,
    /// Its state dir and logs.
    pub dir: TempDir,
}

impl Agent {
    /// Starts an agent for `token` against `hub`, relaying to `docker_sock`,
    /// and waits until the hub relays a `/_ping` through it.
    pub async fn start(
        bin: &Path,
        hub: &Hub,
        env_id: i64,
        token: &str,
        docker_sock: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Agent> {
        let dir = TempDir::new("agent")?;
        let stderr = std::fs::File::create(dir.path().join("stderr"))?;
        let child = Command::new(bin)
            .args(["--server-url", &hub.ws_url()])
            .args([
                "--docker-host",
                &format!("unix://{}", docker_sock.display()),
            ])
            .args(["--port", "0", "--listen-addr", "127.0.0.1"])
            .arg("--state-dir")
            .arg(dir.path())
            .args(["--agent-name", &format!("bench-{env_id}")])
            .env("TOKEN", token)
            .envs(env.iter().copied())
            .env("LOG_LEVEL", "warn")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut agent = Agent {
            proc: Proc {
                child,
                what: "agent",
            },
            dir,
        };
        let client = hub.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent.proc.exited() {
                bail!(
                    "the agent exited ({status}): {}",
                    tail(&agent.dir.path().join("stderr"))
                );
            }
            let path = format!("/api/environments/{env_id}/docker/_ping");
            if let Ok((200, _)) = client.get_text(&path).await {
                return Ok(agent);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the agent did not connect within 30 s: {}",
                    tail(&agent.dir.path().join("stderr"))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }
}

/// An edge environment with a token, created through the hub's API.
pub async fn edge_env(hub: &Hub, name: &str) -> anyhow::Result<(i64, String)> {
    let client = hub.client();
    let (status, env) = client
        .post_json(
            "/api/environments",
            &serde_json::json!({"name": name, "type": "edge"}),
        )
        .await?;
    if status != 201 && status != 200 {
        bail!("creating environment {name}: HTTP {status} {env}");
    }
    let id = env
        .get("id")
        .and_then(|v| v.as_i64())
        .context("environment answer without id")?;
    let (status, tok) = client
        .post_json(
            &format!("/api/environments/{id}/tokens"),
            &serde_json::json!({}),
        )
        .await?;
    if status != 201 {
        bail!("creating a token for {name}: HTTP {status} {tok}");
    }
    let token = tok
        .get("token")
        .and_then(|v| v.as_str())
        .context("token answer without token")?
        .to_owned();
    Ok((id, token))
}

/// A hub (with the rig's Docker as `local`) plus one edge agent on `sock`.
pub async fn hub_with_agent(
    opts: &super::Options,
    docker_sock: &Path,
    agent_sock: &Path,
) -> anyhow::Result<(Hub, Agent, i64)> {
    let hub = Hub::start(&opts.hub_bin, None, Some(docker_sock), &[]).await?;
    let (env, token) = edge_env(&hub, "bench-edge").await?;
    let agent = Agent::start(&opts.agent_bin, &hub, env, &token, agent_sock, &[]).await?;
    Ok((hub, agent, env))
}

/// Where the binaries are: `MOORING_HUB_BIN` / `MOORING_AGENT_BIN`, else
/// `target/release`, else `target/debug` next to this crate.
pub fn default_bin(name: &str) -> PathBuf {
    let var = match name {
        "mooring-hub" => "MOORING_HUB_BIN",
        _ => "MOORING_AGENT_BIN",
    };
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let release = target.join("release").join(name);
    if release.exists() {
        return release;
    }
    target.join("debug").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_line_is_parsed() {
        let line = "2025-01-01T00:00:00Z  INFO mooring_hub: mooring-hub listening on http://127.0.0.1:41234 (agents: ws://127.0.0.1:41234/api/hawser/connect) version=0.1.0";
        assert_eq!(listen_addr(line), Some("127.0.0.1:41234".parse().unwrap()));
        assert_eq!(listen_addr("nothing here"), None);
    }

    #[test]
    fn own_process_is_sampled() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_time(pid).is_ok());
    }
}
