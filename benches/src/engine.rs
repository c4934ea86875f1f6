//! The `engine` scenario: sync, diff and the cluster cache against a real kube-apiserver.
//!
//! 1. **sync** — 500 resources of one Application (config maps, services, deployments)
//!    synced by [`SyncRunner`] into one namespace vs `kubectl apply --server-side` of the
//!    same manifests into another namespace of the same API server; first the creating run,
//!    then a re-sync with nothing to change. Rounds interleave (kubectl, Capstan, Capstan,
//!    kubectl, …) on fresh namespaces (`sync_500_ms`, `kubectl_500_ms`,
//!    `sync_500_vs_kubectl_ratio`, `resync_500_vs_kubectl_ratio`);
//! 2. **diff** — [`diff::diff`] over 5,000 desired/live pairs shaped like what an API server
//!    returns (defaults, managed fields, status), on one thread, timed by its on-CPU time;
//!    the baseline is the cheapest meaningful comparison of the same pairs: serde_json
//!    equality after dropping `status` and `metadata` (`diff_us_per_resource`,
//!    `diff_baseline_us_per_resource`);
//! 3. **cache** — a [`ClusterCache`] watching a namespace of 1,000 objects of one app (600
//!    config maps, 200 services, 200 deployments, synced by Capstan with tracking
//!    annotations): the growth of the process's heap from before the cache started to when
//!    it had listed everything, measured by a counting global allocator, per object
//!    (`cache_bytes_per_object`), next to the cache's own accounting
//!    (`cache_accounted_bytes_per_object`); the baseline is the heap the same objects take
//!    as listed JSON values, as a cache holding whole objects would keep them
//!    (`full_objects_bytes_per_object`, `cache_vs_full_objects_ratio`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use capstan_engine::HealthAssessor;
use capstan_engine::cache::tracking::{Tracking, TrackingMethod};
use capstan_engine::cache::{CacheSettings, ClusterCache};
use capstan_engine::diff;
use capstan_engine::resources::ApiResolver;
use capstan_engine::sync::{SyncRequest, SyncRunner};
use capstan_model::OperationPhase;
use capstan_testkit::KubeApiServer;
use serde_json::{Value, json};

use crate::stats::{median, ms};
use crate::{Unit, figure, progress};
use crate::{alloc, clock};

/// Resources in the sync phase (the figure's name says 500).
const SYNC_RESOURCES: usize = 500;
/// Pairs in the diff phase (the figure's name says per resource; the issue asks 5,000).
const DIFF_RESOURCES: usize = 5_000;

/// Runs the scenario.
pub(crate) async fn run(quick: bool) -> anyhow::Result<()> {
    progress!("machine: {}", crate::machine());
    let server = KubeApiServer::start().await?;
    sync_phase(&server, if quick { 2 } else { 5 }).await?;
    diff_phase(if quick { 2 } else { 5 })?;
    cache_phase(&server).await?;
    Ok(())
}

/// Objects in the cache phase (the figure is per object; the goal is per 1,000).
const CACHE_OBJECTS: usize = 1_000;

async fn cache_phase(server: &KubeApiServer) -> anyhow::Result<()> {
    let client = server.client().await?;
    let ns = server.test_namespace("cache").await?;
    let runner = SyncRunner::new(
        ApiResolver::new(client.clone()),
        Arc::new(HealthAssessor::builtin_only()),
    );
    let request = SyncRequest {
        app: "bench".into(),
        namespace: ns.clone(),
        desired: manifests(CACHE_OBJECTS),
        tracking: Some(Tracking::new(TrackingMethod::Annotation)),
        ..SyncRequest::default()
    };
    let mut state = runner.plan(&request).await;
    runner
        .run(&mut state, Duration::from_millis(50), |_| {})
        .await;
    ensure!(
        state.phase == OperationPhase::Succeeded,
        "sync failed: {}",
        state.message
    );

    let before = alloc::allocated();
    let settings = CacheSettings {
        namespaces: vec![ns.clone()],
        ..CacheSettings::new("bench", TrackingMethod::Annotation)
    };
    let cache = ClusterCache::start(client.clone(), settings).await?;
    cache.wait_for_sync(Duration::from_secs(120)).await?;
    let grown = alloc::allocated().saturating_sub(before);
    let stats = cache.stats();
    ensure!(
        stats.objects >= CACHE_OBJECTS && cache.managed_by("bench").len() == CACHE_OBJECTS,
        "the cache holds {} objects, {} of them tracked by the app",
        stats.objects,
        cache.managed_by("bench").len()
    );
    let per_object = grown as f64 / stats.objects as f64;
    progress!(
        "cache: {} objects, heap grew {grown} bytes ({:.2} MiB per 1,000 objects); own accounting {} bytes",
        stats.objects,
        per_object * 1000.0 / f64::from(1u32 << 20),
        stats.bytes
    );
    cache.stop();

    // Baseline: the same objects as JSON values, whole, as a list returns them.
    let resolver = ApiResolver::new(client.clone());
    let mut kinds = Vec::new();
    for (api_version, kind) in [
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
    ] {
        let probe = json!({"apiVersion": api_version, "kind": kind});
        kinds.push(resolver.resolve(&probe).await?);
    }
    let before = alloc::allocated();
    let mut full: Vec<Value> = Vec::new();
    for kind in &kinds {
        let api = resolver.api(kind, &ns);
        for obj in api.list(&kube::api::ListParams::default()).await? {
            full.push(serde_json::to_value(obj)?);
        }
    }
    let full_grown = alloc::allocated().saturating_sub(before);
    let full_per_object = full_grown as f64 / full.len() as f64;
    figure("cache_bytes_per_object", per_object, Unit::Bytes);
    figure(
        "cache_accounted_bytes_per_object",
        stats.bytes_per_object(),
        Unit::Bytes,
    );
    figure(
        "full_objects_bytes_per_object",
        full_per_object,
        Unit::Bytes,
    );
    figure(
        "cache_vs_full_objects_ratio",
        per_object / full_per_object,
        Unit::Ratio,
    );
    Ok(())
}

/// The app's manifests: 60 % config maps, 20 % services, 20 % deployments.
fn manifests(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| match i % 5 {
            0 => json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc-{i}"), "labels": {"app": "bench"}},
                "spec": {"selector": {"app": format!("web-{i}")},
                    "ports": [{"port": 80, "targetPort": 8080}]}}),
            1 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("web-{i}"), "labels": {"app": "bench"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": format!("web-{i}")}},
                    "template": {"metadata": {"labels": {"app": format!("web-{i}")}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                            "ports": [{"containerPort": 8080}],
                            "env": [{"name": "INDEX", "value": i.to_string()}]}]}}}}),
            _ => json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("conf-{i}"), "labels": {"app": "bench"}},
                "data": {"index": i.to_string(), "payload": "x".repeat(256)}}),
        })
        .collect()
}

async fn kubectl_apply(
    server: &KubeApiServer,
    ns: &str,
    file: &std::path::Path,
) -> anyhow::Result<Duration> {
    let kubectl = capstan_testkit::tools::kubernetes("kubectl")?;
    let kubeconfig = server.kubeconfig_file()?;
    let started = Instant::now();
    let out = tokio::process::Command::new(kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args([
            "apply",
            "--server-side",
            "--field-manager=kubectl-bench",
            "-n",
            ns,
            "-f",
        ])
        .arg(file)
        .output()
        .await?;
    let spent = started.elapsed();
    ensure!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(spent)
}

async fn capstan_sync(
    runner: &SyncRunner,
    ns: &str,
    desired: &[Value],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let request = SyncRequest {
        app: "bench".into(),
        namespace: ns.to_owned(),
        desired: desired.to_vec(),
        ..SyncRequest::default()
    };
    let mut state = runner.plan(&request).await;
    runner
        .run(&mut state, Duration::from_millis(50), |_| {})
        .await;
    let spent = started.elapsed();
    ensure!(
        state.phase == OperationPhase::Succeeded,
        "sync failed: {}",
        state.message
    );
    Ok(spent)
}

async fn sync_phase(server: &KubeApiServer, rounds: usize) -> anyhow::Result<()> {
    let desired = manifests(SYNC_RESOURCES);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("manifests.yaml");
    let yaml: Vec<String> = desired
        .iter()
        .map(serde_saphyr::to_string)
        .collect::<Result<_, _>>()?;
    std::fs::write(&file, yaml.join("---\n"))?;
    let client = server.client().await?;
    let runner = SyncRunner::new(
        ApiResolver::new(client.clone()),
        Arc::new(HealthAssessor::builtin_only()),
    );
    // Warm-up: discovery for both sides, connections, the API server's caches.
    let warm = server.test_namespace("warm").await?;
    kubectl_apply(server, &warm, &file).await?;
    capstan_sync(&runner, &server.test_namespace("warm").await?, &desired).await?;

    let (mut ours, mut theirs, mut ours_again, mut theirs_again) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let ns_kubectl = server.test_namespace("kubectl").await?;
        let ns_capstan = server.test_namespace("capstan").await?;
        let kubectl_first = round % 2 == 0;
        for side in [kubectl_first, !kubectl_first] {
            if side {
                theirs.push(ms(kubectl_apply(server, &ns_kubectl, &file).await?));
                theirs_again.push(ms(kubectl_apply(server, &ns_kubectl, &file).await?));
            } else {
                ours.push(ms(capstan_sync(&runner, &ns_capstan, &desired).await?));
                ours_again.push(ms(capstan_sync(&runner, &ns_capstan, &desired).await?));
            }
        }
        progress!(
            "sync round {round}: capstan {:.0}/{:.0} ms, kubectl {:.0}/{:.0} ms (create/re-apply)",
            ours[round],
            ours_again[round],
            theirs[round],
            theirs_again[round]
        );
    }
    figure("sync_500_ms", median(&ours), Unit::Ms);
    figure("kubectl_500_ms", median(&theirs), Unit::Ms);
    figure(
        "sync_500_vs_kubectl_ratio",
        median(&ours) / median(&theirs),
        Unit::Ratio,
    );
    figure(
        "resync_500_vs_kubectl_ratio",
        median(&ours_again) / median(&theirs_again),
        Unit::Ratio,
    );
    Ok(())
}

/// A live object the way an API server returns `desired`: defaults, metadata, managed
/// fields and status added.
fn as_live(desired: &Value, i: usize) -> Value {
    let mut live = desired.clone();
    let meta = &mut live["metadata"];
    meta["namespace"] = json!("bench");
    meta["uid"] = json!(format!("5b0c6f3e-0000-4000-8000-{i:012}"));
    meta["resourceVersion"] = json!((100_000 + i).to_string());
    meta["generation"] = json!(1);
    meta["creationTimestamp"] = json!("2026-11-26T10:00:00Z");
    meta["managedFields"] = json!([{"manager": "capstan", "operation": "Apply",
        "apiVersion": desired["apiVersion"], "time": "2026-11-26T10:00:00Z",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {}}}}]);
    if desired["kind"] == "Deployment" {
        let spec = &mut live["spec"];
        spec["progressDeadlineSeconds"] = json!(600);
        spec["revisionHistoryLimit"] = json!(10);
        spec["strategy"] = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
        let pod = &mut spec["template"]["spec"];
        pod["restartPolicy"] = json!("Always");
        pod["terminationGracePeriodSeconds"] = json!(30);
        pod["dnsPolicy"] = json!("ClusterFirst");
        pod["schedulerName"] = json!("default-scheduler");
        pod["securityContext"] = json!({});
        let container = &mut pod["containers"][0];
        container["imagePullPolicy"] = json!("IfNotPresent");
        container["terminationMessagePath"] = json!("/dev/termination-log");
        container["terminationMessagePolicy"] = json!("File");
        container["resources"] = json!({});
        container["ports"][0]["protocol"] = json!("TCP");
        live["status"] = json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
            "availableReplicas": 2, "updatedReplicas": 2,
            "conditions": [{"type": "Available", "status": "True"}]});
    } else if desired["kind"] == "Service" {
        let spec = &mut live["spec"];
        spec["clusterIP"] = json!("10.0.0.10");
        spec["clusterIPs"] = json!(["10.0.0.10"]);
        spec["type"] = json!("ClusterIP");
        spec["sessionAffinity"] = json!("None");
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ports"][0]["protocol"] = json!("TCP");
        live["status"] = json!({"loadBalancer": {}});
    }
    live
}

/// The baseline comparison: equality of everything but `metadata` and `status`.
fn naive_equal(desired: &Value, live: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(desired) == strip(live)
}

fn diff_phase(rounds: usize) -> anyhow::Result<()> {
    let desired = manifests(DIFF_RESOURCES);
    let live: Vec<Value> = desired
        .iter()
        .enumerate()
        .map(|(i, d)| as_live(d, i))
        .collect();
    let (mut ours, mut baseline) = (vec![], vec![]);
    for round in 0..=rounds {
        let (modified, spent) = clock::measure(|| {
            desired
                .iter()
                .zip(&live)
                .map(|(d, l)| diff::diff(Some(d), Some(l), &[]).map(|r| r.modified))
                .collect::<Result<Vec<bool>, String>>()
        });
        let modified = modified.map_err(anyhow::Error::msg).context("diff")?;
        ensure!(
            modified.iter().all(|m| !m),
            "server defaults must not count as differences"
        );
        let (naive, naive_spent) = clock::measure(|| {
            desired
                .iter()
                .zip(&live)
                .filter(|(d, l)| naive_equal(d, l))
                .count()
        });
        // The naive comparison sees the defaults as differences: it is a floor for the cost
        // of any comparison, not an equivalent.
        progress!(
            "diff round {round}: {:.1} µs/resource (baseline {:.1}, which calls {naive} of {DIFF_RESOURCES} equal)",
            spent.best().as_secs_f64() * 1e6 / DIFF_RESOURCES as f64,
            naive_spent.best().as_secs_f64() * 1e6 / DIFF_RESOURCES as f64,
        );
        if round > 0 {
            ours.push(spent.best().as_secs_f64() * 1e6 / DIFF_RESOURCES as f64);
            baseline.push(naive_spent.best().as_secs_f64() * 1e6 / DIFF_RESOURCES as f64);
        }
    }
    figure("diff_us_per_resource", median(&ours), Unit::Us);
    figure("diff_baseline_us_per_resource", median(&baseline), Unit::Us);
    Ok(())
}
