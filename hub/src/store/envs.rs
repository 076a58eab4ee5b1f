//! Environments: a `local` Docker socket of the hub host, or an `edge`
//! host reached through an agent link; plus the last agent seen for each.

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{check_name, json_list, now_secs, Store, StoreError, BATCH_ROWS};

/// How the hub reaches an environment's Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvKind {
    /// A Docker socket on the hub host.
    Local,
    /// A remote host whose agent dials in.
    Edge,
}

impl EnvKind {
    /// The stored / wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvKind::Local => "local",
            EnvKind::Edge => "edge",
        }
    }

    /// Parses `local` / `edge`.
    pub fn parse(text: &str) -> Result<EnvKind, StoreError> {
        match text {
            "local" => Ok(EnvKind::Local),
            "edge" => Ok(EnvKind::Edge),
            other => Err(StoreError::Invalid(format!(
                "environment type must be \"local\" or \"edge\", not {other:?}"
            ))),
        }
    }
}

/// The agent last connected for an environment, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentRecord {
    /// Agent id (the agent's UUID).
    pub id: String,
    /// Agent name.
    pub name: String,
    /// Agent software version.
    pub version: String,
    /// Docker Engine version of the host.
    pub docker_version: String,
    /// Host name.
    pub hostname: String,
    /// Capabilities announced in `hello`.
    pub capabilities: Vec<String>,
    /// When the current (or last) link was established, unix seconds.
    pub connected_at: i64,
    /// Last frame seen from the agent, unix seconds.
    pub last_seen: i64,
}

/// One environment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// Integer id (the reference agent needs an integer).
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Local or edge.
    pub kind: EnvKind,
    /// Docker socket path or `unix://` / `tcp://` URL (local only).
    pub socket: Option<String>,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// The last agent recorded (edge only).
    pub agent: Option<AgentRecord>,
}

/// Input of [`Store::create_environment`].
#[derive(Debug, Clone)]
pub struct NewEnvironment {
    /// Unique name.
    pub name: String,
    /// Local or edge.
    pub kind: EnvKind,
    /// Socket for a local environment.
    pub socket: Option<String>,
}

/// Changes of [`Store::update_environment`]; `None` leaves a field.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentPatch {
    /// New name.
    pub name: Option<String>,
    /// New socket (local only).
    pub socket: Option<String>,
}

const ENV_COLUMNS: &str = "id, name, kind, socket, created_at, agent_id, agent_name, \
    agent_version, docker_version, hostname, capabilities, connected_at, last_seen";

fn env_from_row(row: &SqliteRow) -> Result<Environment, StoreError> {
    let kind: String = row.try_get("kind")?;
    let agent_id: Option<String> = row.try_get("agent_id")?;
    let agent = match agent_id {
        Some(id) => Some(AgentRecord {
            id,
            name: row
                .try_get::<Option<String>, _>("agent_name")?
                .unwrap_or_default(),
            version: row
                .try_get::<Option<String>, _>("agent_version")?
                .unwrap_or_default(),
            docker_version: row
                .try_get::<Option<String>, _>("docker_version")?
                .unwrap_or_default(),
            hostname: row
                .try_get::<Option<String>, _>("hostname")?
                .unwrap_or_default(),
            capabilities: json_list(row.try_get("capabilities")?).unwrap_or_default(),
            connected_at: row.try_get::<Option<i64>, _>("connected_at")?.unwrap_or(0),
            last_seen: row.try_get::<Option<i64>, _>("last_seen")?.unwrap_or(0),
        }),
        None => None,
    };
    Ok(Environment {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: EnvKind::parse(&kind)?,
        socket: row.try_get("socket")?,
        created_at: row.try_get("created_at")?,
        agent,
    })
}

fn check_socket(kind: EnvKind, socket: &Option<String>) -> Result<(), StoreError> {
    match (kind, socket) {
        (EnvKind::Edge, Some(_)) => Err(StoreError::Invalid(
            "an edge environment has no socket: its agent reaches Docker".into(),
        )),
        (EnvKind::Local, Some(s)) => mooring_docker::Endpoint::parse(s)
            .map(|_| ())
            .map_err(|e| StoreError::Invalid(e.to_string())),
        _ => Ok(()),
    }
}

impl Store {
    /// Creates an environment. A local one without a socket gets
    /// `/var/run/docker.sock`.
    pub async fn create_environment(&self, new: NewEnvironment) -> Result<Environment, StoreError> {
        check_name("environment", &new.name)?;
        let socket = match new.kind {
            EnvKind::Local => Some(
                new.socket
                    .unwrap_or_else(|| "/var/run/docker.sock".to_owned()),
            ),
            EnvKind::Edge => new.socket,
        };
        check_socket(new.kind, &socket)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO environments (name, kind, socket, created_at) VALUES (?, ?, ?, ?) \
             RETURNING id",
        )
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&socket)
        .bind(now_secs())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("an environment named {:?} exists", new.name))
            }
            other => other,
        })?;
        self.get_environment(id).await
    }

    /// One environment, or `NotFound`.
    pub async fn get_environment(&self, id: i64) -> Result<Environment, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("environment {id}")))?;
        env_from_row(&row)
    }

    /// One environment by id or by name (for the CLI).
    pub async fn find_environment(&self, id_or_name: &str) -> Result<Environment, StoreError> {
        if let Ok(id) = id_or_name.parse::<i64>() {
            return self.get_environment(id).await;
        }
        let row = sqlx::query(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE name = ?"
        ))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("environment {id_or_name:?}")))?;
        env_from_row(&row)
    }

    /// All environments, by id.
    pub async fn list_environments(&self) -> Result<Vec<Environment>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENV_COLUMNS} FROM environments ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// Renames an environment or changes its socket.
    pub async fn update_environment(
        &self,
        id: i64,
        patch: EnvironmentPatch,
    ) -> Result<Environment, StoreError> {
        let current = self.get_environment(id).await?;
        let name = patch.name.unwrap_or(current.name);
        check_name("environment", &name)?;
        let socket = patch.socket.or(current.socket);
        check_socket(current.kind, &socket)?;
        sqlx::query("UPDATE environments SET name = ?, socket = ? WHERE id = ?")
            .bind(&name)
            .bind(&socket)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("an environment named {name:?} exists"))
                }
                other => other,
            })?;
        self.get_environment(id).await
    }

    /// Deletes an environment and its tokens.
    pub async fn delete_environment(&self, id: i64) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM environments WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("environment {id}")));
        }
        Ok(())
    }

    /// Records the agent that just connected.
    pub async fn record_agent(&self, env_id: i64, agent: &AgentRecord) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        update_agent(&mut conn, env_id, agent).await
    }

    /// Updates the last-seen times (`(env_id, unix seconds)`) of many
    /// agents: one statement per 400 rows, in one transaction,
    /// so the heartbeat sweep's write costs a few round trips to the
    /// database whatever the number of links.
    pub async fn touch_agents(&self, seen: &[(i64, i64)]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for rows in seen.chunks(BATCH_ROWS) {
            let values = vec!["(?, ?)"; rows.len()].join(", ");
            let sql = format!(
                "WITH seen(id, ts) AS (VALUES {values}) \
                 UPDATE environments SET last_seen = seen.ts FROM seen \
                 WHERE environments.id = seen.id"
            );
            let mut query = sqlx::query(&sql);
            for (env_id, last_seen) in rows {
                query = query.bind(env_id).bind(last_seen);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Writes the agent that just connected onto its environment row.
pub(super) async fn update_agent(
    conn: &mut sqlx::SqliteConnection,
    env_id: i64,
    agent: &AgentRecord,
) -> Result<(), StoreError> {
    let caps = serde_json::to_string(&agent.capabilities).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "UPDATE environments SET agent_id = ?, agent_name = ?, agent_version = ?, \
         docker_version = ?, hostname = ?, capabilities = ?, connected_at = ?, last_seen = ? \
         WHERE id = ?",
    )
    .bind(&agent.id)
    .bind(&agent.name)
    .bind(&agent.version)
    .bind(&agent.docker_version)
    .bind(&agent.hostname)
    .bind(caps)
    .bind(agent.connected_at)
    .bind(agent.last_seen)
    .bind(env_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
