//! The embedded backend: the whole store in one crash-safe [redb] file, for `capstand
//! all-in-one` and small installs.
//!
//! Start with [`EmbeddedStore::open`]. The pieces:
//!
//! - `writer.rs`: one dedicated OS thread owns every write. Requests queue on a bounded channel;
//!   the thread takes whatever is queued (a *group commit*), applies each request in order at its
//!   own revision inside one redb write transaction, commits durably (fsync, two-phase commit),
//!   then answers the callers and publishes the committed revisions to live watchers. It also
//!   runs compaction, explicit and automatic.
//! - `read.rs`: gets, lists (also at a past revision, by undoing newer history from the log) and
//!   log reads for watchers. They run on tokio's blocking pool, against a redb MVCC snapshot, so
//!   they never wait for the writer.
//! - `watch.rs`: a watch stream replays the log, then follows the in-process broadcast; when it
//!   falls behind the broadcast buffer it goes back to the log, so a slow watcher never holds up a
//!   writer and never loses an event. The only way to fall too far behind is to fall behind
//!   compaction, which ends the stream with [`StoreError::Compacted`].
//! - `codec.rs`: the byte format of the tables.
//!
//! ## Tables
//!
//! | table | key | value |
//! |---|---|---|
//! | `kv` | user key | entry: create/mod revision, version, value |
//! | `log` | (revision, index in revision) | one change with the previous entry and its commit time |
//! | `meta` | name | `format`, `revision` (current), `compact_revision` |
//!
//! The current revision lives in `meta` and is only ever advanced, so revision numbers are never
//! reused, even after history is compacted away or the process restarts.

mod codec;
mod read;
mod watch;
mod writer;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use redb::{Database, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::error::{Result, StoreError};
use crate::limits::{ContinueToken, validate_key, validate_prefix, validate_txn};
use crate::store::{Store, WatchStream};
use crate::types::{KeyValue, ListOptions, ListPage, Revision, Txn, TxnResponse, WatchEvent};

const KV: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<'static, (u64, u32), &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

const META_FORMAT: &str = "format";
const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact_revision";

/// The table layout version this code writes and reads.
const FORMAT_VERSION: u64 = 1;

/// How much history the embedded backend keeps before compacting automatically.
///
/// History is dropped as soon as it exceeds *either* limit; `None` disables a limit. Compaction
/// runs in the writer after commits, so a store that is not written to keeps its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many revisions of history.
    pub max_revisions: Option<u64>,
    /// Keep history at most this old.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    /// The last 10 000 revisions, and at most one hour.
    fn default() -> Self {
        Retention {
            max_revisions: Some(10_000),
            max_age: Some(Duration::from_secs(3600)),
        }
    }
}

impl Retention {
    /// Keep everything until [`Store::compact`] is called.
    pub fn unlimited() -> Self {
        Retention {
            max_revisions: None,
            max_age: None,
        }
    }
}

/// Options of [`EmbeddedStore::open`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Create the file (and its parent directories) if it does not exist. Default: true.
    pub create_if_missing: bool,
    /// Verify every page's checksum when opening, so that a damaged file is reported as
    /// [`StoreError::Corrupt`] instead of being trusted. Reads the whole file. Default: true.
    pub verify_on_open: bool,
    /// Automatic compaction. Default: [`Retention::default`].
    pub retention: Retention,
    /// How many committed revisions the live-watch broadcast buffers; a watcher further behind
    /// reads the log instead. Default: 256.
    pub watch_buffer: usize,
    /// How many write requests may queue for the writer before callers wait. Default: 1024.
    pub write_queue: usize,
    /// Page cache of the storage engine, in bytes. Default: 64 MiB.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            create_if_missing: true,
            verify_on_open: true,
            retention: Retention::default(),
            watch_buffer: 256,
            write_queue: 1024,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The store in one redb file. Cheap to clone; clones share the file, the writer and the
/// watchers.
///
/// Only one handle (in any process) may have the file open: a second [`EmbeddedStore::open`]
/// fails with [`StoreError::AlreadyOpen`]. Call [`EmbeddedStore::close`] to release the file
/// deterministically; dropping every clone releases it too, shortly after, once the writer
/// thread has drained its queue.
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
}

/// What handles own. Dropping the last handle drops `commands`, which stops the writer.
struct Shared {
    core: Arc<Core>,
    commands: mpsc::Sender<writer::Command>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the writer, readers and watchers share.
struct Core {
    path: PathBuf,
    /// `None` once closed. Readers and the writer hold the read lock while they use the
    /// database; close takes the write lock, so it waits for them.
    db: RwLock<Option<Database>>,
    /// The latest committed revision.
    revision: AtomicU64,
    /// The latest compaction point.
    compact_revision: AtomicU64,
    /// Committed revisions for live watchers.
    events: broadcast::Sender<Broadcast>,
    /// Set by the writer thread when it stops, before it broadcasts [`Broadcast::Closed`].
    writer_stopped: AtomicBool,
    /// Set when the writer thread stopped because it panicked.
    writer_panicked: AtomicBool,
    options: EmbeddedOptions,
}

/// One committed revision, as published to live watchers.
#[derive(Debug)]
struct Committed {
    revision: Revision,
    events: Vec<WatchEvent>,
}

#[derive(Debug, Clone)]
enum Broadcast {
    Committed(Arc<Committed>),
    /// The writer stopped; no more revisions will be published.
    Closed,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.core.path)
            .field(
                "revision",
                &self.shared.core.revision.load(Ordering::Acquire),
            )
            .field(
                "compact_revision",
                &self.shared.core.compact_revision.load(Ordering::Acquire),
            )
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`.
    ///
    /// A file that is not a store, is damaged or truncated fails with [`StoreError::Corrupt`]
    /// (never a panic, never a silent reset); a file another handle has open fails with
    /// [`StoreError::AlreadyOpen`]. After a crash the storage engine recovers the last durable
    /// commit, which includes every write that was acknowledged.
    pub async fn open(path: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let blocking_path = path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            open_database(&blocking_path, &options).map(|db| (db, options))
        })
        .await
        .map_err(|join| StoreError::backend("opening the store file", join))?;
        let ((db, revision, compact_revision), options) = opened?;
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let (commands, queue) = mpsc::channel(options.write_queue.max(1));
        let core = Arc::new(Core {
            path,
            db: RwLock::new(Some(db)),
            revision: AtomicU64::new(revision),
            compact_revision: AtomicU64::new(compact_revision),
            events,
            writer_stopped: AtomicBool::new(false),
            writer_panicked: AtomicBool::new(false),
            options,
        });
        let writer_core = Arc::clone(&core);
        let writer = std::thread::Builder::new()
            .name("capstan-store-writer".to_string())
            .spawn(move || writer::run(writer_core, queue))
            .map_err(|source| StoreError::Io {
                op: "starting the writer thread for",
                path: core.path.clone(),
                source: Arc::new(source),
            })?;
        info!(path = %core.path.display(), revision, compact_revision, "opened embedded store");
        Ok(EmbeddedStore {
            shared: Arc::new(Shared {
                core,
                commands,
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.shared.core.path
    }

    /// The current compaction point: the oldest revision that can still be read or watched
    /// from.
    pub fn compact_revision(&self) -> Revision {
        self.shared.core.compact_revision.load(Ordering::Acquire)
    }

    /// Finishes the queued writes, stops the writer and closes the file, so that it can be
    /// opened again (by this or another process). Other clones of this handle fail with
    /// [`StoreError::Closed`] afterwards and open watches end with it.
    pub async fn close(self) -> Result<()> {
        let (reply, done) = oneshot::channel();
        if self
            .shared
            .commands
            .send(writer::Command::Shutdown { reply })
            .await
            .is_ok()
        {
            // An error means the writer already stopped, which is what we want.
            let _ = done.await;
        }
        let writer = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let core = Arc::clone(&self.shared.core);
        tokio::task::spawn_blocking(move || -> Result<()> {
            if let Some(writer) = writer
                && writer.join().is_err()
            {
                warn!(path = %core.path.display(), "store writer thread had panicked");
            }
            let db = core
                .db
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(db) = db {
                db.close()
                    .map_err(|error| engine_error("closing the store file", &core.path, error))?;
            }
            info!(path = %core.path.display(), "closed embedded store");
            Ok(())
        })
        .await
        .map_err(|join| StoreError::backend("closing the store file", join))?
    }

    async fn submit<T: Send + 'static>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> writer::Command,
    ) -> Result<T> {
        let (reply, response) = oneshot::channel();
        self.shared
            .commands
            .send(command(reply))
            .await
            .map_err(|_| self.stopped_error())?;
        // The writer drops the reply only when it stops before answering (shutdown or panic).
        response.await.map_err(|_| self.stopped_error())?
    }

    /// Why the writer no longer answers.
    fn stopped_error(&self) -> StoreError {
        if self.shared.core.writer_panicked.load(Ordering::Acquire) {
            StoreError::backend("writing", WriterPanicked)
        } else {
            StoreError::Closed
        }
    }
}

/// The source of the error writes fail with after the writer thread panicked.
#[derive(Debug, thiserror::Error)]
#[error("the store writer thread panicked (see the log); reopen the store")]
struct WriterPanicked;

impl Core {
    /// Runs a read on the blocking pool against the open database.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        op: &'static str,
        read: impl FnOnce(&Database, &Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let core = Arc::clone(self);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let guard = core.db.read().unwrap_or_else(PoisonError::into_inner);
            let db = guard.as_ref().ok_or(StoreError::Closed)?;
            read(db, &core.path)
        })
        .await
        .map_err(|join| StoreError::backend(op, join))?
    }
}

impl Store for EmbeddedStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        Box::pin(async move {
            validate_key(key)?;
            let key = key.to_vec();
            self.shared
                .core
                .read("reading a key", move |db, path| read::get(db, path, &key))
                .await
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a [u8],
        options: ListOptions,
    ) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(async move {
            let (at, start_after) = crate::limits::list_position(prefix, &options)?;
            let limit = options.limit.filter(|limit| *limit > 0);
            let prefix = prefix.to_vec();
            let read_prefix = prefix.clone();
            let listed = self
                .shared
                .core
                .read("listing keys", move |db, path| {
                    read::list(db, path, &read_prefix, start_after, limit, at)
                })
                .await?;
            let continue_token = match (listed.more, listed.entries.last()) {
                (true, Some(last)) => Some(
                    ContinueToken {
                        revision: listed.revision,
                        last_key: last.key.clone(),
                    }
                    .encode(),
                ),
                _ => None,
            };
            debug!(
                prefix = %crate::error::display_key(&prefix),
                revision = listed.revision,
                count = listed.entries.len(),
                more = listed.more,
                "listed"
            );
            Ok(ListPage {
                entries: listed.entries,
                revision: listed.revision,
                continue_token,
            })
        })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        Box::pin(async move {
            validate_txn(&txn)?;
            self.submit(|reply| writer::Command::Txn { txn, reply })
                .await
        })
    }

    fn watch(&self, prefix: &[u8], from_revision: Revision) -> WatchStream {
        if let Err(error) = validate_prefix(prefix) {
            return Box::pin(futures::stream::once(async move { Err(error) }));
        }
        watch::stream(
            Arc::clone(&self.shared.core),
            prefix.to_vec(),
            from_revision,
        )
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.submit(|reply| writer::Command::Compact { revision, reply })
                .await
        })
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(async move {
            if self.shared.core.writer_stopped.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            Ok(self.shared.core.revision.load(Ordering::Acquire))
        })
    }
}

/// Opens the file and brings the tables up; returns the database with its current and
/// compaction revisions. Runs on the blocking pool.
fn open_database(path: &Path, options: &EmbeddedOptions) -> Result<(Database, Revision, Revision)> {
    let io_error = |op: &'static str, source: std::io::Error| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source: Arc::new(source),
    };
    let existing_len = match std::fs::metadata(path) {
        Ok(metadata) => Some(metadata.len()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(io_error("inspecting", error)),
    };
    if existing_len.is_none() {
        if !options.create_if_missing {
            return Err(io_error(
                "opening",
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the store file does not exist",
                ),
            ));
        }
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|error| io_error("creating the directory of", error))?;
        }
    }

    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_bytes);
    builder.set_check_integrity_on_open(options.verify_on_open);
    let repair_path = path.to_path_buf();
    builder.set_repair_callback(move |session| {
        warn!(path = %repair_path.display(), progress = session.progress(), "repairing the store file after an unclean shutdown");
    });
    // The storage engine trusts a file it shut down cleanly and may panic on one that was damaged
    // outside it (when verify_on_open is off); turn such a panic into an error.
    let opened = std::panic::catch_unwind(AssertUnwindSafe(
        || -> Result<(Database, Revision, Revision)> {
            // An empty file holds no data: initialise it. Anything else must already be a store.
            let db = match existing_len {
                None | Some(0) => builder.create(path),
                Some(_) => builder.open(path),
            }
            .map_err(|error| engine_error("opening the store file", path, error))?;
            let (revision, compact_revision) = init_tables(&db, path)?;
            Ok((db, revision, compact_revision))
        },
    ));
    match opened {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(StoreError::corrupt(
                format!("the storage engine failed while reading the file: {message}"),
                path.display().to_string(),
            ))
        }
    }
}

/// Creates the tables of a new store, or checks the format of an existing one.
fn init_tables(db: &Database, path: &Path) -> Result<(Revision, Revision)> {
    let engine = |error: redb::Error| engine_error("initialising the store tables", path, error);
    let mut txn = db.begin_write().map_err(|error| engine(error.into()))?;
    txn.set_two_phase_commit(true);
    {
        use redb::{MultimapTableHandle, TableHandle};
        let ours = [KV.name(), LOG.name(), META.name()];
        let tables = txn.list_tables().map_err(|error| engine(error.into()))?;
        let multimap = txn
            .list_multimap_tables()
            .map_err(|error| engine(error.into()))?;
        let foreign = tables
            .map(|table| table.name().to_string())
            .chain(multimap.map(|table| table.name().to_string()))
            .find(|name| !ours.contains(&name.as_str()));
        if let Some(name) = foreign {
            return Err(StoreError::corrupt(
                format!(
                    "the file is a redb database but not a Capstan store (it has a table {name:?})"
                ),
                path.display().to_string(),
            ));
        }
    }
    let (revision, compact_revision) = {
        let kv = txn.open_table(KV).map_err(|error| engine(error.into()))?;
        let log = txn.open_table(LOG).map_err(|error| engine(error.into()))?;
        let mut meta = txn.open_table(META).map_err(|error| engine(error.into()))?;
        let format = read_meta(&meta, META_FORMAT, path)?;
        match format {
            None => {
                use redb::ReadableTableMetadata;
                let empty = kv.is_empty().map_err(|error| engine(error.into()))?
                    && log.is_empty().map_err(|error| engine(error.into()))?
                    && meta.is_empty().map_err(|error| engine(error.into()))?;
                if !empty {
                    return Err(StoreError::corrupt(
                        "the file has data but no format marker",
                        path.display().to_string(),
                    ));
                }
                // A fresh store is at revision 1, as a fresh etcd is.
                meta.insert(META_FORMAT, FORMAT_VERSION)
                    .map_err(|error| engine(error.into()))?;
                meta.insert(META_REVISION, 1)
                    .map_err(|error| engine(error.into()))?;
                meta.insert(META_COMPACT, 0)
                    .map_err(|error| engine(error.into()))?;
                (1, 0)
            }
            Some(FORMAT_VERSION) => {
                let revision = read_meta(&meta, META_REVISION, path)?;
                let compact = read_meta(&meta, META_COMPACT, path)?;
                match (revision, compact) {
                    (Some(revision), Some(compact)) if compact <= revision && revision > 0 => {
                        (revision, compact)
                    }
                    _ => {
                        return Err(StoreError::corrupt(
                            format!(
                                "bad revision bookkeeping: revision {revision:?}, compact revision {compact:?}"
                            ),
                            format!("{}, table meta", path.display()),
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(StoreError::corrupt(
                    format!(
                        "table format {other} is not supported by this version (it supports {FORMAT_VERSION}); was the file written by a newer Capstan?"
                    ),
                    path.display().to_string(),
                ));
            }
        }
    };
    txn.commit().map_err(|error| engine(error.into()))?;
    Ok((revision, compact_revision))
}

fn read_meta(
    meta: &impl redb::ReadableTable<&'static str, u64>,
    name: &str,
    path: &Path,
) -> Result<Option<u64>> {
    meta.get(name)
        .map(|value| value.map(|guard| guard.value()))
        .map_err(|error| engine_error("reading the store metadata", path, error))
}

/// Maps a storage-engine error to the store's error.
fn engine_error(op: &'static str, path: &Path, error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::AlreadyOpen {
                path: path.to_path_buf(),
            }
        }
        redb::Error::Corrupted(what) => StoreError::corrupt(what, path.display().to_string()),
        redb::Error::UpgradeRequired(version) => StoreError::corrupt(
            format!("the file uses storage-engine format {version}, which needs an upgrade"),
            path.display().to_string(),
        ),
        // The engine reports a file that is not a database at all ("magic number mismatch") as
        // invalid data, and one too short to hold even a header as an unexpected end of file.
        redb::Error::Io(source) if source.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::corrupt(
                format!("not a store file: {source}"),
                path.display().to_string(),
            )
        }
        redb::Error::Io(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            StoreError::corrupt(
                format!("the file is truncated: {source}"),
                path.display().to_string(),
            )
        }
        redb::Error::Io(source) => StoreError::Io {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        },
        redb::Error::DatabaseClosed => StoreError::Closed,
        other => StoreError::backend(op, other),
    }
}
