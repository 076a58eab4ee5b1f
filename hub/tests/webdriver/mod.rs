//! Driving the dashboard in a real browser: headless Chromium over
//! WebDriver (chromedriver + fantoccini), shared by the browser tests.
//!
//! Finds the browser and driver (a missing one fails under CI=true and is
//! a skip elsewhere), starts chromedriver on a free port, opens a session,
//! logs in through the form, and offers polling waits and screenshots
//! under `target/test-artifacts/`. It asserts nothing about the product.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];
pub const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

pub fn find(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The browser and driver, or `None` (after failing under CI) when absent.
pub fn browser_tools() -> Option<(PathBuf, PathBuf)> {
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

pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// A chromedriver process, killed on drop.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn driver_ready(url: &str) -> bool {
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
pub async fn start_driver(path: &Path, log: &Path) -> Driver {
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

pub async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
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
pub async fn wait_text(c: &Client, css: &str, want: &str, within: Duration) {
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
pub async fn wait_contains(c: &Client, css: &str, want: &str, within: Duration) {
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

pub async fn screenshot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(name), png).expect("write screenshot");
}
