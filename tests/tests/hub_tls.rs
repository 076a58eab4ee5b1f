//! The hub for real over TLS: `mooring-hub serve --tls-cert/--tls-key` with
//! a certificate from a private CA, and the real `mooring-agent` binary.
//! With `CA_CERT` the agent connects and the environment goes online;
//! without it the agent refuses the hub and says to set `CA_CERT`.
//! Both binaries run as processes, as an operator would run them.

use std::process::Command;
use std::time::Duration;

use mooring_tests::hubctl::{admin, env_id};
use mooring_tests::procs::{bin_path, curl, free_port, make_certs, Proc, TempDir};

fn agent(
    hub_port: u16,
    token: &str,
    docker: &std::path::Path,
    state: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> Proc {
    let mut cmd = Command::new(bin_path("mooring-agent"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DOCKHAND_SERVER_URL",
            format!("wss://127.0.0.1:{hub_port}/api/hawser/connect"),
        )
        .env("TOKEN", token)
        .env("DOCKER_SOCKET", docker)
        .env("PORT", free_port().to_string())
        .env("AGENT_NAME", "tls-agent")
        .env("MOORING_STATE_DIR", state)
        .env("RECONNECT_DELAY", "0.2")
        .env("MAX_RECONNECT_DELAY", "1")
        .env("METRICS_INTERVAL", "0");
    if let Some(ca) = ca {
        cmd.env("CA_CERT", ca);
    }
    Proc::spawn("mooring-agent", cmd)
}

#[test]
fn agent_trusts_a_private_ca_hub_only_with_ca_cert() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let dir = TempDir::new("mt-tls");
    let (ca, cert, key) = make_certs(&dir.path().join("pki"), &[]);
    let data = dir.path().join("data");
    admin(&data, &["env", "create", "tls-edge", "--type", "edge"]);
    let api_key = admin(&data, &["apikey", "create", "tls-test", "-p", "*"]);
    let token = admin(&data, &["token", "create", "--env", "tls-edge"]);
    let env_id = env_id(&data, "tls-edge");

    let port = free_port();
    let mut hub_cmd = Command::new(bin_path("mooring-hub"));
    hub_cmd
        .arg("--data-dir")
        .arg(&data)
        .args(["--docker-socket", "/nonexistent/docker.sock", "serve"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    let mut hub = Proc::spawn("mooring-hub", hub_cmd);
    let base = format!("https://127.0.0.1:{port}");
    let ca_arg = ca.to_string_lossy().into_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _) = curl(&format!("{base}/api/health"), &["--cacert", &ca_arg]);
        if code == 200 {
            break;
        }
        assert!(hub.exited().is_none(), "hub exited:\n{}", hub.output());
        assert!(
            std::time::Instant::now() < deadline,
            "hub not up:\n{}",
            hub.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Plain http on the TLS port is not served.
    let (code, _) = curl(&format!("http://127.0.0.1:{port}/api/health"), &[]);
    assert_ne!(code, 200, "TLS hub answered plain http");

    // Without CA_CERT: refused, and the agent says what to do.
    let untrusting = agent(port, &token, &rig.docker_sock, &dir.path().join("s1"), None);
    untrusting.wait_output("set CA_CERT", Duration::from_secs(20));
    drop(untrusting);

    // With CA_CERT: online.
    let trusting = agent(
        port,
        &token,
        &rig.docker_sock,
        &dir.path().join("s2"),
        Some(&ca),
    );
    let auth = format!("Authorization: Bearer {api_key}");
    let url = format!("{base}/api/environments/{env_id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = curl(&url, &["--cacert", &ca_arg, "-H", &auth]);
        assert_eq!(code, 200, "{body}");
        let env: serde_json::Value = serde_json::from_str(&body).expect("env JSON");
        if env["status"] == "online" {
            assert_eq!(env["agent"]["name"], "tls-agent");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent never came online over wss:\nagent:\n{}\nhub:\n{}",
            trusting.output(),
            hub.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!hub.output().contains(&token), "hub logged the agent token");
    assert!(
        !trusting.output().contains(&token),
        "agent logged its token"
    );
    drop(trusting);
    let status = hub
        .terminate(Duration::from_secs(15))
        .expect("hub stops on SIGTERM");
    assert!(status.success(), "hub exit status {status:?}");
}
