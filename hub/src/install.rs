//! The hub's public URL and the commands that enroll an agent with it.
//!
//! The public URL is `--public-url` (`MOORING_PUBLIC_URL`) when set, else
//! the scheme and `Host` of the request (https when the hub serves TLS or
//! a proxy says `X-Forwarded-Proto: https`). Both are checked to hold only
//! URL characters that are inert in a POSIX shell, because they end up in
//! commands an operator pastes into a root shell; so is the token (it is
//! base64url by construction).
//!
//! This module never logs a token.

use axum::http::{header, HeaderMap};
use serde::Serialize;

use crate::api::ApiError;

/// Marks a request that arrived over TLS (inserted by the server).
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

/// Commands that install and start an agent for one token.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstallCommands {
    /// The hub's install script, piped into a root shell.
    pub one_liner: String,
    /// Running the agent binary directly.
    pub command: String,
    /// Writing `/etc/mooring/agent.env` (0600) and starting the systemd unit.
    pub systemd: String,
    /// Running the agent image.
    pub docker: String,
}

fn shell_safe(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '.' | '-' | '_' | '~' | ':' | '/' | '[' | ']' | '%' | '@' | '+' | '='
                )
        })
}

/// Checks a `--public-url` value; returns it without a trailing slash.
pub fn check_public_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && shell_safe(trimmed) && !r.contains('@') => {
            Ok(trimmed.to_owned())
        }
        _ => Err(format!(
            "--public-url must be http(s)://host[:port][/path] with no query, spaces or quotes, got {url:?}"
        )),
    }
}

/// The hub's public base URL for this request.
pub fn public_url(
    configured: Option<&str>,
    headers: &HeaderMap,
    tls: bool,
) -> Result<String, ApiError> {
    if let Some(url) = configured {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "cannot tell the hub's public address from the Host header: start the hub with --public-url",
            )
        })?;
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let scheme = if tls || forwarded_https {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{host}"))
}

/// The agent endpoint (`ws(s)://…/api/hawser/connect`) of a public URL.
pub fn connect_url(base: &str) -> String {
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}{}", mooring_protocol::limits::CONNECT_PATH)
}

/// The enrollment commands for `token` on the hub at `base`.
pub fn commands(base: &str, token: &str) -> Result<InstallCommands, ApiError> {
    if !shell_safe(base) || !shell_safe(token) {
        return Err(ApiError::internal(
            "public URL or token holds characters unsafe in a shell",
        ));
    }
    let ws = connect_url(base);
    Ok(InstallCommands {
        one_liner: format!("curl -fsSL {base}/install.sh | sudo sh -s -- --token {token}"),
        command: format!("DOCKHAND_SERVER_URL={ws} TOKEN={token} mooring-agent"),
        systemd: format!(
            "# Agent settings (mode 0600: it holds the token), then the service\n\
             # (unit: deploy/systemd/mooring-agent.service, installed by install.sh).\n\
             sudo install -d -m 0755 /etc/mooring\n\
             sudo sh -c 'umask 077 && printf \"%s\\n\" \"DOCKHAND_SERVER_URL={ws}\" \"TOKEN={token}\" > /etc/mooring/agent.env'\n\
             sudo systemctl enable --now mooring-agent"
        ),
        docker: format!(
            "docker run -d --name mooring-agent --restart unless-stopped \
             -v /var/run/docker.sock:/var/run/docker.sock \
             --group-add \"$(stat -c %g /var/run/docker.sock)\" \
             -v mooring-agent:/var/lib/mooring/agent \
             -e DOCKHAND_SERVER_URL={ws} -e TOKEN={token} mooring-agent"
        ),
    })
}

/// The install script with the hub's URL filled in.
pub fn install_script(base: &str) -> String {
    include_str!("../../deploy/install.sh").replacen("__MOORING_HUB_URL__", base, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_comes_from_the_flag_or_the_host() {
        let mut h = HeaderMap::new();
        h.insert("host", "hub.example.com:3000".parse().unwrap());
        assert_eq!(
            public_url(None, &h, false).unwrap(),
            "http://hub.example.com:3000"
        );
        assert_eq!(
            public_url(None, &h, true).unwrap(),
            "https://hub.example.com:3000"
        );
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            public_url(None, &h, false).unwrap(),
            "https://hub.example.com:3000"
        );
        assert_eq!(
            public_url(Some("https://hub.example.com/"), &h, false).unwrap(),
            "https://hub.example.com"
        );
        h.insert("host", "evil.com;rm -rf".parse().unwrap());
        assert!(public_url(None, &h, false).is_err());
    }

    #[test]
    fn flag_values_are_checked() {
        assert_eq!(
            check_public_url("https://h.example:8443/").unwrap(),
            "https://h.example:8443"
        );
        assert!(check_public_url("https://h.example/mooring").is_ok());
        for bad in [
            "h.example",
            "ftp://h",
            "https://",
            "https://h/$(id)",
            "https://h x",
            "https://u@h",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_name_the_hub_and_token() {
        let c = commands("https://hub.example.com", "tok_123-abc").unwrap();
        assert_eq!(
            c.one_liner,
            "curl -fsSL https://hub.example.com/install.sh | sudo sh -s -- --token tok_123-abc"
        );
        assert_eq!(
            c.command,
            "DOCKHAND_SERVER_URL=wss://hub.example.com/api/hawser/connect TOKEN=tok_123-abc mooring-agent"
        );
        assert!(c.systemd.contains("/etc/mooring/agent.env"));
        assert!(c.systemd.contains("systemctl enable --now mooring-agent"));
        assert!(c.docker.contains("-e DOCKHAND_SERVER_URL=wss://hub.example.com/api/hawser/connect -e TOKEN=tok_123-abc mooring-agent"));
        assert_eq!(connect_url("http://h:1"), "ws://h:1/api/hawser/connect");
        assert!(commands("https://h", "a'b").is_err());
    }

    #[test]
    fn the_install_script_gets_the_hub_url() {
        let s = install_script("https://hub.example.com");
        assert!(s.contains("MOORING_HUB_URL=\"${MOORING_HUB_URL:-https://hub.example.com}\""));
    }
}
