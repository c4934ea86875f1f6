//! The loop: everything that should make an Application be looked at again feeds one work
//! queue, and workers reconcile what comes out of it.
//!
//! Sources of work:
//! - the store: every Application at start, then each spec change (a refresh: a user or the
//!   API changed it); `argocd.argoproj.io/refresh: hard` on the Application asks for a hard
//!   refresh;
//! - the cluster caches: an object an Application tracks changed (periodic priority, so a
//!   drifting object cannot starve explicit refreshes, and a self-healing Application that
//!   fights another writer waits out its backoff);
//! - the queue's own resync timer after each success (3 minutes ± jitter by default).
//!
//! A self-heal sync counts as a failure for the queue's backoff: consecutive self-heals of one
//! Application back off exponentially, and the backoff resets once a reconcile finds it in sync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use capstan_store::Store;
use capstan_store::kinds::{AppProjects, Applications};
use capstan_store::typed::{ObjectRef, TypedEvent, TypedStore};
use futures::StreamExt as _;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::queue::{self, QueueConfig, Request, WorkQueue};
use crate::reconcile::{Outcome, ReconcileError, Reconciler};

pub use crate::reconcile::REFRESH_ANNOTATION as ANNOTATION_REFRESH;

/// How soon an Application is compared again after a sync.
const AFTER_SYNC: std::time::Duration = std::time::Duration::from_millis(500);

/// Default of [`ControllerConfig::operation_workers`].
pub const DEFAULT_OPERATION_WORKERS: usize = 4;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Concurrent reconciles comparing Applications (Argo CD's `--status-processors`).
    pub workers: usize,
    /// Concurrent sync operations (Argo CD's `--operation-processors`): a reconcile that
    /// syncs gives up its worker for one of these while the operation runs, so syncs waiting
    /// for rollouts do not stop other Applications from being compared.
    pub operation_workers: usize,
    /// The work queue's backoff and resync.
    pub queue: QueueConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            operation_workers: DEFAULT_OPERATION_WORKERS,
            queue: QueueConfig::default(),
        }
    }
}

/// The controller (see the [module docs](self)).
#[derive(Debug)]
pub struct Controller {
    store: Arc<dyn Store>,
    reconciler: Arc<Reconciler>,
    queue: WorkQueue<ObjectRef>,
    config: ControllerConfig,
    /// Application name → where it is stored; cluster caches report names.
    by_name: Arc<Mutex<HashMap<String, ObjectRef>>>,
}

impl Controller {
    /// A controller reconciling the Applications in `store` with `reconciler`.
    pub fn new(
        store: Arc<dyn Store>,
        mut reconciler: Reconciler,
        config: ControllerConfig,
    ) -> Self {
        reconciler.set_operation_workers(config.operation_workers);
        Self {
            queue: WorkQueue::new(config.queue),
            store,
            reconciler: Arc::new(reconciler),
            config,
            by_name: Arc::default(),
        }
    }

    /// Registers the controller's metrics (reconciles, syncs, work queue) in `registry` (the
    /// component's sub-registry). The sync engine's counters belong to the runners, which
    /// whoever builds the [`crate::ClusterHandle`]s registers.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.reconciler.metrics().register(registry);
        self.queue.metrics().register(registry);
    }

    /// The reconciler: also what answers the API about the live state of Applications
    /// (it implements [`capstan_api::live::LiveState`]; see [`crate::live`]).
    pub fn reconciler(&self) -> &Arc<Reconciler> {
        &self.reconciler
    }

    /// The work queue (the API will enqueue refresh requests here in process).
    pub fn queue(&self) -> &WorkQueue<ObjectRef> {
        &self.queue
    }

    /// Runs until `shutdown` completes, then drains: no new work is taken, reconciles in
    /// progress finish.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ReconcileError> {
        let apps = TypedStore::<Applications>::new(self.store.clone());
        let listed = apps.list(None).await?;
        for object in &listed.items {
            self.remember(&object.object, &object.spec.value.metadata.name);
            self.queue
                .enqueue(object.object.clone(), request_for(&object.spec.value));
        }
        info!(applications = listed.items.len(), "controller started");
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(
            watch_store(
                apps,
                listed.revision,
                self.queue.clone(),
                self.by_name.clone(),
            )
            .instrument(info_span!("store-watch")),
        );
        tasks.spawn(
            watch_projects(
                TypedStore::<AppProjects>::new(self.store.clone()),
                self.queue.clone(),
                self.by_name.clone(),
            )
            .instrument(info_span!("project-watch")),
        );
        tasks.spawn(
            follow_clusters(
                self.reconciler.clusters().clone(),
                self.queue.clone(),
                self.by_name.clone(),
            )
            .instrument(info_span!("cluster-changes")),
        );
        // Each reconcile is a task holding a status slot (`workers` of them), which it trades
        // for an operation slot when it syncs (see `crate::slots`).
        let status_slots = Arc::new(tokio::sync::Semaphore::new(self.config.workers.max(1)));
        let dispatch = {
            let queue = self.queue.clone();
            let reconciler = self.reconciler.clone();
            async move {
                let mut running = tokio::task::JoinSet::new();
                loop {
                    let Ok(slot) = status_slots.clone().acquire_owned().await else {
                        break;
                    };
                    let Some((at, request)) = queue.next().await else {
                        break;
                    };
                    let queue = queue.clone();
                    let reconciler = reconciler.clone();
                    running.spawn(crate::slots::in_status_slot(slot, async move {
                        // Boxed: a reconcile's state machine is large, and tasks may run on
                        // a small stack (a current-thread runtime's caller).
                        let outcome = Box::pin(
                            reconciler
                                .reconcile(&at, request.bypasses_manifest_cache())
                                .instrument(info_span!("reconcile", app = %at)),
                        )
                        .await;
                        queue.done(&at, queue_outcome(&at, outcome));
                    }));
                    while running.try_join_next().is_some() {}
                }
                // The queue is shut down: let the reconciles in progress finish.
                while running.join_next().await.is_some() {}
            }
        };
        // In a set, so that dropping this future (an aborted drain) aborts the reconciles.
        let mut dispatcher = tokio::task::JoinSet::new();
        dispatcher.spawn(dispatch.instrument(info_span!("dispatch")));
        shutdown.await;
        info!("controller stopping: draining reconciles in progress");
        self.queue.shutdown();
        self.reconciler.stop();
        tasks.abort_all();
        while dispatcher.join_next().await.is_some() {}
        Ok(())
    }

    fn remember(&self, at: &ObjectRef, name: &str) {
        self.by_name
            .lock()
            .expect("not poisoned")
            .insert(name.to_owned(), at.clone());
    }
}

fn request_for(app: &capstan_model::Application) -> Request {
    match app
        .metadata
        .annotations
        .get(ANNOTATION_REFRESH)
        .map(String::as_str)
    {
        Some("hard") => Request::hard_refresh(),
        _ => Request::refresh(),
    }
}

fn queue_outcome(at: &ObjectRef, outcome: Result<Outcome, ReconcileError>) -> queue::Outcome {
    match outcome {
        Ok(Outcome::Gone | Outcome::NotOwned) => queue::Outcome::Removed,
        Ok(Outcome::Reconciled {
            self_healed: true, ..
        }) => queue::Outcome::Failed,
        Ok(Outcome::Reconciled {
            retry_in: Some(wait),
            ..
        }) => queue::Outcome::RequeueAfter(wait),
        // After a sync, look again soon: the status still holds the comparison made before
        // it, and an Application whose objects all live in the store (an app of apps) gets
        // no cluster event to say it changed.
        Ok(Outcome::Reconciled { synced: true, .. }) => queue::Outcome::RequeueAfter(AFTER_SYNC),
        Ok(Outcome::Reconciled { .. }) => queue::Outcome::Succeeded,
        Err(err) => {
            warn!(app = %at, error = %err, "reconcile failed");
            queue::Outcome::Failed
        }
    }
}

/// A project change (created, edited, deleted) can change every verdict about its
/// Applications: refresh them all. Projects change rarely, so no per-project index.
/// Follows every cluster's object changes (enqueuing the Applications they belong to), and
/// the set of clusters itself: a cluster added or removed (a `Cluster` registered or deleted
/// in the store) has every Application compared again, so destinations that were not
/// connected are, and those that went away say so.
async fn follow_clusters(
    registry: Arc<crate::clusters::ClusterRegistry>,
    queue: WorkQueue<ObjectRef>,
    by_name: Arc<Mutex<HashMap<String, ObjectRef>>>,
) {
    let mut changes = registry.changes();
    // Server → (the handle followed, its forwarding task). The tasks live in a set, so
    // they end with this one.
    let mut forwarders = tokio::task::JoinSet::new();
    let mut followed: HashMap<String, (Arc<crate::ClusterHandle>, tokio::task::AbortHandle)> =
        HashMap::new();
    let mut first = true;
    loop {
        let now = registry.all();
        followed.retain(|server, (handle, task)| {
            let current = now
                .iter()
                .any(|c| &c.server == server && Arc::ptr_eq(c, handle));
            if !current {
                task.abort();
            }
            current
        });
        for cluster in now {
            if followed.contains_key(&cluster.server) {
                continue;
            }
            let mut events = cluster.cache.subscribe();
            let queue = queue.clone();
            let by_name = by_name.clone();
            let name = cluster.name.clone();
            let task = forwarders.spawn(
                async move {
                    while let Some(names) = events.changed().await {
                        for name in names {
                            let found = by_name.lock().expect("not poisoned").get(&name).cloned();
                            if let Some(at) = found {
                                queue.enqueue(at, Request::periodic());
                            }
                        }
                    }
                }
                .instrument(info_span!("cache-changes", cluster = %name)),
            );
            followed.insert(cluster.server.clone(), (cluster, task));
        }
        if !first {
            refresh_all(&queue, &by_name);
        }
        first = false;
        while forwarders.try_join_next().is_some() {}
        if changes.changed().await.is_err() {
            break;
        }
    }
}

/// Asks for a refresh of every known Application (what a project or cluster change calls
/// for).
fn refresh_all(queue: &WorkQueue<ObjectRef>, by_name: &Mutex<HashMap<String, ObjectRef>>) {
    let all: Vec<ObjectRef> = by_name
        .lock()
        .expect("not poisoned")
        .values()
        .cloned()
        .collect();
    for at in all {
        queue.enqueue(at, Request::refresh());
    }
}

async fn watch_projects(
    projects: TypedStore<AppProjects>,
    queue: WorkQueue<ObjectRef>,
    by_name: Arc<Mutex<HashMap<String, ObjectRef>>>,
) {
    loop {
        let revision = match projects.list(None).await {
            Ok(list) => list.revision,
            Err(err) => {
                warn!(error = %err, "listing projects failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut events = projects.watch(None, revision);
        while let Some(event) = events.next().await {
            match event {
                Ok(TypedEvent::SpecPut { .. } | TypedEvent::SpecDeleted { .. }) => {
                    refresh_all(&queue, &by_name);
                }
                Ok(_) => {}
                Err(err) => {
                    warn!(error = %err, "project watch ended; watching again");
                    break;
                }
            }
        }
    }
}

async fn watch_store(
    apps: TypedStore<Applications>,
    mut revision: capstan_store::Revision,
    queue: WorkQueue<ObjectRef>,
    by_name: Arc<Mutex<HashMap<String, ObjectRef>>>,
) {
    loop {
        let mut events = apps.watch(None, revision);
        while let Some(event) = events.next().await {
            match event {
                Ok(TypedEvent::SpecPut { object, spec }) => {
                    revision = spec.mod_revision;
                    by_name
                        .lock()
                        .expect("not poisoned")
                        .insert(spec.value.metadata.name.clone(), object.clone());
                    queue.enqueue(object, request_for(&spec.value));
                }
                Ok(TypedEvent::SpecDeleted {
                    object,
                    revision: at,
                }) => {
                    revision = at;
                    by_name
                        .lock()
                        .expect("not poisoned")
                        .retain(|_, v| *v != object);
                    queue.enqueue(object, Request::refresh());
                }
                Ok(_) => {}
                Err(err) => {
                    // Compacted or a broken stream: relist and go on from the list.
                    warn!(error = %err, "application watch ended; relisting");
                    break;
                }
            }
        }
        match apps.list(None).await {
            Ok(list) => {
                revision = list.revision;
                for object in list.items {
                    queue.enqueue(object.object, Request::periodic());
                }
                debug!(revision, "relisted applications");
            }
            Err(err) => {
                warn!(error = %err, "relisting applications failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
