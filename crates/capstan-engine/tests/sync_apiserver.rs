//! Syncs against a real kube-apiserver (no controllers: what a sync waits for, the tests
//! write through the status subresource). Order is observed through `resourceVersion`,
//! which the API server takes from etcd's global revision: an object created later has a
//! higher one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use capstan_engine::HealthAssessor;
use capstan_engine::resources::ApiResolver;
use capstan_engine::sync::{Mode, Progress, SyncRunner, SyncState};
use capstan_model::{ManagedNamespaceMetadata, OperationPhase, ResultCode, SyncOptions};
use capstan_testkit::{init_test_logging, shared};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

mod common;
use common::sync_fixture::{DEADLINE, Fixture};

fn cm(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": annotations}, "data": {"k": name}})
}

fn result_of<'a>(state: &'a SyncState, name: &str) -> Result<&'a capstan_engine::sync::Task> {
    state
        .tasks
        .iter()
        .chain(&state.fail_tasks)
        .find(|t| t.key.name == name || t.key.name.starts_with(name))
        .with_context(|| format!("no task {name} in {state:#?}"))
}

#[tokio::test]
async fn waves_kinds_and_hooks_run_in_order() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "sync-order").await?;
    let request = f
        .request(vec![
            cm("wave-2", json!({"argocd.argoproj.io/sync-wave": "2"})),
            cm("wave-0", json!({})),
            cm("wave-1", json!({"argocd.argoproj.io/sync-wave": "1"})),
            cm("pre", json!({"argocd.argoproj.io/hook": "PreSync"})),
            cm(
                "post",
                json!({"argocd.argoproj.io/hook": "PostSync",
                "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
            ),
            cm("skipped", json!({"argocd.argoproj.io/hook": "Skip"})),
        ])
        .await?;
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let rv = f.versions().await?;
    assert!(rv["pre"] < rv["wave-0"], "PreSync hook first: {rv:?}");
    assert!(
        rv["wave-0"] < rv["wave-1"] && rv["wave-1"] < rv["wave-2"],
        "{rv:?}"
    );
    assert!(!rv.contains_key("skipped"), "Skip hooks are never applied");
    assert!(
        !rv.contains_key("post"),
        "HookSucceeded deleted the PostSync hook"
    );
    assert_eq!(
        result_of(&state, "post")?.status,
        capstan_engine::sync::TaskStatus::Succeeded
    );
    assert_eq!(result_of(&state, "wave-0")?.message, "created");

    // The same sync again changes nothing, and the named PreSync hook (BeforeHookCreation
    // by default) is re-created.
    let again = f.sync(&f.request(request.desired.clone()).await?).await?;
    assert_eq!(again.phase, OperationPhase::Succeeded, "{}", again.message);
    assert_eq!(result_of(&again, "wave-1")?.message, "unchanged");
    let rv2 = f.versions().await?;
    assert!(
        rv2["pre"] > rv["wave-2"],
        "the PreSync hook was re-created: {rv:?} {rv2:?}"
    );
    Ok(())
}

#[tokio::test]
async fn prune_respects_the_options_and_dry_run_changes_nothing() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "sync-prune").await?;
    let first = f
        .request(vec![
            cm("stays", json!({})),
            cm("goes", json!({})),
            cm(
                "protected",
                json!({"argocd.argoproj.io/sync-options": "Prune=false"}),
            ),
        ])
        .await?;
    assert_eq!(f.sync(&first).await?.phase, OperationPhase::Succeeded);
    // Someone else's config map in the same namespace is never touched.
    f.config_maps()
        .patch(
            "bystander",
            &PatchParams::apply("other"),
            &Patch::Apply(cm("bystander", json!({}))),
        )
        .await?;

    let mut second = f.request(vec![cm("stays", json!({}))]).await?;
    let state = f.sync(&second).await?;
    assert_eq!(
        result_of(&state, "goes")?.result,
        Some(ResultCode::PruneSkipped)
    );
    assert!(
        f.config_maps().get_opt("goes").await?.is_some(),
        "no prune unless asked"
    );

    second.prune = true;
    second.dry_run = true;
    let dry = f.sync(&second).await?;
    assert_eq!(dry.phase, OperationPhase::Succeeded, "{}", dry.message);
    assert_eq!(result_of(&dry, "goes")?.message, "pruned (dry run)");
    assert!(
        f.config_maps().get_opt("goes").await?.is_some(),
        "a dry run deletes nothing"
    );

    second.dry_run = false;
    let state = f.sync(&second).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    assert_eq!(result_of(&state, "goes")?.result, Some(ResultCode::Pruned));
    assert_eq!(
        result_of(&state, "protected")?.message,
        "ignored (Prune=false)"
    );
    let api = f.config_maps();
    let gone = api.get_opt("goes").await?;
    assert!(
        gone.is_none_or(|c| c.metadata.deletion_timestamp.is_some()),
        "pruned"
    );
    assert!(api.get_opt("protected").await?.is_some());
    assert!(api.get_opt("bystander").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn a_refused_object_fails_the_sync_before_anything_is_applied() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "sync-invalid").await?;
    let mut bad = cm("bad", json!({}));
    bad["spec"] = json!({"unknownField": true});
    let request = f
        .request(vec![
            cm("good", json!({})),
            bad.clone(),
            cm("on-fail", json!({"argocd.argoproj.io/hook": "SyncFail"})),
        ])
        .await?;
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(
        state.message.contains("ConfigMap") && state.message.contains("spec"),
        "{}",
        state.message
    );
    assert!(
        f.config_maps().get_opt("good").await?.is_none(),
        "nothing applied"
    );
    assert!(
        f.config_maps().get_opt("on-fail").await?.is_some(),
        "the SyncFail hook ran"
    );

    // A kind the server does not serve is named in the error.
    let unknown =
        json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}});
    let state = f.sync(&f.request(vec![unknown]).await?).await?;
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(state.message.contains("Gadget"), "{}", state.message);
    Ok(())
}

#[tokio::test]
async fn crds_and_their_resources_sync_together_and_namespaces_are_created() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let f = Fixture::new(server, "sync-crd").await?;
    let suffix = f.ns.replace('-', "");
    let group = format!("{suffix}.example.com");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}});
    // Validate=false: the server drops the field the schema does not know instead of
    // refusing the object.
    let widget = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w", "annotations": {
            "argocd.argoproj.io/sync-options": "Validate=false"}},
        "spec": {"size": 3, "colour": "red"}});
    let target_ns = format!("{}-made", f.ns);
    let mut request = f.request(vec![widget, crd]).await?;
    request.namespace.clone_from(&target_ns);
    request.sync_options = SyncOptions(vec!["CreateNamespace=true".into()]);
    let mut meta = ManagedNamespaceMetadata::default();
    meta.labels.insert("team".into(), "shop".into());
    request.managed_namespace_metadata = Some(meta);
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);

    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    let ns = namespaces.get(&target_ns).await?;
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("shop")
    );
    let ar = ApiResource {
        group: group.clone(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(f.client.clone(), &target_ns, &ar);
    let w = widgets.get("w").await?;
    assert_eq!(w.data["spec"]["size"], 3);
    assert!(w.data["spec"].get("colour").is_none());

    // Without it, the unknown field fails the sync, naming the field.
    let strict = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "strict"}, "spec": {"size": 1, "colour": "red"}});
    let mut request = f.request(vec![strict]).await?;
    request.namespace.clone_from(&target_ns);
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(state.message.contains("colour"), "{}", state.message);
    Ok(())
}

#[tokio::test]
async fn replace_overwrites_what_apply_would_keep() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "sync-replace").await?;
    let request = f.request(vec![cm("conf", json!({}))]).await?;
    f.sync(&request).await?;
    // Another manager adds a key; server-side apply keeps it (it is not ours) ...
    f.config_maps()
        .patch(
            "conf",
            &PatchParams::apply("intruder"),
            &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"},
            "data": {"extra": "1"}})),
        )
        .await?;
    f.sync(&f.request(vec![cm("conf", json!({}))]).await?)
        .await?;
    let kept = f.config_maps().get("conf").await?.data.unwrap_or_default();
    assert!(kept.contains_key("extra"), "{kept:?}");
    // ... Replace=true puts exactly the manifest in place.
    let replaced = cm(
        "conf",
        json!({"argocd.argoproj.io/sync-options": "Replace=true"}),
    );
    let state = f.sync(&f.request(vec![replaced]).await?).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let data = f.config_maps().get("conf").await?.data.unwrap_or_default();
    assert!(!data.contains_key("extra"), "{data:?}");
    assert_eq!(data.get("k").map(String::as_str), Some("conf"));
    Ok(())
}

fn deployment(name: &str, wave: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"argocd.argoproj.io/sync-wave": wave}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "example.invalid/x:1"}]}}}})
}

#[tokio::test]
async fn the_next_wave_waits_for_health_and_the_state_resumes_elsewhere() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "sync-gate").await?;
    let request = f
        .request(vec![
            deployment("db", "0"),
            cm("after-db", json!({"argocd.argoproj.io/sync-wave": "1"})),
        ])
        .await?;
    let mut state = f.runner.plan(&request).await;
    // Step until the runner waits: the Deployment is applied, never healthy (no controllers).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let why = loop {
        match f.runner.advance(&mut state).await {
            Progress::Waiting(why) => break why,
            Progress::Finished => bail!("finished early: {state:?}"),
            Progress::Advanced if tokio::time::Instant::now() > deadline => bail!("no wait"),
            Progress::Advanced => {}
        }
    };
    assert!(
        why.contains("apps/Deployment") && why.contains("db"),
        "{why}"
    );
    assert!(
        f.config_maps().get_opt("after-db").await?.is_none(),
        "wave 1 waits"
    );

    // The state is persisted and picked up by a different runner (another process).
    let saved = serde_json::to_string(&state)?;
    drop(state);
    let deployments: Api<Deployment> = Api::namespaced(f.client.clone(), &f.ns);
    capstan_testkit::workloads::mark_deployment_available(&deployments, "db").await?;
    let mut resumed: SyncState = serde_json::from_str(&saved)?;
    let other = SyncRunner::new(
        ApiResolver::new(f.client.clone()),
        Arc::new(HealthAssessor::builtin_only()),
    );
    tokio::time::timeout(
        DEADLINE,
        other.run(&mut resumed, Duration::from_millis(100), |_| {}),
    )
    .await
    .context("resumed sync finished")?;
    assert_eq!(
        resumed.phase,
        OperationPhase::Succeeded,
        "{}",
        resumed.message
    );
    assert!(f.config_maps().get_opt("after-db").await?.is_some());
    Ok(())
}

fn job_hook(name: &str, hook: &str, policy: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "annotations": {
            "argocd.argoproj.io/hook": hook, "argocd.argoproj.io/hook-delete-policy": policy}},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "example.invalid/migrate:1"}]}}}})
}

async fn step_until_waiting(runner: &SyncRunner, state: &mut SyncState) -> Result<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match runner.advance(state).await {
            Progress::Waiting(why) => return Ok(why),
            Progress::Finished => bail!("finished early: {state:?}"),
            Progress::Advanced if tokio::time::Instant::now() > deadline => bail!("no wait"),
            Progress::Advanced => {}
        }
    }
}

#[tokio::test]
async fn a_failed_hook_fails_the_sync_and_runs_sync_fail_hooks() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "sync-hookfail").await?;
    let request = f
        .request(vec![
            job_hook("migrate", "PreSync", "HookFailed"),
            cm("app-config", json!({})),
            cm("cleanup", json!({"argocd.argoproj.io/hook": "SyncFail"})),
        ])
        .await?;
    let mut state = f.runner.plan(&request).await;
    let why = step_until_waiting(&f.runner, &mut state).await?;
    assert!(
        why.contains("batch/Job") && why.contains("migrate"),
        "{why}"
    );
    // The Job fails (written as its controller would).
    let jobs: Api<Job> = Api::namespaced(f.client.clone(), &f.ns);
    jobs.patch_status(
        "migrate",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
        "failed": 1, "startTime": "2026-01-01T00:00:00Z",
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}]}})),
    )
    .await?;
    tokio::time::timeout(
        DEADLINE,
        f.runner.run(&mut state, Duration::from_millis(100), |_| {}),
    )
    .await
    .context("sync finished")?;
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(state.message.contains("backoff limit"), "{}", state.message);
    assert!(
        f.config_maps().get_opt("app-config").await?.is_none(),
        "the Sync phase never ran"
    );
    assert!(
        f.config_maps().get_opt("cleanup").await?.is_some(),
        "SyncFail hook ran"
    );
    let left = jobs.get_opt("migrate").await?;
    assert!(
        left.is_none_or(|j| j.metadata.deletion_timestamp.is_some()),
        "HookFailed deleted it"
    );
    Ok(())
}

#[tokio::test]
async fn termination_stops_the_sync_and_removes_running_hooks() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "sync-terminate").await?;
    let mut hook = job_hook("forever", "PreSync", "HookSucceeded");
    hook["metadata"]["name"] = Value::Null;
    hook["metadata"]["generateName"] = json!("forever-");
    let request = f.request(vec![hook, cm("never", json!({}))]).await?;
    let mut state = f.runner.plan(&request).await;
    step_until_waiting(&f.runner, &mut state).await?;
    let hook_name = state.tasks[0].key.name.clone();
    assert!(
        hook_name.starts_with("forever-") && hook_name.len() > "forever-".len(),
        "{hook_name}"
    );
    state.request_termination();
    assert_eq!(f.runner.advance(&mut state).await, Progress::Finished);
    assert_eq!(state.phase, OperationPhase::Failed);
    assert_eq!(state.message, "operation terminated");
    let jobs: Api<Job> = Api::namespaced(f.client.clone(), &f.ns);
    let left = jobs.get_opt(&hook_name).await?;
    assert!(left.is_none_or(|j| j.metadata.deletion_timestamp.is_some()));
    assert!(f.config_maps().get_opt("never").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn deleting_an_app_runs_delete_hooks_around_the_deletion() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "sync-delete").await?;
    let manifests = vec![
        cm("a", json!({})),
        cm("b", json!({"argocd.argoproj.io/sync-wave": "1"})),
        cm(
            "keep",
            json!({"argocd.argoproj.io/sync-options": "Delete=false"}),
        ),
        cm(
            "pre-delete",
            json!({"argocd.argoproj.io/hook": "PreDelete"}),
        ),
        cm(
            "post-delete",
            json!({"argocd.argoproj.io/hook": "PostDelete"}),
        ),
    ];
    let state = f.sync(&f.request(manifests.clone()).await?).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    assert!(
        f.config_maps().get_opt("pre-delete").await?.is_none(),
        "not run on sync"
    );

    let mut delete = f.request(manifests).await?;
    delete.mode = Mode::Delete;
    let state = f.sync(&delete).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let rv = f.versions().await?;
    assert!(
        rv.contains_key("pre-delete") && rv.contains_key("post-delete"),
        "{rv:?}"
    );
    assert!(rv["pre-delete"] < rv["post-delete"]);
    assert!(rv.contains_key("keep"));
    for gone in ["a", "b"] {
        let left = f.config_maps().get_opt(gone).await?;
        assert!(
            left.is_none_or(|c| c.metadata.deletion_timestamp.is_some()),
            "{gone}"
        );
    }
    Ok(())
}
