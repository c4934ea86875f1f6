//! Login rate limiting, as Argo CD does it: after [`MAX_FAILURES`] failed logins for one
//! user name within [`WINDOW`], further attempts for it are refused until the window has
//! passed since the last failure; a success clears the count. Keyed by user name (not by
//! client address) so a distributed guess at one account is slowed too; at most
//! [`MAX_TRACKED`] names are remembered, the stalest forgotten first, so unknown names cannot
//! grow memory without bound.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failed attempts allowed within the window.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, and how long a locked name stays locked.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Names remembered at most.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed logins per user name (one per API replica; a replica's own view is enough to slow
/// guessing, as Argo CD's per-server counter is).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: HashMap<String, Failures>,
}

impl LoginLimiter {
    /// `Err(wait)` when `user` may not try now, with how long until it may.
    pub fn check(&self, user: &str, now: Instant) -> Result<(), Duration> {
        match self.failures.get(user) {
            Some(f) if f.count >= MAX_FAILURES => {
                let until = f.last + WINDOW;
                if now < until {
                    Err(until - now)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Records a failed attempt for `user`.
    pub fn failed(&mut self, user: &str, now: Instant) {
        if !self.failures.contains_key(user) && self.failures.len() >= MAX_TRACKED {
            self.forget_stalest(now);
        }
        let entry = self.failures.entry(user.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) > WINDOW {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// Records a successful login for `user`: its failures are forgotten.
    pub fn succeeded(&mut self, user: &str) {
        self.failures.remove(user);
    }

    fn forget_stalest(&mut self, now: Instant) {
        self.failures
            .retain(|_, f| now.duration_since(f.last) <= WINDOW);
        if self.failures.len() >= MAX_TRACKED
            && let Some(stalest) = self
                .failures
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
        {
            self.failures.remove(&stalest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_locked_after_the_limit_until_the_window_passes() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::default();
        for i in 0..MAX_FAILURES {
            assert!(limiter.check("admin", t0).is_ok(), "attempt {i}");
            limiter.failed("admin", t0 + Duration::from_secs(u64::from(i)));
        }
        let last = t0 + Duration::from_secs(u64::from(MAX_FAILURES - 1));
        let wait = limiter.check("admin", last).expect_err("locked");
        assert_eq!(wait, WINDOW);
        assert!(limiter.check("alice", last).is_ok(), "other names are not");
        assert!(limiter.check("admin", last + WINDOW).is_ok());
    }

    #[test]
    fn success_clears_and_old_failures_expire() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::default();
        for _ in 0..MAX_FAILURES - 1 {
            limiter.failed("bob", t0);
        }
        limiter.succeeded("bob");
        limiter.failed("bob", t0);
        assert!(limiter.check("bob", t0).is_ok());
        // Failures spread wider than the window never lock.
        let mut limiter = LoginLimiter::default();
        for i in 0..20u64 {
            limiter.failed("carol", t0 + WINDOW * 2 * u32::try_from(i).expect("small"));
        }
        assert!(limiter.check("carol", t0 + WINDOW * 40).is_ok());
    }

    #[test]
    fn memory_is_bounded_by_the_names_tracked() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::default();
        for i in 0..MAX_TRACKED + 50 {
            limiter.failed(&format!("user-{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert!(limiter.failures.len() <= MAX_TRACKED);
        assert!(
            limiter
                .failures
                .contains_key(&format!("user-{}", MAX_TRACKED + 49))
        );
    }
}
