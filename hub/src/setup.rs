//! First start: opening the store and creating what a fresh hub needs.
//!
//! - On the store's first open, environment `local` (id 1) is created for
//!   the hub host's Docker socket when it answers `/_ping`.
//! - On the first `serve`, an admin API key is created; its plain text is
//!   returned once to be printed, and only its hash is stored.

use std::time::Duration;

use mooring_docker::{DockerClient, Endpoint};

use crate::api::apikeys::{create_api_key, CreatedApiKey};
use crate::store::{EnvKind, NewEnvironment, Store, StoreError};

/// Opens the store in `data_dir`; on first open, creates `local` when the
/// socket answers. Returns the store and whether it was fresh.
pub async fn open_store(
    data_dir: &std::path::Path,
    docker_socket: &str,
    secret_key: Option<&str>,
) -> Result<(Store, bool), StoreError> {
    let (store, opened) = Store::open(data_dir, secret_key).await?;
    if opened.fresh {
        if docker_reachable(docker_socket).await {
            let env = store
                .create_environment(NewEnvironment {
                    name: "local".into(),
                    kind: EnvKind::Local,
                    socket: Some(docker_socket.to_owned()),
                })
                .await?;
            tracing::info!(
                env_id = env.id,
                socket = docker_socket,
                "created environment \"local\" for this host's Docker"
            );
            let _ = store
                .audit(
                    "hub",
                    "environment.create",
                    Some(&format!("environment:{}", env.id)),
                    Some("first start: local"),
                )
                .await;
        } else {
            tracing::info!(
                socket = docker_socket,
                "no Docker answering at the socket: no local environment created"
            );
        }
    }
    Ok((store, opened.fresh))
}

/// Whether a Docker daemon answers `/_ping` at `socket` within 3 s.
pub async fn docker_reachable(socket: &str) -> bool {
    let Ok(endpoint) = Endpoint::parse(socket) else {
        return false;
    };
    let client = DockerClient::new(endpoint);
    matches!(
        tokio::time::timeout(Duration::from_secs(3), client.ping()).await,
        Ok(Ok(_))
    )
}

/// Creates the admin key on the first `serve`; `None` afterwards.
pub async fn bootstrap_admin_key(store: &Store) -> Result<Option<CreatedApiKey>, StoreError> {
    if store.get_setting("admin_key_created").await?.is_some() {
        return Ok(None);
    }
    let key = create_api_key(store, "admin", vec!["*".into()], None).await?;
    store
        .set_setting("admin_key_created", &crate::store::now_secs().to_string())
        .await?;
    let _ = store
        .audit(
            "hub",
            "apikey.create",
            Some(&format!("apikey:{}", key.id)),
            Some("first start: admin"),
        )
        .await;
    Ok(Some(key))
}
