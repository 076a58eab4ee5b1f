//! The test rig itself: every service `rig.sh up` promises is really there.
//!
//! Skipped when the rig is not running, failed under `CI=true`.

use mooring_tests::rig::rig;

#[test]
fn docker_socket_answers_ping() {
    let Some(rig) = rig() else { return };
    let (status, body) = rig
        .docker_api_get("/_ping")
        .unwrap_or_else(|| panic!("no answer on {}", rig.docker_sock.display()));
    assert_eq!(status, 200, "GET /_ping: {body}");
    assert_eq!(body, "OK");
}

#[test]
fn docker_version_matches_env() {
    let Some(rig) = rig() else { return };
    let version = rig
        .docker_ok(&["version", "--format", "{{.Server.Version}}"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version, rig.docker_version);
}

#[test]
fn rig_image_exists_with_recorded_id() {
    let Some(rig) = rig() else { return };
    let id = rig
        .docker_ok(&["image", "inspect", "--format", "{{.Id}}", &rig.image])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id, rig.image_id);
}

#[test]
fn rig_image_runs() {
    let Some(rig) = rig() else { return };
    let out = rig
        .docker_ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            &rig.image,
            "/bin/echo",
            "rig-ok",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, "rig-ok");
}

#[test]
fn open_registry_answers_v2_without_auth() {
    let Some(rig) = rig() else { return };
    assert_eq!(rig.registry_v2_status(&rig.registry, None), Some(200));
}

#[test]
fn auth_registry_demands_credentials() {
    let Some(rig) = rig() else { return };
    assert_eq!(rig.registry_v2_status(&rig.auth_registry, None), Some(401));
}

#[test]
fn auth_registry_accepts_rig_credentials() {
    let Some(rig) = rig() else { return };
    assert_eq!(
        rig.registry_v2_status(&rig.auth_registry, Some(rig.auth())),
        Some(200)
    );
}

#[test]
fn auth_registry_rejects_wrong_password() {
    let Some(rig) = rig() else { return };
    let wrong = format!("{}-wrong", rig.auth_password);
    assert_eq!(
        rig.registry_v2_status(&rig.auth_registry, Some((&rig.auth_user, &wrong))),
        Some(401)
    );
}

#[test]
fn missing_manifest_has_no_digest() {
    let Some(rig) = rig() else { return };
    assert_eq!(
        rig.registry_manifest_digest(&rig.registry, "rig/absent", "nope", None),
        None
    );
}

#[test]
fn pushed_image_digest_is_readable_from_open_registry() {
    let Some(rig) = rig() else { return };
    let repo = format!("rig/smoke-{}", std::process::id());
    let target = format!("{}/{repo}:1", rig.registry);
    let docker = |args: &[&str]| rig.docker_ok(args).unwrap_or_else(|e| panic!("{e}"));
    docker(&["tag", &rig.image, &target]);
    docker(&["push", "--quiet", &target]);
    let repo_digests = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &target,
    ]);
    let _ = rig.docker(&["rmi", &target]);
    let digest = rig
        .registry_manifest_digest(&rig.registry, &repo, "1", None)
        .expect("pushed manifest has a Docker-Content-Digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(
        repo_digests.contains(&format!("{}/{repo}@{digest}", rig.registry)),
        "registry digest {digest} not among the local RepoDigests {repo_digests}"
    );
}
