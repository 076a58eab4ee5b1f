//! API keys: argon2id hashes looked up by prefix, with their permissions
//! and optional environment scope.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{check_name, json_list, now_secs, Store, StoreError};

/// An API key as listed (never the key, never the hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: i64,
    /// Human name.
    pub name: String,
    /// First 8 characters after `mk_`, to recognise it.
    pub prefix: String,
    /// Granted permissions, `resource:action` or `*`.
    pub permissions: Vec<String>,
    /// Environments the key is limited to; `None` = all.
    pub environments: Option<Vec<i64>>,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// Last successful use.
    pub last_used_at: Option<i64>,
}

/// A stored key whose prefix matched, for verification.
#[derive(Debug, Clone)]
pub struct ApiKeyCandidate {
    /// The key row.
    pub record: ApiKeyRecord,
    /// Its argon2id PHC string.
    pub hash: String,
}

/// Input of [`Store::create_api_key`] (the hash, never the key).
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Human name.
    pub name: String,
    /// Lookup prefix.
    pub prefix: String,
    /// argon2id hash of the key.
    pub hash: String,
    /// Permissions.
    pub permissions: Vec<String>,
    /// Environment scope, `None` = all.
    pub environments: Option<Vec<i64>>,
}

const KEY_COLUMNS: &str =
    "id, name, prefix, hash, permissions, environments, created_at, revoked_at, last_used_at";

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyCandidate, StoreError> {
    Ok(ApiKeyCandidate {
        record: ApiKeyRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            permissions: json_list(row.try_get("permissions")?).unwrap_or_default(),
            environments: json_list(row.try_get("environments")?),
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
            last_used_at: row.try_get("last_used_at")?,
        },
        hash: row.try_get("hash")?,
    })
}

impl Store {
    /// Stores a new API key.
    pub async fn create_api_key(&self, new: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        check_name("API key", &new.name)?;
        let perms = serde_json::to_string(&new.permissions).unwrap_or_else(|_| "[]".into());
        let envs = new
            .environments
            .as_ref()
            .map(|e| serde_json::to_string(e).unwrap_or_else(|_| "[]".into()));
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_keys (name, prefix, hash, permissions, environments, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.prefix)
        .bind(&new.hash)
        .bind(perms)
        .bind(envs)
        .bind(now_secs())
        .fetch_one(&self.pool)
        .await?;
        Ok(self.get_api_key(id).await?.record)
    }

    /// One API key (with hash).
    pub async fn get_api_key(&self, id: i64) -> Result<ApiKeyCandidate, StoreError> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("API key {id}")))?;
        key_from_row(&row)
    }

    /// All API keys, by id.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| key_from_row(r).map(|c| c.record))
            .collect()
    }

    /// Keys whose prefix is `prefix`.
    pub async fn api_keys_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<ApiKeyCandidate>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ? ORDER BY id LIMIT 8"
        ))
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes an API key (idempotent).
    pub async fn revoke_api_key(&self, id: i64) -> Result<ApiKeyRecord, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                .bind(now_secs())
                .bind(id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("API key {id}")));
        }
        Ok(self.get_api_key(id).await?.record)
    }

    /// Number of API keys ever created.
    pub async fn count_api_keys(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Notes a use of a key (callers throttle this).
    pub async fn mark_api_key_used(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(now_secs())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
