//! The reference model: the store's semantics as a few hundred lines of obviously-correct
//! in-memory code, and a checker that runs a sequence of operations against a backend and the
//! model side by side and compares every result.
//!
//! [`ops_strategy`] generates sequences for proptest (with shrinking); the suite's
//! [`super::cases::model_random_ops`] samples a few deterministically.
//!
//! The model numbers revisions from the backend's initial revision, one per change, so the
//! backend must be fresh and written to by nothing else during the check.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::next_event;
use crate::error::StoreError;
use crate::limits::prefix_end;
use crate::store::Store;
use crate::types::{
    Compare, CompareFailure, CompareOp, KeyMeta, KeyValue, ListOptions, Precondition, Revision,
    Txn, TxnOp, TxnOpResult, TxnResponse, WatchEvent,
};

/// The keys operations pick from: chosen to collide on prefixes (`/m/a` vs `/m/a/` vs `/m/ab`)
/// and to include `0xff` bytes.
pub const KEYS: &[&[u8]] = &[
    b"/m/a",
    b"/m/a/",
    b"/m/a/x",
    b"/m/ab",
    b"/m/b",
    b"/m/b/\xff",
    b"/m/\xff",
    b"/m/\xff\xff",
];

/// The prefixes lists and watches pick from.
pub const PREFIXES: &[&[u8]] = &[b"", b"/m/", b"/m/a", b"/m/a/", b"/m/b/", b"/m/\xff", b"/n/"];

/// How a generated operation picks its precondition, resolved against the state at the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreconditionChoice {
    /// [`Precondition::None`]
    None,
    /// [`Precondition::MustExist`]
    MustExist,
    /// [`Precondition::MustNotExist`]
    MustNotExist,
    /// `ModRevision` of the key's current mod revision (succeeds).
    Current,
    /// `ModRevision` of some other revision (fails).
    Stale,
    /// `ModRevision(0)`: succeeds only for an absent key.
    Zero,
}

/// How a generated transaction compare is built, resolved against the state at the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareChoice {
    /// The key exists.
    Exists,
    /// The key does not exist.
    NotExists,
    /// `mod_revision == current`.
    ModCurrent,
    /// `mod_revision == current + 1` (fails).
    ModStale,
    /// `create_revision == current`.
    CreateCurrent,
    /// `version > n`.
    VersionGreater(u8),
    /// `version < n`.
    VersionLess(u8),
    /// `mod_revision != current`.
    ModNotCurrent,
}

/// One generated operation. Keys and prefixes are indexes into [`KEYS`] and [`PREFIXES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A put.
    Put {
        /// Key index.
        key: usize,
        /// Value byte (the value is a few copies of it).
        value: u8,
        /// Precondition.
        precondition: PreconditionChoice,
    },
    /// A delete.
    Delete {
        /// Key index.
        key: usize,
        /// Precondition.
        precondition: PreconditionChoice,
    },
    /// A transaction; writes to the same key after the first are dropped.
    Txn {
        /// Compares.
        compares: Vec<(usize, CompareChoice)>,
        /// Writes: `Some(value)` puts, `None` deletes.
        ops: Vec<(usize, Option<u8>)>,
    },
    /// A get.
    Get {
        /// Key index.
        key: usize,
    },
    /// A paginated list, `back` revisions before the latest.
    List {
        /// Prefix index.
        prefix: usize,
        /// Page size.
        limit: usize,
        /// How many revisions back to read at.
        back: u8,
    },
    /// A watch from `back` revisions before the latest, read up to the latest.
    Watch {
        /// Prefix index.
        prefix: usize,
        /// How many revisions back to start.
        back: u8,
    },
    /// A compaction `back` revisions before the latest.
    Compact {
        /// How many revisions back.
        back: u8,
    },
}

fn precondition_choice() -> impl Strategy<Value = PreconditionChoice> {
    prop_oneof![
        3 => Just(PreconditionChoice::None),
        1 => Just(PreconditionChoice::MustExist),
        1 => Just(PreconditionChoice::MustNotExist),
        2 => Just(PreconditionChoice::Current),
        1 => Just(PreconditionChoice::Stale),
        1 => Just(PreconditionChoice::Zero),
    ]
}

fn compare_choice() -> impl Strategy<Value = CompareChoice> {
    prop_oneof![
        Just(CompareChoice::Exists),
        Just(CompareChoice::NotExists),
        Just(CompareChoice::ModCurrent),
        Just(CompareChoice::ModStale),
        Just(CompareChoice::CreateCurrent),
        (0u8..4).prop_map(CompareChoice::VersionGreater),
        (0u8..4).prop_map(CompareChoice::VersionLess),
        Just(CompareChoice::ModNotCurrent),
    ]
}

/// One operation.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let prefix = 0..PREFIXES.len();
    prop_oneof![
        6 => (key.clone(), any::<u8>(), precondition_choice())
            .prop_map(|(key, value, precondition)| Op::Put { key, value, precondition }),
        2 => (key.clone(), precondition_choice()).prop_map(|(key, precondition)| Op::Delete { key, precondition }),
        3 => (
            proptest::collection::vec((key.clone(), compare_choice()), 0..3),
            proptest::collection::vec((key.clone(), proptest::option::weighted(0.7, any::<u8>())), 0..4),
        )
            .prop_map(|(compares, ops)| Op::Txn { compares, ops }),
        1 => key.prop_map(|key| Op::Get { key }),
        2 => (prefix.clone(), 1usize..5, 0u8..6).prop_map(|(prefix, limit, back)| Op::List { prefix, limit, back }),
        1 => (prefix, 0u8..6).prop_map(|(prefix, back)| Op::Watch { prefix, back }),
        1 => (0u8..8).prop_map(|back| Op::Compact { back }),
    ]
}

/// A sequence of operations.
pub fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(), 1..60)
}

/// The store's semantics, in memory.
#[derive(Debug, Clone)]
pub struct Model {
    revision: Revision,
    compact_revision: Revision,
    kv: BTreeMap<Vec<u8>, KeyValue>,
    /// State after every revision, for reads at a past revision.
    snapshots: BTreeMap<Revision, BTreeMap<Vec<u8>, KeyValue>>,
    /// Every change, in order.
    events: Vec<WatchEvent>,
}

impl Model {
    /// An empty store at `initial_revision` with compaction point `compact_revision`.
    pub fn new(initial_revision: Revision, compact_revision: Revision) -> Self {
        let mut snapshots = BTreeMap::new();
        snapshots.insert(initial_revision, BTreeMap::new());
        Model {
            revision: initial_revision,
            compact_revision,
            kv: BTreeMap::new(),
            snapshots,
            events: Vec::new(),
        }
    }

    /// The latest revision.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The compaction point.
    pub fn compact_revision(&self) -> Revision {
        self.compact_revision
    }

    /// A key's metadata ([`KeyMeta::ABSENT`] if missing).
    pub fn meta(&self, key: &[u8]) -> KeyMeta {
        self.kv.get(key).map_or(KeyMeta::ABSENT, KeyValue::meta)
    }

    /// Reads a key.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.kv.get(key).cloned()
    }

    /// Applies a transaction.
    pub fn txn(&mut self, txn: &Txn) -> TxnResponse {
        let failures: Vec<CompareFailure> = txn
            .compares
            .iter()
            .enumerate()
            .filter_map(|(index, compare)| {
                let current = self.meta(&compare.key);
                (!compare.matches(current)).then_some(CompareFailure { index, current })
            })
            .collect();
        if !failures.is_empty() {
            return TxnResponse {
                succeeded: false,
                revision: self.revision,
                results: Vec::new(),
                failures,
            };
        }
        let next = self.revision + 1;
        let mut results = Vec::new();
        let mut changed = false;
        for op in &txn.success {
            match op {
                TxnOp::Put { key, value } => {
                    let prev = self.kv.get(key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(next, |prev| prev.create_revision),
                        mod_revision: next,
                        version: prev.as_ref().map_or(1, |prev| prev.version + 1),
                    };
                    self.kv.insert(key.clone(), kv.clone());
                    self.events.push(WatchEvent::Put {
                        kv,
                        prev: prev.clone(),
                    });
                    results.push(TxnOpResult::Put { prev });
                    changed = true;
                }
                TxnOp::Delete { key } => {
                    let prev = self.kv.remove(key);
                    if let Some(prev) = &prev {
                        self.events.push(WatchEvent::Delete {
                            key: key.clone(),
                            revision: next,
                            prev: Some(prev.clone()),
                        });
                        changed = true;
                    }
                    results.push(TxnOpResult::Delete { prev });
                }
            }
        }
        if changed {
            self.revision = next;
            self.snapshots.insert(next, self.kv.clone());
        }
        TxnResponse {
            succeeded: true,
            revision: self.revision,
            results,
            failures: Vec::new(),
        }
    }

    /// Lists a prefix at a revision (the latest if `None`).
    pub fn list(&self, prefix: &[u8], at: Option<Revision>) -> Result<Vec<KeyValue>, StoreError> {
        let at = at.unwrap_or(self.revision);
        if at > self.revision {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: self.revision,
            });
        }
        if at < self.compact_revision {
            return Err(StoreError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        let state = self
            .snapshots
            .range(..=at)
            .next_back()
            .map(|(_, state)| state);
        Ok(state
            .map(|state| {
                state
                    .values()
                    .filter(|kv| kv.key.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The changes under `prefix` after revision `after`.
    pub fn events(&self, prefix: &[u8], after: Revision) -> Vec<WatchEvent> {
        self.events
            .iter()
            .filter(|event| event.revision() > after && event.key().starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Compacts.
    pub fn compact(&mut self, revision: Revision) -> Result<(), StoreError> {
        if revision <= self.compact_revision {
            return Err(StoreError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        self.compact_revision = revision;
        Ok(())
    }

    fn resolve_precondition(&self, key: &[u8], choice: PreconditionChoice) -> Precondition {
        let meta = self.meta(key);
        match choice {
            PreconditionChoice::None => Precondition::None,
            PreconditionChoice::MustExist => Precondition::MustExist,
            PreconditionChoice::MustNotExist => Precondition::MustNotExist,
            PreconditionChoice::Current => Precondition::ModRevision(meta.mod_revision),
            PreconditionChoice::Stale if meta.exists() => {
                Precondition::ModRevision(meta.mod_revision - 1)
            }
            PreconditionChoice::Stale => Precondition::ModRevision(self.revision),
            PreconditionChoice::Zero => Precondition::ModRevision(0),
        }
    }

    fn resolve_compare(&self, key: &[u8], choice: CompareChoice) -> Compare {
        let meta = self.meta(key);
        match choice {
            CompareChoice::Exists => Compare::exists(key),
            CompareChoice::NotExists => Compare::not_exists(key),
            CompareChoice::ModCurrent => {
                Compare::mod_revision(key, CompareOp::Equal, meta.mod_revision)
            }
            CompareChoice::ModStale => {
                Compare::mod_revision(key, CompareOp::Equal, meta.mod_revision + 1)
            }
            CompareChoice::CreateCurrent => {
                Compare::create_revision(key, CompareOp::Equal, meta.create_revision)
            }
            CompareChoice::VersionGreater(n) => {
                Compare::version(key, CompareOp::Greater, u64::from(n))
            }
            CompareChoice::VersionLess(n) => Compare::version(key, CompareOp::Less, u64::from(n)),
            CompareChoice::ModNotCurrent => {
                Compare::mod_revision(key, CompareOp::NotEqual, meta.mod_revision)
            }
        }
    }
}

fn value_of(byte: u8) -> Vec<u8> {
    vec![byte; usize::from(byte % 7)]
}

/// Kinds of errors compared between the backend and the model (messages and some numbers may
/// legitimately differ between backends).
fn same_error(backend: &StoreError, model: &StoreError) -> bool {
    match (backend, model) {
        (
            StoreError::Conflict {
                current_revision: a,
                ..
            },
            StoreError::Conflict {
                current_revision: b,
                ..
            },
        ) => a == b,
        (StoreError::Compacted { .. }, StoreError::Compacted { .. }) => true,
        (StoreError::FutureRevision { .. }, StoreError::FutureRevision { .. }) => true,
        _ => false,
    }
}

fn check<T: PartialEq + std::fmt::Debug>(
    step: usize,
    op: &Op,
    backend: Result<T, StoreError>,
    model: Result<T, StoreError>,
) {
    match (&backend, &model) {
        (Ok(backend), Ok(model)) => {
            assert_eq!(
                backend, model,
                "step {step} ({op:?}): backend and model disagree"
            );
        }
        (Err(backend_error), Err(model_error)) => {
            assert!(
                same_error(backend_error, model_error),
                "step {step} ({op:?}): backend failed with {backend_error:?}, the model with {model_error:?}"
            );
        }
        _ => panic!("step {step} ({op:?}): backend returned {backend:?}, the model {model:?}"),
    }
}

/// Runs `ops` against `store` (fresh, with no other writer) and the model, comparing every
/// result, then replays the whole history through a watch and compares it with the model's.
/// Panics on the first difference.
pub async fn check_against_model(store: &dyn Store, ops: &[Op]) {
    let initial = store.current_revision().await.expect("current revision");
    let mut model = Model::new(initial, 0);
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put {
                key,
                value,
                precondition,
            } => {
                let key = KEYS[*key];
                let precondition = model.resolve_precondition(key, *precondition);
                let backend = store.put(key, value_of(*value), precondition).await;
                let expected = {
                    let txn = Txn {
                        compares: precondition.to_compare(key).into_iter().collect(),
                        success: vec![],
                    }
                    .put(key, value_of(*value));
                    let response = model.txn(&txn);
                    if response.succeeded {
                        match response.results.into_iter().next() {
                            Some(TxnOpResult::Put { prev }) => Ok((response.revision, prev)),
                            other => panic!("model put returned {other:?}"),
                        }
                    } else {
                        Err(StoreError::Conflict {
                            key: String::new(),
                            current_revision: response.failures[0].current.mod_revision,
                        })
                    }
                };
                check(
                    step,
                    op,
                    backend.map(|response| (response.revision, response.prev)),
                    expected,
                );
            }
            Op::Delete { key, precondition } => {
                let key = KEYS[*key];
                let precondition = model.resolve_precondition(key, *precondition);
                let backend = store.delete(key, precondition).await;
                let expected = {
                    let txn = Txn {
                        compares: precondition.to_compare(key).into_iter().collect(),
                        success: vec![],
                    }
                    .delete(key);
                    let response = model.txn(&txn);
                    if response.succeeded {
                        match response.results.into_iter().next() {
                            Some(TxnOpResult::Delete { prev }) => Ok((response.revision, prev)),
                            other => panic!("model delete returned {other:?}"),
                        }
                    } else {
                        Err(StoreError::Conflict {
                            key: String::new(),
                            current_revision: response.failures[0].current.mod_revision,
                        })
                    }
                };
                check(
                    step,
                    op,
                    backend.map(|response| (response.revision, response.prev)),
                    expected,
                );
            }
            Op::Txn {
                compares,
                ops: writes,
            } => {
                let mut txn = Txn::new();
                for (key, choice) in compares {
                    txn = txn.when(model.resolve_compare(KEYS[*key], *choice));
                }
                let mut seen = Vec::new();
                for (key, value) in writes {
                    if seen.contains(key) {
                        continue;
                    }
                    seen.push(*key);
                    txn = match value {
                        Some(value) => txn.put(KEYS[*key], value_of(*value)),
                        None => txn.delete(KEYS[*key]),
                    };
                }
                let backend = store.txn(txn.clone()).await;
                let expected = model.txn(&txn);
                check(step, op, backend, Ok(expected));
            }
            Op::Get { key } => {
                let backend = store.get(KEYS[*key]).await;
                check(step, op, backend, Ok(model.get(KEYS[*key])));
            }
            Op::List {
                prefix,
                limit,
                back,
            } => {
                let prefix = PREFIXES[*prefix];
                let at = model
                    .revision()
                    .saturating_sub(u64::from(*back))
                    .max(initial);
                let backend = list_pages(store, prefix, *limit, at).await;
                let expected = model.list(prefix, Some(at)).map(|entries| (entries, at));
                check(step, op, backend, expected);
            }
            Op::Watch { prefix, back } => {
                let prefix = PREFIXES[*prefix];
                let from = model
                    .revision()
                    .saturating_sub(u64::from(*back))
                    .max(initial);
                let expected = model.events(prefix, from);
                let mut watch = store.watch(prefix, from);
                if from < model.compact_revision() {
                    let first = next_event(&mut watch).await;
                    assert!(
                        matches!(first, Err(StoreError::Compacted { .. })),
                        "step {step} ({op:?}): watch from a compacted revision returned {first:?}"
                    );
                    continue;
                }
                for (index, expected_event) in expected.iter().enumerate() {
                    let event = next_event(&mut watch).await;
                    assert_eq!(
                        event.as_ref().ok(),
                        Some(expected_event),
                        "step {step} ({op:?}): event {index} differs (got {event:?})"
                    );
                }
            }
            Op::Compact { back } => {
                let target = model
                    .revision()
                    .saturating_sub(u64::from(*back))
                    .max(initial);
                let backend = store.compact(target).await;
                let expected = model.compact(target);
                check(step, op, backend, expected);
            }
        }
    }

    // The whole history, replayed, must be the model's (unless compacted).
    let from = model.compact_revision().max(initial);
    let expected = model.events(b"", from);
    let mut watch = store.watch(b"", from);
    for (index, expected_event) in expected.iter().enumerate() {
        let event = next_event(&mut watch).await;
        assert_eq!(
            event.as_ref().ok(),
            Some(expected_event),
            "final replay: event {index} differs (got {event:?})"
        );
    }
    // Nothing after the last expected event but our sentinel.
    let sentinel = store
        .put(b"/sentinel", b"end".to_vec(), Precondition::None)
        .await
        .expect("sentinel put");
    let event = next_event(&mut watch).await.expect("sentinel event");
    assert_eq!(
        (event.key(), event.revision()),
        (&b"/sentinel"[..], sentinel.revision),
        "final replay: unexpected extra event {event:?}"
    );
}

async fn list_pages(
    store: &dyn Store,
    prefix: &[u8],
    limit: usize,
    at: Revision,
) -> Result<(Vec<KeyValue>, Revision), StoreError> {
    let mut options = ListOptions::new().limit(limit).at_revision(at);
    let mut entries = Vec::new();
    loop {
        let page = store.list(prefix, options.clone()).await?;
        assert!(
            page.entries.len() <= limit,
            "a page holds {} entries, more than the limit {limit}",
            page.entries.len()
        );
        assert_eq!(
            page.revision, at,
            "a page was read at {} instead of {at}",
            page.revision
        );
        entries.extend(page.entries);
        match page.continue_token {
            Some(token) => options = ListOptions::new().limit(limit).continue_from(token),
            None => break,
        }
    }
    let end = prefix_end(prefix);
    for window in entries.windows(2) {
        assert!(
            window[0].key < window[1].key,
            "list is not in strictly ascending key order"
        );
    }
    for entry in &entries {
        assert!(
            entry.key.starts_with(prefix),
            "list returned a key outside the prefix"
        );
        if let Some(end) = &end {
            assert!(&entry.key < end);
        }
    }
    Ok((entries, at))
}
