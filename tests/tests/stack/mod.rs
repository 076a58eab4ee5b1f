//! The product as an operator runs it, for the end-to-end tests: the
//! `mooring-hub` binary on a fresh store prepared with its admin CLI (one
//! edge environment, its agent token, an admin API key), and
//! `mooring-agent` binaries dialing it with the rig's Docker.
//!
//! Clients are `curl` (JSON answers, Prometheus text, the event list);
//! waits poll with generous bounds. Nothing here asserts product behaviour
//! beyond "it started" and "it answered 200".

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mooring_tests::procs::{bin_path, curl, free_port, wait_tcp, Proc, TempDir};
use mooring_tests::rig::Rig;
use serde_json::Value;

/// Hub ping interval (s) of these tests.
pub const PING_SECS: u64 = 1;
/// Hub silence timeout (s) of these tests.
pub const SILENCE_SECS: u64 = 4;
/// Generous bound for anything awaited here.
pub const WAIT: Duration = Duration::from_secs(30);

/* ------------------------------------------------------------------ hub */

/// The hub binary serving a fresh store, with one edge environment, an
/// agent token for it and an admin API key (all made with the admin CLI).
pub struct Hub {
    pub proc: Proc,
    pub base: String,
    pub key: String,
    pub env_id: i64,
    pub token: String,
    _dir: TempDir,
}

/// Runs `mooring-hub --data-dir DATA --docker-socket SOCK ARGS…`; returns
/// its stdout, failing the test on a non-zero exit.
fn hub_cli(data: &Path, sock: &Path, args: &[&str]) -> String {
    let out = Command::new(bin_path("mooring-hub"))
        .arg("--data-dir")
        .arg(data)
        .arg("--docker-socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("mooring-hub runs");
    assert!(
        out.status.success(),
        "mooring-hub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or_default().trim().to_owned()
}

impl Hub {
    /// Prepares the store with the admin CLI and serves it with short
    /// timings (`--silence-timeout-secs` = `silence`).
    pub fn start(rig: &Rig, env_name: &str, silence: u64) -> Hub {
        let dir = TempDir::new("mt-e2e");
        let data = dir.path().join("data");
        let sock = rig.docker_sock.as_path();
        let created = hub_cli(
            &data,
            sock,
            &["--json", "env", "create", env_name, "--type", "edge"],
        );
        let env: Value = serde_json::from_str(&last_line(&created)).expect("env create JSON");
        let env_id = env["id"].as_i64().expect("env id");
        let key = last_line(&hub_cli(
            &data,
            sock,
            &["apikey", "create", "e2e", "-p", "*"],
        ));
        let token = last_line(&hub_cli(
            &data,
            sock,
            &["token", "create", "--env", env_name],
        ));
        assert!(!key.is_empty() && !token.is_empty());

        for _attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(bin_path("mooring-hub"));
            cmd.arg("--data-dir")
                .arg(&data)
                .arg("--docker-socket")
                .arg(sock)
                .arg("serve")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--ping-interval-secs", &PING_SECS.to_string()])
                .args(["--silence-timeout-secs", &silence.to_string()])
                // Restarts and refused retries are part of these tests; the
                // reconnect throttle has tests of its own.
                .args(["--reconnects-per-minute", "600"])
                .env("RUST_LOG", "info");
            let mut proc = Proc::spawn("mooring-hub", cmd);
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline && proc.exited().is_none() {
                if curl(&format!("{base}/api/health"), &[]).0 == 200 {
                    return Hub {
                        proc,
                        base,
                        key,
                        env_id,
                        token,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("hub did not come up on port {port}:\n{}", proc.output());
        }
        panic!("the hub did not start in 3 attempts");
    }

    pub fn ws_url(&self) -> String {
        format!("{}/api/hawser/connect", self.base.replacen("http", "ws", 1))
    }

    pub fn auth(&self) -> String {
        format!("Authorization: Bearer {}", self.key)
    }

    /// `GET path` as the admin: status and raw body.
    pub fn get_raw(&self, path: &str, extra: &[&str]) -> (u16, String) {
        let auth = self.auth();
        let mut args = vec!["-H", auth.as_str()];
        args.extend_from_slice(extra);
        curl(&format!("{}{path}", self.base), &args)
    }

    /// `GET path` as the admin, answer JSON (200 required).
    pub fn get(&self, path: &str) -> Value {
        let (code, body) = self.get_raw(path, &[]);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn env(&self) -> Value {
        self.get(&format!("/api/environments/{}", self.env_id))
    }

    /// Polls the environment until `pred` holds; returns it.
    pub fn wait_env(&self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let env = self.env();
            if pred(&env) {
                return env;
            }
            assert!(
                Instant::now() < deadline,
                "environment not {what} within {within:?}: {env}\nhub:\n{}",
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The kept events of this hub (JSON list), oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.get("/api/events?since=0")["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls the event list until one matches; returns it.
    pub fn wait_event(&self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            if let Some(e) = events.iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} event within {within:?}; events: {events:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Prometheus text of `GET /metrics` (the admin key has `metrics:read`).
    pub fn prometheus(&self) -> String {
        let (code, body) = self.get_raw("/metrics", &[]);
        assert_eq!(code, 200, "/metrics: {body}");
        body
    }
}

/// The value of the sample `series` (name with labels) in Prometheus text.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/* ---------------------------------------------------------------- agent */

/// The agent binary, with its state directory and health port.
pub struct Agent {
    pub proc: Proc,
    pub port: u16,
    pub state: PathBuf,
}

impl Agent {
    /// Starts `mooring-agent` against `hub` with the rig's Docker, keeping
    /// its id in `state`.
    pub fn start(hub: &Hub, rig: &Rig, name: &str, state: &Path) -> Agent {
        let port = free_port();
        let mut cmd = Command::new(bin_path("mooring-agent"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOCKHAND_SERVER_URL", hub.ws_url())
            .env("TOKEN", &hub.token)
            .env("DOCKER_SOCKET", &rig.docker_sock)
            .env("PORT", port.to_string())
            .env("MOORING_LISTEN_ADDR", "127.0.0.1")
            .env("MOORING_STATE_DIR", state)
            .env("AGENT_NAME", name)
            .env("METRICS_INTERVAL", "1")
            .env("HEARTBEAT_INTERVAL", "1")
            .env("RECONNECT_DELAY", "0.2")
            .env("MAX_RECONNECT_DELAY", "1");
        let proc = Proc::spawn(name, cmd);
        Agent {
            proc,
            port,
            state: state.to_path_buf(),
        }
    }

    /// The id kept in the state directory, once the agent has written it.
    pub fn id_from_state(&self) -> String {
        let file = self.state.join("agent-id");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(id) = std::fs::read_to_string(&file) {
                let id = id.trim().to_owned();
                if !id.is_empty() {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {} after {WAIT:?}; agent:\n{}",
                file.display(),
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /_hawser/info` on the agent's health port.
    pub fn info(&self) -> Value {
        wait_tcp(([127, 0, 0, 1], self.port).into(), WAIT);
        let (code, body) = curl(&format!("http://127.0.0.1:{}/_hawser/info", self.port), &[]);
        assert_eq!(code, 200, "/_hawser/info: {body}");
        serde_json::from_str(&body).expect("info JSON")
    }

    /// Freezes the process (SIGSTOP): its TCP connections stay open but it
    /// answers nothing, as a hung host would.
    pub fn freeze(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.proc.pid().to_string()])
            .status()
            .expect("kill -STOP");
        assert!(status.success());
    }
}

/// A hub with the real agent online in its edge environment.
pub fn online(rig: &Rig, name: &str, silence: u64) -> (Hub, Agent, TempDir) {
    let hub = Hub::start(rig, name, silence);
    let state = TempDir::new(&format!("mt-e2e-state-{name}"));
    let agent = Agent::start(&hub, rig, &format!("{name}-agent"), state.path());
    hub.wait_env("online", WAIT, |e| e["status"] == "online");
    (hub, agent, state)
}
