//! `GET /metrics`: permission, OpenMetrics text that parses, counters that
//! move with real traffic, and the unauthenticated `--metrics-listen`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use common::web::*;
use common::{agent_id, AgentOptions, OnlineAgent, TestAgent, TestHub};
use http_body_util::{BodyExt, Full};

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

    let OnlineAgent { env, agent, .. } = hub
        .online_agent("scraped", AgentOptions::new(&agent_id()))
        .await;
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
    let OnlineAgent {
        env, agent: _agent, ..
    } = hub
        .online_agent(
            "rig",
            AgentOptions::new(&agent_id()).relaying_to(rig.docker_sock.clone()),
        )
        .await;
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
