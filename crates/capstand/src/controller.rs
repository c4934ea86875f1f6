//! `capstand controller`: one member of a sharded application controller over the shared
//! etcd store.
//!
//! Any number of members run side by side. Each joins the membership under an etcd lease,
//! and the members split the registered clusters between them by consistent hashing with
//! bounded loads (`capstan_controller::sharding`): a member connects, watches and reconciles
//! only the clusters it holds the ownership key of, and every status and operation write it
//! makes is fenced on that key. Manifests come from the `capstand repo-server` pool — the
//! `--repo-server` addresses given, or else every repo-server registered in etcd — routed by
//! repository URL, failing over to the next repo-server. Start reading at [`run`]; the
//! operator's guide is `docs/operations.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use capstan_controller::clusters::{ClusterManager, ClusterTemplate};
use capstan_controller::ownership::Ownership;
use capstan_controller::queue::{QueueConfig, Resync};
use capstan_controller::sharding::{Epsilon, MemberInfo, ShardConfig, Sharding};
use capstan_controller::{Controller, ControllerConfig, Reconciler};
use capstan_engine::HealthAssessor;
use capstan_engine::cache::CacheMetrics;
use capstan_engine::cache::tracking::{Tracking, TrackingMethod};
use capstan_engine::sync::SyncMetrics;
use capstan_repo::pool::RepoPool;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::observe::{self, Readiness};
use crate::units::parse_duration;

pub const EXAMPLES: &str = "\
Examples:
  # Three members (one per node or pod), sharing etcd and the repo-servers registered there
  capstand controller --name controller-0 --etcd-endpoints http://etcd:2379 \\
    --encryption-key-file encryption.key
  capstand controller --name controller-1 --etcd-endpoints http://etcd:2379 \\
    --encryption-key-file encryption.key

  # Fixed repo-servers instead of those registered in etcd; a bigger member
  capstand controller --name big-0 --capacity 2 --etcd-endpoints http://etcd:2379 \\
    --encryption-key-file encryption.key \\
    --repo-server http://repo-0:8081 --repo-server http://repo-1:8081

  # Which member owns which cluster
  curl -s localhost:8085/metrics | grep capstan_controller_shard_owned_clusters

Clusters are the `Cluster` objects in the store (`capstan cluster add`); every member must be
able to reach every cluster. Exit status: 0 after a clean shutdown (SIGTERM or Ctrl-C: the
member drains, then leaves, and its clusters move at once), 1 when it cannot start.";

/// How the controller loop runs; shared by `capstand controller` and `capstand all-in-one`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Concurrent reconciles (Argo CD's `--status-processors`).
    #[arg(long, value_name = "N", default_value_t = 4, env = "CAPSTAN_WORKERS")]
    workers: usize,
    /// Concurrent sync operations (Argo CD's `--operation-processors`): a reconcile that
    /// syncs hands its worker back while the sync runs, so syncs waiting for rollouts do not
    /// hold up the comparison of other Applications.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4,
        env = "CAPSTAN_OPERATION_WORKERS"
    )]
    operation_workers: usize,
    /// How often each Application is compared with Git and the cluster when nothing
    /// announced a change (± 10 % jitter); 0 turns periodic refreshes off.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration, env = "CAPSTAN_RESYNC")]
    resync: Duration,
    /// How deployed objects are tied to their Application: annotation (Capstan's
    /// annotation), argo-annotation (Argo CD's, to take over apps Argo CD deployed), label,
    /// annotation+label, argo-annotation+label.
    #[arg(long, value_name = "METHOD", default_value = "annotation", value_parser = parse_tracking, env = "CAPSTAN_TRACKING_METHOD")]
    pub tracking_method: TrackingMethod,
}

impl ReconcileArgs {
    /// The controller's configuration from these flags.
    pub fn controller_config(&self) -> ControllerConfig {
        ControllerConfig {
            workers: self.workers.max(1),
            operation_workers: self.operation_workers.max(1),
            queue: QueueConfig {
                resync: (!self.resync.is_zero()).then_some(Resync {
                    base: self.resync,
                    jitter: 0.1,
                }),
                ..QueueConfig::default()
            },
        }
    }
}

fn parse_tracking(text: &str) -> Result<TrackingMethod, String> {
    text.parse().map_err(|_| {
        let known: Vec<&str> = TrackingMethod::ALL.iter().map(|m| m.as_str()).collect();
        format!(
            "unknown tracking method {text:?}; use one of {}",
            known.join(", ")
        )
    })
}

/// Flags of `capstand controller`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// This member's name, unique among the live members (a StatefulSet pod name is ideal:
    /// `$(POD_NAME)`). A restarted member with the same name may have to wait up to
    /// --lease-ttl for its previous lease to expire. Letters, digits, `.`, `_`, `-`.
    #[arg(long, value_name = "NAME", env = "CAPSTAN_CONTROLLER_NAME")]
    name: String,
    #[command(flatten)]
    etcd: crate::etcd::EtcdArgs,
    #[command(flatten)]
    encryption: crate::sealing::EncryptionArgs,
    /// How long the membership lease outlives this member's last keep-alive: a member killed
    /// without leaving has its clusters taken over after at most this (plus a moment).
    /// Shorter takes over faster, and also drops a member that is paused or cut off from
    /// etcd for that long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, env = "CAPSTAN_LEASE_TTL")]
    lease_ttl: Duration,
    /// How much this member carries relative to the others: a member of capacity 2 gets about
    /// twice the load of one of capacity 1 (its share of the weight and of the bound).
    #[arg(long, value_name = "N", default_value_t = 1, env = "CAPSTAN_CAPACITY")]
    capacity: u32,
    /// The load slack ε of the assignment: no member carries more than (1 + ε) × the average
    /// load, unless one cluster alone weighs more. Smaller balances better and moves more
    /// clusters when members come and go. Every member must use the same.
    #[arg(long, value_name = "EPSILON", default_value_t = Epsilon::default(), env = "CAPSTAN_LOAD_SLACK")]
    load_slack: Epsilon,
    /// How often cluster weights (their Applications and watched objects) are read again.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, env = "CAPSTAN_REBALANCE_INTERVAL")]
    rebalance_interval: Duration,
    /// Repo-servers to render with (`http://HOST:PORT`; repeat or comma-separate). Default:
    /// every `capstand repo-server` registered in etcd, followed as they come and go.
    #[arg(
        long = "repo-server",
        value_name = "URL",
        value_delimiter = ',',
        env = "CAPSTAN_REPO_SERVERS"
    )]
    repo_servers: Vec<String>,
    /// How long one manifest request to a repo-server may take.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, env = "CAPSTAN_REPO_SERVER_TIMEOUT")]
    repo_server_timeout: Duration,
    #[command(flatten)]
    reconcile: ReconcileArgs,
    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8085",
        env = "CAPSTAN_METRICS_LISTEN"
    )]
    metrics_listen: SocketAddr,
    /// Address to answer the API tier's live-state questions on (managed resources and
    /// diffs, resource trees, events of the Applications of the clusters this member owns).
    /// Internal: reachable by `capstand api`, not by users.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8086",
        env = "CAPSTAN_LIVE_LISTEN"
    )]
    live_listen: SocketAddr,
    /// The address `capstand api` reaches --live-listen at (`http://HOST:PORT`), published
    /// in this member's membership record. Default: `http://` + --live-listen, which must
    /// then not be a wildcard address.
    #[arg(long, value_name = "URL", env = "CAPSTAN_ADVERTISE_LIVE")]
    advertise_live: Option<String>,
    /// How long a shutdown waits for reconciles in progress before leaving; a sync cut short
    /// is resumed by the cluster's next owner.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, env = "CAPSTAN_SHUTDOWN_GRACE")]
    shutdown_grace: Duration,
}

/// Runs one controller member until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = observe::Shutdown::on_signal();
    let stopped = || shutdown.wait();

    let keyring = args.encryption.required_keyring()?;
    let etcd = args.etcd.connect().await?;
    let live_tokens = keyring.derive_all(capstan_api::remote_live::TOKEN_PURPOSE);
    let store = crate::etcd::sealed(&etcd, keyring);

    let mut registry = prometheus_client::registry::Registry::default();
    let repo_servers = if args.repo_servers.is_empty() {
        info!("rendering with the repo-servers registered in etcd");
        crate::discovery::follow(etcd.clone(), crate::discovery::REPO_SERVERS)
    } else {
        watch::channel(args.repo_servers.clone()).1
    };
    let pool = Arc::new(RepoPool::new(repo_servers, args.repo_server_timeout));
    pool.register(&mut registry);

    let live_url = crate::discovery::advertised(
        args.advertise_live.as_deref(),
        args.live_listen,
        "--advertise-live",
    )?;
    let live_listener = tokio::net::TcpListener::bind(args.live_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for live-state questions",
                args.live_listen
            )
        })?;
    let sharding = Sharding::start(
        etcd.clone(),
        store.clone(),
        ShardConfig {
            member: MemberInfo::new(args.name.clone())
                .with_capacity(args.capacity)
                .with_live_url(live_url.clone()),
            ttl: args.lease_ttl,
            epsilon: args.load_slack,
            rebalance: args.rebalance_interval,
        },
    )
    .await
    .with_context(|| format!("joining the controller membership as {:?}", args.name))?;
    let ownership: Arc<dyn Ownership> = Arc::new(sharding.ownership());

    let cache_metrics = CacheMetrics::register(&mut registry);
    let sync_metrics = SyncMetrics::default();
    let template = ClusterTemplate {
        tracking: args.reconcile.tracking_method,
        assessor: Arc::new(HealthAssessor::builtin_only()),
        cache_metrics: Some(cache_metrics),
        sync_metrics: sync_metrics.clone(),
    };
    let reconciler = Reconciler::new(
        store.clone(),
        pool,
        Vec::new(),
        template.assessor.clone(),
        Tracking::new(args.reconcile.tracking_method),
        ownership.clone(),
    );
    let cluster_manager = ClusterManager::new(
        store.clone(),
        reconciler.clusters().clone(),
        template,
        ownership,
    );
    let clusters = reconciler.clusters().clone();
    let controller = Controller::new(store, reconciler, args.reconcile.controller_config());
    let controller_registry = registry.sub_registry_with_prefix("capstan_controller");
    controller.register_metrics(controller_registry);
    sync_metrics.register(controller_registry);
    sharding.metrics().register(controller_registry);

    let live: Arc<dyn capstan_api::live::LiveState> = controller.reconciler().clone();
    let live_task = tokio::spawn(
        axum::serve(
            live_listener,
            capstan_api::remote_live::router(live, live_tokens),
        )
        .with_graceful_shutdown(stopped())
        .into_future(),
    );
    let ready = Readiness::default();
    let observe_task =
        observe::serve(args.metrics_listen, registry, ready.clone(), stopped()).await?;
    let cluster_task = tokio::spawn(cluster_manager.run());
    let controller_task = tokio::spawn(controller.run(stopped()));
    ready.set(true);
    info!(
        member = %args.name,
        etcd = %args.etcd.etcd_endpoints.join(","),
        lease_ttl = ?args.lease_ttl,
        metrics = %args.metrics_listen,
        live = %live_url,
        "controller member ready"
    );

    let result = until_stopped(controller_task, stopped(), &ready, args.shutdown_grace).await;
    cluster_task.abort();
    live_task.abort();
    // Leave before the caches stop: the next owners can start while this one tidies up.
    sharding.leave().await;
    for cluster in clusters.all() {
        cluster.cache.stop();
    }
    let _ = observe_task.await;
    if result.is_ok() {
        info!("controller member stopped");
    }
    result
}

/// Runs the controller until it ends by itself (it only does when it cannot start: the store
/// failed) or `stopped` completes; then drains it for at most `grace`. Not ready from then on.
pub(crate) async fn until_stopped(
    mut controller_task: tokio::task::JoinHandle<
        Result<(), capstan_controller::reconcile::ReconcileError>,
    >,
    stopped: impl std::future::Future<Output = ()>,
    ready: &Readiness,
    grace: Duration,
) -> anyhow::Result<()> {
    tokio::select! {
        finished = &mut controller_task => {
            ready.set(false);
            finished
                .context("the controller task failed")?
                .context("the controller failed")
        }
        () = stopped => {
            info!(grace = ?grace, "shutting down: finishing reconciles in progress");
            ready.set(false);
            drain(controller_task, grace).await
        }
    }
}

/// Waits for the controller to drain, at most `grace`.
async fn drain(
    mut controller_task: tokio::task::JoinHandle<
        Result<(), capstan_controller::reconcile::ReconcileError>,
    >,
    grace: Duration,
) -> anyhow::Result<()> {
    match tokio::time::timeout(grace, &mut controller_task).await {
        Ok(joined) => joined
            .context("the controller task failed")?
            .context("the controller failed"),
        Err(_) => {
            // Operations are saved step by step, so the next start resumes what is cut.
            warn!(grace = ?grace, "reconciles still running after the grace period; stopping them");
            controller_task.abort();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_methods_parse_and_unknown_ones_list_the_choices() {
        assert_eq!(
            parse_tracking("annotation+label"),
            Ok(TrackingMethod::AnnotationAndLabel)
        );
        let err = parse_tracking("labels").expect_err("unknown");
        assert!(err.contains("argo-annotation"), "{err}");
    }
}
