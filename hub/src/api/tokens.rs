//! Agent tokens. The plain token is shown once, in the answer that creates
//! it, and never again; listings carry its 8-char prefix only. Revoking a
//! token disconnects the agent using it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{rfc3339, ApiError, IdPath, JsonBody};
use crate::auth::Auth;
use crate::crypto;
use crate::state::AppState;
use crate::store::{now_secs, EnvKind, Store, StoreError, TokenRecord};

/// Longest accepted token lifetime (10 years).
pub const MAX_EXPIRES_SECS: u64 = 10 * 365 * 86_400;

/// Token routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/environments/{id}/tokens", get(list).post(create))
        .route("/api/tokens/{id}", delete(revoke))
}

/// A token as listed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// Token id.
    pub id: i64,
    /// Environment.
    pub environment_id: i64,
    /// First 8 characters.
    pub prefix: String,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    /// Creation (RFC 3339).
    pub created_at: String,
    /// Expiry (RFC 3339), if any.
    pub expires_at: Option<String>,
    /// Revocation (RFC 3339), if revoked.
    pub revoked_at: Option<String>,
    /// Last use (RFC 3339).
    pub last_used_at: Option<String>,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        let status = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at.is_some_and(|e| e <= now_secs()) {
            "expired"
        } else {
            "active"
        };
        TokenView {
            id: t.id,
            environment_id: t.env_id,
            prefix: t.prefix,
            status,
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
        }
    }
}

/// A freshly created token, with its secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// Token id.
    pub id: i64,
    /// The plain token. Shown once.
    pub token: String,
    /// First 8 characters.
    pub prefix: String,
    /// Environment.
    pub environment_id: i64,
    /// Expiry (RFC 3339), if any.
    pub expires_at: Option<String>,
    /// How to install an agent with it (API answers; CLI with `--public-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<crate::install::InstallCommands>,
}

/// Creates a token for edge environment `env_id` (shared by API and CLI).
pub async fn create_token(
    store: &Store,
    env_id: i64,
    expires_in_secs: Option<u64>,
) -> Result<CreatedToken, StoreError> {
    let env = store.get_environment(env_id).await?;
    if env.kind != EnvKind::Edge {
        return Err(StoreError::Invalid(format!(
            "environment {:?} is local: tokens are for edge environments",
            env.name
        )));
    }
    if let Some(secs) = expires_in_secs {
        if secs == 0 || secs > MAX_EXPIRES_SECS {
            return Err(StoreError::Invalid(format!(
                "expiresInSecs must be between 1 and {MAX_EXPIRES_SECS}"
            )));
        }
    }
    let token = crypto::new_secret();
    let prefix = crypto::prefix_of(&token).unwrap_or_default().to_owned();
    let secret = token.clone();
    let hash = tokio::task::spawn_blocking(move || crypto::hash_secret(&secret))
        .await
        .map_err(|e| StoreError::Db(format!("hashing task failed: {e}")))??;
    let expires_at = expires_in_secs.map(|s| now_secs() + s as i64);
    let record = store
        .create_token(env_id, &prefix, &hash, expires_at)
        .await?;
    Ok(CreatedToken {
        id: record.id,
        token,
        prefix,
        environment_id: env_id,
        expires_at: expires_at.map(rfc3339),
        install: None,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(env_id): IdPath,
    headers: axum::http::HeaderMap,
    ext: axum::http::Extensions,
    body: Option<JsonBody<CreateBody>>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require("tokens:write", Some(env_id))?;
    let body = body.map(|b| b.0).unwrap_or_default();
    let tls = ext.get::<crate::install::ServedOverTls>().is_some();
    let base = crate::install::public_url(state.settings.public_url.as_deref(), &headers, tls);
    let mut created = create_token(&state.store, env_id, body.expires_in_secs).await?;
    created.install = match base {
        Ok(base) => Some(crate::install::commands(&base, &created.token)?),
        Err(err) => {
            tracing::info!(error = %err, "no install commands: public URL unknown");
            None
        }
    };
    state
        .audit(
            &auth.actor(),
            "token.create",
            Some(&format!("token:{}", created.id)),
            Some(&format!("environment:{env_id} prefix={}", created.prefix)),
        )
        .await;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(env_id): IdPath,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    auth.require("tokens:read", Some(env_id))?;
    state.store.get_environment(env_id).await?;
    let tokens = state.store.list_tokens(Some(env_id)).await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<TokenView>, ApiError> {
    let token = state.store.get_token(id).await?;
    auth.require("tokens:write", Some(token.record.env_id))?;
    let record = state.store.revoke_token(id).await?;
    let dropped = state.links.disconnect_token(id, "Token revoked");
    state
        .audit(
            &auth.actor(),
            "token.revoke",
            Some(&format!("token:{id}")),
            Some(&format!("links dropped: {dropped}")),
        )
        .await;
    Ok(Json(record.into()))
}
