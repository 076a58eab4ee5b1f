//! Driving a real `mooring-hub` process from a test: its admin subcommands
//! on a data dir, and its HTTP API through `curl` (the tests crate has no
//! HTTP client).
//!
//! Nothing here starts a server; tests start `mooring-hub serve` themselves
//! with [`crate::procs::Proc`] (possibly inside a network namespace) and use
//! these helpers to prepare its store and watch its answers.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs::{bin_path, curl};

/// Runs `mooring-hub --data-dir DATA ARGS` (no Docker socket: no `local`
/// environment is created); returns the last line of stdout (where the
/// `token create` and `apikey create` subcommands print the secret).
pub fn admin(data: &Path, args: &[&str]) -> String {
    let out = Command::new(bin_path("mooring-hub"))
        .arg("--data-dir")
        .arg(data)
        .args(["--docker-socket", "/nonexistent/docker.sock"])
        .args(args)
        .output()
        .expect("mooring-hub runs");
    assert!(
        out.status.success(),
        "mooring-hub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().last().unwrap_or_default().trim().to_owned()
}

/// Id of the environment named `name`, from `env list --json`.
pub fn env_id(data: &Path, name: &str) -> i64 {
    let out = Command::new(bin_path("mooring-hub"))
        .arg("--data-dir")
        .arg(data)
        .args([
            "--docker-socket",
            "/nonexistent/docker.sock",
            "--json",
            "env",
            "list",
        ])
        .output()
        .expect("mooring-hub env list");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("env list JSON");
    list.as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .and_then(|e| e["id"].as_i64())
        .unwrap_or_else(|| panic!("environment {name} not listed"))
}

/// A running hub as its HTTP API sees it: base URL and an admin key.
#[derive(Debug, Clone)]
pub struct HubApi {
    /// `http://host:port`.
    pub base: String,
    /// API key with every permission.
    pub key: String,
}

impl HubApi {
    /// `GET PATH` with the key: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let auth = format!("Authorization: Bearer {}", self.key);
        curl(&format!("{}{path}", self.base), &["-H", &auth])
    }

    /// `GET /api/environments/ID` as JSON (panics on anything but 200).
    pub fn env(&self, id: i64) -> serde_json::Value {
        let (code, body) = self.get(&format!("/api/environments/{id}"));
        assert_eq!(code, 200, "GET /api/environments/{id}: {body}");
        serde_json::from_str(&body).expect("environment JSON")
    }

    /// Waits until `GET /api/health` answers 200; `alive` is asked between
    /// tries and may panic (e.g. when the process exited).
    pub fn wait_healthy(&self, within: Duration, mut alive: impl FnMut()) {
        let deadline = Instant::now() + within;
        loop {
            if curl(&format!("{}/api/health", self.base), &[]).0 == 200 {
                return;
            }
            alive();
            assert!(
                Instant::now() < deadline,
                "hub at {} not healthy after {within:?}",
                self.base
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls environment `id` until `done(env)` holds; returns that JSON.
    /// On timeout panics with the last answer and `context()` (logs).
    pub fn wait_env(
        &self,
        id: i64,
        within: Duration,
        what: &str,
        mut done: impl FnMut(&serde_json::Value) -> bool,
        context: impl Fn() -> String,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let env = self.env(id);
            if done(&env) {
                return env;
            }
            assert!(
                Instant::now() < deadline,
                "environment {id} not {what} within {within:?}; last: {env}\n{}",
                context()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
