//! The queue's rules as a plain state machine: every method takes `now`, nothing sleeps,
//! locks or spawns, so tests walk it through any interleaving without a clock and the async
//! [`WorkQueue`](super::WorkQueue) only adds waiting.
//!
//! Indexing: `queued` holds one entry per key; each entry sits in exactly one of two ordered
//! maps — `ready` (due, ordered by priority then due time then arrival) or `delayed`
//! (ordered by due time) — so handing out the next item and finding the next deadline are
//! both `O(log n)` at fleet sizes of tens of thousands of Applications.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use super::resync::SplitMix64;
use super::{Enqueued, Outcome, Priority, QueueConfig, Request};

/// What a key is wanted for: the merge of every request since it was last handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Want {
    priority: Priority,
    not_before: Option<Instant>,
    /// When it became (or becomes) due. Orders entries of one priority: the one waiting
    /// longest goes first, so a burst of new requests cannot starve an old one.
    due: Instant,
}

impl Want {
    fn new(request: Request, now: Instant) -> Self {
        Self {
            priority: request.priority,
            not_before: request.not_before,
            due: request.not_before.unwrap_or(now),
        }
    }

    fn at(priority: Priority, at: Instant) -> Self {
        Self {
            priority,
            not_before: Some(at),
            due: at,
        }
    }

    /// The strongest reason and the earliest time: a hard refresh is never downgraded by a
    /// later periodic request, and a request for "now" is not held back by an earlier one
    /// for "later".
    fn merge(self, other: Self) -> Self {
        Self {
            priority: self.priority.max(other.priority),
            not_before: match (self.not_before, other.not_before) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            },
            due: self.due.min(other.due),
        }
    }

    fn request(self) -> Request {
        Request {
            priority: self.priority,
            not_before: self.not_before,
        }
    }
}

fn merge(earlier: Option<Want>, want: Want) -> Want {
    earlier.map_or(want, |earlier| earlier.merge(want))
}

/// `now + after`, saturating far in the future instead of panicking on an absurd duration.
fn later(now: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    now.checked_add(after)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

#[derive(Debug)]
struct Queued {
    want: Want,
    /// Arrival order, the last tie-breaker, and what makes index keys unique.
    seq: u64,
    /// Which index holds the entry.
    ready: bool,
}

#[derive(Debug)]
struct Index<K> {
    ready: BTreeMap<(Reverse<Priority>, Instant, u64), K>,
    delayed: BTreeMap<(Instant, u64), K>,
}

impl<K> Index<K> {
    fn link(&mut self, key: K, queued: &mut Queued, now: Instant) {
        let Want { priority, due, .. } = queued.want;
        queued.ready = due <= now;
        if queued.ready {
            self.ready.insert((Reverse(priority), due, queued.seq), key);
        } else {
            self.delayed.insert((due, queued.seq), key);
        }
    }

    fn unlink(&mut self, queued: &Queued) {
        let Want { priority, due, .. } = queued.want;
        if queued.ready {
            self.ready.remove(&(Reverse(priority), due, queued.seq));
        } else {
            self.delayed.remove(&(due, queued.seq));
        }
    }
}

/// A key a worker holds.
#[derive(Debug)]
struct CheckedOut {
    /// The reason it was handed out for; a failed attempt is retried for the same reason.
    priority: Priority,
    since: Instant,
    /// Requests that arrived meanwhile, merged; queued when the worker is done.
    pending: Option<Want>,
    /// [`QueueState::remove`] was called meanwhile: no retry, no periodic refresh.
    removed: bool,
}

/// A key whose last attempts failed. Only failing keys have one, so the map stays small.
#[derive(Debug)]
struct Failing {
    failures: u32,
    /// The end of the current backoff: the earliest a retry or background request may run.
    until: Instant,
}

/// What [`QueueState::next`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next<K> {
    /// A key to work on. It stays checked out until [`QueueState::done`].
    Ready {
        /// The key.
        key: K,
        /// Every request since it was last handed out, merged.
        request: Request,
        /// How long it had been due.
        waited: Duration,
    },
    /// Nothing is due; the earliest delayed entry comes due at this instant.
    WaitUntil(Instant),
    /// Nothing is queued.
    Idle,
    /// Shut down, and nothing due is left.
    Closed,
}

/// What [`QueueState::done`] did with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// How long the worker held the key.
    pub worked: Duration,
    /// Consecutive failures of the key, this one included (0 after a success).
    pub failures: u32,
    /// The backoff before the retry, when the key failed and was re-queued.
    pub retry_in: Option<Duration>,
    /// Whether the key went back into the queue (a retry, a request that arrived while it
    /// was checked out, or its next periodic refresh).
    pub requeued: bool,
}

/// The work queue's state and rules, without any waiting; see the [module docs](super).
#[derive(Debug)]
pub struct QueueState<K> {
    config: QueueConfig,
    queued: HashMap<K, Queued>,
    index: Index<K>,
    checked_out: HashMap<K, CheckedOut>,
    failing: HashMap<K, Failing>,
    next_seq: u64,
    rng: SplitMix64,
    closed: bool,
}

impl<K: Clone + Eq + Hash + Debug> QueueState<K> {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config,
            queued: HashMap::new(),
            index: Index {
                ready: BTreeMap::new(),
                delayed: BTreeMap::new(),
            },
            checked_out: HashMap::new(),
            failing: HashMap::new(),
            next_seq: 0,
            rng: config
                .seed
                .map_or_else(SplitMix64::from_entropy, SplitMix64::new),
            closed: false,
        }
    }

    /// Asks for `key` to be processed; see the [module docs](super) for how requests merge.
    pub fn enqueue(&mut self, key: K, request: Request, now: Instant) -> Enqueued {
        if self.closed {
            return Enqueued::Refused;
        }
        let want = self.gate(&key, Want::new(request, now));
        if let Some(out) = self.checked_out.get_mut(&key) {
            out.pending = Some(merge(out.pending, want));
            return Enqueued::Pending;
        }
        self.insert(key, want, now)
    }

    /// Hands out the most urgent due key and checks it out, or says how long to wait.
    pub fn next(&mut self, now: Instant) -> Next<K> {
        self.promote(now);
        if let Some((_, key)) = self.index.ready.pop_first() {
            let queued = self
                .queued
                .remove(&key)
                .expect("every indexed key has a queued entry");
            self.checked_out.insert(
                key.clone(),
                CheckedOut {
                    priority: queued.want.priority,
                    since: now,
                    pending: None,
                    removed: false,
                },
            );
            return Next::Ready {
                key,
                request: queued.want.request(),
                waited: now.saturating_duration_since(queued.want.due),
            };
        }
        if self.closed {
            // Shutdown emptied `delayed` and nothing can be added since.
            return Next::Closed;
        }
        match self.index.delayed.first_key_value() {
            Some(((due, _), _)) => Next::WaitUntil(*due),
            None => Next::Idle,
        }
    }

    /// Checks `key` back in with the worker's `outcome`; `None` if it was not checked out.
    pub fn done(&mut self, key: &K, outcome: Outcome, now: Instant) -> Option<Finished> {
        let out = self.checked_out.remove(key)?;
        let worked = now.saturating_duration_since(out.since);
        let outcome = if out.removed {
            Outcome::Removed
        } else {
            outcome
        };
        let mut retry_in = None;
        let next = match outcome {
            Outcome::Succeeded => {
                self.failing.remove(key);
                match self.config.resync {
                    Some(resync) => {
                        let at = later(now, resync.delay(&mut self.rng));
                        Some(merge(out.pending, Want::at(Priority::Periodic, at)))
                    }
                    None => out.pending,
                }
            }
            Outcome::RequeueAfter(after) => {
                self.failing.remove(key);
                let at = later(now, after);
                // The controller's own follow-up of what it just did (a sync's result, a
                // retry falling due): ahead of background work, like a refresh.
                Some(merge(out.pending, Want::at(Priority::Refresh, at)))
            }
            Outcome::Failed => {
                let failing = self.failing.entry(key.clone()).or_insert(Failing {
                    failures: 0,
                    until: now,
                });
                failing.failures = failing.failures.saturating_add(1);
                let backoff = self.config.backoff.delay(failing.failures);
                failing.until = later(now, backoff);
                let retry = Want::at(out.priority, failing.until);
                retry_in = Some(backoff);
                // Background requests that arrived during the attempt wait out the backoff
                // too; explicit ones still go at once.
                let pending = out.pending.map(|want| self.gate(key, want));
                Some(merge(pending, retry))
            }
            // Pending requests are newer than whatever made the key go away (an app deleted
            // and created again), so they still count.
            Outcome::Removed => {
                self.failing.remove(key);
                out.pending
            }
        };
        let next = if self.closed { None } else { next };
        let failures = self.failing.get(key).map_or(0, |f| f.failures);
        if let Some(want) = next {
            self.insert(key.clone(), want, now);
        }
        Some(Finished {
            worked,
            failures,
            retry_in: retry_in.filter(|_| next.is_some()),
            requeued: next.is_some(),
        })
    }

    /// Forgets `key`: its queued entry, its backoff, and — if a worker holds it — the
    /// requests that arrived meanwhile and its retry or periodic refresh. For an Application
    /// that was deleted or whose cluster moved to another shard. Returns whether the queue
    /// knew the key.
    pub fn remove(&mut self, key: &K) -> bool {
        let mut known = self.failing.remove(key).is_some();
        if let Some(queued) = self.queued.remove(key) {
            self.index.unlink(&queued);
            known = true;
        }
        if let Some(out) = self.checked_out.get_mut(key) {
            out.removed = true;
            out.pending = None;
            known = true;
        }
        known
    }

    /// Stops taking requests and drops what is not yet due; see the [module docs](super).
    /// Returns how many delayed entries were dropped.
    pub fn shutdown(&mut self, now: Instant) -> usize {
        self.closed = true;
        self.promote(now);
        let dropped = std::mem::take(&mut self.index.delayed);
        for key in dropped.values() {
            self.queued.remove(key);
        }
        for out in self.checked_out.values_mut() {
            out.pending = None;
        }
        dropped.len()
    }

    /// Entries waiting, due or delayed.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Whether no entry is waiting (keys may still be checked out).
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Keys checked out by workers.
    pub fn in_flight(&self) -> usize {
        self.checked_out.len()
    }

    /// Consecutive failures of `key` (0 if its last attempt succeeded or it never ran).
    pub fn failures(&self, key: &K) -> u32 {
        self.failing.get(key).map_or(0, |f| f.failures)
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The backoff gate: a background request for a failing key waits until its backoff
    /// ends, so watch events or timers cannot drive a failing (or fighting) key faster than
    /// its backoff allows. Explicit requests pass: someone is waiting for them.
    fn gate(&self, key: &K, mut want: Want) -> Want {
        if want.priority == Priority::Periodic
            && let Some(failing) = self.failing.get(key)
            && failing.until > want.due
        {
            want.due = failing.until;
            want.not_before = Some(failing.until);
        }
        want
    }

    fn insert(&mut self, key: K, want: Want, now: Instant) -> Enqueued {
        if let Some(queued) = self.queued.get_mut(&key) {
            self.index.unlink(queued);
            queued.want = queued.want.merge(want);
            self.index.link(key, queued, now);
            Enqueued::Merged
        } else {
            let mut queued = Queued {
                want,
                seq: self.next_seq,
                ready: false,
            };
            self.next_seq += 1;
            self.index.link(key.clone(), &mut queued, now);
            self.queued.insert(key, queued);
            Enqueued::Added
        }
    }

    /// Moves delayed entries that have come due into the ready index.
    fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.index.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(queued) = self.queued.get_mut(&key) {
                self.index.link(key, queued, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Backoff, Resync};
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn config() -> QueueConfig {
        QueueConfig {
            resync: None,
            seed: Some(1),
            ..QueueConfig::default()
        }
    }

    fn take<K: Clone + Eq + Hash + Debug>(q: &mut QueueState<K>, now: Instant) -> (K, Request) {
        match q.next(now) {
            Next::Ready { key, request, .. } => (key, request),
            other => panic!("expected an item, got {other:?}"),
        }
    }

    #[test]
    fn hundred_requests_for_one_key_make_one_item() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        assert_eq!(q.enqueue("a", Request::periodic(), t0), Enqueued::Added);
        for _ in 0..99 {
            assert_eq!(q.enqueue("a", Request::periodic(), t0), Enqueued::Merged);
        }
        assert_eq!(q.len(), 1);
        assert_eq!(take(&mut q, t0).0, "a");
        assert_eq!(q.next(t0), Next::Idle);
    }

    #[test]
    fn higher_priority_first_then_longest_due() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        q.enqueue("periodic-1", Request::periodic(), t0);
        q.enqueue("refresh-1", Request::refresh(), t0 + secs(1));
        q.enqueue("periodic-2", Request::periodic(), t0 + secs(2));
        q.enqueue("hard", Request::hard_refresh(), t0 + secs(3));
        q.enqueue("refresh-2", Request::refresh(), t0 + secs(4));
        let now = t0 + secs(5);
        let order: Vec<_> = (0..5).map(|_| take(&mut q, now).0).collect();
        assert_eq!(
            order,
            ["hard", "refresh-1", "refresh-2", "periodic-1", "periodic-2"]
        );
    }

    #[test]
    fn a_delayed_entry_ranks_by_when_it_came_due() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        // Enqueued first but due last.
        q.enqueue(
            "retry",
            Request::periodic().delayed_until(t0 + secs(10)),
            t0,
        );
        q.enqueue("timer", Request::periodic(), t0 + secs(5));
        let now = t0 + secs(20);
        assert_eq!(take(&mut q, now).0, "timer");
        assert_eq!(take(&mut q, now).0, "retry");
    }

    #[test]
    fn merging_keeps_the_strongest_reason_and_earliest_time() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());

        q.enqueue("hard", Request::hard_refresh(), t0);
        q.enqueue("hard", Request::periodic(), t0);
        q.enqueue("hard", Request::refresh(), t0);
        let (_, request) = take(&mut q, t0);
        assert_eq!(request.priority, Priority::HardRefresh);
        assert!(request.bypasses_manifest_cache());

        // A periodic refresh scheduled for later is overtaken by a refresh for now.
        q.enqueue("app", Request::periodic().delayed_until(t0 + secs(180)), t0);
        assert_eq!(q.next(t0), Next::WaitUntil(t0 + secs(180)));
        q.enqueue("app", Request::refresh(), t0 + secs(1));
        assert_eq!(take(&mut q, t0 + secs(1)), ("app", Request::refresh()));

        // A request for later does not postpone one for now.
        q.enqueue("b", Request::periodic(), t0);
        q.enqueue("b", Request::refresh().delayed_until(t0 + secs(60)), t0);
        let (_, request) = take(&mut q, t0);
        assert_eq!(request, Request::refresh());
    }

    #[test]
    fn a_checked_out_key_is_not_handed_out_again_and_requeues_once() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        q.enqueue("a", Request::periodic(), t0);
        assert_eq!(take(&mut q, t0).0, "a");

        assert_eq!(q.enqueue("a", Request::refresh(), t0), Enqueued::Pending);
        assert_eq!(
            q.enqueue("a", Request::hard_refresh(), t0),
            Enqueued::Pending
        );
        assert_eq!(q.enqueue("a", Request::periodic(), t0), Enqueued::Pending);
        assert_eq!(q.next(t0), Next::Idle);
        assert_eq!((q.len(), q.in_flight()), (0, 1));

        let finished = q.done(&"a", Outcome::Succeeded, t0 + secs(2));
        assert_eq!(
            finished,
            Some(Finished {
                worked: secs(2),
                failures: 0,
                retry_in: None,
                requeued: true,
            })
        );
        assert_eq!(q.len(), 1);
        let (key, request) = take(&mut q, t0 + secs(2));
        assert_eq!((key, request.priority), ("a", Priority::HardRefresh));
        assert!(q.done(&"a", Outcome::Succeeded, t0 + secs(3)).is_some());
        assert_eq!(q.next(t0 + secs(3)), Next::Idle);

        // `done` for a key nobody holds changes nothing.
        assert_eq!(q.done(&"a", Outcome::Failed, t0 + secs(3)), None);
        assert_eq!(q.failures(&"a"), 0);
    }

    #[test]
    fn backoff_doubles_caps_and_resets_on_success() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        q.enqueue("a", Request::refresh(), t0);
        let mut now = t0;
        let mut backoffs = Vec::new();
        for _ in 0..11 {
            let (_, request) = take(&mut q, now);
            assert_eq!(
                request.priority,
                Priority::Refresh,
                "retried for the same reason"
            );
            let finished = q.done(&"a", Outcome::Failed, now).expect("checked out");
            let backoff = finished.retry_in.expect("retried");
            backoffs.push(backoff.as_secs());
            assert_eq!(
                q.next(now + backoff - Duration::from_millis(1)),
                Next::WaitUntil(now + backoff)
            );
            now += backoff;
        }
        assert_eq!(backoffs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(q.failures(&"a"), 11);

        take(&mut q, now);
        let finished = q.done(&"a", Outcome::Succeeded, now).expect("checked out");
        assert_eq!((finished.failures, finished.requeued), (0, false));

        q.enqueue("a", Request::refresh(), now);
        take(&mut q, now);
        let finished = q.done(&"a", Outcome::Failed, now).expect("checked out");
        assert_eq!(finished.retry_in, Some(secs(1)));
    }

    #[test]
    fn backoff_holds_back_background_requests_but_not_explicit_ones() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        q.enqueue("a", Request::periodic(), t0);
        take(&mut q, t0);
        q.enqueue("a", Request::periodic(), t0); // pending during the attempt
        let finished = q.done(&"a", Outcome::Failed, t0).expect("checked out");
        assert_eq!(finished.retry_in, Some(secs(1)));
        // The retry and the gated periodic request merged into one entry due at 1 s.
        assert_eq!(q.len(), 1);
        assert_eq!(q.next(t0), Next::WaitUntil(t0 + secs(1)));
        q.enqueue("a", Request::periodic(), t0);
        assert_eq!(q.next(t0), Next::WaitUntil(t0 + secs(1)));

        // A user's refresh goes at once.
        q.enqueue("a", Request::refresh(), t0);
        assert_eq!(take(&mut q, t0), ("a", Request::refresh()));
    }

    #[test]
    fn requeue_after_resets_backoff_and_schedules_a_refresh() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        q.enqueue("a", Request::refresh(), t0);
        take(&mut q, t0);
        q.done(&"a", Outcome::Failed, t0);
        take(&mut q, t0 + secs(1));
        let finished = q
            .done(&"a", Outcome::RequeueAfter(secs(30)), t0 + secs(1))
            .expect("checked out");
        assert_eq!((finished.failures, finished.requeued), (0, true));
        assert_eq!(q.next(t0 + secs(1)), Next::WaitUntil(t0 + secs(31)));
        assert_eq!(
            take(&mut q, t0 + secs(31)).1,
            Request::refresh().delayed_until(t0 + secs(31))
        );
    }

    #[test]
    fn success_schedules_the_next_periodic_refresh_with_jitter() {
        let t0 = Instant::now();
        let mut q = QueueState::new(QueueConfig {
            resync: Some(Resync::default()),
            seed: Some(7),
            ..QueueConfig::default()
        });
        let keys = ["a", "b", "c", "d"];
        for key in keys {
            q.enqueue(key, Request::refresh(), t0);
        }
        let mut dues = Vec::new();
        for _ in keys {
            let (key, _) = take(&mut q, t0);
            q.done(&key, Outcome::Succeeded, t0);
        }
        for _ in keys {
            let Next::WaitUntil(due) = q.next(t0) else {
                panic!("expected a delayed entry");
            };
            let (_, request) = take(&mut q, due);
            assert_eq!(request.priority, Priority::Periodic);
            dues.push(due - t0);
        }
        for due in &dues {
            assert!(*due >= secs(162) && *due < secs(198), "{due:?}");
        }
        dues.dedup();
        assert_eq!(dues.len(), keys.len(), "jitter spreads the timers");
    }

    #[test]
    fn remove_forgets_a_key_and_its_follow_ups() {
        let t0 = Instant::now();
        let mut q = QueueState::new(QueueConfig {
            resync: Some(Resync::default()),
            ..config()
        });
        q.enqueue("queued", Request::refresh(), t0);
        assert!(q.remove(&"queued"));
        assert!(!q.remove(&"queued"));
        assert_eq!(q.next(t0), Next::Idle);

        q.enqueue("held", Request::refresh(), t0);
        take(&mut q, t0);
        q.enqueue("held", Request::refresh(), t0);
        assert!(q.remove(&"held"));
        let finished = q.done(&"held", Outcome::Failed, t0).expect("checked out");
        assert_eq!((finished.requeued, finished.failures), (false, 0));
        assert!(q.is_empty());

        // Re-created while a worker found it gone: the new request survives.
        q.enqueue("again", Request::refresh(), t0);
        take(&mut q, t0);
        q.enqueue("again", Request::refresh(), t0);
        let finished = q.done(&"again", Outcome::Removed, t0).expect("checked out");
        assert!(finished.requeued);
        assert_eq!(take(&mut q, t0).0, "again");
    }

    #[test]
    fn shutdown_drains_due_entries_and_drops_the_rest() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        q.enqueue("a", Request::periodic(), t0);
        q.enqueue("b", Request::refresh(), t0);
        q.enqueue("later", Request::refresh().delayed_until(t0 + secs(5)), t0);
        q.enqueue("held", Request::refresh(), t0);
        assert_eq!(take(&mut q, t0).0, "b");
        assert_eq!(take(&mut q, t0).0, "held");
        assert_eq!(q.enqueue("held", Request::refresh(), t0), Enqueued::Pending);

        assert_eq!(q.shutdown(t0), 1);
        assert!(q.is_closed());
        assert_eq!(
            q.enqueue("c", Request::hard_refresh(), t0),
            Enqueued::Refused
        );
        assert_eq!(take(&mut q, t0).0, "a");
        assert_eq!(q.next(t0), Next::Closed);
        // Work in flight finishes, but nothing goes back in.
        let finished = q.done(&"held", Outcome::Failed, t0).expect("checked out");
        assert_eq!((finished.requeued, finished.retry_in), (false, None));
        assert!(q.done(&"b", Outcome::Succeeded, t0).is_some());
        assert!(q.done(&"a", Outcome::RequeueAfter(secs(1)), t0).is_some());
        assert_eq!(q.next(t0 + secs(10)), Next::Closed);
        assert_eq!((q.len(), q.in_flight()), (0, 0));
    }

    #[test]
    fn backoff_delays() {
        let b = Backoff::default();
        assert_eq!(b.delay(0), Duration::ZERO);
        assert_eq!(b.delay(1), secs(1));
        assert_eq!(b.delay(4), secs(8));
        assert_eq!(b.delay(9), secs(256));
        assert_eq!(b.delay(10), secs(300));
        assert_eq!(b.delay(33), secs(300));
        assert_eq!(b.delay(u32::MAX), secs(300));
        let odd = Backoff {
            initial: secs(10),
            max: secs(5),
        };
        assert_eq!(odd.delay(1), secs(5));
    }

    #[test]
    fn absurd_delays_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let mut q = QueueState::new(config());
        q.enqueue("a", Request::refresh(), t0);
        take(&mut q, t0);
        q.done(&"a", Outcome::RequeueAfter(Duration::MAX), t0);
        assert!(matches!(q.next(t0), Next::WaitUntil(due) if due > t0 + secs(1 << 30)));
    }
}
