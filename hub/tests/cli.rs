//! The `mooring-hub` binary: admin subcommands on the store, and `serve`
//! (first start prints the admin key once, SIGTERM stops it cleanly).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{agent_id, AgentOptions, TempDir, TestAgent};

const BIN: &str = env!("CARGO_BIN_EXE_mooring-hub");

fn hub(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .arg("--docker-socket")
        .arg("/nonexistent/docker.sock")
        .args(args)
        .env_remove("MOORING_SECRET_KEY")
        .output()
        .expect("run mooring-hub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn last_line(s: &str) -> &str {
    s.trim_end().lines().last().unwrap_or("")
}

#[tokio::test]
async fn admin_subcommands_work_on_the_store() {
    let dir = TempDir::new();
    let data = dir.0.join("data");

    let (ok, out, err) = hub(&data, &["env", "create", "nas"]);
    assert!(ok, "{err}");
    assert!(out.contains("created edge environment 1"), "{out}");
    let (ok, out, _) = hub(&data, &["--json", "env", "list"]);
    assert!(ok);
    let envs: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(envs[0]["name"], "nas");
    let (ok, _, err) = hub(&data, &["env", "create", "nas"]);
    assert!(!ok && err.contains("exists"), "{err}");

    // Token: the plain secret alone on the last line.
    let (ok, out, err) = hub(
        &data,
        &["token", "create", "--env", "nas", "--expires", "1h"],
    );
    assert!(ok, "{err}");
    let token = last_line(&out).to_owned();
    assert_eq!(token.len(), 43, "{out}");
    let (ok, out, _) = hub(&data, &["--json", "token", "create", "--env", "1"]);
    assert!(ok);
    let json_tok: serde_json::Value = serde_json::from_str(last_line(&out)).unwrap();
    assert_eq!(json_tok["environmentId"], 1);
    // With the hub's public URL, the install one-liner comes first; the token stays last.
    let (ok, out, err) = hub(
        &data,
        &[
            "token",
            "create",
            "--env",
            "nas",
            "--public-url",
            "https://hub.example.com/",
        ],
    );
    assert!(ok, "{err}");
    let fresh = last_line(&out);
    assert!(
        out.contains(&format!(
            "curl -fsSL https://hub.example.com/install.sh | sudo sh -s -- --token {fresh}\n"
        )),
        "{out}"
    );
    let (ok, _, err) = hub(
        &data,
        &[
            "token",
            "create",
            "--env",
            "nas",
            "--public-url",
            "https://h/$(id)",
        ],
    );
    assert!(!ok && err.contains("--public-url"), "{err}");
    let (ok, out, _) = hub(&data, &["token", "list"]);
    assert!(ok);
    assert!(out.contains(&token[..8]) && !out.contains(&token), "{out}");

    // Registry: password from stdin, never printed.
    let password = "cli-registry-password-42";
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "registry",
            "add",
            "corp",
            "127.0.0.1:5000",
            "--username",
            "bob",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out, _) = hub(&data, &["--json", "registry", "list"]);
    assert!(ok);
    let regs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(regs[0]["hasPassword"], true);
    assert!(!out.contains(password));

    // API key: last line is the key; list never shows it.
    let (ok, out, err) = hub(
        &data,
        &["apikey", "create", "ci", "-p", "images:push", "--env", "1"],
    );
    assert!(ok, "{err}");
    let key = last_line(&out).to_owned();
    assert!(key.starts_with("mk_"), "{out}");
    let (ok, _, err) = hub(&data, &["apikey", "create", "bad", "-p", "nonsense"]);
    assert!(!ok && err.contains("invalid permission"), "{err}");
    let (ok, out, _) = hub(&data, &["--json", "apikey", "list"]);
    assert!(ok);
    assert!(!out.contains(&key));
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["environments"], serde_json::json!([1]));

    // The same store serves: the CLI's token connects an agent to a hub on it.
    let (store, fresh) = mooring_hub::setup::open_store(&data, "/nonexistent", None)
        .await
        .unwrap();
    assert!(!fresh);
    let reg = store.find_registry("corp").await.unwrap();
    assert_eq!(reg.password.as_deref(), Some(password));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = mooring_hub::AppState::new(store, common::fast_settings(), shutdown.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/api/hawser/connect", listener.local_addr().unwrap());
    let server = tokio::spawn(mooring_hub::run(listener, state.clone(), shutdown.clone()));
    let agent = TestAgent::connect(&url, &token, AgentOptions::new(&agent_id()))
        .await
        .expect("CLI token accepted");
    assert_eq!(agent.welcome.environment_id, Some(1));
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;

    let (ok, out, _) = hub(&data, &["token", "revoke", "1"]);
    assert!(ok, "{out}");
    let (ok, out, _) = hub(&data, &["--json", "token", "list", "--env", "nas"]);
    assert!(ok);
    let toks: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(toks[0]["status"], "revoked");
    let (ok, _, _) = hub(&data, &["registry", "rm", "corp"]);
    assert!(ok);
    let (ok, _, _) = hub(&data, &["env", "rm", "nas"]);
    assert!(ok);
    let (_, out, _) = hub(&data, &["--json", "env", "list"]);
    assert_eq!(out.trim(), "[]");
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["env", "create", "--help"],
        vec!["token", "create", "--help"],
        vec!["registry", "add", "--help"],
        vec!["apikey", "create", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--data-dir"), "{args:?}: global flags shown");
        assert!(text.contains("--json"), "{args:?}");
    }
}

#[test]
fn serve_prints_the_admin_key_once_and_stops_on_sigterm() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    let start = || {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--docker-socket",
                "/nonexistent/docker.sock",
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .env("MOORING_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for round in 0..2 {
        let mut child = start();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("hub log ends before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Health over real TCP.
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            tcp,
            "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        tcp.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("\"status\":\"ok\""), "{resp}");
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "clean exit on SIGTERM: {status:?}");
        if round == 0 {
            assert!(
                last_line(&stdout).starts_with("mk_"),
                "first start prints the key: {stdout}"
            );
        } else {
            assert!(
                !stdout.contains("mk_"),
                "the admin key is printed only once: {stdout}"
            );
        }
    }
}
