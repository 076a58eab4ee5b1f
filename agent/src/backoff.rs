//! Reconnect delays: capped exponential backoff with jitter.
//!
//! This module owns the arithmetic only: the first delay is the base, each
//! failure doubles it up to the cap, and each delay is drawn from
//! [75 %, 100 %] of that value so that many agents cut off by the same hub
//! restart do not come back in lockstep. A welcome resets it. It never
//! sleeps; the link does, in a `select!` with shutdown.

use std::time::Duration;

/// Backoff state of one reconnect loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base`, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// Forget past failures (after a welcome).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next attempt; counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let d = delay_for(self.failures, self.base, self.max, rand::random::<f64>());
        self.failures = self.failures.saturating_add(1);
        d
    }
}

/// The delay after `failures` failures, with `r` in [0, 1) choosing the
/// jitter: `min(base × 2^failures, max) × (1 − r/4)`.
pub fn delay_for(failures: u32, base: Duration, max: Duration, r: f64) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(30));
    let ceiling = base.saturating_mul(factor).min(max);
    let r = if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling.mul_f64(1.0 - r / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_up_to_the_cap() {
        let max = Duration::from_secs(60);
        let seq: Vec<u64> = (0..9)
            .map(|n| delay_for(n, S, max, 0.0).as_secs())
            .collect();
        assert_eq!(seq, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay_for(u32::MAX, S, max, 0.0), max);
    }

    #[test]
    fn jitter_stays_within_a_quarter_below() {
        let max = Duration::from_secs(60);
        assert_eq!(delay_for(2, S, max, 1.0), Duration::from_secs(3));
        for n in 0..10 {
            let hi = delay_for(n, S, max, 0.0);
            let lo = delay_for(n, S, max, 0.999);
            assert!(lo <= hi && lo >= hi.mul_f64(0.75), "{n}: {lo:?} {hi:?}");
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(S, Duration::from_secs(8));
        for _ in 0..5 {
            b.next_delay();
        }
        assert!(b.next_delay() > Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay() <= S);
        assert_eq!(b.failures(), 1);
    }
}
