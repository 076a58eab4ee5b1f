//! Connectivity status that must survive a restart: the reason and count
//! of an environment's agent disconnects and its last host metrics (the
//! last-seen time is `environments.last_seen`, see [`Store::touch_agents`]).
//!
//! Rows go away with their environment (`ON DELETE CASCADE`).

use std::collections::HashMap;

use sqlx::Row;

use super::{now_secs, AgentRecord, NewAudit, Store, StoreError};

/// The stored status of one environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvStatusRecord {
    /// Why the last link ended (`closed`, `timeout`, …); `None` while a
    /// link is up or when none ever ended.
    pub disconnect_reason: Option<String>,
    /// Links ended so far.
    pub disconnect_count: i64,
    /// When the last link ended, unix seconds.
    pub disconnected_at: Option<i64>,
    /// The last metrics sample, as JSON text.
    pub last_metrics: Option<String>,
    /// The agent's last-seen time stored with the environment, unix
    /// seconds (read in the same query, so it matches the rest).
    pub last_seen: Option<i64>,
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<EnvStatusRecord, StoreError> {
    Ok(EnvStatusRecord {
        disconnect_reason: row.try_get("disconnect_reason")?,
        disconnect_count: row.try_get("disconnect_count")?,
        disconnected_at: row.try_get("disconnected_at")?,
        last_metrics: row.try_get("last_metrics")?,
        last_seen: row.try_get("last_seen")?,
    })
}

const COLUMNS: &str = "s.env_id AS env_id, s.disconnect_reason AS disconnect_reason, \
    s.disconnect_count AS disconnect_count, s.disconnected_at AS disconnected_at, \
    s.last_metrics AS last_metrics, e.last_seen AS last_seen \
    FROM env_status s JOIN environments e ON e.id = s.env_id";

impl Store {
    /// The stored status of an environment (default when none yet).
    pub async fn env_status(&self, env_id: i64) -> Result<EnvStatusRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} WHERE s.env_id = ?"))
            .bind(env_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(from_row)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The stored status of every environment that has one.
    pub async fn env_statuses(&self) -> Result<HashMap<i64, EnvStatusRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS}"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("env_id")?, from_row(r)?)))
            .collect()
    }

    async fn ensure_status_row(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        env_id: i64,
    ) -> Result<(), StoreError> {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT env_id FROM env_status WHERE env_id = ?")
                .bind(env_id)
                .fetch_optional(&mut **tx)
                .await?;
        if exists.is_none() {
            sqlx::query("INSERT INTO env_status (env_id) VALUES (?)")
                .bind(env_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Records that the agent link of `env_id` ended: the reason, one more
    /// disconnect, the last-seen time and the last metrics (if any).
    pub async fn record_disconnect(
        &self,
        env_id: i64,
        reason: &str,
        at: i64,
        last_seen: i64,
        last_metrics: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        self.ensure_status_row(&mut tx, env_id).await?;
        sqlx::query(
            "UPDATE env_status SET disconnect_reason = ?, disconnect_count = disconnect_count + 1, \
             disconnected_at = ?, last_metrics = COALESCE(?, last_metrics) WHERE env_id = ?",
        )
        .bind(reason)
        .bind(at)
        .bind(last_metrics)
        .bind(env_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE environments SET last_seen = ? WHERE id = ?")
            .bind(last_seen)
            .bind(env_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Everything a new agent link records, in one transaction (one
    /// commit per connect, not four): the agent on its environment, the
    /// token's last use, the audit entry, and no disconnect reason.
    pub async fn record_link_up(
        &self,
        env_id: i64,
        token_id: i64,
        agent: &AgentRecord,
        audit: &NewAudit<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        super::envs::update_agent(&mut tx, env_id, agent).await?;
        sqlx::query("UPDATE agent_tokens SET last_used_at = ? WHERE id = ?")
            .bind(now_secs())
            .bind(token_id)
            .execute(&mut *tx)
            .await?;
        super::audit::append_audit(&mut tx, audit).await?;
        self.ensure_status_row(&mut tx, env_id).await?;
        sqlx::query("UPDATE env_status SET disconnect_reason = NULL WHERE env_id = ?")
            .bind(env_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
