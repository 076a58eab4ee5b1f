//! The `X-Registry-Auth` header Docker wants on a push.
//!
//! Docker decodes it as base64url (RFC 4648 §5) **with** `=` padding of a
//! JSON object `{"username","password","serveraddress"}`, or of
//! `{"serveraddress"}` alone for a registry without credentials: Docker
//! 20.10 refuses a push that has no header at all. `serveraddress` is
//! `https://index.docker.io/v1/` for Docker Hub and the registry host (with
//! port) otherwise.
//!
//! The header carries a secret: never log it, never put it in an error.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use serde::Serialize;

use super::target::RegistryLocation;

/// The auth server address Docker Hub credentials belong to.
pub const DOCKER_HUB_AUTH_ADDRESS: &str = "https://index.docker.io/v1/";

#[derive(Serialize)]
struct AuthConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    serveraddress: &'a str,
}

/// The `serveraddress` Docker matches credentials against.
pub fn server_address(registry: &RegistryLocation) -> &str {
    if registry.docker_hub {
        DOCKER_HUB_AUTH_ADDRESS
    } else {
        &registry.host
    }
}

/// The `X-Registry-Auth` value for `registry`. Credentials are trimmed and
/// used only when both the user name and the password are non-empty.
pub fn registry_auth(
    registry: &RegistryLocation,
    username: Option<&str>,
    password: Option<&str>,
) -> String {
    let username = username.map(str::trim).filter(|s| !s.is_empty());
    let password = password.map(str::trim).filter(|s| !s.is_empty());
    let (username, password) = match (username, password) {
        (Some(u), Some(p)) => (Some(u), Some(p)),
        _ => (None, None),
    };
    let config = AuthConfig {
        username,
        password,
        serveraddress: server_address(registry),
    };
    // Serializing a struct of strings cannot fail; fall back to the empty
    // object rather than panic if it ever did.
    let json = serde_json::to_vec(&config).unwrap_or_else(|_| b"{}".to_vec());
    URL_SAFE.encode(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(header: &str) -> serde_json::Value {
        let bytes = URL_SAFE.decode(header).expect("base64url with padding");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn credentials_are_trimmed_and_sent_with_the_host() {
        let reg = RegistryLocation::parse("http://127.0.0.1:5001/team").expect("url");
        let header = registry_auth(&reg, Some(" alice "), Some("s3cret\n"));
        assert_eq!(
            decode(&header),
            serde_json::json!({"username": "alice", "password": "s3cret", "serveraddress": "127.0.0.1:5001"})
        );
        // Field order as Docker's own clients send it.
        let text = String::from_utf8(URL_SAFE.decode(&header).expect("b64")).expect("utf8");
        assert!(
            text.starts_with(r#"{"username":"alice","password""#),
            "{text}"
        );
    }

    #[test]
    fn docker_hub_uses_the_index_address() {
        let reg = RegistryLocation::parse("docker.io").expect("url");
        let header = registry_auth(&reg, Some("bob"), Some("pw"));
        assert_eq!(decode(&header)["serveraddress"], DOCKER_HUB_AUTH_ADDRESS);
    }

    #[test]
    fn without_both_credentials_only_the_address_is_sent() {
        let reg = RegistryLocation::parse("reg.example.com:5000").expect("url");
        for (u, p) in [
            (None, None),
            (Some("bob"), None),
            (Some("bob"), Some("  ")),
            (None, Some("pw")),
        ] {
            assert_eq!(
                decode(&registry_auth(&reg, u, p)),
                serde_json::json!({"serveraddress": "reg.example.com:5000"})
            );
        }
    }

    #[test]
    fn encoding_is_url_safe_with_padding() {
        use base64::engine::general_purpose::STANDARD;
        let reg = RegistryLocation::parse("reg.example.com").expect("url");
        // Find a password whose JSON needs '+' or '/' in standard base64:
        // the header must carry '-' / '_' there instead.
        let header = (0..64)
            .map(|n| registry_auth(&reg, Some("u"), Some(&format!("??>>~~{n}"))))
            .find(|h| {
                let raw = URL_SAFE.decode(h).expect("base64url");
                STANDARD.encode(raw).contains(['+', '/'])
            })
            .expect("some password exercises the url-safe alphabet");
        assert!(header.contains(['-', '_']), "{header}");
        assert!(!header.contains(['+', '/']), "{header}");
        let mut padded = 0;
        for p in ["a", "ab", "abc"] {
            let h = registry_auth(&reg, Some("u"), Some(p));
            assert_eq!(h.len() % 4, 0, "padded: {h}");
            padded += usize::from(h.ends_with('='));
        }
        assert!(padded >= 2, "two of three lengths need padding");
    }
}
