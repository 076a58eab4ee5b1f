//! The durable store: environments, agent tokens, registries, API keys,
//! audit log, and a few settings.
//!
//! This module is the only place in the hub that writes SQL. Callers see
//! plain Rust types and one error enum, [`StoreError`]; nothing about the
//! database leaks out, so a Postgres backend can be added behind [`Store`]
//! (a second pool variant and a `migrations/postgres` directory) without
//! touching a caller. The SQL used is the portable subset (no upserts with
//! SQLite-only syntax, integer unix-second times, JSON kept as TEXT).
//!
//! Secrets: token and API-key hashes only ever leave this module inside
//! `*Candidate` values used for verification; registry passwords are
//! sealed with [`SecretBox`] before they are written and opened only in
//! [`Store::get_registry`]. The store never logs a secret.

mod apikeys;
mod audit;
mod envs;
mod registries;
mod status;
mod tokens;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::crypto::{CryptoError, SecretBox};

pub use apikeys::{ApiKeyCandidate, ApiKeyRecord, NewApiKey};
pub use audit::{AuditEntry, NewAudit, MAX_AUDIT_ROWS};
pub use envs::{AgentRecord, EnvKind, Environment, EnvironmentPatch, NewEnvironment};
pub use registries::{NewRegistry, Registry, RegistryPatch};
pub use status::EnvStatusRecord;
pub use tokens::{TokenCandidate, TokenProblem, TokenRecord};

/// File name of the SQLite database inside the data dir.
pub const DB_FILE: &str = "mooring.db";

/// Rows (or ids) per statement in the batch writes and reads: two bound
/// values each stays under SQLite's oldest limit of 999 variables.
pub(crate) const BATCH_ROWS: usize = 400;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique name is already taken, or a reference is dangling.
    #[error("{0}")]
    Conflict(String),
    /// The input is not acceptable (bad name, bad URL, …).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(String),
    /// Migrating the schema failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// The data dir could not be prepared.
    #[error("data dir {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Hashing or the at-rest cipher failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict("name already taken".into());
            }
            if db.is_foreign_key_violation() {
                return StoreError::Conflict("referenced row does not exist".into());
            }
        }
        StoreError::Db(err.to_string())
    }
}

/// Current unix time in seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Handle on the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    secrets: SecretBox,
}

/// What [`Store::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The store was created by this call (first start).
    pub fresh: bool,
}

impl Store {
    /// Opens (creating and migrating when needed) the store in `data_dir`.
    ///
    /// The directory is created with mode 0700; the at-rest key comes from
    /// `secret_key` (the `MOORING_SECRET_KEY` value) or `secret.key` there.
    pub async fn open(
        data_dir: &Path,
        secret_key: Option<&str>,
    ) -> Result<(Store, Opened), StoreError> {
        create_private_dir(data_dir)?;
        let secrets = SecretBox::load_or_create(data_dir, secret_key)?;
        let url = format!("sqlite://{}", data_dir.join(DB_FILE).display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Db(e.to_string()))?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit is not fsynced (checkpoints are); the
            // database stays consistent on a crash and a power loss can
            // only roll back the last commits. FULL costs one fsync per
            // commit, which a reconnect storm of thousands of agents
            // turns into seconds of queued writes.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        let store = Store { pool, secrets };
        let fresh = store.get_setting("initialized_at").await?.is_none();
        if fresh {
            store
                .set_setting("initialized_at", &now_secs().to_string())
                .await?;
        }
        Ok((store, Opened { fresh }))
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes the write lock up
    /// front, waiting up to the busy timeout: a deferred transaction that
    /// reads, then writes, fails at once with "database is locked" when
    /// another connection committed in between (SQLite does not retry a
    /// read lock's upgrade), which lost connect records under load.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes the pool (waits for connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A setting's value.
    pub async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    /// Sets a setting.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM settings WHERE key = ?")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a setting only if it is not set yet; true when this call set it.
    pub async fn set_setting_once(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The hub's stable identity, created on first use.
    pub async fn server_id(&self) -> Result<String, StoreError> {
        let fresh = format!("mooring-{}", uuid::Uuid::new_v4());
        self.set_setting_once("server_id", &fresh).await?;
        Ok(self.get_setting("server_id").await?.unwrap_or(fresh))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::DataDir {
            path: dir.to_owned(),
            reason: e.to_string(),
        })
}

/// Checks a human name (environments, registries, API keys).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} name must be 1-64 characters of letters, digits, '-', '_' or '.': {:?}",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Parses a JSON text column holding a list.
pub(crate) fn json_list<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<Vec<T>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}
