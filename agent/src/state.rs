//! The agent's small durable state: its id, kept in a file so the hub sees
//! the same agent across restarts when `AGENT_ID` is not given.
//!
//! This module owns the state directory's location and the `agent-id` file.
//! It writes atomically (temp file + rename) and never overwrites an id that
//! is already there: a damaged file is an error to fix, not a new identity.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the file holding the id inside the state directory.
pub const AGENT_ID_FILE: &str = "agent-id";

/// Why the agent id could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No usable state directory.
    #[error("no writable state directory ({tried}): set MOORING_STATE_DIR to a writable directory, or set AGENT_ID")]
    NoDir {
        /// The directories tried.
        tried: String,
    },
    /// The id file exists but cannot be read or holds no valid id.
    #[error("{path}: {why}: fix or delete the file (a new id then registers as a new agent), or set AGENT_ID")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Writing the new id failed.
    #[error("cannot write {path}: {why}: make the directory writable, or set MOORING_STATE_DIR or AGENT_ID")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        why: String,
    },
}

/// Checks an id: 1-128 printable ASCII characters without spaces.
pub fn check_agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{:?} is not a valid agent id: use a UUID (1-128 printable characters, no spaces)",
            id.chars().take(40).collect::<String>()
        ));
    }
    Ok(())
}

/// Candidate state directories, in order: `$XDG_STATE_HOME/mooring`,
/// `/var/lib/mooring`, `$HOME/.local/state/mooring`.
fn default_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(x).join("mooring"));
    }
    dirs.push(PathBuf::from("/var/lib/mooring"));
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(home).join(".local/state/mooring"));
    }
    dirs
}

/// Reads the id from `dir` (or the first usable default directory),
/// creating and storing a new UUID when there is none yet.
pub fn load_or_create_agent_id(dir: Option<&Path>) -> Result<String, StateError> {
    let candidates = match dir {
        Some(d) => vec![d.to_path_buf()],
        None => default_dirs(),
    };
    // An existing id anywhere in the list wins, so moving from one default to
    // another never changes identity.
    for d in &candidates {
        if let Some(id) = read_id(&d.join(AGENT_ID_FILE))? {
            return Ok(id);
        }
    }
    let mut tried = Vec::new();
    for d in &candidates {
        if std::fs::create_dir_all(d).is_ok() && is_writable(d) {
            let id = uuid::Uuid::new_v4().to_string();
            write_id(&d.join(AGENT_ID_FILE), &id)?;
            tracing::info!(agent_id = %id, dir = %d.display(), "created a new agent id");
            return Ok(id);
        }
        tried.push(d.display().to_string());
    }
    Err(StateError::NoDir {
        tried: tried.join(", "),
    })
}

fn read_id(path: &Path) -> Result<Option<String>, StateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id = text.trim();
            check_agent_id(id).map_err(|why| StateError::BadFile {
                path: path.display().to_string(),
                why,
            })?;
            Ok(Some(id.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::BadFile {
            path: path.display().to_string(),
            why: e.to_string(),
        }),
    }
}

fn is_writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

fn write_id(path: &Path, id: &str) -> Result<(), StateError> {
    let err = |e: std::io::Error| StateError::Write {
        path: path.display().to_string(),
        why: e.to_string(),
    };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(format!("{id}\n").as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mooring-state-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn id_is_created_once_and_kept() {
        let dir = temp_dir("keep");
        let first = load_or_create_agent_id(Some(&dir)).unwrap();
        assert!(uuid::Uuid::parse_str(&first).is_ok());
        let second = load_or_create_agent_id(Some(&dir)).unwrap();
        assert_eq!(first, second);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn damaged_file_is_an_error_not_a_new_identity() {
        let dir = temp_dir("bad");
        std::fs::write(dir.join(AGENT_ID_FILE), "has spaces in it\n").unwrap();
        let err = load_or_create_agent_id(Some(&dir)).unwrap_err();
        assert!(err.to_string().contains("set AGENT_ID"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn id_rules() {
        assert!(check_agent_id("2b7e1c3e-9a8d-4a57-8f5e-0d1f8a6b9c01").is_ok());
        assert!(check_agent_id("").is_err());
        assert!(check_agent_id("a b").is_err());
        assert!(check_agent_id(&"x".repeat(129)).is_err());
    }
}
