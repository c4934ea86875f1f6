//! Following what is under a prefix: the whole set of keys, now and after every change.
//!
//! Registries kept under leases (controller members, repo-servers) are read this way: list,
//! then watch from the list's revision, apply each event; when the watch ends (history
//! compacted, the backend gone for longer than the watch's reconnect timeout) list again and
//! watch anew. [`prefix_changes`] does that once for every such registry.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt as _};
use tracing::warn;

use crate::error::{Result, StoreError, display_key};
use crate::store::{Store, WatchStream};
use crate::types::WatchEvent;

/// The first wait before listing again after a failed list; doubles up to [`RELIST_MAX`].
const RELIST_START: Duration = Duration::from_millis(100);
const RELIST_MAX: Duration = Duration::from_secs(5);

/// Page size of the lists.
const LIST_PAGE: usize = 500;

/// Every key under `prefix` with its value, first as they are now, then each time they
/// change (a burst of events already received is applied before reporting, so it is one
/// report). States in between may be skipped, the latest never is. A failed list is yielded
/// as an `Err` (after waiting, with a backoff) and retried: the stream does not end.
pub fn prefix_changes<S>(
    store: S,
    prefix: &str,
) -> BoxStream<'static, Result<BTreeMap<Vec<u8>, Vec<u8>>>>
where
    S: Store + Clone + 'static,
{
    struct State<S> {
        store: S,
        prefix: Vec<u8>,
        entries: BTreeMap<Vec<u8>, Vec<u8>>,
        last: Option<BTreeMap<Vec<u8>, Vec<u8>>>,
        watch: Option<WatchStream>,
        retry: Duration,
    }

    impl<S: Store> State<S> {
        fn changed(&mut self) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
            if self.last.as_ref() == Some(&self.entries) {
                return None;
            }
            self.last = Some(self.entries.clone());
            Some(self.entries.clone())
        }

        fn apply(&mut self, event: WatchEvent) {
            match event {
                WatchEvent::Put { kv, .. } => {
                    self.entries.insert(kv.key, kv.value);
                }
                WatchEvent::Delete { key, .. } => {
                    self.entries.remove(&key);
                }
            }
        }

        async fn next(&mut self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
            loop {
                let Some(watch) = self.watch.as_mut() else {
                    match self.store.list_all(&self.prefix, LIST_PAGE).await {
                        Ok(page) => {
                            self.entries = page
                                .entries
                                .into_iter()
                                .map(|kv| (kv.key, kv.value))
                                .collect();
                            self.watch = Some(self.store.watch(&self.prefix, page.revision));
                            self.retry = RELIST_START;
                            if let Some(changed) = self.changed() {
                                return Ok(changed);
                            }
                            continue;
                        }
                        Err(error) => {
                            let wait = self.retry;
                            self.retry = (self.retry * 2).min(RELIST_MAX);
                            warn!(prefix = %display_key(&self.prefix), %error, retry_in = ?wait, "listing failed");
                            tokio::time::sleep(wait).await;
                            return Err(error);
                        }
                    }
                };
                match watch.next().await {
                    Some(Ok(event)) => {
                        self.apply(event);
                        while let Some(Some(Ok(event))) = self
                            .watch
                            .as_mut()
                            .and_then(|watch| watch.next().now_or_never())
                        {
                            self.apply(event);
                        }
                        if let Some(changed) = self.changed() {
                            return Ok(changed);
                        }
                    }
                    Some(Err(error)) => {
                        warn!(prefix = %display_key(&self.prefix), %error, "the watch ended; listing again");
                        self.watch = None;
                    }
                    None => self.watch = None,
                }
            }
        }
    }

    let state = State {
        store,
        prefix: prefix.as_bytes().to_vec(),
        entries: BTreeMap::new(),
        last: None,
        watch: None,
        retry: RELIST_START,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await;
        Some((item, state))
    })
    .boxed()
}
