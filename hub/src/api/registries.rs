//! Container registries. The password is write-only: it is sealed at rest
//! and no answer ever carries it (`hasPassword` says whether one is set).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};

use super::{ApiError, IdPath, JsonBody};
use crate::auth::Auth;
use crate::state::AppState;
use crate::store::{NewRegistry, Registry, RegistryPatch};

/// Registry routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/registries", get(list).post(create))
        .route(
            "/api/registries/{id}",
            get(show).put(replace).delete(remove),
        )
}

/// A registry as the API shows it: never the password.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryView {
    /// Registry id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Address.
    pub url: String,
    /// User name, if any.
    pub username: Option<String>,
    /// Whether a password is stored.
    pub has_password: bool,
}

impl From<Registry> for RegistryView {
    fn from(r: Registry) -> Self {
        RegistryView {
            id: r.id,
            name: r.name,
            url: r.url,
            username: r.username,
            has_password: r.password.is_some(),
        }
    }
}

/// Distinguishes an absent field (`None`) from `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    url: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// PUT body: `name` and `url` required; `username` absent or null clears
/// it; `password` absent keeps the stored one, null or "" clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    name: String,
    url: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default, deserialize_with = "present")]
    password: Option<Option<String>>,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<RegistryView>>, ApiError> {
    auth.require("registries:read", None)?;
    let all = state.store.list_registries().await?;
    Ok(Json(all.into_iter().map(RegistryView::from).collect()))
}

async fn show(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<RegistryView>, ApiError> {
    auth.require("registries:read", None)?;
    let reg = state
        .store
        .get_registry(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("registry {id} not found")))?;
    Ok(Json(reg.into()))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require_global("registries:write")?;
    let reg = state
        .store
        .create_registry(NewRegistry {
            name: body.name,
            url: body.url,
            username: non_empty(body.username),
            password: non_empty(body.password),
        })
        .await?;
    state
        .audit(
            &auth.actor(),
            "registry.create",
            Some(&format!("registry:{}", reg.id)),
            Some(&reg.name),
        )
        .await;
    Ok((StatusCode::CREATED, Json(RegistryView::from(reg))))
}

async fn replace(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PutBody>,
) -> Result<Json<RegistryView>, ApiError> {
    auth.require_global("registries:write")?;
    let reg = state
        .store
        .update_registry(
            id,
            RegistryPatch {
                name: Some(body.name),
                url: Some(body.url),
                username: Some(non_empty(body.username)),
                password: body.password.map(non_empty),
            },
        )
        .await?;
    state
        .audit(
            &auth.actor(),
            "registry.update",
            Some(&format!("registry:{id}")),
            None,
        )
        .await;
    Ok(Json(reg.into()))
}

async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require_global("registries:write")?;
    state.store.delete_registry(id).await?;
    state
        .audit(
            &auth.actor(),
            "registry.delete",
            Some(&format!("registry:{id}")),
            None,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
