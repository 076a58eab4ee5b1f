//! Scenario 5, push: an image of random data (200 MiB; 4 MiB small) pushed
//! to the rig's open registry through hub → agent (the passthrough's
//! `POST /images/{name}/push`) vs. the same push straight on the Docker
//! socket. Every push uploads for real: each one gets a freshly imported
//! image (new layer digest) and a new repository, so no layer is "already
//! exists" or mounted. A push is checked for an `error` in its progress
//! stream and for the manifest in the registry afterwards.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use mooring_docker::{DockerClient, DockerRequest, Endpoint};
use rand::RngCore;

use super::http::drain_keep;
use super::procs::{hub_with_agent, TempDir};
use super::report::{median, Row, ScenarioReport};
use super::throughput::timed;
use super::{need_rig, say, Options, Size};
use crate::rig::Rig;

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<ScenarioReport> {
    let rig = need_rig(opts)?;
    let size: usize = match opts.size {
        Size::Small => 4 << 20,
        Size::Full => 200 << 20,
    };
    let (hub, _agent, env) = hub_with_agent(opts, &rig.docker_sock, &rig.docker_sock).await?;
    let api = hub.client();
    let docker = DockerClient::new(Endpoint::Unix(rig.docker_sock.clone()));
    let auth = registry_auth(&rig.registry);
    let dir = TempDir::new("push")?;
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut direct_s = Vec::new();
    let mut relay_s = Vec::new();
    let mut images = Vec::new();
    for rep in 0..opts.repeat {
        let a = format!("{}/bench/push-{run_id}-{rep}-d:1", rig.registry);
        let b = format!("{}/bench/push-{run_id}-{rep}-r:1", rig.registry);
        make_image(rig, dir.path(), &a, size)?;
        make_image(rig, dir.path(), &b, size)?;
        images.push(a.clone());
        images.push(b.clone());
        let (repo_a, _) = a.rsplit_once(':').context("tag")?;
        let (repo_b, _) = b.rsplit_once(':').context("tag")?;
        let direct_push = async {
            let req = DockerRequest {
                method: Method::POST,
                path: format!("/images/{repo_a}/push?tag=1"),
                headers: [("X-Registry-Auth".to_owned(), auth.clone())].into(),
                body: Bytes::new(),
            };
            let resp = docker.send(req).await?;
            check_push(resp.status().as_u16(), resp.into_body()).await
        };
        let relay_push = async {
            let path = format!("/api/environments/{env}/docker/images/{repo_b}/push?tag=1");
            let resp = api
                .send(
                    Method::POST,
                    &path,
                    &[("x-registry-auth", auth.as_str())],
                    Bytes::new(),
                )
                .await?;
            check_push(resp.status().as_u16(), resp.into_body()).await
        };
        // Alternate which goes first.
        let (d, r) = if rep % 2 == 0 {
            let d = timed(direct_push).await?.1;
            (d, timed(relay_push).await?.1)
        } else {
            let r = timed(relay_push).await?.1;
            (timed(direct_push).await?.1, r)
        };
        for image in [&a, &b] {
            let (repo, _) = image.rsplit_once(':').context("tag")?;
            let repo = repo.split_once('/').map(|(_, r)| r).unwrap_or(repo);
            if rig
                .registry_manifest_digest(&rig.registry, repo, "1", None)
                .is_none()
            {
                bail!("{image}: no manifest in the registry after the push");
            }
        }
        direct_s.push(d);
        relay_s.push(r);
        say(
            opts,
            format!("rep {rep}: direct {d:.2}s, hub → agent {r:.2}s"),
        );
    }
    for image in &images {
        let _ = rig.docker(&["rmi", image]);
    }
    let mut r = ScenarioReport::new("push");
    r.rows.push(Row::from_samples(
        "push straight on the socket, s",
        &direct_s,
    ));
    let row = Row::from_samples("push through hub → agent, s", &relay_s).vs(median(&direct_s));
    let pass = row.ratio.is_some_and(|x| x <= 1.05);
    r.rows.push(row.target("relay/direct ≤ 1.05", pass));
    r.notes.push(format!(
        "image: one layer of {} MiB random data (incompressible), fresh per push; registry {}",
        size >> 20,
        rig.registry
    ));
    Ok(r)
}

/// `X-Registry-Auth` for an open registry (base64url with padding).
fn registry_auth(server: &str) -> String {
    let json = serde_json::json!({"username": "", "password": "", "serveraddress": server});
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

/// Imports a one-layer image of `size` random bytes as `name`.
fn make_image(rig: &Rig, dir: &Path, name: &str, size: usize) -> anyhow::Result<()> {
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let mut data = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(root.join("random.bin"), &data)?;
    let script = format!(
        "tar -C '{}' -c . | docker import - '{name}' >/dev/null",
        root.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("DOCKER_HOST", &rig.docker_host)
        .output()
        .context("running tar | docker import")?;
    let _ = std::fs::remove_dir_all(&root);
    if !out.status.success() {
        bail!(
            "docker import {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Drains a push's progress stream; an HTTP error or an `error` line fails.
async fn check_push(status: u16, body: hyper::body::Incoming) -> anyhow::Result<()> {
    let (_, text) = drain_keep(body, 1 << 20).await?;
    let text = String::from_utf8_lossy(&text);
    if status != 200 {
        bail!("push: HTTP {status}: {text}");
    }
    if text.contains("\"error\"") || text.contains("errorDetail") {
        bail!("push failed: {text}");
    }
    Ok(())
}
