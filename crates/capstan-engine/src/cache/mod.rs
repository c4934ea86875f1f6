//! The cluster cache: a watch-based, in-memory picture of one target cluster, indexed by
//! the Application each object belongs to.
//!
//! [`ClusterCache::start`] discovers the kinds the API server serves, watches every kind
//! worth watching ([`CacheSettings::watches`]), and keeps, per object, a compact entry:
//! identity, uid, resourceVersion, owners, the app that tracks it ([`tracking`]), its
//! health, and — for tracked objects only, by default — the object itself. From that it
//! answers what the controller asks:
//!
//! - [`ClusterCache::managed_by`] / [`ClusterCache::get`]: an app's live objects, for the
//!   diff;
//! - [`ClusterCache::tree`]: an app's resource tree (its objects and, through
//!   `ownerReferences`, everything they own: ReplicaSets, Pods, Jobs, EndpointSlices …);
//! - [`ClusterCache::subscribe`]: which apps changed, so only those are refreshed;
//! - [`ClusterCache::stats`]: what the cache holds, in objects and bytes.
//!
//! CRDs created later are picked up: CRD and APIService events re-run discovery. Watches
//! relist on expiry (410 Gone) and after errors, and a relist replaces what the cache held
//! of the kind, so nothing deleted meanwhile lingers.
//!
//! Start reading at [`ClusterCache`]; [`store`] is the index, `watch` the tasks that feed
//! it. The operator guide is `docs/cluster-cache.md`.
//!
//! ```no_run
//! use std::time::Duration;
//! use capstan_engine::cache::{CacheSettings, ClusterCache, TrackingMethod};
//! use capstan_engine::cluster::ClusterConnection;
//!
//! # async fn run(kubeconfig: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let connection = ClusterConnection::from_kubeconfig(kubeconfig, None)?;
//! let (client, _who) = connection.connect().await?;
//! let settings = CacheSettings::new(&connection.server, TrackingMethod::Annotation);
//! let cache = ClusterCache::start(client, settings).await?;
//! cache.wait_for_sync(Duration::from_secs(120)).await?;
//! let mut changes = cache.subscribe();
//! while let Some(apps) = changes.changed().await {
//!     for app in apps {
//!         for node in cache.tree(&app) {
//!             println!("{app}: {} {:?}", node.key, node.health);
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod metrics;
pub mod notify;
pub mod object;
pub mod store;
pub mod tracking;
mod watch;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tracing::{Instrument as _, info, info_span, warn};

use crate::cluster;
use crate::health::config::group_kind_key;
use crate::health::{GroupKindPattern, HealthAssessor};
use crate::resources::ResourceKey;

pub use metrics::CacheMetrics;
pub use notify::AppChanges;
pub use object::{BodyRetention, Uid};
pub use store::{CacheStats, GroupKind, KindStatus, TreeNode};
pub use tracking::{Tracking, TrackingId, TrackingMethod};

use object::{CompactObject, CompactRules};
use store::Store;

/// Kinds never watched unless settings say otherwise: high churn, no one deploys them from
/// Git, and (for metrics) not real objects.
pub const DEFAULT_EXCLUSIONS: &[&str] = &[
    "Event",
    "events.k8s.io/Event",
    "coordination.k8s.io/Lease*",
    "metrics.k8s.io/*",
    "internal.apiserver.k8s.io/*",
];

/// Errors of the cluster cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Discovery failed when the cache started (the cluster is unreachable, or refused).
    #[error("cluster {cluster}: discovering the served kinds failed: {message}")]
    Discovery {
        /// The cluster.
        cluster: String,
        /// What failed and what to check (credentials scrubbed).
        message: String,
        /// HTTP status, when the server answered.
        status: Option<u16>,
        /// kube's error, unless its text would reveal credentials.
        #[source]
        source: Option<kube::Error>,
    },
    /// Not every kind completed its initial list in time.
    #[error("cluster {cluster}: cache not synced after {waited:?}; still listing: {kinds}")]
    NotSynced {
        /// The cluster.
        cluster: String,
        /// How long was waited.
        waited: Duration,
        /// The kinds not listed yet, with their last error.
        kinds: String,
    },
    /// The kind is not served, or excluded from the cache.
    #[error(
        "cluster {cluster}: kind {kind} is not watched (not served, or excluded from the cache)"
    )]
    NotWatched {
        /// The cluster.
        cluster: String,
        /// `group/Kind`.
        kind: String,
    },
    /// Reading an object from the API server failed.
    #[error("cluster {cluster}: reading {key} failed: {message}")]
    Read {
        /// The cluster.
        cluster: String,
        /// The object.
        key: ResourceKey,
        /// What failed (credentials scrubbed).
        message: String,
        /// kube's error, unless its text would reveal credentials.
        #[source]
        source: Option<kube::Error>,
    },
}

/// How a cluster cache behaves.
#[derive(Clone)]
pub struct CacheSettings {
    /// The cluster's name in logs and metrics (its server URL, usually).
    pub cluster: String,
    /// How objects are tied to apps.
    pub tracking: Tracking,
    /// Which objects keep their body.
    pub retention: BodyRetention,
    /// Namespaces to watch; empty watches the whole cluster. Like Argo CD's cluster
    /// `namespaces`: every namespaced kind gets one watch per namespace.
    pub namespaces: Vec<String>,
    /// With `namespaces` set: watch cluster-scoped kinds too.
    pub cluster_resources: bool,
    /// `group/Kind` patterns never watched (Argo CD's `resource.exclusions`, by kind);
    /// defaults to [`DEFAULT_EXCLUSIONS`].
    pub exclusions: Vec<GroupKindPattern>,
    /// When not empty, only kinds matching one of these are watched (Argo CD's
    /// `resource.inclusions`). Owned kinds (ReplicaSet, Pod, ...) must be included for the
    /// resource tree to show them.
    pub inclusions: Vec<GroupKindPattern>,
    /// How often discovery runs when no CRD or APIService event asked for it.
    pub discovery_interval: Duration,
    /// Judges the health stored per object (built-in checks by default; pass the
    /// install's assessor for custom Lua checks).
    pub health: Arc<HealthAssessor>,
    /// Where the cache reports metrics.
    pub metrics: Option<CacheMetrics>,
}

impl fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheSettings")
            .field("cluster", &self.cluster)
            .field("tracking", &self.tracking)
            .field("retention", &self.retention)
            .field("namespaces", &self.namespaces)
            .field("cluster_resources", &self.cluster_resources)
            .field("exclusions", &self.exclusions)
            .field("inclusions", &self.inclusions)
            .field("discovery_interval", &self.discovery_interval)
            .finish_non_exhaustive()
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            cluster: String::new(),
            tracking: Tracking::default(),
            retention: BodyRetention::default(),
            namespaces: Vec::new(),
            cluster_resources: false,
            exclusions: DEFAULT_EXCLUSIONS
                .iter()
                .map(|p| GroupKindPattern::new(*p))
                .collect(),
            inclusions: Vec::new(),
            discovery_interval: Duration::from_secs(300),
            health: Arc::new(HealthAssessor::builtin_only()),
            metrics: None,
        }
    }
}

impl CacheSettings {
    /// Defaults for `cluster` with `method` tracking.
    pub fn new(cluster: impl Into<String>, method: TrackingMethod) -> Self {
        Self {
            cluster: cluster.into(),
            tracking: Tracking::new(method),
            ..Self::default()
        }
    }

    /// Whether objects of `kind` are watched (exclusions, then inclusions).
    pub fn watches(&self, kind: &GroupKind) -> bool {
        let key = group_kind_key(&kind.group, &kind.kind);
        if self.exclusions.iter().any(|p| p.matches(&key)) {
            return false;
        }
        self.inclusions.is_empty() || self.inclusions.iter().any(|p| p.matches(&key))
    }

    /// The watch scopes of a kind: `""` (all namespaces), each configured namespace, or
    /// none (a cluster-scoped kind on a namespace-restricted cluster).
    pub fn scopes(&self, namespaced: bool) -> Vec<String> {
        if self.namespaces.is_empty() {
            vec![String::new()]
        } else if namespaced {
            self.namespaces.clone()
        } else if self.cluster_resources {
            vec![String::new()]
        } else {
            Vec::new()
        }
    }
}

/// State shared by the cache handle, its tasks and the metrics collector.
pub(crate) struct Shared {
    cluster: String,
    client: kube::Client,
    settings: CacheSettings,
    store: RwLock<Store>,
    subscribers: notify::Subscribers,
    /// CRD name → the kind it serves (once established) and whether it is namespaced.
    crds: Mutex<HashMap<String, (GroupKind, bool)>>,
    rediscover: Notify,
    invalidate: Notify,
    sync_state: tokio::sync::watch::Sender<u64>,
    relists: AtomicU64,
    watch_errors: AtomicU64,
    discoveries: AtomicU64,
    discovery_errors: AtomicU64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }

    fn sync_changed(&self) {
        self.sync_state.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn compact(&self, resource: &ApiResource, obj: DynamicObject) -> Option<CompactObject> {
        let value = match serde_json::to_value(obj) {
            Ok(v) => v,
            Err(err) => {
                warn!(error = %err, "object could not be re-encoded; skipped");
                return None;
            }
        };
        Some(object::compact(
            value,
            &resource.group,
            &resource.api_version,
            &resource.kind,
            self.rules(),
        ))
    }

    fn rules(&self) -> CompactRules<'_> {
        CompactRules {
            tracking: &self.settings.tracking,
            health: &self.settings.health,
            retention: self.settings.retention,
        }
    }

    fn note_crd(&self, name: &str, serves: Option<(GroupKind, bool)>) {
        let mut crds = self.crds.lock().unwrap_or_else(|e| e.into_inner());
        match serves {
            Some(s) => {
                crds.insert(name.to_owned(), s);
            }
            None => {
                crds.remove(name);
            }
        }
    }

    /// Kinds of established CRDs that should be watched but discovery did not list.
    fn missing_crd_kinds(&self, wanted: &[watch::Watchable]) -> Vec<GroupKind> {
        let discovered: HashSet<(&str, &str)> = wanted
            .iter()
            .map(|w| (w.resource.group.as_str(), w.resource.kind.as_str()))
            .collect();
        let crds = self.crds.lock().unwrap_or_else(|e| e.into_inner());
        crds.values()
            .filter(|(gk, namespaced)| {
                self.settings.watches(gk)
                    && !self.settings.scopes(*namespaced).is_empty()
                    && !discovered.contains(&(gk.group.as_str(), gk.kind.as_str()))
            })
            .map(|(gk, _)| gk.clone())
            .collect()
    }

    fn stats(&self) -> CacheStats {
        let mut stats = self.read().stats();
        stats.relists = self.relists.load(Ordering::Relaxed);
        stats.watch_errors = self.watch_errors.load(Ordering::Relaxed);
        stats.discoveries = self.discoveries.load(Ordering::Relaxed);
        stats
    }

    fn kinds(&self) -> Vec<KindStatus> {
        self.read().kinds()
    }
}

/// Stops the tasks when the last handle goes.
struct Guard {
    supervisor: AbortHandle,
    shared: Arc<Shared>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.supervisor.abort();
        self.shared.subscribers.close();
    }
}

/// The cache of one cluster. Cheap to clone; the watches stop when the last clone is
/// dropped (or on [`Self::stop`]).
#[derive(Clone)]
pub struct ClusterCache {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
}

impl fmt::Debug for ClusterCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCache")
            .field("cluster", &self.shared.cluster)
            .finish_non_exhaustive()
    }
}

impl ClusterCache {
    /// Discovers the cluster's kinds and starts watching them. Returns once the watches are
    /// started, not once they are listed: see [`Self::wait_for_sync`].
    ///
    /// Fails when discovery fails (unreachable server, wrong credentials), with a message
    /// that says what to check.
    pub async fn start(client: kube::Client, settings: CacheSettings) -> Result<Self, CacheError> {
        let (sync_state, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            cluster: settings.cluster.clone(),
            client,
            settings,
            store: RwLock::default(),
            subscribers: notify::Subscribers::default(),
            crds: Mutex::default(),
            rediscover: Notify::new(),
            invalidate: Notify::new(),
            sync_state,
            relists: AtomicU64::new(0),
            watch_errors: AtomicU64::new(0),
            discoveries: AtomicU64::new(0),
            discovery_errors: AtomicU64::new(0),
        });
        let kinds = watch::discover(&shared).await.map_err(|err| {
            let status = cluster::status_of(&err);
            let (message, source) = cluster::explain(err);
            CacheError::Discovery {
                cluster: shared.cluster.clone(),
                message,
                status,
                source,
            }
        })?;
        {
            // Declared before the tasks start, so that "synced" means these were listed.
            let mut store = shared.write();
            for w in &kinds {
                store.add_kind(
                    &w.resource,
                    w.namespaced,
                    &shared.settings.scopes(w.namespaced),
                );
            }
        }
        info!(cluster = %shared.cluster, kinds = kinds.len(), tracking = %shared.settings.tracking.method, "cluster cache starting");
        let span = info_span!("cluster_cache", cluster = %shared.cluster);
        let supervisor = tokio::spawn(watch::supervise(shared.clone(), kinds).instrument(span));
        if let Some(metrics) = &shared.settings.metrics {
            metrics.add(&shared);
        }
        Ok(Self {
            guard: Arc::new(Guard {
                supervisor: supervisor.abort_handle(),
                shared: shared.clone(),
            }),
            shared,
        })
    }

    /// The cluster's name, as given in the settings.
    pub fn cluster(&self) -> &str {
        &self.shared.cluster
    }

    /// The settings the cache runs with.
    pub fn settings(&self) -> &CacheSettings {
        &self.shared.settings
    }

    /// Whether every watched kind completed its initial list.
    pub fn is_synced(&self) -> bool {
        self.shared.read().is_synced()
    }

    /// Waits until every watched kind completed its initial list. On timeout the error
    /// names the kinds still listing and their last error (e.g. RBAC forbids listing them).
    pub async fn wait_for_sync(&self, timeout: Duration) -> Result<(), CacheError> {
        let mut changes = self.shared.sync_state.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if self.is_synced() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                let kinds: Vec<String> = self
                    .shared
                    .read()
                    .unsynced()
                    .into_iter()
                    .map(|(kind, error)| match error {
                        Some(e) => format!("{kind} ({e})"),
                        None => kind.to_string(),
                    })
                    .collect();
                return Err(CacheError::NotSynced {
                    cluster: self.shared.cluster.clone(),
                    waited: timeout,
                    kinds: kinds.join(", "),
                });
            }
        }
    }

    /// The live object, if the cache keeps its body (tracked objects, by default). Without
    /// `metadata.managedFields` and the last-applied annotation.
    pub fn get(&self, key: &ResourceKey) -> Option<Value> {
        self.shared.read().get(key)
    }

    /// Whether the object exists, as far as the cache knows.
    pub fn contains(&self, key: &ResourceKey) -> bool {
        self.shared.read().contains(key)
    }

    /// The object's tree node (identity, owners, health, app), if the cache knows it.
    pub fn node(&self, key: &ResourceKey) -> Option<TreeNode> {
        self.shared.read().node(key)
    }

    /// The live object: from the cache when it keeps the body, otherwise read from the API
    /// server (objects no app tracks, such as one a sync is about to adopt). `None` when it
    /// does not exist.
    pub async fn live(&self, key: &ResourceKey) -> Result<Option<Value>, CacheError> {
        let kind = GroupKind::new(&key.group, &key.kind);
        let (resource, namespaced, known, synced) = {
            let store = self.shared.read();
            if let Some(body) = store.get(key) {
                return Ok(Some(body));
            }
            let Some((resource, namespaced)) = store.resource(&kind) else {
                return Err(CacheError::NotWatched {
                    cluster: self.shared.cluster.clone(),
                    kind: kind.to_string(),
                });
            };
            let scope = if namespaced && !self.shared.settings.namespaces.is_empty() {
                key.namespace.as_str()
            } else {
                ""
            };
            (
                resource,
                namespaced,
                store.contains(key),
                store.scope_synced(&kind, scope),
            )
        };
        if synced && !known {
            return Ok(None);
        }
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(self.shared.client.clone(), &key.namespace, &resource)
        } else {
            Api::all_with(self.shared.client.clone(), &resource)
        };
        let found = api.get_opt(&key.name).await.map_err(|err| {
            let (message, source) = cluster::explain(err);
            CacheError::Read {
                cluster: self.shared.cluster.clone(),
                key: key.clone(),
                message,
                source,
            }
        })?;
        Ok(found.and_then(|obj| {
            let mut value = serde_json::to_value(obj).ok()?;
            if let Some(map) = value.as_object_mut() {
                map.entry("apiVersion")
                    .or_insert_with(|| Value::String(resource.api_version.clone()));
                map.entry("kind")
                    .or_insert_with(|| Value::String(resource.kind.clone()));
            }
            object::strip(&mut value);
            Some(value)
        }))
    }

    /// The objects `app` tracks (the roots of its tree), sorted.
    pub fn managed_by(&self, app: &str) -> Vec<ResourceKey> {
        self.shared.read().managed_by(app)
    }

    /// The apps an object belongs to: the app tracking it, or the apps tracking the
    /// objects its owner chain leads to.
    pub fn apps_of(&self, key: &ResourceKey) -> Vec<String> {
        self.shared.read().apps_of_key(key)
    }

    /// Apps with at least one tracked object in the cluster, sorted.
    pub fn apps(&self) -> Vec<String> {
        self.shared.read().apps()
    }

    /// The objects owned (through `ownerReferences`) by the object with `uid`, sorted.
    pub fn children(&self, uid: &str) -> Vec<ResourceKey> {
        self.shared.read().children(Uid::parse(uid))
    }

    /// `app`'s resource tree: its tracked objects, then breadth first everything they own.
    pub fn tree(&self, app: &str) -> Vec<TreeNode> {
        self.shared.read().tree(app)
    }

    /// The keys of the objects of `kind` in `namespace` (`""`: all namespaces), sorted.
    pub fn keys(&self, kind: &GroupKind, namespace: &str) -> Vec<ResourceKey> {
        self.shared.read().keys_of_kind(kind, namespace)
    }

    /// The watched kinds and their state, sorted.
    pub fn kinds(&self) -> Vec<KindStatus> {
        self.shared.kinds()
    }

    /// What the cache holds (objects, bytes by its own accounting, kinds, apps) and its
    /// watch counters. The accounting is described in `docs/cluster-cache.md`.
    pub fn stats(&self) -> CacheStats {
        self.shared.stats()
    }

    /// A subscription to the apps whose resources change from now on.
    pub fn subscribe(&self) -> AppChanges {
        self.shared.subscribers.subscribe()
    }

    /// Runs discovery now (after installing CRDs through another path, say).
    pub fn rediscover(&self) {
        self.shared.rediscover.notify_one();
    }

    /// Restarts every watch: each kind is listed again and replaces what the cache held
    /// (Argo CD's "invalidate cluster cache").
    pub fn invalidate(&self) {
        self.shared.invalidate.notify_one();
    }

    /// Stops the watches now (they also stop when the last clone is dropped).
    /// Subscriptions end after delivering what is pending.
    pub fn stop(&self) {
        self.guard.supervisor.abort();
        self.shared.subscribers.close();
    }
}
