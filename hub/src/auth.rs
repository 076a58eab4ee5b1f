//! API authentication and permissions.
//!
//! Callers send `Authorization: Bearer mk_…`. A key is found by its 8-char
//! prefix and verified with argon2id (an unknown prefix still costs one
//! verification). Verified keys are remembered in a small bounded cache
//! keyed by the SHA-256 of the key, so argon2 runs once per key and not per
//! request; the key's row is still read on every request, so a revocation
//! takes effect at once.
//!
//! The dashboard sends no header: it holds a session cookie
//! ([`crate::sessions`]) that maps to an API key, checked the same way.
//!
//! Permissions are `resource:action` (`images:push`, `docker:proxy`);
//! `resource:*` grants every action of a resource and `*` everything. A key
//! may be limited to some environments.
//!
//! This module never logs a key and never stores one in plain text.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::api::ApiError;
use crate::crypto;
use crate::metrics::AuthKind;
use crate::state::AppState;
use crate::store::ApiKeyRecord;

/// Every permission the hub knows, for validation and `--help`.
pub const KNOWN_RESOURCES: &[&str] = &[
    "environments",
    "tokens",
    "registries",
    "apikeys",
    "images",
    "jobs",
    "docker",
    "audit",
    "metrics",
];

/// Checks the syntax of a permission string.
pub fn validate_permission(p: &str) -> Result<(), String> {
    if p == "*" {
        return Ok(());
    }
    let valid = p.split_once(':').is_some_and(|(res, act)| {
        !res.is_empty()
            && !act.is_empty()
            && (res == "*" || KNOWN_RESOURCES.contains(&res))
            && act
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '*' || c == '_')
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid permission {p:?}: use \"resource:action\" (resources: {}) or \"*\"",
            KNOWN_RESOURCES.join(", ")
        ))
    }
}

/// Whether `granted` covers `wanted`.
pub fn permits(granted: &str, wanted: &str) -> bool {
    if granted == "*" || granted == wanted {
        return true;
    }
    match (granted.split_once(':'), wanted.split_once(':')) {
        (Some((gr, ga)), Some((wr, wa))) => (gr == "*" || gr == wr) && (ga == "*" || ga == wa),
        _ => false,
    }
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Auth {
    /// API key id; `None` with `--no-auth`.
    pub key_id: Option<i64>,
    /// Key name, for logs and the audit trail.
    pub name: String,
    permissions: Vec<String>,
    environments: Option<Vec<i64>>,
    /// The dashboard session the caller came with, if any.
    pub(crate) session: Option<crate::sessions::SessionKey>,
}

impl Auth {
    /// The identity used when authentication is disabled.
    pub fn anonymous_admin() -> Self {
        Auth {
            key_id: None,
            name: "no-auth".into(),
            permissions: vec!["*".into()],
            environments: None,
            session: None,
        }
    }

    fn from_record(record: &ApiKeyRecord) -> Self {
        Auth {
            key_id: Some(record.id),
            name: record.name.clone(),
            permissions: record.permissions.clone(),
            environments: record.environments.clone(),
            session: None,
        }
    }

    /// Whether the credential is still good: the key not revoked, the
    /// session not ended (long-lived streams check this now and then).
    pub async fn still_valid(&self, state: &AppState) -> bool {
        if let Some(session) = &self.session {
            if !state.sessions.is_live(session) {
                return false;
            }
        }
        match self.key_id {
            None => true,
            Some(id) => match state.store.get_api_key(id).await {
                Ok(k) => k.record.revoked_at.is_none(),
                Err(crate::store::StoreError::NotFound(_)) => false,
                // A store hiccup does not end a stream.
                Err(_) => true,
            },
        }
    }

    /// Whether the caller holds `permission` (ignoring environment scope).
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|g| permits(g, permission))
    }

    /// Whether the caller may act on environment `env_id`.
    pub fn can_see_env(&self, env_id: i64) -> bool {
        self.environments
            .as_ref()
            .is_none_or(|envs| envs.contains(&env_id))
    }

    /// 403 "Permission denied" unless the caller holds `permission`, for
    /// `env_id` when given.
    pub fn require(&self, permission: &str, env_id: Option<i64>) -> Result<(), ApiError> {
        if !self.has(permission) {
            return Err(ApiError::forbidden());
        }
        if let Some(env) = env_id {
            if !self.can_see_env(env) {
                return Err(ApiError::forbidden());
            }
        }
        Ok(())
    }

    /// 403 unless the key is unrestricted (hub-wide operations).
    pub fn require_global(&self, permission: &str) -> Result<(), ApiError> {
        self.require(permission, None)?;
        if self.environments.is_some() {
            return Err(ApiError::forbidden());
        }
        Ok(())
    }

    /// Actor string for the audit log.
    pub fn actor(&self) -> String {
        match self.key_id {
            Some(id) => format!("apikey:{id} ({})", self.name),
            None => "no-auth".into(),
        }
    }
}

/// How long a cached key record answers without a store read. A revoke
/// through the API forgets the key at once; one made by the admin CLI on
/// the same store (another process) is seen within this time.
const RECORD_TTL: Duration = Duration::from_secs(2);

/// Bounded cache: SHA-256 of a verified key → key id, and its record as
/// last read (fresh for [`RECORD_TTL`]), so a hot key costs neither an
/// argon2 check nor a store read per request.
#[derive(Debug)]
pub struct KeyCache {
    map: Mutex<HashMap<[u8; 32], CachedKey>>,
    capacity: usize,
}

#[derive(Debug, Clone)]
struct CachedKey {
    id: i64,
    record: Option<(ApiKeyRecord, Instant)>,
}

impl KeyCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        KeyCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The key id, and its record when read less than [`RECORD_TTL`] ago.
    fn get(&self, digest: &[u8; 32]) -> Option<(i64, Option<ApiKeyRecord>)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get(digest)?;
        let fresh = entry
            .record
            .as_ref()
            .filter(|(_, at)| at.elapsed() < RECORD_TTL)
            .map(|(r, _)| r.clone());
        Some((entry.id, fresh))
    }

    fn put(&self, digest: [u8; 32], record: &ApiKeyRecord) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&digest) {
            // Simple and bounded: start over; hot keys re-verify once.
            map.clear();
        }
        map.insert(
            digest,
            CachedKey {
                id: record.id,
                record: Some((record.clone(), Instant::now())),
            },
        );
    }

    /// Forgets a key id (after revocation).
    pub fn forget(&self, id: i64) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| v.id != id);
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Verifies an API key; `Ok(None)` when it is unknown, wrong or revoked.
pub async fn verify_api_key(state: &AppState, key: &str) -> Result<Option<ApiKeyRecord>, ApiError> {
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if let Some((id, fresh)) = state.key_cache.get(&digest) {
        if let Some(record) = fresh {
            return Ok(Some(record));
        }
        return match state.store.get_api_key(id).await {
            Ok(c) if c.record.revoked_at.is_none() => {
                state.key_cache.put(digest, &c.record);
                Ok(Some(c.record))
            }
            Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {
                state.key_cache.forget(id);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        };
    }
    let candidates = match crypto::prefix_of(key) {
        Some(prefix) => state.store.api_keys_by_prefix(prefix).await?,
        None => Vec::new(),
    };
    let hashes: Vec<String> = candidates.iter().map(|c| c.hash.clone()).collect();
    let found = state
        .verify_secret_against(key, hashes)
        .await
        .map_err(|_| ApiError::unavailable("hub shutting down"))?;
    let Some(index) = found else {
        return Ok(None);
    };
    let record = candidates[index].record.clone();
    if record.revoked_at.is_some() {
        return Ok(None);
    }
    state.key_cache.put(digest, &record);
    let _ = state.store.mark_api_key_used(record.id).await;
    Ok(Some(record))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.settings.no_auth {
            return Ok(Auth::anonymous_admin());
        }
        let Some(key) = bearer(parts) else {
            return session_auth(parts, state).await;
        };
        match verify_api_key(state, key).await? {
            Some(record) => Ok(Auth::from_record(&record)),
            None => {
                state.metrics.auth_failed(AuthKind::ApiKey);
                Err(ApiError::unauthorized("Invalid or revoked API key"))
            }
        }
    }
}

/// Authenticates by the dashboard's session cookie.
async fn session_auth(parts: &Parts, state: &AppState) -> Result<Auth, ApiError> {
    let Some(id) = crate::sessions::cookie_value(&parts.headers) else {
        return Err(ApiError::unauthorized(
            "Missing API key: send \"Authorization: Bearer <key>\" (or log in to the dashboard)",
        ));
    };
    let ended = || {
        state.metrics.auth_failed(AuthKind::Session);
        ApiError::unauthorized("Session ended or unknown: log in again")
    };
    let Some((session, key_id)) = state.sessions.lookup(id) else {
        return Err(ended());
    };
    match state.store.get_api_key(key_id).await {
        Ok(k) if k.record.revoked_at.is_none() => {
            let mut auth = Auth::from_record(&k.record);
            auth.session = Some(session);
            Ok(auth)
        }
        Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {
            state.sessions.remove_key(&session);
            Err(ended())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn key_cache_answers_fresh_records_and_forgets_revoked_keys() {
        let cache = KeyCache::new(2);
        let record = |id| ApiKeyRecord {
            id,
            name: format!("k{id}"),
            prefix: "abcdefgh".into(),
            permissions: vec!["*".into()],
            environments: None,
            created_at: 0,
            revoked_at: None,
            last_used_at: None,
        };
        cache.put([1; 32], &record(1));
        let (id, fresh) = cache.get(&[1; 32]).expect("cached");
        assert_eq!(id, 1);
        assert_eq!(fresh.map(|r| r.name), Some("k1".to_owned()));
        cache.forget(1);
        assert!(
            cache.get(&[1; 32]).is_none(),
            "a revoked key is forgotten at once"
        );
        // Bounded: a third key starts over rather than growing.
        cache.put([2; 32], &record(2));
        cache.put([3; 32], &record(3));
        cache.put([4; 32], &record(4));
        assert!(cache.map.lock().unwrap().len() <= 2);
    }

    use super::*;

    #[test]
    fn permission_matching() {
        assert!(permits("*", "images:push"));
        assert!(permits("images:*", "images:push"));
        assert!(permits("images:push", "images:push"));
        assert!(!permits("images:pull", "images:push"));
        assert!(!permits("registries:*", "images:push"));
        assert!(permits("*:read", "registries:read"));
    }

    #[test]
    fn permission_syntax() {
        assert!(validate_permission("images:push").is_ok());
        assert!(validate_permission("*").is_ok());
        assert!(validate_permission("docker:*").is_ok());
        assert!(validate_permission("images").is_err());
        assert!(validate_permission("bogus:read").is_err());
        assert!(validate_permission("images:PUSH").is_err());
    }

    #[test]
    fn environment_scope() {
        let a = Auth {
            key_id: Some(1),
            name: "ci".into(),
            permissions: vec!["images:push".into()],
            environments: Some(vec![2]),
            session: None,
        };
        assert!(a.require("images:push", Some(2)).is_ok());
        assert_eq!(a.require("images:push", Some(3)).unwrap_err().status(), 403);
        assert!(a.require("registries:write", None).is_err());
        assert!(a.require_global("images:push").is_err());
    }
}
