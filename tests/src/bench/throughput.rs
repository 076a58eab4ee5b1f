//! Scenario 1, stream throughput: one large streaming answer read straight
//! from a Docker socket vs. through hub → agent over loopback.
//!
//! Two sources: the fake socket streaming 1 GiB (16 MiB small), and
//! `GET /images/{id}/get` of the rig's big image (≥200 MB; the busybox
//! image small). Direct and relayed reads alternate within each repetition
//! so drift on a shared machine hits both. Also reported: CPU seconds the
//! hub and the agent spend per GiB relayed (where a miss gets profiled).

use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::Method;
use mooring_docker::{DockerClient, DockerRequest, Endpoint};

use super::fake_docker::FakeDocker;
use super::http::drain;
use super::procs::{cpu_time, edge_env, Agent, Hub, TempDir};
use super::report::{median, Row, ScenarioReport};
use super::{need_rig, say, Options, Size};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<ScenarioReport> {
    let rig = need_rig(opts)?;
    let fake_bytes: u64 = match opts.size {
        Size::Small => 16 << 20,
        Size::Full => 1 << 30,
    };
    let image = match opts.size {
        Size::Small => rig.image.clone(),
        Size::Full => rig.big_image.clone().context(
            "the full throughput run needs the rig's big image: MOORING_RIG_BIG=1 tests/rig/rig.sh up",
        )?,
    };
    let dir = TempDir::new("tp")?;
    let fake = FakeDocker::start(&dir.path().join("fd.sock"), fake_bytes)?;
    let hub = Hub::start(&opts.hub_bin, None, Some(&rig.docker_sock), &[]).await?;
    let (fake_env, fake_token) = edge_env(&hub, "bench-fake").await?;
    let (real_env, real_token) = edge_env(&hub, "bench-real").await?;
    let (json_env, json_token) = edge_env(&hub, "bench-fake-json").await?;
    let fake_agent = Agent::start(
        &opts.agent_bin,
        &hub,
        fake_env,
        &fake_token,
        fake.path(),
        &[],
    )
    .await?;
    // The same agent without the binary extension: the Hawser 1.0 wire
    // format (JSON text frames, base64 data), as a reference hub sees it.
    let json_agent = Agent::start(
        &opts.agent_bin,
        &hub,
        json_env,
        &json_token,
        fake.path(),
        &[("MOORING_BINARY_STREAMS", "false")],
    )
    .await?;
    let real_agent = Agent::start(
        &opts.agent_bin,
        &hub,
        real_env,
        &real_token,
        &rig.docker_sock,
        &[],
    )
    .await?;
    let api = hub.client();
    let fake_direct = DockerClient::new(Endpoint::Unix(fake.path().to_owned()));
    let real_direct = DockerClient::new(Endpoint::Unix(rig.docker_sock.clone()));
    let fake_path = "/images/bench/get".to_owned();
    let real_path = format!("/images/{image}/get");

    let mut s = Samples::default();
    for rep in 0..opts.repeat {
        // fake 1 GiB
        let (n, secs) = timed(direct(&fake_direct, &fake_path)).await?;
        check(n, fake_bytes, "direct fake")?;
        s.fake_direct.push(mbps(n, secs));
        let cpu0 = (cpu_time(hub.pid())?, cpu_time(fake_agent.pid())?);
        let (n, secs) = timed(relay(&api, fake_env, &fake_path)).await?;
        check(n, fake_bytes, "relayed fake")?;
        s.fake_relay.push(mbps(n, secs));
        let per_gib = GIB / n as f64;
        s.hub_cpu
            .push((cpu_time(hub.pid())? - cpu0.0).as_secs_f64() * per_gib);
        s.agent_cpu
            .push((cpu_time(fake_agent.pid())? - cpu0.1).as_secs_f64() * per_gib);
        let cpu0 = (cpu_time(hub.pid())?, cpu_time(json_agent.pid())?);
        let (n, secs) = timed(relay(&api, json_env, &fake_path)).await?;
        check(n, fake_bytes, "relayed fake (JSON frames)")?;
        s.fake_json.push(mbps(n, secs));
        let per_gib = GIB / n as f64;
        s.hub_cpu_json
            .push((cpu_time(hub.pid())? - cpu0.0).as_secs_f64() * per_gib);
        s.agent_cpu_json
            .push((cpu_time(json_agent.pid())? - cpu0.1).as_secs_f64() * per_gib);
        // real image
        let (direct_n, secs) = timed(direct(&real_direct, &real_path)).await?;
        s.real_direct.push(mbps(direct_n, secs));
        let (n, secs) = timed(relay(&api, real_env, &real_path)).await?;
        check(n, direct_n, "relayed image")?;
        s.real_relay.push(mbps(n, secs));
        s.image_bytes = direct_n;
        say(
            opts,
            format!(
                "rep {rep}: fake direct {:.0} relay {:.0} (JSON {:.0}) MB/s; image direct {:.0} relay {:.0} MB/s",
                s.fake_direct[rep], s.fake_relay[rep], s.fake_json[rep], s.real_direct[rep], s.real_relay[rep]
            ),
        );
    }
    drop(real_agent);
    drop(json_agent);
    drop(fake_agent);

    let mut r = ScenarioReport::new("throughput");
    let target = |row: Row| {
        let pass = row.ratio.is_some_and(|x| x >= 0.8);
        row.target("relay/direct ≥ 0.8", pass)
    };
    let fd = median(&s.fake_direct);
    r.rows.push(Row::from_samples(
        "fake socket, direct MB/s",
        &s.fake_direct,
    ));
    r.rows.push(target(
        Row::from_samples("fake socket, hub → agent MB/s", &s.fake_relay).vs(fd),
    ));
    r.rows.push(target(
        Row::from_samples(
            "fake socket, hub → agent MB/s, JSON frames (no extension)",
            &s.fake_json,
        )
        .vs(fd),
    ));
    let rd = median(&s.real_direct);
    r.rows
        .push(Row::from_samples("image get, direct MB/s", &s.real_direct));
    r.rows.push(target(
        Row::from_samples("image get, hub → agent MB/s", &s.real_relay).vs(rd),
    ));
    r.rows.push(Row::from_samples(
        "hub CPU s per GiB relayed (fake)",
        &s.hub_cpu,
    ));
    r.rows.push(Row::from_samples(
        "agent CPU s per GiB relayed (fake)",
        &s.agent_cpu,
    ));
    r.rows.push(Row::from_samples(
        "hub CPU s per GiB relayed (fake, JSON frames)",
        &s.hub_cpu_json,
    ));
    r.rows.push(Row::from_samples(
        "agent CPU s per GiB relayed (fake, JSON frames)",
        &s.agent_cpu_json,
    ));
    r.notes.push(
        "hub → agent rows use the agent's defaults (binary stream-data extension when both sides announce it); \"JSON frames\" rows run the same agent with MOORING_BINARY_STREAMS=false".into(),
    );
    r.notes.push(format!(
        "fake body {} MiB; image {image} ({:.1} MB as `docker save` tar); MB = 10^6 bytes",
        fake_bytes >> 20,
        s.image_bytes as f64 / 1e6
    ));
    Ok(r)
}

#[derive(Default)]
struct Samples {
    fake_direct: Vec<f64>,
    fake_relay: Vec<f64>,
    fake_json: Vec<f64>,
    hub_cpu_json: Vec<f64>,
    agent_cpu_json: Vec<f64>,
    real_direct: Vec<f64>,
    real_relay: Vec<f64>,
    hub_cpu: Vec<f64>,
    agent_cpu: Vec<f64>,
    image_bytes: u64,
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

fn check(got: u64, want: u64, what: &str) -> anyhow::Result<()> {
    if got != want {
        bail!("{what}: read {got} bytes, expected {want}");
    }
    Ok(())
}

/// Runs `f`, returning its value and the seconds it took.
pub(crate) async fn timed<T>(
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    let t = Instant::now();
    let v = f.await?;
    Ok((v, t.elapsed().as_secs_f64()))
}

/// `GET path` straight on a Docker socket, drained; the byte count.
pub(crate) async fn direct(docker: &DockerClient, path: &str) -> anyhow::Result<u64> {
    let resp = docker.send(DockerRequest::get(path)).await?;
    if resp.status() != 200 {
        bail!("direct GET {path}: HTTP {}", resp.status());
    }
    drain(resp.into_body()).await
}

/// `GET path` through the hub's passthrough to `env`, drained.
pub(crate) async fn relay(
    api: &super::http::HubClient,
    env: i64,
    path: &str,
) -> anyhow::Result<u64> {
    let full = format!("/api/environments/{env}/docker{path}");
    let resp = api.send(Method::GET, &full, &[], Bytes::new()).await?;
    if resp.status() != 200 {
        bail!("relayed GET {path}: HTTP {}", resp.status());
    }
    drain(resp.into_body()).await
}
