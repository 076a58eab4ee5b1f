//! Command line and environment: `mooring-hub [serve]` and the admin
//! subcommands that work on the same store.
//!
//! Every flag has a doc comment (its `--help` text) and a `MOORING_…`
//! environment variable; values are validated once, here, and turned into
//! [`Settings`]. This module parses; it never opens the store or a socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::state::Settings;

/// Mooring hub: the relay that Docker-host agents dial into, with its
/// store and HTTP API. Without a subcommand it serves.
#[derive(Debug, Parser)]
#[command(name = "mooring-hub", version)]
pub struct Cli {
    /// Options shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Serve options (when no subcommand is given).
    #[command(flatten)]
    pub serve: ServeArgs,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Directory of the store (SQLite database, secret key). Created on first start.
    #[arg(
        long,
        env = "MOORING_DATA_DIR",
        default_value = "./mooring-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Docker socket of the hub host; on first start, environment `local` is
    /// created for it when it answers.
    #[arg(
        long,
        env = "MOORING_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock",
        global = true
    )]
    pub docker_socket: String,
    /// Print JSON instead of text.
    #[arg(long, env = "MOORING_JSON", global = true)]
    pub json: bool,
    /// Key sealing registry passwords at rest (base64 of 32 bytes); default:
    /// DATA_DIR/secret.key, created with mode 0600.
    #[arg(
        long = "secret-key",
        env = "MOORING_SECRET_KEY",
        hide_env_values = true,
        global = true,
        hide = true
    )]
    pub secret_key: Option<String>,
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MOORING_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); with --tls-key the hub serves https/wss.
    #[arg(long, env = "MOORING_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "MOORING_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Disable API authentication. For a local demo only: anyone who can
    /// reach the port controls every Docker host.
    #[arg(long, env = "MOORING_NO_AUTH")]
    pub no_auth: bool,
    /// Seconds an agent link may be quiet before the hub pings it (it pings only quiet links).
    #[arg(long, env = "MOORING_PING_INTERVAL_SECS", default_value_t = crate::state::DEFAULT_PING_INTERVAL_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ping_interval_secs: u64,
    /// Seconds of silence after which an agent link is dropped.
    #[arg(long, env = "MOORING_SILENCE_TIMEOUT_SECS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub silence_timeout_secs: u64,
    /// Seconds a live link has to answer a probe when another agent claims its environment.
    #[arg(long, env = "MOORING_PROBE_TIMEOUT_SECS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub probe_timeout_secs: u64,
    /// Largest WebSocket message accepted from an agent, in bytes.
    #[arg(long, env = "MOORING_MAX_FRAME_BYTES", default_value_t = mooring_protocol::limits::MAX_FRAME_BYTES, value_parser = clap::value_parser!(usize))]
    pub max_frame_bytes: usize,
    /// Live agent links per hub.
    #[arg(long, env = "MOORING_MAX_LINKS", default_value_t = 1000)]
    pub max_links: usize,
    /// Docker requests in flight per agent link.
    #[arg(long, env = "MOORING_MAX_PENDING_PER_LINK", default_value_t = 512)]
    pub max_pending_per_link: usize,
    /// Idle timeout (seconds) of a whole Docker call.
    #[arg(long, env = "MOORING_REQUEST_TIMEOUT_SECS", default_value_t = 120)]
    pub request_timeout_secs: u64,
    /// Idle timeout (seconds) between two chunks of a Docker stream.
    #[arg(long, env = "MOORING_STREAM_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub stream_idle_timeout_secs: u64,
    /// Accepted agent connections per environment per minute (reconnect-storm throttle).
    #[arg(long, env = "MOORING_RECONNECTS_PER_MINUTE", default_value_t = 12)]
    pub reconnects_per_minute: usize,
    /// Concurrent HTTP connections.
    #[arg(long, env = "MOORING_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// The hub's public URL as agents and browsers reach it
    /// (`https://hub.example.com`), used in agent install commands and
    /// /install.sh. Default: taken from each request's Host header.
    #[arg(long, env = "MOORING_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Also serve GET /metrics WITHOUT authentication on this address
    /// (e.g. 127.0.0.1:9464 for a local Prometheus). On the main address
    /// /metrics needs an API key with `metrics:read`.
    #[arg(long, env = "MOORING_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory of the agent binaries served to `/install.sh`
    /// (`GET /api/agent/binary?arch=…`): `mooring-agent-x86_64`,
    /// `mooring-agent-aarch64`. Default: the directory of this executable,
    /// where a plain `mooring-agent` also serves the host's own architecture.
    #[arg(long, env = "MOORING_AGENT_BINARIES", value_name = "DIR")]
    pub agent_binaries: Option<PathBuf>,
}

impl ServeArgs {
    /// Validates the flags into settings; `Err` is one line for the operator.
    pub fn settings(&self) -> Result<Settings, String> {
        if self.silence_timeout_secs <= self.ping_interval_secs {
            return Err(format!(
                "--silence-timeout-secs ({}) must be longer than --ping-interval-secs ({})",
                self.silence_timeout_secs, self.ping_interval_secs
            ));
        }
        if self.max_frame_bytes < 64 * 1024 {
            return Err("--max-frame-bytes must be at least 65536".into());
        }
        if self.max_links == 0 || self.max_pending_per_link == 0 || self.max_connections == 0 {
            return Err(
                "--max-links, --max-pending-per-link and --max-connections must be > 0".into(),
            );
        }
        let public_url = self
            .public_url
            .as_deref()
            .map(crate::install::check_public_url)
            .transpose()?;
        Ok(Settings {
            public_url,
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            silence_timeout: Duration::from_secs(self.silence_timeout_secs),
            probe_timeout: Duration::from_secs(self.probe_timeout_secs),
            max_frame_bytes: self.max_frame_bytes,
            max_links: self.max_links,
            max_pending_per_link: self.max_pending_per_link,
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            stream_idle_timeout: Duration::from_secs(self.stream_idle_timeout_secs.max(1)),
            reconnects_per_minute: self.reconnects_per_minute.max(1),
            max_connections: self.max_connections,
            no_auth: self.no_auth,
            agent_binaries: self.agent_binaries.clone(),
            ..Settings::default()
        })
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (the default).
    Serve(ServeArgs),
    /// Manage environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Manage agent tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage container registries.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Push an image through a running hub, with live progress.
    Push(crate::client::PushArgs),
}

/// `env …`
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment.
    Create {
        /// Unique name (letters, digits, '-', '_', '.').
        name: String,
        /// `edge` (an agent dials in) or `local` (a Docker socket on this host).
        #[arg(long = "type", default_value = "edge")]
        kind: String,
        /// Docker socket of a local environment.
        #[arg(long)]
        socket: Option<String>,
    },
    /// List environments.
    List,
    /// Delete an environment (and its tokens).
    Rm {
        /// Id or name.
        env: String,
    },
}

/// `token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an agent token; the token alone is the last line of output.
    Create {
        /// Environment id or name (edge).
        #[arg(long)]
        env: String,
        /// Lifetime: seconds, or with a unit (`90m`, `12h`, `30d`). Default: no expiry.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
        /// The hub's public URL (`https://hub.example.com`, as for `serve`):
        /// with it, the install one-liner for the new token is printed too.
        #[arg(long, env = "MOORING_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// List tokens (prefixes only).
    List {
        /// Only this environment (id or name).
        #[arg(long)]
        env: Option<String>,
    },
    /// Revoke a token (a running hub drops its agent within 30 s).
    Revoke {
        /// Token id.
        id: i64,
    },
}

/// `registry …`
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Add a registry.
    Add {
        /// Unique name.
        name: String,
        /// Address (`registry.example.com:5000`, `https://ghcr.io`).
        url: String,
        /// User name.
        #[arg(long)]
        username: Option<String>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
        /// Password (prefer --password-stdin: command lines are visible to other users).
        #[arg(long, env = "MOORING_REGISTRY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List registries (never passwords).
    List,
    /// Delete a registry.
    Rm {
        /// Id or name.
        registry: String,
    },
}

/// `apikey …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key; the key alone is the last line of output.
    Create {
        /// Name of the key.
        name: String,
        /// Permission `resource:action` (repeatable), e.g. `images:push`; `*` for all.
        #[arg(long = "permission", short = 'p', required = true)]
        permissions: Vec<String>,
        /// Limit the key to this environment id (repeatable). Default: all.
        #[arg(long = "env")]
        environments: Vec<i64>,
    },
    /// List API keys.
    List,
    /// Revoke an API key.
    Revoke {
        /// Key id.
        id: i64,
    },
}

/// Parses `3600`, `90s`, `15m`, `12h`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: use e.g. 3600, 90m, 12h or 30d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit in {text:?}: use s, m, h or d")),
    };
    if secs == 0 {
        return Err("a duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_and_subcommand_is_documented() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help text");
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    assert!(
                        sub.get_about().is_some(),
                        "{path} {} has no about",
                        sub.get_name()
                    );
                    walk(sub, &format!("{path} {}", sub.get_name()));
                }
            }
        }
        walk(&Cli::command(), "mooring-hub");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn serve_is_the_default_and_flags_validate() {
        let cli = Cli::try_parse_from(["mooring-hub", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(cli.command.is_none());
        assert!(cli.serve.settings().is_ok());
        let cli = Cli::try_parse_from([
            "mooring-hub",
            "serve",
            "--ping-interval-secs",
            "5",
            "--silence-timeout-secs",
            "3",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!()
        };
        assert!(args.settings().unwrap_err().contains("silence"));
        let cli = Cli::try_parse_from(["mooring-hub", "token", "create", "--env", "nas", "--json"])
            .unwrap();
        assert!(cli.global.json);
    }
}
