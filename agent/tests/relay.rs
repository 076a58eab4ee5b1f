//! The relay against the rig's real Docker: non-streaming answers, request
//! bodies, binary streams in both directions, refusals and concurrency.

mod common;

use std::time::Duration;

use common::*;
use mooring_protocol::{b64, Frame};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_version_and_image_inspect_come_back_as_responses() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;

    let Frame::Response(r) = conn.call(request("GET", "/_ping")).await else {
        panic!()
    };
    assert_eq!(
        (r.status_code, r.body.as_str(), r.is_binary),
        (200, "OK", false)
    );
    assert_eq!(r.headers["Api-Version"], "1.41");

    let Frame::Response(r) = conn.call(request("GET", "/version")).await else {
        panic!()
    };
    assert_eq!(r.status_code, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["Version"], rig.docker_version);
    assert_eq!(r.headers["Content-Type"], "application/json");

    let path = format!("/v1.41/images/{}/json", rig.image);
    let Frame::Response(r) = conn.call(request("GET", &path)).await else {
        panic!()
    };
    assert_eq!(r.status_code, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["Id"], rig.image_id);

    let Frame::Response(r) = conn
        .call(request("GET", "/images/mooring-no-such-image:v9/json"))
        .await
    else {
        panic!()
    };
    assert_eq!(r.status_code, 404);
    assert!(r.body.contains("No such image"), "{}", r.body);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_reach_docker_create_and_delete_a_container() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    let name = format!(
        "mooring-agent-test-{}",
        &uuid::Uuid::new_v4().to_string()[..8]
    );
    let mut create = request("POST", &format!("/containers/create?name={name}"));
    create.body = Some(
        serde_json::json!({"Image": rig.image, "Cmd": ["true"], "Labels": {"mooring.test": "relay"}}),
    );
    let Frame::Response(r) = conn.call(create).await else {
        panic!()
    };
    assert_eq!(r.status_code, 201, "{}", r.body);
    let Frame::Response(r) = conn
        .call(request("GET", &format!("/containers/{name}/json")))
        .await
    else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["Config"]["Labels"]["mooring.test"], "relay");
    let Frame::Response(r) = conn
        .call(request("DELETE", &format!("/containers/{name}?force=1")))
        .await
    else {
        panic!()
    };
    assert_eq!(r.status_code, 204);
    assert!(r.body.is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_streams_travel_both_ways_save_then_load() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    // docker save, streamed out as raw tar bytes.
    let saved = conn
        .stream(request("GET", &format!("/images/{}/get", rig.image)))
        .await;
    assert_eq!(saved.chunks[0].status_code, Some(200));
    assert!(saved.chunks.iter().skip(1).all(|c| c.status_code.is_none()));
    let end = saved.end.as_ref().unwrap();
    assert_eq!(
        (end.reason.as_deref(), end.status_code),
        (Some("completed"), Some(200))
    );
    let tar = saved.data();
    assert!(tar.len() > 100_000, "tar of {} bytes", tar.len());
    assert!(saved
        .chunks
        .iter()
        .all(|c| c.data.len() <= mooring_protocol::limits::DEFAULT_STREAM_CHUNK_BYTES));
    // docker load, with that tar as the streaming request's binary body.
    let mut load = request("POST", "/images/load");
    load.body = Some(serde_json::Value::String(b64::encode(&tar)));
    load.is_binary = true;
    let loaded = conn.stream(load).await;
    assert_eq!(
        loaded.end.as_ref().unwrap().status_code,
        Some(200),
        "{}",
        loaded.text()
    );
    assert!(
        loaded
            .text()
            .contains(&format!("Loaded image: {}", rig.image)),
        "{}",
        loaded.text()
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_status_is_reported_for_docker_errors() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    // A push without X-Registry-Auth: Docker answers 400, and the hub sees it.
    let s = conn
        .stream(request("POST", "/images/mooring-no-such%3Av9/push"))
        .await;
    assert_eq!(s.chunks[0].status_code, Some(400), "{s:?}");
    assert_eq!(s.end.as_ref().unwrap().status_code, Some(400));
    assert_eq!(s.end.as_ref().unwrap().reason.as_deref(), Some("completed"));
    assert!(s.text().contains("X-Registry-Auth"), "{}", s.text());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_refused_requests_get_parse_errors_and_the_link_survives() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let agent = start_agent(config(&hub.url(), &rig.docker_sock)).await;
    let mut conn = hub.accept_welcomed().await;
    // Not JSON at all: logged and ignored.
    conn.send_text("this is not json").await;
    // A request frame missing its method: answered by requestId.
    conn.send_text(r#"{"type":"request","requestId":"broken-1","path":"/_ping"}"#)
        .await;
    match conn.recv_for("broken-1").await {
        Frame::Error(e) => assert_eq!(e.code.as_deref(), Some("PARSE_ERROR")),
        other => panic!("{other:?}"),
    }
    // A path escaping the API.
    match conn.call(request("GET", "/images/../../etc/passwd")).await {
        Frame::Error(e) => {
            assert_eq!(e.code.as_deref(), Some("PARSE_ERROR"));
            assert!(e.text().contains(".."), "{}", e.text());
        }
        other => panic!("{other:?}"),
    }
    // Binary body that is not base64, streaming: error then stream_end.
    let mut bad = request("POST", "/images/load");
    bad.body = Some(serde_json::Value::String("%%%".into()));
    bad.is_binary = true;
    let s = conn.stream(bad).await;
    assert_eq!(s.errors[0].code.as_deref(), Some("PARSE_ERROR"));
    assert_eq!(s.end.unwrap().reason.as_deref(), Some("error"));
    // Unknown frame types are ignored; the link still works.
    conn.send_text(r#"{"type":"future_thing","x":1}"#).await;
    let Frame::Response(r) = conn.call(request("GET", "/_ping")).await else {
        panic!()
    };
    assert_eq!(r.status_code, 200);
    assert_eq!(agent.handle.stats().links_welcomed, 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_run_concurrently_and_the_limit_answers_busy() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = FakeHub::start().await;
    let mut cfg = config(&hub.url(), &rig.docker_sock);
    cfg.max_concurrent_requests = 2;
    let agent = start_agent(cfg).await;
    let mut conn = hub.accept_welcomed().await;
    // Two open event streams fill the table...
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut ev = request("GET", "/events");
        ev.streaming = true;
        ids.push(ev.request_id.clone());
        conn.send(&Frame::Request(ev)).await;
        match conn.recv_for(ids.last().unwrap()).await {
            Frame::Stream(c) => assert_eq!(c.status_code, Some(200)),
            other => panic!("{other:?}"),
        }
    }
    // ...so a third request is refused at once, not queued.
    match conn.call(request("GET", "/_ping")).await {
        Frame::Error(e) => assert_eq!(e.code.as_deref(), Some("BUSY")),
        other => panic!("{other:?}"),
    }
    // Freeing one slot lets the next request through while the other stream stays open.
    conn.send(&Frame::StreamEnd(mooring_protocol::StreamEnd {
        request_id: ids[0].clone(),
        reason: Some("cancelled".into()),
        ..Default::default()
    }))
    .await;
    let handle = agent.handle.clone();
    eventually("one slot free", Duration::from_secs(5), || {
        handle.stats().in_flight == 1
    })
    .await;
    let Frame::Response(r) = conn.call(request("GET", "/_ping")).await else {
        panic!()
    };
    assert_eq!(r.status_code, 200);
    assert_eq!(agent.handle.stats().in_flight, 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_host_over_tcp_reaches_the_daemon() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    // The rig's daemon listens on a unix socket only: put a tcp front on it.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let sock = rig.docker_sock.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = front.accept().await.unwrap();
            let sock = sock.clone();
            tokio::spawn(async move {
                let mut unix = tokio::net::UnixStream::connect(sock).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
            });
        }
    });
    let hub = FakeHub::start().await;
    let mut cfg = config(&hub.url(), &rig.docker_sock);
    cfg.docker = mooring_docker::Endpoint::parse(&format!("tcp://{addr}")).unwrap();
    let agent = start_agent(cfg).await;
    let mut conn = hub.accept_welcomed().await;
    assert_eq!(conn.hello.docker_version, rig.docker_version);
    let Frame::Response(r) = conn.call(request("GET", "/version")).await else {
        panic!()
    };
    assert_eq!(r.status_code, 200);
    let s = conn
        .stream(request("GET", &format!("/images/{}/json", rig.image)))
        .await;
    assert_eq!(s.end.as_ref().unwrap().status_code, Some(200));
    assert!(s.text().contains(&rig.image_id));
    agent.stop().await;
}
