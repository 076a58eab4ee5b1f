//! HTTP helpers of the monitoring tests: a real-socket HTTP client, an SSE
//! reader, protocol telemetry frames, and small polling helpers.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mooring_protocol::{ContainerEvent, ContainerEventFrame, Frame, HostMetrics, MetricsFrame};
use serde_json::{json, Value};

use super::TestHub;

/* ------------------------------------------------------------ HTTP helpers */

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub async fn http(
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

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/* ------------------------------------------------------------- SSE client */

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

pub struct Sse {
    body: hyper::body::Incoming,
    buf: String,
}

impl Sse {
    pub async fn open(hub: &TestHub, headers: &[(&str, &str)]) -> Sse {
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
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
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
    pub async fn wait_kind(&mut self, kind: &str, within: Duration) -> Value {
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

pub fn metrics_frame(ts: i64, cpu: f64) -> String {
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

pub fn container_frame(action: &str) -> String {
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

pub fn now() -> i64 {
    mooring_hub::store::now_secs()
}

pub async fn key_with(hub: &TestHub, perms: &[&str], envs: Option<Vec<i64>>) -> (i64, String) {
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
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
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
