//! The clusters a controller reconciles into: the ones it is given at start (the
//! all-in-one's `in-cluster`) and the ones registered in the store — `Cluster` objects, what
//! `capstan cluster add` and the API write — which [`ClusterManager`] connects, caches and
//! keeps in step with the store: a new Cluster is connected and listed, a changed one (new
//! credentials, other namespaces) is reconnected, a deleted one is dropped. Each Cluster's
//! status says how that went (`connectionState`, server version, cache counts).
//!
//! Only clusters this member owns are connected ([`Ownership`]); the all-in-one owns all.
//! A cluster that cannot be reached is tried again every [`RETRY`], with the error in its
//! status; its Applications meanwhile say the destination is not connected. A connected
//! cluster none of whose watches works is [`unreachable()`]: its status says so (checked every
//! [`RETRY`]) and its Applications are neither compared nor synced until it recovers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use capstan_engine::HealthAssessor;
use capstan_engine::cache::tracking::TrackingMethod;
use capstan_engine::cache::{CacheError, CacheMetrics, CacheSettings, ClusterCache};
use capstan_engine::cluster::ClusterConnection;
use capstan_engine::resources::ApiResolver;
use capstan_engine::sync::{SyncMetrics, SyncRunner};
use capstan_model::{ApplicationDestination, Cluster, ClusterStatus};
use capstan_store::kinds::Clusters;
use capstan_store::typed::{ObjectRef, StatusWrite, TypedEvent, TypedStore};
use futures::StreamExt as _;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ownership::Ownership;
use crate::reconcile::{ClusterHandle, now};

/// How long a failed cluster waits before the next connection attempt, and how often
/// ownership is looked at again.
pub const RETRY: Duration = Duration::from_secs(30);

/// How long a new cluster's first listing may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// The clusters Applications can be reconciled into; shared by the reconciler, the
/// controller (which follows each cluster's changes) and the [`ClusterManager`].
#[derive(Debug)]
pub struct ClusterRegistry {
    clusters: RwLock<Vec<Arc<ClusterHandle>>>,
    /// The servers of the clusters given at start: the store cannot replace them.
    fixed: Vec<String>,
    /// Bumped on every change, for whoever follows the set.
    generation: watch::Sender<u64>,
    /// (server, name) of every cluster registered in the store, owned or not, as the
    /// manager last read them.
    registered: RwLock<Vec<(String, String)>>,
    /// Servers whose last connection attempt failed (until one succeeds, or the cluster is
    /// no longer this member's).
    failed: RwLock<std::collections::HashSet<String>>,
}

impl ClusterRegistry {
    /// A registry holding the clusters given at start.
    pub fn new(initial: Vec<Arc<ClusterHandle>>) -> Arc<Self> {
        Arc::new(Self {
            fixed: initial.iter().map(|c| c.server.clone()).collect(),
            clusters: RwLock::new(initial),
            generation: watch::Sender::new(0),
            registered: RwLock::default(),
            failed: RwLock::default(),
        })
    }

    /// Whether the cluster an Application's destination names is registered and has not
    /// failed to connect: not connected *yet* (being connected, or just taken over and about
    /// to be), so its Applications wait rather than report it as not connected.
    pub fn is_pending(&self, dest: &ApplicationDestination) -> bool {
        let registered = self.registered.read().expect("not poisoned");
        let Some((server, _)) = registered.iter().find(|(server, name)| {
            (!dest.server.is_empty() && *server == dest.server)
                || (!dest.name.is_empty() && *name == dest.name)
        }) else {
            return false;
        };
        !self.failed.read().expect("not poisoned").contains(server)
    }

    fn set_registered(&self, registered: Vec<(String, String)>) {
        *self.registered.write().expect("not poisoned") = registered;
    }

    fn set_failed(&self, server: &str, failed: bool) {
        let mut set = self.failed.write().expect("not poisoned");
        if failed {
            set.insert(server.to_owned());
        } else {
            set.remove(server);
        }
    }

    /// Every cluster now.
    pub fn all(&self) -> Vec<Arc<ClusterHandle>> {
        self.clusters.read().expect("not poisoned").clone()
    }

    /// The cluster an Application's destination names (`server`, else `name`).
    pub fn find(&self, dest: &ApplicationDestination) -> Option<Arc<ClusterHandle>> {
        self.clusters
            .read()
            .expect("not poisoned")
            .iter()
            .find(|c| {
                (!dest.server.is_empty() && c.server == dest.server)
                    || (!dest.name.is_empty() && c.name == dest.name)
            })
            .cloned()
    }

    /// Whether `server` is one of the clusters given at start.
    pub fn is_fixed(&self, server: &str) -> bool {
        self.fixed.iter().any(|s| s == server)
    }

    /// Changes to the set (the value is a generation number; read [`Self::all`]).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Tells followers to look again without a change to the set (what this member owns
    /// changed: Applications of clusters it gained or lost are looked at again).
    fn touch(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Adds `handle`, replacing a cluster with the same server (whose cache is stopped).
    fn put(&self, handle: Arc<ClusterHandle>) {
        let replaced = {
            let mut clusters = self.clusters.write().expect("not poisoned");
            let old = clusters
                .iter()
                .position(|c| c.server == handle.server)
                .map(|i| clusters.remove(i));
            clusters.push(handle);
            old
        };
        if let Some(old) = replaced {
            old.cache.stop();
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// Removes the cluster with `server` (and stops its cache).
    fn remove(&self, server: &str) {
        let removed = {
            let mut clusters = self.clusters.write().expect("not poisoned");
            clusters
                .iter()
                .position(|c| c.server == server)
                .map(|i| clusters.remove(i))
        };
        if let Some(old) = removed {
            old.cache.stop();
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

/// What every cluster the manager connects is built with.
#[derive(Clone, Debug)]
pub struct ClusterTemplate {
    /// How deployed objects are tied to Applications.
    pub tracking: TrackingMethod,
    /// Health checks.
    pub assessor: Arc<HealthAssessor>,
    /// The cluster caches' metrics (labelled by cluster), if registered.
    pub cache_metrics: Option<CacheMetrics>,
    /// The sync runners' counters.
    pub sync_metrics: SyncMetrics,
}

impl ClusterTemplate {
    /// A handle on the cluster behind `client`, registered as `name` at `server`: its cache
    /// started (watching `namespaces`, or the whole cluster when empty; not yet synced), its
    /// discovery and its sync runner. Every cluster a controller reconciles into is built
    /// here, whether given at start or registered in the store.
    pub async fn start(
        &self,
        client: kube::Client,
        name: &str,
        server: &str,
        namespaces: Vec<String>,
    ) -> Result<ClusterHandle, CacheError> {
        let cache = ClusterCache::start(
            client.clone(),
            CacheSettings {
                namespaces,
                health: self.assessor.clone(),
                metrics: self.cache_metrics.clone(),
                ..CacheSettings::new(name, self.tracking)
            },
        )
        .await?;
        Ok(ClusterHandle {
            name: name.to_owned(),
            server: server.to_owned(),
            cache,
            resolver: ApiResolver::new(client.clone()),
            runner: SyncRunner::new(ApiResolver::new(client), self.assessor.clone())
                .with_metrics(self.sync_metrics.clone()),
        })
    }
}

/// Connects the clusters registered in the store (see the [module docs](self)).
pub struct ClusterManager {
    clusters: TypedStore<Clusters>,
    registry: Arc<ClusterRegistry>,
    template: ClusterTemplate,
    ownership: Arc<dyn Ownership>,
    /// Store object → the spec it was connected with (to see changes) and its server.
    connected: HashMap<ObjectRef, (Cluster, String)>,
    retry: Duration,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager")
            .field("connected", &self.connected.len())
            .finish_non_exhaustive()
    }
}

impl ClusterManager {
    /// A manager adding the store's clusters to `registry`.
    pub fn new(
        store: Arc<dyn capstan_store::Store>,
        registry: Arc<ClusterRegistry>,
        template: ClusterTemplate,
        ownership: Arc<dyn Ownership>,
    ) -> Self {
        Self {
            clusters: TypedStore::new(store),
            registry,
            template,
            ownership,
            connected: HashMap::new(),
            retry: RETRY,
        }
    }

    /// Looks at failed and unreachable clusters every `period` instead of [`RETRY`].
    #[must_use]
    pub fn with_retry(mut self, period: Duration) -> Self {
        self.retry = period;
        self
    }

    /// Follows the store until the task is dropped: brings the registry in step at start,
    /// after every change to a Cluster, and every [`RETRY`] (failed connections, ownership).
    pub async fn run(mut self) {
        let mut owned = self.ownership.changes();
        let mut ownership_moved = false;
        loop {
            let revision = match self.clusters.list(None).await {
                Ok(list) => {
                    let revision = list.revision;
                    self.converge(list.items).await;
                    if std::mem::take(&mut ownership_moved) {
                        // Have every Application looked at again: those of gained clusters
                        // get reconciled, those of lost ones dropped from the queue.
                        self.registry.touch();
                    }
                    revision
                }
                Err(err) => {
                    warn!(error = %err, "listing clusters failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut events = self.clusters.watch(None, revision);
            let deadline = tokio::time::sleep(self.retry);
            tokio::pin!(deadline);
            let ownership_changed = async {
                match owned.as_mut() {
                    Some(owned) => owned.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(ownership_changed);
            loop {
                tokio::select! {
                    true = &mut ownership_changed => {
                        ownership_moved = true;
                        break;
                    }
                    event = events.next() => match event {
                        Some(Ok(TypedEvent::SpecPut { .. } | TypedEvent::SpecDeleted { .. })) => break,
                        Some(Ok(_)) => {}
                        Some(Err(err)) => {
                            warn!(error = %err, "cluster watch ended; watching again");
                            break;
                        }
                        None => break,
                    },
                    () = &mut deadline => break,
                }
            }
        }
    }

    /// Connects what is new, changed or failed and owned; drops what is gone or not owned.
    async fn converge(&mut self, items: Vec<capstan_store::typed::Object<Clusters>>) {
        self.registry.set_registered(
            items
                .iter()
                .map(|item| {
                    let cluster = &item.spec.value;
                    (
                        cluster.spec.server.trim().to_owned(),
                        cluster.display_name().to_owned(),
                    )
                })
                .collect(),
        );
        let mut seen = std::collections::HashSet::new();
        for item in items {
            let at = item.object.clone();
            let current = item.status.map(|s| s.value).unwrap_or_default();
            let cluster = item.spec.value;
            let server = cluster.spec.server.trim().to_owned();
            if !self.ownership.owns(&server) {
                // Should it come back, it is pending again until a connection attempt.
                self.registry.set_failed(&server, false);
                continue;
            }
            if self.registry.is_fixed(&server) {
                warn!(cluster = %at, server = %server, "a Cluster in the store names a cluster this controller was given at start; the store's is ignored");
                continue;
            }
            seen.insert(at.clone());
            let unchanged = self
                .connected
                .get(&at)
                .is_some_and(|(spec, _)| spec.spec == cluster.spec);
            if unchanged && let Some(handle) = self.registry.find(&destination(&server)) {
                // Connected: the status follows the cache (every watch failing = unreachable).
                let (state, message) = match unreachable(&handle.cache) {
                    Some(error) => ("Failed", format!("unreachable: {error}")),
                    None => ("Successful", String::new()),
                };
                if current.connection_state.status != state
                    || current.connection_state.message != message
                {
                    let mut status = current;
                    status.connection_state = capstan_model::ConnectionState {
                        status: state.into(),
                        message,
                        attempted_at: Some(now()),
                    };
                    self.write(&at, &server, &status).await;
                }
                continue;
            }
            let connected = self.connect(&cluster, &server).await;
            self.registry.set_failed(&server, connected.is_err());
            let status = match connected {
                Ok(status) => {
                    self.connected
                        .insert(at.clone(), (cluster.clone(), server.clone()));
                    status
                }
                Err(message) => {
                    warn!(cluster = %at, server = %server, error = %message, "cannot connect to the cluster");
                    if let Some((_, old)) = self.connected.remove(&at) {
                        self.registry.remove(&old);
                    }
                    // Its Applications waited while it was being connected: now they say why
                    // it is not.
                    self.registry.touch();
                    failed(message)
                }
            };
            self.write(&at, &server, &status).await;
        }
        let gone: Vec<ObjectRef> = self
            .connected
            .keys()
            .filter(|at| !seen.contains(*at))
            .cloned()
            .collect();
        for at in gone {
            if let Some((_, server)) = self.connected.remove(&at) {
                info!(cluster = %at, server = %server, "cluster removed");
                self.registry.remove(&server);
            }
        }
    }

    /// Writes a Cluster's status, fenced on its ownership: a member that lost the cluster
    /// does not overwrite what its new owner reports.
    async fn write(&self, at: &ObjectRef, server: &str, status: &ClusterStatus) {
        let write = StatusWrite {
            fences: self.ownership.fences(server),
            ..StatusWrite::new()
        };
        if let Err(err) = self.clusters.put_status(at, status, write).await {
            warn!(cluster = %at, error = %err, "writing the cluster's status failed");
        }
    }

    /// Connects `cluster`, lists it and adds it to the registry; its status, or why not.
    async fn connect(&self, cluster: &Cluster, server: &str) -> Result<ClusterStatus, String> {
        let connection = ClusterConnection::from_spec(&cluster.spec).map_err(|e| e.to_string())?;
        let (client, info) = connection.connect().await.map_err(|e| e.to_string())?;
        let handle = self
            .template
            .start(
                client,
                cluster.display_name(),
                server,
                cluster.spec.namespaces.clone(),
            )
            .await
            .map_err(|e| format!("starting the cluster cache: {e}"))?;
        if let Err(e) = handle.cache.wait_for_sync(SYNC_TIMEOUT).await {
            handle.cache.stop();
            return Err(format!("listing the cluster: {e}"));
        }
        let stats = handle.cache.stats();
        self.registry.put(Arc::new(handle));
        info!(cluster = %cluster.display_name(), server, version = %info.server_version, "cluster connected");
        Ok(ClusterStatus {
            connection_state: capstan_model::ConnectionState {
                status: "Successful".into(),
                message: String::new(),
                attempted_at: Some(now()),
            },
            server_version: info.server_version,
            cache_info: capstan_model::ClusterCacheInfo {
                resources_count: i64::try_from(stats.objects).unwrap_or(i64::MAX),
                apis_count: i64::try_from(stats.kinds).unwrap_or(i64::MAX),
                ..capstan_model::ClusterCacheInfo::default()
            },
            ..ClusterStatus::default()
        })
    }
}

/// The error of a cluster none of whose watches works (so its cache is stale), or `None`.
pub fn unreachable(cache: &ClusterCache) -> Option<String> {
    let kinds = cache.kinds();
    if kinds.is_empty() || kinds.iter().any(|k| k.last_error.is_none()) {
        return None;
    }
    kinds.into_iter().find_map(|k| k.last_error)
}

fn destination(server: &str) -> ApplicationDestination {
    ApplicationDestination {
        server: server.to_owned(),
        ..ApplicationDestination::default()
    }
}

fn failed(message: String) -> ClusterStatus {
    ClusterStatus {
        connection_state: capstan_model::ConnectionState {
            status: "Failed".into(),
            message,
            attempted_at: Some(now()),
        },
        ..ClusterStatus::default()
    }
}
