//! Scenario 6, footprint: the binaries' sizes (as built, and stripped),
//! the hub's RSS idle (no agent) and the agent's RSS idle (connected, after
//! answering a few `/_ping`s), each sampled several times a second apart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::procs::{hub_with_agent, rss_kib, Hub, TempDir};
use super::report::{Row, ScenarioReport};
use super::{need_rig, say, Options};

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<ScenarioReport> {
    let rig = need_rig(opts)?;
    let samples = opts.repeat.max(3);
    let mut r = ScenarioReport::new("footprint");
    for (label, bin) in [("agent", &opts.agent_bin), ("hub", &opts.hub_bin)] {
        let size = std::fs::metadata(bin)?.len() as f64 / 1e6;
        r.rows
            .push(Row::value(format!("{label} binary MB (as built)"), size));
        if let Some(stripped) = stripped_size(bin)? {
            r.rows.push(Row::value(
                format!("{label} binary MB (stripped)"),
                stripped,
            ));
        }
    }
    let hub = Hub::start(&opts.hub_bin, None, Some(&rig.docker_sock), &[]).await?;
    let hub_idle = sample(hub.pid(), samples).await?;
    drop(hub);
    let (hub, agent, env) = hub_with_agent(opts, &rig.docker_sock, &rig.docker_sock).await?;
    let api = hub.client();
    for _ in 0..10 {
        api.get_text(&format!("/api/environments/{env}/docker/_ping"))
            .await?;
    }
    let agent_idle = sample(agent.pid(), samples).await?;
    let hub_one = sample(hub.pid(), samples).await?;
    say(
        opts,
        format!(
            "hub idle {:.1} MiB, agent idle {:.1} MiB",
            hub_idle[0], agent_idle[0]
        ),
    );
    r.rows
        .push(Row::from_samples("hub idle RSS MiB (no agent)", &hub_idle));
    r.rows.push(Row::from_samples(
        "hub RSS MiB with one idle agent",
        &hub_one,
    ));
    r.rows.push(Row::from_samples(
        "agent idle RSS MiB (connected)",
        &agent_idle,
    ));
    r.notes.push(format!(
        "binaries: {} and {}",
        opts.agent_bin.display(),
        opts.hub_bin.display()
    ));
    Ok(r)
}

async fn sample(pid: u32, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        out.push(rss_kib(pid)? as f64 / 1024.0);
    }
    Ok(out)
}

/// Size in MB of a stripped copy, when `strip` is installed.
fn stripped_size(bin: &Path) -> anyhow::Result<Option<f64>> {
    let dir = TempDir::new("strip")?;
    let out = dir.path().join("stripped");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(bin)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return Ok(None);
    }
    Ok(Some(std::fs::metadata(&out)?.len() as f64 / 1e6))
}
