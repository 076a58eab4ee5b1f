//! The one-line installer against a live hub, end to end with real
//! processes: the real `mooring-hub` serves `/install.sh` and the real
//! `mooring-agent` binary (`--agent-binaries`), the token comes from the
//! API with its install one-liner, and that one-liner (run without `sudo`,
//! into a scratch `--prefix` with `--no-systemd`) installs an agent that,
//! started with the command the script prints, connects and brings the
//! environment online on the rig's Docker.
//!
//! Then: running the one-liner again upgrades in place (binary replaced,
//! `agent.env` not duplicated, same agent id, online again as the same
//! agent), and an install through a proxy that flips one byte of the
//! binary in transit is refused with a checksum message, leaving the
//! previous install untouched.
//!
//! Needs the rig (a skip locally, a failure with `CI=true`), curl, sh,
//! sha256sum and python3 (the tampering proxy).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use mooring_tests::hubctl::{admin, env_id, HubApi};
use mooring_tests::procs::{bin_path, curl, free_port, Proc, TempDir};

/// A proxy that forwards GETs to the hub (argv[1], `http://host:port`) and
/// flips one byte in the body of `/api/agent/binary`. Prints its port, then
/// `tampered` each time it changed a download.
const TAMPER_PROXY: &str = r#"
import http.client, http.server, sys, urllib.parse
up = urllib.parse.urlsplit(sys.argv[1])
class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        conn.request("GET", self.path)
        resp = conn.getresponse()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.end_headers()
        tamper = urllib.parse.urlsplit(self.path).path == "/api/agent/binary" and resp.status == 200
        first = True
        while True:
            chunk = resp.read(65536)
            if not chunk:
                break
            if tamper and first and len(chunk) > 100:
                chunk = chunk[:100] + bytes([chunk[100] ^ 0x01]) + chunk[101:]
                print("tampered", flush=True)
            first = False
            self.wfile.write(chunk)
        conn.close()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The tampering proxy, killed on drop; `tampered()` reads what it did.
struct TamperProxy {
    child: Child,
    url: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl TamperProxy {
    fn start(upstream: &str) -> TamperProxy {
        let mut child = Command::new("python3")
            .args(["-c", TAMPER_PROXY, upstream])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (the tampering proxy)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let port = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the proxy prints its port");
        TamperProxy {
            child,
            url: format!("http://127.0.0.1:{}", port.trim()),
            lines,
        }
    }

    /// Downloads it changed so far.
    fn tampered(&self) -> usize {
        self.lines.try_iter().filter(|l| l == "tampered").count()
    }
}

impl Drop for TamperProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have(tools: &[&str]) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                !ci,
                "{tool} is not installed (CI=true: a failure, not a skip)"
            );
            eprintln!("skipping: {tool} is not installed");
            return false;
        }
    }
    true
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `one_liner` (a `curl … | sh -s -- …` line) with `extra` options
/// appended, through `sh -c`, as an operator pastes it.
fn run_one_liner(one_liner: &str, extra: &[&str]) -> Output {
    let line = format!(
        "set -o pipefail 2>/dev/null; {one_liner} {}",
        extra.join(" ")
    );
    Command::new("bash")
        .args(["-c", &line])
        .output()
        .expect("bash runs")
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

/// Every file below `dir` with its content (small files: env, state).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let body = std::fs::read(&path).unwrap_or_default();
                found.insert(path, body);
            }
        }
    }
    found
}

fn count(env: &str, key: &str) -> usize {
    env.lines()
        .filter(|l| l.starts_with(&format!("{key}=")))
        .count()
}

/// Starts the installed agent with the command the installer printed
/// (last stdout line), on a free health port.
fn start_installed(run_cmd: &str, health_port: u16) -> Proc {
    let mut cmd = Command::new("sh");
    // exec: the process is the agent itself (it gets the signals).
    cmd.args(["-c", &format!("exec {run_cmd}")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", health_port.to_string());
    Proc::spawn("installed mooring-agent", cmd)
}

#[test]
fn one_liner_installs_upgrades_and_refuses_a_tampered_binary() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    if !have(&["curl", "sha256sum", "python3", "bash"]) {
        return;
    }
    let dir = TempDir::new("mt-install");
    let data = dir.path().join("data");
    let bins = dir.path().join("bins");
    std::fs::create_dir_all(&bins).expect("bins dir");
    let arch = std::env::consts::ARCH;
    let served = bins.join(format!("mooring-agent-{arch}"));
    std::fs::copy(bin_path("mooring-agent"), &served).expect("copy the agent binary");
    let agent_sha = sha256_file(&served);

    admin(&data, &["env", "create", "live-edge", "--type", "edge"]);
    let key = admin(&data, &["apikey", "create", "install-test", "-p", "*"]);
    let env = env_id(&data, "live-edge");

    let port = free_port();
    let mut hub_cmd = Command::new(bin_path("mooring-hub"));
    hub_cmd
        .arg("--data-dir")
        .arg(&data)
        .args(["--docker-socket", "/nonexistent/docker.sock", "serve"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--agent-binaries")
        .arg(&bins);
    let mut hub = Proc::spawn("mooring-hub", hub_cmd);
    let api = HubApi {
        base: format!("http://127.0.0.1:{port}"),
        key,
    };
    api.wait_healthy(Duration::from_secs(20), || {
        assert!(hub.exited().is_none(), "hub exited:\n{}", hub.output());
    });

    // The hub's checksum is of the binary it was given.
    let (code, line) = curl(
        &format!("{}/api/agent/binary.sha256?arch={arch}", api.base),
        &[],
    );
    assert_eq!(code, 200, "{line}");
    assert_eq!(line, format!("{agent_sha}  mooring-agent\n"));

    // A token through the API comes with the one-liner.
    let (code, body) = curl(
        &format!("{}/api/environments/{env}/tokens", api.base),
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {}", api.key),
        ],
    );
    assert_eq!(code, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).expect("token JSON");
    let token = created["token"].as_str().expect("token").to_owned();
    let one_liner = created["install"]["oneLiner"]
        .as_str()
        .expect("install one-liner")
        .to_owned();
    assert_eq!(
        one_liner,
        format!(
            "curl -fsSL {}/install.sh | sudo sh -s -- --token {token}",
            api.base
        )
    );
    // No root here: the same line without sudo, into a scratch root.
    let one_liner = one_liner.replace("| sudo sh", "| sh");
    let prefix = dir.path().join("root");
    let prefix_s = prefix.to_str().expect("utf-8 temp path").to_owned();
    let sock = rig
        .docker_sock
        .to_str()
        .expect("utf-8 socket path")
        .to_owned();
    let opts = [
        "--prefix",
        prefix_s.as_str(),
        "--no-systemd",
        "--name",
        "live-agent",
        "--docker-socket",
        sock.as_str(),
    ];

    // 1. First install.
    let first = run_one_liner(&one_liner, &opts);
    assert!(first.status.success(), "{}", text(&first));
    let bin = prefix.join("usr/local/bin/mooring-agent");
    let env_file = prefix.join("etc/mooring/agent.env");
    let state = prefix.join("var/lib/mooring/agent");
    assert_eq!(
        sha256_file(&bin),
        agent_sha,
        "installed binary = served binary"
    );
    let mode = std::fs::metadata(&env_file)
        .expect("agent.env")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "agent.env holds the token");
    let env_text = std::fs::read_to_string(&env_file).expect("agent.env");
    assert!(
        env_text.contains(&format!(
            "DOCKHAND_SERVER_URL=ws://127.0.0.1:{port}/api/hawser/connect\n"
        )),
        "{env_text}"
    );
    assert!(
        env_text.contains(&format!("DOCKER_SOCKET={sock}\n")),
        "{env_text}"
    );
    let run_cmd = String::from_utf8_lossy(&first.stdout)
        .lines()
        .last()
        .expect("the run command on stdout")
        .to_owned();
    assert!(run_cmd.contains(&prefix_s), "{run_cmd}");

    let mut agent = start_installed(&run_cmd, free_port());
    let logs =
        |agent: &Proc, hub: &Proc| format!("agent:\n{}\nhub:\n{}", agent.output(), hub.output());
    let online = api.wait_env(
        env,
        Duration::from_secs(30),
        "online",
        |e| e["status"] == "online",
        || logs(&agent, &hub),
    );
    assert_eq!(online["agent"]["name"], "live-agent");
    let agent_id = online["agent"]["id"].as_str().expect("agent id").to_owned();
    assert!(!agent.output().contains(&token), "agent logged its token");
    let status = agent
        .terminate(Duration::from_secs(15))
        .expect("agent stops on SIGTERM");
    assert!(
        status.success(),
        "agent exit {status:?}:\n{}",
        agent.output()
    );
    api.wait_env(
        env,
        Duration::from_secs(15),
        "offline",
        |e| e["status"] == "offline",
        || hub.output(),
    );

    // 2. The same one-liner again: an upgrade in place.
    let before = snapshot(&prefix.join("etc"));
    let state_before = snapshot(&state);
    assert!(
        !state_before.is_empty(),
        "the agent kept its id in {state:?}"
    );
    let old_inode = std::fs::metadata(&bin).expect("binary").ino();
    let second = run_one_liner(&one_liner, &opts);
    assert!(second.status.success(), "{}", text(&second));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("upgraded"), "{}", text(&second));
    assert_ne!(
        std::fs::metadata(&bin).expect("binary").ino(),
        old_inode,
        "the binary was replaced (renamed over), not left alone"
    );
    assert_eq!(sha256_file(&bin), agent_sha);
    assert_eq!(
        snapshot(&prefix.join("etc")),
        before,
        "same options: same files"
    );
    let env_text = std::fs::read_to_string(&env_file).expect("agent.env");
    for key in [
        "DOCKHAND_SERVER_URL",
        "TOKEN",
        "AGENT_NAME",
        "DOCKER_SOCKET",
        "MOORING_STATE_DIR",
    ] {
        assert_eq!(count(&env_text, key), 1, "{key} once in:\n{env_text}");
    }
    assert_eq!(snapshot(&state), state_before, "state (agent id) kept");
    let second_cmd = String::from_utf8_lossy(&second.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(second_cmd, run_cmd);
    let agent = start_installed(&second_cmd, free_port());
    let online = api.wait_env(
        env,
        Duration::from_secs(30),
        "online again",
        |e| e["status"] == "online",
        || logs(&agent, &hub),
    );
    assert_eq!(online["agent"]["id"], agent_id.as_str(), "same agent id");
    drop(agent);

    // 3. A byte flipped in transit: refused, the install stays as it was.
    let proxy = TamperProxy::start(&api.base);
    let etc_before = snapshot(&prefix.join("etc"));
    let bin_inode = std::fs::metadata(&bin).expect("binary").ino();
    let script_line = format!(
        "curl -fsSL {}/install.sh | sh -s -- --hub {}",
        api.base, proxy.url
    );
    let tampered = run_one_liner(&script_line, &opts);
    assert_eq!(proxy.tampered(), 1, "the proxy changed the download");
    assert!(!tampered.status.success(), "{}", text(&tampered));
    let said = String::from_utf8_lossy(&tampered.stderr);
    assert!(said.contains("checksum mismatch"), "{}", text(&tampered));
    assert!(said.contains("nothing installed"), "{}", text(&tampered));
    assert_eq!(std::fs::metadata(&bin).expect("binary").ino(), bin_inode);
    assert_eq!(sha256_file(&bin), agent_sha);
    assert_eq!(snapshot(&prefix.join("etc")), etc_before);
    assert_eq!(snapshot(&state), state_before);
    let leftovers: Vec<_> = std::fs::read_dir(prefix.join("usr/local/bin"))
        .expect("bin dir")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "mooring-agent")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    assert!(!hub.output().contains(&token), "hub logged the token");
    let status = hub
        .terminate(Duration::from_secs(15))
        .expect("hub stops on SIGTERM");
    assert!(status.success(), "hub exit {status:?}");
}
