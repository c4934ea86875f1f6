//! A control plane assembled in process for the controller's tests: embedded store,
//! in-process repo-server, a cluster cache and sync runner on a real kube-apiserver, and a
//! running controller that can be stopped and started again on the same store.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use capstan_controller::clusters::{ClusterManager, ClusterTemplate};
use capstan_controller::ownership::OwnAll;
use capstan_controller::queue::{QueueConfig, Resync};
use capstan_controller::reconcile::{IN_CLUSTER_SERVER, ReconcileError};
use capstan_controller::{Controller, ControllerConfig, Reconciler};
use capstan_engine::HealthAssessor;
use capstan_engine::cache::tracking::{Tracking, TrackingMethod};
use capstan_repo::service::{RepoServer, RepoServerConfig};
use capstan_store::kinds::Applications;
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// A ConfigMap manifest as YAML.
pub fn cm(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: {value}\n")
}

/// A sync that waits: in `dir`, wave 0 is a Deployment `db` that never becomes healthy on
/// its own (the test apiserver runs no controllers; see
/// `capstan_testkit::workloads::mark_deployment_available`) and wave 1 a ConfigMap `after`
/// (`k: v1`) that waits for it.
pub fn blocked_waves(dir: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("{dir}/db.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: db\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: db\n        image: example.invalid/db:1\n".to_owned(),
        ),
        (
            format!("{dir}/after.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after\n  annotations:\n    argocd.argoproj.io/sync-wave: \"1\"\ndata:\n  k: v1\n".to_owned(),
        ),
    ]
}

/// The `k` value of a ConfigMap that exists and is not being deleted.
pub async fn value_of(api: &Api<ConfigMap>, name: &str) -> Result<Option<String>> {
    Ok(api
        .get_opt(name)
        .await?
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .and_then(|c| c.data.and_then(|d| d.get("k").cloned())))
}

/// Opens the embedded store in `dir`.
pub async fn open_store(dir: &std::path::Path) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(
        EmbeddedStore::open(dir.join("store.redb"), EmbeddedOptions::default()).await?,
    ))
}

/// A running controller; [`Running::stop`] shuts it down and waits.
pub struct Running {
    pub queue: capstan_controller::queue::WorkQueue<ObjectRef>,
    registry: prometheus_client::registry::Registry,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ReconcileError>>,
    clusters: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The controller's metrics in Prometheus text format.
    pub fn metrics_text(&self) -> Result<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task).await???;
        self.clusters.abort();
        Ok(())
    }
}

/// Starts a controller over `store` reconciling into the cluster behind `client`, watching
/// namespace `ns`, with `workers` status workers and as many operation workers; the
/// repo-server works in `work`.
pub async fn start(
    store: Arc<dyn Store>,
    client: kube::Client,
    ns: &str,
    work: &std::path::Path,
    workers: usize,
) -> Result<Running> {
    let mut repo_config = RepoServerConfig::new(work.join("repo"));
    repo_config.ref_ttl = Duration::ZERO;
    repo_config.helm = capstan_repo::render::helm::HelmTool {
        program: capstan_testkit::tools::helm()?,
    };
    let repo_server = RepoServer::new(repo_config)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    // Every cluster is built from one template, as the all-in-one does.
    let template = ClusterTemplate {
        tracking: TrackingMethod::Annotation,
        assessor: Arc::new(HealthAssessor::builtin_only()),
        cache_metrics: None,
        sync_metrics: capstan_engine::sync::SyncMetrics::default(),
    };
    let cluster = template
        .start(client, "in-cluster", IN_CLUSTER_SERVER, vec![ns.to_owned()])
        .await?;
    cluster.cache.wait_for_sync(DEADLINE).await?;
    let reconciler = Reconciler::new(
        store.clone(),
        repo_server,
        vec![Arc::new(cluster)],
        template.assessor.clone(),
        Tracking::new(TrackingMethod::Annotation),
        Arc::new(OwnAll),
    )
    .with_poll(Duration::from_millis(100));
    // Clusters registered in the store, as the all-in-one connects them.
    let manager = ClusterManager::new(
        store.clone(),
        reconciler.clusters().clone(),
        template,
        Arc::new(OwnAll),
    )
    .with_retry(Duration::from_secs(1));
    let controller = Controller::new(
        store,
        reconciler,
        ControllerConfig {
            workers,
            operation_workers: workers,
            queue: QueueConfig {
                resync: Some(Resync {
                    base: Duration::from_secs(30),
                    jitter: 0.1,
                }),
                ..QueueConfig::default()
            },
        },
    );
    let queue = controller.queue().clone();
    let mut registry = prometheus_client::registry::Registry::with_prefix("capstan_controller");
    controller.register_metrics(&mut registry);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));
    let clusters = tokio::spawn(manager.run());
    Ok(Running {
        queue,
        registry,
        stop,
        task,
        clusters,
    })
}

/// One test's surroundings: a namespace on the shared apiserver, a Git repository served
/// over smart HTTP (empty until the test writes to it), and an embedded store in a temporary
/// directory; [`World::start`] runs a controller over them.
pub struct World {
    pub client: kube::Client,
    pub ns: String,
    pub repo: GitRepo,
    pub url: String,
    pub store: Arc<dyn Store>,
    pub apps: TypedStore<Applications>,
    pub config_maps: Api<ConfigMap>,
    git: Option<GitHttpServer>,
    dir: tempfile::TempDir,
}

impl World {
    /// A world in a new namespace named after `prefix`, its Git server with `git` options.
    pub async fn new(prefix: &str, git: GitHttpOptions) -> Result<Self> {
        let server = capstan_testkit::shared::apiserver().await?;
        let client = server.client().await?;
        let ns = server.test_namespace(prefix).await?;
        let repo = GitRepo::init()?;
        let git = GitHttpServer::start_temp(git)?;
        let url = git.url_for(&repo)?;
        let dir = tempfile::tempdir()?;
        let store = open_store(dir.path()).await?;
        Ok(Self {
            apps: TypedStore::new(store.clone()),
            config_maps: Api::namespaced(client.clone(), &ns),
            client,
            ns,
            repo,
            url,
            store,
            git: Some(git),
            dir,
        })
    }

    /// Creates Application `name` (in namespace `capstan`) for `path` of the world's
    /// repository into the world's namespace, with `extra` spec lines; returns where it is.
    pub async fn create_app(&self, name: &str, path: &str, extra: &str) -> Result<ObjectRef> {
        let at = ObjectRef::new("capstan", name);
        self.apps
            .create(&at, &application(name, &self.url, path, &self.ns, extra)?)
            .await?;
        Ok(at)
    }

    /// Waits until the Application at `at` has an operation in `phase`; returns its status.
    pub async fn wait_for_phase(
        &self,
        at: &ObjectRef,
        phase: capstan_model::OperationPhase,
    ) -> Result<capstan_model::ApplicationStatus> {
        capstan_testkit::wait_until(&format!("{at}'s operation {phase:?}"), DEADLINE, || async {
            let status = self.apps.get(at).await?.and_then(|o| o.status);
            Ok(status.map(|s| s.value).filter(|s| {
                s.operation_state
                    .as_ref()
                    .is_some_and(|o| o.phase == Some(phase))
            }))
        })
        .await
    }

    /// Stops the Git server: the repository's URL refuses connections from now on.
    pub fn stop_git(&mut self) {
        self.git = None;
    }

    /// Starts a controller over the world (again after a stop: same store and work dir).
    pub async fn start(&self) -> Result<Running> {
        self.start_with_workers(2).await
    }

    /// [`World::start`] with `workers` status and operation workers.
    pub async fn start_with_workers(&self, workers: usize) -> Result<Running> {
        start(
            self.store.clone(),
            self.client.clone(),
            &self.ns,
            self.dir.path(),
            workers,
        )
        .await
    }
}

/// An Application in Argo CD's YAML for `url`/`path` into `ns`, with extra spec lines.
pub fn application(
    name: &str,
    url: &str,
    path: &str,
    ns: &str,
    extra: &str,
) -> Result<capstan_model::Application> {
    Ok(capstan_model::parse_application_yaml(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: capstan\nspec:\n  project: default\n  source:\n    repoURL: {url}\n    path: {path}\n    targetRevision: HEAD\n  destination:\n    server: {IN_CLUSTER_SERVER}\n    namespace: {ns}\n{extra}"
    ))?)
}
