//! Agent tokens: argon2id hashes looked up by an 8-character prefix.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{now_secs, Store, StoreError, BATCH_ROWS};

/// A token as listed (never the secret, never the hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// Token id.
    pub id: i64,
    /// Environment the token enrolls into.
    pub env_id: i64,
    /// First 8 characters of the token, to recognise it.
    pub prefix: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Expiry, unix seconds, if any.
    pub expires_at: Option<i64>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// Last successful use.
    pub last_used_at: Option<i64>,
}

/// A stored token whose prefix matched, for verification.
#[derive(Debug, Clone)]
pub struct TokenCandidate {
    /// The token row.
    pub record: TokenRecord,
    /// Its argon2id PHC string.
    pub hash: String,
}

/// Why a token that once authenticated a link no longer may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenProblem {
    /// Revoked since.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Deleted, alone or with its environment.
    Deleted,
}

impl std::fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenProblem::Revoked => "Token revoked",
            TokenProblem::Expired => "Token expired",
            TokenProblem::Deleted => "Environment or token deleted",
        })
    }
}

const TOKEN_COLUMNS: &str =
    "id, env_id, prefix, created_at, expires_at, revoked_at, last_used_at, hash";

fn token_from_row(row: &SqliteRow) -> Result<TokenCandidate, StoreError> {
    Ok(TokenCandidate {
        record: TokenRecord {
            id: row.try_get("id")?,
            env_id: row.try_get("env_id")?,
            prefix: row.try_get("prefix")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            last_used_at: row.try_get("last_used_at")?,
        },
        hash: row.try_get("hash")?,
    })
}

impl Store {
    /// Stores a new token's hash for `env_id`.
    pub async fn create_token(
        &self,
        env_id: i64,
        prefix: &str,
        hash: &str,
        expires_at: Option<i64>,
    ) -> Result<TokenRecord, StoreError> {
        self.get_environment(env_id).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO agent_tokens (env_id, prefix, hash, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(env_id)
        .bind(prefix)
        .bind(hash)
        .bind(now_secs())
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(self.get_token(id).await?.record)
    }

    /// One token (with its hash).
    pub async fn get_token(&self, id: i64) -> Result<TokenCandidate, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM agent_tokens WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("token {id}")))?;
        token_from_row(&row)
    }

    /// Of the tokens `ids`, those that can no longer hold a link, and why:
    /// revoked, expired, or deleted (with their environment). Ids not in
    /// the answer are still good. One query per 400 ids.
    pub async fn unusable_tokens(
        &self,
        ids: &[i64],
    ) -> Result<Vec<(i64, TokenProblem)>, StoreError> {
        let now = now_secs();
        let mut problems = Vec::new();
        for chunk in ids.chunks(BATCH_ROWS) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT id, revoked_at, expires_at FROM agent_tokens WHERE id IN ({marks})"
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            let rows = query.fetch_all(&self.pool).await?;
            let mut found = std::collections::HashSet::with_capacity(rows.len());
            for row in rows {
                let id: i64 = row.try_get("id")?;
                found.insert(id);
                let revoked: Option<i64> = row.try_get("revoked_at")?;
                let expires: Option<i64> = row.try_get("expires_at")?;
                if revoked.is_some() {
                    problems.push((id, TokenProblem::Revoked));
                } else if expires.is_some_and(|e| e <= now) {
                    problems.push((id, TokenProblem::Expired));
                }
            }
            problems.extend(
                chunk
                    .iter()
                    .filter(|id| !found.contains(id))
                    .map(|id| (*id, TokenProblem::Deleted)),
            );
        }
        Ok(problems)
    }

    /// Tokens of one environment, or of all when `env_id` is `None`.
    pub async fn list_tokens(&self, env_id: Option<i64>) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = match env_id {
            Some(env) => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM agent_tokens WHERE env_id = ? ORDER BY id"
                ))
                .bind(env)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM agent_tokens ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| token_from_row(r).map(|c| c.record))
            .collect()
    }

    /// Tokens whose prefix is `prefix` (normally zero or one).
    pub async fn tokens_by_prefix(&self, prefix: &str) -> Result<Vec<TokenCandidate>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM agent_tokens WHERE prefix = ? ORDER BY id LIMIT 8"
        ))
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Marks a token revoked (idempotent); returns it.
    pub async fn revoke_token(&self, id: i64) -> Result<TokenRecord, StoreError> {
        let done = sqlx::query(
            "UPDATE agent_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(now_secs())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(self.get_token(id).await?.record)
    }
}
