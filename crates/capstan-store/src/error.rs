//! The one error type of the store, shared by every backend and the typed layer.
//!
//! Callers branch on a few variants: [`StoreError::Conflict`] (re-read and retry),
//! [`StoreError::Compacted`] (relist, then watch from the list's revision),
//! [`StoreError::FenceLost`] (stop acting: another member owns the cluster now) and
//! [`StoreError::NotFound`]. Everything else is a bad request or an unhealthy backend.
//!
//! The error is `Clone` (sources are kept behind `Arc`) because one backend failure may have to
//! be reported to several waiters, e.g. every request of a group commit that failed.

use std::path::PathBuf;
use std::sync::Arc;

use crate::types::Revision;

/// Convenience alias used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Source error of a backend failure, shareable between waiters.
pub type BoxedSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a store operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key (or typed object) does not exist.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key, lossily decoded as UTF-8.
        key: String,
    },

    /// A precondition or compare failed: the key changed since the caller read it.
    /// Re-read the key and retry with its current revision.
    #[error(
        "conflict on key {key:?}: its current mod revision is {current_revision} (0 means it does not exist)"
    )]
    Conflict {
        /// The key whose precondition failed.
        key: String,
        /// The key's current `mod_revision`; 0 when the key does not exist.
        current_revision: Revision,
    },

    /// A fencing compare failed: the ownership key the write was conditioned on has changed or
    /// gone, so the caller no longer owns the resource and must stop writing.
    #[error(
        "fence on key {key:?} lost: its current mod revision is {current_revision} (0 means it does not exist)"
    )]
    FenceLost {
        /// The fencing (ownership) key.
        key: String,
        /// The fencing key's current `mod_revision`; 0 when it does not exist.
        current_revision: Revision,
    },

    /// The requested revision has been compacted away. Relist, then watch from the list's
    /// revision.
    #[error(
        "revision has been compacted: history before revision {compact_revision} is gone; relist and watch from the list's revision"
    )]
    Compacted {
        /// The store's compaction point: the oldest revision that can still be read.
        compact_revision: Revision,
    },

    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future: the store is at revision {current}")]
    FutureRevision {
        /// The revision that was asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },

    /// A key or prefix is not acceptable.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key, lossily decoded as UTF-8 and shortened.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A value is larger than the store accepts.
    #[error("value for key {key:?} is {size} bytes, more than the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key the value was written to.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit in bytes ([`crate::limits::MAX_VALUE_BYTES`]).
        limit: usize,
    },

    /// A request is malformed: too many operations in a transaction, the same key twice, a bad
    /// continue token, revision 0, ...
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong with the request.
        reason: String,
    },

    /// The store file is already open, by this process or another one.
    #[error(
        "store file {path} is locked by another open handle (another process, or this one); close it first"
    )]
    AlreadyOpen {
        /// The store file.
        path: PathBuf,
    },

    /// The store data is not what this code wrote: a damaged file or an incompatible format.
    #[error("store data is corrupt: {what} (at {location})")]
    Corrupt {
        /// What is wrong.
        what: String,
        /// Where: a file path, a table and key, a log position.
        location: String,
    },

    /// An I/O error outside the storage engine (opening files, creating directories).
    #[error("i/o error while {op} {path}")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The storage engine or remote backend failed.
    #[error("store backend failed while {op}")]
    Backend {
        /// What the store was doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: BoxedSource,
    },

    /// A typed value could not be encoded or decoded as JSON.
    #[error("cannot {action} the value of key {key:?} as JSON")]
    Codec {
        /// `"encode"` or `"decode"`.
        action: &'static str,
        /// The key of the value.
        key: String,
        /// The serde error.
        #[source]
        source: Arc<serde_json::Error>,
    },

    /// The store has been closed; open it again to continue.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// Builds a [`StoreError::Backend`] from any error.
    pub fn backend(
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend {
            op,
            source: Arc::new(source),
        }
    }

    /// Builds a [`StoreError::Corrupt`].
    pub fn corrupt(what: impl Into<String>, location: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            location: location.into(),
        }
    }

    /// Builds a [`StoreError::InvalidRequest`].
    pub fn invalid_request(reason: impl Into<String>) -> Self {
        StoreError::InvalidRequest {
            reason: reason.into(),
        }
    }

    /// True for [`StoreError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// True for [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// True for [`StoreError::Compacted`].
    pub fn is_compacted(&self) -> bool {
        matches!(self, StoreError::Compacted { .. })
    }
}

/// Renders a key for error messages and logs: lossy UTF-8, shortened to a readable length.
pub fn display_key(key: &[u8]) -> String {
    const MAX: usize = 256;
    let text = String::from_utf8_lossy(key);
    if text.len() <= MAX {
        return text.into_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
