//! Image pushes through the agent to the rig's real registries: progress as
//! stream frames, Docker's status on the first frame and on `stream_end`,
//! and a wrong password surfacing as an error line in the stream.

mod common;

use common::*;
use mooring_protocol::lines::LineDecoder;
use mooring_protocol::Frame;

/// Tags the rig image as `REGISTRY/mooring-agent-test/busybox:TAG` through
/// the agent; returns the URL-encoded name:tag for the push path.
async fn tag_for(conn: &mut HubConn, image: &str, registry: &str, tag: &str) -> String {
    let repo = format!("{registry}/mooring-agent-test/busybox");
    let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F");
    let path = format!("/images/{image}/tag?repo={}&tag={tag}", enc(&repo));
    let Frame::Response(r) = conn.call(request("POST", &path)).await else {
        panic!()
    };
    assert_eq!(r.status_code, 201, "{}", r.body);
    enc(&format!("{repo}:{tag}"))
}

fn progress_lines(data: &[u8]) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    let mut dec = LineDecoder::new(1 << 20);
    dec.push(data, |l| lines.push(serde_json::from_slice(l).unwrap()))
        .unwrap();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_the_open_registry_streams_progress_with_status_200() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let name = tag_for(&mut conn, &rig.image, &rig.registry, &tag).await;

    let mut push = request("POST", &format!("/images/{name}/push"));
    push.headers.insert(
        "X-Registry-Auth".into(),
        registry_auth("", "", &rig.registry),
    );
    let s = conn.stream(push).await;
    assert_eq!(s.chunks[0].status_code, Some(200));
    let end = s.end.as_ref().unwrap();
    assert_eq!(
        (end.reason.as_deref(), end.status_code),
        (Some("completed"), Some(200))
    );
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let lines = progress_lines(&s.data());
    assert!(lines.len() >= 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.get("error").is_none() && l.get("errorDetail").is_none()),
        "{lines:?}"
    );
    let digest = lines
        .iter()
        .find_map(|l| l["aux"]["Digest"].as_str().map(str::to_owned))
        .expect("no aux digest line");
    // The registry really has it.
    let rig2 = rig.clone();
    let tag2 = tag.clone();
    let in_registry = tokio::task::spawn_blocking(move || {
        rig2.registry_manifest_digest(&rig2.registry, "mooring-agent-test/busybox", &tag2, None)
    })
    .await
    .unwrap();
    assert_eq!(in_registry.as_deref(), Some(digest.as_str()));

    let Frame::Response(r) = conn
        .call(request("DELETE", &format!("/images/{name}")))
        .await
    else {
        panic!()
    };
    assert_eq!(r.status_code, 200, "{}", r.body);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_wrong_password_fails_with_an_error_line_in_the_stream() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let name = tag_for(&mut conn, &rig.image, &rig.auth_registry, &tag).await;

    let mut push = request("POST", &format!("/images/{name}/push"));
    let auth = registry_auth(&rig.auth_user, "definitely-wrong", &rig.auth_registry);
    push.headers.insert("X-Registry-Auth".into(), auth);
    let s = conn.stream(push).await;
    // Docker reports push failures in-band under HTTP 200.
    assert_eq!(s.end.as_ref().unwrap().status_code, Some(200));
    let lines = progress_lines(&s.data());
    let err = lines
        .iter()
        .find(|l| l.get("errorDetail").is_some())
        .unwrap_or_else(|| panic!("no error line in {lines:?}"));
    let text = err["error"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        text.contains("unauthorized") || text.contains("authentication"),
        "{text}"
    );
    assert!(
        !s.text().contains("definitely-wrong"),
        "password echoed in the stream"
    );

    let Frame::Response(r) = conn
        .call(request("DELETE", &format!("/images/{name}")))
        .await
    else {
        panic!()
    };
    assert_eq!(r.status_code, 200, "{}", r.body);
    agent.stop().await;
}
