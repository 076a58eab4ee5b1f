//! The Docker API passthrough against the rig's real Docker, through a
//! relaying test agent (edge) and through the hub's own socket (local).

mod common;

use axum::http::{Method, StatusCode};
use common::{agent_id, AgentOptions, OnlineAgent, TestHub};
use mooring_hub::envs::DockerCall;
use mooring_protocol::Headers;

#[tokio::test]
async fn passthrough_runs_version_and_images_json_through_the_agent() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = TestHub::start().await;
    let OnlineAgent {
        env, agent: _agent, ..
    } = hub
        .online_agent(
            "rig",
            AgentOptions::new(&agent_id()).relaying_to(rig.docker_sock.clone()),
        )
        .await;

    let (status, version) = hub
        .admin(
            Method::GET,
            &format!("/api/environments/{env}/docker/version"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{version}");
    assert_eq!(version["Version"], rig.docker_version.as_str());

    let (status, images) = hub
        .admin(
            Method::GET,
            &format!("/api/environments/{env}/docker/v1.41/images/json"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{images}");
    let ids: Vec<&str> = images
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["Id"].as_str())
        .collect();
    assert!(
        ids.contains(&rig.image_id.as_str()),
        "rig image {} in {ids:?}",
        rig.image_id
    );
    let (_, direct) = rig.docker_api_get("/v1.41/images/json").unwrap();
    let direct: serde_json::Value = serde_json::from_str(&direct).unwrap();
    assert_eq!(
        direct.as_array().unwrap().len(),
        images.as_array().unwrap().len()
    );

    // Docker's own error statuses come back as they are.
    let (status, missing) = hub
        .admin(
            Method::GET,
            &format!("/api/environments/{env}/docker/images/no-such-image:zzz/json"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert!(missing["message"]
        .as_str()
        .unwrap()
        .contains("no-such-image"));
    hub.stop().await;
}

#[tokio::test]
async fn streamed_passthrough_and_env_client_stream_work_through_the_agent() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = TestHub::start().await;
    let OnlineAgent {
        env, agent: _agent, ..
    } = hub
        .online_agent(
            "rig",
            AgentOptions::new(&agent_id()).relaying_to(rig.docker_sock.clone()),
        )
        .await;
    // `docker save` of the rig image: a binary stream, many 4 KiB frames.
    let path = format!("/images/{}/get", rig.image.replace('/', "%2F"));
    let client = hub.state.env_client(env).await.unwrap();
    let mut stream = client
        .stream(DockerCall {
            method: http::Method::GET,
            path: path.clone(),
            headers: Headers::new(),
            body: None,
        })
        .await
        .unwrap();
    assert_eq!(
        stream.status(),
        None,
        "reference-style agents report no stream status"
    );
    let mut total = 0usize;
    let mut chunks = 0usize;
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        total += chunk.len();
        chunks += 1;
    }
    assert!(total > 100_000, "a tar of busybox: {total} bytes");
    assert!(chunks > 10);
    // The same through the HTTP passthrough (streamed mode chosen by path).
    let (status, body) = hub
        .api_raw(
            Method::GET,
            &format!("/api/environments/{env}/docker{path}"),
            Some(&hub.admin_key.clone()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), total);
    assert_eq!(&body[257..262], b"ustar", "a tar archive");
    hub.stop().await;
}

#[tokio::test]
async fn passthrough_reaches_the_local_environment() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let sock = rig.docker_sock.to_string_lossy().into_owned();
    let hub = TestHub::start_with(common::fast_settings(), Some(&sock)).await;
    let local = hub.env_json(1).await;
    assert_eq!(local["name"], "local");
    assert_eq!(local["type"], "local");
    assert_eq!(local["status"], "online");
    let (status, version) = hub
        .admin(Method::GET, "/api/environments/1/docker/version", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{version}");
    assert_eq!(version["Version"], rig.docker_version.as_str());
    let client = hub.state.env_client(1).await.unwrap();
    let stream = client
        .stream(DockerCall {
            method: http::Method::GET,
            path: "/events?since=0&until=1".into(),
            headers: Headers::new(),
            body: None,
        })
        .await
        .unwrap();
    assert_eq!(stream.status(), Some(200));
    hub.stop().await;
}

#[tokio::test]
async fn passthrough_needs_docker_proxy_and_refuses_dot_dot() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("nas").await;
    let (status, key) = hub
        .admin(
            Method::POST,
            "/api/apikeys",
            Some(serde_json::json!({"name": "pusher", "permissions": ["images:push"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key = key["key"].as_str().unwrap().to_owned();
    let (status, body) = hub
        .api(
            Method::GET,
            &format!("/api/environments/{env}/docker/version"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, serde_json::json!({"error": "Permission denied"}));
    let (status, body) = hub
        .admin(
            Method::GET,
            &format!("/api/environments/{env}/docker/images/%2e%2e/secrets"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // No agent: a clear 503.
    let (status, body) = hub
        .admin(
            Method::GET,
            &format!("/api/environments/{env}/docker/version"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "Edge agent not connected");
    hub.stop().await;
}
