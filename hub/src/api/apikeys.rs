//! API keys. The key is shown once, in the answer that creates it. A key
//! can only grant what its creator holds (no escalation).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{rfc3339, ApiError, IdPath, JsonBody};
use crate::auth::{validate_permission, Auth};
use crate::crypto;
use crate::state::AppState;
use crate::store::{ApiKeyRecord, NewApiKey, Store, StoreError};

/// API-key routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/apikeys", get(list).post(create))
        .route("/api/apikeys/{id}", delete(revoke))
}

/// A key as listed (never the key).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    /// Key id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// First 8 characters after `mk_`.
    pub prefix: String,
    /// Permissions.
    pub permissions: Vec<String>,
    /// Environment scope, null = all.
    pub environments: Option<Vec<i64>>,
    /// `active` or `revoked`.
    pub status: &'static str,
    /// Creation (RFC 3339).
    pub created_at: String,
    /// Last use (RFC 3339).
    pub last_used_at: Option<String>,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(k: ApiKeyRecord) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            permissions: k.permissions,
            environments: k.environments,
            status: if k.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
        }
    }
}

/// A freshly created key, with its secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    /// Key id.
    pub id: i64,
    /// The plain key. Shown once.
    pub key: String,
    /// Name.
    pub name: String,
    /// Permissions.
    pub permissions: Vec<String>,
    /// Environment scope.
    pub environments: Option<Vec<i64>>,
}

/// Creates an API key (shared by API, CLI and first start).
pub async fn create_api_key(
    store: &Store,
    name: &str,
    permissions: Vec<String>,
    environments: Option<Vec<i64>>,
) -> Result<CreatedApiKey, StoreError> {
    if permissions.is_empty() {
        return Err(StoreError::Invalid(
            "an API key needs at least one permission".into(),
        ));
    }
    for p in &permissions {
        validate_permission(p).map_err(StoreError::Invalid)?;
    }
    if let Some(envs) = &environments {
        for id in envs {
            store.get_environment(*id).await?;
        }
    }
    let key = crypto::new_api_key();
    let prefix = crypto::prefix_of(&key).unwrap_or_default().to_owned();
    let secret = key.clone();
    let hash = tokio::task::spawn_blocking(move || crypto::hash_secret(&secret))
        .await
        .map_err(|e| StoreError::Db(format!("hashing task failed: {e}")))??;
    let record = store
        .create_api_key(NewApiKey {
            name: name.to_owned(),
            prefix,
            hash,
            permissions,
            environments,
        })
        .await?;
    Ok(CreatedApiKey {
        id: record.id,
        key,
        name: record.name,
        permissions: record.permissions,
        environments: record.environments,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    permissions: Vec<String>,
    #[serde(default)]
    environments: Option<Vec<i64>>,
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require("apikeys:write", None)?;
    // No escalation: every permission and environment granted must be held.
    for p in &body.permissions {
        validate_permission(p).map_err(ApiError::bad_request)?;
        if !auth.has(p) {
            return Err(ApiError::forbidden());
        }
    }
    match &body.environments {
        Some(envs) if envs.iter().any(|e| !auth.can_see_env(*e)) => {
            return Err(ApiError::forbidden())
        }
        None if auth.require_global("apikeys:write").is_err() => return Err(ApiError::forbidden()),
        _ => {}
    }
    let created = create_api_key(
        &state.store,
        &body.name,
        body.permissions,
        body.environments,
    )
    .await?;
    state
        .audit(
            &auth.actor(),
            "apikey.create",
            Some(&format!("apikey:{}", created.id)),
            Some(&created.name),
        )
        .await;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    auth.require_global("apikeys:read")?;
    let keys = state.store.list_api_keys().await?;
    Ok(Json(keys.into_iter().map(ApiKeyView::from).collect()))
}

async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<ApiKeyView>, ApiError> {
    auth.require_global("apikeys:write")?;
    let record = state.store.revoke_api_key(id).await?;
    state.key_cache.forget(id);
    state.sessions.forget_key(id);
    state
        .audit(
            &auth.actor(),
            "apikey.revoke",
            Some(&format!("apikey:{id}")),
            None,
        )
        .await;
    Ok(Json(record.into()))
}
