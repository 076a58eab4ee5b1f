//! Every refusal of `POST /api/images/push`, with its exact status and
//! body, against a real hub whose `local` environment is the rig's Docker.

mod common;
mod push_rig;

use axum::http::StatusCode;
use push_rig::{PushHub, RandomImage};
use serde_json::{json, Value};

#[tokio::test]
async fn every_validation_error_has_its_exact_status_and_body() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let open = hub.registry("open", &rig.registry, None).await;
    let edge = hub.hub.create_edge_env("offline").await;
    let admin = &hub.client;
    let id = rig.image_id.as_str();

    let cases: Vec<(&str, Option<i64>, Value, StatusCode, Value)> = vec![
        (
            "no imageId",
            None,
            json!({"registryId": open}),
            StatusCode::BAD_REQUEST,
            json!({"error": "Image ID and registry ID are required"}),
        ),
        (
            "blank imageId",
            None,
            json!({"imageId": " ", "registryId": open}),
            StatusCode::BAD_REQUEST,
            json!({"error": "Image ID and registry ID are required"}),
        ),
        (
            "no registryId",
            None,
            json!({"imageId": id}),
            StatusCode::BAD_REQUEST,
            json!({"error": "Image ID and registry ID are required"}),
        ),
        (
            "null registryId",
            Some(1),
            json!({"imageId": id, "registryId": null}),
            StatusCode::BAD_REQUEST,
            json!({"error": "Image ID and registry ID are required"}),
        ),
        (
            "unknown registry",
            None,
            json!({"imageId": id, "registryId": 999}),
            StatusCode::NOT_FOUND,
            json!({"error": "Registry not found"}),
        ),
        (
            "unknown image",
            None,
            json!({"imageId": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "registryId": open}),
            StatusCode::NOT_FOUND,
            json!({"error": "Image not found"}),
        ),
        (
            "unknown environment",
            Some(999),
            json!({"imageId": id, "registryId": open}),
            StatusCode::NOT_FOUND,
            json!({"error": "Environment not found"}),
        ),
        (
            "agent offline",
            Some(edge),
            json!({"imageId": id, "registryId": open}),
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "Edge agent not connected"}),
        ),
        (
            "invalid new tag",
            None,
            json!({"imageId": id, "registryId": open, "newTag": "bad tag"}),
            StatusCode::BAD_REQUEST,
            json!({"error": "Invalid image name \"bad tag\": each path part must be lowercase letters, digits and . _ - and start and end with a letter or digit"}),
        ),
    ];
    for (what, env, body, want_status, want_body) in cases {
        let (status, answer) = hub.push_raw(admin, env, &body, "*/*").await;
        assert_eq!((status, &answer), (want_status, &want_body), "{what}");
    }

    // registryId as a string is accepted (both forms are seen from clients).
    let (status, answer) = hub
        .push_raw(admin, None, &json!({"imageId": id, "registryId": open.to_string(), "newTag": "mooring-e2e/str-id:z"}), "application/json")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let _ = rig.docker(&["rmi", &format!("{}/mooring-e2e/str-id:z", rig.registry)]);

    // An image without any tag and no imageName.
    let untagged = RandomImage::untagged(&rig, 1024);
    let (status, answer) = hub
        .push_raw(
            admin,
            None,
            &json!({"imageId": untagged.id, "registryId": open}),
            "*/*",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        json!({"error": "Image has no tag. Please provide a tag name."})
    );

    // Permission: none, the wrong one, or scoped to another environment.
    let body = json!({"imageId": id, "registryId": open});
    for (name, perms, envs) in [
        ("reader", vec!["environments:read"], None),
        ("other-env", vec!["images:push"], Some(vec![edge])),
    ] {
        let key = hub.key(name, &perms, envs.as_deref()).await;
        let (status, answer) = hub
            .push_raw(&hub.client_with(&key), None, &body, "*/*")
            .await;
        assert_eq!(
            (status, answer),
            (StatusCode::FORBIDDEN, json!({"error": "Permission denied"})),
            "{name}"
        );
        let (status, _) = hub
            .push_raw(&hub.client_with(&key), Some(1), &body, "*/*")
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name} with ?env=1");
    }
    // A key scoped to `local` may push there.
    let scoped = hub.key("local-pusher", &["images:push"], Some(&[1])).await;
    let (status, answer) = hub
        .push_raw(
            &hub.client_with(&scoped),
            None,
            &json!({"imageId": id, "registryId": open, "newTag": "mooring-e2e/scoped:1"}),
            "application/json",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "complete", "{answer}");
    let _ = rig.docker(&["rmi", &format!("{}/mooring-e2e/scoped:1", rig.registry)]);
    // No key at all.
    let anonymous = mooring_hub::client::HubClient::new(&format!("http://{}", hub.hub.addr), None)
        .expect("client");
    let (status, _) = hub.push_raw(&anonymous, None, &body, "*/*").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_jobs_are_404() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    for path in [
        "/api/jobs/not-a-uuid",
        "/api/jobs/7d0bd9a4-5b8e-4b59-9d52-8f1e4c1f9a10",
    ] {
        let (status, body) = hub
            .client
            .json(axum::http::Method::GET, path, None)
            .await
            .expect("get");
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, json!({"error": "Job not found"}))
        );
        let (status, body) = hub
            .client
            .json(axum::http::Method::DELETE, path, None)
            .await
            .expect("delete");
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, json!({"error": "Job not found"}))
        );
    }
}
