//! The dashboard's side of the hub: session login by cookie (API and event
//! stream), static assets with types, cache and CSP headers, and the agent
//! install commands returned with a new token.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::web::*;
use common::{agent_id, AgentOptions, OnlineAgent, TestAgent, TestHub};
use serde_json::json;

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
    let OnlineAgent {
        env, agent: _agent, ..
    } = hub
        .online_agent("viacookie", AgentOptions::new(&agent_id()))
        .await;
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
