//! The dashboard's push form in a real browser (headless Chromium over
//! WebDriver), end to end: the form lists the images of an edge
//! environment through the real `mooring-agent`, the push runs on the rig's
//! real Docker to the rig's real registries, and the page follows the job
//! live to its end.
//!
//! - to the open registry: `complete` at 100 %, and the registry serves the
//!   manifest whose digest the page showed;
//! - to the basic-auth registry with a wrong password: `error` with the
//!   hub's credentials message, and nothing arrives in the registry.
//!
//! Screenshots of both final states go to `target/test-artifacts/`. Needs
//! the rig, `chromium` and `chromium-driver`; under CI=true a missing one
//! fails the test, elsewhere it is skipped with a note.

mod common;
mod push_rig;
mod webdriver;

use std::time::Duration;

use fantoccini::{Client, Locator};
use mooring_hub::push::message::AUTH_FAILED;
use push_rig::{unique_repo, PushHub, RandomImage};
use serde_json::{json, Value};
use webdriver::{artifacts_dir, browser, browser_tools, screenshot, start_driver, wait_text};

/// Bound for a whole push as the page sees it.
const PUSH_WAIT: Duration = Duration::from_secs(90);
/// Bound for the page to react to anything else.
const UI_WAIT: Duration = Duration::from_secs(20);

/// Waits until an element matches `css`.
async fn wait_for(c: &Client, css: &str, within: Duration) {
    c.wait()
        .at_most(within)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear within {within:?}: {e}"));
}

/// Waits until the push panel reaches a final state; returns it.
async fn final_state(c: &Client) -> (String, String) {
    let deadline = tokio::time::Instant::now() + PUSH_WAIT;
    loop {
        let el = c
            .find(Locator::Css("#push-state"))
            .await
            .expect("#push-state");
        let state = el
            .attr("data-state")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        if state == "complete" || state == "error" {
            return (state, el.text().await.unwrap_or_default());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "push still {state:?} after {PUSH_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .attr(name)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script runs")
}

/// Fills the form (environment, image, registry, new tag) and submits it.
async fn submit_push(c: &Client, env: i64, image_id: &str, registry: i64, tag: &str) {
    let env_opt = format!("#push-env option[value=\"{env}\"]:not([disabled])");
    wait_for(c, &env_opt, UI_WAIT).await;
    c.find(Locator::Css("#push-env"))
        .await
        .expect("#push-env")
        .select_by_value(&env.to_string())
        .await
        .expect("choose the environment");
    // The image list comes from the agent's Docker, through the hub.
    let img_opt = format!("#push-image option[value=\"{image_id}\"]");
    wait_for(c, &img_opt, UI_WAIT).await;
    c.find(Locator::Css("#push-image"))
        .await
        .expect("#push-image")
        .select_by_value(image_id)
        .await
        .expect("choose the image");
    c.find(Locator::Css("#push-registry"))
        .await
        .expect("#push-registry")
        .select_by_value(&registry.to_string())
        .await
        .expect("choose the registry");
    let tag_in = c.find(Locator::Css("#push-tag")).await.expect("#push-tag");
    tag_in.clear().await.expect("clear the tag");
    tag_in.send_keys(tag).await.expect("type the tag");
    c.find(Locator::Css("#push-submit"))
        .await
        .expect("#push-submit")
        .click()
        .await
        .expect("submit");
    wait_for(
        c,
        "#push-state[data-state=\"running\"], #push-state[data-state=\"complete\"], #push-state[data-state=\"error\"]",
        UI_WAIT,
    )
    .await;
}

#[tokio::test]
async fn push_from_the_form_through_the_real_agent_completes_or_names_the_auth_failure() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    // fantoccini's rustls connector uses the process-wide crypto provider
    // (see browser.rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let artifacts = artifacts_dir();
    let profile = common::TempDir::new();
    let hub = PushHub::start(&rig).await;
    let (env, _agent) = hub.edge_with_agent(&rig, "edge-ui").await;
    let open = hub.registry("open", &rig.registry, None).await;
    let bad = hub
        .registry(
            "auth-wrong-password",
            &rig.auth_registry,
            Some((&rig.auth_user, "not-the-password")),
        )
        .await;
    // A layer no registry has yet: the push really uploads.
    let image = RandomImage::create(&rig, 3 << 20);

    let driver = start_driver(&chromedriver, &artifacts.join("chromedriver-push.log")).await;
    let c = browser(&driver, &chromium, &profile.0).await;
    let result = async {
        c.goto(&format!("http://{}/", hub.hub.addr))
            .await
            .expect("open dashboard");
        let key = c
            .wait()
            .at_most(UI_WAIT)
            .for_element(Locator::Css("#login-key"))
            .await
            .expect("login form");
        key.send_keys(&hub.hub.admin_key).await.expect("type key");
        c.find(Locator::Css("#login-submit"))
            .await
            .expect("submit button")
            .click()
            .await
            .expect("log in");
        let status = format!("#env-table tr[data-env-id=\"{env}\"] .status-text");
        wait_text(&c, &status, "online", UI_WAIT).await;
        c.find(Locator::Css("a[href=\"#/push\"]"))
            .await
            .expect("the Push image link")
            .click()
            .await
            .expect("open the push form");

        // 1. To the open registry: complete, and the registry has it.
        let repo = unique_repo("ui");
        submit_push(&c, env, &image.id, open, &format!("{repo}:v1")).await;
        let (state, text) = final_state(&c).await;
        let target = format!("{}/{repo}:v1", rig.registry);
        assert_eq!(state, "complete", "{text}");
        assert_eq!(text, format!("Pushed to {target}"));
        assert_eq!(attr(&c, "#push-progress", "data-percent").await, "100");
        wait_for(&c, "#push-progress[data-percent=\"100\"]", UI_WAIT).await;
        wait_for(&c, "#push-state[data-state=\"complete\"]", UI_WAIT).await;
        // Docker's own layer rows, each finished.
        let layers = c
            .find_all(Locator::Css(".layer[data-layer-id]"))
            .await
            .expect("layer rows");
        assert!(!layers.is_empty(), "a row per layer");
        for layer in &layers {
            assert_eq!(
                layer.attr("data-done").await.unwrap().as_deref(),
                Some("yes")
            );
        }
        let served = rig
            .registry_manifest_digest(&rig.registry, &repo, "v1", None)
            .unwrap_or_else(|| panic!("the registry does not serve {repo}:v1"));
        let log = js(&c, "return document.querySelector('pre.log').textContent").await;
        assert!(
            log.as_str().is_some_and(|l| l.contains(&served)),
            "the page's raw progress names the digest the registry serves ({served}): {log}"
        );
        screenshot(&c, &artifacts, "push-1-complete.png").await;

        // 2. To the auth registry with a wrong password: a clear error.
        let denied = unique_repo("ui-denied");
        submit_push(&c, env, &image.id, bad, &format!("{denied}:v1")).await;
        let (state, text) = final_state(&c).await;
        assert_eq!(state, "error", "{text}");
        assert_eq!(text, AUTH_FAILED);
        assert_eq!(text, "Authentication failed. Check registry credentials.");
        assert_ne!(attr(&c, "#push-progress", "data-percent").await, "100");
        wait_for(&c, "#push-state[data-state=\"error\"]", UI_WAIT).await;
        let page = js(&c, "return document.body.innerText").await;
        assert!(
            !page
                .as_str()
                .unwrap_or_default()
                .contains("not-the-password"),
            "the page never shows a password"
        );
        let nothing =
            rig.registry_manifest_digest(&rig.auth_registry, &denied, "v1", Some(rig.auth()));
        assert_eq!(nothing, None, "nothing was pushed");
        screenshot(&c, &artifacts, "push-2-auth-error.png").await;

        // Both pushes are recorded, with their outcome.
        let mut outcomes: Vec<Value> = hub
            .push_audit()
            .await
            .into_iter()
            .map(|(_, d)| d["outcome"].clone())
            .collect();
        outcomes.sort_by_key(Value::to_string);
        assert_eq!(outcomes, vec![json!("done"), json!("error")]);
    }
    .await;
    let _ = c.close().await;
    drop(driver);
    drop(image);
    result
}
