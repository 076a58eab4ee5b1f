//! `mooring-hub push`, the real binary, against a running hub and the rig.

mod common;
mod push_rig;

use std::process::Output;

use mooring_hub::push::message::AUTH_FAILED;
use push_rig::{unique_repo, PushHub};

async fn cli(hub: &PushHub, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mooring-hub"))
        .arg("push")
        .arg("--hub-url")
        .arg(format!("http://{}", hub.hub.addr))
        .args(args)
        .env("MOORING_API_KEY", &hub.hub.admin_key)
        .env("MOORING_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run mooring-hub push")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn cli_push_succeeds_and_fails_with_the_right_exit_status() {
    let Some(rig) = mooring_tests::rig::rig() else {
        return;
    };
    let hub = PushHub::start(&rig).await;
    let (env, _agent) = hub.edge_with_agent(&rig, "edge").await;
    let open = hub.registry("open", &rig.registry, None).await;
    let bad = hub
        .registry(
            "auth-bad",
            &rig.auth_registry,
            Some((&rig.auth_user, "wrong")),
        )
        .await;
    let repo = unique_repo("cli");
    let tag = format!("{repo}:c1");

    let out = cli(
        &hub,
        &[
            "--env",
            &env.to_string(),
            "--image",
            &rig.image_id,
            "--registry",
            &open.to_string(),
            "--tag",
            &tag,
        ],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let target = format!("{}/{tag}", rig.registry);
    assert!(
        stdout.contains(&format!("Image pushed to {target}")),
        "{stdout}"
    );
    let digest = rig
        .registry_manifest_digest(&rig.registry, &repo, "c1", None)
        .expect("the registry has the manifest");
    assert!(
        stdout.contains(&digest),
        "stdout names the digest: {stdout}"
    );
    assert!(
        stderr.contains("Pushing to registry..."),
        "progress shown: {stderr}"
    );
    let _ = rig.docker(&["rmi", &target]);

    let out = cli(
        &hub,
        &[
            "--env",
            &env.to_string(),
            "--image",
            &rig.image_id,
            "--registry",
            &bad.to_string(),
            "--tag",
            &tag,
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(AUTH_FAILED),
        "{}",
        text(&out.stderr)
    );
    let _ = rig.docker(&["rmi", &format!("{}/{tag}", rig.auth_registry)]);

    let out = cli(&hub, &["--image", &rig.image_id, "--registry", "999"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Registry not found"),
        "{}",
        text(&out.stderr)
    );
}
