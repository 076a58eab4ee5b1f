//! The push orchestration against a scripted Docker, including the real
//! push streams recorded from the reference Go agent.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::fake::{response, Fake, Item};
use super::message::{AGENT_NOT_CONNECTED, AUTH_FAILED, IMAGE_NOT_FOUND};
use super::*;
use crate::envs::EnvError;
use crate::jobs::{JobLimits, JobMeta, JobStatus, Jobs};

const DIGEST: &str = "sha256:bec57f8a1f38f49165d96abf56f84652fa37762963c95b756222510f43eeb6f2";

fn plan() -> PushPlan {
    let reg = RegistryLocation::parse("127.0.0.1:5001").expect("url");
    PushPlan {
        image_id: "sha256:abc".into(),
        target: target_tag(Some("demo/app:vec"), None, &reg).expect("target"),
        registry_auth: registry_auth(&reg, Some("alice"), Some("s3cret")),
    }
}

async fn push(fake: &Fake) -> (Vec<Value>, Result<Pushed, PushFailure>) {
    let mut events = Vec::new();
    let token = CancellationToken::new();
    let out = execute(fake, &plan(), &token, |e| events.push(e.clone())).await;
    (events, out)
}

/// The push streams of the recorded session: request id → (decoded
/// `X-Registry-Auth` JSON or None, body chunks in order).
fn recorded_pushes() -> Vec<(Option<Value>, Vec<Vec<u8>>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocol/tests/data/hawser-go-agent-session.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("recorded session");
    let mut order = Vec::new();
    let mut pushes: BTreeMap<String, (Option<Value>, Vec<Vec<u8>>)> = BTreeMap::new();
    for line in text.lines() {
        let rec: Value = serde_json::from_str(line).expect("jsonl");
        let frame = &rec["frame"];
        let id = frame["requestId"].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str() {
            Some("request") if frame["path"].as_str().is_some_and(|p| p.ends_with("/push")) => {
                let auth = frame["headers"]["X-Registry-Auth"].as_str().map(|h| {
                    use base64::Engine as _;
                    let raw = base64::engine::general_purpose::URL_SAFE
                        .decode(h)
                        .expect("recorded header is base64url");
                    serde_json::from_slice(&raw).expect("auth json")
                });
                order.push(id.clone());
                pushes.insert(id, (auth, Vec::new()));
            }
            Some("stream") => {
                if let Some(p) = pushes.get_mut(&id) {
                    let data = frame["data"].as_str().expect("data");
                    p.1.push(mooring_protocol::b64::decode(data).expect("base64"));
                }
            }
            _ => {}
        }
    }
    order.iter().filter_map(|id| pushes.remove(id)).collect()
}

fn recorded(password: Option<&str>) -> Vec<Vec<u8>> {
    recorded_pushes()
        .into_iter()
        .find(|(auth, _)| auth.as_ref().map(|a| a["password"].as_str()) == password.map(Some))
        .map(|(_, chunks)| chunks)
        .expect("recorded push")
}

fn script(chunks: Vec<Vec<u8>>) -> Vec<Item> {
    chunks.into_iter().map(Item::Owned).collect()
}

#[tokio::test]
async fn recorded_good_push_completes_with_the_digest() {
    let fake = Fake::new(script(recorded(Some("s3cret"))));
    let (events, out) = push(&fake).await;
    let pushed = out.expect("push succeeds");
    assert_eq!(pushed.digest, DIGEST);
    assert_eq!(pushed.target, "127.0.0.1:5001/demo/app:vec");
    assert_eq!(
        events[0],
        json!({"status": "tagging", "message": "Tagging image..."})
    );
    assert_eq!(
        events[1],
        json!({"status": "pushing", "message": "Pushing to registry..."})
    );
    assert_eq!(
        events[3],
        json!({"status": "Preparing", "progressDetail": {}, "id": "194ef9956434"})
    );
    let (status, end) = terminal_event(&Ok(pushed));
    assert_eq!(status, JobStatus::Done);
    assert_eq!(
        end,
        json!({"status": "complete", "message": "Image pushed to 127.0.0.1:5001/demo/app:vec",
               "targetTag": "127.0.0.1:5001/demo/app:vec", "digest": DIGEST})
    );
    let calls = fake.calls();
    assert_eq!(
        calls[0].path,
        "/images/sha256%3Aabc/tag?repo=127.0.0.1%3A5001%2Fdemo%2Fapp&tag=vec"
    );
    assert_eq!(
        calls[1].path,
        "/images/127.0.0.1%3A5001%2Fdemo%2Fapp/push?tag=vec"
    );
    assert!(calls[1].headers.contains_key("X-Registry-Auth"));
}

#[tokio::test]
async fn recorded_wrong_password_is_an_authentication_failure() {
    let fake = Fake::new(script(recorded(Some("wrong"))));
    let (_, out) = push(&fake).await;
    let failure = out.expect_err("must fail");
    assert_eq!(failure.message, AUTH_FAILED);
    assert_eq!(
        failure.detail.as_deref(),
        Some("unauthorized: authentication required")
    );
    let (status, end) = terminal_event(&Err(failure));
    assert_eq!(status, JobStatus::Error);
    assert_eq!(end["status"], "error");
    assert_eq!(end["error"], AUTH_FAILED);
}

#[tokio::test]
async fn recorded_missing_auth_body_without_status_is_an_error() {
    let fake = Fake::new(script(recorded(None)));
    let (events, out) = push(&fake).await;
    let failure = out.expect_err("a 400 body is not success");
    assert_eq!(
        failure.message,
        "Bad parameters and missing X-Registry-Auth: EOF"
    );
    assert!(events.iter().all(|e| e["status"] != "complete"));
}

#[tokio::test]
async fn every_chunk_boundary_gives_the_same_events() {
    let whole: Vec<u8> = recorded(Some("s3cret")).concat();
    let (reference, _) = push(&Fake::new(vec![Item::Owned(whole.clone())])).await;
    for cut in 1..whole.len() {
        let fake = Fake::new(vec![
            Item::Owned(whole[..cut].to_vec()),
            Item::Owned(whole[cut..].to_vec()),
        ]);
        let (events, out) = push(&fake).await;
        assert_eq!(
            out.map(|p| p.digest).ok().as_deref(),
            Some(DIGEST),
            "cut at {cut}"
        );
        assert_eq!(events, reference, "cut at {cut}");
    }
    let bytewise = whole.iter().map(|b| Item::Owned(vec![*b])).collect();
    let (events, out) = push(&Fake::new(bytewise)).await;
    assert!(out.is_ok());
    assert_eq!(events, reference);
}

#[tokio::test]
async fn a_clean_end_without_a_digest_is_a_failure() {
    let fake = Fake::new(vec![
        Item::Chunk(b"{\"status\":\"The push refers to repository [127.0.0.1:5001/demo/app]\"}\n"),
        Item::Chunk(b"{\"status\":\"Preparing\",\"progressDetail\":{},\"id\":\"194ef9956434\"}\n"),
    ]);
    let failure = push(&fake).await.1.expect_err("no digest, no success");
    assert!(failure.message.contains("no digest"), "{}", failure.message);
    assert!(failure.message.contains("Preparing"), "{}", failure.message);
}

#[tokio::test]
async fn a_non_2xx_status_fails_with_dockers_message() {
    let mut fake = Fake::new(vec![Item::Chunk(
        b"{\"message\":\"No such image: 127.0.0.1:5001/demo/app:vec\"}\n",
    )]);
    fake.initial_status = Some(404);
    let failure = push(&fake).await.1.expect_err("404");
    assert_eq!(failure.message, IMAGE_NOT_FOUND);
    assert_eq!(
        failure.detail.as_deref(),
        Some("No such image: 127.0.0.1:5001/demo/app:vec")
    );
    // Status learnt with the first chunk (Mooring agent), body not JSON.
    let fake = Fake::new(vec![
        Item::Status(500),
        Item::Chunk(b"boom"),
        Item::Chunk(b" again"),
    ]);
    let failure = push(&fake).await.1.expect_err("500");
    assert_eq!(failure.message, "boom again");
    let fake = Fake::new(vec![Item::Status(401)]);
    assert_eq!(push(&fake).await.1.expect_err("401").message, AUTH_FAILED);
}

#[tokio::test]
async fn losing_the_agent_mid_stream_fails_the_push() {
    let fake = Fake::new(vec![
        Item::Chunk(
            b"{\"status\":\"Preparing\",\"progressDetail\":{},\"id\":\"a\"}\n{\"status\":\"Push",
        ),
        Item::Fail(EnvError::Disconnected("link closed".into())),
    ]);
    let (events, out) = push(&fake).await;
    let failure = out.expect_err("lost agent");
    assert_eq!(failure.message, "Edge agent disconnected: link closed");
    assert_eq!(events.len(), 3, "tagging, pushing, Preparing: {events:?}");
    let fake = Fake::new(vec![Item::Fail(EnvError::Docker(
        "Get \"https://reg:5000/v2/\": x509: certificate signed by unknown authority".into(),
    ))]);
    let failure = push(&fake).await.1.expect_err("an agent error frame");
    assert_eq!(failure.message, super::message::TLS_ERROR);
    assert!(failure.detail.is_some_and(|d| d.contains("x509")));
    let mut fake = Fake::new(vec![]);
    fake.stream_open = Some(EnvError::NotConnected);
    assert_eq!(
        push(&fake).await.1.expect_err("offline").message,
        AGENT_NOT_CONNECTED
    );
}

#[tokio::test]
async fn a_failed_tag_stops_before_the_push() {
    let mut fake = Fake::new(vec![]);
    fake.tag = Ok(response(404, r#"{"message":"No such image: sha256:abc"}"#));
    let (events, out) = push(&fake).await;
    assert_eq!(out.expect_err("tag failed").message, IMAGE_NOT_FOUND);
    assert_eq!(events.len(), 1);
    assert_eq!(fake.calls().len(), 1, "no push after a failed tag");
}

#[tokio::test]
async fn a_cancelled_job_drops_the_docker_stream() {
    let jobs = Jobs::new(JobLimits::default(), CancellationToken::new());
    let fake = std::sync::Arc::new(Fake::new(vec![
        Item::Chunk(b"{\"status\":\"Preparing\",\"progressDetail\":{},\"id\":\"a\"}\n"),
        Item::Hang,
    ]));
    let dropped = fake.stream_dropped.clone();
    let docker = fake.clone();
    let job = jobs
        .start("push", JobMeta::default(), move |writer| async move {
            let outcome = run(&*docker, &plan(), &writer).await;
            let (status, event) = terminal_event(&outcome);
            writer.finish(status, &event);
        })
        .expect("start");
    let mut sub = job.subscribe(0).expect("subscribe");
    // Wait until the push is streaming (the Preparing line arrived).
    while let Some(ev) = sub.next().await {
        if ev.json.contains("Preparing") {
            break;
        }
    }
    assert!(job.cancel());
    let end = job.wait().await;
    let end: Value = serde_json::from_str(&end.json).expect("json");
    assert_eq!(
        end,
        json!({"status": "error", "error": "Push cancelled by request"})
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the Docker request was cancelled"
    );
    assert_eq!(job.status(), JobStatus::Error);
}

#[tokio::test]
async fn prepare_checks_the_image_and_finds_its_tag() {
    let fake = Fake::new(vec![]);
    assert_eq!(
        prepare(&fake, "sha256:abc", None).await.ok(),
        Some(Some("rig/busybox:1".into()))
    );
    assert_eq!(
        prepare(&fake, "sha256:abc", Some(" mine:2 ")).await.ok(),
        Some(Some("mine:2".into()))
    );
    assert_eq!(fake.calls()[0].path, "/images/sha256%3Aabc/json");
    let mut fake = Fake::new(vec![]);
    fake.inspect = Ok(response(200, r#"{"Id":"x","RepoTags":["<none>:<none>"]}"#));
    assert_eq!(prepare(&fake, "x", None).await.ok(), Some(None));
    fake.inspect = Ok(response(200, r#"{"Id":"x","RepoTags":null}"#));
    assert_eq!(prepare(&fake, "x", None).await.ok(), Some(None));
    fake.inspect = Ok(response(404, r#"{"message":"No such image: x"}"#));
    assert!(matches!(
        prepare(&fake, "x", None).await,
        Err(PrepareError::ImageNotFound)
    ));
    fake.inspect = Err(EnvError::NotConnected);
    let err = prepare(&fake, "x", None).await.expect_err("offline");
    assert_eq!(err.to_string(), AGENT_NOT_CONNECTED);
    assert!(matches!(
        prepare(&fake, "", None).await,
        Err(PrepareError::InvalidImageId)
    ));
    let long = "a".repeat(600);
    assert!(matches!(
        prepare(&fake, &long, None).await,
        Err(PrepareError::InvalidImageId)
    ));
}

#[test]
fn the_plan_never_shows_its_secret() {
    let p = plan();
    let shown = format!("{p:?}");
    assert!(!shown.contains(&p.registry_auth), "{shown}");
    assert!(shown.contains("<redacted>"));
}
