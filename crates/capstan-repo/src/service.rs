//! The repo-server: "source + Application context" in, manifests out, cached and coalesced.
//!
//! [`RepoServer::generate`] is what the gRPC service and the all-in-one call:
//! 1. the revision is resolved through the [`RefCache`] (one listing per repository per TTL);
//! 2. the result is looked up in the in-process cache (moka), then in the shared Redis
//!    Cluster cache, under a key that hashes everything the output depends on: normalised
//!    repository URL, commit, path, all source options, the Application context, the commits
//!    of `$ref` sources and the tool versions;
//! 3. on a miss, identical requests in flight share one render: the repository is fetched
//!    only if the commit is missing ([`RepoCache::fetch_for_commit`]), directory sources are
//!    read and parsed on a rayon pool, Helm and Kustomize run on a checkout through the
//!    bounded [`ToolRunner`].
//!
//! A hard refresh (`no_cache`) lists refs again and renders again, then refreshes both caches.
//! The whole request runs under [`RepoServerConfig::request_timeout`]; dropping the future
//! (a cancelled gRPC call) stops the work: tools are killed, waiting stops.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use capstan_model::{ApplicationSource, SourceType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use crate::checkout::checkout;
use crate::git::{CacheConfig, Credentials, GitError, RepoCache, RepoUrl, lock};
use crate::render::detect::source_type;
use crate::render::directory::{self, DirectoryOptions};
use crate::render::env::AppContext;
use crate::render::helm::{self, HelmCredentials, HelmRequest, HelmTool, RefSource};
use crate::render::kustomize::{self, KustomizeRequest, KustomizeTool};
use crate::render::plugin;
use crate::render::process::{ToolLimits, ToolRunner};
use crate::render::{RenderError, Rendered};
use crate::revision::{RefCache, Resolved, RevisionError};
use crate::shared_cache::{SharedCache, SharedCacheConfig};
use crate::tree::{SkippedFile, TreeLimits, read_dir};

/// Settings of a [`RepoServer`].
#[derive(Clone, Debug)]
pub struct RepoServerConfig {
    /// Working directory: the Git cache, checkouts and the tools' home live under it.
    pub work_dir: PathBuf,
    /// Byte budget of the Git cache.
    pub git_cache_bytes: u64,
    /// Most bytes one Git fetch may receive (an oversized repository fails its requests
    /// instead of filling the disk).
    pub max_fetch_bytes: u64,
    /// How long a remote ref listing is reused.
    pub ref_ttl: Duration,
    /// Limits on the files read from a repository.
    pub tree_limits: TreeLimits,
    /// Limits on tool runs.
    pub tool_limits: ToolLimits,
    /// The Helm binary.
    pub helm: HelmTool,
    /// The Kustomize binary and build options.
    pub kustomize: KustomizeTool,
    /// Most rendered results kept in memory.
    pub memory_cache_entries: u64,
    /// Most checkouts kept for reuse by Helm and Kustomize renders (one per commit).
    pub shared_checkouts: u64,
    /// The shared Redis Cluster cache, if any.
    pub shared_cache: Option<SharedCacheConfig>,
    /// Evaluate Jsonnet in a child process (recommended; `capstand` always does). `None`
    /// evaluates in process, where a hostile program can abort the whole process (see
    /// `render::jsonnet`).
    pub jsonnet_child: Option<crate::render::jsonnet_child::JsonnetChild>,
    /// Config management plugins (see `render::plugin`).
    pub plugins: Vec<plugin::Plugin>,
    /// Threads of the CPU pool (parsing); 0 means one per CPU.
    pub cpu_threads: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
}

impl RepoServerConfig {
    /// Defaults under `work_dir`, with `helm` and `kustomize` taken from `PATH`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            git_cache_bytes: 20 << 30,
            max_fetch_bytes: 5 << 30,
            ref_ttl: RefCache::DEFAULT_TTL,
            tree_limits: TreeLimits::default(),
            tool_limits: ToolLimits::default(),
            helm: HelmTool {
                program: "helm".into(),
            },
            kustomize: KustomizeTool {
                program: "kustomize".into(),
                ..KustomizeTool::default()
            },
            memory_cache_entries: 10_000,
            shared_checkouts: 16,
            shared_cache: None,
            plugins: Vec::new(),
            jsonnet_child: None,
            cpu_threads: 0,
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// Another source of a multi-source Application, whose files `$name/…` values files use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefSourceSpec {
    /// Its `ref` name.
    pub name: String,
    /// Its repository.
    pub repo_url: String,
    /// Its `targetRevision`.
    pub target_revision: String,
    /// Credentials for its repository.
    pub credentials: Credentials,
}

/// A request for the manifests of one source.
#[derive(Clone, Debug, Default)]
pub struct ManifestRequest {
    /// The source.
    pub source: ApplicationSource,
    /// The Application (name, destination namespace, project, cluster version); `revision`,
    /// `repo_url`, `path` and `target_revision` are filled in from the source.
    pub app: AppContext,
    /// Credentials for the source's Git repository.
    pub credentials: Credentials,
    /// Credentials for a Helm repository (sources with `chart`).
    pub helm_credentials: HelmCredentials,
    /// The other sources of a multi-source Application that have a `ref`.
    pub ref_sources: Vec<RefSourceSpec>,
    /// Hard refresh: list refs and render again, bypassing the caches.
    pub no_cache: bool,
}

/// Rendered manifests of a source at a revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifests {
    /// The manifests.
    pub manifests: Vec<Value>,
    /// The commit SHA (Git) or chart version (Helm repository) rendered.
    pub revision: String,
    /// The renderer used.
    pub source_type: SourceType,
    /// Files and documents left out, with the reason.
    pub skipped: Vec<SkippedFile>,
}

/// `sha256:<hex>` of `manifests` in order (each as compact JSON, newline-separated): the
/// same rendered output gives the same digest, whichever revision or cache it came from.
pub fn manifests_digest<'a>(manifests: impl IntoIterator<Item = &'a Value>) -> String {
    let mut hasher = sha2::Sha256::new();
    for manifest in manifests {
        hasher.update(manifest.to_string().as_bytes());
        hasher.update(b"\n");
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Branches and tags of a repository, from [`RepoServer::list_refs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefListing {
    /// `(branch, commit)`, sorted.
    pub branches: Vec<(String, String)>,
    /// `(tag, commit)` (annotated tags peeled), sorted.
    pub tags: Vec<(String, String)>,
    /// The default branch, when advertised.
    pub head_branch: String,
}

/// A description of a source, from [`RepoServer::app_details`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppDetails {
    /// The renderer it uses.
    pub source_type: SourceType,
    /// The commit (or chart version) described.
    pub revision: String,
    /// Helm: the values files in the chart directory.
    pub helm_value_files: Vec<String>,
    /// Helm: `values.yaml` as written.
    pub helm_values: String,
    /// Helm: every leaf of `values.yaml` as a dotted name and its value.
    pub helm_parameters: Vec<(String, String)>,
    /// Kustomize: the container images of the rendered manifests.
    pub kustomize_images: Vec<String>,
}

impl AppDetails {
    fn new(source_type: SourceType, revision: String) -> Self {
        Self {
            source_type,
            revision,
            helm_value_files: Vec::new(),
            helm_values: String::new(),
            helm_parameters: Vec::new(),
            kustomize_images: Vec::new(),
        }
    }
}

/// Every leaf of a values document as `(dotted.name, value)`; list items as `name[i]`.
fn flatten_values(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_values(&name, v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_values(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => out.push((prefix.to_owned(), "null".to_owned())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// Adds the `image` of every entry of any `containers` / `initContainers` list in `value`.
fn collect_images(value: &Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if (k == "containers" || k == "initContainers" || k == "ephemeralContainers")
                    && let Value::Array(items) = v
                {
                    out.extend(
                        items
                            .iter()
                            .filter_map(|c| c.get("image").and_then(Value::as_str))
                            .map(str::to_owned),
                    );
                }
                collect_images(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_images(v, out)),
        _ => {}
    }
}

/// Where a result came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The in-process cache, or another request rendering the same thing at the same time.
    Memory,
    /// The shared Redis cache.
    Shared,
    /// Rendered for this request.
    Rendered,
}

/// The result of [`RepoServer::generate`].
#[derive(Clone, Debug)]
pub struct Generated {
    /// The manifests.
    pub manifests: Arc<Manifests>,
    /// Where they came from.
    pub cache: CacheOutcome,
}

/// What kind of failure a [`GenerateError`] is (maps to a gRPC status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or the repository content is wrong; retrying will not help.
    InvalidArgument,
    /// The revision, path or chart does not exist.
    NotFound,
    /// The repository refused the credentials.
    Unauthenticated,
    /// The request took longer than allowed.
    DeadlineExceeded,
    /// The repository server or a tool could not be reached or failed.
    Unavailable,
    /// Anything else.
    Internal,
}

/// A failed request: a kind and a message that names the cause and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GenerateError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// The message, with its causes.
    pub message: String,
}

impl GenerateError {
    fn new(kind: ErrorKind, error: &dyn std::error::Error) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        Self { kind, message }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidArgument,
            message: message.into(),
        }
    }
}

impl From<GitError> for GenerateError {
    fn from(e: GitError) -> Self {
        let kind = match &e {
            GitError::InvalidUrl { .. }
            | GitError::UnsupportedScheme { .. }
            | GitError::TooLarge { .. } => ErrorKind::InvalidArgument,
            GitError::Authentication { .. } => ErrorKind::Unauthenticated,
            GitError::Remote { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, &e)
    }
}

impl From<RevisionError> for GenerateError {
    fn from(e: RevisionError) -> Self {
        match e {
            RevisionError::Git(g) => g.into(),
            RevisionError::NotFound { .. }
            | RevisionError::NoSemverMatch { .. }
            | RevisionError::NoHead { .. } => Self::new(ErrorKind::NotFound, &e),
            RevisionError::Ambiguous { .. } => Self::new(ErrorKind::InvalidArgument, &e),
            _ => Self::new(ErrorKind::Internal, &e),
        }
    }
}

impl From<RenderError> for GenerateError {
    fn from(e: RenderError) -> Self {
        use crate::tree::TreeError;
        let kind = match &e {
            RenderError::Tree(TreeError::PathNotFound { .. }) => ErrorKind::NotFound,
            RenderError::Tree(TreeError::Object { .. }) => ErrorKind::NotFound,
            RenderError::ToolTimedOut { .. } => ErrorKind::DeadlineExceeded,
            RenderError::ToolMissing { .. } | RenderError::Io { .. } => ErrorKind::Internal,
            _ => ErrorKind::InvalidArgument,
        };
        Self::new(kind, &e)
    }
}

/// Counters of a [`RepoServer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepoServerStats {
    /// Requests answered from memory (including coalesced ones).
    pub memory_hits: u64,
    /// Requests answered from the shared cache.
    pub shared_hits: u64,
    /// Renders done.
    pub renders: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Git fetches started.
    pub fetches: u64,
    /// Remote ref listings started.
    pub ref_listings: u64,
    /// Shared cache errors (Redis unavailable).
    pub shared_cache_errors: u64,
    /// Checkouts written (Helm and Kustomize renders of one commit share one).
    pub checkouts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    memory_hits: AtomicU64,
    shared_hits: AtomicU64,
    renders: AtomicU64,
    failures: AtomicU64,
    checkouts: AtomicU64,
}

struct Inner {
    config: RepoServerConfig,
    repos: RepoCache,
    refs: RefCache,
    runner: ToolRunner,
    memory: moka::future::Cache<String, Arc<Manifests>>,
    /// Read-only checkouts shared by renders of the same commit; a checkout's directory is
    /// removed when it leaves the cache and its last render ends.
    shared_checkouts: moka::future::Cache<(String, gix::ObjectId), Arc<crate::checkout::Checkout>>,
    shared: Option<SharedCache>,
    cpu: rayon::ThreadPool,
    tool_versions: String,
    counters: Counters,
    checkouts: PathBuf,
}

/// The repo-server; cheap to clone (clones share caches and limits).
#[derive(Clone)]
pub struct RepoServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RepoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoServer")
            .field("work_dir", &self.inner.config.work_dir)
            .field("tool_versions", &self.inner.tool_versions)
            .finish_non_exhaustive()
    }
}

/// Stack of the CPU pool's threads: YAML and JSON parsing recurse with document depth.
const CPU_STACK_BYTES: usize = 16 << 20;

impl RepoServer {
    /// Starts a repo-server: creates the work directories, adopts a Git cache left by an
    /// earlier run, asks Helm and Kustomize for their versions (part of every cache key).
    pub async fn new(config: RepoServerConfig) -> Result<Self, GenerateError> {
        let internal = |what: &str, e: &dyn std::error::Error| GenerateError {
            kind: ErrorKind::Internal,
            message: format!("{what}: {e}"),
        };
        let git_root = config.work_dir.join("git");
        let budget = config.git_cache_bytes;
        let repos = tokio::task::spawn_blocking(move || {
            RepoCache::new(CacheConfig {
                root: git_root,
                max_bytes: budget,
            })
        })
        .await
        .map_err(|e| internal("starting the git cache", &e))??;
        repos.set_max_fetch_bytes(config.max_fetch_bytes);
        let refs = RefCache::new(repos.clone(), config.ref_ttl);
        let runner = ToolRunner::new(config.work_dir.join("home"), config.tool_limits.clone());
        let checkouts = config.work_dir.join("checkouts");
        // Checkouts of an earlier run are garbage now.
        let _ = std::fs::remove_dir_all(&checkouts);
        std::fs::create_dir_all(&checkouts)
            .map_err(|e| internal("creating the checkout directory", &e))?;
        std::fs::create_dir_all(runner.home())
            .map_err(|e| internal("creating the tool home", &e))?;
        let shared = match &config.shared_cache {
            Some(c) => Some(
                SharedCache::new(c.clone())
                    .map_err(|e| internal("configuring the shared cache", &e))?,
            ),
            None => None,
        };
        let cpu = rayon::ThreadPoolBuilder::new()
            .num_threads(config.cpu_threads)
            .stack_size(CPU_STACK_BYTES)
            .thread_name(|i| format!("capstan-render-{i}"))
            // Without a handler a panicking job aborts the process; with it, the job's
            // request fails (its result channel is dropped) and the server goes on.
            .panic_handler(|_| tracing::error!("a render job panicked; its request failed"))
            .build()
            .map_err(|e| internal("starting the CPU pool", &e))?;
        let mut tool_versions = tool_versions(&runner, &config).await;
        if !config.plugins.is_empty() {
            // A changed plugin configuration must not reuse results in the shared cache.
            let digest = sha2::Sha256::digest(format!("{:?}", config.plugins).as_bytes());
            let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            tool_versions.push_str(&format!(",plugins={short}"));
        }
        tracing::info!(%tool_versions, work_dir = %config.work_dir.display(), "repo-server ready");
        let memory = moka::future::Cache::builder()
            .max_capacity(config.memory_cache_entries)
            .build();
        let shared_checkouts = moka::future::Cache::builder()
            .max_capacity(config.shared_checkouts)
            .time_to_idle(Duration::from_secs(600))
            .build();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                repos,
                refs,
                runner,
                memory,
                shared_checkouts,
                shared,
                cpu,
                tool_versions,
                counters: Counters::default(),
                checkouts,
            }),
        })
    }

    /// The Git cache.
    pub fn repos(&self) -> &RepoCache {
        &self.inner.repos
    }

    /// The ref listing cache (a webhook calls [`RefCache::invalidate`]).
    pub fn refs(&self) -> &RefCache {
        &self.inner.refs
    }

    /// The tool runner.
    pub fn runner(&self) -> &ToolRunner {
        &self.inner.runner
    }

    /// The tool versions that are part of every cache key.
    pub fn tool_versions(&self) -> &str {
        &self.inner.tool_versions
    }

    /// Counters so far.
    pub fn stats(&self) -> RepoServerStats {
        let c = &self.inner.counters;
        let git = self.inner.repos.stats();
        RepoServerStats {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            shared_hits: c.shared_hits.load(Ordering::Relaxed),
            renders: c.renders.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            fetches: git.fetches,
            ref_listings: git.listings,
            shared_cache_errors: self.inner.shared.as_ref().map_or(0, |s| s.stats().errors),
            checkouts: c.checkouts.load(Ordering::Relaxed),
        }
    }

    /// Resolves `revision` of `url` through the ref cache (`no_cache` lists again).
    pub async fn resolve_revision(
        &self,
        url: &str,
        credentials: &Credentials,
        revision: &str,
        no_cache: bool,
    ) -> Result<Resolved, GenerateError> {
        let url = RepoUrl::parse(url)?;
        if no_cache {
            self.inner.refs.invalidate(&url);
        }
        Ok(self.inner.refs.resolve(&url, credentials, revision).await?)
    }

    /// The branches and tags of `url` (name without prefix, commit), and the default branch.
    pub async fn list_refs(
        &self,
        url: &str,
        credentials: &Credentials,
        no_cache: bool,
    ) -> Result<RefListing, GenerateError> {
        let url = RepoUrl::parse(url)?;
        if no_cache {
            self.inner.refs.invalidate(&url);
        }
        let refs = self.inner.refs.refs(&url, credentials).await?;
        let mut out = RefListing::default();
        for r in &refs.refs {
            if let Some(name) = r.name.strip_prefix("refs/heads/") {
                out.branches.push((name.to_owned(), r.commit().to_string()));
            } else if let Some(name) = r.name.strip_prefix("refs/tags/") {
                out.tags.push((name.to_owned(), r.commit().to_string()));
            }
        }
        out.branches.sort();
        out.tags.sort();
        out.head_branch = refs
            .head()
            .and_then(|(name, _)| name.strip_prefix("refs/heads/").map(str::to_owned))
            .unwrap_or_default();
        Ok(out)
    }

    /// The directories of `url` at `revision` that hold a kustomization or a Helm chart (for
    /// UIs that offer paths), sorted by path; `"."` is the repository root.
    pub async fn list_apps(
        &self,
        url: &str,
        credentials: &Credentials,
        revision: &str,
    ) -> Result<(String, Vec<(String, SourceType)>), GenerateError> {
        let repo_url = RepoUrl::parse(url)?;
        let commit = self
            .inner
            .refs
            .resolve(&repo_url, credentials, revision)
            .await?
            .commit;
        let handle = self
            .inner
            .repos
            .fetch_for_commit(&repo_url, credentials, commit)
            .await?;
        let limits = self.inner.config.tree_limits.clone();
        let apps = self
            .on_cpu(move || -> Result<_, GenerateError> {
                let repo = handle.open()?;
                let listing =
                    read_dir(&repo, commit, "", true, &limits).map_err(RenderError::from)?;
                let mut by_dir: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
                for f in &listing.files {
                    let (dir, name) = f.path.rsplit_once('/').unwrap_or((".", f.path.as_str()));
                    by_dir.entry(dir.to_owned()).or_default().push(name);
                }
                Ok(by_dir
                    .into_iter()
                    .map(|(dir, names)| (dir, crate::render::detect::detect(names)))
                    .filter(|(_, kind)| *kind != SourceType::Directory)
                    .collect::<Vec<_>>())
            })
            .await??;
        Ok((commit.to_string(), apps))
    }

    /// What a source is: its detected type and, for Helm, its values files, `values.yaml`
    /// and the parameters it defines; for Kustomize, the images of its manifests.
    pub async fn app_details(&self, req: ManifestRequest) -> Result<AppDetails, GenerateError> {
        if req.source.is_helm_chart() {
            // A chart from a Helm repository: describe what a render shows.
            let generated = self.generate(req).await?;
            return Ok(AppDetails::new(
                SourceType::Helm,
                generated.manifests.revision.clone(),
            ));
        }
        let url = RepoUrl::parse(&req.source.repo_url)?;
        let commit = self
            .inner
            .refs
            .resolve(&url, &req.credentials, &req.source.target_revision)
            .await?
            .commit;
        let handle = self
            .inner
            .repos
            .fetch_for_commit(&url, &req.credentials, commit)
            .await?;
        let limits = self.inner.config.tree_limits.clone();
        let source = req.source.clone();
        let mut details = self
            .on_cpu(move || -> Result<_, GenerateError> {
                let repo = handle.open()?;
                let top = read_dir(&repo, commit, &source.path, false, &limits)
                    .map_err(RenderError::from)?;
                let kind = source_type(&source, top.files.iter().map(|f| f.path.as_str()))
                    .map_err(GenerateError::invalid)?;
                let mut details = AppDetails::new(kind, commit.to_string());
                if kind == SourceType::Helm {
                    for f in &top.files {
                        let lower = f.path.to_ascii_lowercase();
                        if lower.contains("values")
                            && (lower.ends_with(".yaml") || lower.ends_with(".yml"))
                        {
                            details.helm_value_files.push(f.path.clone());
                        }
                        if f.path == "values.yaml" {
                            let text = String::from_utf8_lossy(&f.data).into_owned();
                            if let Ok(values) = serde_saphyr::from_str::<Value>(&text) {
                                flatten_values("", &values, &mut details.helm_parameters);
                            }
                            details.helm_values = text;
                        }
                    }
                }
                Ok(details)
            })
            .await??;
        if details.source_type == SourceType::Kustomize {
            let generated = self.generate(req).await?;
            let mut images = std::collections::BTreeSet::new();
            for m in &generated.manifests.manifests {
                collect_images(m, &mut images);
            }
            details.kustomize_images = images.into_iter().collect();
        }
        Ok(details)
    }

    /// Renders (or finds cached) the manifests of `req`; see the [module docs](self).
    pub async fn generate(&self, req: ManifestRequest) -> Result<Generated, GenerateError> {
        let timeout = self.inner.config.request_timeout;
        let result = match tokio::time::timeout(timeout, self.generate_now(req)).await {
            Ok(result) => result,
            Err(_) => Err(GenerateError {
                kind: ErrorKind::DeadlineExceeded,
                message: format!(
                    "generating manifests took longer than {}s; the repository or a tool is too slow",
                    timeout.as_secs()
                ),
            }),
        };
        if result.is_err() {
            self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn generate_now(&self, mut req: ManifestRequest) -> Result<Generated, GenerateError> {
        let source = &req.source;
        req.app.repo_url = source.repo_url.clone();
        req.app.path = source.path.clone();
        req.app.target_revision = source.target_revision.clone();
        if source.is_helm_chart() {
            return self.generate_chart(req).await;
        }
        let url = RepoUrl::parse(&source.repo_url)?;
        if req.no_cache {
            self.inner.refs.invalidate(&url);
        }
        let commit = self
            .inner
            .refs
            .resolve(&url, &req.credentials, &source.target_revision)
            .await?
            .commit;
        req.app.revision = commit.to_string();
        let mut refs = Vec::new();
        for r in &req.ref_sources {
            let ref_url = RepoUrl::parse(&r.repo_url)?;
            if req.no_cache {
                self.inner.refs.invalidate(&ref_url);
            }
            let ref_commit = self
                .inner
                .refs
                .resolve(&ref_url, &r.credentials, &r.target_revision)
                .await?
                .commit;
            refs.push((r, ref_url, ref_commit));
        }
        let key = self.cache_key(&url, &commit.to_string(), &req, &refs);
        let no_cache = req.no_cache;
        let refs: Vec<(RefSourceSpec, RepoUrl, gix::ObjectId)> = refs
            .into_iter()
            .map(|(r, u, c)| (r.clone(), u, c))
            .collect();
        let this = self.clone();
        let render = async move {
            let refs: Vec<_> = refs.iter().map(|(r, u, c)| (r, u.clone(), *c)).collect();
            let rendered = this.render_git(&req, &url, commit, &refs).await?;
            Ok::<_, GenerateError>(Manifests {
                manifests: rendered.0.manifests,
                revision: commit.to_string(),
                source_type: rendered.1,
                skipped: rendered.0.skipped,
            })
        };
        self.cached(key, render, no_cache).await
    }

    async fn generate_chart(&self, req: ManifestRequest) -> Result<Generated, GenerateError> {
        let source = &req.source;
        // An exact version names fixed content. A range (or "latest") may resolve to a newer
        // chart at any time: its result is keyed by the current ref-TTL window, so it is
        // resolved again at most once per window, like a Git ref listing.
        let exact = semver::Version::parse(source.target_revision.trim_start_matches('v')).is_ok();
        let revision = if exact {
            source.target_revision.clone()
        } else {
            let ttl = self.inner.config.ref_ttl.as_secs().max(1);
            let window = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / ttl);
            format!("{}@window-{window}", source.target_revision)
        };
        let no_cache = req.no_cache;
        let key = self.cache_key(&RepoUrl::parse(&source.repo_url)?, &revision, &req, &[]);
        let this = self.clone();
        let render = async move {
            let inner = &this.inner;
            let pulled = helm::pull_chart(
                &inner.runner,
                &inner.config.helm,
                &req.source.repo_url,
                &req.source.chart,
                &req.source.target_revision,
                &req.helm_credentials,
                &inner.checkouts,
            )
            .await?;
            let mut app = req.app.clone();
            app.revision = pulled.version.clone();
            let rendered = helm::render(
                &inner.runner,
                &inner.config.helm,
                HelmRequest {
                    root: &pulled.chart_dir,
                    chart_dir: &pulled.chart_dir,
                    options: req.source.helm.as_ref(),
                    app: &app,
                    refs: &[],
                },
            )
            .await?;
            Ok(Manifests {
                manifests: rendered.manifests,
                revision: pulled.version,
                source_type: SourceType::Helm,
                skipped: rendered.skipped,
            })
        };
        self.cached(key, render, no_cache).await
    }

    /// Looks `key` up in memory, then in the shared cache, else runs `render` once for all
    /// concurrent callers and stores the result in both. With `no_cache` the lookups are
    /// skipped and the result replaces what the caches held.
    async fn cached(
        &self,
        key: String,
        render: impl Future<Output = Result<Manifests, GenerateError>> + Send + 'static,
        no_cache: bool,
    ) -> Result<Generated, GenerateError> {
        let inner = &self.inner;
        if !no_cache && let Some(hit) = inner.memory.get(&key).await {
            inner.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Generated {
                manifests: hit,
                cache: CacheOutcome::Memory,
            });
        }
        // Set by the init future when this caller ran it; a caller that waited for another's
        // render finds it unset.
        let origin = Arc::new(std::sync::Mutex::new(None));
        let init = {
            let origin = Arc::clone(&origin);
            let this = self.clone();
            let key = key.clone();
            async move {
                let inner = &this.inner;
                if !no_cache
                    && let Some(shared) = &inner.shared
                    && let Some(bytes) = shared.get(&key).await
                {
                    match serde_json::from_slice::<Manifests>(&bytes) {
                        Ok(m) => {
                            *lock(&origin) = Some(CacheOutcome::Shared);
                            return Ok(Arc::new(m));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring an unreadable shared cache entry")
                        }
                    }
                }
                let started = Instant::now();
                let m = render.await?;
                tracing::debug!(
                    source_type = m.source_type.as_str(),
                    manifests = m.manifests.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "rendered"
                );
                *lock(&origin) = Some(CacheOutcome::Rendered);
                if let Some(shared) = &inner.shared
                    && let Ok(bytes) = serde_json::to_vec(&m)
                {
                    shared.put(&key, &bytes).await;
                }
                Ok::<_, GenerateError>(Arc::new(m))
            }
        };
        let manifests = if no_cache {
            let m = init.await?;
            inner.memory.insert(key, Arc::clone(&m)).await;
            m
        } else {
            inner
                .memory
                .try_get_with(key, init)
                .await
                .map_err(|e| (*e).clone())?
        };
        let cache = lock(&origin).unwrap_or(CacheOutcome::Memory);
        let counter = match cache {
            CacheOutcome::Memory => &inner.counters.memory_hits,
            CacheOutcome::Shared => &inner.counters.shared_hits,
            CacheOutcome::Rendered => &inner.counters.renders,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(Generated { manifests, cache })
    }

    /// Runs `f` on the CPU pool.
    async fn on_cpu<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, GenerateError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.cpu.spawn(move || {
            let _ = tx.send(f());
        });
        rx.await.map_err(|_| GenerateError {
            kind: ErrorKind::Internal,
            message: "a render worker failed unexpectedly; see the repo-server log".to_owned(),
        })
    }

    /// Renders a Git source at `commit`.
    async fn render_git(
        &self,
        req: &ManifestRequest,
        url: &RepoUrl,
        commit: gix::ObjectId,
        refs: &[(&RefSourceSpec, RepoUrl, gix::ObjectId)],
    ) -> Result<(Rendered, SourceType), GenerateError> {
        let inner = &self.inner;
        let handle = inner
            .repos
            .fetch_for_commit(url, &req.credentials, commit)
            .await?;
        if let Some(rendered) = self.render_plugin(req, url, commit).await? {
            return Ok((rendered, SourceType::Plugin));
        }
        let source = req.source.clone();
        let limits = inner.config.tree_limits.clone();
        let repo_dir = handle.path().to_owned();
        /// How far the object database got a directory source.
        enum Directory {
            /// Rendered (no Jsonnet to evaluate).
            Done(Rendered),
            /// Files listed; Jsonnet files need a checkout to be evaluated against.
            Jsonnet(crate::tree::Listing, DirectoryOptions),
        }
        // Detection and directory sources need no checkout: read the object database. Only
        // Jsonnet files that will be evaluated need one (for their imports).
        let (kind, directory) = self
            .on_cpu(move || -> Result<_, GenerateError> {
                let repo = crate::git::open_isolated(&repo_dir)?;
                let top = read_dir(&repo, commit, &source.path, false, &limits)
                    .map_err(RenderError::from)?;
                let kind = source_type(&source, top.files.iter().map(|f| f.path.as_str()))
                    .map_err(GenerateError::invalid)?;
                if kind != SourceType::Directory {
                    return Ok((kind, None));
                }
                let options = source.directory.clone().unwrap_or_default();
                let listing = if options.recurse {
                    read_dir(&repo, commit, &source.path, true, &limits)
                        .map_err(RenderError::from)?
                } else {
                    top
                };
                let options = DirectoryOptions {
                    recurse: options.recurse,
                    include: options.include,
                    exclude: options.exclude,
                };
                if directory::needs_jsonnet(&listing.files, &options)? {
                    return Ok((kind, Some(Directory::Jsonnet(listing, options))));
                }
                let mut rendered = directory::render(&listing.files, &options)?;
                rendered.skipped.extend(listing.skipped);
                Ok((kind, Some(Directory::Done(rendered))))
            })
            .await??;
        drop(handle);
        match directory {
            Some(Directory::Done(rendered)) => return Ok((rendered, kind)),
            Some(Directory::Jsonnet(listing, options)) => {
                let co = self.checkout(url, &req.credentials, commit).await?;
                let jsonnet = req
                    .source
                    .directory
                    .as_ref()
                    .map(|d| d.jsonnet.clone())
                    .unwrap_or_default();
                let source_path = req.source.path.clone();
                let env = req.app.build_env();
                if let Some(child) = &inner.config.jsonnet_child {
                    let wanted = directory::jsonnet_files(&listing.files, &options)?
                        .into_iter()
                        .map(|f| f.repo_path.clone())
                        .collect();
                    let results = crate::render::jsonnet_child::evaluate_in_child(
                        &inner.runner,
                        child,
                        co.root(),
                        &source_path,
                        &jsonnet,
                        &env,
                        wanted,
                    )
                    .await?;
                    let evaluate = |f: &crate::tree::SourceFile| {
                        use crate::render::jsonnet_child::FileResult;
                        match results.get(&f.repo_path) {
                            Some(FileResult::Manifests(v)) => Ok(v.clone()),
                            Some(FileResult::Error { line, message }) => {
                                Err(RenderError::Jsonnet {
                                    file: f.repo_path.clone(),
                                    line: *line,
                                    message: message.clone(),
                                })
                            }
                            None => Err(RenderError::Jsonnet {
                                file: f.repo_path.clone(),
                                line: None,
                                message: "was not evaluated".to_owned(),
                            }),
                        }
                    };
                    let mut rendered =
                        directory::render_with(&listing.files, &options, Some(&evaluate))?;
                    rendered.skipped.extend(listing.skipped);
                    return Ok((rendered, kind));
                }
                // Evaluation is CPU work; the checkout is removed when the closure ends.
                let rendered = self
                    .on_cpu(move || -> Result<_, GenerateError> {
                        let evaluator = crate::render::jsonnet::Evaluator::new(
                            co.root(),
                            &source_path,
                            &jsonnet,
                            &env,
                        )?;
                        let evaluate =
                            |f: &crate::tree::SourceFile| evaluator.evaluate(&f.repo_path);
                        let mut rendered =
                            directory::render_with(&listing.files, &options, Some(&evaluate))?;
                        rendered.skipped.extend(listing.skipped);
                        drop(co);
                        Ok(rendered)
                    })
                    .await??;
                return Ok((rendered, kind));
            }
            None => {}
        }
        // Helm and Kustomize without edits only read the checkout: they share one per commit.
        // (Kustomize with --enable-helm inflates charts into the checkout, so it does not share.)
        let inflates_charts = inner
            .config
            .kustomize
            .build_options
            .iter()
            .any(|o| o == "--enable-helm");
        let shared = kind == SourceType::Helm
            || (kind == SourceType::Kustomize
                && !inflates_charts
                && !kustomize::edits_kustomization(req.source.kustomize.as_ref()));
        let main = self
            .checkout_for(url, &req.credentials, commit, shared)
            .await?;
        let rendered = match kind {
            SourceType::Kustomize => {
                kustomize::render(
                    &inner.runner,
                    &inner.config.kustomize,
                    KustomizeRequest {
                        root: main.root(),
                        path: &req.source.path,
                        options: req.source.kustomize.as_ref(),
                        app: &req.app,
                    },
                )
                .await?
            }
            _ => {
                let mut ref_checkouts = Vec::new();
                for (spec, ref_url, ref_commit) in refs {
                    let co = self
                        .checkout_for(ref_url, &spec.credentials, *ref_commit, true)
                        .await?;
                    ref_checkouts.push((spec.name.clone(), co));
                }
                let ref_sources: Vec<RefSource> = ref_checkouts
                    .iter()
                    .map(|(name, co)| RefSource {
                        name: name.clone(),
                        root: co.root().to_owned(),
                    })
                    .collect();
                let chart_dir = main
                    .source_dir(&req.source.path)
                    .map_err(RenderError::from)?;
                helm::render(
                    &inner.runner,
                    &inner.config.helm,
                    HelmRequest {
                        root: main.root(),
                        chart_dir: &chart_dir,
                        options: req.source.helm.as_ref(),
                        app: &req.app,
                        refs: &ref_sources,
                    },
                )
                .await?
            }
        };
        Ok((rendered, kind))
    }

    /// Renders with a config management plugin when the source names one (`plugin:`) or,
    /// naming no tool, is discovered by one (see `render::plugin`); `None` when no plugin
    /// applies and detection goes on.
    async fn render_plugin(
        &self,
        req: &ManifestRequest,
        url: &RepoUrl,
        commit: gix::ObjectId,
    ) -> Result<Option<Rendered>, GenerateError> {
        let plugins = &self.inner.config.plugins;
        let source = &req.source;
        let undecided = source.explicit_types().is_empty() && !source.is_helm_chart();
        let discoverable = plugins.iter().any(|p| p.spec.discover.is_some());
        if source.plugin.is_none() && !(undecided && discoverable) {
            return Ok(None);
        }
        let configured = || {
            let names: Vec<&str> = plugins.iter().map(|p| p.name()).collect();
            if names.is_empty() {
                "none are configured (capstand repo-server --plugins)".to_owned()
            } else {
                format!("configured: {}", names.join(", "))
            }
        };
        let named = source
            .plugin
            .as_ref()
            .map(|p| p.name.as_str())
            .filter(|n| !n.is_empty());
        let chosen = match named {
            Some(name) => Some(plugins.iter().find(|p| p.is_named(name)).ok_or_else(|| {
                GenerateError::invalid(format!(
                    "spec.source.plugin.name: no config management plugin is named {name:?}; {}",
                    configured()
                ))
            })?),
            None => None,
        };
        let co = self.checkout(url, &req.credentials, commit).await?;
        let dir = co.source_dir(&source.path).map_err(RenderError::from)?;
        let plugin = match chosen {
            Some(p) => p,
            None => match plugin::discover(&self.inner.runner, plugins, &dir, &req.app).await? {
                Some(p) => p,
                None if source.plugin.is_some() => {
                    return Err(GenerateError::invalid(format!(
                        "spec.source.plugin names no plugin and no plugin's discover rules match {:?}; name one ({})",
                        source.path,
                        configured()
                    )));
                }
                None => return Ok(None),
            },
        };
        tracing::debug!(plugin = plugin.name(), path = %source.path, "rendering with a plugin");
        let rendered = plugin::render(
            &self.inner.runner,
            plugin,
            plugin::PluginRequest {
                root: co.root(),
                path: &source.path,
                options: source.plugin.as_ref(),
                app: &req.app,
            },
        )
        .await?;
        Ok(Some(rendered))
    }

    /// A checkout of `commit`: with `shared`, the one kept for that commit (made once, reused
    /// by concurrent and later renders that only read it); otherwise a private one.
    async fn checkout_for(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
        commit: gix::ObjectId,
        shared: bool,
    ) -> Result<Arc<crate::checkout::Checkout>, GenerateError> {
        if !shared {
            return Ok(Arc::new(self.checkout(url, credentials, commit).await?));
        }
        let key = (url.as_str().to_owned(), commit);
        let this = self.clone();
        let (url, credentials) = (url.clone(), credentials.clone());
        self.inner
            .shared_checkouts
            .try_get_with(key, async move {
                this.checkout(&url, &credentials, commit)
                    .await
                    .map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// Writes `commit` of `url` to a fresh checkout (fetching first if needed).
    async fn checkout(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
        commit: gix::ObjectId,
    ) -> Result<crate::checkout::Checkout, GenerateError> {
        let handle = self
            .inner
            .repos
            .fetch_for_commit(url, credentials, commit)
            .await?;
        self.inner
            .counters
            .checkouts
            .fetch_add(1, Ordering::Relaxed);
        let parent = self.inner.checkouts.clone();
        let limits = self.inner.config.tree_limits.clone();
        tokio::task::spawn_blocking(move || -> Result<_, GenerateError> {
            let repo = handle.open()?;
            Ok(checkout(&repo, commit, &parent, &limits)?)
        })
        .await
        .map_err(|e| GenerateError::new(ErrorKind::Internal, &e))?
    }

    fn cache_key(
        &self,
        url: &RepoUrl,
        revision: &str,
        req: &ManifestRequest,
        refs: &[(&RefSourceSpec, RepoUrl, gix::ObjectId)],
    ) -> String {
        let app = &req.app;
        let key = serde_json::json!({
            "v": 1,
            "repo": url.as_str(),
            "revision": revision,
            "source": req.source,
            "app": [app.name, app.namespace, app.project, app.kube_version, app.api_versions],
            "refs": refs.iter().map(|(r, u, c)| [r.name.clone(), u.as_str().to_owned(), c.to_string()]).collect::<Vec<_>>(),
            "tools": self.inner.tool_versions,
        });
        let digest = sha2::Sha256::digest(key.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `helm version` and `kustomize version`, or a note that a tool is unavailable.
async fn tool_versions(runner: &ToolRunner, config: &RepoServerConfig) -> String {
    use crate::render::process::Invocation;
    let mut parts = Vec::new();
    for (tool, program, args) in [
        ("helm", &config.helm.program, vec!["version", "--short"]),
        ("kustomize", &config.kustomize.program, vec!["version"]),
    ] {
        let out = runner
            .run(Invocation {
                tool,
                program,
                command: "version",
                args: args.into_iter().map(Into::into).collect(),
                cwd: runner.home(),
                env: Vec::new(),
            })
            .await;
        let version = match out {
            Ok(out) => String::from_utf8_lossy(&out).trim().to_owned(),
            Err(e) => {
                tracing::warn!(tool, error = %e, "tool unavailable; sources that need it will fail");
                "unavailable".to_owned()
            }
        };
        parts.push(format!("{tool}={version}"));
    }
    parts.join(",")
}
