//! Container registries, with the password sealed at rest.

use std::fmt;

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{check_name, now_secs, Store, StoreError};

/// A registry with its decrypted password, for internal use only.
///
/// Never serialize it: it has no `Serialize` impl on purpose, and its
/// `Debug` hides the password. API answers are built from its other fields.
#[derive(Clone, PartialEq)]
pub struct Registry {
    /// Registry id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Registry address (`registry.example.com:5000`, `https://ghcr.io`).
    pub url: String,
    /// User name for basic auth.
    pub username: Option<String>,
    /// Decrypted password. Secret.
    pub password: Option<String>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Input of [`Store::create_registry`].
#[derive(Clone, Default)]
pub struct NewRegistry {
    /// Unique name.
    pub name: String,
    /// Registry address.
    pub url: String,
    /// User name.
    pub username: Option<String>,
    /// Password (sealed before it is written).
    pub password: Option<String>,
}

/// Changes of [`Store::update_registry`]. `None` keeps a field; for
/// `username`/`password`, `Some(None)` clears it.
#[derive(Clone, Default)]
pub struct RegistryPatch {
    /// New name.
    pub name: Option<String>,
    /// New address.
    pub url: Option<String>,
    /// New user name, or clear.
    pub username: Option<Option<String>>,
    /// New password, or clear.
    pub password: Option<Option<String>>,
}

fn check_url(url: &str) -> Result<(), StoreError> {
    let ok = !url.is_empty()
        && url.len() <= 512
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "registry url must be a host[:port] or an http(s) URL without spaces".into(),
        ))
    }
}

impl Store {
    fn registry_from_row(&self, row: &SqliteRow) -> Result<Registry, StoreError> {
        let sealed: Option<Vec<u8>> = row.try_get("password_enc")?;
        let password = match sealed {
            Some(bytes) => Some(
                String::from_utf8(self.secrets.open(&bytes)?)
                    .map_err(|_| StoreError::Db("stored password is not UTF-8".into()))?,
            ),
            None => None,
        };
        Ok(Registry {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            url: row.try_get("url")?,
            username: row.try_get("username")?,
            password,
        })
    }

    fn seal(&self, password: &Option<String>) -> Result<Option<Vec<u8>>, StoreError> {
        match password {
            Some(p) => Ok(Some(self.secrets.seal(p.as_bytes())?)),
            None => Ok(None),
        }
    }

    /// Creates a registry.
    pub async fn create_registry(&self, new: NewRegistry) -> Result<Registry, StoreError> {
        check_name("registry", &new.name)?;
        check_url(&new.url)?;
        let sealed = self.seal(&new.password)?;
        let now = now_secs();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO registries (name, url, username, password_enc, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.url)
        .bind(&new.username)
        .bind(sealed)
        .bind(now)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a registry named {:?} exists", new.name))
            }
            other => other,
        })?;
        self.get_registry(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("registry {id}")))
    }

    /// One registry with its decrypted password, if it exists.
    pub async fn get_registry(&self, id: i64) -> Result<Option<Registry>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, url, username, password_enc FROM registries WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.registry_from_row(&r)).transpose()
    }

    /// One registry by id or name (for the CLI).
    pub async fn find_registry(&self, id_or_name: &str) -> Result<Registry, StoreError> {
        let row =
            match id_or_name.parse::<i64>() {
                Ok(id) => {
                    sqlx::query(
                        "SELECT id, name, url, username, password_enc FROM registries WHERE id = ?",
                    )
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                }
                Err(_) => sqlx::query(
                    "SELECT id, name, url, username, password_enc FROM registries WHERE name = ?",
                )
                .bind(id_or_name)
                .fetch_optional(&self.pool)
                .await?,
            };
        let row = row.ok_or_else(|| StoreError::NotFound(format!("registry {id_or_name:?}")))?;
        self.registry_from_row(&row)
    }

    /// All registries, by id.
    pub async fn list_registries(&self) -> Result<Vec<Registry>, StoreError> {
        let rows =
            sqlx::query("SELECT id, name, url, username, password_enc FROM registries ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| self.registry_from_row(r)).collect()
    }

    /// Changes a registry.
    pub async fn update_registry(
        &self,
        id: i64,
        patch: RegistryPatch,
    ) -> Result<Registry, StoreError> {
        let current = self
            .get_registry(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("registry {id}")))?;
        let name = patch.name.unwrap_or(current.name);
        check_name("registry", &name)?;
        let url = patch.url.unwrap_or(current.url);
        check_url(&url)?;
        let username = patch.username.unwrap_or(current.username);
        let password = patch.password.unwrap_or(current.password);
        let sealed = self.seal(&password)?;
        sqlx::query(
            "UPDATE registries SET name = ?, url = ?, username = ?, password_enc = ?, \
             updated_at = ? WHERE id = ?",
        )
        .bind(&name)
        .bind(&url)
        .bind(&username)
        .bind(sealed)
        .bind(now_secs())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a registry named {name:?} exists"))
            }
            other => other,
        })?;
        self.get_registry(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("registry {id}")))
    }

    /// Deletes a registry.
    pub async fn delete_registry(&self, id: i64) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM registries WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("registry {id}")));
        }
        Ok(())
    }
}
