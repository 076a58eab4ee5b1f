//! The `mooring-agent` binary, out of process: bad configuration exits 2
//! with one useful line, `--help` documents every setting, the agent id
//! survives a restart, and SIGTERM closes the link and exits 0 quickly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_mooring-agent");

/// A temp dir holding a socket file (the agent only checks it exists here).
fn scratch() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "ma-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("d.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    (dir, sock)
}

fn agent_cmd(dir: &Path, sock: &Path, url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("DOCKHAND_SERVER_URL", url)
        .env("TOKEN", "tok-very-secret-42")
        .env("DOCKER_SOCKET", sock)
        .env("MOORING_STATE_DIR", dir.join("state"))
        .env("PORT", "0")
        .env("MOORING_LISTEN_ADDR", "127.0.0.1")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn bad_config_exits_2_with_one_line_naming_the_setting_and_the_fix() {
    let (dir, sock) = scratch();
    let ca = dir.join("empty.pem");
    std::fs::write(&ca, "no certificates here\n").unwrap();
    let ca = ca.to_str().unwrap().to_owned();
    // (variable to set or "-NAME" to unset, value, words the line must hold)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "DOCKHAND_SERVER_URL",
            "https://hub.example.com",
            &["DOCKHAND_SERVER_URL", "ws://", "wss://"],
        ),
        (
            "-DOCKHAND_SERVER_URL",
            "",
            &["DOCKHAND_SERVER_URL", "not set"],
        ),
        ("-TOKEN", "", &["TOKEN", "not set"]),
        (
            "HEARTBEAT_INTERVAL",
            "abc",
            &["HEARTBEAT_INTERVAL", "\"abc\"", "seconds"],
        ),
        ("REQUEST_TIMEOUT", "-3", &["REQUEST_TIMEOUT", "seconds"]),
        ("RECONNECT_DELAY", "soon", &["RECONNECT_DELAY", "seconds"]),
        (
            "MAX_RECONNECT_DELAY",
            "0.5",
            &["MAX_RECONNECT_DELAY", "RECONNECT_DELAY"],
        ),
        (
            "CA_CERT",
            "/nonexistent/ca.pem",
            &["CA_CERT", "cannot read /nonexistent/ca.pem"],
        ),
        ("CA_CERT", &ca, &["CA_CERT", "no PEM certificate"]),
        (
            "TLS_SKIP_VERIFY",
            "maybe",
            &["TLS_SKIP_VERIFY", "true or false"],
        ),
        (
            "DOCKER_SOCKET",
            "/nonexistent/docker.sock",
            &[
                "DOCKER_SOCKET",
                "no Docker socket at /nonexistent/docker.sock",
            ],
        ),
        ("DOCKER_HOST", "ftp://docker", &["DOCKER_HOST", "tcp://"]),
        (
            "DOCKER_HOST",
            "unix:///nonexistent/d.sock",
            &["DOCKER_HOST", "no Docker socket"],
        ),
        ("PORT", "99999", &["PORT", "port number"]),
        ("LOG_LEVEL", "verbose", &["LOG_LEVEL", "debug"]),
        ("AGENT_ID", "has spaces", &["AGENT_ID", "UUID"]),
    ];
    for (name, value, words) in cases {
        let mut cmd = agent_cmd(&dir, &sock, "ws://127.0.0.1:9/api/hawser/connect");
        match name.strip_prefix('-') {
            Some(unset) => cmd.env_remove(unset),
            None => cmd.env(name, value),
        };
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}={value}: not one line: {stderr}"
        );
        for w in *words {
            assert!(
                stderr.contains(w),
                "{name}={value}: {w:?} missing in: {stderr}"
            );
        }
        assert!(
            !stderr.contains("tok-very-secret-42"),
            "token leaked: {stderr}"
        );
    }
    // Flags work as well as variables, and name the same setting.
    let out = agent_cmd(&dir, &sock, "ws://h/x")
        .args(["--heartbeat-interval", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--heartbeat-interval"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_documents_every_setting_and_hides_the_token() {
    let out = Command::new(BIN)
        .arg("--help")
        .env("TOKEN", "tok-very-secret-42")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DOCKHAND_SERVER_URL",
        "TOKEN",
        "CA_CERT",
        "TLS_SKIP_VERIFY",
        "PORT",
        "DOCKER_SOCKET",
        "DOCKER_HOST",
        "AGENT_ID",
        "AGENT_NAME",
        "HEARTBEAT_INTERVAL",
        "REQUEST_TIMEOUT",
        "RECONNECT_DELAY",
        "MAX_RECONNECT_DELAY",
        "LOG_LEVEL",
        "MOORING_STATE_DIR",
    ] {
        assert!(
            help.contains(&format!("env: {var}")),
            "{var} missing from --help:\n{help}"
        );
    }
    assert!(
        !help.contains("tok-very-secret-42"),
        "token shown in --help"
    );
}

/// Starts the binary, waits for its hello, sends welcome; returns the
/// child and the hub connection.
async fn start_binary(dir: &Path, sock: &Path, hub: &FakeHub) -> (ChildGuard, HubConn) {
    let child = agent_cmd(dir, sock, &hub.url())
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = ChildGuard(child);
    let conn = hub.accept_welcomed().await;
    (child, conn)
}

async fn wait_exit(child: &mut ChildGuard, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "agent still running after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_the_link_and_exits_0_and_the_id_survives_a_restart() {
    let (dir, sock) = scratch();
    let hub = FakeHub::start().await;
    let (mut child, mut conn) = start_binary(&dir, &sock, &hub).await;
    let first_id = conn.hello.agent_id.clone();
    assert!(uuid::Uuid::parse_str(&first_id).is_ok(), "{first_id}");
    assert_eq!(conn.hello.docker_version, "unknown");
    let stored = std::fs::read_to_string(dir.join("state/agent-id")).unwrap();
    assert_eq!(stored.trim(), first_id);

    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match conn.ws.next().await {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => continue,
                other => panic!("link ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("no close frame within 5 s of SIGTERM");
    assert!(close.is_some());
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)).await, Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(5));

    // Same state dir, new process: same identity.
    let (mut child, conn) = start_binary(&dir, &sock, &hub).await;
    assert_eq!(conn.hello.agent_id, first_id);
    Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)).await, Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}
