//! The real-Docker test rig, as seen from a test.
//!
//! `tests/rig/rig.sh up` starts a private dockerd, an open registry and a
//! basic-auth registry, imports a busybox image, and writes `rig.env`. This
//! module finds those services ([`rig`]) and offers the few helpers tests need
//! to look at them from the outside: the docker CLI ([`Rig::docker`]) and
//! registry probes through `curl` (so the tests crate needs no HTTP client).
//!
//! It never starts or stops anything: the rig's lifetime belongs to the script.
//! A missing rig is a skip on a developer machine and a failure under `CI=true`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Default rig directory, as in `rig.sh` (kept short: unix socket paths < 108 bytes).
pub const DEFAULT_RIG_DIR: &str = "/tmp/mr";

/// Media types accepted when asking a registry for a manifest (single-platform only).
const MANIFEST_ACCEPT: &str =
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// Seconds any single `curl` call may take.
const CURL_MAX_TIME: &str = "30";

/// The running rig: where its services are and how to reach them.
#[derive(Debug, Clone)]
pub struct Rig {
    /// Path of the rig dockerd's unix socket.
    pub docker_sock: PathBuf,
    /// `DOCKER_HOST` value for that socket (`unix://…`).
    pub docker_host: String,
    /// Open registry, `127.0.0.1:PORT` (plain http, no auth).
    pub registry: String,
    /// Basic-auth registry, `127.0.0.1:PORT` (plain http).
    pub auth_registry: String,
    /// User accepted by the auth registry.
    pub auth_user: String,
    /// Password of [`Rig::auth_user`] (random per rig run).
    pub auth_password: String,
    /// Small runnable busybox image present in the rig dockerd (`rig/busybox:1`).
    pub image: String,
    /// Image id of [`Rig::image`] (`sha256:…`).
    pub image_id: String,
    /// Server version of the rig dockerd (e.g. `20.10.24+dfsg1`).
    pub docker_version: String,
    /// ~200 MB image of random data, only built with `MOORING_RIG_BIG=1`.
    pub big_image: Option<String>,
    /// The rig directory (`MOORING_RIG_DIR`).
    pub dir: PathBuf,
}

/// The rig, if it runs.
///
/// Reads `$MOORING_RIG_DIR/rig.env` (default `/tmp/mr/rig.env`); `MOORING_RIG_*`
/// variables in the environment override its values. When the rig is missing
/// this prints a one-line skip note and returns `None`, except under `CI=true`,
/// where it panics: in CI a missing rig is a failure, not a skip.
pub fn rig() -> Option<Rig> {
    match Rig::load() {
        Ok(rig) => Some(rig),
        Err(why) if is_ci() => panic!(
            "test rig not running: run tests/rig/rig.sh up \
             (CI=true: a missing rig is a failure, not a skip) [{why}]"
        ),
        Err(why) => {
            eprintln!("skipping: test rig not running ({why}); run tests/rig/rig.sh up");
            None
        }
    }
}

/// `CI` is set to `true` (or `1`).
fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl Rig {
    /// Loads the rig description from the env file and the environment, and
    /// checks that the docker socket exists. `Err` says what is missing.
    pub fn load() -> Result<Rig, String> {
        let dir = std::env::var_os("MOORING_RIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RIG_DIR));
        let env_file = dir.join("rig.env");
        let mut vars = match std::fs::read_to_string(&env_file) {
            Ok(text) => parse_env_file(&text),
            Err(_) => HashMap::new(),
        };
        for (key, value) in std::env::vars() {
            if key.starts_with("MOORING_RIG_") {
                vars.insert(key, value);
            }
        }
        let get = |key: &str| -> Result<String, String> {
            match vars.get(key) {
                Some(v) if !v.is_empty() => Ok(v.clone()),
                _ => Err(format!("{key} not set and not in {}", env_file.display())),
            }
        };
        let rig = Rig {
            docker_sock: PathBuf::from(get("MOORING_RIG_DOCKER_SOCK")?),
            docker_host: get("MOORING_RIG_DOCKER_HOST")?,
            registry: get("MOORING_RIG_REGISTRY")?,
            auth_registry: get("MOORING_RIG_AUTH_REGISTRY")?,
            auth_user: get("MOORING_RIG_AUTH_USER")?,
            auth_password: get("MOORING_RIG_AUTH_PASSWORD")?,
            image: get("MOORING_RIG_IMAGE")?,
            image_id: get("MOORING_RIG_IMAGE_ID")?,
            docker_version: get("MOORING_RIG_DOCKER_VERSION")?,
            big_image: get("MOORING_RIG_BIG_IMAGE").ok(),
            dir: get("MOORING_RIG_DIR").map(PathBuf::from).unwrap_or(dir),
        };
        if !rig.docker_sock.exists() {
            return Err(format!("no docker socket at {}", rig.docker_sock.display()));
        }
        Ok(rig)
    }

    /// Runs the docker CLI against the rig dockerd (`DOCKER_HOST` set).
    ///
    /// A CLI that cannot be started yields an `Output` with a failed status
    /// and the reason in `stderr`, so callers only check `status`.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(args).env("DOCKER_HOST", &self.docker_host);
        run(cmd, "docker")
    }

    /// Runs the docker CLI and returns its trimmed stdout, or an error naming
    /// the command and carrying its stderr.
    pub fn docker_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.docker(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "docker {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The auth registry's credentials as `(user, password)`, ready for the
    /// `auth` arguments below.
    pub fn auth(&self) -> (&str, &str) {
        (&self.auth_user, &self.auth_password)
    }

    /// HTTP status of `GET http://REGISTRY/v2/` (200 open or authorised, 401
    /// when credentials are needed); `None` if the registry did not answer.
    pub fn registry_v2_status(&self, registry: &str, auth: Option<(&str, &str)>) -> Option<u16> {
        let url = format!("http://{registry}/v2/");
        let (status, _) = curl_head(&url, &[], auth)?;
        Some(status)
    }

    /// The `Docker-Content-Digest` of `REPO:TAG` in `registry`, from
    /// `GET /v2/REPO/manifests/TAG` with a single-platform manifest `Accept`;
    /// `None` if the manifest is absent or the registry did not answer 200.
    pub fn registry_manifest_digest(
        &self,
        registry: &str,
        repo: &str,
        tag: &str,
        auth: Option<(&str, &str)>,
    ) -> Option<String> {
        let url = format!("http://{registry}/v2/{repo}/manifests/{tag}");
        let accept = format!("Accept: {MANIFEST_ACCEPT}");
        let (status, headers) = curl_head(&url, &[accept.as_str()], auth)?;
        if status != 200 {
            return None;
        }
        header(&headers, "docker-content-digest").map(str::to_owned)
    }

    /// HTTP status and body of `GET PATH` on the rig's docker socket (e.g.
    /// `/_ping`, `/v1.41/images/json`); `None` if the socket did not answer.
    pub fn docker_api_get(&self, path: &str) -> Option<(u16, String)> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            CURL_MAX_TIME,
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(&self.docker_sock)
        .arg(format!("http://docker{path}"));
        let out = run(cmd, "curl");
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n')?;
        Some((code.trim().parse().ok()?, body.to_owned()))
    }
}

/// Runs `cmd`; a spawn failure becomes a failed `Output` with the reason in stderr.
fn run(mut cmd: Command, what: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(err) => failed_output(format!("cannot run {what}: {err}")),
    }
}

/// An `Output` with a failed exit status and `msg` as stderr.
fn failed_output(msg: String) -> Output {
    use std::os::unix::process::ExitStatusExt;
    Output {
        status: std::process::ExitStatus::from_raw(127 << 8),
        stdout: Vec::new(),
        stderr: msg.into_bytes(),
    }
}

/// `GET url` with curl, body discarded: the final status code and the raw
/// response headers of the last response.
fn curl_head(url: &str, headers: &[&str], auth: Option<(&str, &str)>) -> Option<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        CURL_MAX_TIME,
        "-o",
        "/dev/null",
        "-D",
        "-",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some((user, password)) = auth {
        cmd.arg("-u").arg(format!("{user}:{password}"));
    }
    cmd.arg(url);
    let out = run(cmd, "curl");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    // With redirects or 100-continue there may be several blocks: keep the last.
    let last = text
        .split("\n\n")
        .filter(|block| block.starts_with("HTTP/"))
        .last()?
        .to_owned();
    let status = last
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, last))
}

/// Value of header `name` (lowercase) in a raw header block.
fn header<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Parses `export NAME=value` lines as written by `rig.sh` (values plain or
/// single-quoted with `'\''` for a quote).
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            if key.is_empty() || key.starts_with('#') {
                return None;
            }
            let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(quoted) => quoted.replace("'\\''", "'"),
                None => value.to_owned(),
            };
            Some((key.trim().to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_plain_and_quoted_values_parse() {
        let vars = parse_env_file(
            "export MOORING_RIG_DIR=/tmp/mr\n\
             export MOORING_RIG_AUTH_PASSWORD='a b'\\''c'\n\
             # comment\n\
             export MOORING_RIG_DOCKER_VERSION=20.10.24+dfsg1\n",
        );
        assert_eq!(vars["MOORING_RIG_DIR"], "/tmp/mr");
        assert_eq!(vars["MOORING_RIG_AUTH_PASSWORD"], "a b'c");
        assert_eq!(vars["MOORING_RIG_DOCKER_VERSION"], "20.10.24+dfsg1");
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let block = "HTTP/1.1 200 OK\nDocker-Content-Digest: sha256:abc\nContent-Length: 3";
        assert_eq!(header(block, "docker-content-digest"), Some("sha256:abc"));
        assert_eq!(header(block, "etag"), None);
    }
}
