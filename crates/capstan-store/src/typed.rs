//! The typed layer: domain objects stored as JSON, with spec and status under separate keys.
//!
//! Components implement [`Resource`] for their types and use a [`TypedStore`]. Each object is
//! two keys (see [`keys`] and `docs/store.md`):
//!
//! ```text
//! /capstan/<kind>/<namespace>/<name>/spec     written by users (API, CLI, app-of-apps)
//! /capstan/<kind>/<namespace>/<name>/status   written by the owning controller member
//! ```
//!
//! so a status write never bumps the spec's revision (a user's compare-and-swap edit based on
//! the spec's revision never conflicts with a controller's status write) and vice versa. A
//! status write requires the spec to exist (no status is left behind for a deleted object) and
//! may be *fenced* on other keys ([`StatusWrite::fences`]), e.g. the cluster-ownership key, so a
//! member that lost ownership cannot write.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::error::{Result, StoreError, display_key};
use crate::store::Store;
use crate::types::{
    Compare, KeyValue, ListOptions, Precondition, Revision, Txn, TxnResponse, WatchEvent,
};

/// A kind of object kept in the store.
pub trait Resource: Send + Sync + 'static {
    /// The kind's segment in keys: lowercase plural, e.g. `"applications"`. ASCII lowercase
    /// letters, digits and `-` only.
    const KIND: &'static str;
    /// The user-owned part.
    type Spec: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The controller-owned part. Use `()` for kinds without status.
    type Status: Serialize + DeserializeOwned + Send + Sync + 'static;
}

/// Identifies one object of a kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The namespace (Argo CD keeps every kind in a namespace; cluster-wide kinds use the
    /// control plane's namespace).
    pub namespace: String,
    /// The name, unique within kind and namespace.
    pub name: String,
}

impl ObjectRef {
    /// An object reference.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A decoded value with the revision metadata of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// See [`KeyValue::create_revision`].
    pub create_revision: Revision,
    /// See [`KeyValue::mod_revision`]; pass it to [`Precondition::ModRevision`] to update.
    pub mod_revision: Revision,
    /// See [`KeyValue::version`].
    pub version: u64,
}

/// One object: its spec and, once a controller has written one, its status.
pub struct Object<R: Resource> {
    /// Which object.
    pub object: ObjectRef,
    /// The spec.
    pub spec: Versioned<R::Spec>,
    /// The status, if written.
    pub status: Option<Versioned<R::Status>>,
}

impl<R: Resource> fmt::Debug for Object<R>
where
    R::Spec: fmt::Debug,
    R::Status: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("kind", &R::KIND)
            .field("object", &self.object)
            .field("spec", &self.spec)
            .field("status", &self.status)
            .finish()
    }
}

impl<R: Resource> Clone for Object<R>
where
    R::Spec: Clone,
    R::Status: Clone,
{
    fn clone(&self) -> Self {
        Object {
            object: self.object.clone(),
            spec: self.spec.clone(),
            status: self.status.clone(),
        }
    }
}

/// The objects of a list, read at one revision.
pub struct ObjectList<R: Resource> {
    /// The objects, ordered by namespace, then name.
    pub items: Vec<Object<R>>,
    /// The revision they were read at; watch from it to follow changes.
    pub revision: Revision,
}

impl<R: Resource> fmt::Debug for ObjectList<R>
where
    R::Spec: fmt::Debug,
    R::Status: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectList")
            .field("items", &self.items)
            .field("revision", &self.revision)
            .finish()
    }
}

/// A change to objects of a kind, as seen by [`TypedStore::watch`].
pub enum TypedEvent<R: Resource> {
    /// A spec was created or updated.
    SpecPut {
        /// Which object.
        object: ObjectRef,
        /// The new spec.
        spec: Versioned<R::Spec>,
    },
    /// A spec was deleted (the object is gone).
    SpecDeleted {
        /// Which object.
        object: ObjectRef,
        /// The revision of the delete.
        revision: Revision,
    },
    /// A status was written.
    StatusPut {
        /// Which object.
        object: ObjectRef,
        /// The new status.
        status: Versioned<R::Status>,
    },
    /// A status was deleted (with its object, usually).
    StatusDeleted {
        /// Which object.
        object: ObjectRef,
        /// The revision of the delete.
        revision: Revision,
    },
}

impl<R: Resource> TypedEvent<R> {
    /// The object the event is about.
    pub fn object(&self) -> &ObjectRef {
        match self {
            TypedEvent::SpecPut { object, .. }
            | TypedEvent::SpecDeleted { object, .. }
            | TypedEvent::StatusPut { object, .. }
            | TypedEvent::StatusDeleted { object, .. } => object,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        match self {
            TypedEvent::SpecPut { spec, .. } => spec.mod_revision,
            TypedEvent::StatusPut { status, .. } => status.mod_revision,
            TypedEvent::SpecDeleted { revision, .. }
            | TypedEvent::StatusDeleted { revision, .. } => *revision,
        }
    }
}

impl<R: Resource> fmt::Debug for TypedEvent<R>
where
    R::Spec: fmt::Debug,
    R::Status: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypedEvent::SpecPut { object, spec } => f
                .debug_struct("SpecPut")
                .field("object", object)
                .field("spec", spec)
                .finish(),
            TypedEvent::SpecDeleted { object, revision } => f
                .debug_struct("SpecDeleted")
                .field("object", object)
                .field("revision", revision)
                .finish(),
            TypedEvent::StatusPut { object, status } => f
                .debug_struct("StatusPut")
                .field("object", object)
                .field("status", status)
                .finish(),
            TypedEvent::StatusDeleted { object, revision } => f
                .debug_struct("StatusDeleted")
                .field("object", object)
                .field("revision", revision)
                .finish(),
        }
    }
}

/// How a status write is conditioned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusWrite {
    /// Condition on the status key itself (e.g. [`Precondition::ModRevision`] of the status read
    /// before computing the new one). The spec must exist in any case.
    pub precondition: Precondition,
    /// Fencing compares on other keys, typically
    /// `Compare::create_revision(ownership_key, Equal, held_revision)`. If one fails the write
    /// fails with [`StoreError::FenceLost`].
    pub fences: Vec<Compare>,
}

impl StatusWrite {
    /// An unconditional status write (the spec must still exist).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the precondition on the status key.
    pub fn precondition(mut self, precondition: Precondition) -> Self {
        self.precondition = precondition;
        self
    }

    /// Adds a fencing compare.
    pub fn fence(mut self, compare: Compare) -> Self {
        self.fences.push(compare);
        self
    }
}

/// The key layout of typed objects. Pure functions; see `docs/store.md`.
pub mod keys {
    use super::ObjectRef;
    use crate::error::{Result, StoreError};

    /// The root of every key Capstan writes.
    pub const ROOT: &str = "/capstan/";
    /// Last segment of a spec key.
    pub const SPEC: &str = "spec";
    /// Last segment of a status key.
    pub const STATUS: &str = "status";
    /// Longest namespace or name, in bytes (Kubernetes' DNS subdomain limit).
    pub const MAX_SEGMENT_BYTES: usize = 253;

    /// Which key of an object.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Part {
        /// `.../spec`
        Spec,
        /// `.../status`
        Status,
    }

    /// `/capstan/<kind>/`: every object of a kind.
    pub fn kind_prefix(kind: &str) -> Result<Vec<u8>> {
        validate_kind(kind)?;
        Ok(format!("{ROOT}{kind}/").into_bytes())
    }

    /// `/capstan/<kind>/<namespace>/`: every object of a kind in a namespace.
    pub fn namespace_prefix(kind: &str, namespace: &str) -> Result<Vec<u8>> {
        validate_kind(kind)?;
        validate_segment("namespace", namespace)?;
        Ok(format!("{ROOT}{kind}/{namespace}/").into_bytes())
    }

    /// `/capstan/<kind>/<namespace>/<name>/`: every key of one object.
    pub fn object_prefix(kind: &str, object: &ObjectRef) -> Result<Vec<u8>> {
        validate_kind(kind)?;
        validate_segment("namespace", &object.namespace)?;
        validate_segment("name", &object.name)?;
        Ok(format!("{ROOT}{kind}/{}/{}/", object.namespace, object.name).into_bytes())
    }

    /// The spec key of an object.
    pub fn spec_key(kind: &str, object: &ObjectRef) -> Result<Vec<u8>> {
        let mut key = object_prefix(kind, object)?;
        key.extend_from_slice(SPEC.as_bytes());
        Ok(key)
    }

    /// The status key of an object.
    pub fn status_key(kind: &str, object: &ObjectRef) -> Result<Vec<u8>> {
        let mut key = object_prefix(kind, object)?;
        key.extend_from_slice(STATUS.as_bytes());
        Ok(key)
    }

    /// Splits a key of `kind` into its object and part; `None` for keys that are not a spec or
    /// status of that kind.
    pub fn parse(kind: &str, key: &[u8]) -> Option<(ObjectRef, Part)> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key
            .strip_prefix(ROOT)?
            .strip_prefix(kind)?
            .strip_prefix('/')?;
        let mut segments = rest.split('/');
        let namespace = segments.next()?;
        let name = segments.next()?;
        let part = match segments.next()? {
            SPEC => Part::Spec,
            STATUS => Part::Status,
            _ => return None,
        };
        if segments.next().is_some() || namespace.is_empty() || name.is_empty() {
            return None;
        }
        Some((ObjectRef::new(namespace, name), part))
    }

    fn validate_kind(kind: &str) -> Result<()> {
        let ok = !kind.is_empty()
            && kind.len() <= 63
            && kind
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        if ok {
            Ok(())
        } else {
            Err(StoreError::InvalidKey {
                key: kind.to_string(),
                reason: "a resource kind must be 1 to 63 lowercase letters, digits or '-'"
                    .to_string(),
            })
        }
    }

    fn validate_segment(what: &str, segment: &str) -> Result<()> {
        let reason = if segment.is_empty() {
            Some(format!("the {what} must not be empty"))
        } else if segment.len() > MAX_SEGMENT_BYTES {
            Some(format!(
                "the {what} is longer than {MAX_SEGMENT_BYTES} bytes"
            ))
        } else if segment == "." || segment == ".." {
            Some(format!("the {what} must not be '.' or '..'"))
        } else if segment.chars().any(|c| c == '/' || c.is_control()) {
            Some(format!(
                "the {what} must not contain '/' or control characters"
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StoreError::InvalidKey {
                key: segment.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// Typed access to the objects of one [`Resource`] kind.
pub struct TypedStore<R: Resource> {
    store: Arc<dyn Store>,
    kind: PhantomData<fn() -> R>,
}

impl<R: Resource> Clone for TypedStore<R> {
    fn clone(&self) -> Self {
        TypedStore {
            store: Arc::clone(&self.store),
            kind: PhantomData,
        }
    }
}

impl<R: Resource> fmt::Debug for TypedStore<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedStore")
            .field("kind", &R::KIND)
            .field("store", &self.store)
            .finish()
    }
}

/// Page size of typed lists.
const LIST_PAGE: usize = 500;

impl<R: Resource> TypedStore<R> {
    /// Typed access through `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        TypedStore {
            store,
            kind: PhantomData,
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Reads one object (spec and status at one revision).
    pub async fn get(&self, object: &ObjectRef) -> Result<Option<Object<R>>> {
        let prefix = keys::object_prefix(R::KIND, object)?;
        let page = self.store.list(&prefix, ListOptions::new()).await?;
        Ok(group::<R>(page.entries)?.into_iter().next())
    }

    /// Creates an object; fails with [`StoreError::Conflict`] if it exists.
    pub async fn create(&self, object: &ObjectRef, spec: &R::Spec) -> Result<Revision> {
        let key = keys::spec_key(R::KIND, object)?;
        let value = encode(&key, spec)?;
        let response = self
            .store
            .put(&key, value, Precondition::MustNotExist)
            .await?;
        debug!(kind = R::KIND, object = %object, revision = response.revision, "created");
        Ok(response.revision)
    }

    /// Creates or replaces an object's spec under `fences` alone (compares on other keys, e.g.
    /// the ownership key of the cluster the object is about): fails with
    /// [`StoreError::FenceLost`] naming the first fence that does not hold, writing nothing.
    pub async fn put_spec_fenced(
        &self,
        object: &ObjectRef,
        spec: &R::Spec,
        fences: &[Compare],
    ) -> Result<Revision> {
        let key = keys::spec_key(R::KIND, object)?;
        let value = encode(&key, spec)?;
        let mut txn = Txn::new();
        txn.compares.extend(fences.iter().cloned());
        let response = self.store.txn(txn.put(key.clone(), value)).await?;
        if response.succeeded {
            return Ok(response.revision);
        }
        Err(lost_fence(&response, fences, 0).unwrap_or_else(|| missing_failure(&key)))
    }

    /// Replaces the spec of an existing object. `precondition` is usually
    /// [`Precondition::ModRevision`] of the spec read before (optimistic concurrency);
    /// [`Precondition::None`] means "if it exists". Fails with [`StoreError::NotFound`] when the
    /// object does not exist and [`StoreError::Conflict`] when the spec changed.
    pub async fn update_spec(
        &self,
        object: &ObjectRef,
        spec: &R::Spec,
        precondition: Precondition,
    ) -> Result<Revision> {
        let key = keys::spec_key(R::KIND, object)?;
        let value = encode(&key, spec)?;
        let txn = Txn::new().when(Compare::exists(&key));
        let txn = match precondition.to_compare(&key) {
            Some(compare) => txn.when(compare),
            None => txn,
        };
        let response = self.store.txn(txn.put(key.clone(), value)).await?;
        if response.succeeded {
            return Ok(response.revision);
        }
        let failure = response
            .failures
            .first()
            .ok_or_else(|| missing_failure(&key))?;
        if failure.index == 0 {
            return Err(StoreError::NotFound {
                key: display_key(&key),
            });
        }
        Err(StoreError::Conflict {
            key: display_key(&key),
            current_revision: failure.current.mod_revision,
        })
    }

    /// Writes the status of an existing object, conditioned as `write` says. Fails with
    /// [`StoreError::NotFound`] when the object (its spec) does not exist,
    /// [`StoreError::FenceLost`] when a fence does not hold, and [`StoreError::Conflict`] when
    /// the status precondition does not.
    pub async fn put_status(
        &self,
        object: &ObjectRef,
        status: &R::Status,
        write: StatusWrite,
    ) -> Result<Revision> {
        let spec_key = keys::spec_key(R::KIND, object)?;
        let key = keys::status_key(R::KIND, object)?;
        let value = encode(&key, status)?;
        let mut txn = Txn::new().when(Compare::exists(&spec_key));
        let fences_start = 1 + usize::from(write.precondition != Precondition::None);
        if let Some(compare) = write.precondition.to_compare(&key) {
            txn = txn.when(compare);
        }
        txn.compares.extend(write.fences.iter().cloned());
        let response = self.store.txn(txn.put(key.clone(), value)).await?;
        if response.succeeded {
            return Ok(response.revision);
        }
        // Report the most fundamental failure: a missing object, then a lost fence, then a stale
        // status.
        if response.failures.iter().any(|failure| failure.index == 0) {
            return Err(StoreError::NotFound {
                key: display_key(&spec_key),
            });
        }
        if let Some(lost) = lost_fence(&response, &write.fences, fences_start) {
            return Err(lost);
        }
        let failure = response
            .failures
            .first()
            .ok_or_else(|| missing_failure(&key))?;
        Err(StoreError::Conflict {
            key: display_key(&key),
            current_revision: failure.current.mod_revision,
        })
    }

    /// Deletes an object (spec and status, atomically) if `precondition` holds on its spec.
    /// Returns the revision of the delete, or `None` if the object did not exist.
    pub async fn delete(
        &self,
        object: &ObjectRef,
        precondition: Precondition,
    ) -> Result<Option<Revision>> {
        let spec_key = keys::spec_key(R::KIND, object)?;
        let status_key = keys::status_key(R::KIND, object)?;
        let mut txn = Txn::new();
        if let Some(compare) = precondition.to_compare(&spec_key) {
            txn = txn.when(compare);
        }
        let response = self
            .store
            .txn(txn.delete(spec_key.clone()).delete(status_key))
            .await?;
        if !response.succeeded {
            let current_revision = response
                .failures
                .first()
                .map_or(0, |failure| failure.current.mod_revision);
            return Err(StoreError::Conflict {
                key: display_key(&spec_key),
                current_revision,
            });
        }
        let deleted = response.results.iter().any(|result| match result {
            crate::types::TxnOpResult::Delete { prev } => prev.is_some(),
            crate::types::TxnOpResult::Put { .. } => false,
        });
        Ok(deleted.then_some(response.revision))
    }

    /// Lists the objects of the kind, in one namespace or all, at one revision.
    pub async fn list(&self, namespace: Option<&str>) -> Result<ObjectList<R>> {
        let prefix = match namespace {
            Some(namespace) => keys::namespace_prefix(R::KIND, namespace)?,
            None => keys::kind_prefix(R::KIND)?,
        };
        let page = self.store.list_all(&prefix, LIST_PAGE).await?;
        Self::objects(page)
    }

    /// Lists the objects of the kind as they were at a past `revision` (at least the
    /// compaction point): what a client that listed at that revision saw.
    pub async fn list_at(
        &self,
        namespace: Option<&str>,
        revision: Revision,
    ) -> Result<ObjectList<R>> {
        let prefix = match namespace {
            Some(namespace) => keys::namespace_prefix(R::KIND, namespace)?,
            None => keys::kind_prefix(R::KIND)?,
        };
        let mut options = ListOptions::new().limit(LIST_PAGE).at_revision(revision);
        let mut entries = Vec::new();
        loop {
            let page = self.store.list(&prefix, options.clone()).await?;
            entries.extend(page.entries);
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => {
                    return Self::objects(crate::types::ListPage {
                        entries,
                        revision: page.revision,
                        continue_token: None,
                    });
                }
            }
        }
    }

    fn objects(page: crate::types::ListPage) -> Result<ObjectList<R>> {
        let mut items = group::<R>(page.entries)?;
        // Key order is not (namespace, name) order: "a-b/" sorts before "a/".
        items.sort_by(|a, b| a.object.cmp(&b.object));
        Ok(ObjectList {
            items,
            revision: page.revision,
        })
    }

    /// Follows changes to the objects of the kind (one namespace or all) after `from_revision`;
    /// usually the revision of a [`TypedStore::list`]. Ends with the store's errors (see
    /// [`crate::WatchStream`]) or with [`StoreError::Codec`] for a value that does not decode.
    pub fn watch(
        &self,
        namespace: Option<&str>,
        from_revision: Revision,
    ) -> BoxStream<'static, Result<TypedEvent<R>>> {
        let prefix = match namespace {
            Some(namespace) => keys::namespace_prefix(R::KIND, namespace),
            None => keys::kind_prefix(R::KIND),
        };
        let prefix = match prefix {
            Ok(prefix) => prefix,
            Err(error) => return Box::pin(futures::stream::once(async move { Err(error) })),
        };
        let mut failed = false;
        self.store
            .watch(&prefix, from_revision)
            .filter_map(|event| std::future::ready(event.and_then(typed_event::<R>).transpose()))
            // Stop after the first error, as the raw stream does.
            .take_while(move |item| {
                let keep = !failed;
                failed |= item.is_err();
                std::future::ready(keep)
            })
            .boxed()
    }
}

fn typed_event<R: Resource>(event: WatchEvent) -> Result<Option<TypedEvent<R>>> {
    let Some((object, part)) = keys::parse(R::KIND, event.key()) else {
        return Ok(None);
    };
    Ok(Some(match (event, part) {
        (WatchEvent::Put { kv, .. }, keys::Part::Spec) => TypedEvent::SpecPut {
            object,
            spec: decode(kv)?,
        },
        (WatchEvent::Put { kv, .. }, keys::Part::Status) => TypedEvent::StatusPut {
            object,
            status: decode(kv)?,
        },
        (WatchEvent::Delete { revision, .. }, keys::Part::Spec) => {
            TypedEvent::SpecDeleted { object, revision }
        }
        (WatchEvent::Delete { revision, .. }, keys::Part::Status) => {
            TypedEvent::StatusDeleted { object, revision }
        }
    }))
}

/// Groups raw entries (in key order) into objects. Keys of one object are adjacent.
fn group<R: Resource>(entries: Vec<KeyValue>) -> Result<Vec<Object<R>>> {
    let mut objects: Vec<Object<R>> = Vec::new();
    for entry in entries {
        let Some((object, part)) = keys::parse(R::KIND, &entry.key) else {
            continue;
        };
        match part {
            keys::Part::Spec => {
                let spec = decode::<R::Spec>(entry)?;
                objects.push(Object {
                    object,
                    spec,
                    status: None,
                });
            }
            keys::Part::Status => match objects.last_mut() {
                // "spec" sorts before "status", so the spec (if any) came just before.
                Some(last) if last.object == object => {
                    last.status = Some(decode::<R::Status>(entry)?)
                }
                _ => debug!(kind = R::KIND, object = %object, "status without a spec; ignored"),
            },
        }
    }
    Ok(objects)
}

fn encode<T: Serialize>(key: &[u8], value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| StoreError::Codec {
        action: "encode",
        key: display_key(key),
        source: Arc::new(source),
    })
}

fn decode<T: DeserializeOwned>(kv: KeyValue) -> Result<Versioned<T>> {
    let value = serde_json::from_slice(&kv.value).map_err(|source| StoreError::Codec {
        action: "decode",
        key: display_key(&kv.key),
        source: Arc::new(source),
    })?;
    Ok(Versioned {
        value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
    })
}

/// The [`StoreError::FenceLost`] of the first failed compare among `fences`, which the
/// transaction carried from compare number `fences_start` on.
fn lost_fence(
    response: &TxnResponse,
    fences: &[Compare],
    fences_start: usize,
) -> Option<StoreError> {
    response.failures.iter().find_map(|failure| {
        let fence = fences.get(failure.index.checked_sub(fences_start)?)?;
        Some(StoreError::FenceLost {
            key: display_key(&fence.key),
            current_revision: failure.current.mod_revision,
        })
    })
}

fn missing_failure(key: &[u8]) -> StoreError {
    StoreError::corrupt(
        "the backend reported a failed transaction without a failed compare",
        display_key(key),
    )
}

#[cfg(test)]
mod tests {
    use super::keys::*;
    use super::*;

    #[test]
    fn keys_round_trip_and_reject_bad_segments() {
        let object = ObjectRef::new("argocd", "guestbook");
        let spec = spec_key("applications", &object).expect("valid");
        assert_eq!(spec, b"/capstan/applications/argocd/guestbook/spec");
        assert_eq!(
            parse("applications", &spec),
            Some((object.clone(), Part::Spec))
        );
        let status = status_key("applications", &object).expect("valid");
        assert_eq!(parse("applications", &status), Some((object, Part::Status)));
        assert_eq!(parse("appprojects", &status), None);
        assert_eq!(
            parse("applications", b"/capstan/applications/a/b/history"),
            None
        );
        assert_eq!(
            parse("applications", b"/capstan/applications/a/b/spec/x"),
            None
        );
        for (namespace, name) in [
            ("", "a"),
            ("a", ""),
            ("a/b", "c"),
            ("a", ".."),
            ("a", "x\ny"),
        ] {
            assert!(
                spec_key("applications", &ObjectRef::new(namespace, name)).is_err(),
                "{namespace}/{name}"
            );
        }
        assert!(kind_prefix("Applications").is_err());
        assert!(kind_prefix("").is_err());
    }

    #[test]
    fn namespace_prefixes_do_not_overlap() {
        let a = namespace_prefix("applications", "team").expect("valid");
        let object = ObjectRef::new("team-b", "app");
        assert!(
            !spec_key("applications", &object)
                .expect("valid")
                .starts_with(&a)
        );
    }
}
