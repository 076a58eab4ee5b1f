//! The rules for single values of the configuration: hub URL, booleans,
//! durations, log filters and the Docker endpoint. Each returns a
//! [`ConfigError`] that names the setting and the fix; nothing here reads
//! the environment or keeps state.

use std::time::Duration;

use mooring_docker::Endpoint;
use mooring_protocol::limits;

use super::{bad, ConfigError, HOST, SOCKET, URL};

/// Checks a hub URL: ws/wss with a host; adds the connect path when the
/// URL has none.
pub fn parse_server_url(text: Option<&str>) -> Result<String, ConfigError> {
    let text = match text.map(str::trim) {
        Some(t) if !t.is_empty() => t,
        _ => {
            return Err(bad(
                URL,
                "not set: set it to the hub's agent endpoint, e.g. wss://hub.example.com/api/hawser/connect",
            ))
        }
    };
    let uri: http::Uri = text.parse().map_err(|_| {
        bad(
            URL,
            format!("{text:?} is not a URL: use wss://hub.example.com/api/hawser/connect"),
        )
    })?;
    match uri.scheme_str() {
        Some("ws") | Some("wss") => {}
        _ => {
            return Err(bad(
                URL,
                format!("{text:?} must start with ws:// or wss:// (e.g. wss://hub.example.com/api/hawser/connect)"),
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad(
            URL,
            format!("{text:?} has no host: use wss://HOST/api/hawser/connect"),
        ));
    }
    if uri.path().is_empty() || uri.path() == "/" {
        let base = text.trim_end_matches('/');
        return Ok(format!("{base}{}", limits::CONNECT_PATH));
    }
    Ok(text.to_owned())
}

pub(super) fn parse_bool(name: &'static str, text: Option<&str>) -> Result<bool, ConfigError> {
    match text.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("false") | Some("0") | Some("no") | Some("off") => Ok(false),
        Some("true") | Some("1") | Some("yes") | Some("on") => Ok(true),
        Some(other) => Err(bad(
            name,
            format!("{other:?} is not a boolean: use true or false"),
        )),
    }
}

/// Whole or decimal seconds, more than zero.
pub(super) fn seconds(
    name: &'static str,
    text: &str,
    example: &str,
) -> Result<Duration, ConfigError> {
    let t = text.trim();
    let t = t.strip_suffix('s').unwrap_or(t);
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 365.0 * 86400.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(bad(
            name,
            format!("{text:?} is not a positive number of seconds: use e.g. {example}"),
        )),
    }
}

/// A level name, or a list of `target=level` directives; a bare word that
/// is not a level (EnvFilter would read it as a target) is refused.
pub(super) fn log_level_ok(text: &str) -> bool {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let t = text.trim();
    let plain_level = LEVELS.contains(&t.to_ascii_lowercase().as_str());
    let directives = t.contains('=') && tracing_subscriber::EnvFilter::builder().parse(t).is_ok();
    plain_level || directives
}

pub(super) fn parse_docker(host: Option<&str>, socket: &str) -> Result<Endpoint, ConfigError> {
    let (name, endpoint) = match host.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => (
            HOST,
            Endpoint::parse(h).map_err(|_| {
                bad(HOST, format!("{h:?} is not a Docker endpoint: use unix:///var/run/docker.sock or tcp://HOST:2375"))
            })?,
        ),
        None => (
            SOCKET,
            Endpoint::parse(socket.trim()).map_err(|_| {
                bad(SOCKET, format!("{socket:?} is not a socket path: use an absolute path such as /var/run/docker.sock"))
            })?,
        ),
    };
    if let Endpoint::Unix(path) = &endpoint {
        if !path.exists() {
            return Err(bad(
                name,
                format!(
                    "no Docker socket at {}: start Docker, or point {name} at its socket",
                    path.display()
                ),
            ));
        }
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_rules() {
        assert_eq!(
            parse_server_url(Some("wss://hub.example.com")).unwrap(),
            "wss://hub.example.com/api/hawser/connect"
        );
        assert_eq!(
            parse_server_url(Some("ws://127.0.0.1:3000/api/hawser/connect")).unwrap(),
            "ws://127.0.0.1:3000/api/hawser/connect"
        );
        let err = parse_server_url(Some("https://hub.example.com")).unwrap_err();
        assert!(err.to_string().starts_with("DOCKHAND_SERVER_URL"), "{err}");
        assert!(err.to_string().contains("ws://"), "{err}");
        assert!(parse_server_url(None).is_err());
        assert!(parse_server_url(Some("wss://")).is_err());
    }

    #[test]
    fn seconds_accept_whole_and_decimal() {
        assert_eq!(seconds("X", "30", "30").unwrap(), Duration::from_secs(30));
        assert_eq!(
            seconds("X", "0.5", "1").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(seconds("X", "10s", "1").unwrap(), Duration::from_secs(10));
        for bad in ["abc", "0", "-1", "", "NaN", "inf"] {
            assert!(seconds("X", bad, "1").is_err(), "{bad}");
        }
    }

    #[test]
    fn log_levels() {
        for ok in ["info", "DEBUG", "warn", "mooring_agent=debug,info"] {
            assert!(log_level_ok(ok), "{ok}");
        }
        for bad in ["", "verbose", "lots!!", "info=="] {
            assert!(!log_level_ok(bad), "{bad}");
        }
    }

    #[test]
    fn booleans() {
        assert!(!parse_bool("X", None).unwrap());
        assert!(parse_bool("X", Some("TRUE")).unwrap());
        assert!(!parse_bool("X", Some("0")).unwrap());
        assert!(parse_bool("X", Some("maybe")).is_err());
    }
}
