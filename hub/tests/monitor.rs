//! Connectivity monitoring (issue #5): status model, metrics history, live
//! events over SSE, Prometheus metrics, dashboard login and assets — over
//! real sockets, with the protocol-speaking test agent.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use common::{agent_id, AgentOptions, TestAgent, TestHub};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mooring_protocol::{ContainerEvent, ContainerEventFrame, Frame, HostMetrics, MetricsFrame};
use serde_json::{json, Value};

/* ------------------------------------------------------------ HTTP helpers */

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn http(
    hub: &TestHub,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", hub.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(b.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = client()
        .request(req.body(body).expect("request"))
        .await
        .expect("hub answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/* ------------------------------------------------------------- SSE client */

#[derive(Debug, Clone)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

struct Sse {
    body: hyper::body::Incoming,
    buf: String,
}

impl Sse {
    async fn open(hub: &TestHub, headers: &[(&str, &str)]) -> Sse {
        let mut req = http::Request::builder()
            .uri(format!("http://{}/api/events", hub.addr))
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = client()
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("events answer");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Sse {
            body: resp.into_body(),
            buf: String::new(),
        }
    }

    /// Next event with data (comments and keep-alives skipped).
    async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data:") {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        has_data = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_owned();
                    }
                }
                if has_data {
                    return Some(ev);
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??;
            if let Ok(data) = frame.ok()?.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// Waits for an event of `kind`, skipping others.
    async fn wait_kind(&mut self, kind: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("no {kind} event within {within:?}"));
            let v = ev.json();
            if v["kind"] == kind {
                assert_eq!(ev.id.as_deref(), Some(v["seq"].to_string().as_str()));
                return v;
            }
        }
    }
}

/* -------------------------------------------------------- protocol frames */

fn metrics_frame(ts: i64, cpu: f64) -> String {
    Frame::Metrics(MetricsFrame {
        timestamp: ts,
        metrics: HostMetrics {
            cpu_usage: cpu,
            cpu_cores: 2,
            memory_total: 8 << 30,
            memory_used: 3 << 30,
            memory_free: 5 << 30,
            disk_total: 100 << 30,
            disk_used: 40 << 30,
            disk_free: 60 << 30,
            network_rx_bytes: 1000,
            network_tx_bytes: 2000,
            uptime: 3600,
        },
    })
    .encode()
}

fn container_frame(action: &str) -> String {
    Frame::ContainerEvent(ContainerEventFrame {
        event: ContainerEvent {
            container_id: "c0ffee".repeat(10),
            container_name: "web".into(),
            image: "rig/busybox:1".into(),
            action: action.into(),
            actor_attributes: [("name".to_owned(), "web".to_owned())].into(),
            timestamp: "2025-01-31T12:00:00.123456789Z".into(),
        },
    })
    .encode()
}

fn now() -> i64 {
    mooring_hub::store::now_secs()
}

async fn online_agent(hub: &TestHub, name: &str) -> (i64, TestAgent, String) {
    let env = hub.create_edge_env(name).await;
    let (_, token) = hub.create_token(env, None).await;
    let id = agent_id();
    let agent = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&id))
        .await
        .expect("accepted");
    hub.wait_status(env, "online", Duration::from_secs(5)).await;
    (env, agent, id)
}

async fn key_with(hub: &TestHub, perms: &[&str], envs: Option<Vec<i64>>) -> (i64, String) {
    let (status, k) = hub
        .admin(
            Method::POST,
            "/api/apikeys",
            Some(json!({"name": "k", "permissions": perms, "environments": envs})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{k}");
    (
        k["id"].as_i64().unwrap(),
        k["key"].as_str().unwrap().to_owned(),
    )
}

/// Polls `f` until it returns Some, at most `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/* ------------------------------------------------------------------ tests */

#[tokio::test]
async fn metrics_frames_fill_the_history_and_last_metrics() {
    let hub = TestHub::start().await;
    let (env, agent, _) = online_agent(&hub, "nas").await;
    let t0 = now() - 60;
    for (i, cpu) in [12.5, 50.0, 7.25].iter().enumerate() {
        agent
            .send_text(&metrics_frame(t0 + 30 * i as i64, *cpu))
            .await;
    }
    let path = format!("/api/environments/{env}/metrics");
    let samples = eventually(Duration::from_secs(5), "3 samples", || async {
        let (status, body) = hub.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let s = body["samples"].as_array().cloned().unwrap_or_default();
        (s.len() == 3).then_some(s)
    })
    .await;
    let ts: Vec<i64> = samples
        .iter()
        .map(|s| s["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(ts, vec![t0, t0 + 30, t0 + 60], "oldest first, agent clock");
    assert_eq!(samples[0]["cpuUsage"], 12.5);
    for field in [
        "cpuCores",
        "memoryTotal",
        "memoryUsed",
        "memoryFree",
        "diskTotal",
        "diskUsed",
        "diskFree",
        "networkRxBytes",
        "networkTxBytes",
        "uptime",
    ] {
        assert!(samples[2][field].is_u64(), "{field} in {}", samples[2]);
    }
    let shown = hub.env_json(env).await;
    assert_eq!(shown["lastMetrics"], samples[2]);
    assert_eq!(shown["disconnectCount"], 0);
    assert!(shown["disconnectReason"].is_null());
    assert!(shown["connectedAt"].as_str().unwrap().ends_with('Z'));
    // The hub pings every second: a round trip gets measured.
    let rtt = eventually(Duration::from_secs(5), "rttMs", || async {
        hub.env_json(env).await["rttMs"].as_f64()
    })
    .await;
    assert!((0.0..5000.0).contains(&rtt), "{rtt}");

    // Scope: a key for another environment cannot read this history.
    let other = hub.create_edge_env("other").await;
    let (_, key) = key_with(&hub, &["environments:read"], Some(vec![other])).await;
    let (status, _) = hub.api(Method::GET, &path, Some(&key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub
        .admin(Method::GET, "/api/environments/9999/metrics", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

#[tokio::test]
async fn events_stream_connects_container_events_and_a_killed_agent() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("edge").await;
    let (_, token) = hub.create_token(env, None).await;
    let auth = bearer(&hub.admin_key);
    let mut sse = Sse::open(&hub, &[("authorization", &auth)]).await;

    let id = agent_id();
    let agent = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&id))
        .await
        .unwrap();
    let connected = sse
        .wait_kind("agent.connected", Duration::from_secs(5))
        .await;
    assert_eq!(connected["envId"], env);
    assert_eq!(connected["detail"]["agentId"], id.as_str());
    assert_eq!(connected["detail"]["agentName"], format!("agent-{id}"));
    assert_eq!(connected["detail"]["version"], "test-0.1");
    assert_eq!(connected["detail"]["hostname"], format!("host-{id}"));
    assert!(connected["time"].as_str().unwrap().ends_with('Z'));

    agent.send_text(&container_frame("start")).await;
    let c = sse.wait_kind("container", Duration::from_secs(5)).await;
    assert_eq!(c["envId"], env);
    assert_eq!(c["detail"]["action"], "start");
    assert_eq!(c["detail"]["containerName"], "web");
    assert_eq!(c["detail"]["image"], "rig/busybox:1");
    assert_eq!(c["detail"]["actorAttributes"]["name"], "web");
    assert_eq!(c["detail"]["timestamp"], "2025-01-31T12:00:00.123456789Z");
    assert!(c["seq"].as_u64().unwrap() > connected["seq"].as_u64().unwrap());

    // Metrics are broadcast too.
    agent.send_text(&metrics_frame(now(), 33.0)).await;
    let m = sse.wait_kind("metrics", Duration::from_secs(5)).await;
    assert_eq!(m["detail"]["cpuUsage"], 33.0);

    // Killed: TCP dropped without a close frame.
    let started = tokio::time::Instant::now();
    agent.kill();
    let gone = sse
        .wait_kind("agent.disconnected", Duration::from_secs(10))
        .await;
    assert_eq!(gone["detail"]["reason"], "closed");
    assert_eq!(gone["detail"]["agentId"], id.as_str());
    let shown = hub
        .wait_status(env, "offline", Duration::from_secs(5))
        .await;
    assert!(
        started.elapsed() < hub.state.settings.silence_timeout + Duration::from_secs(5),
        "a dropped TCP connection is noticed at once, not after the silence timeout"
    );
    assert_eq!(shown["disconnectReason"], "closed");
    assert_eq!(shown["disconnectCount"], 1);
    assert!(shown["lastSeen"].as_str().is_some());
    assert_eq!(shown["lastMetrics"]["cpuUsage"], 33.0);

    // The JSON list has the same events (no metrics), oldest first.
    let (status, list) = hub.admin(Method::GET, "/api/events?since=0", None).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["envId"] == env)
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["agent.connected", "container", "agent.disconnected"]
    );
    let since = connected["seq"].as_u64().unwrap();
    let (_, later) = hub
        .admin(Method::GET, &format!("/api/events?since={since}"), None)
        .await;
    assert_eq!(later["events"][0]["kind"], "container");
    let (status, _) = hub.admin(Method::GET, "/api/events?since=soon", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A reconnecting EventSource resumes after its Last-Event-ID.
    let mut resumed = Sse::open(
        &hub,
        &[
            ("authorization", &auth),
            ("last-event-id", &since.to_string()),
        ],
    )
    .await;
    let first = resumed.next(Duration::from_secs(5)).await.unwrap().json();
    assert_eq!(first["kind"], "container");
    let second = resumed.next(Duration::from_secs(5)).await.unwrap().json();
    assert_eq!(second["kind"], "agent.disconnected");
    hub.stop().await;
}

#[tokio::test]
async fn a_half_open_agent_goes_offline_with_reason_timeout() {
    let hub = TestHub::start().await;
    let (env, agent, _) = online_agent(&hub, "halfopen").await;
    let auth = bearer(&hub.admin_key);
    let mut sse = Sse::open(&hub, &[("authorization", &auth)]).await;
    agent.go_silent();
    let silence = hub.state.settings.silence_timeout;
    let gone = sse
        .wait_kind("agent.disconnected", silence + Duration::from_secs(10))
        .await;
    assert_eq!(gone["envId"], env);
    assert_eq!(gone["detail"]["reason"], "timeout");
    let shown = hub.env_json(env).await;
    assert_eq!(shown["status"], "offline");
    assert_eq!(shown["disconnectReason"], "timeout");
    assert_eq!(shown["disconnectCount"], 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_refused_second_agent_is_a_conflict_event_and_status() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("shared").await;
    let (_, token) = hub.create_token(env, None).await;
    let auth = bearer(&hub.admin_key);
    let mut sse = Sse::open(&hub, &[("authorization", &auth)]).await;
    let live_id = agent_id();
    let _live = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&live_id))
        .await
        .unwrap();
    let other = agent_id();
    assert!(
        TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&other))
            .await
            .is_err(),
        "a second agent is refused"
    );
    let c = sse
        .wait_kind("agent.conflict", Duration::from_secs(5))
        .await;
    assert_eq!(c["detail"]["agentId"], other.as_str());
    assert_eq!(c["detail"]["liveAgentId"], live_id.as_str());
    assert_eq!(c["detail"]["liveAgentName"], format!("agent-{live_id}"));
    let shown = hub.env_json(env).await;
    assert_eq!(shown["status"], "conflict");
    assert_eq!(shown["conflict"]["agentId"], other.as_str());
    assert!(shown["conflict"]["at"].as_str().is_some());
    hub.stop().await;
}

#[tokio::test]
async fn events_are_filtered_by_the_keys_environments() {
    let hub = TestHub::start().await;
    let (seen_env, seen_agent, _) = online_agent(&hub, "mine").await;
    let (hidden_env, hidden_agent, _) = online_agent(&hub, "theirs").await;
    let (_, key) = key_with(&hub, &["environments:read"], Some(vec![seen_env])).await;
    let auth = bearer(&key);
    let mut sse = Sse::open(&hub, &[("authorization", &auth)]).await;
    hidden_agent.send_text(&container_frame("die")).await;
    seen_agent.send_text(&container_frame("stop")).await;
    let ev = sse.wait_kind("container", Duration::from_secs(5)).await;
    assert_eq!(
        ev["envId"], seen_env,
        "the other environment's event is not sent"
    );
    assert_eq!(ev["detail"]["action"], "stop");
    let (_, list) = hub
        .api(Method::GET, "/api/events?since=0", Some(&key), None)
        .await;
    assert!(list["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["envId"] == seen_env));
    // No environments:read, no events.
    let (_, nokey) = key_with(&hub, &["images:push"], None).await;
    let (status, _) = hub
        .api(Method::GET, "/api/events", Some(&nokey), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let _ = hidden_env;
    hub.stop().await;
}

#[tokio::test]
async fn status_survives_a_hub_restart() {
    let hub = TestHub::start().await;
    let (env, agent, id) = online_agent(&hub, "persist").await;
    agent.send_text(&metrics_frame(now(), 42.0)).await;
    eventually(Duration::from_secs(5), "lastMetrics", || async {
        hub.env_json(env).await["lastMetrics"]["cpuUsage"]
            .as_f64()
            .filter(|c| *c == 42.0)
    })
    .await;
    agent.kill();
    let before = hub
        .wait_status(env, "offline", Duration::from_secs(5))
        .await;
    assert_eq!(before["disconnectCount"], 1);

    let hub = hub.restart().await;
    let after = hub.env_json(env).await;
    assert_eq!(after["status"], "offline");
    assert_eq!(
        after["lastSeen"].as_str().map(|s| &s[..19]),
        before["lastSeen"].as_str().map(|s| &s[..19]),
        "last-seen kept to the second"
    );
    assert_eq!(after["disconnectReason"], "closed");
    assert_eq!(after["disconnectCount"], 1);
    assert_eq!(after["agent"]["id"], id.as_str());
    assert_eq!(after["lastMetrics"]["cpuUsage"], 42.0);

    // An agent live while the hub stops: reason "shutdown", one more.
    let (_, token) = hub.create_token(env, None).await;
    let _again = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&id))
        .await
        .unwrap();
    let online = hub.wait_status(env, "online", Duration::from_secs(5)).await;
    assert!(online["disconnectReason"].is_null());
    let hub = hub.restart().await;
    let after = hub.env_json(env).await;
    assert_eq!(after["status"], "offline");
    assert_eq!(after["disconnectReason"], "shutdown");
    assert_eq!(after["disconnectCount"], 2);
    hub.stop().await;
}

/* ------------------------------------------------------------- Prometheus */

/// Parses the text exposition: every sample line is `name{labels} value`
/// with a declared family; returns samples keyed by `name{labels}`.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut families = Vec::new();
    let mut samples = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    for line in &lines {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "info", "unknown"].contains(&kind),
                "{line}"
            );
            families.push(name.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1]
                .split(',')
                .filter(|p| !p.is_empty())
            {
                let (k, v) = pair.split_once('=').expect("label k=v");
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
        }
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
        };
        assert!(
            families.iter().any(|f| name.starts_with(f.as_str())),
            "{name} has a # TYPE"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(hub: &TestHub, key: &str) -> HashMap<String, f64> {
    let auth = bearer(key);
    let a = http(
        hub,
        Method::GET,
        "/metrics",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a
        .header("content-type")
        .starts_with("application/openmetrics-text"));
    parse_exposition(&a.text())
}

#[tokio::test]
async fn metrics_endpoint_needs_metrics_read_and_parses() {
    let hub = TestHub::start().await;
    let a = http(&hub, Method::GET, "/metrics", &[], None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let (_, weak) = key_with(&hub, &["environments:read"], None).await;
    let auth = bearer(&weak);
    let a = http(
        &hub,
        Method::GET,
        "/metrics",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let (_, reader) = key_with(&hub, &["metrics:read"], None).await;

    let (env, agent, _) = online_agent(&hub, "scraped").await;
    // A failed agent token and a failed API key are counted.
    assert!(TestAgent::connect(
        &hub.ws_url(),
        "not-a-token-at-all-000000",
        AgentOptions::new(&agent_id())
    )
    .await
    .is_err());
    let bad = bearer("mk_not-a-real-key-at-all-000000000000000");
    http(
        &hub,
        Method::GET,
        "/api/environments",
        &[("authorization", &bad)],
        None,
    )
    .await;
    // Handshake frames are not link frames: wait for the first pong.
    let m = eventually(Duration::from_secs(5), "a pong counted", || async {
        let m = scrape(&hub, &reader).await;
        (m["mooring_relay_frames_total{direction=\"agent_to_hub\"}"] >= 1.0).then_some(m)
    })
    .await;
    assert!(
        m["mooring_relay_frames_total{direction=\"hub_to_agent\"}"] >= 2.0,
        "welcome and a ping"
    );
    assert_eq!(m["mooring_agents_connected"], 1.0);
    assert_eq!(m["mooring_agent_connects_total"], 1.0);
    assert!(m["mooring_auth_failures_total{kind=\"agent_token\"}"] >= 1.0);
    assert!(m["mooring_auth_failures_total{kind=\"api_key\"}"] >= 1.0);
    let age_key =
        format!("mooring_agent_last_seen_age_seconds{{env_id=\"{env}\",env=\"scraped\"}}");
    let age = m
        .get(&age_key)
        .copied()
        .unwrap_or_else(|| panic!("{age_key} in {m:?}"));
    assert!((0.0..5.0).contains(&age), "{age}");

    agent.kill();
    hub.wait_status(env, "offline", Duration::from_secs(5))
        .await;
    let m = scrape(&hub, &reader).await;
    assert_eq!(m["mooring_agents_connected"], 0.0);
    assert_eq!(m["mooring_agent_disconnects_total{reason=\"closed\"}"], 1.0);
    hub.stop().await;
}

#[tokio::test]
async fn relay_counters_move_with_real_traffic() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("rig").await;
    let (_, token) = hub.create_token(env, None).await;
    let _agent = TestAgent::connect(
        &hub.ws_url(),
        &token,
        AgentOptions::new(&agent_id()).relaying_to(rig.docker_sock.clone()),
    )
    .await
    .unwrap();
    hub.wait_status(env, "online", Duration::from_secs(5)).await;
    let key = hub.admin_key.clone();
    let before = scrape(&hub, &key).await;
    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let (status, version) = hub
        .admin(
            Method::GET,
            &format!("/api/environments/{env}/docker/version"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{version}");
    let after = scrape(&hub, &key).await;
    for series in [
        "mooring_relay_frames_total{direction=\"hub_to_agent\"}",
        "mooring_relay_frames_total{direction=\"agent_to_hub\"}",
        "mooring_relay_frame_bytes_total{direction=\"agent_to_hub\"}",
        "mooring_relay_requests_total{outcome=\"ok\"}",
        "mooring_relay_request_duration_seconds_count{mode=\"whole\"}",
    ] {
        assert!(
            get(&after, series) > get(&before, series),
            "{series}: {} → {}",
            get(&before, series),
            get(&after, series)
        );
    }
    // The answer alone (Docker's version JSON) is in the bytes relayed.
    let body_len = version.to_string().len() as f64;
    assert!(
        get(
            &after,
            "mooring_relay_frame_bytes_total{direction=\"agent_to_hub\"}"
        ) - get(
            &before,
            "mooring_relay_frame_bytes_total{direction=\"agent_to_hub\"}"
        ) >= body_len * 0.5
    );
    hub.stop().await;
}

#[tokio::test]
async fn metrics_listen_serves_metrics_without_auth() {
    let hub = TestHub::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(mooring_hub::metrics::run_listener(
        listener,
        hub.state.clone(),
        stop.clone(),
    ));
    let get = |path: &'static str| async move {
        let resp = client()
            .request(
                http::Request::get(format!("http://{addr}{path}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&text).into_owned())
    };
    let (status, text) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    parse_exposition(&text);
    let (status, _) = get("/api/environments").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only /metrics there");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("listener stops")
        .unwrap();
    hub.stop().await;
}

/* ---------------------------------------------------- dashboard and login */

fn session_cookie(a: &Answer) -> String {
    let set = a.header("set-cookie");
    let pair = set.split(';').next().unwrap();
    assert!(pair.starts_with("mooring_session="), "{set}");
    pair.to_owned()
}

#[tokio::test]
async fn session_cookie_logs_in_for_the_api_and_the_event_stream() {
    let hub = TestHub::start().await;
    let a = http(
        &hub,
        Method::POST,
        "/api/session",
        &[],
        Some(json!({"key": "mk_wrong-key-000000000000000000000000000"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers.get("set-cookie").is_none());

    let (key_id, key) = key_with(&hub, &["environments:read"], None).await;
    let a = http(
        &hub,
        Method::POST,
        "/api/session",
        &[],
        Some(json!({"key": key})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let set = a.header("set-cookie").to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(
        !set.contains("Max-Age") && !set.contains("Expires"),
        "a browser-session cookie: {set}"
    );
    assert!(!set.contains("Secure"), "plain http: no Secure");
    assert!(!set.contains(&key[3..]), "the key is not in the cookie");
    let cookie = session_cookie(&a);

    let a = http(
        &hub,
        Method::GET,
        "/api/environments",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // The cookie carries the key's permissions, no more.
    let a = http(
        &hub,
        Method::GET,
        "/api/registries",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // EventSource sends only the cookie.
    let mut sse = Sse::open(&hub, &[("cookie", &cookie)]).await;
    let (env, _agent, _) = online_agent(&hub, "viacookie").await;
    let ev = sse
        .wait_kind("agent.connected", Duration::from_secs(5))
        .await;
    assert_eq!(ev["envId"], env);

    // Logout ends the session.
    let a = http(
        &hub,
        Method::DELETE,
        "/api/session",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.header("set-cookie").contains("Max-Age=0"));
    let a = http(
        &hub,
        Method::GET,
        "/api/environments",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Revoking the key ends its sessions.
    let a = http(
        &hub,
        Method::POST,
        "/api/session",
        &[],
        Some(json!({"key": key})),
    )
    .await;
    let cookie = session_cookie(&a);
    let (status, _) = hub
        .admin(Method::DELETE, &format!("/api/apikeys/{key_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let a = http(
        &hub,
        Method::GET,
        "/api/environments",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = http(
        &hub,
        Method::GET,
        "/api/environments",
        &[("cookie", "mooring_session=forged")],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    hub.stop().await;
}

#[tokio::test]
async fn the_dashboard_is_served_with_types_cache_and_csp() {
    let hub = TestHub::start().await;
    for (path, ctype, marker) in [
        ("/", "text/html", "id=\"login-key\""),
        ("/app.js", "text/javascript", "EventSource"),
        ("/app.css", "text/css", "{"),
    ] {
        let a = http(&hub, Method::GET, path, &[], None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(
            a.header("content-type").starts_with(ctype),
            "{path}: {}",
            a.header("content-type")
        );
        assert_eq!(a.header("cache-control"), "no-cache", "{path}");
        assert!(
            a.header("content-security-policy")
                .starts_with("default-src 'self'; img-src 'self' data:"),
            "{path}"
        );
        assert_eq!(a.header("x-content-type-options"), "nosniff");
        assert!(a.text().contains(marker), "{path}");
        // Revalidation: unchanged assets answer 304.
        let etag = a.header("etag").to_owned();
        assert!(etag.starts_with('"'), "{path} has an ETag");
        let b = http(&hub, Method::GET, path, &[("if-none-match", &etag)], None).await;
        assert_eq!(b.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(b.body.is_empty());
    }
    let a = http(&hub, Method::GET, "/install.sh", &[], None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.header("content-type").starts_with("text/x-shellscript"));
    let want = format!(
        "MOORING_HUB_URL=\"${{MOORING_HUB_URL:-http://{}}}\"",
        hub.addr
    );
    assert!(a.text().contains(&want), "install.sh names this hub");
    hub.stop().await;
}

#[tokio::test]
async fn token_creation_returns_install_commands() {
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("enroll").await;
    let auth = bearer(&hub.admin_key);
    let a = http(
        &hub,
        Method::POST,
        &format!("/api/environments/{env}/tokens"),
        &[("authorization", &auth)],
        Some(json!({})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let tok = a.json();
    let token = tok["token"].as_str().unwrap();
    let base = format!("http://{}", hub.addr);
    let ws = format!("ws://{}/api/hawser/connect", hub.addr);
    let inst = &tok["install"];
    assert_eq!(
        inst["oneLiner"],
        format!("curl -fsSL {base}/install.sh | sudo sh -s -- --token {token}")
    );
    assert_eq!(
        inst["command"],
        format!("DOCKHAND_SERVER_URL={ws} TOKEN={token} mooring-agent")
    );
    let systemd = inst["systemd"].as_str().unwrap();
    assert!(
        systemd.contains(&format!("DOCKHAND_SERVER_URL={ws}"))
            && systemd.contains("/etc/mooring/agent.env")
    );
    assert!(systemd.contains("systemctl enable --now mooring-agent"));
    let docker = inst["docker"].as_str().unwrap();
    assert!(docker.starts_with("docker run -d --name mooring-agent --restart unless-stopped"));
    assert!(docker.contains("-v /var/run/docker.sock:/var/run/docker.sock"));
    assert!(docker.contains(&format!("-e DOCKHAND_SERVER_URL={ws} -e TOKEN={token}")));
    // The printed command really enrolls an agent with that URL and token.
    TestAgent::connect(&ws, token, AgentOptions::new(&agent_id()))
        .await
        .expect("the install command's URL and token work");
    hub.stop().await;

    // --public-url wins over the Host header.
    let settings = mooring_hub::Settings {
        public_url: Some("https://hub.example.com".into()),
        ..common::fast_settings()
    };
    let hub = TestHub::start_with(settings, None).await;
    let env = hub.create_edge_env("enroll").await;
    let auth = bearer(&hub.admin_key);
    let a = http(
        &hub,
        Method::POST,
        &format!("/api/environments/{env}/tokens"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    let tok = a.json();
    assert!(tok["install"]["command"]
        .as_str()
        .unwrap()
        .starts_with("DOCKHAND_SERVER_URL=wss://hub.example.com/api/hawser/connect "));
    hub.stop().await;
}
