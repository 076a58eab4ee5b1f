//! End-to-end pushes with the rig's real Docker and registries: through the
//! real `mooring-agent` (edge) and through the hub's own socket (`local`),
//! over a real socket to the hub, checked against the registry's own API.

mod common;
mod push_rig;

use axum::http::StatusCode;
use common::{agent_id, AgentOptions, TestAgent};
use mooring_hub::push::message::AUTH_FAILED;
use mooring_tests::rig::Rig;
use push_rig::{unique_repo, PushHub, RandomImage};
use serde_json::{json, Value};

/// Pushes the rig image as `repo:tag` and checks job, events, registry.
async fn push_and_verify(
    hub: &PushHub,
    rig: &Rig,
    env: Option<i64>,
    registry_id: i64,
    registry: &str,
    auth: Option<(&str, &str)>,
) -> Value {
    let repo = unique_repo("ok");
    let body =
        json!({"imageId": rig.image_id, "registryId": registry_id, "newTag": format!("{repo}:v1")});
    let job = hub.start_push(env, &body).await;
    let (events, result) = hub.follow(&job).await;
    let target = format!("{registry}/{repo}:v1");
    assert_eq!(result["status"], "complete", "{result}");
    assert_eq!(result["targetTag"], target.as_str());
    assert_eq!(
        result["message"],
        format!("Image pushed to {target}").as_str()
    );
    let statuses: Vec<&str> = events
        .iter()
        .filter_map(|e| e.data["status"].as_str())
        .collect();
    assert_eq!(&statuses[..2], &["tagging", "pushing"], "{statuses:?}");
    assert!(
        events
            .iter()
            .any(|e| e.data["id"].is_string() && e.data.get("progressDetail").is_some()),
        "Docker's layer progress objects are forwarded as-is: {statuses:?}"
    );
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // The registry itself serves the manifest Docker reported.
    let digest = result["digest"].as_str().expect("digest in the result");
    let served = rig.registry_manifest_digest(registry, &repo, "v1", auth);
    assert_eq!(
        served.as_deref(),
        Some(digest),
        "registry manifest of {repo}:v1"
    );
    let json = hub.job_json(&job).await;
    assert_eq!(json["status"], "done");
    assert_eq!(json["result"], result);
    untag(rig, &target);
    result
}

async fn push_expecting_auth_failure(hub: &PushHub, rig: &Rig, env: Option<i64>, registry_id: i64) {
    let repo = unique_repo("denied");
    let body =
        json!({"imageId": rig.image_id, "registryId": registry_id, "newTag": format!("{repo}:v1")});
    let job = hub.start_push(env, &body).await;
    let (events, result) = hub.follow(&job).await;
    assert_eq!(result["status"], "error", "{result}");
    assert_eq!(result["error"], AUTH_FAILED);
    assert!(events.iter().all(|e| e.data["status"] != "complete"));
    assert_eq!(hub.job_json(&job).await["status"], "error");
    let served = rig.registry_manifest_digest(&rig.auth_registry, &repo, "v1", Some(rig.auth()));
    assert_eq!(served, None, "nothing was pushed");
    untag(rig, &format!("{}/{repo}:v1", rig.auth_registry));
}

#[tokio::test]
async fn edge_push_to_the_open_registry_is_served_by_the_registry() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let (env, _agent) = hub.edge_with_agent(&rig, "edge").await;
    let reg = hub.registry("open", &rig.registry, None).await;
    push_and_verify(&hub, &rig, Some(env), reg, &rig.registry, None).await;

    // One audit row, with who, where, what, outcome and duration.
    let audit = hub.push_audit().await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let (actor, detail) = &audit[0];
    assert!(actor.starts_with("apikey:"), "{actor}");
    assert_eq!(detail["environment"], env);
    assert_eq!(detail["imageId"], rig.image_id.as_str());
    assert_eq!(detail["outcome"], "done");
    assert!(detail["registry"]
        .as_str()
        .is_some_and(|r| r.starts_with("open")));
    assert!(detail["targetTag"]
        .as_str()
        .is_some_and(|t| t.starts_with(&rig.registry)));
    assert!(detail["durationMs"].is_u64());
}

#[tokio::test]
async fn edge_push_to_the_auth_registry_needs_the_right_password() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let (env, _agent) = hub.edge_with_agent(&rig, "edge").await;
    let good = hub
        .registry("auth-good", &rig.auth_registry, Some(rig.auth()))
        .await;
    let bad = hub
        .registry(
            "auth-bad",
            &rig.auth_registry,
            Some((&rig.auth_user, "not-the-password")),
        )
        .await;
    push_and_verify(
        &hub,
        &rig,
        Some(env),
        good,
        &rig.auth_registry,
        Some(rig.auth()),
    )
    .await;
    push_expecting_auth_failure(&hub, &rig, Some(env), bad).await;
    let outcomes: Vec<Value> = hub
        .push_audit()
        .await
        .into_iter()
        .map(|(_, d)| d["outcome"].clone())
        .collect();
    assert_eq!(outcomes, vec![json!("error"), json!("done")]);
}

#[tokio::test]
async fn local_pushes_to_open_and_auth_registries() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let open = hub.registry("open", &rig.registry, None).await;
    let good = hub
        .registry("auth-good", &rig.auth_registry, Some(rig.auth()))
        .await;
    let bad = hub
        .registry(
            "auth-bad",
            &rig.auth_registry,
            Some((&rig.auth_user, "wrong")),
        )
        .await;
    // No ?env=: the hub's `local` environment (its own socket = the rig's).
    push_and_verify(&hub, &rig, None, open, &rig.registry, None).await;
    push_and_verify(
        &hub,
        &rig,
        Some(1),
        good,
        &rig.auth_registry,
        Some(rig.auth()),
    )
    .await;
    push_expecting_auth_failure(&hub, &rig, None, bad).await;

    // Each push ended as a `push.finished` event and in the push counters.
    let key = Some(hub.hub.admin_key.as_str());
    let (status, list) = hub
        .hub
        .api(axum::http::Method::GET, "/api/events?since=0", key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let finished: Vec<&str> = list["events"]
        .as_array()
        .expect("events list")
        .iter()
        .filter(|e| e["kind"] == "push.finished")
        .filter_map(|e| e["detail"]["status"].as_str())
        .collect();
    assert_eq!(finished, ["ok", "ok", "error"], "{list}");
    let (status, text) = hub
        .hub
        .api_raw(axum::http::Method::GET, "/metrics", key, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8_lossy(&text);
    for (outcome, n) in [("ok", 2), ("error", 1)] {
        let line = format!("mooring_push_jobs_total{{outcome=\"{outcome}\"}} {n}");
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn sync_json_mode_answers_the_terminal_event() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let (env, _agent) = hub.edge_with_agent(&rig, "edge").await;
    let open = hub.registry("open", &rig.registry, None).await;
    let bad = hub
        .registry(
            "auth-bad",
            &rig.auth_registry,
            Some((&rig.auth_user, "wrong")),
        )
        .await;
    let repo = unique_repo("sync");
    let body = json!({"imageId": rig.image_id, "registryId": open, "newTag": format!("{repo}:s1")});
    let (status, answer) = hub
        .push_raw(&hub.client, Some(env), &body, "application/json")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let target = format!("{}/{repo}:s1", rig.registry);
    assert_eq!(answer["status"], "complete");
    assert_eq!(answer["targetTag"], target.as_str());
    assert_eq!(
        answer["message"],
        format!("Image pushed to {target}").as_str()
    );
    let served = rig.registry_manifest_digest(&rig.registry, &repo, "s1", None);
    assert_eq!(served.as_deref(), answer["digest"].as_str());
    untag(&rig, &target);

    let body = json!({"imageId": rig.image_id, "registryId": bad, "newTag": format!("{repo}:s2")});
    let (status, answer) = hub
        .push_raw(&hub.client, Some(env), &body, "application/json")
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["status"], "error");
    assert_eq!(answer["error"], AUTH_FAILED);
    untag(&rig, &format!("{}/{repo}:s2", rig.auth_registry));
}

#[tokio::test]
async fn source_tag_rules_apply_to_real_pushes() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let open = hub
        .registry("open", &format!("http://{}/", rig.registry), None)
        .await;
    // No newTag, no imageName: the image's own (only) tag.
    let image = RandomImage::create(&rig, 4096);
    let (status, answer) = hub
        .push_raw(
            &hub.client,
            None,
            &json!({"imageId": image.id, "registryId": open}),
            "application/json",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let target = format!("{}/{}", rig.registry, image.reference);
    assert_eq!(answer["targetTag"], target.as_str());
    untag(&rig, &target);
    // imageName with another registry's prefix: the prefix is replaced.
    let name = format!(
        "old.registry.example:5000/{}:Keep-Case",
        unique_repo("Named")
    );
    let (status, answer) = hub
        .push_raw(
            &hub.client,
            None,
            &json!({"imageId": image.id, "imageName": name, "registryId": open}),
            "application/json",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let want = format!(
        "{}/{}",
        rig.registry,
        mooring_hub::push::target::strip_registry(&name).replace("Named", "named")
    );
    assert_eq!(answer["targetTag"], want.as_str());
    untag(&rig, &want);
}

/// Removes a tag a push added to a shared rig image (the image stays).
fn untag(rig: &Rig, reference: &str) {
    let _ = rig.docker(&["rmi", reference]);
}

/// A Hawser agent that, like the reference Go agent, never reports the
/// HTTP status of a stream: success and failure come from the lines alone.
#[tokio::test]
async fn pushes_through_a_reference_style_agent_without_stream_status() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let env = hub.hub.create_edge_env("reference").await;
    let (_, token) = hub.hub.create_token(env, None).await;
    let _agent = TestAgent::connect(
        &hub.hub.ws_url(),
        &token,
        AgentOptions::new(&agent_id()).relaying_to(rig.docker_sock.clone()),
    )
    .await
    .expect("agent connects");
    hub.hub
        .wait_status(env, "online", std::time::Duration::from_secs(10))
        .await;
    let open = hub.registry("open", &rig.registry, None).await;
    let good = hub
        .registry("auth-good", &rig.auth_registry, Some(rig.auth()))
        .await;
    let bad = hub
        .registry(
            "auth-bad",
            &rig.auth_registry,
            Some((&rig.auth_user, "wrong")),
        )
        .await;
    push_and_verify(&hub, &rig, Some(env), open, &rig.registry, None).await;
    push_and_verify(
        &hub,
        &rig,
        Some(env),
        good,
        &rig.auth_registry,
        Some(rig.auth()),
    )
    .await;
    push_expecting_auth_failure(&hub, &rig, Some(env), bad).await;
}

#[tokio::test]
async fn event_stream_accept_on_post_streams_the_job_directly() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let open = hub.registry("open", &rig.registry, None).await;
    let repo = unique_repo("sse");
    let body = json!({"imageId": rig.image_id, "registryId": open, "newTag": format!("{repo}:e1")});
    let mut resp = hub
        .client
        .send(
            axum::http::Method::POST,
            "/api/images/push",
            &[("accept", "text/event-stream")],
            Some(body.to_string().into_bytes()),
        )
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let job = resp.header("x-job-id").expect("job id header").to_owned();
    let mut parser = mooring_hub::client::sse::SseParser::new(1 << 20);
    let mut events = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        parser.feed(&chunk, &mut events).expect("sse");
    }
    let last: Value = serde_json::from_str(&events.last().expect("events").data).expect("json");
    assert_eq!(last["data"]["status"], "complete", "{last}");
    assert_eq!(
        events.len(),
        hub.job_json(&job).await["lines"]
            .as_array()
            .map_or(0, Vec::len)
    );
    let _ = rig.docker(&["rmi", &format!("{}/{repo}:e1", rig.registry)]);
}
