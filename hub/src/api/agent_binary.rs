//! The agent binaries this hub ships, for the one-line installer
//! (`deploy/install.sh`):
//!
//! - `GET /api/agent/binary?arch=x86_64|aarch64`: the file, streamed from
//!   disk (`application/octet-stream`, `Content-Length`);
//! - `GET /api/agent/binary.sha256?arch=…`: `<hex>  mooring-agent\n`, the
//!   `sha256sum` line install.sh compares against what it downloaded.
//!
//! Where the files are: in the directory `--agent-binaries`
//! (`MOORING_AGENT_BINARIES`), default the directory of the hub's own
//! executable. There `mooring-agent-<arch>` serves `<arch>`; a plain
//! `mooring-agent` (the build shipped next to the hub) stands for the
//! hub host's own architecture when no `mooring-agent-<arch>` is present.
//!
//! The digest is computed once per file and cached by the file's identity
//! (device, inode, size, modification time), from the same open file
//! descriptor that is then served, so a replaced file is re-hashed and the
//! checksum is always of the bytes served (a file rewritten in place while
//! being read is the operator's race; install.sh then refuses the
//! mismatch). Both routes are unauthenticated (the installer has only its
//! token; the binary is no secret) and bounded: at most
//! [`MAX_CONCURRENT`] downloads or hash runs at once, `503` with
//! `Retry-After` beyond that.
//!
//! This module never reveals a server path in an answer (only in the log)
//! and never reads a whole binary into memory.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::state::AppState;

/// Architectures the hub serves agents for (`uname -m` spellings).
pub const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// Downloads (and first-time hash runs) in flight at once.
pub const MAX_CONCURRENT: usize = 16;

/// Seconds a client is asked to wait when every download slot is taken.
const RETRY_AFTER_SECS: &str = "5";

/// Read size when streaming and hashing.
const CHUNK: usize = 64 * 1024;

/// Routes of the agent download.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/agent/binary", get(binary))
        .route("/api/agent/binary.sha256", get(checksum))
}

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// The served binaries: where they are, their cached digests, the
/// download slots.
#[derive(Debug)]
pub struct AgentBinaries {
    dir: Option<PathBuf>,
    /// One entry per path served (so at most a few): its last identity and digest.
    digests: Mutex<HashMap<PathBuf, (FileId, String)>>,
    slots: Arc<Semaphore>,
}

impl AgentBinaries {
    /// Binaries in `dir`, or (`None`) next to the running executable.
    pub fn new(dir: Option<PathBuf>) -> AgentBinaries {
        let dir = dir.or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
        });
        AgentBinaries {
            dir,
            digests: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }

    /// The directory searched, if known.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The file serving `arch`, if one exists.
    pub fn path_for(&self, arch: &str) -> Option<PathBuf> {
        let dir = self.dir.as_deref()?;
        let specific = dir.join(format!("mooring-agent-{arch}"));
        if specific.is_file() {
            return Some(specific);
        }
        let own = dir.join("mooring-agent");
        (arch == std::env::consts::ARCH && own.is_file()).then_some(own)
    }

    fn cached(&self, path: &Path, id: FileId) -> Option<String> {
        let map = self.digests.lock().unwrap_or_else(|p| p.into_inner());
        map.get(path)
            .filter(|(k, _)| *k == id)
            .map(|(_, d)| d.clone())
    }

    fn remember(&self, path: PathBuf, id: FileId, digest: String) {
        let mut map = self.digests.lock().unwrap_or_else(|p| p.into_inner());
        // Keys are the few candidate paths; the bound only guards surprises.
        if map.len() >= 4 * ARCHES.len() && !map.contains_key(&path) {
            map.clear();
        }
        map.insert(path, (id, digest));
    }
}

#[derive(Debug, Deserialize)]
struct ArchQuery {
    arch: Option<String>,
}

/// The canonical name of a requested architecture.
fn canonical_arch(query: &ArchQuery) -> Result<&'static str, ApiError> {
    let Some(arch) = query.arch.as_deref().map(str::trim) else {
        return Err(ApiError::bad_request(
            "Missing ?arch=: use x86_64 or aarch64 (the output of `uname -m`)",
        ));
    };
    match arch {
        "x86_64" | "amd64" => Ok("x86_64"),
        "aarch64" | "arm64" => Ok("aarch64"),
        other => {
            let shown: String = other.chars().take(32).collect();
            Err(ApiError::bad_request(format!(
                "Unknown arch {shown:?}: this hub serves agents for x86_64 and aarch64"
            )))
        }
    }
}

fn slot(bins: &AgentBinaries) -> Result<OwnedSemaphorePermit, ApiError> {
    bins.slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(format!(
            "Too many agent downloads at once (limit {MAX_CONCURRENT}): retry in a few seconds"
        ))
    })
}

fn with_retry_after(err: ApiError) -> Response {
    let unavailable = err.status() == StatusCode::SERVICE_UNAVAILABLE;
    let mut resp = err.into_response();
    if unavailable {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    resp
}

/// Opens the binary for `arch`: the file, its path and identity.
async fn open(
    bins: &AgentBinaries,
    arch: &'static str,
) -> Result<(tokio::fs::File, PathBuf, FileId), ApiError> {
    let missing = || {
        tracing::warn!(
            arch,
            dir = ?bins.dir(),
            "no agent binary to serve: expected mooring-agent-{arch} in the agent binaries directory"
        );
        ApiError::not_found(format!(
            "No agent binary for arch {arch} on this hub: put a mooring-agent built for {arch} \
             as mooring-agent-{arch} in the hub's agent binaries directory (--agent-binaries / \
             MOORING_AGENT_BINARIES) and retry, or install the agent by hand (deploy/README.md)"
        ))
    };
    let path = bins.path_for(arch).ok_or_else(missing)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(err) => {
            return Err(ApiError::internal(format!(
                "cannot open {}: {err}",
                path.display()
            )))
        }
    };
    let meta = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(format!("cannot stat {}: {e}", path.display())))?;
    Ok((file, path, FileId::of(&meta)))
}

/// SHA-256 hex of the first `size` bytes of `file`.
async fn hash(mut file: tokio::fs::File, size: u64) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while being hashed",
            ));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

async fn binary(State(state): State<AppState>, Query(query): Query<ArchQuery>) -> Response {
    match serve_binary(&state.agent_binaries, &query).await {
        Ok(resp) => resp,
        Err(err) => with_retry_after(err),
    }
}

async fn serve_binary(bins: &AgentBinaries, query: &ArchQuery) -> Result<Response, ApiError> {
    let arch = canonical_arch(query)?;
    let permit = slot(bins)?;
    let (file, path, id) = open(bins, arch).await?;
    tracing::info!(arch, size = id.size, "serving the agent binary");
    // Exactly the bytes counted in Content-Length, even if the file grows.
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(id.size), CHUNK);
    let body = Body::from_stream(stream.map(move |chunk| {
        // The download slot is held until the body is done or dropped.
        let _held = &permit;
        chunk.map_err(|err| {
            tracing::warn!(%err, path = %path.display(), "reading the agent binary failed mid-download");
            err
        })
    }));
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(id.size));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"mooring-agent\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

async fn checksum(State(state): State<AppState>, Query(query): Query<ArchQuery>) -> Response {
    match digest_line(&state.agent_binaries, &query).await {
        Ok(line) => {
            let mut resp = line.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        Err(err) => with_retry_after(err),
    }
}

async fn digest_line(bins: &AgentBinaries, query: &ArchQuery) -> Result<String, ApiError> {
    let arch = canonical_arch(query)?;
    let (file, path, id) = open(bins, arch).await?;
    let digest = match bins.cached(&path, id) {
        Some(d) => d,
        None => {
            let _permit = slot(bins)?;
            let d = hash(file, id.size)
                .await
                .map_err(|e| ApiError::internal(format!("hashing {}: {e}", path.display())))?;
            tracing::info!(arch, size = id.size, sha256 = %d, "hashed the agent binary");
            bins.remember(path, id, d.clone());
            d
        }
    };
    Ok(format!("{digest}  mooring-agent\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(arch: Option<&str>) -> ArchQuery {
        ArchQuery {
            arch: arch.map(str::to_owned),
        }
    }

    #[test]
    fn arches_are_canonical() {
        assert_eq!(canonical_arch(&q(Some("x86_64"))).unwrap(), "x86_64");
        assert_eq!(canonical_arch(&q(Some("amd64"))).unwrap(), "x86_64");
        assert_eq!(canonical_arch(&q(Some("arm64"))).unwrap(), "aarch64");
        let err = canonical_arch(&q(Some("mips"))).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("x86_64 and aarch64"));
        assert_eq!(
            canonical_arch(&q(None)).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mooring-agent-bin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_arch_specific_file_wins_over_the_own_build() {
        let dir = scratch("pick");
        let bins = AgentBinaries::new(Some(dir.clone()));
        let host = std::env::consts::ARCH;
        let other = if host == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        };
        assert_eq!(bins.path_for(host), None);
        std::fs::write(dir.join("mooring-agent"), b"own").unwrap();
        assert_eq!(bins.path_for(host), Some(dir.join("mooring-agent")));
        assert_eq!(
            bins.path_for(other),
            None,
            "own build is only the host's arch"
        );
        std::fs::write(dir.join(format!("mooring-agent-{host}")), b"x").unwrap();
        assert_eq!(
            bins.path_for(host),
            Some(dir.join(format!("mooring-agent-{host}")))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn downloads_are_bounded_and_a_slot_is_held_until_the_body_ends() {
        let dir = scratch("slots");
        std::fs::write(dir.join("mooring-agent-x86_64"), vec![7u8; 200_000]).unwrap();
        let bins = AgentBinaries::new(Some(dir.clone()));
        let mut bodies = Vec::new();
        for _ in 0..MAX_CONCURRENT {
            let resp = serve_binary(&bins, &q(Some("x86_64"))).await.unwrap();
            assert_eq!(resp.headers()[header::CONTENT_LENGTH], "200000");
            bodies.push(resp);
        }
        let err = serve_binary(&bins, &q(Some("x86_64"))).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            with_retry_after(err).headers()[header::RETRY_AFTER],
            RETRY_AFTER_SECS
        );
        // A finished download frees its slot.
        let body = bodies.pop().unwrap().into_body();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(bytes.len(), 200_000);
        assert!(serve_binary(&bins, &q(Some("x86_64"))).await.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_digest_follows_a_replaced_file() {
        let dir = scratch("hash");
        let bins = AgentBinaries::new(Some(dir.clone()));
        let file = dir.join("mooring-agent-aarch64");
        std::fs::write(&file, b"abc").unwrap();
        let line = digest_line(&bins, &q(Some("aarch64"))).await.unwrap();
        assert_eq!(
            line,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  mooring-agent\n"
        );
        // Replaced (new inode, as an install would): re-hashed.
        let tmp = dir.join(".new");
        std::fs::write(&tmp, b"abcd").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let line = digest_line(&bins, &q(Some("aarch64"))).await.unwrap();
        assert!(
            line.starts_with("88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589")
        );
        std::fs::remove_file(&file).unwrap();
        let err = digest_line(&bins, &q(Some("aarch64"))).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert!(err.message().contains("No agent binary for arch aarch64"));
        assert!(
            !err.message().contains(dir.to_str().unwrap()),
            "no path in answers"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
