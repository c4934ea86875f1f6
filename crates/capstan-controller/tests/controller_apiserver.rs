//! The controller end to end: an Application in the embedded store, its manifests in a real
//! Git repository served over smart HTTP, rendered by an in-process repo-server, compared and
//! synced into a real kube-apiserver — then drift is healed and a new commit (with a file
//! removed) is deployed and pruned.
//!
//! Multi-threaded runtimes: the controller's tasks then run on worker threads with stacks of
//! their own, as in `capstand`; on a current-thread runtime they would nest inside the test's
//! own poll and an unoptimised build can run out of the test thread's stack.

use anyhow::{Context, Result};
use capstan_controller::queue::Request;
use capstan_model::{HealthStatusCode, OperationPhase, SyncStatusCode};
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_testkit::git_http::GitHttpOptions;
use capstan_testkit::{init_test_logging, wait_until};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

mod common;
use common::{DEADLINE, World, application, cm, value_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_are_synced_healed_and_updated_from_git() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl", GitHttpOptions::default()).await?;
    let World {
        ns,
        repo,
        url,
        apps,
        config_maps,
        ..
    } = &world;

    // Git: two config maps.
    repo.write_all(&[
        ("app/settings.yaml", cm("settings", "v1")),
        ("app/extra.yaml", cm("extra", "one")),
    ])?;
    repo.commit("first")?;

    // The control plane, in process. Background pruning: this API server runs no garbage
    // collector to finish foreground deletions.
    let running = world.start().await?;
    let app = application(
        "guestbook",
        url,
        "app",
        ns,
        "  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n    syncOptions:\n    - PrunePropagationPolicy=background\n",
    )?;
    let at = ObjectRef::new("capstan", "guestbook");
    apps.create(&at, &app).await?;

    wait_until("the first sync", DEADLINE, || async {
        Ok(
            (value_of(config_maps, "settings").await?.as_deref() == Some("v1")
                && value_of(config_maps, "extra").await?.is_some())
            .then_some(()),
        )
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
        Ok((value_of(config_maps, "settings").await?.as_deref() == Some("v1")).then_some(()))
    })
    .await?;

    // Counted: at least one automated sync and one self-heal (a cache event racing the
    // first sync's status may add a harmless extra self-heal). The counter moves when the
    // operation ends, a moment after the object is back.
    for series in [
        r#"capstan_controller_syncs_total{trigger="automated",phase="Succeeded"} "#,
        r#"capstan_controller_syncs_total{trigger="self_heal",phase="Succeeded"} "#,
    ] {
        wait_until(series, DEADLINE, || async {
            let metrics = running.metrics_text()?;
            let count: Option<u64> = metrics
                .lines()
                .find_map(|l| l.strip_prefix(series))
                .and_then(|v| v.trim().parse().ok());
            Ok(count.filter(|c| *c >= 1))
        })
        .await?;
    }

    // A new commit changes one object and removes the other: deployed and pruned.
    repo.write_all(&[("app/settings.yaml", cm("settings", "v2"))])?;
    repo.remove("app/extra.yaml")?;
    let second = repo.commit("second")?;
    running.queue.enqueue(at.clone(), Request::refresh());
    wait_until(
        "the new commit deployed and the removed file pruned",
        DEADLINE,
        || async {
            Ok(
                (value_of(config_maps, "settings").await?.as_deref() == Some("v2")
                    && value_of(config_maps, "extra").await?.is_none())
                .then_some(()),
            )
        },
    )
    .await?;
    let status = wait_until("the status at the new revision", DEADLINE, || async {
        let status = apps.get(&at).await?.and_then(|o| o.status).map(|s| s.value);
        Ok(status
            .filter(|s| s.sync.revision == second && s.sync.status == Some(SyncStatusCode::Synced)))
    })
    .await?;
    assert!(
        status.history.iter().any(|h| h.revision == second),
        "{:?}",
        status.history
    );

    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_syncs_run_once_and_projects_are_enforced() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-manual", GitHttpOptions::default()).await?;
    let World {
        ns,
        repo,
        url,
        store,
        apps,
        config_maps,
        ..
    } = &world;
    repo.write_all(&[("app/settings.yaml", cm("settings", "v1"))])?;
    repo.commit("first")?;
    let running = world.start().await?;

    // No automated policy: compared, reported OutOfSync, nothing applied.
    let at = ObjectRef::new("capstan", "manual");
    apps.create(&at, &application("manual", url, "app", ns, "")?)
        .await?;
    wait_until("OutOfSync reported", DEADLINE, || async {
        let status = apps.get(&at).await?.and_then(|o| o.status).map(|s| s.value);
        Ok(status.filter(|s| s.sync.status == Some(SyncStatusCode::OutOfSync)))
    })
    .await?;
    assert_eq!(value_of(config_maps, "settings").await?, None);

    // A sync request (what `capstan app sync` will write) runs once and is cleared.
    let mut requested = apps.get(&at).await?.context("exists")?.spec.value;
    requested.operation = Some(capstan_model::Operation {
        sync: Some(capstan_model::SyncOperation::default()),
        initiated_by: capstan_model::OperationInitiator {
            username: "alice".into(),
            automated: false,
        },
        ..capstan_model::Operation::default()
    });
    apps.update_spec(&at, &requested, capstan_store::Precondition::None)
        .await?;
    let status = wait_until("the requested sync", DEADLINE, || async {
        let object = apps.get(&at).await?.context("exists")?;
        let status = object.status.map(|s| s.value);
        Ok(status.filter(|s| {
            s.sync.status == Some(SyncStatusCode::Synced) && object.spec.value.operation.is_none()
        }))
    })
    .await?;
    let op = status.operation_state.context("recorded")?;
    assert_eq!(op.phase, Some(OperationPhase::Succeeded));
    assert_eq!(op.operation.initiated_by.username, "alice");
    assert_eq!(
        value_of(config_maps, "settings").await?.as_deref(),
        Some("v1")
    );

    assert_eq!(
        status.source_type,
        Some(capstan_model::SourceType::Directory)
    );

    // A hard refresh asked for by annotation is served and the annotation removed.
    let mut refresh = apps.get(&at).await?.context("exists")?.spec.value;
    refresh
        .metadata
        .annotations
        .insert("argocd.argoproj.io/refresh".into(), "hard".into());
    apps.update_spec(&at, &refresh, capstan_store::Precondition::None)
        .await?;
    wait_until("the refresh request served", DEADLINE, || async {
        let app = apps.get(&at).await?.context("exists")?.spec.value;
        Ok((!app
            .metadata
            .annotations
            .contains_key("argocd.argoproj.io/refresh"))
        .then_some(()))
    })
    .await?;

    // A project that does not permit the repository: a condition, and nothing deployed.
    let projects = TypedStore::<capstan_store::kinds::AppProjects>::new(store.clone());
    let project = capstan_model::parse_app_project_yaml(
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: locked\n  namespace: capstan\nspec:\n  sourceRepos:\n  - https://git.example.com/*\n  destinations:\n  - server: '*'\n    namespace: '*'\n",
    )?;
    projects
        .create(&ObjectRef::new("capstan", "locked"), &project)
        .await?;
    let locked = ObjectRef::new("capstan", "locked-app");
    let mut app = application(
        "locked-app",
        url,
        "app",
        ns,
        "  syncPolicy:\n    automated: {}\n",
    )?;
    app.spec.project = "locked".into();
    apps.create(&locked, &app).await?;
    let status = wait_until("the project's verdict", DEADLINE, || async {
        let status = apps
            .get(&locked)
            .await?
            .and_then(|o| o.status)
            .map(|s| s.value);
        Ok(status.filter(|s| !s.conditions.is_empty()))
    })
    .await?;
    let condition = &status.conditions[0];
    assert_eq!(condition.condition_type, "InvalidSpecError");
    assert!(
        condition
            .message
            .contains("is not permitted in project 'locked'"),
        "{condition:?}"
    );
    assert_eq!(status.sync.status, Some(SyncStatusCode::Unknown));
    assert!(status.operation_state.is_none(), "never synced");

    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_interrupted_by_a_restart_resumes() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-resume", GitHttpOptions::default()).await?;
    let World {
        client,
        ns,
        repo,
        url,
        apps,
        config_maps,
        ..
    } = &world;
    // Wave 0: a Deployment that never becomes healthy on its own (no controllers here);
    // wave 1 waits for it.
    repo.write_all(&common::blocked_waves("app"))?;
    repo.commit("waves")?;
    let at = ObjectRef::new("capstan", "waves");
    apps.create(
        &at,
        &application(
            "waves",
            url,
            "app",
            ns,
            "  syncPolicy:\n    automated: {}\n",
        )?,
    )
    .await?;

    let first = world.start().await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns);
    wait_until(
        "wave 0 applied and the operation running",
        DEADLINE,
        || async {
            let status = apps.get(&at).await?.and_then(|o| o.status).map(|s| s.value);
            let running = status
                .and_then(|s| s.operation_state)
                .is_some_and(|o| o.phase == Some(OperationPhase::Running));
            Ok((running && deployments.get_opt("db").await?.is_some()).then_some(()))
        },
    )
    .await?;
    first.stop().await?;
    assert_eq!(
        value_of(config_maps, "after").await?,
        None,
        "wave 1 never started"
    );

    // The Deployment becomes available (written as its controller would), and a new
    // controller on the same store finishes the operation.
    capstan_testkit::workloads::mark_deployment_available(&deployments, "db").await?;
    let second = world.start().await?;
    let status = world.wait_for_phase(&at, OperationPhase::Succeeded).await?;
    assert_eq!(value_of(config_maps, "after").await?.as_deref(), Some("v1"));
    assert!(
        status
            .operation_state
            .is_some_and(|o| o.operation.initiated_by.automated)
    );
    second.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_with_the_finalizer_removes_resources_and_without_it_keeps_them() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-delete", GitHttpOptions::default()).await?;
    let World {
        ns,
        repo,
        url,
        apps,
        config_maps,
        ..
    } = &world;
    repo.write_all(&[
        ("cascade/a.yaml", cm("cascaded", "v1")),
        (
            "cascade/hook.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: goodbye\n  annotations:\n    argocd.argoproj.io/hook: PostDelete\ndata:\n  k: bye\n".to_owned(),
        ),
        ("orphan/b.yaml", cm("orphaned", "v1")),
    ])?;
    repo.commit("two apps")?;
    let running = world.start().await?;
    let auto = "  syncPolicy:\n    automated: {}\n";
    let cascade = ObjectRef::new("capstan", "cascade");
    let mut app = application("cascade", url, "cascade", ns, auto)?;
    app.metadata.finalizers = vec!["resources-finalizer.argocd.argoproj.io/background".into()];
    apps.create(&cascade, &app).await?;
    let orphan = ObjectRef::new("capstan", "orphan");
    apps.create(&orphan, &application("orphan", url, "orphan", ns, auto)?)
        .await?;
    wait_until("both apps synced", DEADLINE, || async {
        Ok((value_of(config_maps, "cascaded").await?.is_some()
            && value_of(config_maps, "orphaned").await?.is_some())
        .then_some(()))
    })
    .await?;

    for at in [&cascade, &orphan] {
        let mut app = apps.get(at).await?.context("exists")?.spec.value;
        app.metadata.deletion_timestamp = Some(capstan_controller::reconcile::now());
        apps.update_spec(at, &app, capstan_store::Precondition::None)
            .await?;
    }
    wait_until("both apps gone from the store", DEADLINE, || async {
        Ok(
            (apps.get(&cascade).await?.is_none() && apps.get(&orphan).await?.is_none())
                .then_some(()),
        )
    })
    .await?;
    assert_eq!(
        value_of(config_maps, "cascaded").await?,
        None,
        "cascade deleted it"
    );
    assert_eq!(
        value_of(config_maps, "goodbye").await?.as_deref(),
        Some("bye"),
        "the PostDelete hook ran"
    );
    assert_eq!(
        value_of(config_maps, "orphaned").await?.as_deref(),
        Some("v1"),
        "no finalizer: the resources stay"
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_of_apps_manages_its_children_in_the_store() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-aoa", GitHttpOptions::default()).await?;
    let World {
        ns,
        repo,
        url,
        apps,
        config_maps,
        ..
    } = &world;
    let child = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: child\nspec:\n  project: team\n  source:\n    repoURL: {url}\n    path: child\n    targetRevision: HEAD\n  destination:\n    server: {}\n    namespace: {ns}\n  syncPolicy:\n    automated: {{}}\n",
        capstan_controller::reconcile::IN_CLUSTER_SERVER
    );
    let project = "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: team\nspec:\n  sourceRepos: ['*']\n  destinations:\n  - server: '*'\n    namespace: '*'\n";
    repo.write_all(&[
        ("root/child.yaml", child),
        ("root/project.yaml", project.to_owned()),
        ("child/settings.yaml", cm("from-child", "v1")),
    ])?;
    repo.commit("root and child")?;
    let running = world.start().await?;
    let root = ObjectRef::new("capstan", "root");
    apps.create(
        &root,
        &application(
            "root",
            url,
            "root",
            ns,
            "  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n",
        )?,
    )
    .await?;

    // The child is written to the store, then reconciled and synced in its own right.
    wait_until("the child's resources", DEADLINE, || async {
        Ok(value_of(config_maps, "from-child").await?.map(|_| ()))
    })
    .await?;
    let at = ObjectRef::new("capstan", "child");
    let stored = apps
        .get(&at)
        .await?
        .context("the child is stored")?
        .spec
        .value;
    assert_eq!(
        stored
            .metadata
            .annotations
            .get("capstan.dev/managed-by-app")
            .map(String::as_str),
        Some("capstan/root")
    );
    let root_status = wait_until("the root in sync", DEADLINE, || async {
        let status = apps
            .get(&root)
            .await?
            .and_then(|o| o.status)
            .map(|s| s.value);
        Ok(status.filter(|s| s.sync.status == Some(SyncStatusCode::Synced)))
    })
    .await?;
    let kinds: Vec<&str> = root_status
        .resources
        .iter()
        .map(|r| r.kind.as_str())
        .collect();
    assert!(
        kinds.contains(&"Application") && kinds.contains(&"AppProject"),
        "{kinds:?}"
    );

    // An edit made behind Git's back is undone (self-heal of the root).
    let mut edited = stored.clone();
    edited.spec.source.as_mut().context("has a source")?.path = "elsewhere".into();
    apps.update_spec(&at, &edited, capstan_store::Precondition::None)
        .await?;
    running.queue.enqueue(root.clone(), Request::refresh());
    wait_until("the child restored", DEADLINE, || async {
        let app = apps.get(&at).await?.context("exists")?.spec.value;
        Ok((app.spec.source.as_ref().is_some_and(|s| s.path == "child")).then_some(()))
    })
    .await?;

    // Removed from Git: pruned from the store (no finalizer, so its resources stay).
    repo.remove("root/child.yaml")?;
    repo.commit("drop the child")?;
    // A normal refresh: it must not be answered by a ref listing that started before the
    // commit (the repo-server once coalesced such listings, and this step waited for a resync).
    running.queue.enqueue(root.clone(), Request::refresh());
    wait_until("the child pruned", DEADLINE, || async {
        Ok(apps.get(&at).await?.is_none().then_some(()))
    })
    .await?;
    assert!(value_of(config_maps, "from-child").await?.is_some());
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repositories_are_read_with_the_registered_credentials() -> Result<()> {
    init_test_logging();
    let world = World::new(
        "ctrl-private",
        GitHttpOptions::default().with_bearer_token("s3cr3t-token"),
    )
    .await?;
    let World {
        ns,
        repo,
        url,
        store,
        apps,
        config_maps,
        ..
    } = &world;
    repo.write_all(&[("app/settings.yaml", cm("private", "v1"))])?;
    repo.commit("private")?;
    let running = world.start().await?;
    let at = ObjectRef::new("capstan", "private");
    apps.create(
        &at,
        &application(
            "private",
            url,
            "app",
            ns,
            "  syncPolicy:\n    automated: {}\n",
        )?,
    )
    .await?;

    // Unregistered: the repository refuses, and the condition says so (without secrets).
    let status = wait_until("a comparison error", DEADLINE, || async {
        let status = apps.get(&at).await?.and_then(|o| o.status).map(|s| s.value);
        Ok(status.filter(|s| {
            s.conditions
                .iter()
                .any(|c| c.condition_type == "ComparisonError")
        }))
    })
    .await?;
    assert_eq!(status.sync.status, Some(SyncStatusCode::Unknown));

    // Registered with its token (as `capstan repo add` will): synced.
    let repositories = TypedStore::<capstan_store::kinds::Repositories>::new(store.clone());
    let registered = capstan_model::parse_repository_yaml(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata:\n  name: private\n  namespace: capstan\nspec:\n  url: {url}\n  bearerToken: s3cr3t-token\n"
    ))?;
    repositories
        .create(&ObjectRef::new("capstan", "private"), &registered)
        .await?;
    running.queue.enqueue(at.clone(), Request::refresh());
    wait_until("the private repository synced", DEADLINE, || async {
        Ok(value_of(config_maps, "private").await?.map(|_| ()))
    })
    .await?;
    let status = apps
        .get(&at)
        .await?
        .and_then(|o| o.status)
        .map(|s| s.value)
        .context("status")?;
    let text = serde_json::to_string(&status)?;
    assert!(!text.contains("s3cr3t-token"), "no secret in the status");
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_syncs_are_retried_within_the_limit() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-retry", GitHttpOptions::default()).await?;
    let World {
        ns,
        repo,
        url,
        apps,
        config_maps,
        ..
    } = &world;
    // `k: 1` is a number: the API server refuses the ConfigMap, so every attempt fails.
    repo.write_all(&[(
        "app/bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  k: 1\n".to_owned(),
    )])?;
    repo.commit("broken")?;
    let running = world.start().await?;
    let at = ObjectRef::new("capstan", "retried");
    apps.create(
        &at,
        &application(
            "retried",
            url,
            "app",
            ns,
            "  syncPolicy:\n    automated: {}\n    retry:\n      limit: 2\n      backoff:\n        duration: 200ms\n        factor: 2\n        maxDuration: 1s\n",
        )?,
    )
    .await?;
    let status = wait_until("two retries spent", DEADLINE, || async {
        let status = apps.get(&at).await?.and_then(|o| o.status).map(|s| s.value);
        Ok(status.filter(|s| {
            s.operation_state
                .as_ref()
                .is_some_and(|o| o.retry_count == 2)
        }))
    })
    .await?;
    let op = status.operation_state.context("recorded")?;
    assert_eq!(op.phase, Some(OperationPhase::Failed));
    assert!(op.message.contains("bad"), "{}", op.message);
    let series = r#"capstan_controller_syncs_total{trigger="retry",phase="Failed"} "#;
    let retries: u64 = running
        .metrics_text()?
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .context("retries counted")?;
    assert_eq!(retries, 2, "exactly the limit");

    // A fix in Git is a new revision: synced at once.
    repo.write_all(&[("app/bad.yaml", cm("bad", "fixed"))])?;
    repo.commit("fixed")?;
    running.queue.enqueue(at.clone(), Request::refresh());
    wait_until("the fix deployed", DEADLINE, || async {
        Ok((value_of(config_maps, "bad").await?.as_deref() == Some("fixed")).then_some(()))
    })
    .await?;
    running.stop().await?;
    Ok(())
}

/// Asks for `operation` on the Application at `at` (what the API writes) and waits until the
/// controller has run it and cleared it; returns the status then.
async fn run_requested(
    apps: &TypedStore<capstan_store::kinds::Applications>,
    at: &ObjectRef,
    operation: capstan_model::Operation,
) -> Result<capstan_model::ApplicationStatus> {
    let before = apps
        .get(at)
        .await?
        .and_then(|o| o.status)
        .map_or(0, |s| s.value.history.len());
    let mut app = apps.get(at).await?.context("exists")?.spec.value;
    app.operation = Some(operation);
    apps.update_spec(at, &app, capstan_store::Precondition::None)
        .await?;
    wait_until(
        "the requested operation run and cleared",
        DEADLINE,
        || async {
            let object = apps.get(at).await?.context("exists")?;
            let status = object.status.map(|s| s.value);
            Ok(status.filter(|s| {
                object.spec.value.operation.is_none()
                    && s.operation_state
                        .as_ref()
                        .is_some_and(|o| o.phase.is_some_and(|p| p != OperationPhase::Running))
                    && (s.history.len() > before
                        || s.operation_state
                            .as_ref()
                            .is_some_and(|o| o.phase != Some(OperationPhase::Succeeded)))
            }))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_redeploys_a_history_entry_even_with_git_unreachable() -> Result<()> {
    init_test_logging();
    let mut world = World::new("ctrl-rollback", GitHttpOptions::default()).await?;
    world
        .repo
        .write_all(&[("app/settings.yaml", cm("settings", "v1"))])?;
    let first = world.repo.commit("v1")?;
    let running = world.start().await?;
    let at = world.create_app("rollback", "app", "").await?;
    let alice = capstan_model::OperationInitiator {
        username: "alice".into(),
        automated: false,
    };
    let sync = capstan_model::Operation {
        sync: Some(capstan_model::SyncOperation::default()),
        initiated_by: alice.clone(),
        ..capstan_model::Operation::default()
    };
    run_requested(&world.apps, &at, sync.clone()).await?;

    world
        .repo
        .write_all(&[("app/settings.yaml", cm("settings", "v2"))])?;
    let second = world.repo.commit("v2")?;
    let status = wait_until("v2 seen", DEADLINE, || async {
        running.queue.enqueue(at.clone(), Request::refresh());
        let status = world.apps.get(&at).await?.and_then(|o| o.status);
        Ok(status
            .map(|s| s.value)
            .filter(|s| s.sync.revision == second))
    })
    .await?;
    assert_eq!(status.sync.status, Some(SyncStatusCode::OutOfSync));
    let status = run_requested(&world.apps, &at, sync).await?;
    assert_eq!(
        value_of(&world.config_maps, "settings").await?.as_deref(),
        Some("v2")
    );
    let revisions: Vec<&str> = status.history.iter().map(|h| h.revision.as_str()).collect();
    assert_eq!(revisions, [first.as_str(), second.as_str()]);
    let (v1, v2) = (&status.history[0], &status.history[1]);
    assert!(v1.manifests_digest.starts_with("sha256:"), "{v1:?}");
    assert_ne!(v1.manifests_digest, v2.manifests_digest);
    assert_eq!(v1.initiated_by.username, "alice");

    // The Git server goes away: the first entry's manifests are still served (from the
    // repo-server's manifest cache), and the rollback deploys them.
    world.stop_git();
    let rollback = capstan_model::Operation::rollback(v1, alice, false, false);
    let status = run_requested(&world.apps, &at, rollback).await?;
    let op = status.operation_state.clone().context("recorded")?;
    assert_eq!(op.phase, Some(OperationPhase::Succeeded), "{op:?}");
    assert_eq!(
        op.operation.sync.as_ref().and_then(|s| s.source.clone()),
        Some(v1.source.clone()),
        "the operation says it deployed a history entry's source"
    );
    assert_eq!(
        value_of(&world.config_maps, "settings").await?.as_deref(),
        Some("v1")
    );
    let last = status.history.last().context("a new entry")?;
    assert_eq!(status.history.len(), 3);
    assert_eq!(last.revision, first);
    assert_eq!(last.id, 2);
    assert_eq!(
        last.manifests_digest, v1.manifests_digest,
        "the same manifests as the first deployment"
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_waiting_for_a_rollout_does_not_stop_other_apps_being_compared() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-slots", GitHttpOptions::default()).await?;
    // Wave 0: a Deployment that never becomes healthy here (no controllers run), so the
    // sync waits at wave 1 for as long as the test lasts.
    world.repo.write_all(&common::blocked_waves("slow"))?;
    world
        .repo
        .write_all(&[("quick/cm.yaml", cm("quick", "v1"))])?;
    world.repo.commit("slow and quick")?;
    // One worker and one operation slot: before operations had their own slots, the waiting
    // sync held the only worker and nothing else was compared.
    let running = world.start_with_workers(1).await?;
    let slow = world
        .create_app("slow", "slow", "  syncPolicy:\n    automated: {}\n")
        .await?;
    world.wait_for_phase(&slow, OperationPhase::Running).await?;

    let quick = world.create_app("quick", "quick", "").await?;
    wait_until("the other app compared", DEADLINE, || async {
        let status = world.apps.get(&quick).await?.and_then(|o| o.status);
        Ok(status.filter(|s| s.value.sync.status == Some(SyncStatusCode::OutOfSync)))
    })
    .await?;
    let slow_status = world
        .apps
        .get(&slow)
        .await?
        .and_then(|o| o.status)
        .context("status")?
        .value;
    assert_eq!(
        slow_status.operation_state.and_then(|o| o.phase),
        Some(OperationPhase::Running),
        "the slow sync is still waiting"
    );
    running.stop().await?;
    Ok(())
}

/// The total of `capstan_controller_reconciles_total` over all results.
fn reconciles(running: &common::Running) -> Result<u64> {
    Ok(running
        .metrics_text()?
        .lines()
        .filter(|l| l.starts_with("capstan_controller_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_sync_interrupted_by_a_restart_runs_once() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-req-resume", GitHttpOptions::default()).await?;
    world.repo.write_all(&common::blocked_waves("app"))?;
    world.repo.commit("waves")?;
    let at = ObjectRef::new("capstan", "manual-waves");
    let mut app = application("manual-waves", &world.url, "app", &world.ns, "")?;
    app.operation = Some(capstan_model::Operation {
        sync: Some(capstan_model::SyncOperation::default()),
        initiated_by: capstan_model::OperationInitiator {
            username: "bob".into(),
            automated: false,
        },
        ..capstan_model::Operation::default()
    });
    world.apps.create(&at, &app).await?;

    let first = world.start().await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(world.client.clone(), &world.ns);
    wait_until("wave 0 applied", DEADLINE, || async {
        Ok(deployments.get_opt("db").await?.map(|_| ()))
    })
    .await?;
    first.stop().await?;
    capstan_testkit::workloads::mark_deployment_available(&deployments, "db").await?;

    let second = world.start().await?;
    let status = world.wait_for_phase(&at, OperationPhase::Succeeded).await?;
    let started = status.operation_state.and_then(|o| o.started_at);
    // A few more reconciles: the request was not left behind to run again.
    let seen = reconciles(&second)?;
    wait_until("two more reconciles", DEADLINE, || async {
        second.queue.enqueue(at.clone(), Request::refresh());
        Ok((reconciles(&second)? >= seen + 2).then_some(()))
    })
    .await?;
    let object = world.apps.get(&at).await?.context("exists")?;
    assert!(
        object.spec.value.operation.is_none(),
        "the request is cleared"
    );
    let status = object.status.context("status")?.value;
    assert_eq!(status.history.len(), 1, "{:?}", status.history);
    assert_eq!(status.history[0].initiated_by.username, "bob");
    assert_eq!(
        status.operation_state.and_then(|o| o.started_at),
        started,
        "no second operation"
    );
    assert_eq!(
        value_of(&world.config_maps, "after").await?.as_deref(),
        Some("v1")
    );
    second.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_automated_prune_a_removed_file_is_left_and_reported() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-noprune", GitHttpOptions::default()).await?;
    world.repo.write_all(&[
        ("app/keep.yaml", cm("keep", "v1")),
        ("app/gone.yaml", cm("gone", "v1")),
    ])?;
    world.repo.commit("two")?;
    let running = world.start().await?;
    let at = world
        .create_app(
            "noprune",
            "app",
            "  syncPolicy:\n    automated:\n      prune: false\n",
        )
        .await?;
    wait_until("both deployed", DEADLINE, || async {
        Ok((value_of(&world.config_maps, "gone").await?.is_some()
            && value_of(&world.config_maps, "keep").await?.is_some())
        .then_some(()))
    })
    .await?;

    world.repo.remove("app/gone.yaml")?;
    world
        .repo
        .write_all(&[("app/keep.yaml", cm("keep", "v2"))])?;
    let second = world.repo.commit("one")?;
    let status = wait_until("the new commit synced", DEADLINE, || async {
        running.queue.enqueue(at.clone(), Request::refresh());
        let status = world.apps.get(&at).await?.and_then(|o| o.status);
        Ok(status.map(|s| s.value).filter(|s| {
            s.history.iter().any(|h| h.revision == second)
                && s.sync.revision == second
                && s.resources.iter().any(|r| r.name == "gone")
        }))
    })
    .await?;
    assert_eq!(
        value_of(&world.config_maps, "keep").await?.as_deref(),
        Some("v2")
    );
    assert_eq!(
        value_of(&world.config_maps, "gone").await?.as_deref(),
        Some("v1"),
        "not pruned without automated.prune"
    );
    let gone = status
        .resources
        .iter()
        .find(|r| r.name == "gone")
        .context("listed")?;
    assert!(gone.requires_pruning, "{gone:?}");
    assert_eq!(status.sync.status, Some(SyncStatusCode::OutOfSync));
    running.stop().await?;
    Ok(())
}

/// The value of one `syncs_total` series, 0 when absent.
fn syncs(running: &common::Running, trigger: &str, phase: &str) -> Result<u64> {
    let series =
        format!("capstan_controller_syncs_total{{trigger=\"{trigger}\",phase=\"{phase}\"}} ");
    Ok(running
        .metrics_text()?
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_sync_is_retried_under_its_own_retry_strategy() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-op-retry", GitHttpOptions::default()).await?;
    // `k: 1` is a number: the API server refuses the ConfigMap, so every attempt fails.
    world.repo.write_all(&[(
        "app/bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  k: 1\n".to_owned(),
    )])?;
    world.repo.commit("broken")?;
    let running = world.start().await?;
    let at = ObjectRef::new("capstan", "op-retry");
    let mut app = application("op-retry", &world.url, "app", &world.ns, "")?;
    app.operation = Some(capstan_model::Operation {
        sync: Some(capstan_model::SyncOperation::default()),
        initiated_by: capstan_model::OperationInitiator {
            username: "carol".into(),
            automated: false,
        },
        retry: capstan_model::RetryStrategy {
            limit: 2,
            backoff: Some(capstan_model::Backoff {
                duration: "200ms".into(),
                factor: Some(2),
                max_duration: "1s".into(),
            }),
        },
        ..capstan_model::Operation::default()
    });
    world.apps.create(&at, &app).await?;
    let status = wait_until("two retries spent", DEADLINE, || async {
        let status = world.apps.get(&at).await?.and_then(|o| o.status);
        Ok(status.map(|s| s.value).filter(|s| {
            s.operation_state
                .as_ref()
                .is_some_and(|o| o.retry_count == 2 && o.phase == Some(OperationPhase::Failed))
        }))
    })
    .await?;
    let op = status.operation_state.context("recorded")?;
    assert_eq!(op.operation.initiated_by.username, "carol");
    assert_eq!(op.operation.retry.limit, 2, "recorded as asked");
    assert_eq!(syncs(&running, "requested", "Failed")?, 1);
    assert_eq!(syncs(&running, "retry", "Failed")?, 2);

    // The limit is spent: more reconciles start no more attempts.
    let seen = reconciles(&running)?;
    wait_until("three more reconciles", DEADLINE, || async {
        running.queue.enqueue(at.clone(), Request::refresh());
        Ok((reconciles(&running)? >= seen + 3).then_some(()))
    })
    .await?;
    assert_eq!(syncs(&running, "retry", "Failed")?, 2, "exactly the limit");
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_registered_in_the_store_are_connected_and_dropped() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-clusters", GitHttpOptions::default()).await?;
    world
        .repo
        .write_all(&[("app/settings.yaml", cm("remote", "v1"))])?;
    world.repo.commit("remote")?;
    let running = world.start().await?;

    // The same apiserver under its own URL and an admin client certificate: a second
    // cluster as `capstan cluster add` will register it (PEM accepted as is).
    let server = capstan_testkit::shared::apiserver().await?;
    let admin = server.client_cert("capstan-test-admin", Some("system:masters"))?;
    let spec = |ca: &str| {
        capstan_model::parse_cluster_yaml(&format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: second\nspec:\n  server: {}\n  namespaces: [{}]\n  config:\n    tlsClientConfig:\n      caData: {}\n      certData: {}\n      keyData: {}\n",
            server.url(),
            world.ns,
            serde_json::to_string(ca)?,
            serde_json::to_string(&admin.cert_pem)?,
            serde_json::to_string(&admin.key_pem)?,
        ))
        .map_err(anyhow::Error::from)
    };
    let clusters = TypedStore::<capstan_store::kinds::Clusters>::new(world.store.clone());
    let second = ObjectRef::new("capstan", "second");
    clusters.create(&second, &spec(server.ca_pem())?).await?;
    let status = wait_until("the cluster connected", DEADLINE, || async {
        let status = clusters.get(&second).await?.and_then(|o| o.status);
        Ok(status
            .map(|s| s.value)
            .filter(|s| !s.connection_state.status.is_empty()))
    })
    .await?;
    assert_eq!(
        status.connection_state.status, "Successful",
        "{:?}",
        status.connection_state
    );
    assert!(status.server_version.starts_with("v1."), "{status:?}");

    let at = ObjectRef::new("capstan", "remote");
    let mut app = application(
        "remote",
        &world.url,
        "app",
        &world.ns,
        "  syncPolicy:\n    automated: {}\n",
    )?;
    app.spec.destination.server.clear();
    app.spec.destination.name = "second".into();
    world.apps.create(&at, &app).await?;
    wait_until(
        "synced through the registered cluster",
        DEADLINE,
        || async { Ok(value_of(&world.config_maps, "remote").await?.map(|_| ())) },
    )
    .await?;

    // Deleted: its Applications say the destination is gone.
    clusters
        .delete(&second, capstan_store::Precondition::None)
        .await?;
    let status = wait_until("the destination reported missing", DEADLINE, || async {
        let status = world.apps.get(&at).await?.and_then(|o| o.status);
        Ok(status.map(|s| s.value).filter(|s| {
            s.conditions
                .iter()
                .any(|c| c.message.contains("not registered or not connected"))
        }))
    })
    .await?;
    assert_eq!(status.sync.status, Some(SyncStatusCode::Unknown));

    // A cluster whose certificate cannot be verified: Failed, with the reason.
    let other = capstan_testkit::pki::TestCa::new("some-other-ca")?;
    let wrong = ObjectRef::new("capstan", "wrong-ca");
    let mut cluster = spec(&other.cert_pem)?;
    cluster.metadata.name = "wrong-ca".into();
    clusters.create(&wrong, &cluster).await?;
    let status = wait_until("the failure recorded", DEADLINE, || async {
        let status = clusters.get(&wrong).await?.and_then(|o| o.status);
        Ok(status
            .map(|s| s.value)
            .filter(|s| !s.connection_state.status.is_empty()))
    })
    .await?;
    assert_eq!(status.connection_state.status, "Failed");
    assert!(
        status.connection_state.message.contains(&server.url()),
        "{:?}",
        status.connection_state
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_reported_not_compared() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-unreachable", GitHttpOptions::default()).await?;
    world
        .repo
        .write_all(&[("app/settings.yaml", cm("far", "v1"))])?;
    world.repo.commit("far")?;
    let running = world.start().await?;

    // A cluster of its own, so that it can go away.
    let remote = capstan_testkit::KubeApiServer::start().await?;
    let ns = remote.test_namespace("far").await?;
    let admin = remote.client_cert("capstan-test-admin", Some("system:masters"))?;
    let cluster = capstan_model::parse_cluster_yaml(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: far\nspec:\n  server: {}\n  namespaces: [{ns}]\n  config:\n    tlsClientConfig:\n      caData: {}\n      certData: {}\n      keyData: {}\n",
        remote.url(),
        serde_json::to_string(remote.ca_pem())?,
        serde_json::to_string(&admin.cert_pem)?,
        serde_json::to_string(&admin.key_pem)?,
    ))?;
    let clusters = TypedStore::<capstan_store::kinds::Clusters>::new(world.store.clone());
    let far = ObjectRef::new("capstan", "far");
    clusters.create(&far, &cluster).await?;
    let at = ObjectRef::new("capstan", "far-app");
    let mut app = application(
        "far-app",
        &world.url,
        "app",
        &ns,
        "  syncPolicy:\n    automated: {}\n",
    )?;
    app.spec.destination.server = remote.url();
    world.apps.create(&at, &app).await?;
    wait_until("synced into the remote cluster", DEADLINE, || async {
        let status = world.apps.get(&at).await?.and_then(|o| o.status);
        Ok(status
            .map(|s| s.value)
            .filter(|s| s.sync.status == Some(SyncStatusCode::Synced)))
    })
    .await?;

    drop(remote);
    let status = wait_until(
        "the app reports the cluster unreachable",
        DEADLINE,
        || async {
            running.queue.enqueue(at.clone(), Request::refresh());
            let status = world.apps.get(&at).await?.and_then(|o| o.status);
            Ok(status.map(|s| s.value).filter(|s| {
                s.conditions.iter().any(|c| {
                    c.condition_type == "ComparisonError" && c.message.contains("is unreachable")
                })
            }))
        },
    )
    .await?;
    assert_eq!(status.sync.status, Some(SyncStatusCode::Unknown));
    let cluster = wait_until("the cluster's status says so", DEADLINE, || async {
        let status = clusters.get(&far).await?.and_then(|o| o.status);
        Ok(status
            .map(|s| s.value)
            .filter(|s| s.connection_state.status == "Failed"))
    })
    .await?;
    assert!(
        cluster.connection_state.message.contains("unreachable"),
        "{:?}",
        cluster.connection_state
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_source_app_reads_helm_values_from_a_ref_source_and_rolls_back() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-multi", GitHttpOptions::default()).await?;
    // The chart lives in the world's repository, its values in another one.
    world.repo.write_all(&[
        (
            "chart/Chart.yaml",
            "apiVersion: v2\nname: settings\nversion: 0.1.0\n".to_owned(),
        ),
        (
            "chart/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-chart\ndata:\n  k: {{ .Values.color | quote }}\n".to_owned(),
        ),
        ("chart/values.yaml", "color: default\n".to_owned()),
    ])?;
    let chart_commit = world.repo.commit("chart")?;
    let values = capstan_testkit::git::GitRepo::init()?;
    values.write("env/values.yaml", "color: blue\n")?;
    let blue = values.commit("blue")?;
    let git = capstan_testkit::git_http::GitHttpServer::start_temp(GitHttpOptions::default())?;
    let values_url = git.url_for(&values)?;

    let running = world.start().await?;
    let at = ObjectRef::new("capstan", "multi");
    let app = capstan_model::parse_application_yaml(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: multi\n  namespace: capstan\nspec:\n  project: default\n  sources:\n  - repoURL: {}\n    path: chart\n    targetRevision: HEAD\n    helm:\n      valueFiles:\n      - $values/env/values.yaml\n  - repoURL: {values_url}\n    targetRevision: HEAD\n    ref: values\n  destination:\n    server: {}\n    namespace: {}\n",
        world.url,
        capstan_controller::reconcile::IN_CLUSTER_SERVER,
        world.ns
    ))?;
    world.apps.create(&at, &app).await?;
    let sync = capstan_model::Operation {
        sync: Some(capstan_model::SyncOperation::default()),
        ..capstan_model::Operation::default()
    };
    let status = run_requested(&world.apps, &at, sync.clone()).await?;
    assert_eq!(
        value_of(&world.config_maps, "from-chart").await?.as_deref(),
        Some("blue"),
        "the value file of the ref source was used"
    );
    assert_eq!(
        status.sync.revisions,
        [chart_commit.clone(), blue.clone()],
        "one revision per source, the ref source's included"
    );
    let first = status.history.last().context("history")?.clone();
    assert_eq!(first.revisions, [chart_commit.clone(), blue.clone()]);
    assert_eq!(first.sources.len(), 2);

    // New values: synced, then rolled back to the first entry's revisions.
    values.write("env/values.yaml", "color: green\n")?;
    let green = values.commit("green")?;
    wait_until("the new values seen", DEADLINE, || async {
        running.queue.enqueue(at.clone(), Request::refresh());
        let status = world.apps.get(&at).await?.and_then(|o| o.status);
        Ok(status
            .map(|s| s.value)
            .filter(|s| s.sync.revisions.get(1) == Some(&green)))
    })
    .await?;
    run_requested(&world.apps, &at, sync).await?;
    assert_eq!(
        value_of(&world.config_maps, "from-chart").await?.as_deref(),
        Some("green")
    );
    let rollback = capstan_model::Operation::rollback(
        &first,
        capstan_model::OperationInitiator::default(),
        false,
        false,
    );
    let status = run_requested(&world.apps, &at, rollback).await?;
    assert_eq!(
        value_of(&world.config_maps, "from-chart").await?.as_deref(),
        Some("blue"),
        "rolled back to the first entry's values revision"
    );
    let last = status.history.last().context("history")?;
    assert_eq!(last.revisions, [chart_commit, blue]);
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_operation_is_terminated_on_request() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-terminate", GitHttpOptions::default()).await?;
    world.repo.write_all(&common::blocked_waves("app"))?;
    world.repo.commit("waves")?;
    let running = world.start().await?;
    let at = world
        .create_app("terminated", "app", "  syncPolicy:\n    automated: {}\n")
        .await?;
    world.wait_for_phase(&at, OperationPhase::Running).await?;

    // What `capstan app terminate-op` will write.
    let mut app = world.apps.get(&at).await?.context("exists")?.spec.value;
    app.metadata.annotations.insert(
        capstan_controller::reconcile::TERMINATE_ANNOTATION.into(),
        "true".into(),
    );
    world
        .apps
        .update_spec(&at, &app, capstan_store::Precondition::None)
        .await?;
    let object = wait_until("the operation terminated", DEADLINE, || async {
        let object = world.apps.get(&at).await?.context("exists")?;
        let done = object.status.as_ref().is_some_and(|s| {
            s.value
                .operation_state
                .as_ref()
                .is_some_and(|o| o.phase == Some(OperationPhase::Failed))
        });
        let cleared = !object
            .spec
            .value
            .metadata
            .annotations
            .contains_key(capstan_controller::reconcile::TERMINATE_ANNOTATION);
        Ok((done && cleared).then_some(object))
    })
    .await?;
    let op = object
        .status
        .and_then(|s| s.value.operation_state)
        .context("recorded")?;
    assert!(op.message.contains("terminated"), "{}", op.message);
    assert_eq!(
        value_of(&world.config_maps, "after").await?,
        None,
        "wave 1 never started"
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_resources_are_reported_when_the_project_asks() -> Result<()> {
    init_test_logging();
    let world = World::new("ctrl-orphans", GitHttpOptions::default()).await?;
    world
        .repo
        .write_all(&[("app/settings.yaml", cm("settings", "v1"))])?;
    world.repo.commit("settings")?;
    let projects = TypedStore::<capstan_store::kinds::AppProjects>::new(world.store.clone());
    projects
        .create(
            &ObjectRef::new("capstan", "watched"),
            &capstan_model::parse_app_project_yaml(
                "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: watched\n  namespace: capstan\nspec:\n  sourceRepos: ['*']\n  destinations:\n  - server: '*'\n    namespace: '*'\n  orphanedResources:\n    warn: true\n    ignore:\n    - kind: Secret\n",
            )?,
        )
        .await?;
    let running = world.start().await?;
    let at = ObjectRef::new("capstan", "watched-app");
    let mut app = application(
        "watched-app",
        &world.url,
        "app",
        &world.ns,
        "  syncPolicy:\n    automated: {}\n",
    )?;
    app.spec.project = "watched".into();
    world.apps.create(&at, &app).await?;
    world.wait_for_phase(&at, OperationPhase::Succeeded).await?;

    // Made by hand: a ConfigMap nobody tracks, and a Secret the project ignores.
    let post = kube::api::PostParams::default();
    world
        .config_maps
        .create(
            &post,
            &serde_json::from_value(json!({"metadata": {"name": "debug"}}))?,
        )
        .await?;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(world.client.clone(), &world.ns)
        .create(
            &post,
            &serde_json::from_value(json!({"metadata": {"name": "cert-web"}}))?,
        )
        .await?;
    let condition = |status: &capstan_model::ApplicationStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.condition_type == "OrphanedResourceWarning")
            .map(|c| c.message.clone())
    };
    let message = wait_until("the orphan reported", DEADLINE, || async {
        running.queue.enqueue(at.clone(), Request::refresh());
        let status = world.apps.get(&at).await?.and_then(|o| o.status);
        Ok(status.and_then(|s| condition(&s.value)))
    })
    .await?;
    assert_eq!(
        message, "Application has 1 orphaned resources: ConfigMap/debug",
        "the tracked ConfigMap, the ignored Secret and kube-root-ca.crt are not orphans"
    );

    world
        .config_maps
        .delete("debug", &kube::api::DeleteParams::default())
        .await?;
    wait_until("the warning gone", DEADLINE, || async {
        running.queue.enqueue(at.clone(), Request::refresh());
        let status = world.apps.get(&at).await?.and_then(|o| o.status);
        Ok(status.filter(|s| condition(&s.value).is_none()).map(|_| ()))
    })
    .await?;
    running.stop().await?;
    Ok(())
}
