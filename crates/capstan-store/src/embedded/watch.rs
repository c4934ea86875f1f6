//! Watch streams of the embedded backend.
//!
//! A watcher has two modes. *Catch-up* reads the log in chunks from its position; when a chunk
//! reaches the end of the log it switches to *live* and follows the in-process broadcast of
//! committed revisions. It subscribes to the broadcast before reading the log, so a revision
//! committed in between is in one or the other (duplicates are skipped by revision). When the
//! broadcast reports that the watcher lagged (its bounded buffer overflowed because the consumer
//! did not poll), the watcher goes back to catch-up. Memory per watcher is bounded by one chunk
//! or one revision, writers never wait for watchers, and no event is lost: a watcher too slow
//! for the retention ends with [`StoreError::Compacted`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::broadcast::{self, error::RecvError};
use tracing::debug;

use super::read;
use super::{Broadcast, Core};
use crate::error::{Result, StoreError, display_key};
use crate::store::WatchStream;
use crate::types::{Revision, WatchEvent};

/// Log records read per catch-up round.
const LOG_CHUNK: usize = 256;

/// Builds the stream of changes under `prefix` after `from`.
pub(super) fn stream(core: Arc<Core>, prefix: Vec<u8>, from: Revision) -> WatchStream {
    debug!(prefix = %display_key(&prefix), from_revision = from, "watch started");
    let watcher = Watcher {
        core,
        prefix,
        cursor: (from, u32::MAX),
        processed: from,
        live: None,
        buffer: VecDeque::new(),
        done: false,
    };
    Box::pin(futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next().await?;
        Some((item, watcher))
    }))
}

struct Watcher {
    core: Arc<Core>,
    prefix: Vec<u8>,
    /// Log position of the last record read (delivered or filtered out).
    cursor: (Revision, u32),
    /// Every event of every revision up to this one has been read.
    processed: Revision,
    /// The broadcast receiver while live.
    live: Option<broadcast::Receiver<Broadcast>>,
    /// Events read but not yet returned.
    buffer: VecDeque<WatchEvent>,
    /// Set after the terminal error.
    done: bool,
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
                return Some(Err(error));
            }
        }
    }

    /// Reads the next events into the buffer (possibly none).
    async fn fill(&mut self) -> Result<()> {
        let Some(live) = self.live.as_mut() else {
            return self.catch_up().await;
        };
        match live.recv().await {
            Ok(Broadcast::Committed(committed)) => {
                if committed.revision <= self.processed {
                    return Ok(());
                }
                if committed.revision != self.processed + 1 {
                    // Cannot happen while the writer publishes every revision in order; reading the
                    // log is always correct, so do that rather than trust the broadcast.
                    self.live = None;
                    return Ok(());
                }
                let prefix = &self.prefix;
                self.buffer.extend(
                    committed
                        .events
                        .iter()
                        .filter(|event| event.key().starts_with(prefix))
                        .cloned(),
                );
                self.processed = committed.revision;
                self.cursor = (committed.revision, u32::MAX);
                Ok(())
            }
            Ok(Broadcast::Closed) | Err(RecvError::Closed) => Err(StoreError::Closed),
            Err(RecvError::Lagged(skipped)) => {
                debug!(
                    prefix = %display_key(&self.prefix),
                    processed = self.processed,
                    skipped_revisions = skipped,
                    "watcher fell behind the live buffer; catching up from the log"
                );
                self.live = None;
                Ok(())
            }
        }
    }

    async fn catch_up(&mut self) -> Result<()> {
        // Subscribe before reading, so nothing committed after the read can be missed.
        let receiver = self.core.events.subscribe();
        let prefix = self.prefix.clone();
        let (after, processed) = (self.cursor, self.processed);
        let chunk = self
            .core
            .read("reading history for a watch", move |db, path| {
                read::read_log(db, path, &prefix, after, processed, LOG_CHUNK)
            })
            .await?;
        self.buffer.extend(chunk.events);
        if let Some(position) = chunk.last_position {
            self.cursor = position;
        }
        if chunk.complete {
            self.processed = self.processed.max(chunk.head);
            self.cursor = (self.processed, u32::MAX);
            if self.core.writer_stopped.load(Ordering::Acquire) {
                // The writer's last broadcast may predate our subscription; nothing more will
                // come. Deliver what was read, then end.
                if self.buffer.is_empty() {
                    return Err(StoreError::Closed);
                }
                return Ok(());
            }
            self.live = Some(receiver);
        } else {
            // The revision at the cursor may continue in the next chunk.
            self.processed = self.processed.max(self.cursor.0.saturating_sub(1));
        }
        Ok(())
    }
}
