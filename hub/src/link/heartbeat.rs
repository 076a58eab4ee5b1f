//! The hub's one heartbeat sweep over every live link: it pings agents
//! that have been quiet, drops links that fell silent, and periodically
//! records last-seen times and re-checks the tokens the links authenticated
//! with.
//!
//! One task for the whole hub instead of timers per link. With a ping timer
//! and a silence watchdog in every link, 10,000 idle agents cost two timer
//! wake-ups per link per ping interval, spread evenly over time so the
//! runtime's workers park and unpark between nearly every one, plus two
//! store round trips per link every 30 s. The sweep reads each link's
//! last-seen clock, a few atomics per link per round, and batches the store
//! work into a few statements.
//!
//! # Ping policy
//! A ping exists to hear from the agent. A link is pinged when nothing came
//! from it for a whole ping interval and no ping went out in that time, so
//! an idle agent is pinged every interval (to within a tenth of it) and a
//! link that carries traffic, or an agent that pings on its own, costs no
//! extra frames for liveness. Every link is also pinged right after it
//! connects and at least every [`RTT_EVERY`] intervals, so its round-trip
//! time (shown per environment) is measured early and stays current.
//! Silence past the timeout closes the link either way.
//!
//! The sweep never touches a socket and never waits on one link: a ping is
//! queued with `try_send` (a full writer queue skips that ping; the link is
//! then busy and its silence is judged by what the agent sends), and a
//! silent or no longer authorised link is closed through
//! [`LinkHandle::close`], after which its session unregisters it.

use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::{now_ms, LinkHandle};
use crate::state::AppState;

/// A link's round trip is re-measured at least every this many ping
/// intervals, however busy it is.
const RTT_EVERY: i64 = 4;

/// How often last-seen times are written and tokens re-checked: a third
/// of the silence timeout, 1–30 s (30 s at the default 90 s). A token
/// revoked or an environment deleted by another process (the admin CLI)
/// thus ends its link within that.
fn persist_period(silence_timeout: Duration) -> Duration {
    (silence_timeout / 3).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Starts the sweep; it stops with the hub's shutdown token.
pub(crate) fn spawn(state: &AppState) {
    let state = state.clone();
    let tracker = state.tracker.clone();
    tracker.spawn(run(state));
}

/// How often the sweep runs: a tenth of the ping interval (so pings leave
/// on time to within a tenth), or of the silence timeout when that is
/// shorter (a silent link is dropped within the timeout plus a tenth of
/// it), between 100 ms and 5 s.
fn sweep_period(ping_interval: Duration, silence_timeout: Duration) -> Duration {
    (ping_interval.min(silence_timeout) / 10)
        .clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Every how many sweeps an event recurs (at least every sweep).
fn every_ticks(every: Duration, period: Duration) -> u64 {
    let ticks = (every.as_millis() + period.as_millis() / 2) / period.as_millis().max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

async fn run(state: AppState) {
    let settings = state.settings.clone();
    let period = sweep_period(settings.ping_interval, settings.silence_timeout);
    let ping_ms = i64::try_from(settings.ping_interval.as_millis()).unwrap_or(i64::MAX);
    let persist_ticks = every_ticks(persist_period(settings.silence_timeout), period);
    let silence_ms = i64::try_from(settings.silence_timeout.as_millis()).unwrap_or(i64::MAX);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut round: u64 = 0;
    // The store work runs beside the sweep, one batch at a time, so a slow
    // disk never delays pings or silence checks.
    let mut persisting: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        round += 1;
        let links = state.links.snapshot();
        let now = now_ms();
        for link in &links {
            if link.is_closed() {
                continue;
            }
            let silent_ms = now - link.last_seen_ms();
            if silent_ms > silence_ms {
                link.close(&format!(
                    "agent silent for {}s (no frame, no pong): link presumed dead",
                    silent_ms / 1000
                ));
            } else {
                let since_ping = now - link.last_ping_ms();
                let quiet = silent_ms >= ping_ms && since_ping >= ping_ms;
                if quiet || since_ping >= ping_ms.saturating_mul(RTT_EVERY) {
                    link.send_ping(now);
                }
            }
        }
        if round.is_multiple_of(persist_ticks)
            && persisting.as_ref().is_none_or(|batch| batch.is_finished())
        {
            persisting = Some(state.tracker.spawn(persist_and_check(state.clone(), links)));
        }
    }
}

/// Records last-seen of every live link in one batch, and closes the links
/// whose token was revoked, expired or deleted since they connected.
async fn persist_and_check(state: AppState, links: Vec<LinkHandle>) {
    let live: Vec<&LinkHandle> = links.iter().filter(|l| !l.is_closed()).collect();
    if live.is_empty() {
        return;
    }
    let seen: Vec<(i64, i64)> = live
        .iter()
        .map(|l| (l.env_id(), l.last_seen_ms() / 1000))
        .collect();
    if let Err(err) = state.store.touch_agents(&seen).await {
        tracing::warn!(%err, links = seen.len(), "recording agents' last-seen failed");
    }
    let mut tokens: Vec<i64> = live.iter().map(|l| l.token_id()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    let problems = match state.store.unusable_tokens(&tokens).await {
        Ok(problems) => problems,
        Err(err) => {
            tracing::warn!(%err, "re-checking the links' tokens failed; will retry");
            return;
        }
    };
    for (token_id, problem) in problems {
        for link in live.iter().filter(|l| l.token_id() == token_id) {
            link.close(&problem.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_runs_at_a_tenth_of_the_ping_interval_or_silence_timeout() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(sweep_period(s(5), s(90)), ms(500));
        assert_eq!(sweep_period(s(15), s(90)), s(1) + ms(500));
        assert_eq!(sweep_period(s(120), s(90)), s(5));
        assert_eq!(sweep_period(s(1), s(3)), ms(100));
        assert_eq!(sweep_period(s(2), ms(200)), ms(100));
    }

    #[test]
    fn the_store_batch_runs_every_third_of_the_silence_timeout() {
        let s = Duration::from_secs;
        assert_eq!(persist_period(s(90)), s(30));
        assert_eq!(persist_period(s(3600)), s(30));
        assert_eq!(persist_period(s(3)), s(1));
        assert_eq!(persist_period(s(1)), s(1));
    }

    #[test]
    fn recurring_work_is_rounded_to_whole_sweeps() {
        let ms = Duration::from_millis;
        assert_eq!(every_ticks(ms(1000), ms(300)), 3);
        assert_eq!(every_ticks(ms(5000), ms(5000)), 1);
        assert_eq!(every_ticks(ms(30_000), ms(5000)), 6);
        assert_eq!(every_ticks(ms(100), ms(300)), 1);
    }
}
