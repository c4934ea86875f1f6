//! The [`Store`] trait: the one interface every backend implements and every component uses.
//!
//! The trait is object safe (`Arc<dyn Store>` is how components hold a store; the backend is
//! chosen at run time), so its methods return boxed futures and streams rather than being
//! `async fn`s. `put` and `delete` have provided implementations on top of [`Store::txn`], so a
//! backend gets their precondition semantics for free and identical to every other backend.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::error::{Result, StoreError, display_key};
use crate::types::{
    DeleteResponse, KeyValue, ListOptions, ListPage, Precondition, PutResponse, Revision, Txn,
    TxnOpResult, TxnResponse, WatchEvent,
};

/// The stream a watch returns. Items arrive strictly in revision order (the events of one
/// transaction share a revision and arrive in the transaction's operation order), without gaps
/// or duplicates. An `Err` item ends the stream: [`StoreError::Compacted`] means "relist";
/// anything else means "watch again from the revision of the last event you saw".
pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;

/// A byte-keyed, revisioned key-value store with etcd's semantics (see `docs/store.md`).
///
/// Every method validates its keys and values with [`crate::limits`] and fails with
/// [`StoreError::InvalidKey`], [`StoreError::ValueTooLarge`] or [`StoreError::InvalidRequest`]
/// before touching the backend.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Reads one key at the latest revision.
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<KeyValue>>>;

    /// Reads the keys that start with `prefix` (all keys for an empty prefix), in key order, one
    /// page at a time. Every page of one list (first page and continuations) reads at the same
    /// revision; a continuation whose revision has since been compacted fails with
    /// [`StoreError::Compacted`].
    fn list<'a>(
        &'a self,
        prefix: &'a [u8],
        options: ListOptions,
    ) -> BoxFuture<'a, Result<ListPage>>;

    /// Applies a transaction atomically: every compare is evaluated against the latest state and,
    /// if all hold, every operation is applied at one new revision. A transaction whose
    /// operations change nothing (only deletes of absent keys, or no operations) does not
    /// advance the revision. A failed transaction writes nothing and reports the failing
    /// compares in [`TxnResponse::failures`].
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>>;

    /// Streams the changes to keys starting with `prefix` that happen after `from_revision`
    /// (exclusive): first from history, then live. `from_revision` older than the compaction
    /// point yields [`StoreError::Compacted`]; a revision in the future is allowed (the stream
    /// starts when the store gets there). A watcher that is not polled does not hold up writers;
    /// it catches up from history when it is polled again.
    fn watch(&self, prefix: &[u8], from_revision: Revision) -> WatchStream;

    /// Discards history up to and including `revision`: afterwards reads and watches need
    /// revisions at least `revision`. Fails with [`StoreError::Compacted`] when `revision` is
    /// not newer than the current compaction point, [`StoreError::FutureRevision`] when it is
    /// newer than the current revision.
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;

    /// The store's latest revision.
    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// Writes one key under a precondition; fails with [`StoreError::Conflict`] carrying the
    /// key's current `mod_revision` when the precondition does not hold.
    fn put<'a>(
        &'a self,
        key: &'a [u8],
        value: Vec<u8>,
        precondition: Precondition,
    ) -> BoxFuture<'a, Result<PutResponse>> {
        Box::pin(async move {
            let response = self.txn(put_txn(key, value, precondition)).await?;
            put_response(key, response)
        })
    }

    /// Deletes one key under a precondition. Deleting a key that does not exist is not an error
    /// when the precondition allows it: the response's `prev` is `None` and the revision does
    /// not advance.
    fn delete<'a>(
        &'a self,
        key: &'a [u8],
        precondition: Precondition,
    ) -> BoxFuture<'a, Result<DeleteResponse>> {
        Box::pin(async move {
            let mut txn = Txn::new();
            if let Some(compare) = precondition.to_compare(key) {
                txn = txn.when(compare);
            }
            let response = self.txn(txn.delete(key)).await?;
            let revision = response.revision;
            match single_result(key, response)? {
                TxnOpResult::Delete { prev } => Ok(DeleteResponse { revision, prev }),
                TxnOpResult::Put { .. } => Err(unexpected_result(key)),
            }
        })
    }

    /// Reads every key under `prefix` at one revision, `page_size` entries per round trip.
    fn list_all<'a>(
        &'a self,
        prefix: &'a [u8],
        page_size: usize,
    ) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(async move {
            let mut options = ListOptions::new().limit(page_size.max(1));
            let mut entries = Vec::new();
            loop {
                let page = self.list(prefix, options.clone()).await?;
                entries.extend(page.entries);
                match page.continue_token {
                    Some(token) => options.continue_token = Some(token),
                    None => {
                        return Ok(ListPage {
                            entries,
                            revision: page.revision,
                            continue_token: None,
                        });
                    }
                }
            }
        })
    }
}

/// The transaction of a single-key put under `precondition` (what [`Store::put`] and a
/// lease's put send).
pub(crate) fn put_txn(key: &[u8], value: Vec<u8>, precondition: Precondition) -> Txn {
    let mut txn = Txn::new();
    if let Some(compare) = precondition.to_compare(key) {
        txn = txn.when(compare);
    }
    txn.put(key, value)
}

/// The outcome of a [`put_txn`]: [`StoreError::Conflict`] when the precondition failed.
pub(crate) fn put_response(key: &[u8], response: TxnResponse) -> Result<PutResponse> {
    let revision = response.revision;
    match single_result(key, response)? {
        TxnOpResult::Put { prev } => Ok(PutResponse { revision, prev }),
        TxnOpResult::Delete { .. } => Err(unexpected_result(key)),
    }
}

pub(crate) fn single_result(key: &[u8], mut response: TxnResponse) -> Result<TxnOpResult> {
    if !response.succeeded {
        let current_revision = response
            .failures
            .first()
            .map(|failure| failure.current.mod_revision)
            .unwrap_or(0);
        return Err(StoreError::Conflict {
            key: display_key(key),
            current_revision,
        });
    }
    response.results.pop().ok_or_else(|| unexpected_result(key))
}

fn unexpected_result(key: &[u8]) -> StoreError {
    StoreError::corrupt(
        "the backend answered a single-operation transaction with the wrong result",
        display_key(key),
    )
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        (**self).get(key)
    }

    fn list<'a>(
        &'a self,
        prefix: &'a [u8],
        options: ListOptions,
    ) -> BoxFuture<'a, Result<ListPage>> {
        (**self).list(prefix, options)
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        (**self).txn(txn)
    }

    fn watch(&self, prefix: &[u8], from_revision: Revision) -> WatchStream {
        (**self).watch(prefix, from_revision)
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        (**self).compact(revision)
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        (**self).current_revision()
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        value: Vec<u8>,
        precondition: Precondition,
    ) -> BoxFuture<'a, Result<PutResponse>> {
        (**self).put(key, value, precondition)
    }

    fn delete<'a>(
        &'a self,
        key: &'a [u8],
        precondition: Precondition,
    ) -> BoxFuture<'a, Result<DeleteResponse>> {
        (**self).delete(key, precondition)
    }

    fn list_all<'a>(
        &'a self,
        prefix: &'a [u8],
        page_size: usize,
    ) -> BoxFuture<'a, Result<ListPage>> {
        (**self).list_all(prefix, page_size)
    }
}
