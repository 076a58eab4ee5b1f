//! The agent behind NAT, for real: network namespaces made by
//! `tests/rig/nat.sh` (hub / NAT / edge, veth pairs, iptables MASQUERADE),
//! the real `mooring-hub` in the hub namespace and the real `mooring-agent`
//! in the edge namespace, driving the rig's Docker (a unix socket works
//! across network namespaces).
//!
//! One test does it all (parallel runs would collide on the addresses):
//! - the agent dials out and the environment goes online; the hub sees the
//!   link coming from the NAT's public address, never the edge's own;
//! - the hub cannot open a connection to the agent (not even with a route
//!   to the LAN: the NAT forwards only replies), while the agent's health
//!   port answers inside the edge;
//! - a push through that agent to the rig's open registry completes and
//!   the registry serves the manifest Docker reported;
//! - `nat.sh cut` (packets dropped, no close) → the hub marks the
//!   environment offline with reason `timeout` within its silence timeout;
//!   `nat.sh heal` → the agent is back online within 20 s, same agent id.
//!
//! Needs root, `ip`, `iptables`, `ss`, `curl` and the rig: without them a
//! skip with a note locally, a failure with `CI=true`. The namespaces are
//! removed (`nat.sh down`) whatever happens, panics included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mooring_tests::hubctl::{admin, env_id, HubApi};
use mooring_tests::procs::{bin_path, curl, Proc, TempDir};

/// Hub timings: pings every second, a link silent 4 s is dropped.
const PING_SECS: u64 = 1;
const SILENCE_SECS: u64 = 4;
/// Port of the hub (in its own namespace) and of the agent's health server (in its).
const HUB_PORT: u16 = 3000;
const HEALTH_PORT: u16 = 2376;

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether this test can run here: a skip note locally, a panic under CI.
fn can_run() -> bool {
    let why = if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    {
        Some("not root (ip netns and iptables need root)".to_owned())
    } else {
        ["ip", "iptables", "ss", "curl", "bash"]
            .into_iter()
            .find(|tool| {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .map(|tool| format!("{tool} is not installed"))
    };
    match why {
        None => true,
        Some(why) => {
            assert!(
                !is_ci(),
                "NAT test cannot run: {why} (CI=true: a failure, not a skip)"
            );
            eprintln!("skipping the NAT test: {why}");
            false
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The topology; `nat.sh down` on drop.
struct Nat {
    id: String,
    script: PathBuf,
    vars: HashMap<String, String>,
}

impl Nat {
    fn up(id: &str) -> Nat {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rig/nat.sh");
        // The guard exists before `up` runs, so a half-made topology is removed too.
        let mut nat = Nat {
            id: id.to_owned(),
            script,
            vars: HashMap::new(),
        };
        let out = nat.run("up");
        assert!(out.status.success(), "nat.sh up {id}\n{}", text(&out));
        nat.vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        nat
    }

    fn run(&self, what: &str) -> Output {
        Command::new("bash")
            .arg(&self.script)
            .args([what, &self.id])
            .output()
            .expect("bash runs nat.sh")
    }

    fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("nat.sh up did not print {key}: {:?}", self.vars))
    }

    /// A command run inside namespace `ns`.
    fn exec(&self, ns: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// `curl` inside `ns`: whether `url` answered 200 within 3 s.
    fn curl_ok_from(&self, ns: &str, url: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sS", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--max-time", "3", url])
            .output()
            .expect("ip netns exec curl");
        let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "200";
        (ok, text(&out))
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        let out = self.run("down");
        if !out.status.success() {
            eprintln!("nat.sh down {} failed\n{}", self.id, text(&out));
        }
    }
}

/// Peers of the established connections to the hub's port, seen inside its namespace.
fn hub_peers(nat: &Nat) -> Vec<String> {
    let hub_ns = nat.var("MOORING_NAT_HUB_NS");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            hub_ns,
            "ss",
            "-Htn",
            "state",
            "established",
        ])
        .arg(format!("( sport = :{HUB_PORT} )"))
        .output()
        .expect("ss runs");
    assert!(out.status.success(), "ss\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|peer| peer.rsplit_once(':').map_or(peer, |(ip, _)| ip).to_owned())
        .collect()
}

#[test]
fn agent_behind_nat_dials_out_pushes_and_survives_a_cut_link() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    if !can_run() {
        return;
    }
    let dir = TempDir::new("mt-nat");
    let data = dir.path().join("data");
    admin(&data, &["env", "create", "nat-edge", "--type", "edge"]);
    let key = admin(&data, &["apikey", "create", "nat-test", "-p", "*"]);
    let token = admin(&data, &["token", "create", "--env", "nat-edge"]);
    let env = env_id(&data, "nat-edge");
    let registry_id = {
        let out = Command::new(bin_path("mooring-hub"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--docker-socket", "/nonexistent/docker.sock", "--json"])
            .args(["registry", "add", "rig-open", &rig.registry])
            .output()
            .expect("registry add");
        assert!(out.status.success(), "{}", text(&out));
        let reg: serde_json::Value = serde_json::from_slice(&out.stdout).expect("registry JSON");
        reg["id"].as_i64().expect("registry id")
    };

    // Short, unique per process: nat.sh allows 1-6 lowercase letters/digits.
    let nat_id = format!("n{:x}", std::process::id() & 0xf_ffff);
    let nat = Nat::up(&nat_id);
    let hub_ns = nat.var("MOORING_NAT_HUB_NS").to_owned();
    let edge_ns = nat.var("MOORING_NAT_EDGE_NS").to_owned();
    let public_ip = nat.var("MOORING_NAT_PUBLIC_IP").to_owned();
    let edge_ip = nat.var("MOORING_NAT_EDGE_IP").to_owned();
    let wan_ip = nat.var("MOORING_NAT_HUB_WAN_IP").to_owned();

    let mut hub_cmd = nat.exec(&hub_ns, &bin_path("mooring-hub"));
    hub_cmd
        .arg("--data-dir")
        .arg(&data)
        .args(["--docker-socket", "/nonexistent/docker.sock", "serve"])
        .args(["--listen", &format!("0.0.0.0:{HUB_PORT}")])
        .args(["--ping-interval-secs", &PING_SECS.to_string()])
        .args(["--silence-timeout-secs", &SILENCE_SECS.to_string()])
        .env("NO_COLOR", "1");
    let mut hub = Proc::spawn("mooring-hub (hub ns)", hub_cmd);
    let api = HubApi {
        base: format!("http://{}:{HUB_PORT}", nat.var("MOORING_NAT_HUB_MGMT_IP")),
        key,
    };
    api.wait_healthy(Duration::from_secs(20), || {
        assert!(hub.exited().is_none(), "hub exited:\n{}", hub.output());
    });

    let mut agent_cmd = nat.exec(&edge_ns, &bin_path("mooring-agent"));
    agent_cmd
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DOCKHAND_SERVER_URL",
            format!("ws://{wan_ip}:{HUB_PORT}/api/hawser/connect"),
        )
        .env("TOKEN", &token)
        .env("DOCKER_SOCKET", &rig.docker_sock)
        .env("PORT", HEALTH_PORT.to_string())
        .env("AGENT_NAME", "nat-agent")
        .env("MOORING_STATE_DIR", dir.path().join("agent-state"))
        .env("HEARTBEAT_INTERVAL", "1")
        .env("NO_COLOR", "1");
    let agent = Proc::spawn("mooring-agent (edge ns)", agent_cmd);
    let logs = || format!("agent:\n{}\nhub:\n{}", agent.output(), hub.output());

    // 1. Online, dialled out through the NAT.
    let online = api.wait_env(
        env,
        Duration::from_secs(30),
        "online",
        |e| e["status"] == "online",
        logs,
    );
    let agent_id = online["agent"]["id"].as_str().expect("agent id").to_owned();
    let peers = hub_peers(&nat);
    assert!(
        peers.contains(&public_ip),
        "the hub sees the agent from the NAT's public address {public_ip}: {peers:?}"
    );
    assert!(
        !peers.contains(&edge_ip),
        "the edge's private address reached the hub: {peers:?}"
    );

    // 2. Nothing dials in; the health port is there for the edge itself.
    let (ok, out) = nat.curl_ok_from(
        &edge_ns,
        &format!("http://{edge_ip}:{HEALTH_PORT}/_hawser/health"),
    );
    assert!(ok, "the agent's health port answers inside the edge\n{out}");
    for target in [&edge_ip, &public_ip] {
        let (ok, out) = nat.curl_ok_from(
            &hub_ns,
            &format!("http://{target}:{HEALTH_PORT}/_hawser/health"),
        );
        assert!(
            !ok,
            "the hub namespace reached {target}:{HEALTH_PORT}\n{out}"
        );
    }
    // Even with a route to the LAN through the NAT, a new inbound connection is dropped.
    let lan = format!(
        "{}.0/24",
        edge_ip.rsplit_once('.').map_or("", |(net, _)| net)
    );
    let route = |verb: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", &hub_ns, "ip", "route", verb, &lan, "via", &public_ip,
            ])
            .output()
            .expect("ip route")
    };
    let added = route("add");
    assert!(added.status.success(), "{}", text(&added));
    let (ok, out) = nat.curl_ok_from(
        &hub_ns,
        &format!("http://{edge_ip}:{HEALTH_PORT}/_hawser/health"),
    );
    let _ = route("del");
    assert!(!ok, "the NAT let an inbound connection through\n{out}");
    assert!(
        out.contains("timed out") || out.contains("Timeout"),
        "dropped by the NAT (a timeout), not refused by a host:\n{out}"
    );

    // 3. A push through the agent behind NAT.
    let repo = format!("mooring-nat-{}", std::process::id());
    let body = serde_json::json!({
        "imageId": rig.image_id,
        "registryId": registry_id,
        "newTag": format!("{repo}:v1"),
    });
    let (code, answer) = curl(
        &format!("{}/api/images/push?env={env}", api.base),
        &[
            "-X",
            "POST",
            "--max-time",
            "120",
            "-H",
            &format!("Authorization: Bearer {}", api.key),
            "-H",
            "Content-Type: application/json",
            "-H",
            "Accept: application/json",
            "--data-binary",
            &body.to_string(),
        ],
    );
    assert_eq!(code, 200, "{answer}\n{}", logs());
    let result: serde_json::Value = serde_json::from_str(&answer).expect("push JSON");
    assert_eq!(result["status"], "complete", "{result}");
    let target = format!("{}/{repo}:v1", rig.registry);
    assert_eq!(result["targetTag"], target.as_str());
    let digest = result["digest"].as_str().expect("digest");
    assert_eq!(
        rig.registry_manifest_digest(&rig.registry, &repo, "v1", None)
            .as_deref(),
        Some(digest),
        "the registry serves what Docker pushed"
    );
    let _ = rig.docker(&["rmi", &target]);

    // 4. Cut the link: packets dropped, nobody closes anything.
    let before = api.env(env)["disconnectCount"].as_i64().unwrap_or(0);
    let cut = nat.run("cut");
    assert!(cut.status.success(), "{}", text(&cut));
    let cut_at = Instant::now();
    let offline = api.wait_env(
        env,
        Duration::from_secs(SILENCE_SECS + 10),
        "offline after the cut",
        |e| e["status"] == "offline",
        logs,
    );
    let took = cut_at.elapsed();
    assert_eq!(offline["disconnectReason"], "timeout", "{offline}");
    assert!(
        took >= Duration::from_secs(SILENCE_SECS - 1),
        "offline after {took:?}: sooner than the silence timeout ({SILENCE_SECS} s)?"
    );
    eprintln!("offline {took:?} after the cut (silence timeout {SILENCE_SECS} s)");

    // 5. Heal: the agent finds out its old connection is dead and dials again.
    let heal = nat.run("heal");
    assert!(heal.status.success(), "{}", text(&heal));
    let healed_at = Instant::now();
    let back = api.wait_env(
        env,
        Duration::from_secs(20),
        "online after the heal",
        |e| e["status"] == "online",
        logs,
    );
    eprintln!("online again {:?} after the heal", healed_at.elapsed());
    assert_eq!(back["agent"]["id"], agent_id.as_str(), "same agent");
    assert!(
        back["disconnectCount"].as_i64().unwrap_or(0) > before,
        "{back}"
    );
    assert!(hub_peers(&nat).contains(&public_ip));
    for line in agent
        .output()
        .lines()
        .filter(|l| l.contains("lost") || l.contains("cannot connect"))
    {
        eprintln!("agent: {line}");
    }

    assert!(!hub.output().contains(&token), "hub logged the token");
    assert!(!agent.output().contains(&token), "agent logged its token");
    drop(agent);
    let status = hub
        .terminate(Duration::from_secs(15))
        .expect("hub stops on SIGTERM");
    assert!(status.success(), "hub exit {status:?}");
}
