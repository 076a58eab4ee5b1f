//! User-facing messages for push failures.
//!
//! Docker and registries say the same thing many ways (`401 Unauthorized`,
//! `unauthorized: authentication required`, `denied: requested access to
//! the resource is denied`); [`format_error`] turns what they say into one
//! sentence a person can act on, as the reference hub does, extended to the
//! wordings real registries use. Anything unrecognised is passed on as is.

/// Registry refused the credentials (or their absence).
pub const AUTH_FAILED: &str = "Authentication failed. Check registry credentials.";

/// The image or repository does not exist.
pub const IMAGE_NOT_FOUND: &str = "Image not found";

/// The daemon tried https against a plain-http registry, or TLS failed.
pub const TLS_ERROR: &str = "TLS/HTTPS error. If your registry uses HTTP, add it to Docker's \
                             insecure-registries in /etc/docker/daemon.json";

/// The edge agent of the environment is offline.
pub const AGENT_NOT_CONNECTED: &str = "Edge agent not connected";

/// Said when Docker gave no text at all.
pub const PUSH_FAILED: &str = "Failed to push image";

/// The message to show for a Docker / registry failure text, given the HTTP
/// status when one is known.
pub fn format_error(raw: &str, status: Option<u16>) -> String {
    let text = raw.trim();
    let lower = text.to_ascii_lowercase();
    if status == Some(401)
        || has_code(&lower, "401")
        || lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("denied")
    {
        return AUTH_FAILED.to_owned();
    }
    if status == Some(404) || has_code(&lower, "404") {
        return IMAGE_NOT_FOUND.to_owned();
    }
    if lower.contains("https")
        || lower.contains("tls")
        || lower.contains("certificate")
        || lower.contains("x509")
    {
        return TLS_ERROR.to_owned();
    }
    if lower.contains("agent not connected") {
        return AGENT_NOT_CONNECTED.to_owned();
    }
    if text.is_empty() {
        return match status {
            Some(code) => format!("{PUSH_FAILED} (Docker answered HTTP {code})"),
            None => PUSH_FAILED.to_owned(),
        };
    }
    text.to_owned()
}

/// Whether `code` occurs as a number of its own (not inside a digest or a
/// longer number).
fn has_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_wordings_map_to_one_message() {
        let cases: &[(&str, Option<u16>, &str)] = &[
            ("unauthorized: authentication required", None, AUTH_FAILED),
            ("denied: requested access to the resource is denied", None, AUTH_FAILED),
            ("Get \"http://r/v2/\": 401 Unauthorized", None, AUTH_FAILED),
            ("no basic auth credentials", Some(401), AUTH_FAILED),
            ("Authentication required", None, AUTH_FAILED),
            ("No such image: app:1", Some(404), IMAGE_NOT_FOUND),
            ("received 404 from registry", None, IMAGE_NOT_FOUND),
            (
                "Get \"https://127.0.0.1:5000/v2/\": http: server gave HTTP response to HTTPS client",
                None,
                TLS_ERROR,
            ),
            ("x509: certificate signed by unknown authority", None, TLS_ERROR),
            ("remote error: tls: handshake failure", None, TLS_ERROR),
            ("Edge agent not connected", None, AGENT_NOT_CONNECTED),
            ("", None, PUSH_FAILED),
            ("   ", Some(500), "Failed to push image (Docker answered HTTP 500)"),
            ("blob upload unknown", None, "blob upload unknown"),
        ];
        for (raw, status, want) in cases {
            assert_eq!(
                format_error(raw, *status),
                *want,
                "raw={raw:?} status={status:?}"
            );
        }
    }

    #[test]
    fn digits_inside_a_digest_are_not_a_status() {
        let raw = "manifest sha256:a4041b404e0 invalid";
        assert_eq!(format_error(raw, None), raw);
        assert!(has_code("status 404.", "404"));
        assert!(!has_code("14044", "404"));
    }
}
