//! Scenario 2, request latency: `GET /_ping` and `GET /version` straight on
//! the rig's Docker socket vs. through the hub's passthrough (edge: hub →
//! agent → socket; local: hub → socket). Requests are sequential on
//! keep-alive connections, the three modes interleaved request by request,
//! after a warm-up. Added latency = relay percentile − direct percentile.

use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use mooring_docker::{DockerClient, DockerRequest, Endpoint};

use super::http::HubClient;
use super::procs::hub_with_agent;
use super::report::{median, percentile, Row, ScenarioReport};
use super::{need_rig, say, Options, Size};

/// The `local` environment a hub creates at first start.
const LOCAL_ENV: i64 = 1;

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<ScenarioReport> {
    let rig = need_rig(opts)?;
    let per_rep = match opts.size {
        Size::Small => 50,
        Size::Full => 1000,
    };
    let warmup = 20;
    let (hub, _agent, edge) = hub_with_agent(opts, &rig.docker_sock, &rig.docker_sock).await?;
    let api = hub.client();
    let docker = DockerClient::new(Endpoint::Unix(rig.docker_sock.clone()));
    let mut r = ScenarioReport::new("latency");
    for path in ["/_ping", "/version"] {
        // Per repetition: p50 and p99 of each mode.
        let mut d = (Vec::new(), Vec::new());
        let mut e = (Vec::new(), Vec::new());
        let mut l = (Vec::new(), Vec::new());
        let mut added = (Vec::new(), Vec::new());
        for rep in 0..opts.repeat {
            let mut direct_ms = Vec::with_capacity(per_rep);
            let mut edge_ms = Vec::with_capacity(per_rep);
            let mut local_ms = Vec::with_capacity(per_rep);
            for i in 0..per_rep + warmup {
                let a = once_direct(&docker, path).await?;
                let b = once_hub(&api, edge, path).await?;
                let c = once_hub(&api, LOCAL_ENV, path).await?;
                if i >= warmup {
                    direct_ms.push(a);
                    edge_ms.push(b);
                    local_ms.push(c);
                }
            }
            let p = |v: &[f64], q| percentile(v, q);
            d.0.push(p(&direct_ms, 50.0));
            d.1.push(p(&direct_ms, 99.0));
            e.0.push(p(&edge_ms, 50.0));
            e.1.push(p(&edge_ms, 99.0));
            l.0.push(p(&local_ms, 50.0));
            l.1.push(p(&local_ms, 99.0));
            added.0.push(p(&edge_ms, 50.0) - p(&direct_ms, 50.0));
            added.1.push(p(&edge_ms, 99.0) - p(&direct_ms, 99.0));
            say(
                opts,
                format!(
                    "{path} rep {rep}: direct p50 {:.3} ms, edge p50 {:.3} ms, local p50 {:.3} ms",
                    d.0[rep], e.0[rep], l.0[rep]
                ),
            );
        }
        r.rows
            .push(Row::from_samples(format!("{path} direct p50 ms"), &d.0));
        r.rows
            .push(Row::from_samples(format!("{path} direct p99 ms"), &d.1));
        r.rows
            .push(Row::from_samples(format!("{path} hub → agent p50 ms"), &e.0).vs(median(&d.0)));
        r.rows
            .push(Row::from_samples(format!("{path} hub → agent p99 ms"), &e.1).vs(median(&d.1)));
        r.rows.push(
            Row::from_samples(format!("{path} hub → local socket p50 ms"), &l.0).vs(median(&d.0)),
        );
        let row = Row::from_samples(format!("{path} added p50 ms (edge − direct)"), &added.0);
        let pass = row.median < 0.5;
        r.rows.push(row.target("< 0.5 ms", pass));
        r.rows.push(Row::from_samples(
            format!("{path} added p99 ms (edge − direct)"),
            &added.1,
        ));
    }
    r.notes.push(format!(
        "{per_rep} sequential requests per mode per repetition after {warmup} warm-up; spread = min–max over repetitions"
    ));
    Ok(r)
}

async fn once_direct(docker: &DockerClient, path: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let resp = docker.send(DockerRequest::get(path)).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if status != 200 {
        bail!("direct {path}: HTTP {status}");
    }
    Ok(ms)
}

async fn once_hub(api: &HubClient, env: i64, path: &str) -> anyhow::Result<f64> {
    let full = format!("/api/environments/{env}/docker{path}");
    let t = Instant::now();
    let resp = api.send(Method::GET, &full, &[], Bytes::new()).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if status != 200 {
        bail!("hub {full}: HTTP {status}");
    }
    Ok(ms)
}
