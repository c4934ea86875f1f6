//! The work queue every reconcile goes through: which Application a worker looks at next,
//! and when.
//!
//! Requests to look at an Application come from everywhere — a user pressing Refresh, a Git
//! webhook, a change in the cluster cache, the periodic timer, a failed attempt's retry — and
//! far more often than an Application can usefully be reconciled. The queue turns that stream
//! into work for N workers under these rules:
//!
//! - **One entry per key.** While a key is queued, further requests merge into its entry: the
//!   strongest [`Priority`] wins (a hard refresh is never downgraded to a normal one by a
//!   later periodic request) and the earliest due time wins (a request for now is not held
//!   back by one for later). A hundred webhook deliveries for one app are one reconcile.
//! - **Explicit requests first.** Of the entries that are due, [`Priority::HardRefresh`]
//!   goes before [`Priority::Refresh`] before [`Priority::Periodic`], and within a priority
//!   the entry due longest goes first. A user waiting on the Refresh button is not stuck
//!   behind a fleet's periodic refreshes, which only catch changes nobody announced.
//! - **Never two workers on one key.** [`WorkQueue::next`] checks a key out; requests for it
//!   while it is out are remembered (merged into one) and queued once when the worker calls
//!   [`WorkQueue::done`]. Requests that arrive during a reconcile may concern state the
//!   reconcile already read, so they must cause one more look — but only one.
//! - **Outcomes decide what comes next** ([`Outcome`]): success resets the key's backoff and
//!   schedules its next periodic refresh ([`Resync`], 180 s ± 10 % by default), so any
//!   reconcile — periodic or not — restarts the key's polling clock; failure retries the
//!   key for the same reason after an exponential backoff ([`Backoff`], 1 s doubling to
//!   5 min); [`Outcome::RequeueAfter`] asks for another look (at refresh priority: it follows up
//!   what the controller just did) after a given time;
//!   [`Outcome::Removed`] forgets the key.
//! - **Backoff gates background work.** While a key is backing off, periodic requests for it
//!   (the timer, and cluster-cache change events, which the controller enqueues as
//!   `Periodic` too) wait until the backoff ends. This is what stops a failing key — or a
//!   self-heal fighting another controller, which the reconciler reports as
//!   [`Outcome::Failed`] — from spinning at the speed of watch events. Explicit requests
//!   (`Refresh`, `HardRefresh`) pass the gate: a person or a webhook asked and is waiting.
//! - **Shutdown drains.** [`WorkQueue::shutdown`] refuses new requests and drops entries that
//!   are not yet due (retries, requeue-afters, next periodic refreshes: timers, which the
//!   member that owns the Application next schedules afresh when it starts); `next` keeps
//!   handing out the entries that are due and returns `None` once none are left. Keys still
//!   checked out finish, and their `done` queues nothing.
//!
//! These are Argo CD's app refresh semantics made explicit. Argo CD also merges refresh
//! requests per app keeping the strongest comparison level, and a hard refresh
//! (`argocd.argoproj.io/refresh: hard`) regenerates manifests bypassing the repo-server's
//! manifest cache, while a normal refresh resolves the revision again but reuses manifests
//! cached for an unchanged commit. The queue only carries the reason; honouring it is the
//! reconciler's job ([`Request::bypasses_manifest_cache`]).
//!
//! Start reading at [`WorkQueue`]. The rules live in [`QueueState`], a plain state machine
//! that takes the time as an argument, so its tests need no clock; `WorkQueue` wraps it in a
//! mutex and adds waiting on tokio's clock (so tests can pause time).
//!
//! ```
//! use capstan_controller::queue::{Outcome, QueueConfig, Request, WorkQueue};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let queue = WorkQueue::new(QueueConfig::default());
//! queue.enqueue("team-a/guestbook".to_string(), Request::refresh());
//! queue.enqueue("team-a/guestbook".to_string(), Request::hard_refresh());
//! queue.shutdown(); // for the example: drain what is queued, then stop
//!
//! // Each of the controller's workers runs this loop.
//! while let Some((app, request)) = queue.next().await {
//!     assert!(request.bypasses_manifest_cache());
//!     // let outcome = reconcile(&app, request).await;
//!     queue.done(&app, Outcome::Succeeded);
//! }
//! # }
//! ```

mod metrics;
mod resync;
mod state;

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, trace, warn};

pub use metrics::QueueMetrics;
pub use resync::{Resync, SplitMix64, periodic_delay};
pub use state::{Finished, Next, QueueState};

/// Why a key is wanted, weakest first; the derived order is the queue's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Nobody asked: the resync timer, or a change seen in the cluster cache. Runs when
    /// nothing explicit is due, and waits out a failing key's backoff.
    Periodic,
    /// A user, the API or a Git webhook asked for a normal refresh: resolve the revision
    /// again, compare, reuse manifests cached for an unchanged commit.
    Refresh,
    /// A user asked for a hard refresh: as `Refresh`, but regenerate the manifests,
    /// bypassing the manifest cache.
    HardRefresh,
}

impl Priority {
    /// A stable, low-cardinality name, for metric labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Periodic => "periodic",
            Self::Refresh => "refresh",
            Self::HardRefresh => "hard_refresh",
        }
    }
}

/// A request to process a key: why, and not before when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Why; decides the order among due entries.
    pub priority: Priority,
    /// Not before this instant (requeue-after, a delayed retry); `None` is now.
    pub not_before: Option<Instant>,
}

impl Request {
    /// A request for `priority`, due now.
    pub const fn new(priority: Priority) -> Self {
        Self {
            priority,
            not_before: None,
        }
    }

    /// A background request (timer, cluster-cache event), due now.
    pub const fn periodic() -> Self {
        Self::new(Priority::Periodic)
    }

    /// A normal refresh someone asked for, due now.
    pub const fn refresh() -> Self {
        Self::new(Priority::Refresh)
    }

    /// A hard refresh someone asked for, due now.
    pub const fn hard_refresh() -> Self {
        Self::new(Priority::HardRefresh)
    }

    /// The same request, not before `at`.
    #[must_use]
    pub const fn delayed_until(self, at: Instant) -> Self {
        Self {
            not_before: Some(at),
            ..self
        }
    }

    /// Whether the reconcile must regenerate manifests rather than use cached ones.
    pub fn bypasses_manifest_cache(&self) -> bool {
        self.priority == Priority::HardRefresh
    }
}

/// How a worker's attempt at a key ended; decides what the queue does with the key next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reconciled. Resets the key's backoff and, if [`QueueConfig::resync`] is set,
    /// schedules its next periodic refresh.
    Succeeded,
    /// Failed (or should slow down, as a self-heal fighting another writer). Retries the key
    /// for the same reason after its next backoff step, and holds back background requests
    /// for it until then.
    Failed,
    /// Reconciled, but look again after this long (a sync just finished, a retry falls due).
    /// Resets the backoff like `Succeeded`; the look is a refresh request, ahead of
    /// periodic ones.
    RequeueAfter(Duration),
    /// The key no longer names anything to reconcile here (the Application was deleted, or
    /// its cluster moved to another shard). Forgets its backoff; nothing is scheduled, but
    /// requests that arrived during the attempt still count (it may have been re-created).
    Removed,
}

/// What [`WorkQueue::enqueue`] did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The key was not queued; it is now.
    Added,
    /// The key was queued; the request merged into its entry.
    Merged,
    /// A worker holds the key; the request is remembered and queued when it is done.
    Pending,
    /// The queue is shut down.
    Refused,
}

/// Per-key exponential backoff after failures: `initial`, doubling per consecutive failure,
/// never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The cap.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s doubling up to 5 min: quick enough to ride out a blip, slow enough after a few
    /// failures that a broken app costs one reconcile every five minutes.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (zero for none).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        1_u32
            .checked_shl(failures - 1)
            .and_then(|factor| self.initial.checked_mul(factor))
            .map_or(self.max, |delay| delay.min(self.max))
    }
}

/// How a [`WorkQueue`] behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueueConfig {
    /// Retry delays after failures.
    pub backoff: Backoff,
    /// The periodic refresh scheduled after each success; `None` leaves scheduling to the
    /// caller.
    pub resync: Option<Resync>,
    /// Seed for the resync jitter; `None` seeds from the process's hash randomness. Tests
    /// set it for reproducible schedules.
    pub seed: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            resync: Some(Resync::default()),
            seed: None,
        }
    }
}

/// The async work queue: [`QueueState`]'s rules, shared by the controller's workers and
/// everything that asks for refreshes. Cloning gives another handle to the same queue.
///
/// The key is whatever names an Application to the controller (`namespace/name`); it needs
/// `Clone + Eq + Hash + Debug`, and `Send` to be shared across tasks.
#[derive(Debug)]
pub struct WorkQueue<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug)]
struct Shared<K> {
    // A std mutex: every critical section is a few map operations and never awaits.
    state: Mutex<QueueState<K>>,
    /// Woken whenever an entry may have become available earlier, or on shutdown.
    changed: Notify,
    metrics: QueueMetrics,
}

impl<K: Clone + Eq + Hash + Debug> WorkQueue<K> {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(QueueState::new(config)),
                changed: Notify::new(),
                metrics: QueueMetrics::default(),
            }),
        }
    }

    /// The queue's metrics, to [register](QueueMetrics::register) with the controller's
    /// registry. They are recorded whether registered or not.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.shared.metrics
    }

    /// Asks for `key` to be processed (see the [module docs](self) for merging and order).
    /// Never waits.
    pub fn enqueue(&self, key: K, request: Request) -> Enqueued {
        trace!(key = ?key, reason = request.priority.as_str(), "requested");
        let result = self.with_state(|state, now| state.enqueue(key, request, now));
        match result {
            Enqueued::Added | Enqueued::Merged => {
                self.shared.metrics.added(request.priority);
                self.shared.changed.notify_waiters();
            }
            Enqueued::Pending => self.shared.metrics.added(request.priority),
            Enqueued::Refused => {}
        }
        result
    }

    /// The next key to work on, checked out to the caller until it calls [`done`](Self::done)
    /// — which it must, exactly once, or the key is never handed out again.
    ///
    /// Waits until an entry is due: sleeps until the earliest delayed entry's time, and wakes
    /// early when a request arrives. Returns `None` once the queue is shut down and nothing
    /// due is left. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&self) -> Option<(K, Request)> {
        loop {
            // Register for wake-ups before looking, so a request that lands between the look
            // and the wait still wakes us.
            let changed = self.shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            match self.with_state(QueueState::next) {
                Next::Ready {
                    key,
                    request,
                    waited,
                } => {
                    self.shared.metrics.waited(waited.as_secs_f64());
                    return Some((key, request));
                }
                Next::Closed => return None,
                Next::Idle => changed.await,
                Next::WaitUntil(due) => {
                    // Either way, look again: the deadline passed or something changed.
                    let _ = tokio::time::timeout_at(due, changed).await;
                }
            }
        }
    }

    /// Checks `key` back in; what happens next depends on `outcome` (see [`Outcome`]).
    /// A key that is not checked out is ignored, with a warning.
    pub fn done(&self, key: &K, outcome: Outcome) {
        let finished = self.with_state(|state, now| state.done(key, outcome, now));
        let Some(finished) = finished else {
            warn!(key = ?key, "work queue: done for a key no worker holds; ignored");
            return;
        };
        self.shared.metrics.worked(finished.worked.as_secs_f64());
        if let Some(backoff) = finished.retry_in {
            self.shared.metrics.retried();
            debug!(
                key = ?key,
                failures = finished.failures,
                backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                "failed; retrying after backoff"
            );
        }
        if finished.requeued {
            self.shared.changed.notify_waiters();
        }
    }

    /// Forgets `key` (see [`QueueState::remove`]); returns whether the queue knew it.
    pub fn remove(&self, key: &K) -> bool {
        self.with_state(|state, _| state.remove(key))
    }

    /// Stops taking requests and starts draining (see the [module docs](self)). Idempotent.
    pub fn shutdown(&self) {
        let dropped = self.with_state(QueueState::shutdown);
        debug!(dropped, "work queue shutting down");
        self.shared.changed.notify_waiters();
    }

    /// Entries waiting, due or delayed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no entry is waiting (keys may still be checked out).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Keys checked out by workers.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight()
    }

    /// Consecutive failures of `key`, for status conditions and logs.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures(key)
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<K>> {
        // No method of QueueState calls out while half-way through an update, so a panic
        // elsewhere under the lock leaves the state consistent and the queue usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state at the current (tokio) time and refreshes the size gauges.
    fn with_state<T>(&self, f: impl FnOnce(&mut QueueState<K>, Instant) -> T) -> T {
        let mut state = self.lock();
        let result = f(&mut state, Instant::now());
        self.shared.metrics.sizes(state.len(), state.in_flight());
        result
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;
    use tokio::time::timeout;

    use super::*;

    fn queue<K: Clone + Eq + Hash + Debug>() -> WorkQueue<K> {
        WorkQueue::new(QueueConfig {
            resync: None,
            seed: Some(1),
            ..QueueConfig::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn next_waits_for_a_request() {
        let q = queue();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        q.enqueue("a", Request::refresh());
        let got = waiter.await.expect("waiter panicked");
        assert_eq!(got, Some(("a", Request::refresh())));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_entries_come_out_only_when_due() {
        let q = queue();
        let start = Instant::now();
        q.enqueue(
            "in-10s",
            Request::periodic().delayed_until(start + Duration::from_secs(10)),
        );
        q.enqueue(
            "in-20s",
            Request::refresh().delayed_until(start + Duration::from_secs(20)),
        );

        // The clock only runs to the earliest timer, and the 5 s timeout comes first.
        assert!(timeout(Duration::from_secs(5), q.next()).await.is_err());
        tokio::time::advance(Duration::from_secs(5)).await;
        let (key, _) = q.next().await.expect("due");
        assert_eq!((key, start.elapsed()), ("in-10s", Duration::from_secs(10)));
        q.done(&key, Outcome::Succeeded);

        // A worker asleep until 20 s wakes for a request due now.
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.enqueue("now", Request::periodic());
        let (key, _) = waiter.await.expect("waiter panicked").expect("due");
        assert_eq!((key, start.elapsed()), ("now", Duration::from_secs(10)));

        let (key, _) = q.next().await.expect("due");
        assert_eq!((key, start.elapsed()), ("in-20s", Duration::from_secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_on_the_clock() {
        let q = queue();
        q.enqueue("a", Request::refresh());
        let mut gaps = Vec::new();
        for _ in 0..4 {
            let before = Instant::now();
            let (key, _) = q.next().await.expect("retried");
            gaps.push(before.elapsed().as_secs());
            q.done(&key, Outcome::Failed);
        }
        assert_eq!(gaps, [0, 1, 2, 4]);
        assert_eq!(q.failures(&"a"), 4);

        let (key, _) = q.next().await.expect("retried");
        q.done(&key, Outcome::Succeeded);
        assert_eq!((q.failures(&"a"), q.len()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_then_ends_every_worker() {
        let q = queue();
        let idle = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.enqueue("periodic", Request::periodic());
        q.enqueue("refresh", Request::refresh());
        q.enqueue(
            "later",
            Request::refresh().delayed_until(Instant::now() + Duration::from_secs(60)),
        );
        // The idle worker took one entry (the refresh) as soon as it arrived.
        let (first, _) = idle.await.expect("worker panicked").expect("an entry");
        assert_eq!(first, "refresh");

        q.shutdown();
        assert_eq!(q.enqueue("new", Request::hard_refresh()), Enqueued::Refused);
        let mut drained = Vec::new();
        while let Some((key, _)) = q.next().await {
            drained.push(key);
            q.done(&key, Outcome::Failed);
        }
        assert_eq!(drained, ["periodic"]);
        q.done(&first, Outcome::Succeeded);
        assert_eq!((q.len(), q.in_flight()), (0, 0));

        // A worker that comes late gets None at once.
        assert_eq!(q.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_workers_never_hold_the_same_key() {
        let q: WorkQueue<u32> = queue();
        let holding = Arc::new(Mutex::new(HashSet::new()));
        let processed = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..4_u64)
            .map(|worker| {
                let (q, holding, processed) = (q.clone(), holding.clone(), processed.clone());
                tokio::spawn(async move {
                    let mut rng = SplitMix64::new(worker);
                    while let Some((key, _)) = q.next().await {
                        let fresh = holding.lock().expect("not poisoned").insert(key);
                        assert!(fresh, "key {key} handed to two workers at once");
                        // 0–9 ms of (paused) work, so workers interleave at random.
                        let work = Duration::from_millis(rng.next_u64() % 10);
                        tokio::time::sleep(work).await;
                        holding.lock().expect("not poisoned").remove(&key);
                        processed.fetch_add(1, Ordering::Relaxed);
                        let outcome = if rng.next_u64().is_multiple_of(5) {
                            Outcome::Failed
                        } else {
                            Outcome::Succeeded
                        };
                        q.done(&key, outcome);
                    }
                })
            })
            .collect();

        let mut rng = SplitMix64::new(99);
        for round in 0..200_u32 {
            for key in 0..8 {
                let request = match rng.next_u64() % 3 {
                    0 => Request::periodic(),
                    1 => Request::refresh(),
                    _ => Request::hard_refresh(),
                };
                q.enqueue(key, request);
            }
            if round % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        q.shutdown();
        for worker in workers {
            worker.await.expect("a worker failed its assertions");
        }
        let processed = processed.load(Ordering::Relaxed);
        // 1 600 requests for 8 keys: merging cut them down, but every key ran many times.
        assert!((8..1_600).contains(&processed), "{processed}");
        assert!(holding.lock().expect("not poisoned").is_empty());
        assert_eq!(q.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_count_adds_retries_and_sizes() {
        let q = queue();
        let mut registry = Registry::default();
        q.metrics().register(&mut registry);

        q.enqueue("a", Request::refresh());
        q.enqueue("a", Request::refresh());
        q.enqueue("b", Request::periodic());
        let (key, _) = q.next().await.expect("due");
        q.done(&key, Outcome::Failed);

        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        for line in [
            "workqueue_adds_total{reason=\"refresh\"} 2",
            "workqueue_adds_total{reason=\"periodic\"} 1",
            "workqueue_retries_total 1",
            "workqueue_depth 2",
            "workqueue_in_flight 0",
            "workqueue_queue_duration_seconds_count 1",
            "workqueue_work_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
