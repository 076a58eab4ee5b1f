//! Capped exponential backoff with jitter for the event stream's reconnects.
//!
//! It only computes delays; it never sleeps. The caller resets it once a
//! stream has stayed healthy for a while, so one Docker restart after a
//! week of uptime reconnects within a second, while a daemon that keeps
//! refusing is asked at most every `max`.

use std::time::Duration;

use rand::Rng;

/// Delays that double from `min` up to `max`, each with "equal jitter"
/// (a random point in the upper half of the current step), so many agents
/// restarted together do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Backoff from `min` doubling to `max` (`max` is raised to `min` if lower).
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The next delay, in `[step/2, step]`; then doubles the step, capped.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        let half = step / 2;
        let spread = (step - half).as_millis() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=spread)
        };
        half + Duration::from_millis(jitter)
    }

    /// Back to the first step (after a healthy stream).
    pub(crate) fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let steps = [1, 2, 4, 8, 16, 30, 30, 30];
        for s in steps {
            let step = Duration::from_secs(s);
            let d = b.next_delay();
            assert!(d >= step / 2 && d <= step, "{d:?} not in [{s}/2, {s}] s");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_secs(8), Duration::from_secs(30));
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 1, "50 delays were all equal: no jitter");
    }
}
