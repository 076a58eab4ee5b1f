//! Tests of the registry, subscriptions and retention (time is paused).

use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::*;

fn small(max_jobs: usize) -> JobLimits {
    JobLimits {
        max_jobs,
        ..JobLimits::default()
    }
}

/// Starts a job whose work emits `n` events, then waits for `go` and ends.
fn gated_job(jobs: &Jobs, n: u64) -> (std::sync::Arc<Job>, oneshot::Sender<bool>) {
    let (go, wait) = oneshot::channel::<bool>();
    let job = jobs
        .start("test", JobMeta::default(), move |w| async move {
            for i in 0..n {
                w.emit(&json!({"n": i}));
            }
            let ok = wait.await.unwrap_or(false);
            let status = if ok {
                JobStatus::Done
            } else {
                JobStatus::Error
            };
            w.finish(
                status,
                &json!({"status": if ok { "complete" } else { "error" }}),
            );
        })
        .expect("job starts");
    (job, go)
}

async fn collect(mut sub: Subscription) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while let Some(ev) = sub.next().await {
        out.push((ev.id, ev.json.to_string()));
    }
    out
}

#[tokio::test]
async fn replay_then_live_then_end() {
    let jobs = Jobs::new(JobLimits::default(), CancellationToken::new());
    let (job, go) = gated_job(&jobs, 3);
    let early = job.subscribe(0).expect("subscribe");
    let reader = tokio::spawn(collect(early));
    // A second reader that arrives later and resumes after event 2.
    while job.last_event_id() < 3 {
        tokio::task::yield_now().await;
    }
    let late = job.subscribe(2).expect("subscribe");
    let late_reader = tokio::spawn(collect(late));
    go.send(true).ok();
    let all = reader.await.expect("reader");
    let tail = late_reader.await.expect("reader");
    let ids: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert_eq!(all[3].1, r#"{"status":"complete"}"#);
    assert_eq!(tail, all[2..].to_vec());
    assert_eq!(job.status(), JobStatus::Done);
    assert_eq!(job.wait().await.id, 4);
    // A reader arriving after the end gets the replay and stops.
    assert_eq!(collect(job.subscribe(0).expect("sub")).await, all);
    assert!(collect(job.subscribe(4).expect("sub")).await.is_empty());
}

#[tokio::test]
async fn a_dropped_writer_ends_the_job_in_error() {
    let jobs = Jobs::new(JobLimits::default(), CancellationToken::new());
    let job = jobs
        .start("test", JobMeta::default(), |w| async move {
            w.emit(&json!({"status": "working"}));
            drop(w);
        })
        .expect("start");
    let end = job.wait().await;
    assert!(end.terminal);
    assert!(end.json.contains("stopped unexpectedly"), "{}", end.json);
    assert_eq!(job.status(), JobStatus::Error);
}

#[tokio::test]
async fn finish_is_once_and_later_events_are_ignored() {
    let jobs = Jobs::new(JobLimits::default(), CancellationToken::new());
    let job = jobs
        .start("test", JobMeta::default(), |w| async move {
            w.finish(JobStatus::Done, &json!({"status": "complete"}));
            w.emit(&json!({"status": "late"}));
            w.finish(JobStatus::Error, &json!({"status": "error"}));
        })
        .expect("start");
    job.wait().await;
    jobs.shutdown().await;
    let snap = job.snapshot();
    assert_eq!(snap.status, JobStatus::Done);
    assert_eq!(snap.lines.len(), 1);
    assert_eq!(snap.result.map(|r| r.id), Some(1));
}

#[tokio::test]
async fn cancel_reaches_the_work_and_says_why() {
    let jobs = Jobs::new(JobLimits::default(), CancellationToken::new());
    let job = jobs
        .start("test", JobMeta::default(), |w| async move {
            w.cancelled().await;
            let reason = w.cancel_reason();
            w.finish(
                JobStatus::Error,
                &json!({"status": "error", "error": reason}),
            );
        })
        .expect("start");
    assert!(job.cancel());
    let end = job.wait().await;
    assert!(end.json.contains("cancelled by request"), "{}", end.json);
    assert!(!job.cancel(), "an ended job cannot be cancelled");
}

#[tokio::test]
async fn shutdown_cancels_running_jobs_and_refuses_new_ones() {
    let root = CancellationToken::new();
    let jobs = Jobs::new(JobLimits::default(), root.clone());
    let job = jobs
        .start("test", JobMeta::default(), |w| async move {
            w.cancelled().await;
            let reason = w.cancel_reason();
            w.finish(JobStatus::Error, &json!({"error": reason}));
        })
        .expect("start");
    jobs.spawn_sweeper();
    jobs.shutdown().await;
    assert!(job.wait().await.json.contains("shutting down"));
    let refused = jobs.start("test", JobMeta::default(), |_w| async {});
    assert_eq!(refused.err(), Some(JobsError::ShuttingDown));
}

#[tokio::test]
async fn full_registry_evicts_the_oldest_ended_job_or_refuses() {
    let jobs = Jobs::new(small(2), CancellationToken::new());
    let (a, go_a) = gated_job(&jobs, 0);
    let (b, go_b) = gated_job(&jobs, 0);
    let refused = jobs.start("test", JobMeta::default(), |_w| async {});
    assert_eq!(refused.err(), Some(JobsError::Full { limit: 2 }));
    go_b.send(true).ok();
    b.wait().await;
    let (c, _go_c) = gated_job(&jobs, 0);
    assert!(jobs.get(b.id()).is_none(), "the ended job made room");
    assert!(jobs.get(a.id()).is_some());
    assert!(jobs.get(c.id()).is_some());
    go_a.send(true).ok();
    a.wait().await;
}

#[tokio::test(start_paused = true)]
async fn ended_jobs_are_kept_for_the_retention_then_swept() {
    let limits = JobLimits {
        retention: Duration::from_secs(600),
        sweep_interval: Duration::from_secs(30),
        ..JobLimits::default()
    };
    let jobs = Jobs::new(limits, CancellationToken::new());
    jobs.spawn_sweeper();
    let (job, go) = gated_job(&jobs, 1);
    go.send(true).ok();
    job.wait().await;
    tokio::time::sleep(Duration::from_secs(590)).await;
    assert!(jobs.get(job.id()).is_some(), "kept within retention");
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(jobs.len(), 0, "the sweeper forgot it");
    assert!(jobs.get(job.id()).is_none());
    jobs.shutdown().await;
}

#[tokio::test]
async fn subscribers_per_job_are_bounded() {
    let limits = JobLimits {
        max_subscribers: 2,
        ..JobLimits::default()
    };
    let jobs = Jobs::new(limits, CancellationToken::new());
    let (job, go) = gated_job(&jobs, 0);
    let s1 = job.subscribe(0).expect("first");
    let _s2 = job.subscribe(0).expect("second");
    assert_eq!(
        job.subscribe(0).err(),
        Some(JobsError::TooManySubscribers { limit: 2 })
    );
    drop(s1);
    assert!(job.subscribe(0).is_ok(), "a slot freed by a dropped reader");
    go.send(true).ok();
}

#[tokio::test]
async fn a_slow_reader_misses_nothing_but_coalesced_ticks() {
    let limits = JobLimits {
        max_lines: 50,
        ..JobLimits::default()
    };
    let jobs = Jobs::new(limits, CancellationToken::new());
    let job = jobs
        .start("test", JobMeta::default(), |w| async move {
            w.emit(&json!({"status": "pushing"}));
            for i in 0..5_000u64 {
                w.emit(&json!({"id": "l1", "progressDetail": {"current": i}}));
            }
            w.emit(&json!({"id": "l1", "status": "Pushed", "progressDetail": {}}));
            w.finish(JobStatus::Done, &json!({"status": "complete"}));
        })
        .expect("start");
    job.wait().await;
    let seen = collect(job.subscribe(0).expect("sub")).await;
    assert_eq!(
        seen.first().map(|e| e.1.as_str()),
        Some(r#"{"status":"pushing"}"#)
    );
    assert!(seen.iter().any(|e| e.1.contains("Pushed")));
    assert_eq!(
        seen.last().map(|e| e.1.as_str()),
        Some(r#"{"status":"complete"}"#)
    );
    assert!(seen.len() <= 50);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(job.snapshot().dropped > 0);
}
