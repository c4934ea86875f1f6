//! When the periodic refresh of an Application comes round: a base period with jitter, drawn
//! from a small deterministic generator so tests can predict it and a fleet's timers spread.
//!
//! Jitter matters at fleet scale: after a controller restart every Application is refreshed
//! at once, and without jitter they would all come due again together every period, each
//! time a spike on the repo-servers and Git hosts. Spreading each period over ± a fraction
//! breaks the lockstep within a few rounds.

use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState};
use std::time::Duration;

/// SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit generator with one word of state.
///
/// Not for anything secret. It is here because jitter needs cheap, well-spread numbers and a
/// seed a test can fix, and that does not justify a dependency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator that yields the same sequence for the same seed.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the process's hash randomness, different on every call.
    pub fn from_entropy() -> Self {
        Self::new(RandomState::new().hash_one(0x5eed_u64))
    }

    /// A generator for one key's `counter`-th draw: the same key and counter always give the
    /// same number (reproducible schedules), different keys give unrelated ones.
    pub fn for_key<K: Hash + ?Sized>(key: &K, counter: u64) -> Self {
        // `DefaultHasher::new()` has fixed keys, so the seed is stable within a build.
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        counter.hash(&mut hasher);
        Self::new(hasher.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly, so every value is equally likely.
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

/// `base` ± `jitter` × `base`, uniformly: the delay until a periodic refresh.
///
/// `jitter` is a fraction, clamped to `[0, 1]` (NaN counts as 0): with 180 s and 0.1 the
/// delay falls in `[162 s, 198 s)`. Saturates at [`Duration::MAX`] rather than panicking on
/// absurd bases.
pub fn periodic_delay(base: Duration, jitter: f64, rng: &mut SplitMix64) -> Duration {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    // Draw even when jitter is 0, so the sequence a seed produces does not depend on it.
    let factor = 1.0 + jitter * (2.0 * rng.next_f64() - 1.0);
    Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// How often every Application is refreshed without anyone asking: the polling fallback for
/// Git changes no webhook announced, and for drift no watch event revealed.
///
/// The default is 180 s ± 10 %. Argo CD expresses the same thing as `timeout.reconciliation`
/// plus `timeout.reconciliation.jitter` in `argocd-cm`, where the jitter is a maximum delay
/// *added* to the timeout (180 s and no jitter for years; current releases ship 120 s + up to
/// 60 s, still at most 3 minutes). [`Resync::from_argocd`] converts those settings. Argo CD's
/// periodic *hard* refresh (`timeout.hard.reconciliation`, off by default) has no
/// counterpart here: a hard refresh is something a user asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resync {
    /// The middle of the period.
    pub base: Duration,
    /// How far either side of `base` a period may fall, as a fraction of `base` (0 to 1).
    pub jitter: f64,
}

impl Default for Resync {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(180),
            jitter: 0.1,
        }
    }
}

impl Resync {
    /// The same window as Argo CD's `timeout.reconciliation: <timeout>` with
    /// `timeout.reconciliation.jitter: <jitter>`: periods between `timeout` and
    /// `timeout + jitter`.
    pub fn from_argocd(timeout: Duration, jitter: Duration) -> Self {
        let half = jitter / 2;
        let base = timeout.saturating_add(half);
        let jitter = if base.is_zero() {
            0.0
        } else {
            half.as_secs_f64() / base.as_secs_f64()
        };
        Self { base, jitter }
    }

    /// The delay until the next periodic refresh.
    pub fn delay(&self, rng: &mut SplitMix64) -> Duration {
        periodic_delay(self.base, self.jitter, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_keys_differ() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let again: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(first, again);
        assert_ne!(first[0], first[1]);

        let x = SplitMix64::for_key("team-a/guestbook", 0).next_u64();
        assert_eq!(x, SplitMix64::for_key("team-a/guestbook", 0).next_u64());
        assert_ne!(x, SplitMix64::for_key("team-a/guestbook", 1).next_u64());
        assert_ne!(x, SplitMix64::for_key("team-b/guestbook", 0).next_u64());
    }

    #[test]
    fn next_f64_stays_in_unit_interval() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }

    #[test]
    fn periodic_delay_stays_within_jitter_and_spreads() {
        let base = Duration::from_secs(180);
        let mut rng = SplitMix64::new(42);
        let delays: Vec<Duration> = (0..1_000)
            .map(|_| periodic_delay(base, 0.1, &mut rng))
            .collect();
        for d in &delays {
            assert!(
                *d >= Duration::from_secs(162) && *d < Duration::from_secs(198),
                "{d:?}"
            );
        }
        // Both halves of the window are used, not just one side of the base.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(170)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(190)));
    }

    #[test]
    fn periodic_delay_edge_cases() {
        let base = Duration::from_secs(180);
        let mut rng = SplitMix64::new(3);
        assert_eq!(periodic_delay(base, 0.0, &mut rng), base);
        assert_eq!(periodic_delay(base, f64::NAN, &mut rng), base);
        assert_eq!(periodic_delay(base, -1.0, &mut rng), base);
        assert!(periodic_delay(base, 5.0, &mut rng) < Duration::from_secs(360));
        assert_eq!(
            periodic_delay(Duration::ZERO, 0.5, &mut rng),
            Duration::ZERO
        );
        assert!(periodic_delay(Duration::MAX, 1.0, &mut rng) > Duration::from_secs(1 << 60));
    }

    #[test]
    fn argocd_settings_map_to_the_same_window() {
        let r = Resync::from_argocd(Duration::from_secs(120), Duration::from_secs(60));
        assert_eq!(r.base, Duration::from_secs(150));
        assert!((r.jitter - 0.2).abs() < 1e-12);
        let mut rng = SplitMix64::new(9);
        for _ in 0..1_000 {
            let d = r.delay(&mut rng);
            assert!(
                d >= Duration::from_secs(120) && d < Duration::from_secs(180),
                "{d:?}"
            );
        }
        let flat = Resync::from_argocd(Duration::from_secs(180), Duration::ZERO);
        assert_eq!(flat.delay(&mut rng), Duration::from_secs(180));
        assert_eq!(
            Resync::from_argocd(Duration::ZERO, Duration::ZERO).jitter,
            0.0
        );
    }
}
