//! An in-memory copy of one kind of the store, kept current by a watch: what lists, the
//! webhook index and authentication read, so that a list of 10,000 Applications costs a walk
//! over decoded objects instead of decoding the store, and a webhook costs an index lookup.
//!
//! Every API replica keeps its own copy (the tier stays stateless: a copy is rebuilt from the
//! store at start and after a compacted watch). A write answered by the store shows up in the
//! copy a moment later; [`Mirror::wait_for_revision`] closes that gap where a caller must see
//! its own write.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use capstan_store::Revision;
use capstan_store::typed::{ObjectRef, Resource, TypedEvent, TypedStore};
use futures::StreamExt as _;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Something kept in step with the mirrored objects (an index).
pub trait Derived<R: Resource>: Default + Send + Sync + 'static {
    /// The spec of `at` is now `spec`.
    fn put(&mut self, at: &ObjectRef, spec: &R::Spec);
    /// `at` is gone.
    fn remove(&mut self, at: &ObjectRef);
}

/// No index.
#[derive(Debug, Default)]
pub struct Nothing;

impl<R: Resource> Derived<R> for Nothing {
    fn put(&mut self, _: &ObjectRef, _: &R::Spec) {}
    fn remove(&mut self, _: &ObjectRef) {}
}

/// One mirrored object.
pub struct Entry<R: Resource> {
    /// The spec.
    pub spec: Arc<R::Spec>,
    /// The spec's revision (for optimistic updates).
    pub spec_revision: Revision,
    /// The status, once a controller wrote one.
    pub status: Option<Arc<R::Status>>,
}

impl<R: Resource> Clone for Entry<R> {
    fn clone(&self) -> Self {
        Entry {
            spec: self.spec.clone(),
            spec_revision: self.spec_revision,
            status: self.status.clone(),
        }
    }
}

impl<R: Resource> std::fmt::Debug for Entry<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("spec_revision", &self.spec_revision)
            .finish_non_exhaustive()
    }
}

/// The mirrored objects at one revision, with the index.
pub struct State<R: Resource, D> {
    /// The objects, in (namespace, name) order.
    pub objects: BTreeMap<ObjectRef, Entry<R>>,
    /// The store revision the copy reflects.
    pub revision: Revision,
    /// The index.
    pub derived: D,
}

impl<R: Resource, D> std::fmt::Debug for State<R, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("objects", &self.objects.len())
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

struct Shared<R: Resource, D> {
    state: RwLock<State<R, D>>,
    /// The revision reached (0 until the first list is in).
    revision: watch::Sender<Revision>,
}

/// A mirror of kind `R` with index `D`; cheap to clone (one copy shared).
pub struct Mirror<R: Resource, D: Derived<R> = Nothing> {
    shared: Arc<Shared<R, D>>,
}

impl<R: Resource, D: Derived<R>> Clone for Mirror<R, D> {
    fn clone(&self) -> Self {
        Mirror {
            shared: self.shared.clone(),
        }
    }
}

impl<R: Resource, D: Derived<R>> std::fmt::Debug for Mirror<R, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("kind", &R::KIND)
            .field("revision", &*self.shared.revision.borrow())
            .finish()
    }
}

/// How long to wait before listing again after the store failed.
const RETRY: Duration = Duration::from_secs(1);

impl<R: Resource, D: Derived<R>> Mirror<R, D> {
    /// Starts mirroring kind `R` from `store`; the copy follows the store until the returned
    /// task is aborted. Reads see an empty copy until [`Mirror::wait_synced`] returns.
    pub fn start(store: TypedStore<R>) -> (Self, tokio::task::JoinHandle<()>) {
        let mirror = Mirror {
            shared: Arc::new(Shared {
                state: RwLock::new(State {
                    objects: BTreeMap::new(),
                    revision: 0,
                    derived: D::default(),
                }),
                revision: watch::channel(0).0,
            }),
        };
        let task = tokio::spawn(mirror.clone().follow(store));
        (mirror, task)
    }

    async fn follow(self, store: TypedStore<R>) {
        loop {
            let listed = match store.list(None).await {
                Ok(listed) => listed,
                Err(error) => {
                    warn!(kind = R::KIND, %error, "mirror: listing failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let from = listed.revision;
            {
                let mut state = self.write();
                let mut derived = D::default();
                let mut objects = BTreeMap::new();
                for object in listed.items {
                    derived.put(&object.object, &object.spec.value);
                    objects.insert(
                        object.object,
                        Entry {
                            spec: Arc::new(object.spec.value),
                            spec_revision: object.spec.mod_revision,
                            status: object.status.map(|s| Arc::new(s.value)),
                        },
                    );
                }
                *state = State {
                    objects,
                    revision: from,
                    derived,
                };
            }
            self.shared.revision.send_replace(from);
            debug!(kind = R::KIND, revision = from, "mirror: listed");
            let mut events = store.watch(None, from);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => self.apply(event),
                    Err(error) => {
                        // Compacted past our revision, or the store went away: list again.
                        warn!(kind = R::KIND, %error, "mirror: watch ended; listing again");
                        break;
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    fn apply(&self, event: TypedEvent<R>) {
        let revision = event.revision();
        {
            let mut guard = self.write();
            let state = &mut *guard;
            match event {
                TypedEvent::SpecPut { object, spec } => {
                    state.derived.put(&object, &spec.value);
                    let status = state.objects.get(&object).and_then(|e| e.status.clone());
                    state.objects.insert(
                        object,
                        Entry {
                            spec: Arc::new(spec.value),
                            spec_revision: spec.mod_revision,
                            status,
                        },
                    );
                }
                TypedEvent::SpecDeleted { object, .. } => {
                    state.derived.remove(&object);
                    state.objects.remove(&object);
                }
                TypedEvent::StatusPut { object, status } => {
                    if let Some(entry) = state.objects.get_mut(&object) {
                        entry.status = Some(Arc::new(status.value));
                    }
                }
                TypedEvent::StatusDeleted { object, .. } => {
                    if let Some(entry) = state.objects.get_mut(&object) {
                        entry.status = None;
                    }
                }
            }
            state.revision = state.revision.max(revision);
        }
        self.shared
            .revision
            .send_if_modified(|r| std::mem::replace(r, (*r).max(revision)) != *r);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State<R, D>> {
        // A panic while holding the lock leaves a consistent map (every update is one insert
        // or remove), so a poisoned lock is still usable.
        self.shared
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current copy, read-locked: keep the guard short (no `.await` while holding it).
    pub fn read(&self) -> RwLockReadGuard<'_, State<R, D>> {
        self.shared
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One object of the copy.
    pub fn get(&self, at: &ObjectRef) -> Option<Entry<R>> {
        self.read().objects.get(at).cloned()
    }

    /// Waits until the first list is in, at most `timeout`; whether it is.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        self.wait_for_revision(1, timeout).await
    }

    /// Waits until the copy reflects store revision `revision` (e.g. of a write just made),
    /// at most `timeout`; whether it does.
    pub async fn wait_for_revision(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.shared.revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_store::kinds::AppProjects;
    use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};

    #[derive(Default)]
    struct Names(Vec<String>);

    impl Derived<AppProjects> for Names {
        fn put(&mut self, at: &ObjectRef, _: &capstan_model::AppProject) {
            self.0.retain(|n| *n != at.name);
            self.0.push(at.name.clone());
        }
        fn remove(&mut self, at: &ObjectRef) {
            self.0.retain(|n| *n != at.name);
        }
    }

    fn project(name: &str) -> capstan_model::AppProject {
        capstan_model::parse_app_project_yaml(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: {name}}}\nspec: {{}}\n"
        ))
        .expect("parses")
    }

    #[tokio::test]
    async fn the_copy_and_its_index_follow_creates_updates_and_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(dir.path().join("s.redb"), EmbeddedOptions::default())
                .await
                .expect("opens"),
        );
        let typed = TypedStore::<AppProjects>::new(store.clone());
        let first = ObjectRef::new("capstan", "first");
        typed
            .create(&first, &project("first"))
            .await
            .expect("created");

        let (mirror, task) = Mirror::<AppProjects, Names>::start(typed.clone());
        assert!(mirror.wait_synced(Duration::from_secs(10)).await);
        assert!(mirror.get(&first).is_some(), "listed at start");

        let second = ObjectRef::new("capstan", "second");
        let created = typed
            .create(&second, &project("second"))
            .await
            .expect("created");
        assert!(
            mirror
                .wait_for_revision(created, Duration::from_secs(10))
                .await
        );
        assert_eq!(mirror.read().derived.0, ["first", "second"]);
        assert_eq!(
            mirror.get(&second).expect("mirrored").spec_revision,
            created
        );

        let deleted = typed
            .delete(&first, capstan_store::Precondition::None)
            .await
            .expect("deleted")
            .expect("existed");
        assert!(
            mirror
                .wait_for_revision(deleted, Duration::from_secs(10))
                .await
        );
        assert!(mirror.get(&first).is_none());
        assert_eq!(mirror.read().derived.0, ["second"]);
        task.abort();
    }
}
