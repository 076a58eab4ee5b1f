//! Secrets: generation, one-way hashing, and the at-rest cipher.
//!
//! Owns the shape of every secret the hub hands out (agent tokens and API
//! keys: 32 random bytes, base64url without padding, looked up by an 8-char
//! prefix), their argon2id hashes, and the ChaCha20-Poly1305 key that
//! encrypts registry passwords in the store.
//!
//! It must never log, print or return a plain secret except to the one
//! caller that just created it; it never touches the store.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

/// Characters of a secret used as its lookup prefix.
pub const PREFIX_LEN: usize = 8;

/// Prefix of API keys, so they are recognisable in a leak scanner.
pub const API_KEY_PREFIX: &str = "mk_";

/// Environment variable that may carry the at-rest key (base64, 32 bytes).
pub const SECRET_KEY_ENV: &str = "MOORING_SECRET_KEY";

/// File in the data dir that holds the at-rest key.
pub const SECRET_KEY_FILE: &str = "secret.key";

/// Why a crypto operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Hashing failed (argon2 parameter or salt problem).
    #[error("hashing failed: {0}")]
    Hash(String),
    /// The at-rest key is missing, unreadable or malformed.
    #[error("secret key: {0}")]
    Key(String),
    /// A ciphertext does not decrypt with this key (wrong key or corrupt).
    #[error("stored secret does not decrypt: wrong {SECRET_KEY_FILE} / {SECRET_KEY_ENV}, or corrupt data")]
    Decrypt,
}

/// A fresh random secret: 32 bytes, base64url without padding (43 chars).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh API key: [`API_KEY_PREFIX`] followed by a [`new_secret`].
pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", new_secret())
}

/// The lookup prefix of a secret (API keys: taken after `mk_`).
///
/// Returns `None` for text too short to be one of our secrets.
pub fn prefix_of(secret: &str) -> Option<&str> {
    let body = secret.strip_prefix(API_KEY_PREFIX).unwrap_or(secret);
    if body.len() < PREFIX_LEN || !body.is_char_boundary(PREFIX_LEN) {
        return None;
    }
    Some(&body[..PREFIX_LEN])
}

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `secret`.
pub fn hash_secret(secret: &str) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| CryptoError::Hash(e.to_string()))?;
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::Hash(e.to_string()))
}

/// Argon2 working memories kept for reuse: at most this many (the number
/// of verifications the hub runs at once); more are allocated and freed.
const POOLED_MEMORIES: usize = 4;

/// Reused argon2 working memory. Each verification needs 19 MiB; glibc
/// keeps large freed blocks in its per-thread arenas, so allocating it per
/// check grew the hub by hundreds of MiB after a few dozen agent connects.
static MEMORIES: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());

fn take_memory(blocks: usize) -> Vec<argon2::Block> {
    let pooled = MEMORIES.lock().ok().and_then(|mut pool| pool.pop());
    let mut memory = pooled.unwrap_or_default();
    memory.resize(blocks, argon2::Block::default());
    memory
}

fn return_memory(memory: Vec<argon2::Block>) {
    if let Ok(mut pool) = MEMORIES.lock() {
        if pool.len() < POOLED_MEMORIES {
            pool.push(memory);
        }
    }
}

/// Whether `secret` matches the PHC string `hash` (constant-time compare
/// of the outputs). A malformed hash is a mismatch, never a panic.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let mut memory = take_memory(params.block_count());
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        secret.as_bytes(),
        salt,
        &mut out,
        &mut memory[..],
    );
    return_memory(memory);
    computed.is_ok() && argon2::password_hash::Output::new(&out).is_ok_and(|got| got == expected)
}

/// A hash that no real secret matches, verified when a prefix is unknown so
/// that unknown and wrong secrets cost the same time (no timing oracle).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_secret(&new_secret()).unwrap_or_default())
}

/// Burns one verification against [`dummy_hash`]; always false.
pub fn verify_dummy(secret: &str) -> bool {
    std::hint::black_box(verify_secret(secret, dummy_hash()));
    false
}

/// The at-rest cipher for registry passwords (ChaCha20-Poly1305, random
/// 96-bit nonce per value, stored as `nonce || ciphertext`).
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    /// A box over a raw 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Loads the key from `MOORING_SECRET_KEY` (base64) when `env_key` is
    /// given, else from `data_dir/secret.key`, creating that file (mode
    /// 0600) with a fresh random key when it does not exist.
    pub fn load_or_create(data_dir: &Path, env_key: Option<&str>) -> Result<Self, CryptoError> {
        if let Some(text) = env_key {
            let bytes = STANDARD
                .decode(text.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim()))
                .map_err(|_| CryptoError::Key(format!("{SECRET_KEY_ENV} is not base64")))?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                CryptoError::Key(format!("{SECRET_KEY_ENV} must decode to 32 bytes"))
            })?;
            return Ok(SecretBox::new(&key));
        }
        let path = data_dir.join(SECRET_KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.try_into().map_err(|_| {
                    CryptoError::Key(format!("{} must hold exactly 32 bytes", path.display()))
                })?;
                Ok(SecretBox::new(&key))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                write_private(&path, &key).map_err(|e| {
                    CryptoError::Key(format!("cannot write {}: {e}", path.display()))
                })?;
                Ok(SecretBox::new(&key))
            }
            Err(err) => Err(CryptoError::Key(format!(
                "cannot read {}: {err}",
                path.display()
            ))),
        }
    }

    /// Encrypts `plain`; the result is `nonce || ciphertext+tag`.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .map_err(|_| CryptoError::Hash("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`SecretBox::seal`] produced.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 12 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, body) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// Writes `bytes` to a new file readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape() {
        let s = new_secret();
        assert_eq!(s.len(), 43);
        assert!(!s.contains('='));
        assert_eq!(URL_SAFE_NO_PAD.decode(&s).unwrap().len(), 32);
        let k = new_api_key();
        assert!(k.starts_with("mk_"));
        assert_eq!(prefix_of(&k).unwrap(), &k[3..11]);
        assert_eq!(prefix_of(&s).unwrap(), &s[..8]);
        assert_eq!(prefix_of("short"), None);
    }

    #[test]
    fn hash_verifies_only_the_right_secret() {
        let s = new_secret();
        let h = hash_secret(&s).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains(&s));
        assert!(verify_secret(&s, &h));
        assert!(!verify_secret(&new_secret(), &h));
        assert!(!verify_secret(&s, "not a hash"));
        assert!(!verify_dummy(&s));
    }

    #[test]
    fn pooled_memory_gives_the_same_answers_as_the_library() {
        use argon2::password_hash::PasswordVerifier;
        let s = new_secret();
        let h = hash_secret(&s).unwrap();
        let parsed = PasswordHash::new(&h).unwrap();
        // Reused working memory (after right, wrong and other hashes in
        // between) must not change any verdict.
        let other = hash_secret("another-secret-value-0123456789").unwrap();
        for round in 0..3 {
            assert!(verify_secret(&s, &h), "round {round}");
            assert!(argon2().verify_password(s.as_bytes(), &parsed).is_ok());
            assert!(!verify_secret("wrong", &h), "round {round}");
            assert!(verify_secret("another-secret-value-0123456789", &other));
            assert!(!verify_secret(&s, &other));
        }
        // A truncated hash output is a mismatch, not a panic.
        let cut = &h[..h.len() - 4];
        assert!(!verify_secret(&s, cut));
    }

    #[test]
    fn secret_box_round_trips_and_detects_tampering() {
        let b = SecretBox::new(&[7u8; 32]);
        let sealed = b.seal(b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open(&sealed).unwrap(), b"hunter2");
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(b.open(&bad).is_err());
        assert!(SecretBox::new(&[8u8; 32]).open(&sealed).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mooring-crypto-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = SecretBox::load_or_create(&dir, None).unwrap();
        let mode = std::fs::metadata(dir.join(SECRET_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = SecretBox::load_or_create(&dir, None).unwrap();
        assert_eq!(b.open(&a.seal(b"x").unwrap()).unwrap(), b"x");
        let env = STANDARD.encode([1u8; 32]);
        assert!(SecretBox::load_or_create(&dir, Some(&env)).is_ok());
        assert!(SecretBox::load_or_create(&dir, Some("short")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
