//! Reads against a redb snapshot: get, list (at the latest or a past revision) and log reads for
//! watchers. Blocking; callers run these on tokio's blocking pool.
//!
//! A list at a past revision `r` is the current state with newer history undone: the first log
//! record after `r` of each key holds the key's entry as of `r` (its previous entry, or none),
//! and every other key has not changed since. This costs a scan of the log after `r`, which
//! retention keeps bounded, and needs no second copy of the data.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use redb::{Database, ReadableDatabase};

use super::codec::{decode_entry, decode_event};
use super::{KV, LOG, META, META_COMPACT, META_REVISION, engine_error};
use crate::error::{Result, StoreError};
use crate::limits::prefix_end;
use crate::types::{KeyValue, Revision, WatchEvent};

/// A snapshot's revision bookkeeping.
struct Revisions {
    current: Revision,
    compact: Revision,
}

fn revisions(txn: &redb::ReadTransaction, path: &Path) -> Result<Revisions> {
    let meta = txn
        .open_table(META)
        .map_err(|error| engine_error("opening table meta", path, error))?;
    let read = |name: &str| -> Result<Revision> {
        meta.get(name)
            .map_err(|error| engine_error("reading the store metadata", path, error))?
            .map(|guard| guard.value())
            .ok_or_else(|| {
                StoreError::corrupt(
                    format!("{name} is missing"),
                    format!("{}, table meta", path.display()),
                )
            })
    };
    Ok(Revisions {
        current: read(META_REVISION)?,
        compact: read(META_COMPACT)?,
    })
}

fn begin(db: &Database, path: &Path) -> Result<redb::ReadTransaction> {
    db.begin_read()
        .map_err(|error| engine_error("starting a read", path, error))
}

/// Reads one key at the latest revision.
pub(super) fn get(db: &Database, path: &Path, key: &[u8]) -> Result<Option<KeyValue>> {
    let txn = begin(db, path)?;
    let kv = txn
        .open_table(KV)
        .map_err(|error| engine_error("opening table kv", path, error))?;
    let value = kv
        .get(key)
        .map_err(|error| engine_error("reading a key", path, error))?;
    value
        .map(|guard| decode_entry(key, guard.value()))
        .transpose()
}

/// One page of a list, before it gets a continue token.
pub(super) struct Listed {
    pub(super) entries: Vec<KeyValue>,
    pub(super) revision: Revision,
    pub(super) more: bool,
}

/// Lists keys under `prefix` strictly after `start_after` (if given), at most `limit`, as of
/// revision `at` (the latest if `None`).
pub(super) fn list(
    db: &Database,
    path: &Path,
    prefix: &[u8],
    start_after: Option<Vec<u8>>,
    limit: Option<usize>,
    at: Option<Revision>,
) -> Result<Listed> {
    let txn = begin(db, path)?;
    let revisions = revisions(&txn, path)?;
    let at = at.unwrap_or(revisions.current);
    if at > revisions.current {
        return Err(StoreError::FutureRevision {
            requested: at,
            current: revisions.current,
        });
    }
    if at < revisions.compact {
        return Err(StoreError::Compacted {
            compact_revision: revisions.compact,
        });
    }
    let in_range = |key: &[u8]| {
        key.starts_with(prefix) && start_after.as_deref().is_none_or(|after| key > after)
    };

    // Keys changed after `at`, with their entry as of `at`.
    let mut overlay: BTreeMap<Vec<u8>, Option<KeyValue>> = BTreeMap::new();
    if at < revisions.current {
        let log = txn
            .open_table(LOG)
            .map_err(|error| engine_error("opening table log", path, error))?;
        let records = log
            .range::<(u64, u32)>((Bound::Excluded((at, u32::MAX)), Bound::Unbounded))
            .map_err(|error| engine_error("reading the log", path, error))?;
        for record in records {
            let (position, bytes) =
                record.map_err(|error| engine_error("reading the log", path, error))?;
            let event = decode_event(position.value(), bytes.value())?.event;
            if in_range(event.key()) && !overlay.contains_key(event.key()) {
                let key = event.key().to_vec();
                let prev = match event {
                    WatchEvent::Put { prev, .. } | WatchEvent::Delete { prev, .. } => prev,
                };
                overlay.insert(key, prev);
            }
        }
    }

    let kv = txn
        .open_table(KV)
        .map_err(|error| engine_error("opening table kv", path, error))?;
    let lower = match &start_after {
        Some(after) => Bound::Excluded(after.as_slice()),
        None => Bound::Included(prefix),
    };
    let end = prefix_end(prefix);
    let upper = match &end {
        Some(end) => Bound::Excluded(end.as_slice()),
        None => Bound::Unbounded,
    };
    let mut current = kv
        .range::<&[u8]>((lower, upper))
        .map_err(|error| engine_error("reading keys", path, error))?;
    let mut next_current = || -> Result<Option<KeyValue>> {
        match current.next() {
            None => Ok(None),
            Some(Err(error)) => Err(engine_error("reading keys", path, error)),
            Some(Ok((key, value))) => decode_entry(key.value(), value.value()).map(Some),
        }
    };

    let limit = limit.unwrap_or(usize::MAX);
    let mut entries = Vec::new();
    let mut more = false;
    let mut pending_current = next_current()?;
    let mut pending_overlay = overlay.into_iter().peekable();
    loop {
        let take_overlay = match (&pending_current, pending_overlay.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(current), Some((key, _))) => key.as_slice() <= current.key.as_slice(),
        };
        let candidate = if take_overlay {
            let Some((key, as_of)) = pending_overlay.next() else {
                break;
            };
            if pending_current
                .as_ref()
                .is_some_and(|current| current.key == key)
            {
                pending_current = next_current()?;
            }
            as_of
        } else {
            let taken = pending_current.take();
            pending_current = next_current()?;
            taken
        };
        if let Some(entry) = candidate {
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(entry);
        }
    }
    Ok(Listed {
        entries,
        revision: at,
        more,
    })
}

/// Stop a log chunk after this many bytes of records (values can be 1.5 MiB each).
const MAX_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// A chunk of history for a watcher.
pub(super) struct LogChunk {
    /// Matching events, in order.
    pub(super) events: Vec<WatchEvent>,
    /// The position of the last record read (matching or not), if any.
    pub(super) last_position: Option<(Revision, u32)>,
    /// Whether the chunk reached the end of the log as of this snapshot.
    pub(super) complete: bool,
    /// The store's revision in this snapshot.
    pub(super) head: Revision,
}

/// Reads up to `max_records` log records (and about [`MAX_CHUNK_BYTES`]) after `after` and keeps
/// those under `prefix`.
/// `processed` is the newest revision whose every event the watcher has seen; if history after
/// it is compacted, the watcher cannot continue.
pub(super) fn read_log(
    db: &Database,
    path: &Path,
    prefix: &[u8],
    after: (Revision, u32),
    processed: Revision,
    max_records: usize,
) -> Result<LogChunk> {
    let txn = begin(db, path)?;
    let revisions = revisions(&txn, path)?;
    if processed < revisions.compact {
        return Err(StoreError::Compacted {
            compact_revision: revisions.compact,
        });
    }
    let log = txn
        .open_table(LOG)
        .map_err(|error| engine_error("opening table log", path, error))?;
    let records = log
        .range::<(u64, u32)>((Bound::Excluded(after), Bound::Unbounded))
        .map_err(|error| engine_error("reading the log", path, error))?;
    let mut events = Vec::new();
    let mut last_position = None;
    let mut read_bytes = 0;
    for (read, record) in records.enumerate() {
        if read == max_records || read_bytes >= MAX_CHUNK_BYTES {
            return Ok(LogChunk {
                events,
                last_position,
                complete: false,
                head: revisions.current,
            });
        }
        let (position, bytes) =
            record.map_err(|error| engine_error("reading the log", path, error))?;
        let position = position.value();
        read_bytes += bytes.value().len();
        let event = decode_event(position, bytes.value())?.event;
        if event.key().starts_with(prefix) {
            events.push(event);
        }
        last_position = Some(position);
    }
    Ok(LogChunk {
        events,
        last_position,
        complete: true,
        head: revisions.current,
    })
}
