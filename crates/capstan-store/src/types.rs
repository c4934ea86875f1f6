//! The data model of the store, shared by every backend: entries, preconditions, list pages,
//! transactions and watch events. The semantics follow etcd's v3 API closely (see
//! `docs/store.md`), so that the etcd backend is a thin translation.

/// A point in the store's history. Every committed change (a put, a delete of an existing key,
/// or a transaction that changed at least one key) advances the store's revision; all the
/// changes of one transaction share one revision. Revisions are never reused, also across
/// restarts. A fresh store is at revision 1 (as etcd is); 0 means "before anything".
pub type Revision = u64;

/// One stored entry with its revision metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Revision at which the key was (last) created; a delete followed by a put starts anew.
    pub create_revision: Revision,
    /// Revision of the last change to the key.
    pub mod_revision: Revision,
    /// Number of puts since the key was created: 1 after the first put.
    pub version: u64,
}

impl KeyValue {
    /// The entry's revision metadata.
    pub fn meta(&self) -> KeyMeta {
        KeyMeta {
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// Revision metadata of a key; all zeros for a key that does not exist (as etcd reports it in
/// compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyMeta {
    /// See [`KeyValue::create_revision`].
    pub create_revision: Revision,
    /// See [`KeyValue::mod_revision`].
    pub mod_revision: Revision,
    /// See [`KeyValue::version`].
    pub version: u64,
}

impl KeyMeta {
    /// The metadata of a key that does not exist.
    pub const ABSENT: KeyMeta = KeyMeta {
        create_revision: 0,
        mod_revision: 0,
        version: 0,
    };

    /// Whether the key exists.
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

/// The condition a single-key write is made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    /// Write unconditionally.
    #[default]
    None,
    /// Write only if the key exists.
    MustExist,
    /// Write only if the key does not exist (create).
    MustNotExist,
    /// Write only if the key's `mod_revision` is exactly this (compare-and-swap). 0 means the
    /// key must not exist.
    ModRevision(Revision),
}

impl Precondition {
    /// The compare that expresses this precondition on `key`, if any.
    pub fn to_compare(self, key: &[u8]) -> Option<Compare> {
        match self {
            Precondition::None => None,
            Precondition::MustExist => Some(Compare::exists(key)),
            Precondition::MustNotExist => Some(Compare::not_exists(key)),
            Precondition::ModRevision(revision) => {
                Some(Compare::mod_revision(key, CompareOp::Equal, revision))
            }
        }
    }
}

/// Options of a list call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// The most entries to return in one page; `None` returns everything.
    pub limit: Option<usize>,
    /// The token of the previous page ([`ListPage::continue_token`]) to continue from. A
    /// continued list reads at the revision of its first page.
    pub continue_token: Option<String>,
    /// Read the state as of this revision instead of the latest. Must be at least the
    /// compaction point and at most the current revision; 0 is rejected (etcd would read it as
    /// "latest").
    pub revision: Option<Revision>,
}

impl ListOptions {
    /// Options that return everything at the latest revision.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Continues from a previous page's token.
    pub fn continue_from(mut self, token: impl Into<String>) -> Self {
        self.continue_token = Some(token.into());
        self
    }

    /// Reads at a past revision.
    pub fn at_revision(mut self, revision: Revision) -> Self {
        self.revision = Some(revision);
        self
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The entries, in ascending key (byte) order.
    pub entries: Vec<KeyValue>,
    /// The revision the page was read at. Watching from it after reading every page misses
    /// nothing and repeats nothing.
    pub revision: Revision,
    /// Present when more entries follow: pass it in [`ListOptions::continue_token`].
    pub continue_token: Option<String>,
}

/// The outcome of a successful put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResponse {
    /// The revision of the write (the entry's new `mod_revision`).
    pub revision: Revision,
    /// The entry before the write, if the key existed.
    pub prev: Option<KeyValue>,
}

/// The outcome of a successful delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteResponse {
    /// The revision of the delete; when nothing was deleted, the store's current revision
    /// (unchanged).
    pub revision: Revision,
    /// The deleted entry; `None` when the key did not exist (nothing changed).
    pub prev: Option<KeyValue>,
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's `mod_revision` (0 when absent).
    ModRevision,
    /// The key's `create_revision` (0 when absent). Fencing on a lease-bound ownership key
    /// usually compares this: it changes only when the key is re-acquired.
    CreateRevision,
    /// The key's `version` (0 when absent): `Version == 0` means "does not exist".
    Version,
}

/// How a [`Compare`] relates the key's metadata to the operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `actual == operand`
    Equal,
    /// `actual != operand`
    NotEqual,
    /// `actual < operand`
    Less,
    /// `actual > operand`
    Greater,
}

/// A condition on one key's metadata, evaluated atomically with a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key to look at. It need not be touched by the transaction's operations.
    pub key: Vec<u8>,
    /// Which metadata field.
    pub target: CompareTarget,
    /// The relation.
    pub op: CompareOp,
    /// The value to compare with.
    pub operand: u64,
}

impl Compare {
    /// `mod_revision <op> revision`.
    pub fn mod_revision(key: &[u8], op: CompareOp, revision: Revision) -> Self {
        Compare {
            key: key.to_vec(),
            target: CompareTarget::ModRevision,
            op,
            operand: revision,
        }
    }

    /// `create_revision <op> revision`.
    pub fn create_revision(key: &[u8], op: CompareOp, revision: Revision) -> Self {
        Compare {
            key: key.to_vec(),
            target: CompareTarget::CreateRevision,
            op,
            operand: revision,
        }
    }

    /// `version <op> version`.
    pub fn version(key: &[u8], op: CompareOp, version: u64) -> Self {
        Compare {
            key: key.to_vec(),
            target: CompareTarget::Version,
            op,
            operand: version,
        }
    }

    /// The key exists.
    pub fn exists(key: &[u8]) -> Self {
        Self::version(key, CompareOp::Greater, 0)
    }

    /// The key does not exist.
    pub fn not_exists(key: &[u8]) -> Self {
        Self::version(key, CompareOp::Equal, 0)
    }

    /// Evaluates the compare against the key's current metadata ([`KeyMeta::ABSENT`] when the
    /// key does not exist).
    pub fn matches(&self, meta: KeyMeta) -> bool {
        let actual = match self.target {
            CompareTarget::ModRevision => meta.mod_revision,
            CompareTarget::CreateRevision => meta.create_revision,
            CompareTarget::Version => meta.version,
        };
        match self.op {
            CompareOp::Equal => actual == self.operand,
            CompareOp::NotEqual => actual != self.operand,
            CompareOp::Less => actual < self.operand,
            CompareOp::Greater => actual > self.operand,
        }
    }
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` (a no-op if it does not exist).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

impl TxnOp {
    /// The key the operation writes.
    pub fn key(&self) -> &[u8] {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

/// An atomic transaction: if every compare holds, apply every operation at one new revision;
/// otherwise apply nothing. Each key may appear in at most one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// Writes applied when they do.
    pub success: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds a put.
    pub fn put(mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.success.push(TxnOp::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.success.push(TxnOp::Delete { key: key.into() });
        self
    }
}

/// The result of one operation of a successful transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResult {
    /// A put; `prev` is the entry it replaced.
    Put {
        /// The entry before the put, if any.
        prev: Option<KeyValue>,
    },
    /// A delete; `prev` is the deleted entry, `None` if the key did not exist.
    Delete {
        /// The deleted entry, if any.
        prev: Option<KeyValue>,
    },
}

/// A compare of a failed transaction that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareFailure {
    /// Index of the compare in [`Txn::compares`].
    pub index: usize,
    /// The key's metadata at the time of the evaluation.
    pub current: KeyMeta,
}

/// The outcome of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held and the operations were applied.
    pub succeeded: bool,
    /// The revision of the transaction's writes if it succeeded and changed something;
    /// otherwise the store's revision at which it was evaluated.
    pub revision: Revision,
    /// One result per operation when it succeeded; empty when it failed.
    pub results: Vec<TxnOpResult>,
    /// The compares that did not hold (in order), when it failed; empty when it succeeded.
    pub failures: Vec<CompareFailure>,
}

/// One change delivered by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated.
    Put {
        /// The new entry (its `mod_revision` is the event's revision).
        kv: KeyValue,
        /// The entry before, if the key existed and the backend knows it.
        prev: Option<KeyValue>,
    },
    /// A key was deleted.
    Delete {
        /// The deleted key.
        key: Vec<u8>,
        /// The revision of the delete.
        revision: Revision,
        /// The deleted entry, if the backend knows it (the embedded backend always does).
        prev: Option<KeyValue>,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    /// The entry before the change, if known.
    pub fn prev(&self) -> Option<&KeyValue> {
        match self {
            WatchEvent::Put { prev, .. } | WatchEvent::Delete { prev, .. } => prev.as_ref(),
        }
    }
}
