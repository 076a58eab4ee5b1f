//! Two limits on the agent endpoint, both bounded maps behind a std mutex
//! (no await inside).
//!
//! - [`FailedAuth`]: per source IP. The first `free` failures cost nothing;
//!   each further one blocks the IP for 1 s, 2 s, 4 s, … capped at
//!   `max_delay` (30 s by default). A correct agent behind the same IP is
//!   never locked out for minutes, and a success clears the record.
//!   Records idle for [`FORGET_AFTER`] are forgotten; the map holds at most
//!   `capacity` IPs, evicting the stalest when full.
//! - [`ReconnectThrottle`]: per environment, at most `per_minute` accepted
//!   connections in any 60 s window; beyond it the agent is told to retry
//!   after the window frees a slot (`retryAfter`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A failed-auth record idle this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Window of the reconnect throttle.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Escalating delays after failed authentications, per source IP.
#[derive(Debug)]
pub struct FailedAuth {
    map: Mutex<HashMap<IpAddr, Record>>,
    free: u32,
    max_delay: Duration,
    capacity: usize,
}

impl FailedAuth {
    /// A limiter allowing `free` failures before delays start.
    pub fn new(free: u32, max_delay: Duration, capacity: usize) -> Self {
        FailedAuth {
            map: Mutex::new(HashMap::new()),
            free,
            max_delay,
            capacity: capacity.max(1),
        }
    }

    /// `Err(retry_after)` while `ip` is blocked.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure; returns the block it imposes, if any.
    pub fn failure(&self, ip: IpAddr) -> Option<Duration> {
        self.failure_at(ip, Instant::now())
    }

    fn failure_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&ip) && map.len() >= self.capacity {
            map.retain(|_, r| now.duration_since(r.last) < FORGET_AFTER);
            if map.len() >= self.capacity {
                if let Some(stalest) = map.iter().min_by_key(|(_, r)| r.last).map(|(ip, _)| *ip) {
                    map.remove(&stalest);
                }
            }
        }
        let record = map.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(record.last) >= FORGET_AFTER {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = now;
        if record.failures <= self.free {
            return None;
        }
        let step = (record.failures - self.free - 1).min(16);
        let delay = Duration::from_secs(1u64 << step).min(self.max_delay);
        record.blocked_until = Some(now + delay);
        Some(delay)
    }

    /// Clears the record of `ip` after a successful authentication.
    pub fn success(&self, ip: IpAddr) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&ip);
    }

    /// IPs currently tracked.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Nothing tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// At most `per_minute` accepted connections per environment per minute.
#[derive(Debug)]
pub struct ReconnectThrottle {
    map: Mutex<HashMap<i64, VecDeque<Instant>>>,
    per_minute: usize,
}

impl ReconnectThrottle {
    /// A throttle allowing `per_minute` connections per environment.
    pub fn new(per_minute: usize) -> Self {
        ReconnectThrottle {
            map: Mutex::new(HashMap::new()),
            per_minute: per_minute.max(1),
        }
    }

    /// Records a connection of `env_id`, or `Err(retry_after)` when over.
    pub fn admit(&self, env_id: i64) -> Result<(), Duration> {
        self.admit_at(env_id, Instant::now())
    }

    fn admit_at(&self, env_id: i64, now: Instant) -> Result<(), Duration> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: drop environments with no connection in the window.
        if map.len() > 10_000 {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < RECONNECT_WINDOW)
            });
        }
        let times = map.entry(env_id).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RECONNECT_WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= self.per_minute {
            let oldest = times.front().copied().unwrap_or(now);
            let wait = RECONNECT_WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(wait.max(Duration::from_secs(1)));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn delays_escalate_and_are_capped() {
        let limiter = FailedAuth::new(3, Duration::from_secs(30), 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.failure_at(ip(1), t0), None);
        }
        assert!(limiter.check_at(ip(1), t0).is_ok());
        assert_eq!(limiter.failure_at(ip(1), t0), Some(Duration::from_secs(1)));
        assert_eq!(limiter.failure_at(ip(1), t0), Some(Duration::from_secs(2)));
        assert_eq!(limiter.failure_at(ip(1), t0), Some(Duration::from_secs(4)));
        for _ in 0..20 {
            limiter.failure_at(ip(1), t0);
        }
        let wait = limiter.check_at(ip(1), t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(30), "never more than the cap");
        assert!(limiter
            .check_at(ip(1), t0 + Duration::from_secs(31))
            .is_ok());
        assert!(limiter.check_at(ip(2), t0).is_ok(), "other IPs unaffected");
        limiter.success(ip(1));
        assert!(limiter.check_at(ip(1), t0).is_ok());
    }

    #[test]
    fn records_are_forgotten_and_the_map_is_bounded() {
        let limiter = FailedAuth::new(0, Duration::from_secs(30), 3);
        let t0 = Instant::now();
        for n in 0..10 {
            limiter.failure_at(ip(n), t0 + Duration::from_secs(n as u64));
        }
        assert!(limiter.len() <= 3);
        let later = t0 + FORGET_AFTER + Duration::from_secs(60);
        assert_eq!(
            limiter.failure_at(ip(9), later),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn reconnect_storm_is_throttled_per_environment() {
        let throttle = ReconnectThrottle::new(3);
        let t0 = Instant::now();
        for s in 0..3 {
            assert!(throttle.admit_at(1, t0 + Duration::from_secs(s)).is_ok());
        }
        let wait = throttle
            .admit_at(1, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            throttle.admit_at(2, t0).is_ok(),
            "other environments unaffected"
        );
        assert!(throttle.admit_at(1, t0 + Duration::from_secs(61)).is_ok());
    }
}
