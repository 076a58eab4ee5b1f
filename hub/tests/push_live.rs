//! Acting during a real push: a reader that reconnects with
//! `Last-Event-ID`, `DELETE` of the job, and the agent killed mid-push.
//!
//! Each push is of a fresh random layer through a throttling proxy in
//! front of the rig's open registry, so it is still uploading when the
//! test acts; everything else (Docker, registry, agent) is real.

mod common;
mod push_rig;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use mooring_hub::client::sse::SseParser;
use mooring_hub::client::{follow_job, StreamedEvent};
use push_rig::{unique_repo, PushHub, RandomImage, SlowProxy};
use serde_json::{json, Value};

/// Whether an event is a byte-progress tick of the upload.
fn is_tick(data: &Value) -> bool {
    data["status"] == "Pushing" && data["progressDetail"]["current"].is_u64()
}

/// Reads the job's SSE stream until the first upload tick; returns the
/// events read (with ids), then hangs up.
async fn read_until_first_tick(hub: &PushHub, job: &str) -> Vec<StreamedEvent> {
    let mut resp = hub
        .client
        .send(
            Method::GET,
            &format!("/api/jobs/{job}"),
            &[("accept", "text/event-stream")],
            None,
        )
        .await
        .expect("sse");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut parser = SseParser::new(1 << 20);
    let mut raw = Vec::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + push_rig::WAIT;
    while Instant::now() < deadline {
        let chunk = tokio::time::timeout(push_rig::WAIT, resp.chunk())
            .await
            .expect("events keep coming")
            .expect("chunk")
            .expect("stream still open before the first tick");
        parser.feed(&chunk, &mut raw).expect("sse");
        for ev in raw.drain(..) {
            let id = ev
                .id
                .as_deref()
                .and_then(|i| i.parse().ok())
                .expect("numeric id");
            let wrapped: Value = serde_json::from_str(&ev.data).expect("json data");
            let data = wrapped["data"].clone();
            assert!(
                data["status"] != "complete" && data["status"] != "error",
                "ended early: {data}"
            );
            let tick = is_tick(&data);
            seen.push(StreamedEvent { id, data });
            if tick {
                return seen;
            }
        }
    }
    panic!("no upload tick within {:?}: {seen:?}", push_rig::WAIT);
}

#[tokio::test]
async fn a_reader_reconnecting_mid_push_gets_the_same_sequence() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let (env, _agent) = hub.edge_with_agent(&rig, "edge").await;
    let proxy = SlowProxy::start(&rig.registry, 2 * 1024 * 1024).await;
    let reg = hub.registry("slow", &proxy.addr, None).await;
    let image = RandomImage::create(&rig, 6 * 1024 * 1024);
    let repo = unique_repo("resume");
    let body = json!({"imageId": image.id, "registryId": reg, "newTag": format!("{repo}:r1")});
    let job = hub.start_push(Some(env), &body).await;

    // Reader A follows from the start to the end on one connection.
    let client = hub.client.clone();
    let job_a = job.clone();
    let reader_a = tokio::spawn(async move {
        let mut seen = Vec::new();
        let end = follow_job(&client, &job_a, None, 0, |e| seen.push(e.clone())).await;
        (seen, end)
    });
    // Reader B hangs up at the first upload tick, mid-push …
    let first = read_until_first_tick(&hub, &job).await;
    let state = hub
        .hub
        .state
        .jobs
        .get(job.parse().expect("uuid"))
        .expect("job");
    assert_eq!(
        state.status(),
        mooring_hub::jobs::JobStatus::Running,
        "B left mid-push"
    );
    // … and comes back as an EventSource would, with Last-Event-ID.
    let last = first.last().map(|e| e.id);
    let mut rest = Vec::new();
    let end = tokio::time::timeout(
        push_rig::WAIT,
        follow_job(&hub.client, &job, last, 0, |e| rest.push(e.clone())),
    )
    .await
    .expect("push ends")
    .expect("resume");
    assert_eq!(end.result["status"], "complete", "{}", end.result);

    let (all, end_a) = reader_a.await.expect("reader A");
    let end_a = end_a.expect("reader A follows");
    assert_eq!(end_a.result, end.result);
    let b: Vec<StreamedEvent> = first.into_iter().chain(rest).collect();
    assert_eq!(b, all, "same events, same ids, no gap, no duplicate");
    assert!(
        all.iter().filter(|e| is_tick(&e.data)).count() >= 2,
        "a real upload"
    );
    let digest = end.result["digest"].as_str().expect("digest");
    assert_eq!(
        rig.registry_manifest_digest(&rig.registry, &repo, "r1", None)
            .as_deref(),
        Some(digest)
    );
}

#[tokio::test]
async fn delete_cancels_a_running_push_and_its_docker_request() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let (env, agent) = hub.edge_with_agent(&rig, "edge").await;
    let proxy = SlowProxy::start(&rig.registry, 256 * 1024).await;
    let reg = hub.registry("slow", &proxy.addr, None).await;
    let image = RandomImage::create(&rig, 8 * 1024 * 1024);
    let repo = unique_repo("cancel");
    let body = json!({"imageId": image.id, "registryId": reg, "newTag": format!("{repo}:c1")});
    let job = hub.start_push(Some(env), &body).await;
    read_until_first_tick(&hub, &job).await;
    proxy.set_open(false); // hold the upload: the push cannot finish by itself
    assert!(
        agent.handle.stats().in_flight >= 1,
        "the agent is relaying the push"
    );

    // Without the right permission, no cancel.
    let reader = hub.key("reader", &["environments:read"], None).await;
    let (status, body) = hub
        .client_with(&reader)
        .json(Method::DELETE, &format!("/api/jobs/{job}"), None)
        .await
        .expect("delete");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, answer) = hub
        .client
        .json(Method::DELETE, &format!("/api/jobs/{job}"), None)
        .await
        .expect("delete");
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "error");
    assert_eq!(
        answer["result"],
        json!({"status": "error", "error": "Push cancelled by request"})
    );
    // The agent's Docker request was cancelled: nothing left in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.handle.stats().in_flight > 0 {
        assert!(
            Instant::now() < deadline,
            "agent still relaying: {:?}",
            agent.handle.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set_open(true);
    let audit = hub.push_audit().await;
    assert_eq!(audit[0].1["outcome"], "cancelled");
    assert_eq!(
        rig.registry_manifest_digest(&rig.registry, &repo, "c1", None),
        None,
        "a cancelled push leaves no manifest"
    );
    // Cancelling again is harmless and says the same.
    let (status, again) = hub
        .client
        .json(Method::DELETE, &format!("/api/jobs/{job}"), None)
        .await
        .expect("delete");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["result"], answer["result"]);
}

#[tokio::test]
async fn killing_the_agent_mid_push_fails_the_job_within_seconds() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let (env, mut agent) = hub.edge_with_agent(&rig, "edge").await;
    let proxy = SlowProxy::start(&rig.registry, 256 * 1024).await;
    let reg = hub.registry("slow", &proxy.addr, None).await;
    let image = RandomImage::create(&rig, 8 * 1024 * 1024);
    let body = json!({"imageId": image.id, "registryId": reg, "newTag": format!("{}:k1", unique_repo("kill"))});
    let job = hub.start_push(Some(env), &body).await;
    read_until_first_tick(&hub, &job).await;
    proxy.set_open(false);

    let killed = Instant::now();
    agent.kill();
    let job_state = hub
        .hub
        .state
        .jobs
        .get(job.parse().expect("uuid"))
        .expect("job");
    let end = tokio::time::timeout(Duration::from_secs(15), job_state.wait())
        .await
        .expect("the job ended after the agent died");
    let took = killed.elapsed();
    let end: Value = serde_json::from_str(&end.json).expect("json");
    assert_eq!(end["status"], "error", "{end}");
    let error = end["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Edge agent"), "{error}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(hub.job_json(&job).await["status"], "error");
    proxy.set_open(true);
}
