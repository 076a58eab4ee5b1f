//! The agent's configuration: the reference Hawser agent's environment
//! variables, the same settings as `--flags`, validated once into a
//! [`Config`].
//!
//! This module owns the names (flag, variable), the defaults and the rules of
//! every setting, and the one-line messages that say what is wrong and how to
//! fix it. It reads files only to check them (CA bundle, Docker socket, the
//! agent-id state file through [`crate::state`]); it never dials anything.
//! Secrets (the token) never appear in `Debug` output or error text.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mooring_docker::Endpoint;
use mooring_protocol::limits;

use crate::{state, tls};

mod rules;

pub use rules::parse_server_url;
use rules::{log_level_ok, parse_bool, parse_docker, seconds};

/// Default health port, as the reference agent.
pub const DEFAULT_PORT: u16 = 2376;
/// Default concurrent Docker requests per link.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;
/// Floor of the idle timeout (nothing received) of a link.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Command line and environment of `mooring-agent` (edge mode).
///
/// Every flag also reads the environment variable of the reference Hawser
/// agent, so an existing install switches by replacing the binary.
#[derive(Debug, Parser)]
#[command(name = "mooring-agent", version, about, long_about = None)]
pub struct Cli {
    /// Hub URL to dial, ws:// or wss:// (path /api/hawser/connect is added when missing).
    #[arg(long, env = "DOCKHAND_SERVER_URL", value_name = "URL")]
    pub server_url: Option<String>,
    /// Enrollment token the hub issued for this environment (secret).
    #[arg(long, env = "TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// PEM file with extra CA certificates to trust for wss:// (added to the system roots).
    #[arg(long, env = "CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the hub's TLS certificate (insecure: testing only).
    #[arg(long, env = "TLS_SKIP_VERIFY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_skip_verify: Option<String>,
    /// Port of the local health server (GET /_hawser/health, /_hawser/info); 0 picks a free port.
    #[arg(long, env = "PORT", value_name = "PORT")]
    pub port: Option<String>,
    /// Address the health server binds to.
    #[arg(
        long,
        env = "MOORING_LISTEN_ADDR",
        value_name = "IP",
        default_value = "0.0.0.0"
    )]
    pub listen_addr: String,
    /// Docker socket path (used when DOCKER_HOST is not set).
    #[arg(
        long,
        env = "DOCKER_SOCKET",
        value_name = "PATH",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: String,
    /// Docker endpoint, unix:///path or tcp://host:port; wins over DOCKER_SOCKET.
    #[arg(long, env = "DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,
    /// Stable agent id (a UUID); when unset one is created once and kept in the state directory.
    #[arg(long, env = "AGENT_ID", value_name = "ID")]
    pub agent_id: Option<String>,
    /// Name shown on the hub (default: the host name).
    #[arg(long, env = "AGENT_NAME", value_name = "NAME")]
    pub agent_name: Option<String>,
    /// Seconds between the agent's pings to the hub; the link drops after max(2x this, 60 s) of silence.
    #[arg(
        long,
        env = "HEARTBEAT_INTERVAL",
        value_name = "SECONDS",
        default_value = "30"
    )]
    pub heartbeat_interval: String,
    /// Seconds a non-streaming Docker request may stay silent before it fails.
    #[arg(
        long,
        env = "REQUEST_TIMEOUT",
        value_name = "SECONDS",
        default_value = "30"
    )]
    pub request_timeout: String,
    /// First reconnect delay in seconds; doubles (with jitter) after each failure.
    #[arg(
        long,
        env = "RECONNECT_DELAY",
        value_name = "SECONDS",
        default_value = "1"
    )]
    pub reconnect_delay: String,
    /// Longest reconnect delay in seconds.
    #[arg(
        long,
        env = "MAX_RECONNECT_DELAY",
        value_name = "SECONDS",
        default_value = "60"
    )]
    pub max_reconnect_delay: String,
    /// Seconds between two host `metrics` frames (0 turns metrics and container events off).
    #[arg(
        long,
        env = "METRICS_INTERVAL",
        value_name = "SECONDS",
        default_value = "30"
    )]
    pub metrics_interval: String,
    /// Log filter: error, warn, info, debug, trace (or a tracing directive list). RUST_LOG wins when set.
    #[arg(long, env = "LOG_LEVEL", value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// Directory for the agent-id file (default $XDG_STATE_HOME/mooring, /var/lib/mooring or ~/.local/state/mooring).
    #[arg(long, env = "MOORING_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Largest WebSocket message accepted from the hub, in bytes.
    #[arg(long, env = "MOORING_MAX_FRAME_BYTES", value_name = "BYTES", default_value_t = limits::MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// Concurrent Docker requests per link; more are refused with error code BUSY.
    #[arg(long, env = "MOORING_MAX_CONCURRENT_REQUESTS", value_name = "N", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,
    /// Offer binary stream-data messages to the hub (extension
    /// `mooring.binary-stream`; used only when the hub accepts it).
    #[arg(long, env = "MOORING_BINARY_STREAMS", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub binary_streams: bool,
}

/// A configuration error: one line naming the setting and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    /// The variable (and flag) at fault, e.g. `DOCKHAND_SERVER_URL (--server-url)`.
    pub name: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

fn bad(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        problem: problem.into(),
    }
}

/// The enrollment token; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Full hub URL (`ws://` or `wss://`, path included).
    pub server_url: String,
    /// Enrollment token.
    pub token: Secret,
    /// Extra CA certificates (PEM file) for `wss://`.
    pub ca_cert: Option<PathBuf>,
    /// Skip verification of the hub's certificate.
    pub tls_skip_verify: bool,
    /// Where the health server listens (`None`: no health server).
    pub health_addr: Option<SocketAddr>,
    /// The Docker daemon.
    pub docker: Endpoint,
    /// Stable agent id.
    pub agent_id: String,
    /// Name shown on the hub.
    pub agent_name: String,
    /// Host name sent in `hello`.
    pub hostname: String,
    /// Interval of the agent's pings.
    pub heartbeat_interval: Duration,
    /// Link dropped after this long without any frame from the hub.
    pub idle_timeout: Duration,
    /// Idle timeout of non-streaming Docker requests.
    pub request_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_delay: Duration,
    /// Cap of the reconnect delay.
    pub max_reconnect_delay: Duration,
    /// Largest message accepted from the hub.
    pub max_frame_bytes: usize,
    /// Concurrent Docker requests per link.
    pub max_concurrent_requests: usize,
    /// Raw bytes per `stream` frame.
    pub stream_chunk_bytes: usize,
    /// Encoded bytes the writer queue may hold before senders wait.
    pub send_queue_bytes: usize,
    /// Interval of host `metrics` frames; `None` turns telemetry off.
    pub metrics_interval: Option<Duration>,
    /// Offer the binary stream-data extension in `hello`.
    pub binary_streams: bool,
}

impl Config {
    /// A configuration with every optional setting at its default (health
    /// server on 127.0.0.1 with a free port); used by tests and embedders.
    pub fn new(server_url: impl Into<String>, token: impl Into<String>, docker: Endpoint) -> Self {
        let heartbeat = Duration::from_secs(30);
        Config {
            server_url: server_url.into(),
            token: Secret::new(token),
            ca_cert: None,
            tls_skip_verify: false,
            health_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            docker,
            agent_id: uuid::Uuid::new_v4().to_string(),
            agent_name: "mooring-agent".into(),
            hostname: hostname(),
            heartbeat_interval: heartbeat,
            idle_timeout: idle_timeout_for(heartbeat),
            request_timeout: Duration::from_secs(30),
            reconnect_delay: Duration::from_secs(1),
            max_reconnect_delay: Duration::from_secs(60),
            max_frame_bytes: limits::MAX_FRAME_BYTES,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            stream_chunk_bytes: limits::DEFAULT_STREAM_CHUNK_BYTES,
            send_queue_bytes: 8 * 1024 * 1024,
            metrics_interval: Some(crate::telemetry::DEFAULT_METRICS_INTERVAL),
            binary_streams: true,
        }
    }
}

/// max(2 × heartbeat, 60 s), as the reference agent.
pub fn idle_timeout_for(heartbeat: Duration) -> Duration {
    (heartbeat * 2).max(MIN_IDLE_TIMEOUT)
}

/// The host name, from the kernel (falls back to `HOSTNAME`, then "unknown").
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

const URL: &str = "DOCKHAND_SERVER_URL (--server-url)";
const TOKEN: &str = "TOKEN (--token)";
const CA: &str = "CA_CERT (--ca-cert)";
const SKIP: &str = "TLS_SKIP_VERIFY (--tls-skip-verify)";
const PORT: &str = "PORT (--port)";
const LISTEN: &str = "MOORING_LISTEN_ADDR (--listen-addr)";
const SOCKET: &str = "DOCKER_SOCKET (--docker-socket)";
const HOST: &str = "DOCKER_HOST (--docker-host)";
const AGENT_ID: &str = "AGENT_ID (--agent-id)";
const LOG: &str = "LOG_LEVEL (--log-level)";
const FRAME: &str = "MOORING_MAX_FRAME_BYTES (--max-frame-bytes)";
const CONC: &str = "MOORING_MAX_CONCURRENT_REQUESTS (--max-concurrent-requests)";

impl Cli {
    /// Validates everything and resolves the agent id (state file); the
    /// first problem found is the error.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let server_url = parse_server_url(self.server_url.as_deref())?;
        let token = match self.token.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => Secret::new(t),
            _ => {
                return Err(bad(
                    TOKEN,
                    "not set: copy the token from the hub's environment settings into TOKEN",
                ))
            }
        };
        let tls_skip_verify = parse_bool(SKIP, self.tls_skip_verify.as_deref())?;
        if let Some(path) = &self.ca_cert {
            tls::load_ca_file(path).map_err(|why| bad(CA, why))?;
        }
        let port: u16 = match self.port.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_PORT,
            Some(p) => p.parse().map_err(|_| {
                bad(
                    PORT,
                    format!("{p:?} is not a port number: use 1-65535, e.g. PORT=2376"),
                )
            })?,
        };
        let ip: IpAddr = self.listen_addr.trim().parse().map_err(|_| {
            bad(
                LISTEN,
                format!(
                    "{:?} is not an IP address: use e.g. 0.0.0.0 or 127.0.0.1",
                    self.listen_addr
                ),
            )
        })?;
        let docker = parse_docker(self.docker_host.as_deref(), &self.docker_socket)?;
        let heartbeat_interval = seconds(
            "HEARTBEAT_INTERVAL (--heartbeat-interval)",
            &self.heartbeat_interval,
            "30",
        )?;
        let request_timeout = seconds(
            "REQUEST_TIMEOUT (--request-timeout)",
            &self.request_timeout,
            "30",
        )?;
        let reconnect_delay = seconds(
            "RECONNECT_DELAY (--reconnect-delay)",
            &self.reconnect_delay,
            "1",
        )?;
        let max_reconnect_delay = seconds(
            "MAX_RECONNECT_DELAY (--max-reconnect-delay)",
            &self.max_reconnect_delay,
            "60",
        )?;
        let metrics_interval = match self.metrics_interval.trim() {
            "0" | "0.0" => None,
            text => Some(seconds(
                "METRICS_INTERVAL (--metrics-interval)",
                text,
                "30",
            )?),
        };
        if max_reconnect_delay < reconnect_delay {
            return Err(bad(
                "MAX_RECONNECT_DELAY (--max-reconnect-delay)",
                format!("{max_reconnect_delay:?} is below RECONNECT_DELAY ({reconnect_delay:?}): raise it or lower RECONNECT_DELAY"),
            ));
        }
        if !log_level_ok(&self.log_level) {
            return Err(bad(
                LOG,
                format!(
                    "{:?} is not a log level: use error, warn, info, debug or trace",
                    self.log_level
                ),
            ));
        }
        if self.max_frame_bytes < 64 * 1024 {
            return Err(bad(
                FRAME,
                "must be at least 65536 bytes (default 67108864)",
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err(bad(CONC, "must be at least 1 (default 256)"));
        }
        let agent_id = match self.agent_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => {
                state::check_agent_id(id).map_err(|why| bad(AGENT_ID, why))?;
                id.to_owned()
            }
            _ => state::load_or_create_agent_id(self.state_dir.as_deref())
                .map_err(|e| bad("MOORING_STATE_DIR (--state-dir)", e.to_string()))?,
        };
        let hostname = hostname();
        let agent_name = self
            .agent_name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| hostname.clone());
        let mut config = Config::new(server_url, token.expose(), docker);
        config.token = token;
        config.ca_cert = self.ca_cert;
        config.tls_skip_verify = tls_skip_verify;
        config.health_addr = Some(SocketAddr::new(ip, port));
        config.agent_id = agent_id;
        config.agent_name = agent_name;
        config.hostname = hostname;
        config.heartbeat_interval = heartbeat_interval;
        config.idle_timeout = idle_timeout_for(heartbeat_interval);
        config.request_timeout = request_timeout;
        config.reconnect_delay = reconnect_delay;
        config.max_reconnect_delay = max_reconnect_delay;
        config.max_frame_bytes = self.max_frame_bytes;
        config.metrics_interval = metrics_interval;
        config.max_concurrent_requests = self.max_concurrent_requests;
        config.binary_streams = self.binary_streams;
        config.stream_chunk_bytes =
            limits::DEFAULT_STREAM_CHUNK_BYTES.min(self.max_frame_bytes / 2);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeout_has_a_floor() {
        assert_eq!(
            idle_timeout_for(Duration::from_secs(10)),
            Duration::from_secs(60)
        );
        assert_eq!(
            idle_timeout_for(Duration::from_secs(45)),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn secret_is_not_shown() {
        let c = Config::new("ws://h/x", "s3cr3t", Endpoint::Tcp("h:1".into()));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
