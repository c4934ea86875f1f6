//! The writer thread: the only code that writes the file.
//!
//! Requests are taken from the queue in batches (group commit): each transaction of a batch is
//! evaluated and applied in arrival order, at its own revision, inside one redb write
//! transaction, and the batch is committed durably once. Only after the commit returns are the
//! callers answered and the new revisions published to watchers, so an acknowledged write is
//! on disk and a watcher never sees a write that could still be lost. If the commit fails,
//! every request of the batch fails and nothing of it is visible.
//!
//! Compaction (explicit, and automatic per [`super::Retention`]) also runs here, between
//! batches.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, info_span, warn};

use super::codec::{decode_entry, decode_event, decode_meta, encode_entry, encode_event};
use super::{Broadcast, Committed, Core, KV, LOG, META, META_COMPACT, META_REVISION, engine_error};
use crate::error::{Result, StoreError};
use crate::types::{
    CompareFailure, KeyMeta, KeyValue, Revision, Txn, TxnOp, TxnOpResult, TxnResponse, WatchEvent,
};

/// A request to the writer.
pub(super) enum Command {
    /// Apply a (validated) transaction.
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResponse>>,
    },
    /// Compact history up to a revision.
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Finish what is queued before this, then stop.
    Shutdown { reply: oneshot::Sender<()> },
}

/// Most requests committed together.
const MAX_GROUP: usize = 128;
/// Stop adding requests to a group past this many bytes of keys and values.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;
/// Most log records one automatic compaction round deletes, to keep write latency bounded.
const AUTO_COMPACT_BATCH: usize = 20_000;

struct PendingTxn {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnResponse>>,
}

struct Writer {
    core: Arc<Core>,
    /// Next time the age-based retention is looked at.
    next_age_check: Instant,
}

/// The writer thread's main loop; returns when every handle is gone or on shutdown.
pub(super) fn run(core: Arc<Core>, mut queue: mpsc::Receiver<Command>) {
    let span = info_span!("store_writer", path = %core.path.display());
    let _entered = span.enter();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve(Arc::clone(&core), &mut queue)
    }));
    let shutdown = match outcome {
        Ok(shutdown) => shutdown,
        Err(_) => {
            // Requests of the failed batch were dropped with it; their callers, and every later
            // writer, get an error that says the writer is gone.
            error!("the store writer panicked; writes fail until the store is reopened");
            core.writer_panicked.store(true, Ordering::Release);
            None
        }
    };
    // Requests still queued after a shutdown are dropped; their callers get `Closed`.
    queue.close();
    core.writer_stopped.store(true, Ordering::Release);
    let _ = core.events.send(Broadcast::Closed);
    debug!("store writer stopped");
    if let Some(reply) = shutdown {
        let _ = reply.send(());
    }
}

/// Serves requests until every handle is gone or a shutdown arrives (whose reply it returns).
fn serve(core: Arc<Core>, queue: &mut mpsc::Receiver<Command>) -> Option<oneshot::Sender<()>> {
    let mut writer = Writer {
        core,
        next_age_check: Instant::now(),
    };
    let mut shutdown = None;
    while shutdown.is_none() {
        let Some(first) = queue.blocking_recv() else {
            break;
        };
        let mut commands = vec![first];
        let mut bytes = 0usize;
        while commands.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match queue.try_recv() {
                Ok(command) => {
                    if let Command::Txn { txn, .. } = &command {
                        bytes += txn_bytes(txn);
                    }
                    commands.push(command);
                }
                Err(_) => break,
            }
        }
        let mut group = Vec::new();
        for command in commands {
            match command {
                Command::Txn { txn, reply } => group.push(PendingTxn { txn, reply }),
                Command::Compact { revision, reply } => {
                    writer.commit_group(std::mem::take(&mut group));
                    let _ = reply.send(writer.compact(revision));
                }
                Command::Shutdown { reply } => {
                    writer.commit_group(std::mem::take(&mut group));
                    shutdown = Some(reply);
                    break;
                }
            }
        }
        writer.commit_group(group);
        if shutdown.is_none() {
            writer.auto_compact();
        }
    }
    shutdown
}

fn txn_bytes(txn: &Txn) -> usize {
    txn.success
        .iter()
        .map(|op| match op {
            TxnOp::Put { key, value } => key.len() + value.len(),
            TxnOp::Delete { key } => key.len(),
        })
        .sum()
}

/// The outcome of one transaction inside a group, before the group commits.
struct Applied {
    response: TxnResponse,
    events: Vec<WatchEvent>,
}

impl Writer {
    fn path(&self) -> &std::path::Path {
        &self.core.path
    }

    fn commit_group(&mut self, group: Vec<PendingTxn>) {
        if group.is_empty() {
            return;
        }
        let started = Instant::now();
        let requests = group.len();
        let outcome = {
            let txns: Vec<&Txn> = group.iter().map(|pending| &pending.txn).collect();
            self.apply_and_commit(&txns)
        };
        match outcome {
            Ok(applied) => {
                // Publish the new revision before answering, so that a caller that reads
                // `current_revision` after its write sees at least its write's revision.
                let head = applied
                    .iter()
                    .map(|applied| applied.response.revision)
                    .max()
                    .unwrap_or_else(|| self.core.revision.load(Ordering::Acquire));
                self.core.revision.store(head, Ordering::Release);
                let mut published = Vec::new();
                for (pending, applied) in group.into_iter().zip(applied) {
                    if !applied.events.is_empty() {
                        published.push(Arc::new(Committed {
                            revision: applied.response.revision,
                            events: applied.events,
                        }));
                    }
                    // The caller may have gone away (cancelled); the write stands regardless.
                    let _ = pending.reply.send(Ok(applied.response));
                }
                debug!(
                    requests,
                    revision = head,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "committed"
                );
                for committed in published {
                    // No receivers is fine: nobody is watching.
                    let _ = self.core.events.send(Broadcast::Committed(committed));
                }
            }
            Err(failure) => {
                error!(error = %failure, requests, "store commit failed; no request of the group was applied");
                for pending in group {
                    let _ = pending.reply.send(Err(failure.clone()));
                }
            }
        }
    }

    /// Applies the transactions in order inside one write transaction and commits it.
    fn apply_and_commit(&self, txns: &[&Txn]) -> Result<Vec<Applied>> {
        let guard = self.core.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let write = begin_write(db, self.path())?;
        let committed_at_ms = unix_millis();
        let mut applied = Vec::with_capacity(txns.len());
        {
            let mut kv = write
                .open_table(KV)
                .map_err(|error| engine_error("opening table kv", self.path(), error))?;
            let mut log = write
                .open_table(LOG)
                .map_err(|error| engine_error("opening table log", self.path(), error))?;
            let mut meta = write
                .open_table(META)
                .map_err(|error| engine_error("opening table meta", self.path(), error))?;
            let mut revision = meta_value(&meta, META_REVISION, self.path())?;
            for txn in txns {
                let outcome = apply_txn(
                    &mut kv,
                    &mut log,
                    txn,
                    revision,
                    committed_at_ms,
                    self.path(),
                )?;
                revision = outcome.response.revision;
                applied.push(outcome);
            }
            meta.insert(META_REVISION, revision)
                .map_err(|error| engine_error("writing the store metadata", self.path(), error))?;
        }
        write
            .commit()
            .map_err(|error| engine_error("committing", self.path(), error))?;
        Ok(applied)
    }

    /// Explicit compaction: drops every log record up to and including `target`.
    fn compact(&mut self, target: Revision) -> Result<()> {
        let guard = self.core.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let write = begin_write(db, self.path())?;
        let removed = {
            let mut log = write
                .open_table(LOG)
                .map_err(|error| engine_error("opening table log", self.path(), error))?;
            let mut meta = write
                .open_table(META)
                .map_err(|error| engine_error("opening table meta", self.path(), error))?;
            let current = meta_value(&meta, META_REVISION, self.path())?;
            let compacted = meta_value(&meta, META_COMPACT, self.path())?;
            if target <= compacted {
                return Err(StoreError::Compacted {
                    compact_revision: compacted,
                });
            }
            if target > current {
                return Err(StoreError::FutureRevision {
                    requested: target,
                    current,
                });
            }
            let before = log
                .len()
                .map_err(|error| engine_error("counting the log", self.path(), error))?;
            log.retain_in::<(u64, u32), _>(..=(target, u32::MAX), |_, _| false)
                .map_err(|error| engine_error("compacting the log", self.path(), error))?;
            let after = log
                .len()
                .map_err(|error| engine_error("counting the log", self.path(), error))?;
            meta.insert(META_COMPACT, target)
                .map_err(|error| engine_error("writing the store metadata", self.path(), error))?;
            before - after
        };
        write
            .commit()
            .map_err(|error| engine_error("committing a compaction", self.path(), error))?;
        self.core.compact_revision.store(target, Ordering::Release);
        info!(
            revision = target,
            removed_records = removed,
            "compacted store history"
        );
        Ok(())
    }

    /// Compacts according to the retention, a bounded amount per call.
    fn auto_compact(&mut self) {
        let retention = self.core.options.retention;
        let current = self.core.revision.load(Ordering::Acquire);
        let compacted = self.core.compact_revision.load(Ordering::Acquire);
        let mut target = compacted;
        if let Some(max) = retention.max_revisions {
            // Let history overshoot by an eighth before compacting, so compaction runs in
            // batches rather than after every write.
            let slack = (max / 8).max(1);
            if current.saturating_sub(compacted) > max.saturating_add(slack) {
                target = target.max(current - max);
            }
        }
        let check_age = retention.max_age.is_some() && Instant::now() >= self.next_age_check;
        if target == compacted && !check_age {
            return;
        }
        match self.compact_bounded(target, if check_age { retention.max_age } else { None }) {
            Ok(Some((revision, removed))) => {
                info!(
                    revision,
                    removed_records = removed,
                    "compacted store history (retention)"
                );
            }
            Ok(None) => {}
            Err(failure) => {
                warn!(error = %failure, "automatic compaction failed; will retry after the next write")
            }
        }
        if let Some(max_age) = retention.max_age.filter(|_| check_age) {
            self.next_age_check = Instant::now()
                + (max_age / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
        }
    }

    /// Deletes up to [`AUTO_COMPACT_BATCH`] log records at or below `target` (raised to cover
    /// records older than `max_age`) and moves the compaction point past them.
    fn compact_bounded(
        &mut self,
        target: Revision,
        max_age: Option<Duration>,
    ) -> Result<Option<(Revision, usize)>> {
        let guard = self.core.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let write = begin_write(db, self.path())?;
        let outcome = {
            let mut log = write
                .open_table(LOG)
                .map_err(|error| engine_error("opening table log", self.path(), error))?;
            let mut meta = write
                .open_table(META)
                .map_err(|error| engine_error("opening table meta", self.path(), error))?;
            let compacted = meta_value(&meta, META_COMPACT, self.path())?;
            let current = meta_value(&meta, META_REVISION, self.path())?;
            let cutoff_ms = max_age.map(|age| {
                unix_millis().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
            });
            // Walk the oldest records: delete those below the target or older than the cutoff.
            let mut doomed = Vec::new();
            let mut new_compact = compacted;
            {
                let records = log
                    .iter()
                    .map_err(|error| engine_error("reading the log", self.path(), error))?;
                for record in records {
                    if doomed.len() == AUTO_COMPACT_BATCH {
                        break;
                    }
                    let (position, bytes) = record
                        .map_err(|error| engine_error("reading the log", self.path(), error))?;
                    let position = position.value();
                    let expired = if position.0 <= target {
                        true
                    } else {
                        match cutoff_ms {
                            Some(cutoff) => {
                                decode_event(position, bytes.value())?.committed_at_ms < cutoff
                            }
                            None => false,
                        }
                    };
                    if !expired {
                        break;
                    }
                    new_compact = new_compact.max(position.0);
                    doomed.push(position);
                }
            }
            // With no record left below the target (e.g. already deleted), still move the point.
            if doomed.len() < AUTO_COMPACT_BATCH {
                new_compact = new_compact.max(target);
            }
            let new_compact = new_compact.min(current);
            if new_compact <= compacted {
                None
            } else {
                for position in &doomed {
                    log.remove(position)
                        .map_err(|error| engine_error("compacting the log", self.path(), error))?;
                }
                meta.insert(META_COMPACT, new_compact).map_err(|error| {
                    engine_error("writing the store metadata", self.path(), error)
                })?;
                Some((new_compact, doomed.len()))
            }
        };
        if outcome.is_none() {
            write
                .abort()
                .map_err(|error| engine_error("aborting a compaction", self.path(), error))?;
            return Ok(None);
        }
        write
            .commit()
            .map_err(|error| engine_error("committing a compaction", self.path(), error))?;
        if let Some((revision, _)) = outcome {
            self.core
                .compact_revision
                .store(revision, Ordering::Release);
        }
        Ok(outcome)
    }
}

fn begin_write(db: &redb::Database, path: &std::path::Path) -> Result<WriteTransaction> {
    let mut write = db
        .begin_write()
        .map_err(|error| engine_error("starting a write", path, error))?;
    // Two-phase commit: a damaged commit is reported as corruption instead of being rolled back
    // silently to the previous one.
    write.set_two_phase_commit(true);
    Ok(write)
}

fn meta_value(
    meta: &Table<'_, &'static str, u64>,
    name: &str,
    path: &std::path::Path,
) -> Result<u64> {
    meta.get(name)
        .map_err(|error| engine_error("reading the store metadata", path, error))?
        .map(|guard| guard.value())
        .ok_or_else(|| {
            StoreError::corrupt(
                format!("{name} is missing"),
                format!("{}, table meta", path.display()),
            )
        })
}

fn read_entry(
    kv: &Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
    path: &std::path::Path,
) -> Result<Option<KeyValue>> {
    let value = kv
        .get(key)
        .map_err(|error| engine_error("reading a key", path, error))?;
    value
        .map(|guard| decode_entry(key, guard.value()))
        .transpose()
}

fn read_meta_of(
    kv: &Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
    path: &std::path::Path,
) -> Result<KeyMeta> {
    let value = kv
        .get(key)
        .map_err(|error| engine_error("reading a key", path, error))?;
    match value {
        Some(guard) => decode_meta(key, guard.value()),
        None => Ok(KeyMeta::ABSENT),
    }
}

/// Evaluates and applies one transaction on top of `revision`.
fn apply_txn(
    kv: &mut Table<'_, &'static [u8], &'static [u8]>,
    log: &mut Table<'_, (u64, u32), &'static [u8]>,
    txn: &Txn,
    revision: Revision,
    committed_at_ms: u64,
    path: &std::path::Path,
) -> Result<Applied> {
    let mut failures = Vec::new();
    for (index, compare) in txn.compares.iter().enumerate() {
        let current = read_meta_of(kv, &compare.key, path)?;
        if !compare.matches(current) {
            failures.push(CompareFailure { index, current });
        }
    }
    if !failures.is_empty() {
        return Ok(Applied {
            response: TxnResponse {
                succeeded: false,
                revision,
                results: Vec::new(),
                failures,
            },
            events: Vec::new(),
        });
    }

    let next = revision + 1;
    let mut results = Vec::with_capacity(txn.success.len());
    let mut events = Vec::with_capacity(txn.success.len());
    for op in &txn.success {
        match op {
            TxnOp::Put { key, value } => {
                let prev = read_entry(kv, key, path)?;
                let meta = KeyMeta {
                    create_revision: prev.as_ref().map_or(next, |prev| prev.create_revision),
                    mod_revision: next,
                    version: prev.as_ref().map_or(1, |prev| prev.version + 1),
                };
                kv.insert(key.as_slice(), encode_entry(meta, value).as_slice())
                    .map_err(|error| engine_error("writing a key", path, error))?;
                let entry = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: meta.create_revision,
                    mod_revision: meta.mod_revision,
                    version: meta.version,
                };
                events.push(WatchEvent::Put {
                    kv: entry,
                    prev: prev.clone(),
                });
                results.push(TxnOpResult::Put { prev });
            }
            TxnOp::Delete { key } => {
                let prev = read_entry(kv, key, path)?;
                if prev.is_some() {
                    kv.remove(key.as_slice())
                        .map_err(|error| engine_error("deleting a key", path, error))?;
                    events.push(WatchEvent::Delete {
                        key: key.clone(),
                        revision: next,
                        prev: prev.clone(),
                    });
                }
                results.push(TxnOpResult::Delete { prev });
            }
        }
    }
    if events.is_empty() {
        // Nothing changed (only deletes of absent keys): the revision does not move.
        return Ok(Applied {
            response: TxnResponse {
                succeeded: true,
                revision,
                results,
                failures: Vec::new(),
            },
            events,
        });
    }
    for (index, event) in events.iter().enumerate() {
        let index =
            u32::try_from(index).expect("a transaction holds at most MAX_TXN_OPS operations");
        log.insert(
            (next, index),
            encode_event(committed_at_ms, event).as_slice(),
        )
        .map_err(|error| engine_error("appending to the log", path, error))?;
    }
    Ok(Applied {
        response: TxnResponse {
            succeeded: true,
            revision: next,
            results,
            failures: Vec::new(),
        },
        events,
    })
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
