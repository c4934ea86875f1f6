//! `capstand repo-server`: the repo-server component, serving `capstan.repo.v1.RepoService`
//! over gRPC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use capstan_repo::render::helm::HelmTool;
use capstan_repo::render::kustomize::KustomizeTool;
use capstan_repo::render::process::ToolLimits;
use capstan_repo::service::{RepoServer, RepoServerConfig};
use capstan_repo::shared_cache::SharedCacheConfig;
use capstan_repo::tree::TreeLimits;

use crate::observe::{self, Readiness};
use crate::units::{parse_bytes, parse_duration};

pub const EXAMPLES: &str = "\
Examples:
  # A repo-server for local development (tools from PATH, cache in the temp directory)
  capstand repo-server

  # Production-like: shared Redis Cluster cache, a larger Git cache, Helm inside Kustomize
  capstand repo-server --listen 0.0.0.0:8081 --metrics-listen 0.0.0.0:8084 \\
    --work-dir /var/lib/capstan/repo-server --git-cache-size 50GiB \\
    --redis redis://redis-0:6379,redis://redis-1:6379,redis://redis-2:6379 \\
    --kustomize-build-options=--enable-helm

  # One of a pool: registered in etcd, where `capstand controller` members find it
  capstand repo-server --listen 0.0.0.0:8081 --advertise http://10.0.3.7:8081 \\
    --etcd-endpoints http://etcd:2379 --redis redis://redis-0:6379,redis://redis-1:6379

Exit status: 0 after a clean shutdown (SIGTERM or Ctrl-C), 1 when it cannot start.";

/// Settings of `capstand repo-server`; every flag also reads an environment variable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve gRPC on.
    #[arg(
        long,
        default_value = "127.0.0.1:8081",
        env = "CAPSTAN_REPO_SERVER_LISTEN"
    )]
    listen: SocketAddr,
    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(
        long,
        default_value = "127.0.0.1:8084",
        env = "CAPSTAN_REPO_SERVER_METRICS_LISTEN"
    )]
    metrics_listen: SocketAddr,
    /// Working directory: Git cache, checkouts and tool home (disposable; survives restarts
    /// as a warm cache). Default: `capstan-repo-server` in the system temp directory.
    #[arg(long, env = "CAPSTAN_REPO_SERVER_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// The helm binary.
    #[arg(long, default_value = "helm", env = "CAPSTAN_HELM")]
    helm: PathBuf,
    /// The kustomize binary.
    #[arg(long, default_value = "kustomize", env = "CAPSTAN_KUSTOMIZE")]
    kustomize: PathBuf,
    /// Extra options for every `kustomize build`, space-separated (Argo CD's
    /// `kustomize.buildOptions`), e.g. `--enable-helm`.
    #[arg(
        long,
        default_value = "",
        allow_hyphen_values = true,
        env = "CAPSTAN_KUSTOMIZE_BUILD_OPTIONS"
    )]
    kustomize_build_options: String,
    /// Byte budget of the Git cache; least recently used repositories are evicted beyond it.
    #[arg(long, default_value = "20GiB", value_parser = parse_bytes, env = "CAPSTAN_GIT_CACHE_SIZE")]
    git_cache_size: u64,
    /// Most bytes one Git fetch may receive; a larger repository fails with a clear error
    /// instead of filling the disk.
    #[arg(long, default_value = "5GiB", value_parser = parse_bytes, env = "CAPSTAN_MAX_FETCH_SIZE")]
    max_fetch_size: u64,
    /// How long a remote's ref listing is reused before listing again (webhooks and hard
    /// refreshes list at once).
    #[arg(long, default_value = "3m", value_parser = parse_duration, env = "CAPSTAN_REF_TTL")]
    ref_ttl: Duration,
    /// Longest a helm or kustomize run may take.
    #[arg(long, default_value = "90s", value_parser = parse_duration, env = "CAPSTAN_TOOL_TIMEOUT")]
    tool_timeout: Duration,
    /// Most helm/kustomize processes at once (default: 2 per CPU).
    #[arg(long, env = "CAPSTAN_MAX_CONCURRENT_TOOLS")]
    max_concurrent_tools: Option<usize>,
    /// Most bytes of output a helm or kustomize run may write.
    #[arg(long, default_value = "100MiB", value_parser = parse_bytes, env = "CAPSTAN_MAX_TOOL_OUTPUT")]
    max_tool_output: u64,
    /// Largest single file read from a repository.
    #[arg(long, default_value = "10MiB", value_parser = parse_bytes, env = "CAPSTAN_MAX_FILE_SIZE")]
    max_file_size: u64,
    /// Most bytes of files read for one source (or one checkout).
    #[arg(long, default_value = "100MiB", value_parser = parse_bytes, env = "CAPSTAN_MAX_SOURCE_SIZE")]
    max_source_size: u64,
    /// Most files read for one source (or one checkout).
    #[arg(long, default_value_t = 10_000, env = "CAPSTAN_MAX_SOURCE_FILES")]
    max_source_files: usize,
    /// Rendered results kept in memory.
    #[arg(long, default_value_t = 10_000, env = "CAPSTAN_MEMORY_CACHE_ENTRIES")]
    memory_cache_entries: u64,
    /// Redis Cluster seed nodes for the shared manifest cache, comma-separated
    /// (`redis://host:6379,...`). Without it, each repo-server caches alone.
    #[arg(long, value_delimiter = ',', env = "CAPSTAN_REDIS")]
    redis: Vec<String>,
    /// How long entries live in the shared cache.
    #[arg(long, default_value = "24h", value_parser = parse_duration, env = "CAPSTAN_REDIS_TTL")]
    redis_ttl: Duration,
    /// Longest a manifest request may take in total.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "CAPSTAN_REQUEST_TIMEOUT")]
    request_timeout: Duration,
    /// Config management plugins: a YAML file of `ConfigManagementPlugin` documents (Argo CD's
    /// plugin.yaml format); see docs/plugins.md.
    #[arg(long, env = "CAPSTAN_PLUGINS")]
    plugins: Option<PathBuf>,
    #[command(flatten)]
    etcd: crate::etcd::EtcdArgs,
    /// With --etcd-endpoints: the address controllers reach this repo-server at, registered
    /// in etcd while it runs (`http://HOST:PORT`). Default: `http://` + --listen, which must
    /// then not be a wildcard address.
    #[arg(long, value_name = "URL", env = "CAPSTAN_REPO_SERVER_ADVERTISE")]
    advertise: Option<String>,
    /// Threads parsing manifests (0: one per CPU).
    #[arg(long, default_value_t = 0, env = "CAPSTAN_CPU_THREADS")]
    cpu_threads: usize,
}

impl Args {
    fn config(&self) -> anyhow::Result<RepoServerConfig> {
        let work_dir = self
            .work_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("capstan-repo-server"));
        let mut config = RepoServerConfig::new(work_dir);
        config.git_cache_bytes = self.git_cache_size;
        config.max_fetch_bytes = self.max_fetch_size;
        config.ref_ttl = self.ref_ttl;
        config.tree_limits = TreeLimits {
            max_file_bytes: self.max_file_size,
            max_total_bytes: self.max_source_size,
            max_files: self.max_source_files,
        };
        let defaults = ToolLimits::default();
        config.tool_limits = ToolLimits {
            timeout: self.tool_timeout,
            max_output_bytes: self.max_tool_output,
            max_concurrent: self.max_concurrent_tools.unwrap_or(defaults.max_concurrent),
        };
        config.helm = HelmTool {
            program: self.helm.clone(),
        };
        config.kustomize = KustomizeTool {
            program: self.kustomize.clone(),
            helm: Some(self.helm.clone()),
            build_options: self
                .kustomize_build_options
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        };
        config.memory_cache_entries = self.memory_cache_entries;
        if !self.redis.is_empty() {
            let mut shared = SharedCacheConfig::new(self.redis.clone());
            shared.ttl = self.redis_ttl;
            config.shared_cache = Some(shared);
        }
        config.request_timeout = self.request_timeout;
        config.cpu_threads = self.cpu_threads;
        // Jsonnet runs in a child process (this binary again), so a hostile program can only
        // kill that child.
        config.jsonnet_child = Some(capstan_repo::render::jsonnet_child::JsonnetChild {
            program: std::env::current_exe().context("finding this executable for Jsonnet")?,
            args: vec!["jsonnet-eval".to_owned()],
        });
        if let Some(path) = &self.plugins {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the plugin configuration {}", path.display()))?;
            config.plugins = capstan_repo::render::plugin::parse_plugins(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        Ok(config)
    }
}

/// Runs the repo-server until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    // Only registered (so only needed) with --etcd-endpoints.
    let advertise = if args.etcd.given() {
        crate::discovery::advertised(args.advertise.as_deref(), args.listen, "--advertise")?
    } else {
        String::new()
    };
    // Connect before serving: a wrong etcd address fails the start.
    let etcd = if args.etcd.given() {
        Some(args.etcd.connect().await?)
    } else {
        None
    };
    let server = RepoServer::new(config.clone())
        .await
        .context("starting the repo-server")?;
    let mut registry = prometheus_client::registry::Registry::default();
    let grpc_metrics = capstan_repo::metrics::register(&mut registry, &server);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let ready = Readiness::default();
    let observe_task =
        observe::serve(args.metrics_listen, registry, ready.clone(), stopped()).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} for gRPC", args.listen))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let grpc = tonic::transport::Server::builder()
        .add_service(capstan_repo::grpc::service_with_metrics(
            server.clone(),
            grpc_metrics,
        ))
        .serve_with_incoming_shutdown(incoming, stopped());
    let grpc_task = tokio::spawn(grpc);
    // Registered once serving, so controllers never route to a port that is not open yet.
    let registration = etcd.map(|etcd| {
        crate::discovery::Registration::start(
            etcd,
            crate::discovery::REPO_SERVERS,
            advertise.clone(),
        )
    });
    ready.set(true);
    tracing::info!(
        listen = %args.listen,
        work_dir = %config.work_dir.display(),
        tools = server.tool_versions(),
        shared_cache = config.shared_cache.is_some(),
        plugins = config.plugins.len(),
        "repo-server serving gRPC"
    );

    observe::shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    ready.set(false);
    // Leave the pool first: controllers stop sending new requests here at once.
    if let Some(registration) = registration {
        registration.stop().await;
    }
    let _ = stop_tx.send(true);
    grpc_task
        .await
        .context("the gRPC server task failed")?
        .context("the gRPC server failed")?;
    let _ = observe_task.await;
    tracing::info!("repo-server stopped");
    Ok(())
}
