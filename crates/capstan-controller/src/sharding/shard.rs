//! Per-cluster ownership of a sharded controller member: the [`Ring`] decides, etcd keys make
//! it safe.
//!
//! [`Sharding::start`] joins the [membership](super::membership) and then keeps, in one
//! task, this member's ownership keys in step with the ring:
//!
//! - **Inputs**: the live members ([`super::membership::member_changes`]), the registered
//!   clusters (`Cluster` objects, watched) and their weights — 1 per Application whose
//!   destination is the cluster, plus its watched objects (`status.cacheInfo.resourcesCount`,
//!   rounded down to a power of two so that a cluster's ordinary churn does not reassign it),
//!   re-read every [`ShardConfig::rebalance`].
//! - **Taking a cluster**: when the ring gives this member a cluster, it creates
//!   `/capstan/shards/owners/<server>` (the server URL percent-encoded), value the member's
//!   name, **bound to the member's lease**, in a transaction that requires the key to be
//!   absent. If another member still holds it (it has not yet seen the change), the attempt
//!   is repeated every [`RETRY_TAKE`] until that member releases it or its lease expires.
//! - **Releasing**: when the ring moves a cluster away, the member stops owning it at once
//!   (locally: [`ShardOwnership::owns`] turns false, so no new reconcile starts) and deletes
//!   the key in a transaction conditioned on its own `create_revision`, so it can only ever
//!   delete its own ownership. [`Sharding::leave`] revokes the lease: every key goes at once,
//!   and a rolling restart hands over without waiting for a TTL.
//! - **Fencing**: every status and operation write for a cluster carries
//!   `create_revision(owner key) == the revision this member took it at`
//!   ([`ShardOwnership::fences`]). A member paused past its TTL (GC, SIGSTOP, a partition)
//!   loses its lease and therefore its keys; when it wakes, its writes fail in etcd even
//!   before it has noticed, and when the key was re-created by the new owner its revision
//!   differs. Each status also records the writer and that revision (`status.controller`).
//! - **Lease loss**: when the lease is lost, the member drops every cluster, then joins
//!   again with a new lease and takes its share anew.
//!
//! An Application whose destination is not a registered cluster is reported (a condition
//! in its status) by one member: the ring's choice for that destination.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use capstan_model::{ApplicationDestination, ControllerShard};
use capstan_store::kinds::{Applications, Clusters};
use capstan_store::typed::{Object, TypedEvent, TypedStore};
use capstan_store::{Compare, CompareOp, EtcdStore, Store, Txn};
use futures::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{oneshot, watch};
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::membership::{MemberInfo, Membership, MembershipError, member_changes};
use super::ring::{ClusterLoad, Epsilon, Ring};
use crate::ownership::Ownership;

/// Where ownership keys live: `/capstan/shards/owners/<percent-encoded server URL>`.
pub const OWNERS_PREFIX: &str = "/capstan/shards/owners/";

/// How often a cluster the ring gave this member, whose key another member still holds, is
/// tried again.
pub const RETRY_TAKE: Duration = Duration::from_millis(250);

/// How long to wait before joining again after the lease was lost, or after a failed join.
const REJOIN_WAIT: Duration = Duration::from_millis(500);

/// The key of the ownership of the cluster at `server`.
pub fn owner_key(server: &str) -> String {
    capstan_store::limits::key_with_segment(OWNERS_PREFIX, server)
}

/// How a member shards.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// This member (its name must be unique among live members).
    pub member: MemberInfo,
    /// The membership lease's TTL: how long a dead member's clusters stay unowned at most.
    pub ttl: Duration,
    /// The ring's load slack.
    pub epsilon: Epsilon,
    /// How often cluster weights (Application counts, watched objects) are read again.
    pub rebalance: Duration,
}

impl ShardConfig {
    /// Defaults for `member`: the membership's default TTL, ε = 0.25, weights every 10 s.
    pub fn new(member: MemberInfo) -> Self {
        Self {
            member,
            ttl: super::membership::DEFAULT_TTL,
            epsilon: Epsilon::default(),
            rebalance: Duration::from_secs(10),
        }
    }
}

/// What every member knows of the fleet, for questions about destinations.
#[derive(Debug, Default)]
struct View {
    /// The ring of live members.
    ring: Ring,
    /// Registered clusters: name → server.
    names: HashMap<String, String>,
    /// Registered servers.
    servers: HashSet<String>,
}

#[derive(Debug)]
struct Shared {
    me: String,
    /// Server → the revision this member took its key at.
    held: RwLock<HashMap<String, u64>>,
    /// The current lease's liveness (replaced when the member joins again).
    alive: RwLock<watch::Receiver<bool>>,
    view: RwLock<View>,
    generation: watch::Sender<u64>,
    metrics: ShardMetrics,
}

impl Shared {
    fn held(&self, server: &str) -> Option<u64> {
        if !*self.alive.read().expect("not poisoned").borrow() {
            return None;
        }
        self.held.read().expect("not poisoned").get(server).copied()
    }

    fn changed(&self) {
        let owned = self.held.read().expect("not poisoned").len();
        self.metrics
            .owned_clusters
            .set(i64::try_from(owned).unwrap_or(i64::MAX));
        self.generation.send_modify(|g| *g += 1);
    }
}

/// The sharded [`Ownership`]: what this member holds keys for. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShardOwnership {
    shared: Arc<Shared>,
}

impl ShardOwnership {
    /// The servers of the clusters this member owns now, sorted.
    pub fn owned(&self) -> Vec<String> {
        let mut owned: Vec<String> = self
            .shared
            .held
            .read()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect();
        owned.sort();
        owned
    }

    /// This member's name.
    pub fn member(&self) -> &str {
        &self.shared.me
    }
}

impl Ownership for ShardOwnership {
    fn owns(&self, cluster: &str) -> bool {
        self.shared.held(cluster).is_some()
    }

    fn fences(&self, cluster: &str) -> Vec<Compare> {
        let key = owner_key(cluster);
        match self.shared.held(cluster) {
            Some(revision) => vec![Compare::create_revision(
                key.as_bytes(),
                CompareOp::Equal,
                revision,
            )],
            // A destination that is no registered cluster has no owner to fence on (one
            // member reports it: `owns_destination`).
            None if !self
                .shared
                .view
                .read()
                .expect("not poisoned")
                .servers
                .contains(cluster) =>
            {
                Vec::new()
            }
            // Registered and not held: a compare that never holds (no version is below 0).
            None => vec![Compare::version(key.as_bytes(), CompareOp::Less, 0)],
        }
    }

    fn owns_destination(&self, destination: &ApplicationDestination) -> bool {
        let view = self.shared.view.read().expect("not poisoned");
        let server = if destination.server.is_empty() {
            view.names.get(&destination.name).cloned()
        } else {
            Some(destination.server.clone())
        };
        match server {
            Some(server) if view.servers.contains(&server) => {
                drop(view);
                self.owns(&server)
            }
            // Not registered: the ring's choice for the destination itself reports it.
            _ => {
                let id = format!("destination:{}|{}", destination.server, destination.name);
                view.ring
                    .assign(&[ClusterLoad::new(id.clone(), 1)])
                    .ok()
                    .and_then(|assignment| assignment.owner(&id).map(|o| o == self.shared.me))
                    .unwrap_or(false)
            }
        }
    }

    fn stamp(&self, cluster: &str) -> Option<ControllerShard> {
        self.shared
            .held(cluster)
            .map(|ownership_revision| ControllerShard {
                member: self.shared.me.clone(),
                ownership_revision,
            })
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.generation.subscribe())
    }
}

/// Prometheus metrics of a member's sharding.
#[derive(Debug, Clone, Default)]
pub struct ShardMetrics {
    owned_clusters: Gauge,
    members: Gauge,
    taken: Counter,
    released: Counter,
    lease_losses: Counter,
}

impl ShardMetrics {
    /// Registers the metrics (`shard_…`) in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "shard_owned_clusters",
            "Clusters this member holds the ownership key of",
            self.owned_clusters.clone(),
        );
        registry.register(
            "shard_members",
            "Live controller members in this member's view",
            self.members.clone(),
        );
        registry.register(
            "shard_clusters_taken",
            "Ownership keys taken (a cluster assigned to this member)",
            self.taken.clone(),
        );
        registry.register(
            "shard_clusters_released",
            "Ownership keys released (a cluster moved to another member)",
            self.released.clone(),
        );
        registry.register(
            "shard_lease_losses",
            "Times this member lost its membership lease (and every cluster with it)",
            self.lease_losses.clone(),
        );
    }
}

/// A running member: its ownership and the task keeping it. [`Sharding::leave`] to stop.
#[derive(Debug)]
pub struct Sharding {
    ownership: ShardOwnership,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sharding {
    /// Joins the membership as `config.member` and starts taking this member's share of the
    /// clusters registered in `store` (the control plane's store, for reading Clusters and
    /// Applications; `etcd` is the same etcd, for leases).
    ///
    /// # Errors
    /// The first join's error ([`MembershipError::NameTaken`] while a previous process of
    /// the same name still holds its lease, an unreachable etcd).
    pub async fn start(
        etcd: EtcdStore,
        store: Arc<dyn Store>,
        config: ShardConfig,
    ) -> Result<Self, MembershipError> {
        let membership = Membership::join(&etcd, config.member.clone(), config.ttl).await?;
        let shared = Arc::new(Shared {
            me: config.member.name.clone(),
            held: RwLock::default(),
            alive: RwLock::new(membership.alive()),
            view: RwLock::default(),
            generation: watch::Sender::new(0),
            metrics: ShardMetrics::default(),
        });
        let (stop, stopped) = oneshot::channel();
        let keeper = Keeper {
            etcd,
            clusters: TypedStore::new(store),
            config,
            shared: shared.clone(),
            loads: Vec::new(),
        };
        let task = tokio::spawn(
            keeper
                .run(membership, stopped)
                .instrument(info_span!("sharding", member = %shared.me)),
        );
        Ok(Self {
            ownership: ShardOwnership { shared },
            stop: Some(stop),
            task,
        })
    }

    /// The ownership to give the reconciler and the cluster manager.
    pub fn ownership(&self) -> ShardOwnership {
        self.ownership.clone()
    }

    /// The sharding metrics, to register.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.ownership.shared.metrics
    }

    /// Leaves: drops every cluster and revokes the lease, so the other members take this
    /// member's clusters at once. Call it after the controller has drained.
    pub async fn leave(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(error) = (&mut self.task).await {
            warn!(%error, "the sharding task failed");
        }
    }

    /// Stops keeping the lease alive without leaving, as a killed process would (tests).
    pub fn abandon(self) {
        self.task.abort();
    }
}

/// The task behind [`Sharding`].
struct Keeper {
    etcd: EtcdStore,
    clusters: TypedStore<Clusters>,
    config: ShardConfig,
    shared: Arc<Shared>,
    /// The clusters and their weights as last read.
    loads: Vec<ClusterLoad>,
}

impl Keeper {
    async fn run(mut self, mut membership: Membership, mut stopped: oneshot::Receiver<()>) {
        let mut members = member_changes(self.etcd.clone());
        let mut alive = membership.alive();
        let mut rebalance = tokio::time::interval(self.config.rebalance);
        rebalance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Watched from the revision of the last successful read of the clusters.
        let mut cluster_events = None;
        let mut view: Vec<MemberInfo> = Vec::new();
        let mut pending = false;
        loop {
            let mut reread = false;
            tokio::select! {
                _ = &mut stopped => break,
                changed = members.next() => match changed {
                    Some(Ok(now)) => {
                        view = now;
                        self.shared
                            .metrics
                            .members
                            .set(i64::try_from(view.len()).unwrap_or(i64::MAX));
                    }
                    Some(Err(error)) => {
                        warn!(%error, "reading the members failed");
                        continue;
                    }
                    None => members = member_changes(self.etcd.clone()),
                },
                _ = rebalance.tick() => reread = true,
                event = next_event(&mut cluster_events) => match event {
                    Some(Ok(TypedEvent::SpecPut { .. } | TypedEvent::SpecDeleted { .. })) => {
                        reread = true;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => {
                        debug!(%error, "cluster watch ended; reading again");
                        reread = true;
                    }
                    None => reread = true,
                },
                () = tokio::time::sleep(RETRY_TAKE), if pending => {}
                _ = alive.changed() => {
                    if !*alive.borrow() {
                        let Some(joined) = self.rejoin(&mut stopped).await else {
                            return;
                        };
                        membership = joined;
                        alive = membership.alive();
                        *self.shared.alive.write().expect("not poisoned") = membership.alive();
                    }
                }
            }
            if reread {
                match self.read_loads().await {
                    Ok(revision) => cluster_events = Some(self.clusters.watch(None, revision)),
                    Err(error) => {
                        warn!(%error, "reading cluster weights failed");
                        cluster_events = None;
                    }
                }
            }
            pending = self.converge(&membership, &view).await;
        }
        // Leaving: stop owning first (nothing new starts), then revoke (the keys go at once).
        self.shared.held.write().expect("not poisoned").clear();
        self.shared.changed();
        if let Err(error) = membership.leave().await {
            warn!(%error, "revoking the membership lease failed; it expires with its TTL");
        }
    }

    /// After a lost lease: drops every cluster and joins again, until it works; `None` if
    /// the member stops first.
    async fn rejoin(&self, stopped: &mut oneshot::Receiver<()>) -> Option<Membership> {
        self.shared.metrics.lease_losses.inc();
        let dropped = {
            let mut held = self.shared.held.write().expect("not poisoned");
            let count = held.len();
            held.clear();
            count
        };
        self.shared.changed();
        warn!(
            dropped,
            "lost the membership lease (etcd unreachable or this process paused past the TTL); dropped every cluster, joining again"
        );
        loop {
            match Membership::join(&self.etcd, self.config.member.clone(), self.config.ttl).await {
                Ok(membership) => {
                    info!("joined the membership again");
                    return Some(membership);
                }
                Err(error) => debug!(%error, "joining again failed; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(REJOIN_WAIT) => {}
                _ = &mut *stopped => return None,
            }
        }
    }

    /// Reads the registered clusters and their weights; the revision the clusters were read
    /// at.
    async fn read_loads(&mut self) -> Result<capstan_store::Revision, capstan_store::StoreError> {
        let read = read_cluster_loads(self.clusters.store()).await?;
        {
            // What questions about destinations need; changes only with the clusters.
            let mut view = self.shared.view.write().expect("not poisoned");
            view.servers = read.loads.iter().map(|l| l.id.clone()).collect();
            view.names = read.names;
        }
        self.loads = read.loads;
        Ok(read.revision)
    }

    /// Takes and releases keys to match the ring; whether some cluster the ring gave this
    /// member is still held by another (try again soon).
    async fn converge(&self, membership: &Membership, members: &[MemberInfo]) -> bool {
        let ring = ring_of(self.config.epsilon, members);
        self.shared.view.write().expect("not poisoned").ring = ring.clone();
        let me = self.shared.me.as_str();
        let desired: HashSet<String> =
            if members.iter().any(|m| m.name == me) && membership.lease().is_alive() {
                match ring.assign(&self.loads) {
                    Ok(assignment) => assignment.clusters_of(me).map(str::to_owned).collect(),
                    Err(error) => {
                        warn!(%error, "assigning clusters failed");
                        return false;
                    }
                }
            } else {
                HashSet::new()
            };
        let held: HashMap<String, u64> = self.shared.held.read().expect("not poisoned").clone();

        // Release first: the new owner is waiting for these keys.
        let releasing: Vec<(String, u64)> = held
            .iter()
            .filter(|(server, _)| !desired.contains(*server))
            .map(|(server, revision)| (server.clone(), *revision))
            .collect();
        if !releasing.is_empty() {
            {
                let mut held = self.shared.held.write().expect("not poisoned");
                for (server, _) in &releasing {
                    held.remove(server);
                }
            }
            self.shared.changed();
            for (server, revision) in &releasing {
                let key = owner_key(server);
                let txn = Txn::new()
                    .when(Compare::create_revision(
                        key.as_bytes(),
                        CompareOp::Equal,
                        *revision,
                    ))
                    .delete(key.as_bytes());
                match self.etcd.txn(txn).await {
                    Ok(_) => {
                        self.shared.metrics.released.inc();
                        info!(cluster = %server, "released the cluster");
                    }
                    // Not ours any more, or etcd is away: the lease takes the key with it.
                    Err(error) => {
                        warn!(cluster = %server, %error, "releasing the cluster's key failed")
                    }
                }
            }
        }

        let mut pending = false;
        let mut taken = false;
        let mut taking: Vec<&String> = desired.iter().filter(|s| !held.contains_key(*s)).collect();
        taking.sort();
        for server in taking {
            let key = owner_key(server);
            let txn = Txn::new()
                .when(Compare::not_exists(key.as_bytes()))
                .put(key.as_bytes(), me.as_bytes().to_vec());
            match membership.lease().txn(txn).await {
                Ok(response) if response.succeeded => {
                    self.shared
                        .held
                        .write()
                        .expect("not poisoned")
                        .insert(server.clone(), response.revision);
                    self.shared.metrics.taken.inc();
                    taken = true;
                    info!(cluster = %server, revision = response.revision, "took the cluster");
                }
                Ok(_) => {
                    debug!(cluster = %server, "the cluster's key is still held by another member");
                    pending = true;
                }
                Err(error) => {
                    warn!(cluster = %server, %error, "taking the cluster's key failed");
                    pending = true;
                }
            }
        }
        if taken {
            self.shared.changed();
        }
        pending
    }
}

/// The ring's input as read from a store ([`read_cluster_loads`]).
#[derive(Debug, Clone)]
pub struct ClusterLoads {
    /// Every registered cluster (by server URL) with its weight.
    pub loads: Vec<ClusterLoad>,
    /// Cluster names → servers.
    pub names: HashMap<String, String>,
    /// The revision the Clusters were read at (watch from it to see changes).
    pub revision: capstan_store::Revision,
}

/// Reads the store's Clusters and Applications and weighs the clusters ([`cluster_loads`]):
/// what every member feeds the ring, and what an observer needs to compute the assignment
/// the members should converge to.
pub async fn read_cluster_loads(
    store: &Arc<dyn Store>,
) -> Result<ClusterLoads, capstan_store::StoreError> {
    let clusters = TypedStore::<Clusters>::new(store.clone())
        .list(None)
        .await?;
    let apps = TypedStore::<Applications>::new(store.clone())
        .list(None)
        .await?;
    let (loads, names) = cluster_loads(&clusters.items, &apps.items);
    Ok(ClusterLoads {
        loads,
        names,
        revision: clusters.revision,
    })
}

/// The ring's input from the store's Clusters and Applications: each registered cluster
/// (by server URL) weighed by its Applications and its watched objects (rounded down to a
/// power of two), and the cluster names → servers. What every member computes alike.
pub fn cluster_loads(
    clusters: &[Object<Clusters>],
    apps: &[Object<Applications>],
) -> (Vec<ClusterLoad>, HashMap<String, String>) {
    let mut names = HashMap::new();
    let mut objects: BTreeMap<String, u64> = BTreeMap::new();
    for cluster in clusters {
        let server = cluster.spec.value.spec.server.trim().to_owned();
        if server.is_empty() {
            continue;
        }
        names.insert(cluster.spec.value.display_name().to_owned(), server.clone());
        let watched = cluster
            .status
            .as_ref()
            .map(|s| u64::try_from(s.value.cache_info.resources_count).unwrap_or(0))
            .unwrap_or(0);
        objects.insert(server, round_down_to_power_of_two(watched));
    }
    let mut applications: HashMap<&str, u64> = HashMap::new();
    for app in apps {
        let destination = &app.spec.value.spec.destination;
        let server = if destination.server.is_empty() {
            names.get(&destination.name).map(String::as_str)
        } else {
            Some(destination.server.as_str())
        };
        if let Some(server) = server {
            *applications.entry(server).or_default() += 1;
        }
    }
    let loads = objects
        .iter()
        .map(|(server, watched)| {
            let apps = applications.get(server.as_str()).copied().unwrap_or(0);
            ClusterLoad::from_counts(server.clone(), apps, *watched)
        })
        .collect();
    (loads, names)
}

/// The ring of `members`, each with its published capacity: what every member assigns with.
pub fn ring_of(epsilon: Epsilon, members: &[MemberInfo]) -> Ring {
    let mut ring = Ring::new(epsilon);
    for member in members {
        ring.join_with_capacity(member.name.clone(), member.capacity);
    }
    ring
}

/// The next event of the cluster watch, or never without one.
async fn next_event(
    events: &mut Option<
        futures::stream::BoxStream<'static, capstan_store::Result<TypedEvent<Clusters>>>,
    >,
) -> Option<capstan_store::Result<TypedEvent<Clusters>>> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

fn round_down_to_power_of_two(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 << (63 - n.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_keys_encode_the_server_url() {
        assert_eq!(
            owner_key("https://10.0.0.1:6443/path?x"),
            "/capstan/shards/owners/https%3A%2F%2F10.0.0.1%3A6443%2Fpath%3Fx"
        );
        assert_ne!(owner_key("https://a/b"), owner_key("https://a%2Fb"));
    }

    #[test]
    fn weights_round_down_to_powers_of_two() {
        assert_eq!(round_down_to_power_of_two(0), 0);
        assert_eq!(round_down_to_power_of_two(1), 1);
        assert_eq!(round_down_to_power_of_two(1000), 512);
        assert_eq!(round_down_to_power_of_two(1024), 1024);
    }
}
