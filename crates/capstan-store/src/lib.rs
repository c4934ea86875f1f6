//! Capstan's store: the system of record (Applications, AppProjects, Clusters, Repositories,
//! accounts, settings, operation history).
//!
//! Where to start reading:
//!
//! - [`Store`] ([`store`]): the one trait — get, list, transactions (compare-and-swap puts and
//!   deletes are transactions), watch from a revision, compact. Its semantics are etcd's: a
//!   global revision, per-key `create_revision`/`mod_revision`/`version`, history that a watch
//!   replays and compaction bounds. `docs/store.md` is the long version.
//! - [`types`]: the values that cross the trait.
//! - [`typed`]: the layer components use — [`typed::Resource`] types stored as JSON, spec and
//!   status under separate keys so status writes never conflict with user edits, fencing for
//!   status writes.
//! - [`kinds`]: the domain kinds (Applications, AppProjects, Clusters, Repositories) as
//!   typed resources.
//! - [`embedded`]: the single-file backend on redb.
//! - [`etcd`]: the production backend on etcd (`etcd-client`).
//! - `conformance` (feature `conformance`): the test suite every backend must pass, and the
//!   reference model the property test compares a backend against.
//! - [`limits`]: key/value/transaction limits every backend enforces identically.
//! - [`follow`]: everything under a prefix, now and after every change (list, watch, list
//!   again when the watch ends): how lease-bound registries are read.
//! - [`sealed`]: encryption at rest of the values under chosen prefixes (credentials), as a
//!   wrapper around any backend.
//!
//! Both backends implement the same trait and pass the same suite.
//!
//! ```no_run
//! use capstan_store::{EmbeddedOptions, EmbeddedStore, ListOptions, Precondition, Store};
//! use futures::StreamExt;
//!
//! # async fn demo() -> capstan_store::Result<()> {
//! let store = EmbeddedStore::open("/var/lib/capstan/store.redb", EmbeddedOptions::default()).await?;
//! let key = b"/capstan/settings/argocd/main/spec";
//! let created = store.put(key, b"{}".to_vec(), Precondition::MustNotExist).await?;
//! // Compare-and-swap: fails with StoreError::Conflict if someone wrote in between.
//! store.put(key, b"{\"a\":1}".to_vec(), Precondition::ModRevision(created.revision)).await?;
//!
//! // List, then watch from the list's revision: nothing missed, nothing twice.
//! let page = store.list_all(b"/capstan/settings/", 500).await?;
//! let mut changes = store.watch(b"/capstan/settings/", page.revision);
//! while let Some(event) = changes.next().await {
//!     let event = event?; // StoreError::Compacted: relist and watch again
//!     println!("{:?} at {}", event.key(), event.revision());
//! }
//! store.close().await
//! # }
//! ```

pub mod embedded;
pub mod error;
pub mod etcd;
pub mod follow;
pub mod kinds;
pub mod limits;
pub mod sealed;
pub mod store;
pub mod typed;
pub mod types;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use embedded::{EmbeddedOptions, EmbeddedStore, Retention};
pub use error::{Result, StoreError};
pub use etcd::{EtcdOptions, EtcdStore, Lease};
pub use store::{Store, WatchStream};
pub use types::{
    Compare, CompareFailure, CompareOp, CompareTarget, DeleteResponse, KeyMeta, KeyValue,
    ListOptions, ListPage, Precondition, PutResponse, Revision, Txn, TxnOp, TxnOpResult,
    TxnResponse, WatchEvent,
};
