//! `GET /api/jobs/{id}` over a real socket, read with the hub's own client.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::api::read_routes;
use super::*;
use crate::client::sse::{SseEvent, SseParser};
use crate::client::{follow_job, HubClient, StreamedEvent};

struct Server {
    client: HubClient,
    jobs: Jobs,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve() -> Server {
    let jobs = Jobs::new(JobLimits::default(), CancellationToken::new());
    let app = read_routes::<Jobs>().with_state(jobs.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let done = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { done.cancelled().await })
            .await;
    });
    let client = HubClient::new(&format!("http://{addr}"), None).expect("client");
    Server { client, jobs, stop }
}

/// A job that emits each event sent on the returned channel; `None` data
/// ends it with `complete`.
fn stepped_job(jobs: &Jobs) -> (Arc<Job>, mpsc::Sender<Option<Value>>) {
    let (tx, mut rx) = mpsc::channel::<Option<Value>>(16);
    let job = jobs
        .start("push", JobMeta::default(), |w| async move {
            while let Some(Some(ev)) = rx.recv().await {
                w.emit(&ev);
            }
            w.finish(
                JobStatus::Done,
                &json!({"status": "complete", "message": "done"}),
            );
        })
        .expect("start");
    (job, tx)
}

async fn wait_for_id(job: &Arc<Job>, id: u64) {
    let mut sub = job.subscribe(id.saturating_sub(1)).expect("sub");
    sub.next().await;
}

/// Reads raw SSE events until `n` `data` events arrived, then drops the
/// connection.
async fn read_n(client: &HubClient, job: &Job, n: usize) -> Vec<SseEvent> {
    let path = format!("/api/jobs/{}", job.id());
    let mut resp = client
        .send(Method::GET, &path, &[("accept", "text/event-stream")], None)
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let mut parser = SseParser::new(1 << 20);
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = resp.chunk().await.expect("chunk").expect("stream open");
        parser.feed(&chunk, &mut out).expect("parse");
    }
    out.truncate(n);
    out
}

#[tokio::test]
async fn sse_replays_then_follows_and_a_reconnect_resumes_exactly() {
    let server = serve().await;
    let (job, tx) = stepped_job(&server.jobs);
    for n in 0..3 {
        tx.send(Some(
            json!({"id": "l1", "status": "Pushing", "progressDetail": {"current": n}}),
        ))
        .await
        .expect("send");
    }
    wait_for_id(&job, 3).await;

    // Reader 1: everything, start to end.
    let client = server.client.clone();
    let job_id = job.id().to_string();
    let full = tokio::spawn(async move {
        let mut seen = Vec::new();
        let end = follow_job(&client, &job_id, None, 0, |e: &StreamedEvent| {
            seen.push(e.clone())
        })
        .await
        .expect("follow");
        (seen, end)
    });

    // Reader 2: two events, hang up, more happens, resume after id 2.
    let first = read_n(&server.client, &job, 2).await;
    assert_eq!(first[0].event, "data");
    assert_eq!(first[0].id.as_deref(), Some("1"));
    assert_eq!(
        serde_json::from_str::<Value>(&first[1].data).expect("json"),
        json!({"data": {"id": "l1", "status": "Pushing", "progressDetail": {"current": 1}}})
    );
    tx.send(Some(
        json!({"id": "l1", "status": "Pushed", "progressDetail": {}}),
    ))
    .await
    .expect("send");
    tx.send(None).await.expect("end");
    let mut resumed = Vec::new();
    let end = follow_job(&server.client, &job.id().to_string(), Some(2), 0, |e| {
        resumed.push(e.clone())
    })
    .await
    .expect("resume");
    assert_eq!(end.result, json!({"status": "complete", "message": "done"}));

    let (all, full_end) = full.await.expect("reader");
    assert_eq!(full_end.result, end.result);
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        resumed,
        all[2..].to_vec(),
        "resume after 2 = the rest, no gap, no repeat"
    );

    // After the end: 204 for a caught-up client, the replay for a new one.
    let path = format!("/api/jobs/{}", job.id());
    let resp = server
        .client
        .send(
            Method::GET,
            &path,
            &[("accept", "text/event-stream"), ("last-event-id", "5")],
            None,
        )
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let mut again = Vec::new();
    follow_job(&server.client, &job.id().to_string(), None, 0, |e| {
        again.push(e.clone())
    })
    .await
    .expect("replay");
    assert_eq!(again, all);
}

#[tokio::test]
async fn json_answer_and_errors() {
    let server = serve().await;
    let (job, tx) = stepped_job(&server.jobs);
    tx.send(Some(json!({"status": "tagging"})))
        .await
        .expect("send");
    wait_for_id(&job, 1).await;
    let path = format!("/api/jobs/{}", job.id());
    let (status, body) = server
        .client
        .json(Method::GET, &path, None)
        .await
        .expect("get");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": job.id().to_string(), "kind": "push", "status": "running",
               "lines": [{"status": "tagging"}], "result": null, "droppedLines": 0})
    );
    tx.send(None).await.expect("end");
    job.wait().await;
    let (_, body) = server
        .client
        .json(Method::GET, &path, None)
        .await
        .expect("get");
    assert_eq!(body["status"], "done");
    assert_eq!(
        body["result"],
        json!({"status": "complete", "message": "done"})
    );
    assert_eq!(body["lines"].as_array().map(Vec::len), Some(2));

    for bad in [
        "/api/jobs/nope",
        "/api/jobs/6f1c2b7e-0000-4000-8000-000000000000",
    ] {
        let (status, body) = server
            .client
            .json(Method::GET, bad, None)
            .await
            .expect("get");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"error": "Job not found"}));
    }
    let resp = server
        .client
        .send(
            Method::GET,
            &path,
            &[("accept", "text/event-stream"), ("last-event-id", "x")],
            None,
        )
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_client_going_away_does_not_stop_the_job() {
    let server = serve().await;
    let (job, tx) = stepped_job(&server.jobs);
    tx.send(Some(json!({"status": "pushing"})))
        .await
        .expect("send");
    let got = read_n(&server.client, &job, 1).await;
    assert_eq!(got.len(), 1);
    // The connection is gone; the job goes on and ends normally.
    tx.send(Some(json!({"status": "still here"})))
        .await
        .expect("send");
    tx.send(None).await.expect("end");
    let end = job.wait().await;
    assert_eq!(job.status(), JobStatus::Done);
    assert_eq!(end.id, 3);
}
