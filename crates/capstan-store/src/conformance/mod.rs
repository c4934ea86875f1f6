//! The conformance suite: the behaviour every [`Store`] backend must have, written once.
//!
//! Compiled with the `conformance` feature (it pulls in `proptest`; production builds leave it
//! off). To run it against a backend, write a factory that builds a **fresh, empty** backend
//! — nothing else may write to it while a case runs — and expand the suite in an integration
//! test:
//!
//! ```no_run
//! use capstan_store::conformance::Fixture;
//! use capstan_store::{EmbeddedOptions, EmbeddedStore};
//!
//! async fn fresh() -> Fixture {
//!     let dir = tempfile::tempdir().expect("temp dir");
//!     let path = dir.path().join("store.redb");
//!     let store = EmbeddedStore::open(path, EmbeddedOptions::default()).await.expect("open");
//!     Fixture::new(store).with_guard(dir) // the guard lives as long as the store
//! }
//!
//! capstan_store::conformance_tests!(fresh);
//! # fn main() {}
//! ```
//!
//! That generates one `#[test]` per case (named after [`cases`]' functions), each on its own
//! tokio runtime with a deadline. [`run_all`] runs every case in sequence instead, from inside
//! your own async test. For property testing, feed [`model::ops_strategy`] to proptest and call
//! [`model::check_against_model`] (see `tests/embedded_conformance.rs`).
//!
//! What the suite assumes about a backend beyond the trait docs: a fresh backend has no keys and
//! nothing else writes to it; each change advances the revision by exactly one (true of etcd
//! with one writer); compaction errors are compared by variant, not by the revision they carry,
//! except for a watch's [`StoreError::Compacted`], which must name the compaction point.

pub mod cases;
pub mod model;

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;

use crate::error::{Result, StoreError};
use crate::store::{Store, WatchStream};
use crate::types::WatchEvent;

/// How long one case may run before it is declared hung.
pub const CASE_DEADLINE: Duration = Duration::from_secs(120);

/// How long a case waits for one expected watch event.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(15);

/// A fresh backend for one case, plus whatever must live as long as it (a temp dir, a server).
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    // Declared after `store`, so dropped after it.
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// A fixture around a store.
    pub fn new(store: impl Store) -> Self {
        Fixture {
            store: Arc::new(store),
            _guard: None,
        }
    }

    /// Keeps `guard` alive until the fixture is dropped (after the store).
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }
}

/// Builds fresh backends. Implemented for any `Fn() -> impl Future<Output = Fixture>`, so an
/// `async fn fresh() -> Fixture` is a factory.
pub trait StoreFactory: Send + Sync {
    /// A fresh, empty backend.
    fn create(&self) -> BoxFuture<'_, Fixture>;
}

impl<F, Fut> StoreFactory for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Fixture> + Send + 'static,
{
    fn create(&self) -> BoxFuture<'_, Fixture> {
        Box::pin(self())
    }
}

/// Runs one case on a fresh multi-threaded runtime, failing it after [`CASE_DEADLINE`].
/// Used by [`crate::conformance_tests!`].
pub fn block_on<F: Future<Output = ()>>(case: &str, future: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built for the conformance case");
    runtime.block_on(async {
        if tokio::time::timeout(CASE_DEADLINE, future).await.is_err() {
            panic!("conformance case {case} did not finish within {CASE_DEADLINE:?}");
        }
    });
}

/// The next item of a watch, waiting at most [`EVENT_DEADLINE`]; panics if the stream ends or
/// the deadline passes.
pub async fn next_event(watch: &mut WatchStream) -> Result<WatchEvent> {
    match tokio::time::timeout(EVENT_DEADLINE, watch.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the watch stream ended while an event was expected"),
        Err(_) => panic!("no watch event within {EVENT_DEADLINE:?}"),
    }
}

/// The next `count` events of a watch; panics on an error item, the end of the stream or a
/// deadline.
pub async fn next_events(watch: &mut WatchStream, count: usize) -> Vec<WatchEvent> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        match next_event(watch).await {
            Ok(event) => events.push(event),
            Err(error) => panic!(
                "watch failed after {} of {count} events: {error}",
                events.len()
            ),
        }
    }
    events
}

/// Asserts that a result is the given error variant.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T>,
    expected: fn(&StoreError) -> bool,
    what: &str,
) {
    match result {
        Err(error) if expected(&error) => {}
        other => panic!("expected {what}, got {other:?}"),
    }
}

/// Runs every case, in sequence, each on a fresh backend from `factory`.
pub async fn run_all(factory: &dyn StoreFactory) {
    crate::__capstan_store_conformance_cases!(__capstan_store_run_all { factory });
}

/// Expands to one `#[test]` per conformance case, each running against a fresh backend built by
/// `$factory` (an expression implementing [`StoreFactory`], e.g. the name of an
/// `async fn() -> Fixture`). See the [module docs](crate::conformance).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__capstan_store_conformance_cases!(__capstan_store_emit_tests { $factory });
    };
}

/// The list of cases, in one place; calls back `$callback` with it.
#[doc(hidden)]
#[macro_export]
macro_rules! __capstan_store_conformance_cases {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! {
            [$($args)*]
            get_put_delete,
            revisions_increase,
            compare_and_swap,
            existence_preconditions,
            txn_applies_atomically,
            txn_failure_writes_nothing,
            txn_compare_targets,
            txn_rejects_invalid_requests,
            list_prefix_boundaries,
            list_pagination,
            list_pagination_with_concurrent_writes,
            list_at_revision,
            watch_from_zero,
            watch_from_mid_revision,
            watch_resume_after_drop,
            watch_ordering_with_concurrent_writers,
            watch_txn_events_share_a_revision,
            watch_prefix_boundaries,
            watch_from_future_revision,
            slow_watcher_catches_up,
            compaction,
            large_values_rejected,
            invalid_keys_and_requests_rejected,
            typed_spec_status_independence,
            typed_lifecycle,
            typed_status_fencing,
            typed_watch,
            model_random_ops,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __capstan_store_emit_tests {
    ([$factory:expr] $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                let factory = $factory;
                $crate::conformance::block_on(
                    stringify!($case),
                    $crate::conformance::cases::$case(&factory),
                );
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __capstan_store_run_all {
    ([$factory:expr] $($case:ident,)*) => {
        $(
            tracing::info!(case = stringify!($case), "conformance case");
            $crate::conformance::cases::$case($factory).await;
        )*
    };
}
