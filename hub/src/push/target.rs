//! Where an image goes: the registry's location and the target reference.
//!
//! [`target_tag`] is the one pure function that turns "the image's tag, an
//! optional new tag and a registry URL" into the reference Docker pushes:
//!
//! - the source tag's registry prefix is stripped: the first path part is a
//!   registry host when it contains `.` or `:` or is `localhost` (Docker's
//!   own rule), so `old.io/team/app:v2` → `team/app:v2`;
//! - a digest (`@sha256:…`) is dropped: a push needs a tag;
//! - the new tag, when given, replaces that base name (as given: it is not
//!   stripped);
//! - no tag → `latest`; repository names are lowercased (Docker refuses
//!   uppercase ones), tags keep their case;
//! - Docker Hub registries get no host prefix; every other registry gets
//!   its host, port and path: `registry.company.com:5000/project/app:v1.0`.
//!
//! Nothing here does I/O; every rule is in the table test below.

use std::fmt;

/// Docker Hub's hosts: images pushed there carry no host prefix.
const DOCKER_HUB_HOSTS: &[&str] = &[
    "docker.io",
    "hub.docker.com",
    "registry.hub.docker.com",
    "index.docker.io",
    "registry-1.docker.io",
];

/// Docker's limit on a repository name, host included.
const MAX_REPOSITORY_LEN: usize = 255;

/// Docker's limit on a tag.
const MAX_TAG_LEN: usize = 128;

/// Why a target could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// There is no source tag and no new tag.
    #[error("Image has no tag. Please provide a tag name.")]
    NoTag,
    /// The registry URL has no host.
    #[error("Registry URL {0:?} has no host")]
    BadRegistryUrl(String),
    /// The resulting reference is not one Docker accepts.
    #[error("Invalid image name {name:?}: {why}")]
    InvalidName {
        /// The name as computed.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A registry as configured, reduced to what a push needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLocation {
    /// Host with port, lowercase (`registry.company.com:5000`).
    pub host: String,
    /// Path under the host, without slashes at the ends (`project`), or "".
    pub path: String,
    /// Whether this is Docker Hub.
    pub docker_hub: bool,
}

impl RegistryLocation {
    /// Parses a registry URL as operators write it: with or without a
    /// scheme, with a port, with a path. Credentials in the URL and a bare
    /// API root path (`/v1`, `/v2`) are ignored.
    pub fn parse(url: &str) -> Result<RegistryLocation, TagError> {
        let bad = || TagError::BadRegistryUrl(url.chars().take(200).collect());
        let mut rest = url.trim();
        if let Some(pos) = rest.find("://") {
            rest = &rest[pos + 3..];
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = host.to_ascii_lowercase();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '?') {
            return Err(bad());
        }
        let hostname = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let docker_hub = DOCKER_HUB_HOSTS.contains(&hostname);
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut path = path.trim_matches('/').to_ascii_lowercase();
        if docker_hub || path == "v1" || path == "v2" {
            path.clear();
        }
        Ok(RegistryLocation {
            host,
            path,
            docker_hub,
        })
    }

    /// The prefix pushed names get (`host[:port][/path]`), "" for Docker Hub.
    pub fn prefix(&self) -> String {
        match (self.docker_hub, self.path.is_empty()) {
            (true, _) => String::new(),
            (false, true) => self.host.clone(),
            (false, false) => format!("{}/{}", self.host, self.path),
        }
    }
}

/// The reference an image is pushed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// Repository, with the registry prefix (`127.0.0.1:5000/team/app`).
    pub repository: String,
    /// Tag (`v1.0`).
    pub tag: String,
}

impl fmt::Display for PushTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// Strips a leading registry host from a reference (`a.io/x/y` → `x/y`).
pub fn strip_registry(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => reference,
    }
}

/// Computes the push target. See the module docs for the rules.
pub fn target_tag(
    source_tag: Option<&str>,
    new_tag: Option<&str>,
    registry: &RegistryLocation,
) -> Result<PushTarget, TagError> {
    let source = nonblank(source_tag).filter(|s| !is_none_tag(s));
    let name = match (nonblank(new_tag), source) {
        (Some(new), _) => without_digest(new),
        (None, Some(src)) => strip_registry(without_digest(src)),
        (None, None) => return Err(TagError::NoTag),
    };
    let (repo, tag) = split_tag(name);
    let repo = repo.to_ascii_lowercase();
    let tag = tag.unwrap_or("latest");
    check_repo(&repo)?;
    check_tag(tag)?;
    let prefix = registry.prefix();
    let repository = if prefix.is_empty() {
        repo
    } else {
        format!("{prefix}/{repo}")
    };
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(invalid(&repository, "longer than 255 characters"));
    }
    Ok(PushTarget {
        repository,
        tag: tag.to_owned(),
    })
}

fn nonblank(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Docker's placeholder for an untagged image.
pub fn is_none_tag(tag: &str) -> bool {
    tag == "<none>:<none>" || tag == "<none>" || tag.starts_with("<none>@")
}

fn without_digest(reference: &str) -> &str {
    reference.split('@').next().unwrap_or(reference)
}

/// `name:tag` → (`name`, `Some(tag)`); a `:` before the last `/` is a port.
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_slash = name.rfind('/').map_or(0, |p| p + 1);
    match name[last_slash..].rfind(':') {
        Some(pos) => {
            let at = last_slash + pos;
            (&name[..at], Some(&name[at + 1..]))
        }
        None => (name, None),
    }
}

fn invalid(name: &str, why: &'static str) -> TagError {
    TagError::InvalidName {
        name: name.chars().take(300).collect(),
        why,
    }
}

fn check_repo(repo: &str) -> Result<(), TagError> {
    if repo.is_empty() {
        return Err(invalid(repo, "empty repository name"));
    }
    for part in repo.split('/') {
        let ok_chars = part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        let ends_ok = part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok_chars || !ends_ok {
            return Err(invalid(
                repo,
                "each path part must be lowercase letters, digits and . _ - \
                 and start and end with a letter or digit",
            ));
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), TagError> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            tag,
            "a tag is 1 to 128 letters, digits, _ . - and does not start with . or -",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (source tag, new tag, registry URL, expected target or error text).
    const TABLE: &[(Option<&str>, Option<&str>, &str, &str)] = &[
        // The spec's examples.
        (Some("myapp:latest"), Some("username/myapp:v1.0"), "docker.io", "username/myapp:v1.0"),
        (None, Some("app:production"), "https://registry.example.com", "registry.example.com/app:production"),
        (Some("app:v1.0"), None, "registry.example.com", "registry.example.com/app:v1.0"),
        (Some("app:v1.0"), None, "https://registry.company.com:5000/project", "registry.company.com:5000/project/app:v1.0"),
        (Some("old.registry.io/team/app:v2"), None, "registry.example.com", "registry.example.com/team/app:v2"),
        (Some("myapp:latest"), Some("myapp:v2.0"), "https://index.docker.io/v1/", "myapp:v2.0"),
        // Every Docker Hub spelling, and one that only looks like it.
        (Some("me/app:1"), None, "hub.docker.com", "me/app:1"),
        (Some("me/app:1"), None, "https://registry.hub.docker.com", "me/app:1"),
        (Some("me/app:1"), None, "index.docker.io", "me/app:1"),
        (Some("me/app:1"), None, "https://registry-1.docker.io/v2/", "me/app:1"),
        (Some("me/app:1"), None, "mydocker.io.example.com", "mydocker.io.example.com/me/app:1"),
        // No tag → latest; a namespace without a dot is not a registry.
        (Some("app"), None, "reg.example.com", "reg.example.com/app:latest"),
        (Some("team/app"), None, "reg.example.com", "reg.example.com/team/app:latest"),
        (None, Some("app"), "reg.example.com", "reg.example.com/app:latest"),
        // Ports: in the source (stripped) and in the registry (kept).
        (Some("localhost:5000/app"), None, "127.0.0.1:5001", "127.0.0.1:5001/app:latest"),
        (Some("127.0.0.1:5000/demo/app:vec"), None, "http://127.0.0.1:5001", "127.0.0.1:5001/demo/app:vec"),
        (Some("localhost/app:1"), None, "reg.example.com", "reg.example.com/app:1"),
        // Digests are dropped.
        (Some("app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), None, "reg.example.com", "reg.example.com/app:latest"),
        (Some("reg.old.io/app:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), None, "reg.example.com", "reg.example.com/app:v1"),
        // Nested paths, in the image and in the registry URL.
        (Some("a/b/c/app:1.2.3"), None, "https://reg.example.com:8443/x/y/", "reg.example.com:8443/x/y/a/b/c/app:1.2.3"),
        (Some("app:1"), None, "https://reg.example.com/v2/", "reg.example.com/app:1"),
        (Some("app:1"), None, "https://user:secret@reg.example.com/team", "reg.example.com/team/app:1"),
        // Uppercase: repository and host lowercased, tag kept.
        (Some("MyApp:V1.0-RC"), None, "HTTPS://Registry.Example.COM:5000/Team", "registry.example.com:5000/team/myapp:V1.0-RC"),
        (Some("Reg.Old.IO/Team/App"), Some("Team/App:Prod"), "reg.example.com", "reg.example.com/team/app:Prod"),
        // Blank new tag falls back to the source; <none> is no tag.
        (Some("app:1"), Some("  "), "reg.example.com", "reg.example.com/app:1"),
        (Some("<none>:<none>"), Some("app:2"), "reg.example.com", "reg.example.com/app:2"),
        // Errors.
        (None, None, "reg.example.com", "Image has no tag. Please provide a tag name."),
        (Some("<none>:<none>"), None, "reg.example.com", "Image has no tag. Please provide a tag name."),
        (Some("app:"), None, "reg.example.com", "Invalid image name \"\""),
        (Some("app:bad tag"), None, "reg.example.com", "Invalid image name \"bad tag\""),
        (Some("-app:1"), None, "reg.example.com", "Invalid image name \"-app\""),
        (Some("a//b:1"), None, "reg.example.com", "Invalid image name \"a//b\""),
        (Some("app:1"), None, "https:///path", "Registry URL \"https:///path\" has no host"),
        (Some("app:1"), None, "  ", "Registry URL \"  \" has no host"),
    ];

    #[test]
    fn target_tag_table() {
        for (source, new, url, want) in TABLE {
            let got = RegistryLocation::parse(url)
                .and_then(|reg| target_tag(*source, *new, &reg))
                .map(|t| t.to_string())
                .unwrap_or_else(|e| e.to_string());
            assert!(
                got == *want || (got.starts_with(want) && want.starts_with("Invalid")),
                "source={source:?} new={new:?} url={url:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn target_splits_repository_and_tag() {
        let reg = RegistryLocation::parse("127.0.0.1:5000").expect("url");
        let t = target_tag(Some("rig/busybox:1"), None, &reg).expect("target");
        assert_eq!(t.repository, "127.0.0.1:5000/rig/busybox");
        assert_eq!(t.tag, "1");
        assert!(!reg.docker_hub);
        assert!(
            RegistryLocation::parse("docker.io")
                .expect("url")
                .docker_hub
        );
    }

    #[test]
    fn long_names_are_refused() {
        let reg = RegistryLocation::parse("reg.example.com").expect("url");
        let long = "a".repeat(300);
        assert!(target_tag(Some(&long), None, &reg).is_err());
        let long_tag = format!("app:{}", "t".repeat(129));
        assert!(target_tag(Some(&long_tag), None, &reg).is_err());
    }
}
