//! Pure rules of the relay that both ends must agree on: which Docker
//! answers travel as base64, which request paths are acceptable, and how a
//! Docker API path is split from its version prefix.
//!
//! No I/O here: the agent's Docker client and the hub's local client apply
//! these rules to what they read.

/// Whether a Docker response body must travel base64-encoded.
///
/// True for octet-stream, raw-stream, tar and gzip content types, and for any
/// body holding control bytes other than tab, CR and LF, or invalid UTF-8.
pub fn is_binary(content_type: Option<&str>, body: &[u8]) -> bool {
    if let Some(ct) = content_type {
        let ct = ct.to_ascii_lowercase();
        if ct.contains("octet-stream")
            || ct.contains("raw-stream")
            || ct.contains("multiplexed-stream")
            || ct.contains("tar")
            || ct.contains("gzip")
        {
            return true;
        }
    }
    if body
        .iter()
        .any(|&b| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r')
    {
        return true;
    }
    std::str::from_utf8(body).is_err()
}

/// Why a request path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Does not start with `/`.
    #[error("path must start with '/': {0:?}")]
    NotAbsolute(String),
    /// Contains a `..` segment (raw or percent-encoded).
    #[error("path contains '..': refused")]
    DotDot,
    /// Contains whitespace or control characters.
    #[error("path contains whitespace or control characters")]
    BadChars,
}

/// Checks a Docker API path from a `request` frame.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute(path.chars().take(64).collect()));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PathError::BadChars);
    }
    let route = path.split('?').next().unwrap_or(path);
    let lower = route.to_ascii_lowercase();
    if lower.contains("..")
        || lower.contains("%2e%2e")
        || lower.contains(".%2e")
        || lower.contains("%2e.")
    {
        return Err(PathError::DotDot);
    }
    Ok(())
}

/// Splits a leading `/vX.Y` version prefix off a path.
///
/// `"/v1.41/images/json"` → `(Some("1.41"), "/images/json")`.
pub fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let ver = &rest[..end];
        let looks_like_version = !ver.is_empty()
            && ver.contains('.')
            && ver.chars().all(|c| c.is_ascii_digit() || c == '.');
        if looks_like_version {
            let tail = &rest[end..];
            return (Some(ver), if tail.is_empty() { "/" } else { tail });
        }
    }
    (None, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_detection() {
        assert!(is_binary(Some("application/x-tar"), b"abc"));
        assert!(is_binary(Some("application/vnd.docker.raw-stream"), b"abc"));
        assert!(is_binary(Some("application/octet-stream"), b""));
        assert!(!is_binary(Some("application/json"), b"{\"a\":1}\n"));
        assert!(is_binary(Some("text/plain"), b"\x01\x00\x00\x00"));
        assert!(is_binary(None, &[0xff, 0xfe]));
        assert!(!is_binary(None, "héllo\ttab\r\n".as_bytes()));
    }

    #[test]
    fn path_rules() {
        assert!(validate_path("/images/json").is_ok());
        assert!(validate_path("/images/127.0.0.1%3A5001%2Fapp%3Av1/push").is_ok());
        assert!(validate_path("/images/a/json?filter=x..y").is_ok());
        assert_eq!(validate_path("/images/../secrets"), Err(PathError::DotDot));
        assert_eq!(validate_path("/x/%2E%2E/y"), Err(PathError::DotDot));
        assert!(matches!(
            validate_path("images"),
            Err(PathError::NotAbsolute(_))
        ));
        assert_eq!(validate_path("/a b"), Err(PathError::BadChars));
    }

    #[test]
    fn version_prefix() {
        assert_eq!(
            split_version("/v1.41/images/json"),
            (Some("1.41"), "/images/json")
        );
        assert_eq!(split_version("/version"), (None, "/version"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
        assert_eq!(split_version("/v1.43"), (Some("1.43"), "/"));
    }
}
