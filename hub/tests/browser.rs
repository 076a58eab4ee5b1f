//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver + fantoccini) against an in-process hub.
//!
//! Logs in through the form, watches an environment go offline → online →
//! offline live (EventSource, no reload), and saves a screenshot of each
//! state under `target/test-artifacts/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the test
//! fails under CI=true and is skipped with a note elsewhere.

mod common;
mod webdriver;

use std::time::Duration;

use common::{agent_id, AgentOptions, TestAgent, TestHub};
use fantoccini::Locator;
use mooring_protocol::{ContainerEvent, ContainerEventFrame, Frame, HostMetrics, MetricsFrame};
use serde_json::json;
use webdriver::{
    artifacts_dir, browser, browser_tools, screenshot, start_driver, wait_contains, wait_text,
};

fn metrics_frame() -> String {
    Frame::Metrics(MetricsFrame {
        timestamp: mooring_hub::store::now_secs(),
        metrics: HostMetrics {
            cpu_usage: 7.5,
            cpu_cores: 4,
            memory_total: 16 << 30,
            memory_used: 6 << 30,
            memory_free: 10 << 30,
            disk_total: 500 << 30,
            disk_used: 120 << 30,
            disk_free: 380 << 30,
            network_rx_bytes: 1 << 20,
            network_tx_bytes: 2 << 20,
            uptime: 86_400 * 3,
        },
    })
    .encode()
}

fn container_frame() -> String {
    Frame::ContainerEvent(ContainerEventFrame {
        event: ContainerEvent {
            container_id: "ab12".repeat(16),
            container_name: "web".into(),
            image: "rig/busybox:1".into(),
            action: "start".into(),
            actor_attributes: Default::default(),
            timestamp: "2025-01-31T12:00:00.000000001Z".into(),
        },
    })
    .encode()
}

#[tokio::test]
async fn dashboard_shows_agent_status_live() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    // fantoccini's rustls connector uses the process-wide crypto provider;
    // the workspace builds rustls with ring (hyper-rustls adds aws-lc-rs,
    // so name the one to use).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let artifacts = artifacts_dir();
    let profile = common::TempDir::new();
    let hub = TestHub::start().await;
    let env = hub.create_edge_env("nas-basement").await;
    let (_, token) = hub.create_token(env, None).await;

    let driver = start_driver(&chromedriver, &artifacts.join("chromedriver.log")).await;
    let c = browser(&driver, &chromium, &profile.0).await;
    let result = async {
        c.goto(&format!("http://{}/", hub.addr))
            .await
            .expect("open dashboard");
        let key = c
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css("#login-key"))
            .await
            .expect("login form");
        key.send_keys(&hub.admin_key).await.expect("type key");
        c.find(Locator::Css("#login-submit"))
            .await
            .expect("submit button")
            .click()
            .await
            .expect("log in");
        let status = format!("#env-table tr[data-env-id=\"{env}\"] .status-text");
        wait_text(&c, &status, "offline", Duration::from_secs(15)).await;
        wait_text(&c, "#live", "live", Duration::from_secs(15)).await;
        // The key is not kept by the page; the session is an HttpOnly cookie.
        let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
        assert_eq!(cookies, json!(""), "HttpOnly: invisible to scripts");
        // A marker that a reload would erase.
        c.execute("window.__mooringNoReload = 1; return 1", vec![])
            .await
            .unwrap();
        screenshot(&c, &artifacts, "dashboard-1-offline.png").await;

        let agent = TestAgent::connect(&hub.ws_url(), &token, AgentOptions::new(&agent_id()))
            .await
            .expect("agent accepted");
        wait_text(&c, &status, "online", Duration::from_secs(15)).await;
        // Metrics and container events arrive live as well.
        agent.send_text(&metrics_frame()).await;
        agent.send_text(&container_frame()).await;
        let row = format!("#env-table tr[data-env-id=\"{env}\"]");
        wait_contains(&c, &row, "7.5 %", Duration::from_secs(15)).await;
        wait_contains(
            &c,
            "ul.events",
            "Container web: start",
            Duration::from_secs(15),
        )
        .await;
        screenshot(&c, &artifacts, "dashboard-2-online.png").await;

        agent.kill();
        wait_text(&c, &status, "offline", Duration::from_secs(15)).await;
        let marker = c
            .execute("return window.__mooringNoReload || 0", vec![])
            .await
            .unwrap();
        assert_eq!(marker, json!(1), "updated live, without a page reload");
        let reason = c
            .find(Locator::Css(&format!(
                "#env-table tr[data-env-id=\"{env}\"] .status-reason"
            )))
            .await
            .expect("a disconnect reason is shown")
            .text()
            .await
            .unwrap();
        assert!(reason.contains("closed"), "{reason}");
        screenshot(&c, &artifacts, "dashboard-3-offline-again.png").await;
    }
    .await;
    let _ = c.close().await;
    drop(driver);
    hub.stop().await;
    result
}
