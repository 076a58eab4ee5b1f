//! Telemetry against the rig's real Docker (events, metrics, capabilities)
//! and against a fake Docker socket for the one fault the real daemon cannot
//! be made to do on cue: closing the event stream after one event.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mooring_agent::telemetry::{
    metrics::docker_disk_path, probe_capabilities, HostSampler, Telemetry, TelemetryOptions,
    TelemetryStatus,
};
use mooring_docker::{version_lt, DockerClient, Endpoint};
use mooring_protocol::{ContainerEvent, Frame, HostMetrics};
use mooring_tests::rig::{rig, Rig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous bound for anything Docker or the loops should do "at once".
const WAIT: Duration = Duration::from_secs(15);

/// Telemetry running in the background; cancelled and joined on `stop`.
struct Running {
    rx: mpsc::Receiver<Frame>,
    status: watch::Receiver<TelemetryStatus>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(docker: DockerClient, options: TelemetryOptions, interval: Duration) -> Self {
        let telemetry = Telemetry::new(options);
        let status = telemetry.status();
        let (tx, rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(telemetry.run(docker, tx, interval, shutdown.clone()));
        Running {
            rx,
            status,
            shutdown,
            task,
        }
    }

    /// Waits (bounded) until the status satisfies `pred`.
    async fn wait_status(&mut self, pred: impl FnMut(&TelemetryStatus) -> bool) -> bool {
        let waited = tokio::time::timeout(WAIT, self.status.wait_for(pred)).await;
        matches!(waited, Ok(Ok(_)))
    }

    async fn connected(&mut self) {
        let up = self.wait_status(|s| s.events_connected).await;
        assert!(up, "event stream did not open: {:?}", *self.status.borrow());
    }

    /// The next container event for `container_name` (others are skipped).
    async fn event_for(&mut self, container_name: &str) -> ContainerEvent {
        loop {
            let frame = tokio::time::timeout(WAIT, self.rx.recv()).await;
            match frame {
                Ok(Some(Frame::ContainerEvent(e))) if e.event.container_name == container_name => {
                    return e.event
                }
                Ok(Some(_)) => continue,
                Ok(None) => panic!("telemetry closed its channel"),
                Err(_) => panic!("no event for {container_name} within {WAIT:?}"),
            }
        }
    }

    async fn metrics(&mut self) -> HostMetrics {
        loop {
            match tokio::time::timeout(WAIT, self.rx.recv()).await {
                Ok(Some(Frame::Metrics(m))) => {
                    assert!(m.timestamp > 1_600_000_000, "timestamp {}", m.timestamp);
                    return m.metrics;
                }
                Ok(Some(_)) => continue,
                Ok(None) => panic!("telemetry closed its channel"),
                Err(_) => panic!("no metrics frame within {WAIT:?}"),
            }
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let joined = tokio::time::timeout(WAIT, self.task).await;
        assert!(
            matches!(joined, Ok(Ok(()))),
            "telemetry did not stop on shutdown"
        );
    }
}

/// A container removed (forcibly) when dropped.
struct Container<'a> {
    rig: &'a Rig,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.rig.docker(&["rm", "-f", &self.name]);
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn rig_docker(rig: &Rig) -> DockerClient {
    DockerClient::new(Endpoint::Unix(rig.docker_sock.clone()))
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
fn assert_rfc3339_nanos(ts: &str) {
    let b = ts.as_bytes();
    let shape_ok = b.len() == 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[29] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 29].contains(&i) || c.is_ascii_digit());
    assert!(shape_ok, "not RFC 3339 with nanoseconds in UTC: {ts:?}");
    let year: u32 = ts[..4].parse().unwrap_or(0);
    assert!(year >= 2024, "implausible year in {ts:?}");
}

#[tokio::test]
async fn container_start_and_die_arrive_as_events_on_the_negotiated_api() {
    let Some(rig) = rig() else { return };
    let docker = rig_docker(&rig);
    let mut run = Running::start(
        docker.clone(),
        TelemetryOptions::default(),
        Duration::from_secs(3600),
    );
    run.connected().await;

    // The loop asked for the daemon's own version: on this 20.10 daemon a
    // hard-coded /v1.43 (the reference agent's) is refused outright.
    let api = docker.api_version().expect("version negotiated");
    if version_lt(&api, "1.43") {
        let (code, _) = rig
            .docker_api_get("/v1.43/events?since=0&until=1")
            .expect("docker socket answers");
        assert_eq!(code, 400, "daemon at API {api} should refuse /v1.43");
    }

    let name = unique("mt-ev");
    let container = Container {
        rig: &rig,
        name: name.clone(),
    };
    let id = rig
        .docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            &rig.image,
            "sleep",
            "30",
        ])
        .expect("docker run");
    let mut actions = Vec::new();
    let start = loop {
        let e = run.event_for(&name).await;
        actions.push(e.action.clone());
        if e.action == "start" {
            break e;
        }
    };
    assert_eq!(actions, ["create", "start"], "create then start");
    assert_eq!(start.container_id, id);
    assert_eq!(start.image, rig.image);
    assert_eq!(start.actor_attributes.get("name"), Some(&name));
    assert_rfc3339_nanos(&start.timestamp);

    rig.docker_ok(&["stop", "-t", "1", &name])
        .expect("docker stop");
    let die = loop {
        let e = run.event_for(&name).await;
        if e.action == "die" {
            break e;
        }
        assert!(
            ["kill", "stop"].contains(&e.action.as_str()),
            "unexpected {:?} before die",
            e.action
        );
    };
    assert_eq!(die.container_id, id);
    assert_eq!(die.image, rig.image);
    assert!(die.actor_attributes.contains_key("exitCode"), "{die:?}");
    assert_rfc3339_nanos(&die.timestamp);
    assert!(die.timestamp >= start.timestamp, "die before start?");

    // On the wire it is a Hawser container_event.
    let wire = Frame::ContainerEvent(mooring_protocol::ContainerEventFrame { event: die }).encode();
    assert!(wire.contains(r#""type":"container_event""#), "{wire}");
    assert!(wire.contains(&format!(r#""containerId":"{id}""#)), "{wire}");

    drop(container);
    run.stop().await;
}

#[tokio::test]
async fn metrics_frames_describe_the_host_and_dockers_disk() {
    let Some(rig) = rig() else { return };
    let docker = rig_docker(&rig);

    // The disk measured is Docker's data root, visible from this process.
    let root = rig
        .docker_ok(&["info", "--format", "{{.DockerRootDir}}"])
        .expect("docker info");
    let path = docker_disk_path(&docker).await.expect("GET /info works");
    assert_eq!(path, PathBuf::from(&root));

    let mut run = Running::start(
        docker,
        TelemetryOptions::default(),
        Duration::from_millis(200),
    );
    for _ in 0..2 {
        let m = run.metrics().await;
        assert!(m.cpu_cores >= 1, "{m:?}");
        assert!((0.0..=100.0).contains(&m.cpu_usage), "{m:?}");
        assert!(m.memory_total > m.memory_used && m.memory_used > 0, "{m:?}");
        assert_eq!(m.memory_used + m.memory_free, m.memory_total, "{m:?}");
        assert!(m.disk_total > 0 && m.disk_used <= m.disk_total, "{m:?}");
        assert!(m.disk_free <= m.disk_total, "{m:?}");
        assert!(m.uptime > 0, "{m:?}");
    }
    assert!(run.status.borrow().metrics_sent >= 2);
    run.stop().await;
}

#[tokio::test]
async fn capabilities_are_offered_only_when_they_work() {
    // Without Docker: metrics only.
    let gone = DockerClient::new(Endpoint::Unix("/nonexistent/mooring/docker.sock".into()));
    assert_eq!(probe_capabilities(&gone).await, ["metrics"]);
    // Without /proc: no metrics.
    let no_proc = Telemetry::new(TelemetryOptions {
        proc_root: "/nonexistent-proc".into(),
        ..Default::default()
    });
    assert!(no_proc.probe_capabilities(&gone).await.is_empty());
    assert!(HostSampler::new("/nonexistent-proc").is_err());

    let Some(rig) = rig() else { return };
    assert_eq!(
        probe_capabilities(&rig_docker(&rig)).await,
        ["metrics", "events"]
    );
}

#[tokio::test]
async fn docker_down_is_retried_with_backoff_and_shutdown_still_stops() {
    let gone = DockerClient::new(Endpoint::Unix("/nonexistent/mooring/docker.sock".into()));
    let options = TelemetryOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(80),
        ..Default::default()
    };
    let mut run = Running::start(gone, options, Duration::from_secs(3600));
    let retried = run.wait_status(|s| s.events_reconnects >= 3).await;
    assert!(retried, "no retries: {:?}", *run.status.borrow());
    let err = run
        .status
        .borrow()
        .events_last_error
        .clone()
        .unwrap_or_default();
    assert!(err.contains("/nonexistent/mooring/docker.sock"), "{err}");
    run.stop().await;
}

/// A fake Docker: `/_ping` answers API 1.41; the n-th `/events` request gets
/// the n-th script entry, then the connection closes, except after the last
/// entry, which stays open. Records every request path.
struct FakeDocker {
    path: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FakeDocker {
    fn start(script: Vec<Vec<String>>) -> Self {
        let path = std::env::temp_dir().join(format!("{}.sock", unique("mt-fd")));
        let listener = UnixListener::bind(&path).expect("bind fake docker socket");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            let mut streams = 0usize;
            let mut held = Vec::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                let Some(path) = read_request_path(&mut conn).await else {
                    continue;
                };
                seen.lock().unwrap().push(path.clone());
                if path.ends_with("/_ping") {
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                        .await;
                } else if path.contains("/events?") {
                    let lines = script.get(streams).cloned().unwrap_or_default();
                    streams += 1;
                    let mut body = String::from(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
                    );
                    for line in lines {
                        body.push_str(&line);
                        body.push('\n');
                    }
                    let _ = conn.write_all(body.as_bytes()).await;
                    if streams >= script.len() {
                        held.push(conn); // the last stream stays open
                    }
                } else {
                    let _ = conn
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                }
            }
        });
        FakeDocker {
            path,
            requests,
            task,
        }
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one request head (bounded) and returns the request path.
async fn read_request_path(conn: &mut UnixStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace().nth(1).map(str::to_owned)
}

fn fake_event(action: &str, time_nano: i64) -> String {
    format!(
        r#"{{"status":"{action}","id":"c0ffee","from":"app:1","Type":"container","Action":"{action}","Actor":{{"ID":"c0ffee","Attributes":{{"image":"app:1","name":"web"}}}},"scope":"local","time":{},"timeNano":{time_nano}}}"#,
        time_nano / 1_000_000_000
    )
}

#[tokio::test]
async fn event_stream_reconnects_and_resumes_without_loss_or_repeats() {
    // Event times just after "now", so they are newer than the stream's
    // open time and become the resume point.
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
        + 60_000_000_123;
    let first = fake_event("start", base);
    let second = fake_event("die", base + 1_000);
    // Stream 1: one event, then Docker closes. Stream 2: Docker replays the
    // first (since= is inclusive), then the new one.
    let fake = FakeDocker::start(vec![vec![first.clone()], vec![first, second]]);
    let docker = DockerClient::new(Endpoint::Unix(fake.path.clone()));
    let mut run = Running::start(
        docker,
        TelemetryOptions::default(),
        Duration::from_secs(3600),
    );

    let a = run.event_for("web").await;
    assert_eq!(
        (a.action.as_str(), a.container_id.as_str()),
        ("start", "c0ffee")
    );
    let b = run.event_for("web").await;
    assert_eq!(b.action, "die", "the replayed start must not come again");
    assert!(run.status.borrow().events_reconnects >= 1);

    let requests = fake.requests.lock().unwrap().clone();
    let events: Vec<&String> = requests.iter().filter(|p| p.contains("/events?")).collect();
    assert_eq!(events.len(), 2, "{requests:?}");
    assert!(
        events
            .iter()
            .all(|p| p.starts_with("/v1.41/events?filters=")),
        "{requests:?}"
    );
    let since = format!("since={}.{:09}", base / 1_000_000_000, base % 1_000_000_000);
    assert!(!events[0].contains("since="), "{requests:?}");
    assert!(
        events[1].ends_with(&since),
        "resume point missing: {requests:?}"
    );
    run.stop().await;
}
