//! Dashboard sessions: an API key exchanged for a browser-session cookie.
//!
//! `POST /api/session {"key"}` verifies the key like a Bearer key and
//! answers with `Set-Cookie: mooring_session=<id>; HttpOnly;
//! SameSite=Strict; Path=/` (`Secure` over TLS), without `Max-Age` or
//! `Expires`, so the browser forgets it when it closes. The cookie holds a
//! random 256-bit session id, never the key: the hub maps the id (by its
//! SHA-256) to the key's id, in memory. The key's row is still read on
//! every request, so revoking the key ends its sessions at once.
//!
//! The map is bounded ([`MAX_SESSIONS`]); when full, expired sessions go
//! first, then the least recently used. A session expires after
//! [`IDLE_TIMEOUT`] without use and [`MAX_AGE`] after login. A hub restart
//! ends every session (the dashboard asks to log in again).
//!
//! This module never logs a session id or a key.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const COOKIE: &str = "mooring_session";

/// Live sessions per hub, at most.
pub const MAX_SESSIONS: usize = 10_000;

/// A session unused this long is gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// A session older than this is gone, used or not.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

/// Digest of a session id: the map key.
pub type SessionKey = [u8; 32];

#[derive(Debug, Clone, Copy)]
struct Entry {
    key_id: i64,
    created: Instant,
    used: Instant,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.used) > IDLE_TIMEOUT || now.duration_since(self.created) > MAX_AGE
    }
}

/// The in-memory session table.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<SessionKey, Entry>>,
    capacity: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(MAX_SESSIONS)
    }
}

fn digest(id: &str) -> SessionKey {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A table of at most `capacity` sessions.
    pub fn new(capacity: usize) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionKey, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for API key `key_id`; returns the session id (the
    /// cookie value).
    pub fn create(&self, key_id: i64) -> String {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let id = URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.retain(|_, e| !e.expired(now));
        }
        if map.len() >= self.capacity {
            let lru = map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| *k);
            if let Some(k) = lru {
                map.remove(&k);
            }
        }
        map.insert(
            digest(&id),
            Entry {
                key_id,
                created: now,
                used: now,
            },
        );
        id
    }

    /// The key id of a live session, refreshing its idle timer.
    pub fn lookup(&self, id: &str) -> Option<(SessionKey, i64)> {
        let key = digest(id);
        let now = Instant::now();
        let mut map = self.lock();
        let entry = map.get_mut(&key)?;
        if entry.expired(now) {
            map.remove(&key);
            return None;
        }
        entry.used = now;
        Some((key, entry.key_id))
    }

    /// Whether the session is still live (refreshing its idle timer).
    pub fn is_live(&self, key: &SessionKey) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(e) if !e.expired(now) => {
                e.used = now;
                true
            }
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    /// Ends a session (logout).
    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(&digest(id)).is_some()
    }

    /// Ends a session by its key.
    pub fn remove_key(&self, key: &SessionKey) {
        self.lock().remove(key);
    }

    /// Ends every session of API key `key_id` (after revocation).
    pub fn forget_key(&self, key_id: i64) {
        self.lock().retain(|_, e| e.key_id != key_id);
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No session at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id in the request's `Cookie` headers, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The `Set-Cookie` value opening a session.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value clearing the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_map_ids_to_keys_and_end() {
        let s = Sessions::new(2);
        let a = s.create(1);
        let b = s.create(2);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 random bits");
        assert_eq!(s.lookup(&a).map(|x| x.1), Some(1));
        assert!(s.lookup("nope").is_none());
        // Full: the least recently used (b) goes.
        let c = s.create(3);
        assert_eq!(s.len(), 2);
        assert!(s.lookup(&b).is_none());
        assert!(s.lookup(&c).is_some());
        s.forget_key(1);
        assert!(s.lookup(&a).is_none());
        assert!(s.remove(&c));
        assert!(s.is_empty());
    }

    #[test]
    fn cookies_are_parsed_and_written() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; mooring_session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h), Some("abc"));
        h.insert("cookie", "mooring_session=".parse().unwrap());
        assert_eq!(cookie_value(&h), None);
        let c = set_cookie("xyz", false);
        assert_eq!(c, "mooring_session=xyz; HttpOnly; SameSite=Strict; Path=/");
        assert!(!c.contains("Max-Age") && !c.contains("Expires"));
        assert!(set_cookie("xyz", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
