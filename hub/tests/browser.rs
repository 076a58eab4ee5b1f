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

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{agent_id, AgentOptions, TestAgent, TestHub};
use fantoccini::{Client, ClientBuilder, Locator};
use mooring_protocol::{ContainerEvent, ContainerEventFrame, Frame, HostMetrics, MetricsFrame};
use serde_json::json;

const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

fn find(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The browser and driver, or `None` (after failing under CI) when absent.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    match (find(CHROMIUM), find(CHROMEDRIVER)) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let msg = "chromium and chromedriver are needed for the dashboard browser test: \
                       apt-get install chromium chromium-driver";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver_ready(url: &str) -> bool {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let Ok(uri) = format!("{url}/status").parse::<http::Uri>() else {
        return false;
    };
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await else {
        return false;
    };
    use http_body_util::BodyExt;
    let Ok(body) = resp.into_body().collect().await else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
        .is_ok_and(|v| v["value"]["ready"] == true)
}

/// Starts chromedriver on a free loopback port and waits for `/status`.
async fn start_driver(path: &Path, log: &Path) -> Driver {
    for _attempt in 0..3 {
        // Free port: bind :0, read it, release it for chromedriver.
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            if driver_ready(&driver.url).await {
                return driver;
            }
            if let Ok(Some(_)) = driver.child.try_wait() {
                break; // exited (port taken?): try another port
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(driver);
    }
    panic!("chromedriver did not become ready (see {})", log.display());
}

async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.display().to_string(),
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1280,860",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::rustls()
        .expect("rustls connector")
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless chromium")
}

/// Waits until the element's text is `want`; returns the last text seen.
async fn wait_text(c: &Client, css: &str, want: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("<missing>");
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            if let Ok(t) = el.text().await {
                if t.trim() == want {
                    return;
                }
                last = t;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} did not read {want:?} within {within:?} (last: {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the element's text contains `want`.
async fn wait_contains(c: &Client, css: &str, want: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            if el.text().await.is_ok_and(|t| t.contains(want)) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} did not show {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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

async fn screenshot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(name), png).expect("write screenshot");
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
