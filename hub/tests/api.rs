//! The HTTP API: auth, permissions, secrets never shown, CRUD shapes.

mod common;

use axum::http::{Method, StatusCode};
use common::TestHub;
use serde_json::json;

#[tokio::test]
async fn health_needs_no_key() {
    let hub = TestHub::start().await;
    let (status, body) = hub.api(Method::GET, "/api/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert!(body["version"].is_string());
    hub.stop().await;
}

#[tokio::test]
async fn api_without_key_is_401_and_without_permission_403() {
    let hub = TestHub::start().await;
    let (status, body) = hub.api(Method::GET, "/api/environments", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("API key"));
    let (status, _) = hub
        .api(
            Method::GET,
            "/api/environments",
            Some("mk_not-a-real-key-at-all-000000000000000"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, created) = hub
        .admin(
            Method::POST,
            "/api/apikeys",
            Some(json!({"name": "ci", "permissions": ["images:push"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("mk_"));
    let (status, body) = hub
        .api(Method::GET, "/api/registries", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"error": "Permission denied"}));
    // Revocation takes effect at once, cache or not.
    let id = created["id"].as_i64().unwrap();
    let (status, _) = hub
        .admin(Method::DELETE, &format!("/api/apikeys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = hub
        .api(Method::GET, "/api/registries", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Listing never shows keys.
    let (_, keys) = hub.admin(Method::GET, "/api/apikeys", None).await;
    assert!(!keys.to_string().contains(&key[3..]));
    hub.stop().await;
}

#[tokio::test]
async fn an_api_key_cannot_grant_more_than_it_holds() {
    let hub = TestHub::start().await;
    let (_, k) = hub
        .admin(
            Method::POST,
            "/api/apikeys",
            Some(json!({"name": "keymaker", "permissions": ["apikeys:write", "images:push"]})),
        )
        .await;
    let key = k["key"].as_str().unwrap().to_owned();
    let (status, _) = hub
        .api(
            Method::POST,
            "/api/apikeys",
            Some(&key),
            Some(json!({"name": "evil", "permissions": ["*"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub
        .api(
            Method::POST,
            "/api/apikeys",
            Some(&key),
            Some(json!({"name": "ok", "permissions": ["images:push"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    hub.stop().await;
}

#[tokio::test]
async fn environment_scoped_keys_see_only_their_environments() {
    let hub = TestHub::start().await;
    let a = hub.create_edge_env("a").await;
    let b = hub.create_edge_env("b").await;
    let (_, k) = hub
        .admin(
            Method::POST,
            "/api/apikeys",
            Some(json!({"name": "scoped", "permissions": ["environments:read", "docker:proxy"], "environments": [a]})),
        )
        .await;
    let key = k["key"].as_str().unwrap().to_owned();
    let (status, list) = hub
        .api(Method::GET, "/api/environments", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![a]);
    let (status, _) = hub
        .api(
            Method::GET,
            &format!("/api/environments/{b}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    hub.stop().await;
}

#[tokio::test]
async fn registry_password_is_never_returned_nor_stored_in_plain_text() {
    let hub = TestHub::start().await;
    let password = "s3cret-Registry-Passw0rd-xyzzy";
    let (status, reg) = hub
        .admin(
            Method::POST,
            "/api/registries",
            Some(json!({"name": "private", "url": "127.0.0.1:5000", "username": "bob", "password": password})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert_eq!(reg["hasPassword"], true);
    assert_eq!(reg["username"], "bob");
    let id = reg["id"].as_i64().unwrap();
    let mut answers = vec![reg.to_string()];
    answers.push(
        hub.admin(Method::GET, "/api/registries", None)
            .await
            .1
            .to_string(),
    );
    answers.push(
        hub.admin(Method::GET, &format!("/api/registries/{id}"), None)
            .await
            .1
            .to_string(),
    );
    // PUT without a password keeps it.
    let (status, put) = hub
        .admin(
            Method::PUT,
            &format!("/api/registries/{id}"),
            Some(json!({"name": "private", "url": "127.0.0.1:5001", "username": "bob"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["hasPassword"], true);
    answers.push(put.to_string());
    for a in &answers {
        assert!(!a.contains(password), "password leaked in {a}");
        assert!(
            !a.to_lowercase().contains("\"password\""),
            "no password field: {a}"
        );
    }
    // Internal use gets it decrypted.
    let internal = hub.state.store.get_registry(id).await.unwrap().unwrap();
    assert_eq!(internal.password.as_deref(), Some(password));
    assert!(!format!("{internal:?}").contains(password));
    // The SQLite files never hold it in plain text.
    hub.state.store.close().await;
    for entry in std::fs::read_dir(&hub.data_dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "plain password in {}",
            path.display()
        );
    }
    hub.stop().await;
}

#[tokio::test]
async fn environments_crud_and_tokens_shown_once() {
    let hub = TestHub::start().await;
    let (status, env) = hub
        .admin(
            Method::POST,
            "/api/environments",
            Some(json!({"name": "nas", "type": "edge"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(env["type"], "edge");
    assert_eq!(env["status"], "offline");
    let id = env["id"].as_i64().unwrap();
    let (status, dup) = hub
        .admin(
            Method::POST,
            "/api/environments",
            Some(json!({"name": "nas", "type": "edge"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");
    let (status, bad) = hub
        .admin(
            Method::POST,
            "/api/environments",
            Some(json!({"name": "x", "type": "cloud"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("edge"));
    let (status, bad) = hub
        .api_raw(
            Method::POST,
            "/api/environments",
            Some(&hub.admin_key.clone()),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(serde_json::from_slice::<serde_json::Value>(&bad).unwrap()["error"].is_string());
    let (status, renamed) = hub
        .admin(
            Method::PATCH,
            &format!("/api/environments/{id}"),
            Some(json!({"name": "nas2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renamed["name"], "nas2");

    let (status, tok) = hub
        .admin(
            Method::POST,
            &format!("/api/environments/{id}/tokens"),
            Some(json!({"expiresInSecs": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = tok["token"].as_str().unwrap();
    assert_eq!(tok["prefix"], &token[..8]);
    assert!(tok["expiresAt"].is_string());
    let (_, list) = hub
        .admin(Method::GET, &format!("/api/environments/{id}/tokens"), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(token), "token never shown again");
    assert_eq!(list[0]["status"], "active");

    let (status, _) = hub.admin(Method::GET, "/api/environments/999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = hub.admin(Method::GET, "/api/environments/abc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = hub
        .admin(Method::DELETE, &format!("/api/environments/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    hub.stop().await;
}
