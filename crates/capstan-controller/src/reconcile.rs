//! One reconcile of one Application: render, compare, write status, and sync when the policy
//! says so.
//!
//! [`Reconciler::reconcile`] reads the Application from the store, asks the repo-server for
//! its manifests (in process; a hard refresh bypasses the manifest cache), places and stamps
//! them, gathers the live objects from the destination cluster's cache, compares
//! ([`crate::compare`]), and writes the status **only when something other than
//! `reconciledAt` changed**. When automated sync is on and the Application is OutOfSync (or
//! drifted and `selfHeal` is on), it runs a sync with the engine, persisting the operation
//! after every step ([`crate::operations`]), and records it in the history.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use capstan_engine::HealthAssessor;
use capstan_engine::cache::ClusterCache;
use capstan_engine::cache::tracking::Tracking;
use capstan_engine::resources::{ApiResolver, ResourceKey, place_in_namespace};
use capstan_engine::sync::{LiveObject, Progress, SyncRequest, SyncRunner, SyncState};
use capstan_model::{
    Application, ApplicationCondition, ApplicationStatus, ComparedTo, OperationInitiator,
    OperationPhase, OperationState, RevisionHistory, SyncOperationResult, SyncStatus,
    SyncStatusCode, Timestamp,
};
use capstan_repo::application::Rendered;
use capstan_repo::client::ManifestSource;
use capstan_store::StoreError;
use capstan_store::kinds::{AppProjects, Applications, Repositories};
use capstan_store::typed::{ObjectRef, StatusWrite, TypedStore};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::children;
use crate::compare::{CompareInput, Comparison, compare};
use crate::ownership::Ownership;
use crate::project::{self, INVALID_SPEC_ERROR, ProjectPolicy, SYNC_ERROR};
use crate::windows::{SyncPermission, SyncTarget, WindowSet};

/// The server URL Argo CD gives the cluster the control plane runs in.
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
/// Its name.
pub const IN_CLUSTER_NAME: &str = "in-cluster";
pub use capstan_model::{REFRESH_ANNOTATION, RESOURCES_FINALIZER, TERMINATE_ANNOTATION};

/// Errors of one reconcile (the Application's own problems go into its conditions instead).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// This member no longer owns the Application's cluster.
    #[error("ownership of cluster {0} was lost")]
    NotOwner(String),
    /// The controller is shutting down; a running operation stays saved for the next start.
    #[error("stopping; the operation in progress is saved and resumes at the next start")]
    Stopping,
}

/// What a reconcile did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The Application is gone.
    Gone,
    /// Another member owns its cluster.
    NotOwned,
    /// Compared (and synced if the policy said so); status written or unchanged.
    Reconciled {
        /// The sync status after the reconcile.
        sync: SyncStatusCode,
        /// Whether a sync ran.
        synced: bool,
        /// Whether that sync corrected drift (self-heal) rather than deploying a revision.
        self_healed: bool,
        /// When a failed sync will be retried (`syncPolicy.retry`): look again then.
        retry_in: Option<Duration>,
    },
}

/// A cluster the controller reconciles Applications into.
#[derive(Debug)]
pub struct ClusterHandle {
    /// Its name (`in-cluster` for the local one).
    pub name: String,
    /// Its server URL as Applications name it.
    pub server: String,
    /// The watch-based cache of its objects.
    pub cache: ClusterCache,
    /// Discovery.
    pub resolver: ApiResolver,
    /// Syncs.
    pub runner: SyncRunner,
}

/// Reconciles Applications (see the [module docs](self)).
pub struct Reconciler {
    apps: TypedStore<Applications>,
    projects: TypedStore<AppProjects>,
    repositories: TypedStore<Repositories>,
    children: children::Children,
    operations: crate::operations::OperationStore,
    repo: Arc<dyn ManifestSource>,
    clusters: Arc<crate::clusters::ClusterRegistry>,
    assessor: Arc<HealthAssessor>,
    tracking: Tracking,
    ownership: Arc<dyn Ownership>,
    poll: Duration,
    stopping: std::sync::atomic::AtomicBool,
    metrics: crate::metrics::ControllerMetrics,
    /// When this reconciler was made: the first status write of each Application after it
    /// always happens, so `reconciledAt` tells who has looked at an Application since a
    /// (re)start even when nothing changed.
    started: jiff::Timestamp,
    /// Operation slots: at most this many syncs run at once (see [`crate::slots`]).
    operation_slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("clusters", &self.clusters)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    /// A reconciler over `store`, rendering with `repo` (the in-process
    /// [`capstan_repo::service::RepoServer`] or a [`capstan_repo::client::RepoClient`] of a
    /// `capstand repo-server`), into `clusters`.
    pub fn new(
        store: Arc<dyn capstan_store::Store>,
        repo: impl ManifestSource + 'static,
        clusters: Vec<Arc<ClusterHandle>>,
        assessor: Arc<HealthAssessor>,
        tracking: Tracking,
        ownership: Arc<dyn Ownership>,
    ) -> Self {
        Self {
            apps: TypedStore::new(store.clone()),
            projects: TypedStore::new(store.clone()),
            repositories: TypedStore::new(store.clone()),
            children: children::Children::new(store.clone()),
            operations: crate::operations::OperationStore::new(store),
            repo: Arc::new(repo),
            clusters: crate::clusters::ClusterRegistry::new(clusters),
            assessor,
            tracking,
            ownership,
            poll: Duration::from_millis(500),
            stopping: std::sync::atomic::AtomicBool::new(false),
            metrics: crate::metrics::ControllerMetrics::default(),
            started: jiff::Timestamp::now(),
            operation_slots: Arc::new(tokio::sync::Semaphore::new(
                crate::controller::DEFAULT_OPERATION_WORKERS,
            )),
        }
    }

    /// At most `n` sync operations at once (Argo CD's `--operation-processors`).
    pub(crate) fn set_operation_workers(&mut self, n: usize) {
        self.operation_slots = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
    }

    /// How often a running sync polls the cluster while it waits (default 500 ms).
    #[must_use]
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The reconciler's metrics, to register with the component's registry.
    pub fn metrics(&self) -> &crate::metrics::ControllerMetrics {
        &self.metrics
    }

    /// Asks running operations to stop at their next step (their state is saved, and the
    /// next start resumes them): shutdown does not wait for a long sync.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The clusters it reconciles into: those given to [`Reconciler::new`] and those a
    /// [`crate::clusters::ClusterManager`] adds from the store.
    pub fn clusters(&self) -> &Arc<crate::clusters::ClusterRegistry> {
        &self.clusters
    }

    pub(crate) fn cluster_of(&self, app: &Application) -> Option<Arc<ClusterHandle>> {
        self.clusters.find(&app.spec.destination)
    }

    /// Whether this member owns (reconciles) the cluster at `server`.
    pub(crate) fn owns(&self, server: &str) -> bool {
        self.ownership.owns(server)
    }

    /// Reconciles one Application; `hard` bypasses the manifest cache.
    pub async fn reconcile(&self, at: &ObjectRef, hard: bool) -> Result<Outcome, ReconcileError> {
        let started = std::time::Instant::now();
        let outcome = Box::pin(self.reconcile_once(at, hard)).await;
        debug!(app = %at, hard, outcome = ?outcome, ms = started.elapsed().as_millis(), "reconciled");
        self.metrics.reconciled(match &outcome {
            Ok(Outcome::Gone) => "gone",
            Ok(Outcome::NotOwned) => "not_owned",
            Ok(Outcome::Reconciled {
                sync: SyncStatusCode::Synced,
                ..
            }) => "synced",
            Ok(Outcome::Reconciled {
                sync: SyncStatusCode::OutOfSync,
                ..
            }) => "out_of_sync",
            Ok(Outcome::Reconciled { .. }) => "unknown",
            Err(_) => "error",
        });
        outcome
    }

    async fn reconcile_once(&self, at: &ObjectRef, hard: bool) -> Result<Outcome, ReconcileError> {
        let Some(object) = self.apps.get(at).await? else {
            return Ok(Outcome::Gone);
        };
        let app = object.spec.value;
        let old = object.status.map(|s| s.value).unwrap_or_default();
        let Some(cluster) = self.cluster_of(&app) else {
            if !self.ownership.owns_destination(&app.spec.destination) {
                return Ok(Outcome::NotOwned);
            }
            if self.clusters.is_pending(&app.spec.destination) {
                // Registered and not failed: being connected (taken over a moment ago, say).
                // Look again once it is connected (the registry's change re-enqueues every
                // Application) or failed (likewise), or when this retry comes.
                return Ok(Outcome::Reconciled {
                    sync: old.sync.status.unwrap_or(SyncStatusCode::Unknown),
                    synced: false,
                    self_healed: false,
                    retry_in: Some(Duration::from_secs(5)),
                });
            }
            let mut status = old.clone();
            set_condition(
                &mut status,
                "InvalidSpecError",
                format!(
                    "destination cluster {:?} is not registered or not connected (see the cluster's status)",
                    if app.spec.destination.server.is_empty() {
                        &app.spec.destination.name
                    } else {
                        &app.spec.destination.server
                    }
                ),
            );
            status.sync.status = Some(SyncStatusCode::Unknown);
            // Fenced on the destination's ownership when it is a registered cluster this
            // member owns (not connected yet, or failing to connect).
            self.write_status(at, &old, status, &app.spec.destination.server)
                .await?;
            return Ok(Outcome::Reconciled {
                sync: SyncStatusCode::Unknown,
                synced: false,
                self_healed: false,
                retry_in: None,
            });
        };
        let cluster: &ClusterHandle = &cluster;
        if !self.ownership.owns(&cluster.server) {
            return Ok(Outcome::NotOwned);
        }
        if app.metadata.deletion_timestamp.is_some() {
            return Box::pin(self.delete_app(at, cluster, &app, old)).await;
        }

        let mut status = old.clone();
        let unknown = |status: &mut ApplicationStatus| {
            status.sync.status = Some(SyncStatusCode::Unknown);
            Outcome::Reconciled {
                sync: SyncStatusCode::Unknown,
                synced: false,
                self_healed: false,
                retry_in: None,
            }
        };

        // A sync a previous run (or another member) left running is finished first.
        if let Some(saved) = self.operations.load(at).await?
            && !saved.is_finished()
        {
            info!(app = %at, "resuming the operation in progress");
            let (deploying, initiator) = status
                .operation_state
                .as_ref()
                .map(|o| {
                    let result = o.sync_result.clone().unwrap_or_default();
                    (
                        Deploying {
                            revision: result.revision,
                            revisions: result.revisions,
                            sources: result.sources,
                            source: result.source,
                            digest: result.manifests_digest,
                            requested: (!o.operation.initiated_by.automated)
                                .then(|| o.operation.clone()),
                            started_at: o.started_at.clone(),
                        },
                        o.operation.initiated_by.clone(),
                    )
                })
                .unwrap_or_default();
            Box::pin(self.run_operation(
                at,
                cluster,
                &app,
                &mut status,
                saved,
                deploying,
                initiator,
                "resumed",
            ))
            .await?;
            self.write_status(at, &old, status, &cluster.server).await?;
            return Ok(Outcome::Reconciled {
                sync: SyncStatusCode::Unknown,
                synced: true,
                self_healed: false,
                retry_in: None,
            });
        }

        // The project decides before anything is rendered or touches the cluster.
        let policy = match self.admit(at, &app, cluster).await? {
            Ok(policy) => policy,
            Err(refusal) => {
                replace_conditions(&mut status, INVALID_SPEC_ERROR, refusal);
                let outcome = unknown(&mut status);
                self.write_status(at, &old, status, &cluster.server).await?;
                return Ok(outcome);
            }
        };
        clear_condition(&mut status, INVALID_SPEC_ERROR);

        // Every watch of the cluster failing: what the cache holds is stale, so neither
        // compare nor sync; the cache's recovery (a relist) brings the Application back.
        if let Some(error) = crate::clusters::unreachable(&cluster.cache) {
            set_condition(
                &mut status,
                "ComparisonError",
                format!(
                    "cluster {} ({}) is unreachable: {error}",
                    cluster.name, cluster.server
                ),
            );
            let outcome = unknown(&mut status);
            self.write_status(at, &old, status, &cluster.server).await?;
            return Ok(outcome);
        }

        // A sync asked for in the spec; else a failed one asked for earlier whose
        // `operation.retry` allows another attempt now.
        let mut retried_request = None;
        let operation = app
            .operation
            .as_ref()
            .and_then(|o| o.sync.clone().map(|s| (o.clone(), s)))
            .or_else(|| {
                let last = status.operation_state.as_ref()?;
                if last.operation.initiated_by.automated
                    || retry_wait(&app, &status) != Some(Duration::ZERO)
                {
                    return None;
                }
                retried_request = Some(last.retry_count);
                let sync = last.operation.sync.clone()?;
                Some((last.operation.clone(), sync))
            });
        let mut render_app = app.clone();
        if let Some((_, sync)) = &operation {
            // A rollback names the source a history entry deployed; it is rendered instead
            // of the spec's (single source; multiple sources roll back by revisions).
            if let Some(source) = &sync.source
                && !render_app.spec.has_multiple_sources()
            {
                render_app.spec.source = Some(source.clone());
            }
            if !sync.sources.is_empty() && render_app.spec.has_multiple_sources() {
                render_app.spec.sources.clone_from(&sync.sources);
            }
        }
        // The sources deployed, as recorded: the rollback's or the spec's (revisions are
        // recorded apart from them).
        let deploy_source = render_app.spec.source.clone().unwrap_or_default();
        let deploy_sources = render_app.spec.sources.clone();
        if let Some((_, sync)) = &operation {
            // A manual sync (or rollback) to given revisions renders those revisions.
            if !sync.revision.is_empty()
                && let Some(source) = render_app.spec.source.as_mut()
            {
                source.target_revision.clone_from(&sync.revision);
            }
            if render_app.spec.has_multiple_sources() {
                for (source, revision) in render_app.spec.sources.iter_mut().zip(&sync.revisions) {
                    if !revision.is_empty() {
                        source.target_revision.clone_from(revision);
                    }
                }
            }
        }
        let had_children = old.resources.iter().any(|r| r.group == children::GROUP);
        let observed = Box::pin(self.observe(
            at,
            &app,
            cluster,
            Desired::Rendered {
                app: &render_app,
                hard,
            },
            had_children,
            false,
        ))
        .await?;
        let Observed {
            rendered,
            digest,
            children,
            child_comparison,
            desired,
            tracked,
            untracked,
            comparison,
        } = match observed {
            Ok(observed) => observed,
            Err(message) => {
                set_condition(&mut status, "ComparisonError", message);
                let outcome = unknown(&mut status);
                self.write_status(at, &old, status, &cluster.server).await?;
                return Ok(outcome);
            }
        };
        apply_comparison(&mut status, &app, &comparison, &rendered);
        match policy.orphaned.as_ref().filter(|o| o.warn == Some(true)) {
            Some(settings) => {
                let orphans = crate::orphans::find(
                    &cluster.cache,
                    &app.spec.destination.namespace,
                    &policy.rules,
                    &settings.ignore,
                );
                if orphans.is_empty() {
                    clear_condition(&mut status, crate::orphans::ORPHANED_RESOURCE_WARNING);
                } else {
                    set_condition(
                        &mut status,
                        crate::orphans::ORPHANED_RESOURCE_WARNING,
                        crate::orphans::message(&orphans),
                    );
                }
            }
            None => clear_condition(&mut status, crate::orphans::ORPHANED_RESOURCE_WARNING),
        }
        if app.spec.has_multiple_sources() {
            status.source_types.clone_from(&rendered.source_types);
        } else {
            status.source_type = rendered.source_types.first().copied();
        }
        let resource_violations: Vec<_> = desired
            .iter()
            .filter_map(|m| {
                let key = ResourceKey::of(m);
                // Placement gave every namespaced object a namespace.
                let namespaced = !key.namespace.is_empty();
                policy.rules.check_resource(&key, namespaced).or_else(|| {
                    namespaced
                        .then(|| {
                            policy.rules.check_resource_namespace(
                                &key,
                                &cluster.server,
                                &cluster.name,
                            )
                        })
                        .flatten()
                })
            })
            .collect();
        replace_conditions(
            &mut status,
            SYNC_ERROR,
            project::conditions(&resource_violations),
        );
        let permitted = resource_violations.is_empty();

        let target = SyncTarget::from_application(&app);
        let now_ts = jiff::Timestamp::now();
        let mut synced = false;
        let mut self_healed = false;
        let sync_options = app
            .spec
            .sync_policy
            .as_ref()
            .map(|p| p.sync_options.clone())
            .unwrap_or_default();
        let request = |prune: bool, options: capstan_model::SyncOptions| SyncRequest {
            app: app.metadata.name.clone(),
            namespace: app.spec.destination.namespace.clone(),
            desired: desired.clone(),
            live: tracked
                .iter()
                .cloned()
                .map(|object| LiveObject {
                    object,
                    app: Some(app.metadata.name.clone()),
                })
                .chain(
                    untracked
                        .iter()
                        .cloned()
                        .map(|object| LiveObject { object, app: None }),
                )
                .collect(),
            sync_options: options,
            prune,
            ignore_differences: app.spec.ignore_differences.clone(),
            managed_namespace_metadata: app
                .spec
                .sync_policy
                .as_ref()
                .and_then(|p| p.managed_namespace_metadata.clone()),
            ..SyncRequest::default()
        };
        if let Some((op, sync)) = operation {
            // A sync someone asked for (`operation` in the spec, written by the API or CLI).
            let blocked = match policy.windows.can_sync(&target, true, now_ts) {
                SyncPermission::Allowed => None,
                SyncPermission::Blocked { reason } => Some(reason),
            };
            if !permitted || blocked.is_some() {
                let why = if let Some(reason) = blocked.filter(|_| permitted) {
                    format!("sync blocked: {reason}")
                } else {
                    "sync refused: the project does not permit some resources (see SyncError)"
                        .to_owned()
                };
                status.operation_state = Some(OperationState {
                    operation: op.clone(),
                    phase: Some(OperationPhase::Failed),
                    message: why,
                    started_at: Some(now()),
                    finished_at: Some(now()),
                    ..OperationState::default()
                });
                self.clear_operation(at).await?;
            } else {
                let mut options = sync_options.clone();
                for o in &sync.sync_options.0 {
                    options.add(o.clone());
                }
                let mut req = request(sync.prune, options);
                req.dry_run = sync.dry_run;
                req.resources.clone_from(&sync.resources);
                info!(app = %at, revision = %rendered.revision, "sync requested");
                let state = self.plan_and_save(at, cluster, &req).await?;
                // The saved operation is the request's durable record from here on: a
                // controller stopped mid-sync resumes it, and must not find the request
                // again and run it a second time.
                self.clear_operation(at).await?;
                let deploying = Deploying {
                    revision: rendered.revision.clone(),
                    revisions: rendered.revisions.clone(),
                    sources: deploy_sources.clone(),
                    source: deploy_source.clone(),
                    digest: digest.clone(),
                    requested: Some(op.clone()),
                    started_at: None,
                };
                let state = Box::pin(self.run_operation(
                    at,
                    cluster,
                    &app,
                    &mut status,
                    state,
                    deploying,
                    op.initiated_by.clone(),
                    if retried_request.is_some() {
                        "retry"
                    } else {
                        "requested"
                    },
                ))
                .await?;
                if state.phase == OperationPhase::Succeeded && !sync.dry_run {
                    self.sync_children(at, &children, &child_comparison, sync.prune)
                        .await?;
                }
                if let (Some(attempts), Some(op)) =
                    (retried_request, status.operation_state.as_mut())
                {
                    op.retry_count = attempts + 1;
                }
                synced = true;
            }
        } else if let Some(reason) =
            auto_sync_reason(&app, &status, &comparison, &rendered.revision)
        {
            if !permitted {
                debug!(app = %at, "automated sync skipped: the project does not permit some resources");
            } else if let SyncPermission::Blocked { reason: why } =
                policy.windows.can_sync(&target, false, now_ts)
            {
                info!(app = %at, blocked = %why, "automated sync skipped: sync window");
            } else {
                info!(app = %at, revision = %rendered.revision, reason, "automated sync");
                let prune = app
                    .spec
                    .sync_policy
                    .as_ref()
                    .and_then(|p| p.automated.as_ref())
                    .is_some_and(|a| a.prune);
                let state = self
                    .plan_and_save(at, cluster, &request(prune, sync_options.clone()))
                    .await?;
                let initiator = OperationInitiator {
                    username: String::new(),
                    automated: true,
                };
                self_healed = reason.starts_with("self-heal");
                let retrying = reason == RETRY_REASON;
                let attempts = status.operation_state.as_ref().map_or(0, |o| o.retry_count);
                let trigger = if self_healed {
                    "self_heal"
                } else if retrying {
                    "retry"
                } else {
                    "automated"
                };
                let deploying = Deploying {
                    revision: rendered.revision.clone(),
                    revisions: rendered.revisions.clone(),
                    sources: app.spec.sources.clone(),
                    source: app.spec.source.clone().unwrap_or_default(),
                    digest: digest.clone(),
                    requested: None,
                    started_at: None,
                };
                let state = Box::pin(self.run_operation(
                    at,
                    cluster,
                    &app,
                    &mut status,
                    state,
                    deploying,
                    initiator,
                    trigger,
                ))
                .await?;
                if state.phase == OperationPhase::Succeeded {
                    self.sync_children(at, &children, &child_comparison, prune)
                        .await?;
                }
                if retrying && let Some(op) = status.operation_state.as_mut() {
                    op.retry_count = attempts + 1;
                }
                synced = true;
            }
        }
        // A sync just succeeded: report what it did now, not at the next look — compared
        // again once the cache has seen the applied objects (a short wait; what does not
        // settle by then is left to the follow-up reconcile).
        let succeeded = status.operation_state.as_ref().is_some_and(|o| {
            o.phase == Some(OperationPhase::Succeeded)
                && !o.operation.sync.as_ref().is_some_and(|s| s.dry_run)
        });
        if synced && succeeded {
            let child_comparison = if children.is_empty() {
                child_comparison
            } else {
                self.children.compare(at, &children, false).await?
            };
            for _ in 0..SETTLE_TRIES {
                let (tracked, untracked) = self.live(cluster, &app, &desired).await;
                let settled = self.compare_observed(
                    &app,
                    &desired,
                    &tracked,
                    &untracked,
                    &child_comparison,
                    false,
                );
                if settled.sync == SyncStatusCode::Synced {
                    apply_comparison(&mut status, &app, &settled, &rendered);
                    break;
                }
                tokio::time::sleep(self.poll.min(SETTLE_INTERVAL)).await;
            }
        }
        if app.metadata.annotations.contains_key(REFRESH_ANNOTATION) {
            self.clear_annotation(at, REFRESH_ANNOTATION).await?;
        }
        // Nothing runs (an operation would have seen it): a stale request.
        if app.metadata.annotations.contains_key(TERMINATE_ANNOTATION) {
            self.clear_annotation(at, TERMINATE_ANNOTATION).await?;
        }
        let sync = status.sync.status.unwrap_or(SyncStatusCode::Unknown);
        let retry_in = retry_wait(&app, &status).map(|d| d.max(Duration::from_millis(100)));
        self.write_status(at, &old, status, &cluster.server).await?;
        Ok(Outcome::Reconciled {
            sync,
            synced,
            self_healed,
            retry_in,
        })
    }

    /// Deletes an Application whose deletion was requested: with the resources finalizer,
    /// its objects first (PreDelete hooks, then every tracked object in reverse wave order,
    /// then PostDelete hooks), then the Application; without it, the Application only.
    async fn delete_app(
        &self,
        at: &ObjectRef,
        cluster: &ClusterHandle,
        app: &Application,
        old: ApplicationStatus,
    ) -> Result<Outcome, ReconcileError> {
        let finalizer = app
            .metadata
            .finalizers
            .iter()
            .find(|f| f.starts_with(RESOURCES_FINALIZER))
            .cloned();
        if let Some(finalizer) = finalizer {
            // Hooks come from Git; if rendering fails the objects are still deleted.
            let desired = match self.render(app, false).await {
                Ok(rendered) => self.place(cluster, app, rendered.manifests).await,
                Err(message) => {
                    warn!(app = %at, %message, "rendering for delete hooks failed; deleting without hooks");
                    Vec::new()
                }
            };
            let (tracked, _) = self.live(cluster, app, &[]).await;
            let mut options = app
                .spec
                .sync_policy
                .as_ref()
                .map(|p| p.sync_options.clone())
                .unwrap_or_default();
            if finalizer.ends_with("/background") {
                options
                    .0
                    .retain(|o| !o.starts_with("PrunePropagationPolicy="));
                options.add("PrunePropagationPolicy=background");
            }
            let request = SyncRequest {
                app: app.metadata.name.clone(),
                namespace: app.spec.destination.namespace.clone(),
                desired,
                live: tracked
                    .into_iter()
                    .map(|object| LiveObject {
                        object,
                        app: Some(app.metadata.name.clone()),
                    })
                    .collect(),
                sync_options: options,
                prune: true,
                mode: capstan_engine::sync::Mode::Delete,
                ..SyncRequest::default()
            };
            info!(app = %at, "deleting the application's resources");
            let state = self.plan_and_save(at, cluster, &request).await?;
            let mut status = old.clone();
            let initiator = OperationInitiator {
                username: String::new(),
                automated: true,
            };
            let state = self
                .run_operation(
                    at,
                    cluster,
                    app,
                    &mut status,
                    state,
                    Deploying::default(),
                    initiator,
                    "delete",
                )
                .await?;
            if state.phase != OperationPhase::Succeeded {
                set_condition(&mut status, "DeletionError", state.message.clone());
                self.write_status(at, &old, status, &cluster.server).await?;
                return Ok(Outcome::Reconciled {
                    sync: SyncStatusCode::Unknown,
                    synced: true,
                    self_healed: false,
                    retry_in: None,
                });
            }
        }
        self.apps
            .delete(at, capstan_store::Precondition::None)
            .await?;
        self.operations.forget(at).await?;
        info!(app = %at, "application deleted");
        Ok(Outcome::Gone)
    }

    /// Removes a served request made by annotation (`argocd.argoproj.io/refresh`, as Argo CD
    /// does, so later edits are not refreshes too; `capstan.dev/terminate-operation`).
    async fn clear_annotation(
        &self,
        at: &ObjectRef,
        annotation: &str,
    ) -> Result<(), ReconcileError> {
        self.edit_spec(at, annotation, |app| {
            app.metadata.annotations.shift_remove(annotation).is_some()
        })
        .await
    }

    /// Whether someone asked to terminate the Application's running operation.
    async fn termination_requested(&self, at: &ObjectRef) -> Result<bool, ReconcileError> {
        Ok(self.apps.get(at).await?.is_some_and(|o| {
            o.spec
                .value
                .metadata
                .annotations
                .contains_key(TERMINATE_ANNOTATION)
        }))
    }

    /// Removes the finished request from the spec (as Argo CD does).
    async fn clear_operation(&self, at: &ObjectRef) -> Result<(), ReconcileError> {
        self.edit_spec(at, "the finished operation", |app| {
            app.operation.take().is_some()
        })
        .await
    }

    /// Applies `edit` to the Application's spec as a compare-and-swap, reading it again when
    /// someone wrote in between (a few times; a spec that keeps changing is left alone).
    /// `edit` says whether it changed anything; a gone Application is fine.
    async fn edit_spec(
        &self,
        at: &ObjectRef,
        what: &str,
        edit: impl Fn(&mut Application) -> bool,
    ) -> Result<(), ReconcileError> {
        for _ in 0..5 {
            let Some(object) = self.apps.get(at).await? else {
                return Ok(());
            };
            let mut app = object.spec.value;
            if !edit(&mut app) {
                return Ok(());
            }
            let precondition = capstan_store::Precondition::ModRevision(object.spec.mod_revision);
            match self.apps.update_spec(at, &app, precondition).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        warn!(app = %at, what, "could not update the spec: it keeps changing");
        Ok(())
    }

    /// Writes the parent's children into the store (app of apps).
    async fn sync_children(
        &self,
        at: &ObjectRef,
        children: &[children::Child],
        compared: &children::ChildComparison,
        prune: bool,
    ) -> Result<(), ReconcileError> {
        for line in self.children.apply(children, compared, prune).await? {
            info!(app = %at, child = %line, "child synced");
        }
        Ok(())
    }

    /// The Application's project, compiled; `Err` carries the condition message. The
    /// project `default` is permissive when it has not been created (as Argo CD's install
    /// creates it).
    async fn project(
        &self,
        at: &ObjectRef,
        app: &Application,
    ) -> Result<Result<Policy, String>, ReconcileError> {
        let name = app.spec.project_or_default();
        let found = self
            .projects
            .get(&ObjectRef::new(at.namespace.clone(), name))
            .await?
            .map(|o| o.spec.value);
        let spec = match found {
            Some(p) => p.spec,
            None if name == capstan_model::DEFAULT_PROJECT => default_project(),
            None => {
                return Ok(Err(format!(
                    "application references project {name} which does not exist"
                )));
            }
        };
        let rules = match ProjectPolicy::from_spec(name, &spec) {
            Ok(rules) => rules,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let windows = match WindowSet::new(&spec.sync_windows) {
            Ok(w) => w,
            Err(e) => return Ok(Err(format!("project {name}: {e}"))),
        };
        Ok(Ok(Policy {
            rules,
            windows,
            orphaned: spec.orphaned_resources.clone(),
        }))
    }

    /// The project's rules when they admit the Application's sources and destination (the
    /// project is read and compiled); otherwise the `InvalidSpecError` conditions saying why.
    pub(crate) async fn admit(
        &self,
        at: &ObjectRef,
        app: &Application,
        cluster: &ClusterHandle,
    ) -> Result<Result<Policy, Vec<ApplicationCondition>>, ReconcileError> {
        let policy = match self.project(at, app).await? {
            Ok(policy) => policy,
            Err(message) => {
                return Ok(Err(vec![ApplicationCondition {
                    condition_type: INVALID_SPEC_ERROR.to_owned(),
                    message,
                    last_transition_time: Some(now()),
                }]));
            }
        };
        let mut violations = policy.rules.check_sources(&app.spec);
        violations.extend(policy.rules.check_destination(
            &app.spec.destination,
            &cluster.server,
            &cluster.name,
        ));
        if violations.is_empty() {
            Ok(Ok(policy))
        } else {
            Ok(Err(project::conditions(&violations)))
        }
    }

    /// The comparison of an Application with what runs in `cluster` — one code path for
    /// the reconcile and for the API ([`crate::live`]): renders `desired` (or takes the
    /// given manifests), sets app-of-apps children apart and compares them with the store
    /// (when there are some, or `had_children` at the last comparison), places and stamps
    /// the rest, gathers the live objects and compares; `detail` keeps each resource's
    /// sides and diff. `Ok(Err(message))` is the Application's own problem (a source that
    /// does not render, a child that does not parse), for its `ComparisonError`.
    ///
    /// Given manifests are compared only with the objects the Application tracks: naming
    /// an object does not show what runs there unless the Application manages it.
    pub(crate) async fn observe(
        &self,
        at: &ObjectRef,
        app: &Application,
        cluster: &ClusterHandle,
        desired: Desired<'_>,
        had_children: bool,
        detail: bool,
    ) -> Result<Result<Observed, String>, ReconcileError> {
        let (mut rendered, given) = match desired {
            Desired::Rendered {
                app: render_app,
                hard,
            } => match Box::pin(self.render(render_app, hard)).await {
                Ok(rendered) => (rendered, false),
                Err(message) => return Ok(Err(message)),
            },
            Desired::Given(manifests) => (
                Rendered {
                    manifests,
                    ..Rendered::default()
                },
                true,
            ),
        };
        let digest = if given {
            String::new()
        } else {
            capstan_repo::service::manifests_digest(&rendered.manifests)
        };
        // App of apps: Applications and AppProjects go to the store, the rest to the cluster.
        let (store_objects, cluster_objects): (Vec<Value>, Vec<Value>) =
            std::mem::take(&mut rendered.manifests)
                .into_iter()
                .partition(children::is_store_object);
        // Most Applications have no children: the store is only read for those that render
        // some, or had some at the last comparison (to prune them).
        let (children, child_comparison) = match children::parse(at, &store_objects) {
            Ok(children) if children.is_empty() && !had_children => {
                (children, children::ChildComparison::default())
            }
            Ok(children) => {
                let compared = self.children.compare(at, &children, detail).await?;
                (children, compared)
            }
            Err(message) => return Ok(Err(message)),
        };
        let desired = self.place(cluster, app, cluster_objects).await;
        let (tracked, untracked) = if given {
            (self.live(cluster, app, &[]).await.0, Vec::new())
        } else {
            self.live(cluster, app, &desired).await
        };
        let comparison = self.compare_observed(
            app,
            &desired,
            &tracked,
            &untracked,
            &child_comparison,
            detail,
        );
        Ok(Ok(Observed {
            rendered,
            digest,
            children,
            child_comparison,
            desired,
            tracked,
            untracked,
            comparison,
        }))
    }

    async fn plan_and_save(
        &self,
        at: &ObjectRef,
        cluster: &ClusterHandle,
        request: &SyncRequest,
    ) -> Result<SyncState, ReconcileError> {
        let state = cluster.runner.plan(request).await;
        self.save_operation(at, &state, &cluster.server).await?;
        Ok(state)
    }

    async fn render(&self, app: &Application, hard: bool) -> Result<Rendered, String> {
        let repositories = self
            .repositories
            .list(None)
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let registered: Vec<&capstan_model::RepositorySpec> =
            repositories.iter().map(|r| &r.spec.value.spec).collect();
        capstan_repo::application::render(&*self.repo, app, &registered, hard).await
    }

    /// Places manifests in the destination namespace and stamps them with tracking.
    async fn place(
        &self,
        cluster: &ClusterHandle,
        app: &Application,
        manifests: Vec<Value>,
    ) -> Vec<Value> {
        let scopes = cluster.resolver.scopes(&manifests).await;
        manifests
            .into_iter()
            .map(|mut m| {
                let namespaced = scopes.namespaced(&m).unwrap_or(true);
                place_in_namespace(&mut m, namespaced, &app.spec.destination.namespace);
                self.tracking.stamp(&mut m, &app.metadata.name);
                m
            })
            .collect()
    }

    /// Compares `desired` with the live objects (`tracked` by the app, and `untracked` ones
    /// at its desired keys); App-of-apps children out of sync make the whole Application
    /// out of sync. `detail` keeps each resource's sides and diff (for the API).
    fn compare_observed(
        &self,
        app: &Application,
        desired: &[Value],
        tracked: &[Value],
        untracked: &[Value],
        child_comparison: &children::ChildComparison,
        detail: bool,
    ) -> Comparison {
        let mut comparison = compare(
            &CompareInput {
                desired: desired.to_vec(),
                tracked: tracked.to_vec(),
                untracked: untracked.to_vec(),
                ignore: app.spec.ignore_differences.clone(),
                detail,
            },
            &self.assessor,
        );
        if child_comparison
            .statuses
            .iter()
            .any(|c| c.status != Some(SyncStatusCode::Synced))
        {
            comparison.sync = SyncStatusCode::OutOfSync;
        }
        comparison
            .resources
            .extend(child_comparison.statuses.iter().cloned());
        comparison
    }

    /// The live objects the app tracks, and those at its desired keys that it does not.
    async fn live(
        &self,
        cluster: &ClusterHandle,
        app: &Application,
        desired: &[Value],
    ) -> (Vec<Value>, Vec<Value>) {
        let tracked_keys = cluster.cache.managed_by(&app.metadata.name);
        let tracked: Vec<Value> = tracked_keys
            .iter()
            .filter_map(|k| cluster.cache.get(k))
            .collect();
        let tracked_set: std::collections::HashSet<&ResourceKey> = tracked_keys.iter().collect();
        let mut untracked = Vec::new();
        for manifest in desired {
            let key = ResourceKey::of(manifest);
            if tracked_set.contains(&key) || !cluster.cache.contains(&key) {
                continue;
            }
            let body = match cluster.cache.get(&key) {
                Some(body) => Some(body),
                None => cluster.cache.live(&key).await.ok().flatten(),
            };
            untracked.extend(body);
        }
        (tracked, untracked)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_operation(
        &self,
        at: &ObjectRef,
        cluster: &ClusterHandle,
        app: &Application,
        status: &mut ApplicationStatus,
        mut state: SyncState,
        deploying: Deploying,
        initiated_by: OperationInitiator,
        trigger: &'static str,
    ) -> Result<SyncState, ReconcileError> {
        let revision = deploying.revision.as_str();
        let started_at = deploying.started_at.clone().unwrap_or_else(now);
        let mut op = OperationState {
            phase: Some(OperationPhase::Running),
            started_at: Some(started_at.clone()),
            ..OperationState::default()
        };
        // A requested operation is recorded as asked (options, retry strategy, a rollback's
        // source), at the revision rendered, so a retry repeats exactly it.
        op.operation = deploying.requested.clone().unwrap_or_default();
        op.operation.initiated_by = initiated_by.clone();
        let sync = op.operation.sync.get_or_insert_with(Default::default);
        sync.revision = revision.to_owned();
        sync.dry_run = state.dry_run;
        let multiple = !deploying.sources.is_empty();
        op.sync_result = Some(SyncOperationResult {
            revision: revision.to_owned(),
            revisions: if multiple {
                deploying.revisions.clone()
            } else {
                Vec::new()
            },
            sources: deploying.sources.clone(),
            source: deploying.source.clone(),
            manifests_digest: deploying.digest.clone(),
            ..SyncOperationResult::default()
        });
        // Running, for everyone to see, and so that a resumed operation knows its revision
        // and who started it.
        status.operation_state = Some(op.clone());
        self.put_status(at, status, &cluster.server).await?;
        // From here the reconcile holds an operation slot instead of a status slot.
        let _operation_slot = crate::slots::trade_for_operation_slot(&self.operation_slots).await;
        loop {
            match cluster.runner.advance(&mut state).await {
                Progress::Advanced => self.save_operation(at, &state, &cluster.server).await?,
                Progress::Waiting(_) => tokio::time::sleep(self.poll).await,
                Progress::Finished => break,
            }
            if !self.ownership.owns(&cluster.server) {
                return Err(ReconcileError::NotOwner(cluster.server.clone()));
            }
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                self.save_operation(at, &state, &cluster.server).await?;
                return Err(ReconcileError::Stopping);
            }
            if !state.terminate_requested && self.termination_requested(at).await? {
                info!(app = %at, "terminating the running operation, as asked");
                state.request_termination();
                self.save_operation(at, &state, &cluster.server).await?;
                op.phase = Some(OperationPhase::Terminating);
                status.operation_state = Some(op.clone());
                self.put_status(at, status, &cluster.server).await?;
            }
        }
        self.save_operation(at, &state, &cluster.server).await?;
        if state.terminate_requested {
            self.clear_annotation(at, TERMINATE_ANNOTATION).await?;
        }
        self.metrics.synced(trigger, state.phase);
        op.phase = Some(state.phase);
        op.message.clone_from(&state.message);
        op.finished_at = Some(now());
        if let Some(result) = op.sync_result.as_mut() {
            result.resources = state.resource_results();
        }
        status.operation_state = Some(op);
        if state.phase == OperationPhase::Succeeded && !state.dry_run {
            let id = status.history.last().map_or(0, |h| h.id + 1);
            status.history.push(RevisionHistory {
                id,
                revision: revision.to_owned(),
                revisions: if multiple {
                    deploying.revisions
                } else {
                    Vec::new()
                },
                sources: deploying.sources,
                source: deploying.source,
                manifests_digest: deploying.digest,
                deployed_at: Some(now()),
                deploy_started_at: Some(started_at),
                initiated_by,
            });
            let limit = usize::try_from(app.spec.revision_history_limit_or_default()).unwrap_or(10);
            let excess = status.history.len().saturating_sub(limit);
            status.history.drain(..excess);
        } else {
            warn!(app = %at, message = %state.message, "sync failed");
        }
        Ok(state)
    }

    /// Saves a sync's state step, fenced on ownership of the cluster it deploys to.
    async fn save_operation(
        &self,
        at: &ObjectRef,
        state: &SyncState,
        cluster: &str,
    ) -> Result<(), ReconcileError> {
        match self
            .operations
            .save(at, state, &self.ownership.fences(cluster))
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::FenceLost { .. }) => Err(ReconcileError::NotOwner(cluster.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `status` now, fenced on ownership, saying who wrote it
    /// ([`Ownership::stamp`]).
    async fn put_status(
        &self,
        at: &ObjectRef,
        status: &ApplicationStatus,
        cluster: &str,
    ) -> Result<(), ReconcileError> {
        let write = StatusWrite {
            fences: self.ownership.fences(cluster),
            ..StatusWrite::new()
        };
        let stamp = self.ownership.stamp(cluster);
        let stamped;
        let status = if status.controller == stamp {
            status
        } else {
            stamped = ApplicationStatus {
                controller: stamp,
                ..status.clone()
            };
            &stamped
        };
        match self.apps.put_status(at, status, write).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(StoreError::FenceLost { .. }) => Err(ReconcileError::NotOwner(cluster.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `status` unless only `reconciledAt` differs from `old` and `old` was written
    /// since this reconciler started, fenced on ownership.
    async fn write_status(
        &self,
        at: &ObjectRef,
        old: &ApplicationStatus,
        mut status: ApplicationStatus,
        cluster: &str,
    ) -> Result<(), ReconcileError> {
        status.controller = self.ownership.stamp(cluster);
        let mut same = status.clone();
        same.reconciled_at.clone_from(&old.reconciled_at);
        let seen_since_start = old
            .reconciled_at
            .as_ref()
            .and_then(|t| t.0.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t >= self.started);
        if &same == old && seen_since_start {
            return Ok(());
        }
        status.reconciled_at = Some(now());
        self.put_status(at, &status, cluster).await
    }
}

/// What the Application's project allows.
pub(crate) struct Policy {
    rules: ProjectPolicy,
    windows: WindowSet,
    /// `orphanedResources`, when the project monitors them.
    orphaned: Option<capstan_model::OrphanedResourcesMonitorSettings>,
}

/// Where the desired side of [`Reconciler::observe`] comes from.
#[derive(Debug)]
pub(crate) enum Desired<'a> {
    /// `app`'s sources rendered (as they stand in `app`: a sync may have pointed them at
    /// other revisions); `hard` bypasses the manifest cache.
    Rendered {
        /// The Application to render.
        app: &'a Application,
        /// Bypass the manifest cache.
        hard: bool,
    },
    /// Manifests a caller gave (the API's diff of local files).
    Given(Vec<Value>),
}

/// What [`Reconciler::observe`] found, and what it was made from.
#[derive(Debug)]
pub(crate) struct Observed {
    /// What was rendered (revisions, source types; its manifests moved into `desired` and
    /// `children`); empty for given manifests.
    pub(crate) rendered: Rendered,
    /// [`capstan_repo::service::manifests_digest`] of the rendered manifests.
    pub(crate) digest: String,
    /// App-of-apps children among the manifests.
    pub(crate) children: Vec<children::Child>,
    /// Their comparison with the store.
    pub(crate) child_comparison: children::ChildComparison,
    /// The other manifests, placed and stamped.
    pub(crate) desired: Vec<Value>,
    /// Live objects the Application tracks.
    pub(crate) tracked: Vec<Value>,
    /// Live objects at desired keys the Application does not track.
    pub(crate) untracked: Vec<Value>,
    /// The comparison.
    pub(crate) comparison: Comparison,
}

/// The project Argo CD installs as `default`: any source, any destination, any kind.
fn default_project() -> capstan_model::AppProjectSpec {
    capstan_model::AppProjectSpec {
        source_repos: vec!["*".into()],
        destinations: vec![capstan_model::ApplicationDestination {
            server: "*".into(),
            namespace: "*".into(),
            name: String::new(),
        }],
        cluster_resource_whitelist: vec![capstan_model::GroupKind {
            group: "*".into(),
            kind: "*".into(),
        }],
        ..capstan_model::AppProjectSpec::default()
    }
}

/// Replaces every condition of `kind` by `conditions` (keeping transition times of
/// unchanged ones).
fn replace_conditions(
    status: &mut ApplicationStatus,
    kind: &str,
    conditions: Vec<ApplicationCondition>,
) {
    let old: Vec<ApplicationCondition> = status
        .conditions
        .iter()
        .filter(|c| c.condition_type == kind)
        .cloned()
        .collect();
    status.conditions.retain(|c| c.condition_type != kind);
    for mut c in conditions {
        if let Some(prev) = old.iter().find(|o| o.message == c.message) {
            c.last_transition_time
                .clone_from(&prev.last_transition_time);
        }
        status.conditions.push(c);
    }
}

/// How often, and how far apart, a successful sync's result is compared again while the
/// cluster cache catches up with what it applied.
const SETTLE_TRIES: usize = 10;
const SETTLE_INTERVAL: Duration = Duration::from_millis(100);

/// What an operation deploys: recorded in its result when it starts (so a resumed operation
/// knows it) and in the history when it succeeds.
#[derive(Debug, Default)]
struct Deploying {
    /// The revision rendered (commit SHA, chart version; comma-joined for several sources).
    revision: String,
    /// The source rendered: the spec's, or the history entry's for a rollback.
    source: capstan_model::ApplicationSource,
    /// Multiple sources: each one's revision (a `ref`-only source's too), and the sources.
    revisions: Vec<String>,
    sources: Vec<capstan_model::ApplicationSource>,
    /// [`capstan_repo::service::manifests_digest`] of the rendered manifests.
    digest: String,
    /// The operation someone asked for (a rollback's names `sync.source`); `None` for
    /// automated syncs.
    requested: Option<capstan_model::Operation>,
    /// When a resumed operation started (by this member before a restart, or by the
    /// cluster's previous owner): it is the same operation, so it keeps its start.
    started_at: Option<Timestamp>,
}

/// The current time in RFC 3339, as the model stores times.
pub fn now() -> Timestamp {
    Timestamp::new(humantime::format_rfc3339_seconds(SystemTime::now()).to_string())
}

fn apply_comparison(
    status: &mut ApplicationStatus,
    app: &Application,
    c: &Comparison,
    rendered: &Rendered,
) {
    status.resources.clone_from(&c.resources);
    status.sync = SyncStatus {
        status: Some(c.sync),
        compared_to: ComparedTo {
            source: app.spec.source.clone().unwrap_or_default(),
            destination: app.spec.destination.clone(),
            sources: app.spec.sources.clone(),
            ignore_differences: app.spec.ignore_differences.clone(),
        },
        revision: rendered.revision.clone(),
        revisions: if app.spec.has_multiple_sources() {
            rendered.revisions.clone()
        } else {
            Vec::new()
        },
    };
    let mut health = c.health.clone();
    if status.health.status == health.status {
        health
            .last_transition_time
            .clone_from(&status.health.last_transition_time);
    } else {
        health.last_transition_time = Some(now());
    }
    status.health = health;
    if c.errors.is_empty() {
        clear_condition(status, "ComparisonError");
    } else {
        let text: Vec<String> = c.errors.iter().map(|(k, e)| format!("{k}: {e}")).collect();
        set_condition(status, "ComparisonError", text.join("; "));
    }
}

/// Why an automated sync should run now, or `None` (Argo CD's rules: only when OutOfSync;
/// once per revision unless `selfHeal`; never an empty sync unless `allowEmpty`; a failed
/// sync of the same revision only again as a retry under `syncPolicy.retry`, once its backoff
/// has passed).
fn auto_sync_reason(
    app: &Application,
    status: &ApplicationStatus,
    c: &Comparison,
    revision: &str,
) -> Option<&'static str> {
    let policy = app.spec.sync_policy.as_ref()?;
    if !policy.is_automated() || c.sync != SyncStatusCode::OutOfSync {
        return None;
    }
    let automated = policy.automated.as_ref()?;
    let managed = c
        .resources
        .iter()
        .filter(|r| !r.hook && !r.requires_pruning)
        .count();
    if managed == 0 && !automated.allow_empty {
        return None;
    }
    let last = status.operation_state.as_ref();
    let last_revision = last
        .and_then(|o| o.sync_result.as_ref())
        .map(|r| r.revision.as_str());
    if last_revision == Some(revision) {
        let failed = last.and_then(|o| o.phase) != Some(OperationPhase::Succeeded);
        if failed {
            return (retry_wait(app, status) == Some(Duration::ZERO)).then_some(RETRY_REASON);
        }
        if !automated.self_heal {
            return None;
        }
        return Some("self-heal: live state drifted from the synced revision");
    }
    Some("out of sync with a new revision")
}

const RETRY_REASON: &str = "retry of a failed sync";

/// With attempts left after a failed sync — under `syncPolicy.retry` for automated syncs,
/// the operation's own `retry` for requested ones — how long until the next attempt is due
/// (zero: now). `None`: no retry (no strategy, limit reached, last sync fine).
fn retry_wait(app: &Application, status: &ApplicationStatus) -> Option<Duration> {
    let last = status.operation_state.as_ref()?;
    let retry = if last.operation.initiated_by.automated {
        app.spec.sync_policy.as_ref()?.retry.as_ref()?
    } else {
        Some(&last.operation.retry).filter(|r| r.limit != 0)?
    };
    if last.phase == Some(OperationPhase::Succeeded) || last.phase == Some(OperationPhase::Running)
    {
        return None;
    }
    let attempts = last.retry_count;
    if retry.limit >= 0 && attempts >= retry.limit {
        return None;
    }
    let delay = retry_delay(retry.backoff.as_ref(), attempts);
    let finished = last
        .finished_at
        .as_ref()
        .and_then(|t| t.as_str().parse::<jiff::Timestamp>().ok())?;
    let due = finished
        .checked_add(jiff::SignedDuration::try_from(delay).ok()?)
        .ok()?;
    let now = jiff::Timestamp::now();
    Some(if due <= now {
        Duration::ZERO
    } else {
        Duration::try_from(due.duration_since(now)).unwrap_or(Duration::ZERO)
    })
}

/// Argo CD's retry backoff: `duration` (5 s) × `factor` (2) ^ attempt, at most `maxDuration`
/// (3 minutes).
fn retry_delay(backoff: Option<&capstan_model::Backoff>, attempt: i64) -> Duration {
    let parse = |text: &str, default: Duration| {
        if text.is_empty() {
            default
        } else {
            capstan_model::validate::duration::parse_go_duration(text).unwrap_or(default)
        }
    };
    let base = parse(
        backoff.map_or("", |b| b.duration.as_str()),
        Duration::from_secs(5),
    );
    let max = parse(
        backoff.map_or("", |b| b.max_duration.as_str()),
        Duration::from_secs(180),
    );
    let factor = backoff.and_then(|b| b.factor).unwrap_or(2).max(1);
    let exponent = u32::try_from(attempt.clamp(0, 30)).unwrap_or(30);
    let multiplier = u32::try_from(factor)
        .unwrap_or(u32::MAX)
        .saturating_pow(exponent);
    base.saturating_mul(multiplier).min(max)
}

fn set_condition(status: &mut ApplicationStatus, kind: &str, message: String) {
    if let Some(existing) = status
        .conditions
        .iter_mut()
        .find(|c| c.condition_type == kind)
    {
        if existing.message != message {
            existing.message = message;
            existing.last_transition_time = Some(now());
        }
        return;
    }
    status.conditions.push(ApplicationCondition {
        condition_type: kind.to_owned(),
        message,
        last_transition_time: Some(now()),
    });
}

fn clear_condition(status: &mut ApplicationStatus, kind: &str) {
    status.conditions.retain(|c| c.condition_type != kind);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_grows_by_the_factor_up_to_the_maximum() {
        let secs = |b: Option<&capstan_model::Backoff>, n| retry_delay(b, n).as_secs();
        assert_eq!(
            [0, 1, 2, 3, 10].map(|n| secs(None, n)),
            [5, 10, 20, 40, 180]
        );
        let custom = capstan_model::Backoff {
            duration: "1s".into(),
            factor: Some(3),
            max_duration: "1m".into(),
        };
        assert_eq!(
            [0, 1, 2, 3, 4].map(|n| secs(Some(&custom), n)),
            [1, 3, 9, 27, 60]
        );
        let unreadable = capstan_model::Backoff {
            duration: "soon".into(),
            factor: None,
            max_duration: String::new(),
        };
        assert_eq!(
            secs(Some(&unreadable), 0),
            5,
            "an unreadable duration falls back to 5s"
        );
    }
}
