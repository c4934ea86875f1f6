//! `capstand all-in-one`: the whole control plane in one process — the embedded store, the
//! repo-server (in process, no gRPC hop), one controller member that owns the one cluster
//! it is given, registered as `in-cluster` (`https://kubernetes.default.svc`), the way Argo CD
//! names the cluster it runs in, and the API.
//!
//! Start reading at [`run`]: it reads the `--app` files first (so a typo fails before anything
//! starts), opens the store and upserts them, connects to the cluster, starts its cache,
//! builds the controller, starts the API (handing it the controller's reconciler, which
//! answers what runs in the clusters: managed resources, diffs, resource trees, events),
//! registers every component's metrics, waits for the cache to sync, and runs the controller
//! until SIGTERM or Ctrl-C, then drains.
//!
//! `--app` files put Applications (and projects, clusters, repositories) into the store at
//! start; the API and the CLI manage them afterwards. The user guide is `docs/all-in-one.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use capstan_api::live::LiveState;
use capstan_controller::clusters::{ClusterManager, ClusterTemplate};
use capstan_controller::ownership::OwnAll;
use capstan_controller::reconcile::{IN_CLUSTER_NAME, IN_CLUSTER_SERVER};
use capstan_controller::{Controller, Reconciler};
use capstan_engine::HealthAssessor;
use capstan_engine::cache::CacheMetrics;
use capstan_engine::cache::tracking::Tracking;
use capstan_engine::cluster::ClusterConnection;
use capstan_engine::sync::SyncMetrics;
use capstan_model::Object;
use capstan_repo::client::{ManifestSource, RepoClient};
use capstan_repo::render::helm::HelmTool;
use capstan_repo::render::kustomize::KustomizeTool;
use capstan_repo::service::{RepoServer, RepoServerConfig};
use capstan_store::kinds::{AppProjects, Applications, Clusters, Repositories};
use capstan_store::sealed::{CREDENTIAL_PREFIXES, SealedStore};
use capstan_store::typed::{ObjectRef, Resource, TypedStore};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Precondition, Store};
use serde_json::Value;
use tracing::{info, warn};

use crate::observe::{self, Readiness};
use crate::units::parse_duration;

pub const EXAMPLES: &str = "\
Examples:
  # Manage the cluster of your current kubectl context, with one Application
  capstand all-in-one --app guestbook.yaml

  # Another kubeconfig and context; data in /var/lib/capstan
  capstand all-in-one --kubeconfig ~/.kube/staging --context staging-admin \\
    --data-dir /var/lib/capstan --app apps/guestbook.yaml --app apps/monitoring.yaml

  # Argo CD's Application YAML works as it is (several documents per file are fine); the
  # destination is the cluster Capstan runs against:
  #   spec:
  #     destination:
  #       server: https://kubernetes.default.svc   # or: name: in-cluster
  #       namespace: guestbook

  # A second cluster (and a private repository) next to in-cluster: put them in a file
  #   apiVersion: capstan.dev/v1alpha1
  #   kind: Cluster
  #   metadata: {name: staging}
  #   spec:
  #     server: https://staging.example.com:6443
  #     config: {bearerToken: ..., tlsClientConfig: {caData: ...}}
  # and name it in Applications with `destination.name: staging`
  capstand all-in-one --app clusters.yaml --app apps.yaml

  # Render in a separate repo-server, and report when everything has settled
  capstand all-in-one --app apps.yaml --repo-server http://127.0.0.1:8081 \
    --summary-out settled.txt

  # Check on it
  curl -s localhost:8082/metrics | grep capstan_controller_workqueue

Exit status: 0 after a clean shutdown (SIGTERM or Ctrl-C), 1 when it cannot start (an
unreadable --app file, an unreachable cluster, a data directory in use by another process).";

/// The namespace Applications from `--app` files are stored in when they name none.
pub const DEFAULT_APP_NAMESPACE: &str = "capstan";

/// How long the first listing of the cluster may take before starting is given up.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings of `capstand all-in-one`; every flag also reads an environment variable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kubeconfig of the cluster to manage. Default: the first file of $KUBECONFIG,
    /// then ~/.kube/config, then the in-cluster service account when running in a Pod.
    #[arg(long, value_name = "PATH", env = "CAPSTAN_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use. Default: its current-context.
    #[arg(long, value_name = "NAME", env = "CAPSTAN_CONTEXT")]
    context: Option<String>,
    /// Where Capstan keeps its data: the store (`store.redb`, the system of record) and the
    /// repo-server's Git cache (`repo-server/`, disposable).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "capstan-data",
        env = "CAPSTAN_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Applications to create or update in the store at start (Capstan or Argo CD YAML;
    /// several documents per file), with AppProjects, Clusters (more clusters to deploy to,
    /// with their credentials) and Repositories (credentials for private Git and Helm
    /// repositories), each in its metadata.namespace or `capstan`. Repeat for more files.
    /// Objects already in the store and not named here are kept.
    #[arg(
        long = "app",
        value_name = "FILE",
        env = "CAPSTAN_APPS",
        value_delimiter = ','
    )]
    apps: Vec<PathBuf>,
    #[command(flatten)]
    reconcile: crate::controller::ReconcileArgs,
    /// How long a Git remote's branch and tag listing is reused before listing again: a new
    /// commit is noticed at the first refresh after this (no webhooks yet).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration, env = "CAPSTAN_REF_TTL")]
    ref_ttl: Duration,
    /// Watch only these namespaces (repeat or comma-separate), for credentials that may not
    /// list the whole cluster. Default: the whole cluster.
    #[arg(
        long = "namespace",
        value_name = "NS",
        env = "CAPSTAN_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8082",
        env = "CAPSTAN_METRICS_LISTEN"
    )]
    metrics_listen: SocketAddr,
    /// Address to serve the API on: REST (`/api/v1/...`, Argo CD's paths), gRPC, Git
    /// webhooks (`/api/webhook`) and `/healthz`, all on this one port.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "CAPSTAN_LISTEN"
    )]
    listen: SocketAddr,
    #[command(flatten)]
    api: crate::api::ApiArgs,
    #[command(flatten)]
    encryption: crate::sealing::EncryptionArgs,
    /// Render with this `capstand repo-server` (`http://HOST:PORT`) instead of in this
    /// process (then --helm, --kustomize and --ref-ttl are the repo-server's business).
    #[arg(long, value_name = "URL", env = "CAPSTAN_REPO_SERVER")]
    repo_server: Option<String>,
    /// How long one manifest request to --repo-server may take.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, requires = "repo_server", env = "CAPSTAN_REPO_SERVER_TIMEOUT")]
    repo_server_timeout: Duration,
    /// The helm binary.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "helm",
        env = "CAPSTAN_HELM"
    )]
    helm: PathBuf,
    /// The kustomize binary.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "kustomize",
        env = "CAPSTAN_KUSTOMIZE"
    )]
    kustomize: PathBuf,
    /// Extra options for every `kustomize build`, space-separated (Argo CD's
    /// `kustomize.buildOptions`), e.g. `--enable-helm`.
    #[arg(
        long,
        value_name = "OPTIONS",
        default_value = "",
        allow_hyphen_values = true,
        env = "CAPSTAN_KUSTOMIZE_BUILD_OPTIONS"
    )]
    kustomize_build_options: String,
    /// How long a shutdown waits for reconciles in progress; a sync cut short resumes at the
    /// next start.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, env = "CAPSTAN_SHUTDOWN_GRACE")]
    shutdown_grace: Duration,
    /// Once every Application is Synced and Healthy, or --summary-timeout after the start,
    /// write a table of the Applications' sync and health to this file; its first line
    /// starts with `settled:` or `not settled:` (for scripts; `scripts/up.sh` shows it).
    #[arg(long, value_name = "FILE")]
    summary_out: Option<PathBuf>,
    /// How long --summary-out waits for every Application to settle.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, requires = "summary_out")]
    summary_timeout: Duration,
}

/// Runs the all-in-one control plane until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    // Listen for signals from the start, so a SIGTERM during a slow start still shuts down
    // cleanly instead of killing the process with the store open.
    let shutdown = observe::Shutdown::on_signal();
    let stopped = || shutdown.wait();

    // Read every --app file before opening anything: a typo fails at once, naming the file.
    let mut objects = Vec::new();
    for path in &args.apps {
        objects.extend(read_app_file(path)?);
    }

    // Then the cluster: a wrong kubeconfig fails before a data directory is created.
    let (client, server_url) = connect(&args).await?;

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let store_path = args.data_dir.join("store.redb");
    let embedded = EmbeddedStore::open(&store_path, EmbeddedOptions::default())
        .await
        .with_context(|| {
            format!(
                "opening the store {} (is another capstand using this --data-dir?)",
                store_path.display()
            )
        })?;
    // Credentials are encrypted in the store file; everything above reads plaintext.
    let keyring = args.encryption.keyring(&args.data_dir)?;
    let store: Arc<dyn Store> = Arc::new(SealedStore::new(
        Arc::new(embedded.clone()),
        keyring,
        CREDENTIAL_PREFIXES,
    ));
    let applications = upsert(&store, objects).await?;

    let mut registry = prometheus_client::registry::Registry::default();
    // The repo-server and the cluster cache name their metrics in full (`capstan_repo_…`,
    // `capstan_cluster_cache_…`), as in their own processes; the rest is the controller's.
    let manifests: Arc<dyn ManifestSource> = match &args.repo_server {
        Some(url) => {
            let client = RepoClient::connect_lazy(url, args.repo_server_timeout)
                .map_err(|e| anyhow::anyhow!("--repo-server: {}", e.message))?;
            info!(repo_server = %url, "rendering with a remote repo-server");
            Arc::new(client)
        }
        None => {
            let repo_server = RepoServer::new(repo_server_config(&args, &args.data_dir)?)
                .await
                .map_err(|e| anyhow::anyhow!("starting the repo-server: {}", e.message))?;
            let _grpc_latency = capstan_repo::metrics::register(&mut registry, &repo_server);
            Arc::new(repo_server)
        }
    };
    let cache_metrics = CacheMetrics::register(&mut registry);
    let sync_metrics = SyncMetrics::default();

    // Every cluster — `in-cluster` and those registered in the store — is built alike.
    let template = ClusterTemplate {
        tracking: args.reconcile.tracking_method,
        assessor: Arc::new(HealthAssessor::builtin_only()),
        cache_metrics: Some(cache_metrics),
        sync_metrics: sync_metrics.clone(),
    };
    let cluster = Arc::new(
        template
            .start(
                client,
                IN_CLUSTER_NAME,
                IN_CLUSTER_SERVER,
                args.namespaces.clone(),
            )
            .await
            .with_context(|| format!("starting the cluster cache for {server_url}"))?,
    );
    let reconciler = Reconciler::new(
        store.clone(),
        manifests.clone(),
        vec![cluster.clone()],
        template.assessor.clone(),
        Tracking::new(args.reconcile.tracking_method),
        // One process, one member: it owns the one cluster, nothing to fence.
        Arc::new(OwnAll),
    );
    // Clusters registered in the store (`Cluster` objects) are connected next to `in-cluster`.
    let cluster_manager = ClusterManager::new(
        store.clone(),
        reconciler.clusters().clone(),
        template,
        Arc::new(OwnAll),
    );
    let controller = Controller::new(
        store.clone(),
        reconciler,
        args.reconcile.controller_config(),
    );
    // The API serves from here on (logging in, creating Applications) while the cluster is
    // still being listed; what runs in the clusters it asks the controller's reconciler
    // (which answers Unavailable until the cluster is listed).
    let live: Arc<dyn LiveState> = controller.reconciler().clone();
    let api = crate::api::start(
        &args.api,
        store.clone(),
        Some(manifests.clone()),
        Some(live),
        &crate::api::ApiFiles::in_data_dir(&args.data_dir),
        args.listen,
        registry.sub_registry_with_prefix("capstan_api"),
        stopped(),
    )
    .await?;

    let controller_registry = registry.sub_registry_with_prefix("capstan_controller");
    controller.register_metrics(controller_registry);
    // The sync runner is built here, so its counters are registered here too.
    sync_metrics.register(controller_registry);

    let ready = Readiness::default();
    let observe_task =
        observe::serve(args.metrics_listen, registry, ready.clone(), stopped()).await?;

    info!(cluster = %server_url, "listing the cluster");
    tokio::select! {
        synced = cluster.cache.wait_for_sync(CACHE_SYNC_TIMEOUT) => {
            synced.with_context(|| format!("listing the objects of {server_url}"))?;
        }
        () = stopped() => {
            info!("stopped before the cluster cache synced");
            cluster.cache.stop();
            api.stop(args.shutdown_grace).await;
            let _ = observe_task.await;
            close(embedded).await;
            return Ok(());
        }
    }

    let summary = args.summary_out.clone().map(|path| {
        tokio::spawn(crate::summary::report_when_settled(
            store.clone(),
            path,
            started,
            args.summary_timeout,
        ))
    });
    let cluster_task = tokio::spawn(cluster_manager.run());
    let controller_task = tokio::spawn(controller.run(stopped()));
    ready.set(true);
    info!(
        data_dir = %args.data_dir.display(),
        cluster = %server_url,
        registered_as = IN_CLUSTER_SERVER,
        applications,
        metrics = %args.metrics_listen,
        api = %api.address,
        "all-in-one ready"
    );

    let result =
        crate::controller::until_stopped(controller_task, stopped(), &ready, args.shutdown_grace)
            .await;
    cluster_task.abort();
    if let Some(summary) = summary {
        summary.abort();
    }
    cluster.cache.stop();
    api.stop(args.shutdown_grace).await;
    let _ = observe_task.await;
    close(embedded).await;
    if result.is_ok() {
        info!("all-in-one stopped");
    }
    result
}

async fn close(store: EmbeddedStore) {
    if let Err(e) = store.close().await {
        warn!(error = %e, "closing the store failed");
    }
}

/// The repo-server of this process: its Git cache under the data directory, tools as given.
fn repo_server_config(args: &Args, data_dir: &Path) -> anyhow::Result<RepoServerConfig> {
    let mut config = RepoServerConfig::new(data_dir.join("repo-server"));
    config.ref_ttl = args.ref_ttl;
    config.helm = HelmTool {
        program: args.helm.clone(),
    };
    config.kustomize = KustomizeTool {
        program: args.kustomize.clone(),
        helm: Some(args.helm.clone()),
        build_options: args
            .kustomize_build_options
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    };
    // Jsonnet runs in a child process (this binary again), so a hostile program can only
    // kill that child, not the control plane.
    config.jsonnet_child = Some(capstan_repo::render::jsonnet_child::JsonnetChild {
        program: std::env::current_exe().context("finding this executable for Jsonnet")?,
        args: vec!["jsonnet-eval".to_owned()],
    });
    Ok(config)
}

/// Reads one `--app` file: every document must be an Application or an AppProject that
/// passes validation. Errors name the file.
fn read_app_file(path: &Path) -> anyhow::Result<Vec<Object>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --app file {}", path.display()))?;
    let objects = capstan_model::parse_objects_yaml(&text)
        .map_err(|e| anyhow::anyhow!("--app file {}: {e}", path.display()))?;
    if objects.is_empty() {
        bail!("--app file {}: holds no objects", path.display());
    }
    for (i, object) in objects.iter().enumerate() {
        let which = || {
            let name = object.name();
            if objects.len() == 1 {
                format!("{} {name:?}", object.kind().as_str())
            } else {
                format!("document {}, {} {name:?}", i + 1, object.kind().as_str())
            }
        };
        object
            .validate()
            .map_err(|e| anyhow::anyhow!("--app file {}: {}: {e}", path.display(), which()))?;
    }
    Ok(objects)
}

/// Creates or updates the objects read from `--app` files; returns how many Applications the
/// store holds afterwards.
async fn upsert(store: &Arc<dyn Store>, objects: Vec<Object>) -> anyhow::Result<usize> {
    let apps = TypedStore::<Applications>::new(store.clone());
    let projects = TypedStore::<AppProjects>::new(store.clone());
    let clusters = TypedStore::<Clusters>::new(store.clone());
    let repositories = TypedStore::<Repositories>::new(store.clone());
    for object in objects {
        match object {
            Object::Application(mut app) => {
                let at = place(&mut app.metadata);
                // Status is the controller's: the store keeps it under its own key.
                app.status = None;
                put(&apps, &at, &app).await?;
            }
            Object::AppProject(mut project) => {
                let at = place(&mut project.metadata);
                project.status = None;
                put(&projects, &at, &project).await?;
            }
            Object::Cluster(mut cluster) => {
                let at = place(&mut cluster.metadata);
                cluster.status = None;
                put(&clusters, &at, &cluster).await?;
            }
            Object::Repository(mut repository) => {
                let at = place(&mut repository.metadata);
                repository.status = None;
                put(&repositories, &at, &repository).await?;
            }
        }
    }
    Ok(apps.list(None).await?.items.len())
}

/// Argo CD's control-plane namespace: objects written for Argo CD name it, meaning "the
/// control plane's namespace", which is `capstan` here.
const ARGOCD_NAMESPACE: &str = "argocd";

/// Where an object from a file is stored: its namespace, or the default one (also for
/// objects written for Argo CD's `argocd` namespace).
fn place(metadata: &mut capstan_model::ObjectMeta) -> ObjectRef {
    if metadata.namespace.is_empty() || metadata.namespace == ARGOCD_NAMESPACE {
        metadata.namespace = DEFAULT_APP_NAMESPACE.to_owned();
    }
    ObjectRef::new(metadata.namespace.clone(), metadata.name.clone())
}

async fn put<R>(typed: &TypedStore<R>, at: &ObjectRef, spec: &R::Spec) -> anyhow::Result<()>
where
    R: Resource,
    R::Spec: PartialEq,
{
    let kind = R::KIND;
    match typed.get(at).await? {
        // Unchanged: no write, so a restart with the same files causes no refresh storm.
        Some(existing) if existing.spec.value == *spec => {
            info!(kind, object = %at, "unchanged");
        }
        Some(_) => {
            typed.update_spec(at, spec, Precondition::None).await?;
            info!(kind, object = %at, "updated from --app file");
        }
        None => {
            typed.create(at, spec).await?;
            info!(kind, object = %at, "created from --app file");
        }
    }
    Ok(())
}

/// Finds the kubeconfig to use (see [`Args::kubeconfig`]), or `None` for in-cluster config.
fn kubeconfig_path(args: &Args) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = &args.kubeconfig {
        return Ok(Some(path.clone()));
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        // kubectl merges every file of the list; the first existing one holds the context
        // users mean in practice, and --kubeconfig names another.
        let first = std::env::split_paths(&list).find(|p| p.is_file());
        if let Some(path) = first {
            return Ok(Some(path));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = PathBuf::from(home).join(".kube").join("config");
        if path.is_file() {
            return Ok(Some(path));
        }
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Ok(None);
    }
    bail!(
        "no kubeconfig found ($KUBECONFIG is unset or names no file, ~/.kube/config does not exist, and this is not a Pod): pass --kubeconfig PATH"
    )
}

/// A checked client for the cluster, and its API server URL.
async fn connect(args: &Args) -> anyhow::Result<(kube::Client, String)> {
    let (client, server) = match kubeconfig_path(args)? {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let text = absolutize_kubeconfig_paths(&text, path.parent().unwrap_or(Path::new(".")))
                .with_context(|| format!("kubeconfig {}", path.display()))?;
            let connection = ClusterConnection::from_kubeconfig(&text, args.context.as_deref())
                .with_context(|| format!("kubeconfig {}", path.display()))?;
            let client = connection
                .client()
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?;
            info!(kubeconfig = %path.display(), context = args.context.as_deref().unwrap_or("(current)"), "using kubeconfig");
            (client, connection.server)
        }
        None => {
            let config = kube::Config::incluster()
                .context("reading the in-cluster service account configuration")?;
            let server = config.cluster_url.to_string();
            let client = kube::Client::try_from(config)
                .context("building a client from the in-cluster configuration")?;
            info!("using the in-cluster service account");
            (client, server)
        }
    };
    // Fail here, with the server named, rather than in the cache with a vaguer error.
    let who = capstan_engine::cluster::check(&client, &server)
        .await
        .context("checking the connection (are the cluster and its credentials right?)")?;
    info!(cluster = %server, version = %who.server_version, user = %who.user, "connected");
    Ok((client, server))
}

/// Rewrites the relative file paths of a kubeconfig (CA, client certificate and key, token
/// file, exec command with a `/`) to be relative to the kubeconfig's directory, as kubectl
/// reads them, whatever directory capstand was started in. Returns the kubeconfig as JSON,
/// which is YAML too.
fn absolutize_kubeconfig_paths(yaml: &str, dir: &Path) -> anyhow::Result<String> {
    let mut doc: Value =
        serde_saphyr::from_str(yaml).map_err(|e| anyhow::anyhow!("not valid YAML: {e}"))?;
    let fix = |entry: &mut Value, fields: &[&str], only_with_slash: bool| {
        for field in fields {
            let Some(Value::String(path)) = entry.get_mut(*field) else {
                continue;
            };
            let relative = Path::new(path.as_str()).is_relative();
            if relative && !path.is_empty() && (!only_with_slash || path.contains('/')) {
                *path = dir.join(path.as_str()).display().to_string();
            }
        }
    };
    let mut each = |list: &str, inner: &str, f: &mut dyn FnMut(&mut Value)| {
        if let Some(Value::Array(items)) = doc.get_mut(list) {
            for item in items {
                if let Some(entry) = item.get_mut(inner) {
                    f(entry);
                }
            }
        }
    };
    each("clusters", "cluster", &mut |c| {
        fix(c, &["certificate-authority"], false);
    });
    each("users", "user", &mut |u| {
        fix(u, &["client-certificate", "client-key", "tokenFile"], false);
        if let Some(exec) = u.get_mut("exec") {
            // A bare command name is looked up in PATH, as kubectl does.
            fix(exec, &["command"], true);
        }
    });
    Ok(serde_json::to_string(&doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_kubeconfig_paths_are_read_from_the_kubeconfig_directory() {
        let yaml = "\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: 'https://10.0.0.1:6443', certificate-authority: ca.crt}
users:
- name: u
  user:
    client-certificate: /abs/client.crt
    client-key: keys/client.key
    exec: {command: ./bin/get-token, apiVersion: client.authentication.k8s.io/v1}
- name: v
  user:
    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}
contexts:
- {name: c, context: {cluster: c, user: u}}
current-context: c
";
        let out = absolutize_kubeconfig_paths(yaml, Path::new("/etc/capstan/kube"))
            .expect("valid kubeconfig");
        let doc: Value = serde_json::from_str(&out).expect("JSON out");
        assert_eq!(
            doc["clusters"][0]["cluster"]["certificate-authority"],
            "/etc/capstan/kube/ca.crt"
        );
        let user = &doc["users"][0]["user"];
        assert_eq!(user["client-certificate"], "/abs/client.crt");
        assert_eq!(user["client-key"], "/etc/capstan/kube/keys/client.key");
        assert_eq!(user["exec"]["command"], "/etc/capstan/kube/./bin/get-token");
        assert_eq!(doc["users"][1]["user"]["exec"]["command"], "aws");
        assert_eq!(doc["current-context"], "c");
    }

    #[test]
    fn app_files_accept_every_kind_and_name_the_file_on_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("apps.yaml");
        std::fs::write(
            &good,
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: team\nspec:\n  sourceRepos: ['*']\n---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: web\nspec:\n  project: team\n  source:\n    repoURL: https://example.invalid/r.git\n    path: app\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: web\n",
        )
        .expect("write");
        assert_eq!(read_app_file(&good).expect("valid").len(), 2);

        let bad = dir.path().join("broken.yaml");
        std::fs::write(&bad, "kind: Application\nmetadata: [unclosed\n").expect("write");
        let err = format!("{:#}", read_app_file(&bad).expect_err("malformed"));
        assert!(err.contains("broken.yaml"), "{err}");

        // Clusters and repositories too (their credentials go to the store).
        let secrets = dir.path().join("secrets.yaml");
        std::fs::write(
            &secrets,
            "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: staging\nspec:\n  server: https://staging.example.com:6443\n  config:\n    bearerToken: t0k\n---\napiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata:\n  name: private\nspec:\n  url: https://git.example.com/private.git\n  username: me\n  password: pw\n",
        )
        .expect("write");
        let kinds: Vec<&str> = read_app_file(&secrets)
            .expect("valid")
            .iter()
            .map(|o| o.kind().as_str())
            .collect();
        assert_eq!(kinds, ["Cluster", "Repository"]);

        let invalid = dir.path().join("cluster.yaml");
        std::fs::write(
            &invalid,
            "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  server: not a url\n",
        )
        .expect("write");
        let err = format!("{:#}", read_app_file(&invalid).expect_err("invalid server"));
        assert!(
            err.contains("cluster.yaml") && err.contains("\"c\""),
            "{err}"
        );
    }
}
