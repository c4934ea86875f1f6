//! Sync options and hook order against a real kube-apiserver (no controllers, no garbage
//! collector: what a sync waits for, the tests write as the controllers would). Each test
//! observes in the API server what one option promises (`docs/sync.md`), stepping the runner
//! with [`SyncRunner::advance`] where the order matters: one step is the validation pass,
//! then one step per group (phase, wave, tier). Order is also read from `resourceVersion`,
//! which the API server takes from etcd's global revision: a later write has a higher one.

use std::time::Duration;

use anyhow::{Context, Result};
use capstan_engine::sync::{Progress, SyncState, Task, TaskStatus};
use capstan_model::{OperationPhase, ResultCode, SyncOperationResource, SyncOptions};
use capstan_testkit::wait::wait_until;
use capstan_testkit::{init_test_logging, shared};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

mod common;
use common::sync_fixture::{APP_LABEL, DEADLINE, Fixture};

const SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
const SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";
const HOOK: &str = "argocd.argoproj.io/hook";

/// A ConfigMap with `data.k = value`; `annotations` are left out when empty.
fn cm_with(name: &str, value: &str, annotations: Value) -> Value {
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"k": value}});
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        obj["metadata"]["annotations"] = annotations;
    }
    obj
}

/// A ConfigMap whose `data.k` is its own name.
fn cm(name: &str, annotations: Value) -> Value {
    cm_with(name, name, annotations)
}

fn options(list: &[&str]) -> SyncOptions {
    SyncOptions(list.iter().map(|s| (*s).to_owned()).collect())
}

/// `metadata.resourceVersion` as a number (etcd's revision of the last write).
fn rv(cm: &ConfigMap) -> Result<u64> {
    Ok(cm
        .metadata
        .resource_version
        .as_deref()
        .context("resourceVersion")?
        .parse()?)
}

fn data_k(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("k").map(String::as_str)
}

fn managers(cm: &ConfigMap) -> Vec<String> {
    cm.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect()
}

/// The task for the object named `name` (the first, for a hook in several phases).
fn task<'a>(state: &'a SyncState, name: &str) -> Result<&'a Task> {
    state
        .tasks
        .iter()
        .chain(&state.fail_tasks)
        .find(|t| t.key.name == name)
        .with_context(|| format!("no task for {name}: {state:?}"))
}

fn deployment(name: &str, wave: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": {SYNC_WAVE: wave}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "example.invalid/x:1"}]}}}})
}

fn job_hook(name: &str, hook: &str, wave: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "annotations": {HOOK: hook, SYNC_WAVE: wave}},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "example.invalid/migrate:1"}]}}}})
}

// 1. Selective sync.

#[tokio::test]
async fn a_selective_sync_applies_and_prunes_only_the_listed_resources() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-selective").await?;
    f.sync_ok(vec![
        cm("a", json!({})),
        cm("b", json!({})),
        cm("p1", json!({})),
        cm("p2", json!({})),
    ])
    .await?;
    let b_before = f.live("b").await?;

    let mut request = f
        .request(vec![
            cm_with("a", "new", json!({})),
            cm_with("b", "new", json!({})),
            cm("c", json!({})),
            cm("pre", json!({HOOK: "PreSync"})),
            cm("post", json!({HOOK: "PostSync"})),
        ])
        .await?;
    request.prune = true;
    let listed = |name: &str| SyncOperationResource {
        kind: "ConfigMap".into(),
        name: name.into(),
        ..SyncOperationResource::default()
    };
    request.resources = vec![listed("a"), listed("p1")];
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let mut names: Vec<&str> = state.tasks.iter().map(|t| t.key.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["a", "p1"],
        "only the listed resources are tasks: {state:?}"
    );
    let a = task(&state, "a")?;
    assert_eq!(
        (a.result, a.message.as_str()),
        (Some(ResultCode::Synced), "configured")
    );
    assert_eq!(task(&state, "p1")?.result, Some(ResultCode::Pruned));

    assert_eq!(
        data_k(&f.live("a").await?),
        Some("new"),
        "the listed object is updated"
    );
    let b_after = f.live("b").await?;
    assert_eq!(
        data_k(&b_after),
        Some("b"),
        "an unlisted object keeps its old content"
    );
    assert_eq!(
        rv(&b_after)?,
        rv(&b_before)?,
        "an unlisted object is not written at all"
    );
    assert!(
        f.config_maps().get_opt("c").await?.is_none(),
        "an unlisted new object is not created"
    );
    for hook in ["pre", "post"] {
        assert!(
            f.config_maps().get_opt(hook).await?.is_none(),
            "no hook runs: {hook}"
        );
    }
    assert!(f.pruned("p1").await?, "the listed object is pruned");
    assert!(f.alive("p2").await?, "an unlisted object is not pruned");
    Ok(())
}

// 2. ApplyOutOfSyncOnly.

#[tokio::test]
async fn apply_out_of_sync_only_writes_only_the_objects_that_differ() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-oos").await?;
    // Both objects exist, written by another manager; one already has the desired content.
    let labelled = |mut m: Value| {
        m["metadata"]["labels"][APP_LABEL] = json!("shop");
        m
    };
    let in_sync = f
        .apply_as("kubectl", &labelled(cm("in-sync", json!({}))))
        .await?;
    let drifted = f
        .apply_as("kubectl", &labelled(cm_with("drifted", "old", json!({}))))
        .await?;

    let mut request = f
        .request(vec![cm("in-sync", json!({})), cm("drifted", json!({}))])
        .await?;
    request.sync_options = options(&["ApplyOutOfSyncOnly=true"]);
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);

    let t = task(&state, "in-sync")?;
    assert_eq!(t.result, Some(ResultCode::Synced));
    assert_eq!(t.message, "unchanged (in sync, not applied)");
    let live = f.live("in-sync").await?;
    assert_eq!(
        rv(&live)?,
        rv(&in_sync)?,
        "the in-sync object was not written"
    );
    assert!(
        !managers(&live).contains(&"capstan".to_owned()),
        "{:?}",
        managers(&live)
    );

    assert_eq!(task(&state, "drifted")?.message, "configured");
    let live = f.live("drifted").await?;
    assert!(
        rv(&live)? > rv(&drifted)?,
        "the out-of-sync object was written"
    );
    assert_eq!(data_k(&live), Some("drifted"));
    assert!(
        managers(&live).contains(&"capstan".to_owned()),
        "{:?}",
        managers(&live)
    );

    // Without the option the in-sync object is applied too: Capstan becomes a manager of it.
    let state = f
        .sync(
            &f.request(vec![cm("in-sync", json!({})), cm("drifted", json!({}))])
                .await?,
        )
        .await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let live = f.live("in-sync").await?;
    assert!(
        managers(&live).contains(&"capstan".to_owned()),
        "{:?}",
        managers(&live)
    );
    assert!(rv(&live)? > rv(&in_sync)?);
    Ok(())
}

// 3. FailOnSharedResource.

#[tokio::test]
async fn fail_on_shared_resource_fails_before_anything_is_applied() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-shared").await?;
    let mut theirs = cm_with("shared", "theirs", json!({}));
    theirs["metadata"]["labels"][APP_LABEL] = json!("other");
    let before = f.apply_as("other-app", &theirs).await?;
    let desired = vec![cm("fresh", json!({})), cm("shared", json!({}))];

    let mut request = f.request(desired.clone()).await?;
    let shared_live = request
        .live
        .iter()
        .find(|l| l.object["metadata"]["name"] == "shared")
        .context("the shared object is live")?;
    assert_eq!(shared_live.app.as_deref(), Some("other"));
    request.sync_options = options(&["FailOnSharedResource=true"]);
    let planned = f.runner.plan(&request).await;
    assert_eq!(
        planned.phase,
        OperationPhase::Failed,
        "the plan itself fails: {planned:?}"
    );
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Failed);
    for part in [
        "ConfigMap",
        "shared",
        "\"other\"",
        "FailOnSharedResource=true",
    ] {
        assert!(state.message.contains(part), "{part} in {}", state.message);
    }
    assert!(
        f.config_maps().get_opt("fresh").await?.is_none(),
        "nothing applied"
    );
    let after = f.live("shared").await?;
    assert_eq!(rv(&after)?, rv(&before)?, "the shared object is untouched");

    // Without the option the shared object is applied (and taken over).
    let state = f.sync(&f.request(desired).await?).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let after = f.live("shared").await?;
    assert_eq!(data_k(&after), Some("shared"));
    assert_eq!(
        after
            .metadata
            .labels
            .unwrap_or_default()
            .get(APP_LABEL)
            .map(String::as_str),
        Some("shop")
    );
    assert!(f.alive("fresh").await?);
    Ok(())
}

// 4. PruneLast.

#[tokio::test]
async fn prune_last_for_the_application_prunes_after_the_highest_wave() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-prunelast-app").await?;
    f.sync_ok(vec![cm("base", json!({})), cm("old", json!({}))])
        .await?;

    let mut request = f
        .request(vec![
            cm("base", json!({})),
            cm("newest", json!({SYNC_WAVE: "3"})),
        ])
        .await?;
    request.prune = true;
    request.sync_options = options(&["PruneLast=true"]);
    let mut state = f.runner.plan(&request).await;
    let old = task(&state, "old")?;
    assert!(
        old.wave > 3,
        "the prune has a wave after every other: {state:?}"
    );

    f.advanced(&mut state).await?; // validation
    assert!(f.alive("old").await? && !f.alive("newest").await?);
    f.advanced(&mut state).await?; // wave 0: base (old would go here without PruneLast)
    assert!(f.alive("old").await?, "not pruned with wave 0");
    assert!(!f.alive("newest").await?);
    f.advanced(&mut state).await?; // wave 3: newest
    assert!(f.alive("newest").await?);
    assert!(
        f.alive("old").await?,
        "not pruned with the highest wave either"
    );
    f.advanced(&mut state).await?; // the PruneLast wave
    assert!(f.pruned("old").await?, "pruned last");
    assert_eq!(f.step(&mut state).await?, Progress::Finished);
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    assert_eq!(task(&state, "old")?.result, Some(ResultCode::Pruned));
    // The deletion (foreground: the object stays, marked) was written after the creation.
    if let Some(old) = f.config_maps().get_opt("old").await? {
        assert!(rv(&old)? > rv(&f.live("newest").await?)?);
    }
    Ok(())
}

#[tokio::test]
async fn prune_last_on_one_object_prunes_it_after_the_others_are_healthy() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-prunelast-obj").await?;
    f.sync_ok(vec![
        cm("base", json!({})),
        cm("early", json!({})),
        cm("last", json!({SYNC_OPTIONS: "PruneLast=true"})),
    ])
    .await?;

    let mut request = f
        .request(vec![cm("base", json!({})), deployment("web", "3")])
        .await?;
    request.prune = true;
    let mut state = f.runner.plan(&request).await;
    let deployments: Api<Deployment> = Api::namespaced(f.client.clone(), &f.ns);
    f.advanced(&mut state).await?; // validation
    assert!(f.alive("early").await? && f.alive("last").await?);
    f.advanced(&mut state).await?; // wave 0: base, and the ordinary prune
    assert!(
        f.pruned("early").await?,
        "an ordinary prune goes with its wave"
    );
    assert!(f.alive("last").await?);
    assert!(deployments.get_opt("web").await?.is_none());
    f.advanced(&mut state).await?; // wave 3
    assert!(deployments.get_opt("web").await?.is_some());
    assert!(
        f.alive("last").await?,
        "the PruneLast object waits for the highest wave"
    );
    // ... and for it to be healthy (no controller makes the Deployment available).
    let why = f.step_until_waiting(&mut state).await?;
    assert!(
        why.contains("apps/Deployment") && why.contains("web"),
        "{why}"
    );
    assert!(
        f.alive("last").await?,
        "not pruned while the Sync phase is unhealthy"
    );

    capstan_testkit::workloads::mark_deployment_available(&deployments, "web").await?;
    f.advanced(&mut state).await?;
    assert!(f.pruned("last").await?);
    assert_eq!(f.step(&mut state).await?, Progress::Finished);
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    for name in ["early", "last"] {
        assert_eq!(
            task(&state, name)?.result,
            Some(ResultCode::Pruned),
            "{name}"
        );
    }
    Ok(())
}

// 5. Reverse-wave prune order.

#[tokio::test]
async fn prunes_run_in_reverse_wave_order() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-prune-waves").await?;
    f.sync_ok(vec![
        cm("keep", json!({})),
        cm("one", json!({SYNC_WAVE: "1"})),
        cm("five", json!({SYNC_WAVE: "5"})),
    ])
    .await?;

    let mut request = f.request(vec![cm("keep", json!({}))]).await?;
    request.prune = true;
    let mut state = f.runner.plan(&request).await;
    f.advanced(&mut state).await?; // validation
    f.advanced(&mut state).await?; // wave 0: keep
    assert!(
        f.alive("one").await? && f.alive("five").await?,
        "no prune yet"
    );
    f.advanced(&mut state).await?; // the first prune wave
    assert!(f.pruned("five").await?, "the highest wave goes first");
    assert!(f.alive("one").await?, "the lowest wave is still there");
    f.advanced(&mut state).await?;
    assert!(f.pruned("one").await?);
    assert_eq!(f.step(&mut state).await?, Progress::Finished);
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    // Both are marked for deletion (foreground), "five" by the earlier write.
    if let (Some(one), Some(five)) = (
        f.config_maps().get_opt("one").await?,
        f.config_maps().get_opt("five").await?,
    ) {
        assert!(rv(&five)? < rv(&one)?);
    }
    Ok(())
}

// 6. PrunePropagationPolicy.

#[tokio::test]
async fn prune_propagation_policy_is_sent_with_the_deletion() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    // policy option, the finalizer the API server records for the garbage collector
    for (policy, finalizer) in [
        (None, Some("foregroundDeletion")),
        (Some("orphan"), Some("orphan")),
        (Some("background"), None),
    ] {
        let f = Fixture::new(server, "opt-propagation").await?;
        f.sync_ok(vec![cm("owner", json!({}))]).await?;
        let owner = f.live("owner").await?;
        let mut dependent = cm("dependent", json!({}));
        dependent["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
            "name": "owner", "uid": owner.metadata.uid}]);
        f.apply_as("controller", &dependent).await?;

        let mut request = f.request(vec![]).await?;
        request.prune = true;
        if let Some(policy) = policy {
            request.sync_options = options(&[&format!("PrunePropagationPolicy={policy}")]);
        }
        let state = f.sync(&request).await?;
        assert_eq!(
            state.phase,
            OperationPhase::Succeeded,
            "{policy:?}: {}",
            state.message
        );
        let tasks: Vec<&str> = state.tasks.iter().map(|t| t.key.name.as_str()).collect();
        assert_eq!(
            tasks,
            ["owner"],
            "an object with an owner is never pruned ({policy:?})"
        );
        assert_eq!(task(&state, "owner")?.result, Some(ResultCode::Pruned));

        let left = f.config_maps().get_opt("owner").await?;
        match finalizer {
            Some(finalizer) => {
                let left =
                    left.with_context(|| format!("{policy:?}: the owner waits for the GC"))?;
                assert!(left.metadata.deletion_timestamp.is_some(), "{policy:?}");
                let finalizers = left.metadata.finalizers.unwrap_or_default();
                assert_eq!(finalizers, [finalizer], "{policy:?}");
            }
            None => assert!(
                left.is_none(),
                "{policy:?}: background deletes the owner at once"
            ),
        }
        // No garbage collector runs: the dependent is still there, its reference intact.
        let dependent = f.live("dependent").await?;
        assert!(
            dependent.metadata.deletion_timestamp.is_none(),
            "{policy:?}"
        );
        assert_eq!(
            dependent
                .metadata
                .owner_references
                .unwrap_or_default()
                .len(),
            1
        );
    }
    Ok(())
}

// 7. Sync and PostSync hooks.

#[tokio::test]
async fn sync_hooks_run_with_their_wave_and_post_sync_hooks_after_the_sync_phase() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-sync-hook").await?;
    let request = f
        .request(vec![
            cm("base", json!({})),
            cm("same-wave", json!({SYNC_WAVE: "1"})),
            job_hook("migrate", "Sync", "1"),
            cm("after", json!({HOOK: "PostSync"})),
        ])
        .await?;
    let mut state = f.runner.plan(&request).await;
    let jobs: Api<Job> = Api::namespaced(f.client.clone(), &f.ns);

    f.advanced(&mut state).await?; // validation: nothing is written
    assert!(!f.alive("base").await?);
    assert!(jobs.get_opt("migrate").await?.is_none());
    f.advanced(&mut state).await?; // wave 0
    assert!(f.alive("base").await?);
    assert!(
        jobs.get_opt("migrate").await?.is_none(),
        "the Sync hook waits for its wave"
    );
    assert!(!f.alive("same-wave").await?);
    f.advanced(&mut state).await?; // wave 1: the hook together with the wave's object
    let job = jobs
        .get_opt("migrate")
        .await?
        .context("the Sync hook was created")?;
    assert!(
        f.alive("same-wave").await?,
        "created in the same step as the hook"
    );
    assert!(
        !f.alive("after").await?,
        "PostSync waits for the Sync phase"
    );
    let job_rv: u64 = job
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default()
        .parse()?;
    assert!(
        rv(&f.live("base").await?)? < job_rv,
        "the lower wave was written first"
    );
    let hook = task(&state, "migrate")?;
    assert_eq!(
        (hook.status, hook.result),
        (TaskStatus::Running, Some(ResultCode::Synced))
    );

    let why = f.step_until_waiting(&mut state).await?;
    assert!(
        why.contains("batch/Job") && why.contains("migrate"),
        "{why}"
    );
    assert!(
        !f.alive("after").await?,
        "PostSync waits for the running Sync hook"
    );

    // The Job completes (written as its controller would).
    jobs.patch_status("migrate", &PatchParams::default(), &Patch::Merge(json!({"status": {
        "succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:10Z",
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached"}]}})))
        .await?;
    tokio::time::timeout(
        DEADLINE,
        f.runner.run(&mut state, Duration::from_millis(100), |_| {}),
    )
    .await
    .context("sync finished")?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    assert_eq!(task(&state, "migrate")?.status, TaskStatus::Succeeded);
    let completed_rv: u64 = jobs
        .get("migrate")
        .await?
        .metadata
        .resource_version
        .unwrap_or_default()
        .parse()?;
    let after = f.live("after").await?;
    assert!(
        rv(&after)? > completed_rv,
        "PostSync ran after the Sync hook completed"
    );
    assert!(rv(&after)? > rv(&f.live("same-wave").await?)?);
    Ok(())
}

// 8. SkipDryRunOnMissingResource.

fn gadget_crd(group: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}})
}

#[tokio::test]
async fn skip_dry_run_on_missing_resource_defers_the_failure_to_the_apply() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-skipdry").await?;
    let group = format!("{}.example.com", f.ns.replace('-', ""));
    let gadget = |options: &str| {
        let mut g = json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget",
            "metadata": {"name": "g"}, "spec": {"size": 2}});
        if !options.is_empty() {
            g["metadata"]["annotations"] = json!({SYNC_OPTIONS: options});
        }
        g
    };

    // Without the option: the validation pass names the kind, nothing is applied.
    let state = f
        .sync(&f.request(vec![cm("plain", json!({})), gadget("")]).await?)
        .await?;
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(
        state.message.contains("dry run") && state.message.contains("Gadget"),
        "{}",
        state.message
    );
    let t = task(&state, "g")?;
    assert_eq!(
        (t.status, t.result),
        (TaskStatus::Failed, Some(ResultCode::SyncFailed))
    );
    assert!(t.message.contains("Gadget"), "{}", t.message);
    assert!(
        f.config_maps().get_opt("plain").await?.is_none(),
        "nothing applied"
    );

    // With it: the validation pass lets it through; the apply fails, naming the kind.
    let with_option = f
        .request(vec![
            cm("plain", json!({})),
            gadget("SkipDryRunOnMissingResource=true"),
        ])
        .await?;
    let mut state = f.runner.plan(&with_option).await;
    f.advanced(&mut state).await?;
    assert!(
        !state.failing && state.phase == OperationPhase::Running,
        "validation passed: {state:?}"
    );
    tokio::time::timeout(
        DEADLINE,
        f.runner.run(&mut state, Duration::from_millis(100), |_| {}),
    )
    .await
    .context("sync finished")?;
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(!state.message.contains("dry run"), "{}", state.message);
    assert!(state.message.contains("Gadget"), "{}", state.message);
    let t = task(&state, "g")?;
    assert_eq!(
        (t.status, t.result),
        (TaskStatus::Failed, Some(ResultCode::SyncFailed))
    );
    assert!(
        t.message.contains("does not serve kind Gadget"),
        "{}",
        t.message
    );
    assert!(
        f.alive("plain").await?,
        "validation passed, so the rest was applied"
    );

    // The CRD arrives from elsewhere; the same sync now succeeds.
    let crds: Api<CustomResourceDefinition> = Api::all(f.client.clone());
    crds.patch(
        &format!("gadgets.{group}"),
        &PatchParams::apply("installer"),
        &Patch::Apply(gadget_crd(&group)),
    )
    .await?;
    let gvk = GroupVersionKind::gvk(&group, "v1", "Gadget");
    let client = f.client.clone();
    wait_until("the Gadget CRD to be served", DEADLINE, || {
        let (client, gvk) = (client.clone(), gvk.clone());
        async move { Ok(kube::discovery::pinned_kind(&client, &gvk).await.ok()) }
    })
    .await?;
    let state = f
        .sync(
            &f.request(vec![
                cm("plain", json!({})),
                gadget("SkipDryRunOnMissingResource=true"),
            ])
            .await?,
        )
        .await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let (ar, _) = kube::discovery::pinned_kind(&f.client, &gvk).await?;
    let gadgets: Api<DynamicObject> = Api::namespaced_with(f.client.clone(), &f.ns, &ar);
    assert_eq!(gadgets.get("g").await?.data["spec"]["size"], 2);
    Ok(())
}

// 9. Replace and Force.

fn frozen(value: &str, options: &str) -> Value {
    let mut obj = cm_with("frozen", value, json!({SYNC_OPTIONS: options}));
    obj["immutable"] = json!(true);
    obj
}

#[tokio::test]
async fn replace_alone_cannot_change_an_immutable_object() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-replace").await?;
    f.sync_ok(vec![frozen("v1", "Replace=true")]).await?;
    let before = f.live("frozen").await?;

    let state = f
        .sync(&f.request(vec![frozen("v2", "Replace=true")]).await?)
        .await?;
    assert_eq!(state.phase, OperationPhase::Failed);
    let t = task(&state, "frozen")?;
    assert_eq!(
        (t.status, t.result),
        (TaskStatus::Failed, Some(ResultCode::SyncFailed))
    );
    assert!(
        t.message.contains("immutable"),
        "the server's message: {}",
        t.message
    );
    assert!(state.message.contains("immutable"), "{}", state.message);
    let after = f.live("frozen").await?;
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(data_k(&after), Some("v1"));
    Ok(())
}

#[tokio::test]
async fn replace_with_force_recreates_an_immutable_object() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-force").await?;
    f.sync_ok(vec![frozen("v1", "Replace=true,Force=true")])
        .await?;
    let before = f.live("frozen").await?;

    // Force deletes in the foreground: play the garbage collector, which drops the
    // foregroundDeletion finalizer of an object without dependents.
    let api = f.config_maps();
    let gc = tokio::spawn(async move {
        wait_until("frozen to be marked for deletion", DEADLINE, || {
            let api = api.clone();
            async move {
                match api.get_opt("frozen").await? {
                    Some(c) if c.metadata.deletion_timestamp.is_some() => {
                        api.patch(
                            "frozen",
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await?;
                        Ok(Some(()))
                    }
                    _ => Ok(None),
                }
            }
        })
        .await
    });
    let state = f
        .sync(
            &f.request(vec![frozen("v2", "Replace=true,Force=true")])
                .await?,
        )
        .await?;
    gc.abort();
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let t = task(&state, "frozen")?;
    assert_eq!(
        (t.status, t.result),
        (TaskStatus::Succeeded, Some(ResultCode::Synced))
    );
    let after = f.live("frozen").await?;
    assert_ne!(
        after.metadata.uid, before.metadata.uid,
        "deleted and re-created"
    );
    assert_eq!(data_k(&after), Some("v2"));
    assert_eq!(after.immutable, Some(true));
    Ok(())
}

// 10. ForceConflicts.

#[tokio::test]
async fn force_conflicts_false_leaves_another_managers_field_alone() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-conflicts").await?;
    f.config_maps()
        .patch(
            "contested",
            &PatchParams::apply("other"),
            &Patch::Apply(cm_with("contested", "theirs", json!({}))),
        )
        .await?;

    let state = f
        .sync(
            &f.request(vec![cm(
                "contested",
                json!({SYNC_OPTIONS: "ForceConflicts=false"}),
            )])
            .await?,
        )
        .await?;
    assert_eq!(state.phase, OperationPhase::Failed);
    let t = task(&state, "contested")?;
    assert_eq!(
        (t.status, t.result),
        (TaskStatus::Failed, Some(ResultCode::SyncFailed))
    );
    assert!(
        t.message.contains("conflict") && t.message.contains("\"other\""),
        "{}",
        t.message
    );
    assert!(state.message.contains("\"other\""), "{}", state.message);
    let live = f.live("contested").await?;
    assert_eq!(data_k(&live), Some("theirs"));
    assert!(!managers(&live).contains(&"capstan".to_owned()));

    // The same as an Application option.
    let mut request = f.request(vec![cm("contested", json!({}))]).await?;
    request.sync_options = options(&["ForceConflicts=false"]);
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Failed, "{}", state.message);
    assert_eq!(data_k(&f.live("contested").await?), Some("theirs"));

    // By default Git wins: the field is taken over.
    let state = f
        .sync(&f.request(vec![cm("contested", json!({}))]).await?)
        .await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    let live = f.live("contested").await?;
    assert_eq!(data_k(&live), Some("contested"));
    let owners_of_k: Vec<String> = live
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0["f:data"].get("f:k").is_some())
        })
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(owners_of_k, ["capstan"]);
    Ok(())
}

// 11. Dry run.

#[tokio::test]
async fn a_dry_run_reports_a_refused_object_and_changes_nothing() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-dryrun").await?;
    f.sync_ok(vec![cm_with("existing", "v1", json!({}))])
        .await?;
    let before = f.live("existing").await?;

    let mut bad = cm("bad", json!({}));
    bad["spec"] = json!({"unknownField": true});
    let mut request = f
        .request(vec![
            cm_with("existing", "v2", json!({})),
            cm("new", json!({})),
            bad,
            cm("pre", json!({HOOK: "PreSync"})),
            cm("on-fail", json!({HOOK: "SyncFail"})),
        ])
        .await?;
    request.dry_run = true;
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(
        state.message.starts_with("dry run failed"),
        "{}",
        state.message
    );
    assert!(state.message.contains("bad"), "{}", state.message);
    let t = task(&state, "bad")?;
    assert_eq!(
        (t.status, t.result),
        (TaskStatus::Failed, Some(ResultCode::SyncFailed))
    );
    assert!(
        t.message.contains("spec") && t.message.contains("not declared"),
        "{}",
        t.message
    );
    assert_eq!(task(&state, "new")?.message, "created (dry run)");
    assert_eq!(task(&state, "existing")?.message, "configured (dry run)");

    let after = f.live("existing").await?;
    assert_eq!(
        (rv(&after)?, data_k(&after)),
        (rv(&before)?, Some("v1")),
        "nothing changed"
    );
    for name in ["new", "bad", "pre", "on-fail"] {
        assert!(
            f.config_maps().get_opt(name).await?.is_none(),
            "{name} was not written"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_dry_run_with_create_namespace_creates_no_namespace() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-dryrun-ns").await?;
    let target = format!("{}-new", f.ns);
    let mut request = f.request(vec![cm("inside", json!({}))]).await?;
    request.namespace.clone_from(&target);
    request.sync_options = options(&["CreateNamespace=true"]);
    request.dry_run = true;
    let state = f.sync(&request).await?;
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    assert!(
        namespaces.get_opt(&target).await?.is_none(),
        "a dry run creates no namespace"
    );
    let t = task(&state, &target)?;
    assert_eq!(t.key.kind, "Namespace");
    assert_eq!(
        (t.status, t.message.as_str()),
        (TaskStatus::Succeeded, "created (dry run)")
    );
    // What the dry run says about the objects inside the namespace is checked by
    // `create_namespace_creates_the_namespace_before_the_objects_in_it`.
    Ok(())
}

#[tokio::test]
async fn create_namespace_creates_the_namespace_before_the_objects_in_it() -> Result<()> {
    init_test_logging();
    let f = Fixture::new(shared::apiserver().await?, "opt-create-ns").await?;
    let target = format!("{}-new", f.ns);
    let mut request = f.request(vec![cm("inside", json!({}))]).await?;
    request.namespace.clone_from(&target);
    request.sync_options = options(&["CreateNamespace=true"]);

    // A dry run cannot ask the server about objects in a namespace that does not exist yet:
    // it says so instead of failing.
    request.dry_run = true;
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    assert_eq!(
        task(&state, "inside")?.message,
        "dry run skipped: its namespace is created by this sync"
    );
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    assert!(namespaces.get_opt(&target).await?.is_none());

    request.dry_run = false;
    let state = f.sync(&request).await?;
    assert_eq!(state.phase, OperationPhase::Succeeded, "{}", state.message);
    assert!(namespaces.get_opt(&target).await?.is_some());
    let inside: Api<ConfigMap> = Api::namespaced(f.client.clone(), &target);
    assert!(inside.get_opt("inside").await?.is_some());
    Ok(())
}
