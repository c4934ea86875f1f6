//! The controller end to end: an Application in the embedded store, its manifests in a real
//! Git repository served over smart HTTP, rendered by an in-process repo-server, compared and
//! synced into a real kube-apiserver — then drift is healed and a new commit (with a file
//! removed) is deployed and pruned.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_controller::ownership::OwnAll;
use capstan_controller::queue::{QueueConfig, Request, Resync};
use capstan_controller::reconcile::IN_CLUSTER_SERVER;
use capstan_controller::{ClusterHandle, Controller, ControllerConfig, Reconciler};
use capstan_engine::HealthAssessor;
use capstan_engine::cache::tracking::{Tracking, TrackingMethod};
use capstan_engine::cache::{CacheSettings, ClusterCache};
use capstan_engine::resources::ApiResolver;
use capstan_engine::sync::SyncRunner;
use capstan_model::{HealthStatusCode, OperationPhase, SyncStatusCode};
use capstan_repo::service::{RepoServer, RepoServerConfig};
use capstan_store::kinds::Applications;
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use capstan_testkit::{init_test_logging, shared, wait_until};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

fn cm(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: {value}\n")
}

async fn value_of(api: &Api<ConfigMap>, name: &str) -> Result<Option<String>> {
    Ok(api
        .get_opt(name)
        .await?
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .and_then(|c| c.data.and_then(|d| d.get("k").cloned())))
}

#[tokio::test]
async fn applications_are_synced_healed_and_updated_from_git() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let client = server.client().await?;
    let ns = server.test_namespace("ctrl").await?;

    // Git: two config maps.
    let repo = GitRepo::init()?;
    repo.write_all(&[("app/settings.yaml", cm("settings", "v1")), ("app/extra.yaml", cm("extra", "one"))])?;
    repo.commit("first")?;
    let git = GitHttpServer::start_temp(GitHttpOptions::default())?;
    let url = git.url_for(&repo)?;

    // The control plane, in process.
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb"), EmbeddedOptions::default()).await?);
    let mut repo_config = RepoServerConfig::new(dir.path().join("repo"));
    repo_config.ref_ttl = Duration::ZERO;
    let repo_server = RepoServer::new(repo_config).await.map_err(|e| anyhow::anyhow!(e.message))?;
    let cache = ClusterCache::start(
        client.clone(),
        CacheSettings {
            namespaces: vec![ns.clone()],
            ..CacheSettings::new("in-cluster", TrackingMethod::Annotation)
        },
    )
    .await?;
    cache.wait_for_sync(DEADLINE).await?;
    let assessor = Arc::new(HealthAssessor::builtin_only());
    let cluster = Arc::new(ClusterHandle {
        name: "in-cluster".into(),
        server: IN_CLUSTER_SERVER.into(),
        cache,
        resolver: ApiResolver::new(client.clone()),
        runner: SyncRunner::new(ApiResolver::new(client.clone()), assessor.clone()),
    });
    let reconciler = Reconciler::new(
        store.clone(),
        repo_server,
        vec![cluster],
        assessor,
        Tracking::new(TrackingMethod::Annotation),
        Arc::new(OwnAll),
    )
    .with_poll(Duration::from_millis(100));
    let controller = Controller::new(
        store.clone(),
        reconciler,
        ControllerConfig {
            workers: 2,
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));

    // The Application, as a user writes it for Argo CD. Background pruning: this API server
    // runs no garbage collector to finish foreground deletions.
    let app = capstan_model::parse_application_yaml(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: guestbook\n  namespace: capstan\nspec:\n  project: default\n  source:\n    repoURL: {url}\n    path: app\n    targetRevision: HEAD\n  destination:\n    server: {IN_CLUSTER_SERVER}\n    namespace: {ns}\n  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n    syncOptions:\n    - PrunePropagationPolicy=background\n"
    ))?;
    let apps = TypedStore::<Applications>::new(store.clone());
    let at = ObjectRef::new("capstan", "guestbook");
    apps.create(&at, &app).await?;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    wait_until("the first sync", DEADLINE, || async {
        Ok((value_of(&config_maps, "settings").await?.as_deref() == Some("v1")
            && value_of(&config_maps, "extra").await?.is_some())
        .then_some(()))
    })
    .await?;
    let status = wait_until("Synced and Healthy in the status", DEADLINE, || async {
        let status = apps.get(&at).await?.and_then(|o| o.status).map(|s| s.value);
        Ok(status.filter(|s| {
            s.sync.status == Some(SyncStatusCode::Synced)
                && s.health.status == Some(HealthStatusCode::Healthy)
        }))
    })
    .await?;
    assert_eq!(status.resources.len(), 2, "{:?}", status.resources);
    assert_eq!(status.history.len(), 1);
    let op = status.operation_state.context("an operation ran")?;
    assert_eq!(op.phase, Some(OperationPhase::Succeeded));
    assert!(op.operation.initiated_by.automated);

    // Drift made by someone else is healed.
    config_maps
        .patch(
            "settings",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings"}, "data": {"k": "tampered"}})),
        )
        .await?;
    wait_until("self-heal", DEADLINE, || async {
        Ok((value_of(&config_maps, "settings").await?.as_deref() == Some("v1")).then_some(()))
    })
    .await?;

    // A new commit changes one object and removes the other: deployed and pruned.
    repo.write_all(&[("app/settings.yaml", cm("settings", "v2"))])?;
    repo.remove("app/extra.yaml")?;
    let second = repo.commit("second")?;
    queue.enqueue(at.clone(), Request::refresh());
    wait_until("the new commit deployed and the removed file pruned", DEADLINE, || async {
        Ok((value_of(&config_maps, "settings").await?.as_deref() == Some("v2")
            && value_of(&config_maps, "extra").await?.is_none())
        .then_some(()))
    })
    .await?;
    let status = wait_until("the status at the new revision", DEADLINE, || async {
        let status = apps.get(&at).await?.and_then(|o| o.status).map(|s| s.value);
        Ok(status.filter(|s| s.sync.revision == second && s.sync.status == Some(SyncStatusCode::Synced)))
    })
    .await?;
    assert!(
        status.history.iter().any(|h| h.revision == second),
        "{:?}",
        status.history
    );

    let _ = stop.send(());
    running.await??;
    Ok(())
}
