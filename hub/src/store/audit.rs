//! The audit log: who did what to which object, bounded in rows.

use serde::Serialize;
use sqlx::Row;

use super::{now_secs, Store, StoreError};

/// Rows kept; older ones are pruned on insert.
pub const MAX_AUDIT_ROWS: i64 = 100_000;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Entry id.
    pub id: i64,
    /// Time, unix seconds.
    pub at: i64,
    /// Who: `apikey:3 (ci)`, `cli`, `agent:<id>`, `hub`.
    pub actor: String,
    /// What: `environment.create`, `token.revoke`, `agent.connect`, …
    pub action: String,
    /// The object acted on (`environment:2`).
    pub target: Option<String>,
    /// Free text, never a secret.
    pub detail: Option<String>,
}

/// An audit entry to append.
#[derive(Debug, Clone, Copy)]
pub struct NewAudit<'a> {
    /// Who (see [`AuditEntry::actor`]).
    pub actor: &'a str,
    /// What (see [`AuditEntry::action`]).
    pub action: &'a str,
    /// The object acted on.
    pub target: Option<&'a str>,
    /// Free text, never a secret.
    pub detail: Option<&'a str>,
}

/// Appends `entry` on `conn` (a pooled connection or a transaction) and
/// prunes past [`MAX_AUDIT_ROWS`] every thousandth entry.
pub(super) async fn append_audit(
    conn: &mut sqlx::SqliteConnection,
    entry: &NewAudit<'_>,
) -> Result<(), StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?) \
         RETURNING id",
    )
    .bind(now_secs())
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.detail)
    .fetch_one(&mut *conn)
    .await?;
    if id % 1000 == 0 {
        sqlx::query("DELETE FROM audit_log WHERE id <= ?")
            .bind(id - MAX_AUDIT_ROWS)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Appends an audit entry and prunes past [`MAX_AUDIT_ROWS`].
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let entry = NewAudit {
            actor,
            action,
            target,
            detail,
        };
        append_audit(&mut conn, &entry).await
    }

    /// The newest `limit` entries, newest first.
    pub async fn list_audit(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?",
        )
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
