//! Scenario 3, concurrency: 100 streaming requests at once on one agent
//! (fake socket, 16 MiB each; 1 MiB small). All must complete with every
//! byte; fairness is the slowest request's time over the fastest's. The
//! same 100 reads straight on the socket give the aggregate baseline.

use std::time::Instant;

use anyhow::bail;
use mooring_docker::{DockerClient, Endpoint};

use super::fake_docker::FakeDocker;
use super::procs::{hub_with_agent, TempDir};
use super::report::{median, Row, ScenarioReport};
use super::throughput::{direct, relay};
use super::{need_rig, say, Options, Size};

/// Concurrent requests.
pub const CONCURRENT: usize = 100;

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<ScenarioReport> {
    let rig = need_rig(opts)?;
    let each: u64 = match opts.size {
        Size::Small => 1 << 20,
        Size::Full => 16 << 20,
    };
    let dir = TempDir::new("cc")?;
    let fake = FakeDocker::start(&dir.path().join("fd.sock"), each)?;
    let (hub, _agent, env) = hub_with_agent(opts, &rig.docker_sock, fake.path()).await?;
    let api = hub.client();
    let docker = DockerClient::new(Endpoint::Unix(fake.path().to_owned()));
    let path = "/images/bench/get";
    let mut relay_mbps = Vec::new();
    let mut direct_mbps = Vec::new();
    let mut fairness = Vec::new();
    let mut completed = Vec::new();
    for rep in 0..opts.repeat {
        // direct
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENT {
            let docker = docker.clone();
            set.spawn(async move { direct(&docker, path).await });
        }
        let mut total = 0;
        while let Some(r) = set.join_next().await {
            total += r??;
        }
        direct_mbps.push(total as f64 / 1e6 / t.elapsed().as_secs_f64());
        // relayed
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENT {
            let api = api.clone();
            set.spawn(async move {
                let s = Instant::now();
                let n = relay(&api, env, path).await?;
                anyhow::Ok((n, s.elapsed().as_secs_f64()))
            });
        }
        let mut times = Vec::new();
        let mut total = 0;
        let mut ok = 0usize;
        while let Some(r) = set.join_next().await {
            let (n, secs) = r??;
            if n != each {
                bail!("a relayed stream ended after {n} of {each} bytes");
            }
            total += n;
            ok += 1;
            times.push(secs);
        }
        let wall = t.elapsed().as_secs_f64();
        relay_mbps.push(total as f64 / 1e6 / wall);
        let slow = times.iter().copied().fold(0.0, f64::max);
        let fast = times.iter().copied().fold(f64::INFINITY, f64::min);
        fairness.push(slow / fast);
        completed.push(ok as f64);
        say(
            opts,
            format!(
                "rep {rep}: {ok}/{CONCURRENT} done in {wall:.2}s, {:.0} MB/s, slowest/fastest {:.2}",
                relay_mbps[rep], fairness[rep]
            ),
        );
    }
    let mut r = ScenarioReport::new("concurrency");
    let row = Row::from_samples("streams completed", &completed);
    let all = row.low == CONCURRENT as f64;
    r.rows.push(row.target(format!("all {CONCURRENT}"), all));
    r.rows
        .push(Row::from_samples("aggregate direct MB/s", &direct_mbps));
    r.rows.push(
        Row::from_samples("aggregate hub → agent MB/s", &relay_mbps).vs(median(&direct_mbps)),
    );
    r.rows.push(Row::from_samples(
        "fairness: slowest / fastest request time",
        &fairness,
    ));
    r.notes.push(format!(
        "{CONCURRENT} concurrent GETs of {} MiB each from the fake socket through one agent",
        each >> 20
    ));
    Ok(r)
}
