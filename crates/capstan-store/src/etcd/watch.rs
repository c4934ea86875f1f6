//! Watch streams of the etcd backend.
//!
//! A watcher is one etcd watch (its own gRPC stream) on the key range of its prefix, with
//! `prev_kv` and progress notifications. It remembers `processed`: every event up to that
//! revision has been received (delivered, or buffered for delivery). When the stream breaks
//! (etcd restarted, the connection died, the member lost its leader), the watcher opens a new
//! etcd watch from `processed` and drops what it has already received, so the caller sees
//! neither a gap nor a duplicate. It retries with backoff for at most
//! [`super::EtcdOptions::watch_reconnect_timeout`], then ends with an error (the caller watches
//! again from its last event, as for any other error).
//!
//! The etcd watch starts *at* `processed`, not after it, and the events of that revision are
//! dropped: etcd refuses a start revision older than its compaction point, so asking for
//! `processed` makes etcd answer with [`StoreError::Compacted`] exactly when history after
//! `processed` may be incomplete — the trait's rule. (Starting at `processed + 1` would be
//! accepted one revision too early, when a delete at the compaction revision may already have
//! been compacted away.) etcd's watch responses carry whole revisions, and progress
//! notifications (responses without events) say that everything up to their header's
//! revision has been sent, so `processed` advances even while nothing under the prefix
//! changes, and a resumption after a long quiet spell does not fall behind compaction.
//!
//! The stream is polled only when the consumer polls: a consumer that stops reading holds up
//! nobody (etcd buffers, then treats the watcher as unsynced and catches it up from history
//! later), and a dropped stream cancels the etcd watch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client as etcd;
use tracing::{debug, info, warn};

use super::{
    EtcdError, Inner, check_cluster, describe, key_range, note_compacted, to_etcd_revision,
    to_revision, user_key,
};
use crate::error::{Result, StoreError, display_key};
use crate::store::WatchStream;
use crate::types::{KeyValue, Revision, WatchEvent};

const OP: &str = "watching keys";

/// The first wait between two attempts to re-establish a broken stream (the first attempt is
/// immediate); it doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Builds the stream of changes under `prefix` after `from`.
pub(super) fn stream(inner: Arc<Inner>, prefix: Vec<u8>, from: Revision) -> WatchStream {
    debug!(prefix = %display_key(&prefix), from_revision = from, "watch started");
    let (start, end) = key_range(&inner.options.namespace, &prefix);
    let watcher = Watcher {
        inner,
        prefix,
        start,
        end,
        processed: from,
        stream: None,
        buffer: VecDeque::new(),
        done: false,
        broken: None,
        established: false,
    };
    Box::pin(futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next().await?;
        Some((item, watcher))
    }))
}

/// The state of a stream being (re-)established.
struct Broken {
    since: Instant,
    /// How long to wait before the next attempt.
    backoff: Duration,
    /// Why the last attempt (or the stream) failed.
    last: String,
}

struct Watcher {
    inner: Arc<Inner>,
    /// The watched prefix, without the namespace.
    prefix: Vec<u8>,
    /// The etcd key range of the prefix.
    start: Vec<u8>,
    end: Vec<u8>,
    /// Every event up to this revision has been received.
    processed: Revision,
    /// The etcd watch, once established.
    stream: Option<etcd::WatchStream>,
    /// Events received but not yet returned.
    buffer: VecDeque<WatchEvent>,
    /// Set after the terminal error.
    done: bool,
    /// Set while there is no working stream.
    broken: Option<Broken>,
    /// Whether a stream was established before (to tell a reconnection from the start).
    established: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Err(error) = self.fill().await {
                debug!(prefix = %display_key(&self.prefix), processed = self.processed, %error, "watch ended");
                self.done = true;
                self.stream = None;
                return Some(Err(error));
            }
        }
    }

    /// Reads the next response into the buffer (possibly no event), establishing the stream
    /// first if there is none.
    async fn fill(&mut self) -> Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return self.open().await;
        };
        match stream.message().await {
            Ok(Some(response)) => self.handle(&response),
            Ok(None) => {
                self.lost("etcd closed the watch stream".to_string());
                Ok(())
            }
            Err(error) => {
                self.lost(describe(&error));
                Ok(())
            }
        }
    }

    /// Opens an etcd watch from `processed`, retrying with backoff while the stream is broken.
    async fn open(&mut self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let options = &inner.options;
        let start_revision = to_etcd_revision(self.processed.max(1))?;
        loop {
            if let Some(broken) = self.broken.as_mut() {
                let elapsed = broken.since.elapsed();
                if elapsed >= options.watch_reconnect_timeout {
                    return Err(StoreError::backend(
                        OP,
                        EtcdError::WatchLost {
                            prefix: display_key(&self.prefix),
                            endpoints: self.inner.endpoints.clone(),
                            timeout: options.watch_reconnect_timeout,
                            last: broken.last.clone(),
                        },
                    ));
                }
                if !broken.backoff.is_zero() {
                    let remaining = options.watch_reconnect_timeout - elapsed;
                    tokio::time::sleep(broken.backoff.min(remaining)).await;
                }
                broken.backoff = (broken.backoff * 2).clamp(BACKOFF_START, BACKOFF_MAX);
            }
            let request = etcd::WatchOptions::new()
                .with_range(self.end.clone())
                .with_start_revision(start_revision)
                .with_prev_key()
                .with_progress_notify();
            let mut client = self.inner.watch.clone();
            match tokio::time::timeout(
                options.connect_timeout,
                client.watch(self.start.clone(), Some(request)),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    self.stream = Some(stream);
                    return Ok(());
                }
                Ok(Err(error)) => self.lost(describe(&error)),
                Err(_) => self.lost(format!(
                    "etcd did not accept the watch within {:?}",
                    options.connect_timeout
                )),
            }
        }
    }

    /// Notes that there is no working stream (any more), and why.
    fn lost(&mut self, why: String) {
        self.stream = None;
        match self.broken.as_mut() {
            Some(broken) => {
                debug!(prefix = %display_key(&self.prefix), error = %why, "etcd watch not re-established yet");
                broken.last = why;
            }
            None => {
                warn!(
                    prefix = %display_key(&self.prefix),
                    processed = self.processed,
                    error = %why,
                    "etcd watch stream broke; re-establishing it from the last revision received"
                );
                self.broken = Some(Broken {
                    since: Instant::now(),
                    backoff: Duration::ZERO,
                    last: why,
                });
            }
        }
    }

    fn handle(&mut self, response: &etcd::WatchResponse) -> Result<()> {
        if let Some(header) = response.header() {
            check_cluster(&self.inner, OP, header.cluster_id())?;
        }
        if response.compact_revision() > 0 {
            let compact_revision = to_revision(response.compact_revision());
            note_compacted(&self.inner, compact_revision);
            return Err(StoreError::Compacted { compact_revision });
        }
        if response.canceled() {
            // Not a compaction: e.g. the member lost its leader. Another attempt may succeed.
            self.lost(format!(
                "etcd canceled the watch: {}",
                response.cancel_reason()
            ));
            return Ok(());
        }
        if response.created() {
            if self.broken.take().is_some() && self.established {
                info!(prefix = %display_key(&self.prefix), processed = self.processed, "etcd watch re-established");
            }
            self.established = true;
            return Ok(());
        }
        let events = response.events();
        if events.is_empty() {
            // A progress notification: everything up to the header's revision has been sent.
            if let Some(header) = response.header() {
                self.processed = self.processed.max(to_revision(header.revision()));
            }
            return Ok(());
        }
        let after = self.processed;
        for event in events {
            let kv = event
                .kv()
                .ok_or_else(|| self.unexpected("a watch event without its key"))?;
            let revision = to_revision(kv.mod_revision());
            if revision <= after {
                continue;
            }
            let prev = event
                .prev_kv()
                .map(|prev| self.key_value(prev))
                .transpose()?;
            let item = match event.event_type() {
                etcd::EventType::Put => WatchEvent::Put {
                    kv: self.key_value(kv)?,
                    prev,
                },
                etcd::EventType::Delete => WatchEvent::Delete {
                    key: user_key(&self.inner.options.namespace, kv.key().to_vec())
                        .ok_or_else(|| self.unexpected("a key outside the store's namespace"))?,
                    revision,
                    prev,
                },
            };
            self.processed = self.processed.max(revision);
            self.buffer.push_back(item);
        }
        Ok(())
    }

    fn key_value(&self, kv: &etcd::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: user_key(&self.inner.options.namespace, kv.key().to_vec())
                .ok_or_else(|| self.unexpected("a key outside the store's namespace"))?,
            value: kv.value().to_vec(),
            create_revision: to_revision(kv.create_revision()),
            mod_revision: to_revision(kv.mod_revision()),
            version: to_revision(kv.version()),
        })
    }

    fn unexpected(&self, what: &str) -> StoreError {
        StoreError::backend(
            OP,
            EtcdError::Unexpected {
                endpoints: self.inner.endpoints.clone(),
                what: what.to_string(),
            },
        )
    }
}
