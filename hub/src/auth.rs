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

/// Bounded cache: SHA-256 of a verified key → key id.
#[derive(Debug)]
pub struct KeyCache {
    map: Mutex<HashMap<[u8; 32], i64>>,
    capacity: usize,
}

impl KeyCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        KeyCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, digest: &[u8; 32]) -> Option<i64> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .copied()
    }

    fn put(&self, digest: [u8; 32], id: i64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            // Simple and bounded: start over; hot keys re-verify once.
            map.clear();
        }
        map.insert(digest, id);
    }

    /// Forgets a key id (after revocation).
    pub fn forget(&self, id: i64) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| *v != id);
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
    if let Some(id) = state.key_cache.get(&digest) {
        return match state.store.get_api_key(id).await {
            Ok(c) if c.record.revoked_at.is_none() => Ok(Some(c.record)),
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
    state.key_cache.put(digest, record.id);
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
