//! Packaging under `deploy/`: the shell scripts pass shellcheck, both systemd
//! units pass `systemd-analyze verify` (and its offline security score), and `deploy/install.sh` really installs,
//! upgrades and refuses a tampered binary when run against a small local HTTP
//! (and HTTPS) server that plays the hub's download endpoints:
//!
//! - `GET /api/agent/binary?arch=ARCH`: the agent binary;
//! - `GET /api/agent/binary.sha256?arch=ARCH`: its SHA-256 as hex text.
//!
//! External tools (shellcheck, systemd-analyze, python3, curl, openssl) missing
//! is a skip with a note locally and a failure under `CI=true`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The line of `install.sh` the hub rewrites with its own URL when serving it.
const PLACEHOLDER_LINE: &str = r#"MOORING_HUB_URL="${MOORING_HUB_URL:-__MOORING_HUB_URL__}""#;
/// The placeholder itself.
const PLACEHOLDER: &str = "__MOORING_HUB_URL__";
/// Architectures the installer may ask for.
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// A stand-in for the hub's download endpoints: serves `binary-ARCH` and
/// `sha256-ARCH` from the directory in argv[1]; TLS when argv[2] (cert) and
/// argv[3] (key) are given. Prints its port once it listens.
const FAKE_HUB: &str = r#"
import http.server, os, re, ssl, sys, urllib.parse
root = sys.argv[1]
routes = {"/api/agent/binary": "binary-", "/api/agent/binary.sha256": "sha256-"}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        arch = urllib.parse.parse_qs(url.query).get("arch", [""])[0]
        prefix = routes.get(url.path)
        path = os.path.join(root, prefix + arch) if prefix and re.fullmatch(r"[a-z0-9_]+", arch) else None
        if path is None or not os.path.isfile(path):
            self.send_error(404, "not found")
            return
        with open(path, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Repository root (the tests crate lives in `tests/`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// `deploy/install.sh`.
fn install_sh() -> PathBuf {
    repo().join("deploy/install.sh")
}

/// `CI` is set to `true` (or `1`).
fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether every tool is on PATH: a missing one is a skip note locally and a
/// panic under `CI=true`.
fn have(tools: &[&str]) -> bool {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                !is_ci(),
                "{tool} is not installed (CI=true: a missing tool is a failure, not a skip)"
            );
            eprintln!("skipping: {tool} is not installed");
            return false;
        }
    }
    true
}

/// Runs a command to completion and returns its output.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Output as text, for assertion messages.
fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mooring-deploy-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The fake hub: a python HTTP(S) server on 127.0.0.1:0, killed on drop.
struct FakeHub {
    child: Child,
    url: String,
    files: Scratch,
}

impl FakeHub {
    /// Starts the server and waits until it prints its port (it listens by then).
    fn start(tls: Option<(&Path, &Path)>) -> Self {
        let files = Scratch::new("files");
        let mut cmd = Command::new("python3");
        cmd.args(["-c", FAKE_HUB]).arg(files.path());
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the fake hub's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("fake hub did not print a port: {line:?}"));
        let scheme = if tls.is_some() { "https" } else { "http" };
        FakeHub {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            files,
        }
    }

    /// Serves `body` as the agent binary for every architecture, with `digest`
    /// (the real SHA-256 of `body` when `None`).
    fn serve_binary(&self, body: &str, digest: Option<&str>) {
        let digest = digest.map_or_else(|| sha256(body), str::to_owned);
        for arch in ARCHES {
            fs::write(self.files.path().join(format!("binary-{arch}")), body)
                .expect("write binary");
            fs::write(
                self.files.path().join(format!("sha256-{arch}")),
                format!("{digest}\n"),
            )
            .expect("write digest");
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SHA-256 hex digest of `body`, by `sha256sum`.
fn sha256(body: &str) -> String {
    let scratch = Scratch::new("sum");
    let file = scratch.path().join("f");
    fs::write(&file, body).expect("write");
    let out = run(Command::new("sha256sum").arg(&file));
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

/// A fake agent "binary": prints a version, or the settings it was started with.
fn fake_agent(version: &str) -> String {
    format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"mooring-agent {version}\"; exit 0; fi\n\
         echo \"fake agent {version} url=$DOCKHAND_SERVER_URL token=$TOKEN name=$AGENT_NAME\"\n"
    )
}

/// Runs `deploy/install.sh ARGS` with `sh`.
fn install(args: &[&str]) -> Output {
    run(Command::new("sh").arg(install_sh()).args(args))
}

/// Runs the script the way the one-liner does (`curl … | sh -s -- ARGS`),
/// after the placeholder substitution the hub does when serving it.
fn install_as_served(hub_url: &str, args: &[&str]) -> Output {
    let script = fs::read_to_string(install_sh()).expect("read install.sh");
    let served = script.replacen(PLACEHOLDER, hub_url, 1);
    let scratch = Scratch::new("served");
    let file = scratch.path().join("install.sh");
    fs::write(&file, served).expect("write served script");
    let stdin = fs::File::open(&file).expect("open served script");
    run(Command::new("sh")
        .args(["-s", "--"])
        .args(args)
        .stdin(stdin))
}

/// Paths of an install under `prefix`.
struct Installed {
    bin: PathBuf,
    env: PathBuf,
    ca: PathBuf,
    state: PathBuf,
}

fn installed(prefix: &Path) -> Installed {
    Installed {
        bin: prefix.join("usr/local/bin/mooring-agent"),
        env: prefix.join("etc/mooring/agent.env"),
        ca: prefix.join("etc/mooring/ca.pem"),
        state: prefix.join("var/lib/mooring/agent"),
    }
}

/// Lines of the env file that assign `key`.
fn assignments(env: &str, key: &str) -> Vec<String> {
    env.lines()
        .filter(|l| l.starts_with(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

/// Every file (not directory) below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_below(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn install_script_is_posix_shellcheck_clean() {
    if !have(&["shellcheck"]) {
        return;
    }
    let out = run(Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(install_sh()));
    assert!(
        out.status.success(),
        "shellcheck -s sh deploy/install.sh\n{}",
        text(&out)
    );
}

#[test]
fn repository_shell_scripts_are_shellcheck_clean() {
    if !have(&["shellcheck"]) {
        return;
    }
    let mut scripts = Vec::new();
    for dir in ["tests/rig", "scripts", "deploy"] {
        for path in files_below(&repo().join(dir)) {
            if path.extension().is_some_and(|e| e == "sh") {
                scripts.push(path);
            }
        }
    }
    assert!(
        scripts.iter().any(|p| p.ends_with("tests/rig/rig.sh")),
        "rig.sh not found among {scripts:?}"
    );
    for script in scripts {
        let out = run(Command::new("shellcheck").arg(&script));
        assert!(
            out.status.success(),
            "shellcheck {}\n{}",
            script.display(),
            text(&out)
        );
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !have(&["systemd-analyze"]) {
        return;
    }
    for name in ["mooring-agent", "mooring-hub"] {
        let unit = fs::read_to_string(repo().join(format!("deploy/systemd/{name}.service")))
            .unwrap_or_else(|e| panic!("read {name}.service: {e}"));
        // verify insists the ExecStart binary exists: point it at a stand-in,
        // keeping the arguments.
        let scratch = Scratch::new("unit");
        let stand_in = scratch.path().join(name);
        fs::write(&stand_in, "#!/bin/sh\nexit 0\n").expect("write stand-in");
        fs::set_permissions(&stand_in, fs::Permissions::from_mode(0o755)).expect("chmod");
        let real = format!("ExecStart=/usr/local/bin/{name}");
        assert_eq!(
            unit.matches(&real).count(),
            1,
            "{name}.service must have one `{real}`"
        );
        let rewritten = unit.replace(&real, &format!("ExecStart={}", stand_in.display()));
        let file = scratch.path().join(format!("{name}.service"));
        fs::write(&file, rewritten).expect("write unit");
        let out = run(Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&file));
        // Unknown keys and bad values are only warnings: any output is a failure.
        assert!(
            out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
            "systemd-analyze verify {name}.service\n{}",
            text(&out)
        );
        // The sandbox is real: systemd's own exposure score stays at "OK" (≤ 2.0 of 10;
        // an unhardened unit scores 9.6).
        let out = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&file));
        assert!(
            out.status.success(),
            "systemd-analyze security {name}.service\n{}",
            text(&out)
        );
    }
}

#[test]
fn install_script_embeds_the_agent_unit_verbatim() {
    let script = fs::read_to_string(install_sh()).expect("read install.sh");
    let start = "cat <<'MOORING_UNIT'\n";
    let from = script.find(start).expect("unit heredoc in install.sh") + start.len();
    let len = script[from..]
        .find("\nMOORING_UNIT\n")
        .expect("heredoc end")
        + 1;
    let unit = fs::read_to_string(repo().join("deploy/systemd/mooring-agent.service"))
        .expect("read mooring-agent.service");
    assert_eq!(
        &script[from..from + len],
        unit,
        "install.sh's unit differs from deploy/systemd/mooring-agent.service"
    );
}

#[test]
fn install_script_has_exactly_one_hub_url_placeholder() {
    let script = fs::read_to_string(install_sh()).expect("read install.sh");
    assert_eq!(
        script.matches(PLACEHOLDER).count(),
        1,
        "the hub replaces one placeholder"
    );
    assert!(
        script.lines().any(|l| l == PLACEHOLDER_LINE),
        "missing line {PLACEHOLDER_LINE}"
    );
}

#[test]
fn install_without_a_hub_url_fails_with_a_hint() {
    if !have(&["curl", "sha256sum"]) {
        return;
    }
    let prefix = Scratch::new("nohub");
    let out = run(Command::new("sh")
        .arg(install_sh())
        .args(["--token", "t0k", "--no-systemd", "--prefix"])
        .arg(prefix.path())
        .env_remove("MOORING_HUB_URL"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--hub"),
        "{}",
        text(&out)
    );
    assert!(files_below(prefix.path()).is_empty());
}

#[test]
fn served_script_installs_binary_and_private_env_file() {
    if !have(&["python3", "curl", "sha256sum"]) {
        return;
    }
    let hub = FakeHub::start(None);
    let agent = fake_agent("1.0.0");
    hub.serve_binary(&agent, None);
    let prefix = Scratch::new("fresh");
    let p = prefix.path().to_str().expect("utf-8 temp path");
    let out = install_as_served(
        &hub.url,
        &[
            "--token",
            "tok-123",
            "--name",
            "edge-1",
            "--prefix",
            p,
            "--no-systemd",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    let at = installed(prefix.path());
    assert_eq!(fs::read_to_string(&at.bin).expect("binary"), agent);
    assert_eq!(mode(&at.bin), 0o755);
    assert_eq!(mode(&at.env), 0o600, "agent.env holds the token");
    let env = fs::read_to_string(&at.env).expect("env");
    let port = hub.url.trim_start_matches("http://");
    assert_eq!(
        assignments(&env, "DOCKHAND_SERVER_URL"),
        [format!(
            "DOCKHAND_SERVER_URL=ws://{port}/api/hawser/connect"
        )]
    );
    assert_eq!(assignments(&env, "TOKEN"), ["TOKEN=tok-123"]);
    assert_eq!(assignments(&env, "AGENT_NAME"), ["AGENT_NAME=edge-1"]);
    assert_eq!(
        assignments(&env, "MOORING_STATE_DIR"),
        [format!("MOORING_STATE_DIR={}", at.state.display())]
    );
    assert!(
        assignments(&env, "CA_CERT").is_empty(),
        "no CA given: {env}"
    );
    assert!(at.state.is_dir());
    assert!(!Path::new(&format!("{p}/etc/systemd")).exists());

    // The printed command starts the agent with that configuration.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cmd = stdout.lines().last().expect("a run command on stdout");
    let ran = run(Command::new("sh").args(["-c", cmd]));
    assert!(ran.status.success(), "{cmd}\n{}", text(&ran));
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout).trim(),
        format!("fake agent 1.0.0 url=ws://{port}/api/hawser/connect token=tok-123 name=edge-1")
    );
}

#[test]
fn second_run_upgrades_in_place_and_keeps_agent_id() {
    if !have(&["python3", "curl", "sha256sum"]) {
        return;
    }
    let hub = FakeHub::start(None);
    hub.serve_binary(&fake_agent("1.0.0"), None);
    let prefix = Scratch::new("upgrade");
    let p = prefix.path().to_str().expect("utf-8 temp path");
    let hub_url = hub.url.as_str();
    let first = install(&[
        "--hub",
        hub_url,
        "--token",
        "tok-1",
        "--prefix",
        p,
        "--no-systemd",
    ]);
    assert!(first.status.success(), "{}", text(&first));
    let at = installed(prefix.path());
    let mut env = fs::read_to_string(&at.env).expect("env");
    env.push_str("AGENT_ID=3f1c2a9e-0000-4000-8000-000000000001\nLOG_LEVEL=debug\n");
    fs::write(&at.env, &env).expect("edit env");
    fs::write(at.state.join("agent-id"), "kept").expect("state file");

    let v2 = fake_agent("2.0.0");
    hub.serve_binary(&v2, None);
    // No --token: the upgrade keeps the enrolled one. --foreground runs the new agent.
    let second = install(&[
        "--hub",
        hub_url,
        "--name",
        "renamed",
        "--prefix",
        p,
        "--foreground",
    ]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("fake agent 2.0.0"),
        "{}",
        text(&second)
    );
    assert_eq!(fs::read_to_string(&at.bin).expect("binary"), v2);
    let env = fs::read_to_string(&at.env).expect("env");
    for key in [
        "DOCKHAND_SERVER_URL",
        "TOKEN",
        "MOORING_STATE_DIR",
        "AGENT_ID",
        "LOG_LEVEL",
    ] {
        assert_eq!(assignments(&env, key).len(), 1, "{key} once in:\n{env}");
    }
    assert_eq!(assignments(&env, "TOKEN"), ["TOKEN=tok-1"]);
    assert_eq!(assignments(&env, "AGENT_NAME"), ["AGENT_NAME=renamed"]);
    assert_eq!(
        assignments(&env, "AGENT_ID"),
        ["AGENT_ID=3f1c2a9e-0000-4000-8000-000000000001"]
    );
    assert_eq!(mode(&at.env), 0o600);
    assert_eq!(
        fs::read_to_string(at.state.join("agent-id")).expect("state"),
        "kept"
    );
    assert!(
        !fs::read_dir(at.bin.parent().expect("bin dir"))
            .expect("bin dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with('.')),
        "temporary files left in the bin dir"
    );
}

#[test]
fn tampered_binary_is_refused_and_nothing_installed() {
    if !have(&["python3", "curl", "sha256sum"]) {
        return;
    }
    let hub = FakeHub::start(None);
    let genuine = fake_agent("1.0.0");
    hub.serve_binary(&fake_agent("6.6.6-evil"), Some(&sha256(&genuine)));
    let fresh = Scratch::new("tampered");
    let p = fresh.path().to_str().expect("utf-8 temp path");
    let out = install(&[
        "--hub",
        &hub.url,
        "--token",
        "t",
        "--prefix",
        p,
        "--no-systemd",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"),
        "{}",
        text(&out)
    );
    assert!(
        files_below(fresh.path()).is_empty(),
        "left behind: {:?}",
        files_below(fresh.path())
    );
    assert!(fs::read_dir(fresh.path()).expect("prefix").next().is_none());

    // Over an existing install, the old binary and configuration stay as they were.
    hub.serve_binary(&genuine, None);
    let ok = install(&[
        "--hub",
        &hub.url,
        "--token",
        "t",
        "--prefix",
        p,
        "--no-systemd",
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    let at = installed(fresh.path());
    let env_before = fs::read_to_string(&at.env).expect("env");
    hub.serve_binary(&fake_agent("6.6.6-evil"), Some(&sha256(&genuine)));
    let out = install(&[
        "--hub",
        &hub.url,
        "--token",
        "other",
        "--prefix",
        p,
        "--no-systemd",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(fs::read_to_string(&at.bin).expect("binary"), genuine);
    assert_eq!(fs::read_to_string(&at.env).expect("env"), env_before);
}

#[test]
fn https_hub_with_private_ca_gives_wss_url_and_copies_the_ca() {
    if !have(&["python3", "curl", "sha256sum", "openssl"]) {
        return;
    }
    let tls = Scratch::new("tls");
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    let out = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(out.status.success(), "openssl req\n{}", text(&out));
    let hub = FakeHub::start(Some((&cert, &key)));
    hub.serve_binary(&fake_agent("1.0.0"), None);
    let cert_arg = cert.to_str().expect("utf-8 temp path");

    // Without the CA the download is refused, and nothing is installed.
    let untrusted = Scratch::new("untrusted");
    let p = untrusted.path().to_str().expect("utf-8 temp path");
    let out = install(&[
        "--hub",
        &hub.url,
        "--token",
        "t",
        "--prefix",
        p,
        "--no-systemd",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(files_below(untrusted.path()).is_empty());

    let prefix = Scratch::new("ca");
    let p = prefix.path().to_str().expect("utf-8 temp path");
    let args = [
        "--hub",
        &hub.url,
        "--token",
        "t",
        "--ca-cert",
        cert_arg,
        "--prefix",
        p,
        "--no-systemd",
    ];
    let out = install(&args);
    assert!(out.status.success(), "{}", text(&out));
    let at = installed(prefix.path());
    let env = fs::read_to_string(&at.env).expect("env");
    let host = hub.url.trim_start_matches("https://");
    assert_eq!(
        assignments(&env, "DOCKHAND_SERVER_URL"),
        [format!(
            "DOCKHAND_SERVER_URL=wss://{host}/api/hawser/connect"
        )]
    );
    assert_eq!(
        assignments(&env, "CA_CERT"),
        [format!("CA_CERT={}", at.ca.display())]
    );
    assert_eq!(
        fs::read(&at.ca).expect("ca"),
        fs::read(&cert).expect("cert")
    );
    assert_eq!(
        mode(&at.ca),
        0o644,
        "the agent's unprivileged user reads the CA"
    );
    assert!(assignments(&env, "TLS_SKIP_VERIFY").is_empty());
}
