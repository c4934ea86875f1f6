//! The cluster cache and cluster connections against a real kube-apiserver: tracking per
//! method, changes and change notifications, ownership trees (with the real
//! controller-manager creating ReplicaSets and Pods), CRDs that appear after the cache
//! started, relists, memory per object, and every kind of credential.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use capstan_engine::cache::{
    BodyRetention, CacheMetrics, CacheSettings, ClusterCache, GroupKind, TrackingMethod,
};
use capstan_engine::cluster::{ClientCertificate, ClusterConnection, ClusterError, ExecProvider};
use capstan_engine::health::GroupKindPattern;
use capstan_engine::resources::ResourceKey;
use capstan_model::Sensitive;
use capstan_testkit::{KubeApiServer, init_test_logging, shared, wait_until};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

fn cm_key(ns: &str, name: &str) -> ResourceKey {
    ResourceKey {
        group: String::new(),
        kind: "ConfigMap".into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

/// Settings watching only ConfigMaps in `ns`: light, and blind to the other tests.
fn configmaps_in(ns: &str, method: TrackingMethod) -> CacheSettings {
    CacheSettings {
        namespaces: vec![ns.to_owned()],
        inclusions: vec![GroupKindPattern::new("ConfigMap")],
        ..CacheSettings::new(format!("test-{ns}"), method)
    }
}

async fn start(server: &KubeApiServer, settings: CacheSettings) -> Result<ClusterCache> {
    let cache = ClusterCache::start(server.client().await?, settings).await?;
    cache.wait_for_sync(DEADLINE).await?;
    Ok(cache)
}

async fn apply(client: &kube::Client, ns: &str, manifest: Value) -> Result<Value> {
    let api_version = manifest["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let kind = manifest["kind"].as_str().unwrap_or_default();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = if ns.is_empty() {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    };
    let name = manifest["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let applied = api
        .patch(
            &name,
            &PatchParams::apply("capstan-test").force(),
            &Patch::Apply(&manifest),
        )
        .await
        .with_context(|| format!("applying {kind} {name}"))?;
    Ok(serde_json::to_value(applied)?)
}

fn configmap(name: &str, annotations: Value, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": annotations, "labels": labels},
        "data": {"key": "value"}})
}

/// Waits until `check` holds for the cache.
async fn until(what: &str, check: impl Fn() -> bool) -> Result<()> {
    wait_until(what, DEADLINE, || {
        let ok = check();
        async move { Ok(ok.then_some(())) }
    })
    .await
}

#[tokio::test]
async fn tracked_objects_are_indexed_per_tracking_method() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("cache").await?;
    let client = server.client().await?;
    let id = |app: &str, name: &str| format!("{app}:/ConfigMap:{ns}/{name}");
    apply(
        &client,
        &ns,
        configmap(
            "by-label",
            json!({}),
            json!({"app.kubernetes.io/instance": "label-app"}),
        ),
    )
    .await?;
    apply(
        &client,
        &ns,
        configmap(
            "by-capstan",
            json!({"capstan.dev/tracking-id": id("capstan-app", "by-capstan")}),
            json!({}),
        ),
    )
    .await?;
    apply(
        &client,
        &ns,
        configmap(
            "by-argo",
            json!({"argocd.argoproj.io/tracking-id": id("team_argo-app", "by-argo")}),
            json!({}),
        ),
    )
    .await?;
    // Annotation copied from another object: tracked by nobody.
    apply(
        &client,
        &ns,
        configmap(
            "copied",
            json!({"capstan.dev/tracking-id": id("capstan-app", "by-capstan")}),
            json!({}),
        ),
    )
    .await?;
    // Both markers: each method reads its own.
    apply(
        &client,
        &ns,
        configmap(
            "both",
            json!({"capstan.dev/tracking-id": id("capstan-app", "both"), "argocd.argoproj.io/tracking-id": id("team_argo-app", "both")}),
            json!({"app.kubernetes.io/instance": "label-app"}),
        ),
    )
    .await?;

    let names = |cache: &ClusterCache, app: &str| -> Vec<String> {
        cache.managed_by(app).into_iter().map(|k| k.name).collect()
    };
    let expected: [(TrackingMethod, &str, &[&str]); 5] = [
        (TrackingMethod::Label, "label-app", &["both", "by-label"]),
        (
            TrackingMethod::Annotation,
            "capstan-app",
            &["both", "by-capstan"],
        ),
        (
            TrackingMethod::AnnotationAndLabel,
            "capstan-app",
            &["both", "by-capstan"],
        ),
        (
            TrackingMethod::ArgoAnnotation,
            "team_argo-app",
            &["both", "by-argo"],
        ),
        (
            TrackingMethod::ArgoAnnotationAndLabel,
            "team_argo-app",
            &["both", "by-argo"],
        ),
    ];
    for (method, app, objects) in expected {
        let cache = start(server, configmaps_in(&ns, method)).await?;
        assert_eq!(names(&cache, app), objects, "{method}");
        assert_eq!(
            cache.apps(),
            vec![app.to_owned()],
            "{method}: only its own marker counts"
        );
        // Only tracked objects keep their body; the others are known all the same.
        assert!(cache.get(&cm_key(&ns, objects[0])).is_some(), "{method}");
        assert!(cache.get(&cm_key(&ns, "copied")).is_none(), "{method}");
        assert!(cache.contains(&cm_key(&ns, "copied")), "{method}");
        // `live` reads what the cache does not keep from the server.
        let copied = cache
            .live(&cm_key(&ns, "copied"))
            .await?
            .context("exists")?;
        assert_eq!(copied["data"]["key"], "value");
        assert!(copied["metadata"].get("managedFields").is_none());
        assert_eq!(cache.live(&cm_key(&ns, "absent")).await?, None);
    }
    Ok(())
}

#[tokio::test]
async fn changes_are_reflected_and_reported_per_app() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("cache").await?;
    let client = server.client().await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = CacheMetrics::register(&mut registry);
    // The whole cluster, default kinds: the configuration a controller runs.
    let settings = CacheSettings {
        metrics: Some(metrics),
        ..CacheSettings::new("changes", TrackingMethod::Annotation)
    };
    let cache = start(server, settings).await?;
    let kinds: BTreeSet<String> = cache
        .kinds()
        .iter()
        .map(|k| k.group_kind.to_string())
        .collect();
    for watched in [
        "ConfigMap",
        "Pod",
        "apps/ReplicaSet",
        "batch/Job",
        "discovery.k8s.io/EndpointSlice",
        "apiextensions.k8s.io/CustomResourceDefinition",
    ] {
        assert!(kinds.contains(watched), "{watched} is watched: {kinds:?}");
    }
    for excluded in [
        "Event",
        "events.k8s.io/Event",
        "coordination.k8s.io/Lease",
        "authorization.k8s.io/SubjectAccessReview",
    ] {
        assert!(!kinds.contains(excluded), "{excluded} is not watched");
    }
    let mut changes = cache.subscribe();
    let tracking =
        |name: &str| json!({"capstan.dev/tracking-id": format!("web:/ConfigMap:{ns}/{name}")});

    // Create.
    let parent = apply(
        &client,
        &ns,
        configmap("settings", tracking("settings"), json!({})),
    )
    .await?;
    until("the new ConfigMap to be tracked", || {
        cache.managed_by("web") == vec![cm_key(&ns, "settings")]
    })
    .await?;
    let changed = tokio::time::timeout(DEADLINE, changes.changed())
        .await?
        .context("open")?;
    assert!(changed.contains("web"), "{changed:?}");

    // Update.
    let mut updated = configmap("settings", tracking("settings"), json!({}));
    updated["data"]["key"] = json!("new");
    apply(&client, &ns, updated).await?;
    until("the update to show", || {
        cache
            .get(&cm_key(&ns, "settings"))
            .is_some_and(|v| v["data"]["key"] == "new")
    })
    .await?;

    // A child through ownerReferences joins the tree, and its events touch the app.
    let uid = parent["metadata"]["uid"]
        .as_str()
        .context("uid")?
        .to_owned();
    let mut child = configmap("settings-child", json!({}), json!({}));
    child["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "uid": uid}]);
    apply(&client, &ns, child).await?;
    until("the child to join the tree", || {
        cache.tree("web").len() == 2
    })
    .await?;
    let tree = cache.tree("web");
    assert_eq!(tree[0].key, cm_key(&ns, "settings"));
    assert_eq!(tree[0].app.as_deref(), Some("web"));
    assert_eq!(tree[1].key, cm_key(&ns, "settings-child"));
    assert_eq!(tree[1].parents, vec![uid.clone()]);
    assert_eq!(cache.children(&uid), vec![cm_key(&ns, "settings-child")]);
    assert_eq!(cache.apps_of(&cm_key(&ns, "settings-child")), vec!["web"]);
    wait_until("the child's event to be reported for web", DEADLINE, || {
        let got = changes.try_changed();
        async move { Ok(got.filter(|apps| apps.contains("web")).map(|_| ())) }
    })
    .await?;

    // Delete.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    api.delete("settings-child", &DeleteParams::default())
        .await?;
    api.delete("settings", &DeleteParams::default()).await?;
    until("the deletes to show", || {
        cache.managed_by("web").is_empty() && !cache.contains(&cm_key(&ns, "settings-child"))
    })
    .await?;

    let stats = cache.stats();
    assert!(
        stats.objects > 0 && stats.bytes > 0 && stats.events > 0,
        "{stats:?}"
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    for metric in [
        "capstan_cluster_cache_objects{cluster=\"changes\"}",
        "capstan_cluster_cache_bytes{cluster=\"changes\"}",
        "capstan_cluster_cache_events_total{cluster=\"changes\",kind=\"ConfigMap\"}",
    ] {
        assert!(text.contains(metric), "{metric} missing in:\n{text}");
    }
    Ok(())
}

fn crd(group: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

#[tokio::test]
async fn crds_created_after_start_are_watched() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("cache").await?;
    let client = server.client().await?;
    let cache = start(
        server,
        CacheSettings::new("crds", TrackingMethod::Annotation),
    )
    .await?;
    let group = format!("{ns}.capstan.test");
    let widget = GroupKind::new(&group, "Widget");
    assert!(!cache.kinds().iter().any(|k| k.group_kind == widget));

    apply(&client, "", crd(&group)).await?;
    until("the new kind to be watched", || {
        cache
            .kinds()
            .iter()
            .any(|k| k.group_kind == widget && k.synced)
    })
    .await?;
    let outcome: Result<()> = async {
        apply(&client, &ns, json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": {"name": "w", "annotations": {"capstan.dev/tracking-id": format!("shop:{group}/Widget:{ns}/w")}},
            "spec": {"size": 3}}))
        .await?;
        until("the custom resource to be tracked", || !cache.managed_by("shop").is_empty()).await?;
        let key = ResourceKey { group: group.clone(), kind: "Widget".into(), namespace: ns.clone(), name: "w".into() };
        assert_eq!(cache.get(&key).context("kept")?["spec"]["size"], 3);
        Ok(())
    }
    .await;

    // The CRD goes: so do the kind and its objects.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete(&format!("widgets.{group}"), &DeleteParams::default())
        .await?;
    outcome?;
    until("the kind to be dropped", || {
        !cache.kinds().iter().any(|k| k.group_kind == widget) && cache.managed_by("shop").is_empty()
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn relists_match_a_fresh_list_after_churn() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("cache").await?;
    let client = server.client().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cache = start(server, configmaps_in(&ns, TrackingMethod::Annotation)).await?;
    // Churn: creates, updates and deletes racing with the watch.
    futures::stream::iter(0..60)
        .map(|i| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let name = format!("cm-{i}");
                let ann =
                    json!({"capstan.dev/tracking-id": format!("churn:/ConfigMap:{ns}/{name}")});
                apply(&client, &ns, configmap(&name, ann.clone(), json!({}))).await?;
                if i % 3 == 0 {
                    let mut changed = configmap(&name, ann, json!({}));
                    changed["data"]["key"] = json!(format!("v{i}"));
                    apply(&client, &ns, changed).await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    for i in (0..60).filter(|i| i % 4 == 1) {
        api.delete(&format!("cm-{i}"), &DeleteParams::default())
            .await?;
    }

    let fresh = || async {
        let list = api.list(&ListParams::default()).await?;
        let mut names: Vec<(String, String)> = list
            .items
            .into_iter()
            .map(|cm| {
                (
                    cm.metadata.name.unwrap_or_default(),
                    cm.metadata.resource_version.unwrap_or_default(),
                )
            })
            .filter(|(n, _)| n.starts_with("cm-"))
            .collect();
        names.sort();
        anyhow::Ok(names)
    };
    let cached = |cache: &ClusterCache| -> Vec<(String, String)> {
        cache
            .tree("churn")
            .into_iter()
            .map(|n| (n.key.name, n.resource_version))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let expected = fresh().await?;
    assert_eq!(expected.len(), 45);
    wait_until("the cache to equal a fresh list", DEADLINE, || async {
        Ok((cached(&cache) == expected).then_some(()))
    })
    .await?;

    // Relisting (what a 410 Gone causes) gives the same picture and is counted.
    cache.invalidate();
    wait_until("the relist", DEADLINE, || async {
        Ok((cache.stats().relists > 0).then_some(()))
    })
    .await?;
    cache.wait_for_sync(DEADLINE).await?;
    assert_eq!(cached(&cache), fresh().await?);
    Ok(())
}

#[tokio::test]
async fn memory_per_object_for_a_thousand_configmaps() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("cache").await?;
    let client = server.client().await?;
    futures::stream::iter(0..1000)
        .map(|i| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let name = format!("config-{i:04}");
                // A typical rendered ConfigMap: tracking annotation, the usual labels, a few
                // settings, and the last-applied annotation kubectl users leave behind.
                let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name,
                        "labels": {"app.kubernetes.io/name": "shop", "app.kubernetes.io/part-of": "shop",
                            "app.kubernetes.io/managed-by": "capstan"},
                        "annotations": {"capstan.dev/tracking-id": format!("shop:/ConfigMap:{ns}/{name}"),
                            "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(400)}},
                    "data": {"LOG_LEVEL": "info", "FEATURE_FLAGS": "a,b,c", "ENDPOINT": format!("https://svc-{i}.shop.svc:8443")}});
                let api: Api<ConfigMap> = Api::namespaced(client, &ns);
                api.create(&PostParams::default(), &serde_json::from_value(manifest)?).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;

    for (label, method, retention) in [
        (
            "tracked (body kept)",
            TrackingMethod::Annotation,
            BodyRetention::Tracked,
        ),
        (
            "untracked (no body)",
            TrackingMethod::Label,
            BodyRetention::Tracked,
        ),
    ] {
        let settings = CacheSettings {
            retention,
            ..configmaps_in(&ns, method)
        };
        let cache = start(server, settings).await?;
        let stats = cache.stats();
        let per_object = stats.bytes_per_object();
        println!(
            "cache_bytes_per_object {label}: {per_object:.0} B ({} objects, {} bytes, {} of them bodies; {:.2} MiB per 1,000 objects)",
            stats.objects,
            stats.bytes,
            stats.body_bytes,
            per_object * 1000.0 / (1024.0 * 1024.0)
        );
        // A controller-manager on the shared apiserver (the simulated cluster's) publishes
        // `kube-root-ca.crt` into every namespace, at a moment of its choosing.
        let root_ca = Api::<ConfigMap>::namespaced(server.client().await?, &ns)
            .get_opt("kube-root-ca.crt")
            .await?
            .is_some();
        assert!(
            stats.objects == 1000 || (stats.objects == 1001 && root_ca),
            "{} objects cached (root CA ConfigMap present: {root_ca})",
            stats.objects
        );
        assert!(per_object > 0.0);
        assert!(
            per_object < 16.0 * 1024.0,
            "{label}: {per_object} bytes per ConfigMap"
        );
    }
    Ok(())
}

#[tokio::test]
async fn deployment_trees_reach_replicasets_and_pods() -> Result<()> {
    init_test_logging();
    let (server, sim) = shared::simulated_cluster().await?;
    let ns = server.test_namespace("cache-tree").await?;
    let client = server.client().await?;
    let cache = start(
        server,
        CacheSettings::new("tree", TrackingMethod::ArgoAnnotation),
    )
    .await?;
    let outcome: Result<()> = async {
        apply(&client, &ns, json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"argocd.argoproj.io/tracking-id": format!("guestbook:apps/Deployment:{ns}/web")},
                "labels": {"app.kubernetes.io/instance": "guestbook"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "app.kubernetes.io/instance": "guestbook"}},
                    "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}}}}))
        .await?;
        until("the tree to hold the Deployment, its ReplicaSet and two running Pods", || {
            let tree = cache.tree("guestbook");
            let kinds: Vec<&str> = tree.iter().map(|n| n.key.kind.as_str()).collect();
            let healthy_pods = tree
                .iter()
                .filter(|n| n.key.kind == "Pod" && n.health.as_ref().is_some_and(|h| h.status == capstan_engine::HealthStatusCode::Healthy))
                .count();
            kinds.starts_with(&["Deployment", "ReplicaSet"]) && healthy_pods == 2
        })
        .await?;
        let tree = cache.tree("guestbook");
        assert_eq!(cache.managed_by("guestbook").len(), 1, "Pods copy the instance label but are not roots");
        let rs = &tree[1];
        assert_eq!(rs.parents, vec![tree[0].uid.clone()]);
        assert!(tree[2..].iter().all(|p| p.parents == vec![rs.uid.clone()]));
        let deploy = cache.get(&tree[0].key).context("tracked body")?;
        let compact = serde_json::to_vec(&deploy)?.len();
        let pod = cache.live(&tree[2].key).await?.context("pod")?;
        println!(
            "compact body: Deployment {compact} B; Pod (not kept by default) {} B; cache {:.0} B/object over {} objects",
            serde_json::to_vec(&pod)?.len(),
            cache.stats().bytes_per_object(),
            cache.stats().objects
        );
        Ok(())
    }
    .await;
    if let Err(err) = outcome {
        bail!("{err:#}\n{}", sim.diagnostics());
    }
    Ok(())
}

// ---- credentials ----

/// The error connecting with `conn` (which must fail).
async fn connect_err(conn: &ClusterConnection, why: &str) -> Result<ClusterError> {
    match conn.connect().await {
        Ok(_) => bail!("connecting must fail: {why}"),
        Err(err) => Ok(err),
    }
}

fn base(server: &KubeApiServer) -> ClusterConnection {
    ClusterConnection {
        ca_pem: Some(server.ca_pem().to_owned()),
        ..ClusterConnection::new(server.url())
    }
}

#[tokio::test]
async fn bearer_token_ca_and_server_name() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let conn = ClusterConnection {
        bearer_token: Some(Sensitive::new(server.admin_token())),
        ..base(server)
    };
    let (_, info) = conn.connect().await?;
    assert_eq!(info.user, "admin");
    assert!(
        info.groups.iter().any(|g| g == "system:masters"),
        "{info:?}"
    );
    assert!(info.server_version.starts_with('v'));

    // The certificate names `kubernetes`: verifying against it works, against another name not.
    let named = ClusterConnection {
        tls_server_name: Some("kubernetes".into()),
        ..conn.clone()
    };
    named.connect().await?;
    let wrong = ClusterConnection {
        tls_server_name: Some("wrong.example".into()),
        ..conn.clone()
    };
    let err = connect_err(&wrong, "name mismatch").await?;
    assert!(err.to_string().contains("TLS"), "{err}");

    // Without the CA the server is not trusted; `insecure` skips the check.
    let untrusted = ClusterConnection {
        ca_pem: None,
        ..conn.clone()
    };
    let err = connect_err(&untrusted, "unknown CA").await?;
    assert!(err.to_string().contains("TLS verification failed"), "{err}");
    let insecure = ClusterConnection {
        ca_pem: None,
        insecure: true,
        ..conn.clone()
    };
    insecure.connect().await?;

    // A kubeconfig gives the same connection.
    let from_kubeconfig = ClusterConnection::from_kubeconfig(&server.kubeconfig_yaml()?, None)?;
    assert_eq!(from_kubeconfig.connect().await?.1.user, "admin");
    Ok(())
}

#[tokio::test]
async fn wrong_or_missing_credentials_fail_clearly() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let wrong = ClusterConnection {
        bearer_token: Some(Sensitive::new("not-the-token")),
        ..base(server)
    };
    let err = connect_err(&wrong, "wrong token").await?;
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(
        err.to_string().contains("rejected the credentials"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("not-the-token"));

    // The cache says the same when it starts.
    let err = ClusterCache::start(
        wrong.client().await?,
        CacheSettings::new("wrong", TrackingMethod::Annotation),
    )
    .await
    .expect_err("discovery fails");
    assert!(
        err.to_string().contains("rejected the credentials"),
        "{err}"
    );

    // No credentials: anonymous, which may read the version but nothing else.
    let err = connect_err(&base(server), "anonymous").await?;
    assert_eq!(err.status(), Some(403), "{err}");

    // A client certificate the server's CA did not sign is refused (and is sent: anonymous
    // requests get 403, not 401).
    let other_ca = capstan_testkit::pki::TestCa::new("not-the-cluster-ca")?;
    let cert = other_ca.client_cert("admin", Some("system:masters"))?;
    let foreign = ClusterConnection {
        client_certificate: Some(ClientCertificate {
            cert_pem: cert.cert_pem,
            key_pem: Sensitive::new(cert.key_pem),
        }),
        ..base(server)
    };
    let err = connect_err(&foreign, "foreign client cert").await?;
    assert_eq!(err.status(), Some(401), "{err}");

    // One the cluster's CA signed is accepted, as the user and group it names.
    let cert = server.client_cert("cert-admin", Some("system:masters"))?;
    let signed = ClusterConnection {
        client_certificate: Some(ClientCertificate {
            cert_pem: cert.cert_pem,
            key_pem: Sensitive::new(cert.key_pem),
        }),
        ..base(server)
    };
    let (_, info) = signed.connect().await?;
    assert_eq!(info.user, "cert-admin");
    assert!(
        info.groups.iter().any(|g| g == "system:masters"),
        "{:?}",
        info.groups
    );
    Ok(())
}

/// Writes an executable shell script.
fn script(dir: &std::path::Path, name: &str, body: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path.display().to_string())
}

#[tokio::test]
async fn exec_providers_supply_tokens_and_fail_without_leaking_them() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let dir = tempfile::tempdir()?;
    // The plugin gets its token through the environment, as real plugins get their secrets.
    let plugin = script(
        dir.path(),
        "token-plugin",
        r#"printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$CAPSTAN_TEST_TOKEN""#,
    )?;
    let conn = ClusterConnection {
        exec: Some(ExecProvider {
            command: plugin,
            env: vec![(
                "CAPSTAN_TEST_TOKEN".into(),
                Sensitive::new(server.admin_token()),
            )],
            api_version: "client.authentication.k8s.io/v1".into(),
            ..ExecProvider::default()
        }),
        ..base(server)
    };
    let (client, info) = conn.connect().await?;
    assert_eq!(info.user, "admin");
    // And the cache runs on it.
    let ns = server.test_namespace("cache").await?;
    let cache = ClusterCache::start(client, configmaps_in(&ns, TrackingMethod::Annotation)).await?;
    cache.wait_for_sync(DEADLINE).await?;

    let failing = script(
        dir.path(),
        "failing-plugin",
        "echo 'token expired, run login' >&2; exit 3",
    )?;
    let broken = ClusterConnection {
        exec: Some(ExecProvider {
            command: failing,
            env: vec![("CAPSTAN_TEST_TOKEN".into(), Sensitive::new("s3cret-value"))],
            ..ExecProvider::default()
        }),
        ..base(server)
    };
    let err = connect_err(&broken, "the plugin fails").await?;
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(text.contains("token expired, run login"), "{text}");
    assert!(!text.contains("s3cret-value"), "credentials leaked: {text}");

    let missing = ClusterConnection {
        exec: Some(ExecProvider {
            command: dir.path().join("absent").display().to_string(),
            ..ExecProvider::default()
        }),
        ..base(server)
    };
    let err = connect_err(&missing, "the plugin is missing").await?;
    assert!(err.to_string().contains("could not be started"), "{err}");
    Ok(())
}
