//! Durable sync operations: the engine's [`SyncState`] saved in the store after every step,
//! under the Application's own key (`/capstan/operations/<namespace>/<name>/spec`), so a
//! controller that restarts mid-sync resumes it instead of starting over.

use std::sync::Arc;

use capstan_engine::sync::SyncState;
use capstan_store::typed::{ObjectRef, Resource, TypedStore};
use capstan_store::{Compare, Precondition, Store, StoreError};

/// `operations`: the state of an Application's current or last sync.
#[derive(Debug, Clone, Copy)]
pub struct Operations;

impl Resource for Operations {
    const KIND: &'static str = "operations";
    type Spec = SyncState;
    type Status = ();
}

/// Reads and writes operation states.
#[derive(Clone)]
pub struct OperationStore {
    typed: TypedStore<Operations>,
}

impl std::fmt::Debug for OperationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationStore").finish_non_exhaustive()
    }
}

impl OperationStore {
    /// Operation states in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            typed: TypedStore::new(store),
        }
    }

    /// Saves `state` as the Application's operation (creating or replacing it), if every
    /// fence holds (the destination cluster's ownership): else [`StoreError::FenceLost`].
    pub async fn save(
        &self,
        app: &ObjectRef,
        state: &SyncState,
        fences: &[Compare],
    ) -> Result<(), StoreError> {
        self.typed
            .put_spec_fenced(app, state, fences)
            .await
            .map(|_| ())
    }

    /// Forgets the Application's operation (the Application is gone).
    pub async fn forget(&self, app: &ObjectRef) -> Result<(), StoreError> {
        self.typed.delete(app, Precondition::None).await.map(|_| ())
    }

    /// The Application's saved operation, if any.
    pub async fn load(&self, app: &ObjectRef) -> Result<Option<SyncState>, StoreError> {
        Ok(self.typed.get(app).await?.map(|o| o.spec.value))
    }
}
