//! The `controller` scenario: the all-in-one control plane (embedded store, in-process
//! repo-server, cluster cache, controller with the all-in-one's defaults) assembled in this
//! process against a dedicated kube-apiserver, driving 1,000 Applications of 5 resources each
//! (100 with `--quick`; the figure names keep saying 1000 and 5000, see
//! `docs/performance.md`).
//!
//! 1. **first sync** — the controller is started on an empty store, then every Application
//!    is created in the store (automated sync with prune); the clock runs from just before
//!    the first create until the stored status of every Application says Synced and Healthy,
//!    followed through the store's watch (`apps_1000_synced_s`, `app_syncs_per_s`); the
//!    creates, one after another, are inside that time and also timed alone
//!    (`create_1000_apps_s`);
//! 2. **sweep** — with everything synced and the queue quiet, a periodic request (what the
//!    resync timer enqueues) for every Application; the clock runs until the controller's
//!    `reconciles_total` has grown by one per Application. Nothing changed, so no status is
//!    written and the store cannot tell when the sweep ended; the counter can
//!    (`sweep_1000_unchanged_s`);
//! 3. **memory** — this process's resident set after the sweep (`rss_mib_1000_apps`) and the
//!    live heap counted by the global allocator (`heap_mib_1000_apps`);
//! 4. **baseline** — with the control plane stopped, `kubectl apply --server-side` of the same
//!    5,000 resources (one file, into other namespaces of the same API server)
//!    (`kubectl_apply_5000_s`, `apps_synced_vs_kubectl_ratio`).
//!
//! The fixture is one Git repository served over smart HTTP on loopback: `apps/app-NNNN/`
//! holds a ConfigMap, a Secret, a ServiceAccount, a ClusterIP Service and a Role, kinds that
//! are healthy without any Kubernetes controller (the API server runs alone). Applications
//! are spread over [`NAMESPACES`] namespaces, which the cluster cache watches.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use capstan_controller::clusters::ClusterTemplate;
use capstan_controller::ownership::OwnAll;
use capstan_controller::queue::{Request, WorkQueue};
use capstan_controller::reconcile::{IN_CLUSTER_NAME, IN_CLUSTER_SERVER, ReconcileError};
use capstan_controller::{ClusterHandle, Controller, ControllerConfig, Reconciler};
use capstan_engine::HealthAssessor;
use capstan_engine::cache::CacheMetrics;
use capstan_engine::cache::tracking::{Tracking, TrackingMethod};
use capstan_engine::sync::SyncMetrics;
use capstan_model::{ApplicationStatus, HealthStatusCode, SyncStatusCode};
use capstan_repo::service::{RepoServer, RepoServerConfig};
use capstan_store::kinds::Applications;
use capstan_store::typed::{ObjectRef, TypedEvent, TypedStore};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use capstan_testkit::KubeApiServer;
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use futures::StreamExt as _;
use prometheus_client::registry::Registry;

use crate::stats::{median, percentile};
use crate::{Unit, alloc, direct, figure, progress};

/// Applications in a full run (the figures' names say 1000).
const APPS: usize = 1_000;
/// Applications with `--quick`.
const QUICK_APPS: usize = 100;
/// Resources per Application (the kubectl figure's name says 5000 = 1000 × 5).
const RESOURCES_PER_APP: usize = 5;
/// Namespaces the Applications are spread over.
const NAMESPACES: usize = 10;
/// Where the bench stores its Applications (the all-in-one's default namespace).
const APP_NAMESPACE: &str = "capstan";

/// Runs the scenario.
pub(crate) async fn run(quick: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let apps = if quick { QUICK_APPS } else { APPS };
    // The first sync of 1,000 apps is expected in minutes; the deadline only catches a hang.
    let deadline = if quick {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(1800)
    };
    progress!("machine: {}", crate::machine());
    let (rss_at_start, _) = rss_kib()?;
    progress!(
        "{apps} Applications × {RESOURCES_PER_APP} resources over {NAMESPACES} namespaces{}",
        if quick {
            " (--quick: the figure names still say 1000 / 5000)"
        } else {
            ""
        }
    );
    let server = KubeApiServer::start().await?;
    let client = server.client().await?;
    let mut namespaces = Vec::with_capacity(NAMESPACES);
    for _ in 0..NAMESPACES {
        namespaces.push(server.test_namespace("apps").await?);
    }

    let repo = GitRepo::init()?;
    let fixture_started = Instant::now();
    for i in 0..apps {
        for (file, manifest) in app_manifests(i, None) {
            repo.write(format!("{}/{file}", app_path(i)), manifest)?;
        }
    }
    repo.commit(&format!("{apps} applications"))?;
    let git = GitHttpServer::start_temp(GitHttpOptions::default())?;
    let url = git.url_for(&repo)?;
    progress!(
        "fixture: {} files committed and served in {:.1} s",
        apps * RESOURCES_PER_APP,
        fixture_started.elapsed().as_secs_f64()
    );

    // The live heap's high-water mark, sampled: the allocator only counts what is live now.
    let heap_peak = Arc::new(AtomicUsize::new(0));
    let sampler = tokio::spawn({
        let heap_peak = heap_peak.clone();
        async move {
            loop {
                heap_peak.fetch_max(alloc::allocated(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let work = tempfile::tempdir()?;
    let plane = ControlPlane::start(client, namespaces.clone(), work.path()).await?;
    let store_apps = TypedStore::<Applications>::new(plane.store.clone());

    // 1. First sync: from the first create to every stored status Synced and Healthy.
    let revision = store_apps.list(None).await?.revision;
    let t0 = Instant::now();
    for i in 0..apps {
        let ns = &namespaces[i % NAMESPACES];
        let app = application(&app_name(i), &url, &app_path(i), ns)?;
        store_apps
            .create(&ObjectRef::new(APP_NAMESPACE, app_name(i)), &app)
            .await?;
    }
    let created = t0.elapsed();
    progress!(
        "created {apps} Applications in the store in {:.2} s, one after another",
        created.as_secs_f64()
    );
    let synced = wait_all_synced(&store_apps, &plane, apps, revision, t0, deadline).await;
    let first_sync = match synced {
        Ok(first_sync) => first_sync,
        Err(err) => {
            progress!("metrics at failure:\n{}", plane.metrics_summary()?);
            plane.stop().await?;
            return Err(err);
        }
    };
    let synced = first_sync.all;
    progress!(
        "per Application, create → Synced and Healthy: median {:.1} s, p90 {:.1} s, max {:.1} s; the first after {:.1} s",
        median(&first_sync.per_app),
        percentile(&first_sync.per_app, 90.0),
        percentile(&first_sync.per_app, 100.0),
        first_sync.first.as_secs_f64()
    );
    let confirmed = store_apps
        .list(None)
        .await?
        .items
        .iter()
        .filter(|a| synced_and_healthy(a.status.as_ref().map(|s| &s.value)))
        .count();
    ensure!(
        confirmed == apps,
        "the watch saw every Application Synced and Healthy, a list shows {confirmed} of {apps}"
    );
    let counters = plane.counters()?;
    progress!(
        "all {apps} Synced and Healthy after {:.1} s; syncs {}, reconciles {}",
        synced.as_secs_f64(),
        describe(&counters, "capstan_controller_syncs_total"),
        describe(&counters, "capstan_controller_reconciles_total"),
    );
    let succeeded_syncs = sum_where(&counters, "capstan_controller_syncs_total", |l| {
        l.contains("phase=\"Succeeded\"")
    });
    if succeeded_syncs != apps as f64 {
        progress!(
            "note: {succeeded_syncs} successful syncs for {apps} Applications (retries or re-syncs happened)"
        );
    }

    // 2. Sweep with nothing changed.
    let sweep = sweep(&plane, &store_apps, apps, deadline).await;
    let sweep = match sweep {
        Ok(took) => took,
        Err(err) => {
            progress!("metrics at failure:\n{}", plane.metrics_summary()?);
            plane.stop().await?;
            return Err(err);
        }
    };

    // 3. Memory of everything the all-in-one holds, at N Applications.
    let (rss, peak) = rss_kib()?;
    let heap = alloc::allocated();
    sampler.abort();
    progress!(
        "memory: resident {:.1} MiB (peak {:.1} MiB; {:.1} MiB before anything started), live heap {:.1} MiB (peak sampled every 50 ms: {:.1} MiB)",
        kib_to_mib(rss),
        kib_to_mib(peak),
        kib_to_mib(rss_at_start),
        bytes_to_mib(heap),
        bytes_to_mib(heap_peak.load(Ordering::Relaxed))
    );
    progress!("queue and cache metrics:\n{}", plane.metrics_summary()?);
    plane.stop().await?;
    figure("apps_1000_synced_s", synced.as_secs_f64(), Unit::S);
    figure("create_1000_apps_s", created.as_secs_f64(), Unit::S);
    figure(
        "app_syncs_per_s",
        apps as f64 / synced.as_secs_f64(),
        Unit::PerS,
    );
    figure("sweep_1000_unchanged_s", sweep.as_secs_f64(), Unit::S);
    figure("rss_mib_1000_apps", kib_to_mib(rss), Unit::Mib);
    figure("heap_mib_1000_apps", bytes_to_mib(heap), Unit::Mib);
    store_alone(apps, &url, &namespaces).await?;

    // 4. Baseline: kubectl, same resources, same API server, control plane stopped.
    let kubectl = kubectl_baseline(&server, apps).await?;

    figure("kubectl_apply_5000_s", kubectl.as_secs_f64(), Unit::S);
    figure(
        "apps_synced_vs_kubectl_ratio",
        synced.as_secs_f64() / kubectl.as_secs_f64(),
        Unit::Ratio,
    );
    progress!(
        "scenario took {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The control plane of `capstand all-in-one`, in this process, with its defaults.
struct ControlPlane {
    store: Arc<dyn Store>,
    embedded: EmbeddedStore,
    cluster: Arc<ClusterHandle>,
    queue: WorkQueue<ObjectRef>,
    registry: Registry,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ReconcileError>>,
}

impl ControlPlane {
    /// Assembles the all-in-one's parts the way `crates/capstand/src/all_in_one.rs` does,
    /// with its default settings (4 workers, 4 operation workers, resync 3 min ± 10 %, refs
    /// reused 3 min, annotation tracking, sync poll 500 ms), except that the cache watches
    /// `namespaces` only; starts the controller on the (empty) store once the cache has
    /// synced.
    async fn start(
        client: kube::Client,
        namespaces: Vec<String>,
        work: &Path,
    ) -> anyhow::Result<Self> {
        let embedded =
            EmbeddedStore::open(work.join("store.redb"), EmbeddedOptions::default()).await?;
        let store: Arc<dyn Store> = Arc::new(embedded.clone());
        // RepoServerConfig's defaults are the all-in-one's (ref TTL 3 min); no Helm, Kustomize
        // or Jsonnet here, so their settings do not matter.
        let repo_server = RepoServer::new(RepoServerConfig::new(work.join("repo-server")))
            .await
            .map_err(|e| anyhow::anyhow!("starting the repo-server: {}", e.message))?;
        let mut registry = Registry::default();
        let _grpc_latency = capstan_repo::metrics::register(&mut registry, &repo_server);
        let cache_metrics = CacheMetrics::register(&mut registry);
        let sync_metrics = SyncMetrics::default();
        let tracking = TrackingMethod::Annotation;
        let template = ClusterTemplate {
            tracking,
            assessor: Arc::new(HealthAssessor::builtin_only()),
            cache_metrics: Some(cache_metrics),
            sync_metrics: sync_metrics.clone(),
        };
        let cluster = Arc::new(
            template
                .start(client, IN_CLUSTER_NAME, IN_CLUSTER_SERVER, namespaces)
                .await?,
        );
        let reconciler = Reconciler::new(
            store.clone(),
            repo_server,
            vec![cluster.clone()],
            template.assessor.clone(),
            Tracking::new(tracking),
            Arc::new(OwnAll),
        );
        // The defaults are the all-in-one's (`--workers`, `--operation-workers`, `--resync`).
        let config = ControllerConfig::default();
        progress!("controller: {config:?}");
        let controller = Controller::new(store.clone(), reconciler, config);
        let controller_registry = registry.sub_registry_with_prefix("capstan_controller");
        controller.register_metrics(controller_registry);
        sync_metrics.register(controller_registry);
        let listed = Instant::now();
        cluster
            .cache
            .wait_for_sync(Duration::from_secs(300))
            .await?;
        progress!(
            "cluster cache synced in {:.1} s ({} objects)",
            listed.elapsed().as_secs_f64(),
            cluster.cache.stats().objects
        );
        let queue = controller.queue().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller.run(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            store,
            embedded,
            cluster,
            queue,
            registry,
            stop,
            task,
        })
    }

    /// Every counter and gauge sample of the registry: `name{labels}` → value.
    fn counters(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if let Ok(value) = value.parse::<f64>() {
                samples.insert(series.to_owned(), value);
            }
        }
        Ok(samples)
    }

    /// Reconciles counted so far, all results.
    fn reconciles(&self) -> anyhow::Result<f64> {
        Ok(sum_where(
            &self.counters()?,
            "capstan_controller_reconciles_total",
            |_| true,
        ))
    }

    /// The samples a reader wants when something is slow or wrong: the controller's,
    /// the queue's and the cache's, without histogram buckets.
    fn metrics_summary(&self) -> anyhow::Result<String> {
        let lines: Vec<String> = self
            .counters()?
            .into_iter()
            .filter(|(series, _)| {
                !series.contains("_bucket{")
                    && (series.starts_with("capstan_controller_")
                        || series.starts_with("capstan_cluster_cache_"))
            })
            .map(|(series, value)| format!("  {series} {value}"))
            .collect();
        Ok(lines.join("\n"))
    }

    /// Stops the controller (draining reconciles in progress), the cache and the store.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .context("the controller did not stop within 60 s")?
            .context("the controller task panicked")??;
        self.cluster.cache.stop();
        drop(self.store);
        self.embedded.close().await?;
        progress!("control plane stopped");
        Ok(())
    }
}

/// For the record: the same creates into a fresh store with nothing else running, to tell
/// the store's own cost (one durable commit per create) from contention with the controller.
async fn store_alone(apps: usize, url: &str, namespaces: &[String]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let embedded =
        EmbeddedStore::open(dir.path().join("store.redb"), EmbeddedOptions::default()).await?;
    let typed = TypedStore::<Applications>::new(Arc::new(embedded.clone()));
    let started = Instant::now();
    for i in 0..apps {
        let app = application(&app_name(i), url, &app_path(i), &namespaces[i % NAMESPACES])?;
        typed
            .create(&ObjectRef::new(APP_NAMESPACE, app_name(i)), &app)
            .await?;
    }
    let took = started.elapsed();
    drop(typed);
    embedded.close().await?;
    progress!(
        "store alone: {apps} creates one after another in {:.2} s ({:.1} ms each), no controller running",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / apps as f64
    );
    Ok(())
}

/// Whether a stored status says Synced and Healthy.
fn synced_and_healthy(status: Option<&ApplicationStatus>) -> bool {
    status.is_some_and(|s| {
        s.sync.status == Some(SyncStatusCode::Synced)
            && s.health.status == Some(HealthStatusCode::Healthy)
    })
}

/// How the first sync went, as the store's watch saw it.
struct FirstSync {
    /// From the first create to the last Application Synced and Healthy.
    all: Duration,
    /// From the first create to the first Application Synced and Healthy.
    first: Duration,
    /// Per Application, seconds from its create (as the watch saw it) to Synced and Healthy.
    per_app: Vec<f64>,
}

/// Follows the store's writes from `revision` (taken before the Applications were created)
/// until every one of `expected` Applications says Synced and Healthy. A watch costs nothing
/// while nothing is written, where polling a list of 1,000 Applications would take CPU from
/// the controller it measures; a watch that ends (compaction) is followed by a list and a new
/// watch.
async fn wait_all_synced(
    apps: &TypedStore<Applications>,
    plane: &ControlPlane,
    expected: usize,
    mut revision: capstan_store::Revision,
    t0: Instant,
    deadline: Duration,
) -> anyhow::Result<FirstSync> {
    // Per Application: when its create was seen, and whether its status is done now.
    let mut seen: HashMap<ObjectRef, (Instant, bool)> = HashMap::new();
    let mut done = 0usize;
    let mut first = None;
    let mut per_app = Vec::with_capacity(expected);
    let mut last_report = Instant::now();
    loop {
        let mut events = apps.watch(None, revision);
        loop {
            if done == expected && seen.len() == expected {
                return Ok(FirstSync {
                    all: t0.elapsed(),
                    first: first.unwrap_or_default(),
                    per_app,
                });
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                let syncs = sum_where(&plane.counters()?, "capstan_controller_syncs_total", |_| {
                    true
                });
                progress!(
                    "{:.0} s: {done}/{expected} Synced and Healthy, {syncs} syncs finished; in flight {}, queued {} (due or delayed)",
                    t0.elapsed().as_secs_f64(),
                    plane.queue.in_flight(),
                    plane.queue.len()
                );
            }
            if t0.elapsed() > deadline {
                return Err(stuck(apps, done, expected, t0).await);
            }
            let event = match tokio::time::timeout(Duration::from_secs(1), events.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(event))) => event,
                Ok(None) => break,
                Ok(Some(Err(err))) => {
                    progress!("status watch ended ({err}); listing again");
                    break;
                }
            };
            let (object, now_done) = match event {
                TypedEvent::SpecPut { object, spec } => {
                    revision = revision.max(spec.mod_revision);
                    seen.entry(object).or_insert((Instant::now(), false));
                    continue;
                }
                TypedEvent::StatusPut { object, status } => {
                    revision = revision.max(status.mod_revision);
                    (object, synced_and_healthy(Some(&status.value)))
                }
                TypedEvent::SpecDeleted {
                    object,
                    revision: at,
                }
                | TypedEvent::StatusDeleted {
                    object,
                    revision: at,
                } => {
                    revision = revision.max(at);
                    if seen.remove(&object).is_some_and(|(_, d)| d) {
                        done -= 1;
                    }
                    continue;
                }
            };
            let entry = seen.entry(object).or_insert((t0, false));
            match (entry.1, now_done) {
                (false, true) => {
                    done += 1;
                    per_app.push(entry.0.elapsed().as_secs_f64());
                    first.get_or_insert_with(|| t0.elapsed());
                }
                (true, false) => done -= 1,
                _ => {}
            }
            entry.1 = now_done;
        }
        let list = apps.list(None).await?;
        revision = list.revision;
        for app in &list.items {
            let now_done = synced_and_healthy(app.status.as_ref().map(|s| &s.value));
            let entry = seen.entry(app.object.clone()).or_insert((t0, false));
            match (entry.1, now_done) {
                (false, true) => done += 1,
                (true, false) => done -= 1,
                _ => {}
            }
            entry.1 = now_done;
        }
    }
}

/// The error for a first sync past its deadline, with the status of a few stragglers.
async fn stuck(
    apps: &TypedStore<Applications>,
    count: usize,
    expected: usize,
    t0: Instant,
) -> anyhow::Error {
    let list = match apps.list(None).await {
        Ok(list) => list,
        Err(err) => return err.into(),
    };
    let stragglers: Vec<String> = list
        .items
        .iter()
        .filter(|a| !synced_and_healthy(a.status.as_ref().map(|s| &s.value)))
        .take(3)
        .map(|a| {
            format!(
                "{}: {}",
                a.object,
                a.status.as_ref().map_or_else(
                    || "no status".to_owned(),
                    |s| serde_json::to_string(&s.value).unwrap_or_default()
                )
            )
        })
        .collect();
    anyhow::anyhow!(
        "only {count} of {expected} Applications Synced and Healthy after {:.0} s; some of the others:\n{}",
        t0.elapsed().as_secs_f64(),
        stragglers.join("\n")
    )
}

/// Waits for the queue to be quiet (nothing in flight, the reconcile count still for 2 s),
/// then asks for a periodic look at every Application and times how long until that many
/// more reconciles were counted; checks that every one of them found the app Synced.
async fn sweep(
    plane: &ControlPlane,
    apps: &TypedStore<Applications>,
    expected: usize,
    deadline: Duration,
) -> anyhow::Result<Duration> {
    let quiet_since = Instant::now();
    let mut last = plane.reconciles()?;
    let mut still = Instant::now();
    while still.elapsed() < Duration::from_secs(2) || plane.queue.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = plane.reconciles()?;
        if now != last || plane.queue.in_flight() > 0 {
            last = now;
            still = Instant::now();
        }
        ensure!(
            quiet_since.elapsed() < Duration::from_secs(120),
            "the controller kept reconciling for 2 minutes with nothing to change"
        );
    }
    let keys: Vec<ObjectRef> = apps
        .list(None)
        .await?
        .items
        .into_iter()
        .map(|a| a.object)
        .collect();
    ensure!(keys.len() == expected, "{} Applications listed", keys.len());
    let before = plane.counters()?;
    let base = sum_where(&before, "capstan_controller_reconciles_total", |_| true);
    let target = base + expected as f64;
    let t0 = Instant::now();
    for key in keys {
        plane.queue.enqueue(key, Request::periodic());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if plane.reconciles()? >= target {
            break;
        }
        ensure!(
            t0.elapsed() < deadline,
            "the sweep did not finish in {deadline:?}"
        );
    }
    let took = t0.elapsed();
    let after = plane.counters()?;
    let grown = |series: &str| {
        after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
    };
    let synced = grown("capstan_controller_reconciles_total{result=\"synced\"}");
    progress!(
        "sweep: {expected} reconciles in {:.2} s ({:.0} per second); reconciles during the sweep: {}",
        took.as_secs_f64(),
        expected as f64 / took.as_secs_f64(),
        describe_growth(&before, &after, "capstan_controller_reconciles_total")
    );
    ensure!(
        synced >= expected as f64,
        "only {synced} of the sweep's {expected} reconciles found their Application Synced"
    );
    Ok(took)
}

/// `kubectl apply --server-side` of the same resources (every namespace given in the
/// manifests, one file), timed like the engine scenario's baseline (process start and
/// discovery included) after a warm-up apply that fills kubectl's discovery cache.
async fn kubectl_baseline(server: &KubeApiServer, apps: usize) -> anyhow::Result<Duration> {
    let mut namespaces = Vec::with_capacity(NAMESPACES);
    for _ in 0..NAMESPACES {
        namespaces.push(server.test_namespace("kubectl").await?);
    }
    let warm_ns = server.test_namespace("kubectl-warm").await?;
    let dir = tempfile::tempdir()?;
    let warm = dir.path().join("warm.yaml");
    std::fs::write(&warm, manifests_file(&[(0, &warm_ns)]))?;
    let file = dir.path().join("all.yaml");
    let placed: Vec<(usize, &str)> = (0..apps)
        .map(|i| (i, namespaces[i % NAMESPACES].as_str()))
        .collect();
    std::fs::write(&file, manifests_file(&placed))?;

    let kubectl = capstan_testkit::tools::kubernetes("kubectl")?;
    let kubeconfig = server.kubeconfig_file()?;
    let apply = |file: &Path| {
        let mut cmd = Command::new(&kubectl);
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args([
                "apply",
                "--server-side",
                "--field-manager=kubectl-bench",
                "-f",
            ])
            .arg(file);
        cmd
    };
    let run = |cmd: Command| async move {
        tokio::task::spawn_blocking(move || direct::timed(cmd))
            .await
            .context("the kubectl thread panicked")?
    };
    run(apply(&warm)).await?;
    progress!("kubectl: applying {} resources", apps * RESOURCES_PER_APP);
    let (took, out) = run(apply(&file)).await?;
    let applied = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    ensure!(
        applied == apps * RESOURCES_PER_APP,
        "kubectl reported {applied} objects applied, expected {}",
        apps * RESOURCES_PER_APP
    );
    progress!(
        "kubectl: {applied} resources in {:.1} s",
        took.as_secs_f64()
    );
    Ok(took)
}

/// One YAML file of the resources of the apps given, each placed in its namespace.
fn manifests_file(apps: &[(usize, &str)]) -> String {
    let docs: Vec<String> = apps
        .iter()
        .flat_map(|(i, ns)| app_manifests(*i, Some(ns)).map(|(_, m)| m))
        .collect();
    docs.join("---\n")
}

fn app_name(i: usize) -> String {
    format!("app-{i:04}")
}

fn app_path(i: usize) -> String {
    format!("apps/{}", app_name(i))
}

/// The five resources of app `i` (file name, YAML), healthy without any controller. Names
/// are unique per app, as the apps share namespaces. `namespace` is for kubectl; Capstan
/// places them by the Application's destination.
fn app_manifests(
    i: usize,
    namespace: Option<&str>,
) -> impl Iterator<Item = (&'static str, String)> {
    let name = app_name(i);
    let meta = |kind_suffix: &str| {
        let ns = namespace.map_or_else(String::new, |ns| format!("\n  namespace: {ns}"));
        format!(
            "metadata:\n  name: {name}-{kind_suffix}{ns}\n  labels:\n    app.kubernetes.io/name: {name}\n"
        )
    };
    [
        (
            "configmap.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\n{}data:\n  index: \"{i}\"\n  settings.ini: |\n    [server]\n    port = 8080\n    name = {name}\n",
                meta("config")
            ),
        ),
        (
            "secret.yaml",
            // `data`, not `stringData`: the API server never returns stringData, so it
            // would always differ.
            format!(
                "apiVersion: v1\nkind: Secret\n{}type: Opaque\ndata:\n  password: c2VjcmV0LXZhbHVl\n",
                meta("secret")
            ),
        ),
        (
            "serviceaccount.yaml",
            format!("apiVersion: v1\nkind: ServiceAccount\n{}", meta("sa")),
        ),
        (
            "service.yaml",
            format!(
                "apiVersion: v1\nkind: Service\n{}spec:\n  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: {name}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n",
                meta("svc")
            ),
        ),
        (
            "role.yaml",
            format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n{}rules:\n- apiGroups: [\"\"]\n  resources: [\"configmaps\"]\n  resourceNames: [\"{name}-config\"]\n  verbs: [\"get\", \"watch\"]\n",
                meta("reader")
            ),
        ),
    ]
    .into_iter()
}

/// An Application in Argo CD's YAML: automated sync with prune, into `ns` of the cluster
/// the control plane runs in.
fn application(
    name: &str,
    url: &str,
    path: &str,
    ns: &str,
) -> anyhow::Result<capstan_model::Application> {
    Ok(capstan_model::parse_application_yaml(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: {APP_NAMESPACE}\nspec:\n  project: default\n  source:\n    repoURL: {url}\n    path: {path}\n    targetRevision: HEAD\n  destination:\n    server: {IN_CLUSTER_SERVER}\n    namespace: {ns}\n  syncPolicy:\n    automated:\n      prune: true\n"
    ))?)
}

/// The sum of the samples of `metric` whose label set passes `labels`.
fn sum_where(samples: &BTreeMap<String, f64>, metric: &str, labels: impl Fn(&str) -> bool) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series
                .strip_prefix(metric)
                .is_some_and(|rest| rest.is_empty() || (rest.starts_with('{') && labels(rest)))
        })
        .map(|(_, v)| v)
        .sum()
}

/// `metric`'s samples as `labels=value, …`.
fn describe(samples: &BTreeMap<String, f64>, metric: &str) -> String {
    let parts: Vec<String> = samples
        .iter()
        .filter_map(|(series, v)| {
            series
                .strip_prefix(metric)
                .map(|labels| format!("{labels} {v}"))
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// How `metric`'s samples grew from `before` to `after`.
fn describe_growth(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    metric: &str,
) -> String {
    let parts: Vec<String> = after
        .iter()
        .filter_map(|(series, v)| {
            let labels = series.strip_prefix(metric)?;
            let grown = v - before.get(series).copied().unwrap_or(0.0);
            (grown != 0.0).then(|| format!("{labels} +{grown}"))
        })
        .collect();
    parts.join(", ")
}

/// This process's resident set and its peak, in KiB, from `/proc/self/status`.
fn rss_kib() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("/proc/self/status has no {name}"))?;
        let kib = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim();
        Ok(kib.parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn bytes_to_mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}
