use super::*;
use crate::sync::hooks::{ANNOTATION_HOOK, ANNOTATION_SYNC_WAVE};
use crate::sync::options::ANNOTATION_SYNC_OPTIONS;
use serde_json::json;

fn cm(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": annotations}})
}

fn obj(api_version: &str, kind: &str, name: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}})
}

fn live(mut object: Value, app: Option<&str>) -> LiveObject {
    if object["metadata"]["namespace"].is_null() {
        object["metadata"]["namespace"] = json!("shop");
    }
    LiveObject {
        object,
        app: app.map(str::to_owned),
    }
}

fn request(desired: Vec<Value>) -> SyncRequest {
    SyncRequest {
        app: "shop".into(),
        namespace: "shop".into(),
        desired,
        ..SyncRequest::default()
    }
}

/// Namespaces, nodes-like and CRDs are cluster-scoped; everything else namespaced.
fn scope(m: &Value) -> Option<bool> {
    Some(!matches!(
        str_at(m, &["kind"]),
        "Namespace" | "CustomResourceDefinition" | "ClusterRole"
    ))
}

fn names(state: &SyncState) -> Vec<String> {
    state
        .tasks
        .iter()
        .map(|t| format!("{:?}:{}:{}", t.phase, t.wave, t.key.name))
        .collect()
}

#[test]
fn tasks_are_ordered_by_phase_wave_kind_and_name() {
    let state = plan(
        &request(vec![
            obj("apps/v1", "Deployment", "web"),
            cm("b", json!({})),
            cm("a", json!({ANNOTATION_SYNC_WAVE: "1"})),
            obj("v1", "Namespace", "extra"),
            cm("pre", json!({ANNOTATION_HOOK: "PreSync"})),
            cm("post", json!({ANNOTATION_HOOK: "PostSync"})),
            obj(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "widgets.example.com",
            ),
            obj("example.com/v1", "Widget", "w"),
        ]),
        &scope,
    );
    assert_eq!(state.phase, OperationPhase::Running, "{}", state.message);
    assert_eq!(
        names(&state),
        [
            "PreSync:0:pre",
            "Sync:0:extra",
            "Sync:0:widgets.example.com",
            "Sync:0:b",
            "Sync:0:web",
            "Sync:0:w",
            "Sync:1:a",
            "PostSync:0:post",
        ]
    );
    let ns = &state.tasks[1];
    assert_eq!(
        ns.key.namespace, "",
        "cluster-scoped objects carry no namespace"
    );
    assert_eq!(
        state.tasks[3].key.namespace, "shop",
        "the destination namespace is filled in"
    );
}

#[test]
fn hooks_run_once_per_phase_and_skip_is_never_applied() {
    let state = plan(
        &request(vec![
            cm("both", json!({ANNOTATION_HOOK: "PreSync,PostSync"})),
            cm("skipped", json!({ANNOTATION_HOOK: "Skip"})),
            cm("on-fail", json!({ANNOTATION_HOOK: "SyncFail"})),
            cm("on-delete", json!({ANNOTATION_HOOK: "PostDelete"})),
        ]),
        &scope,
    );
    assert_eq!(names(&state), ["PreSync:0:both", "PostSync:0:both"]);
    assert_eq!(state.fail_tasks.len(), 1);
    assert_eq!(state.fail_tasks[0].key.name, "on-fail");
    assert!(state.tasks.iter().all(Task::is_hook));
}

#[test]
fn prunes_run_in_reverse_wave_order_and_prune_last_comes_after_everything() {
    let mut req = request(vec![cm("kept", json!({ANNOTATION_SYNC_WAVE: "3"}))]);
    req.prune = true;
    req.live = vec![
        live(cm("kept", json!({})), Some("shop")),
        live(cm("w-1", json!({ANNOTATION_SYNC_WAVE: "-1"})), Some("shop")),
        live(cm("w5", json!({ANNOTATION_SYNC_WAVE: "5"})), Some("shop")),
        live(cm("w2", json!({ANNOTATION_SYNC_WAVE: "2"})), Some("shop")),
        live(
            cm("last", json!({ANNOTATION_SYNC_OPTIONS: "PruneLast=true"})),
            Some("shop"),
        ),
        live(cm("someone-else", json!({})), Some("other")),
        live(cm("untracked", json!({})), None),
        live(
            {
                let mut child = cm("child", json!({}));
                child["metadata"]["ownerReferences"] = json!([{"uid": "1"}]);
                child
            },
            Some("shop"),
        ),
    ];
    let state = plan(&req, &scope);
    // Waves -1, 2, 5 map onto 5, 2, -1: the highest wave is pruned first.
    assert_eq!(
        names(&state),
        [
            "Sync:-1:w5",
            "Sync:2:w2",
            "Sync:3:kept",
            "Sync:5:w-1",
            "Sync:6:last"
        ]
    );
    assert!(
        state
            .tasks
            .iter()
            .filter(|t| t.action == Action::Prune)
            .all(|t| t.status == TaskStatus::Pending)
    );
}

#[test]
fn prunes_are_reported_skipped_without_prune_or_with_prune_false() {
    let mut req = request(vec![]);
    req.live = vec![
        live(cm("old", json!({})), Some("shop")),
        live(
            cm("keep", json!({ANNOTATION_SYNC_OPTIONS: "Prune=false"})),
            Some("shop"),
        ),
    ];
    let state = plan(&req, &scope);
    let messages: Vec<(&str, Option<ResultCode>, &str)> = state
        .tasks
        .iter()
        .map(|t| (t.key.name.as_str(), t.result, t.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (
                "keep",
                Some(ResultCode::PruneSkipped),
                "ignored (Prune=false)"
            ),
            (
                "old",
                Some(ResultCode::PruneSkipped),
                "ignored (requires pruning)"
            ),
        ]
    );
    req.prune = true;
    let state = plan(&req, &scope);
    let old = state
        .tasks
        .iter()
        .find(|t| t.key.name == "old")
        .expect("planned");
    assert_eq!(old.status, TaskStatus::Pending);
}

#[test]
fn selective_sync_keeps_only_the_listed_resources_and_no_hooks() {
    let mut req = request(vec![
        cm("a", json!({})),
        cm("b", json!({})),
        cm("hook", json!({ANNOTATION_HOOK: "PreSync"})),
    ]);
    req.resources = vec![SyncOperationResource {
        kind: "ConfigMap".into(),
        name: "b".into(),
        ..SyncOperationResource::default()
    }];
    req.prune = true;
    req.live = vec![live(cm("gone", json!({})), Some("shop"))];
    assert_eq!(names(&plan(&req, &scope)), ["Sync:0:b"]);
}

#[test]
fn create_namespace_comes_first_with_its_managed_metadata() {
    let mut req = request(vec![cm("a", json!({}))]);
    req.sync_options = SyncOptions(vec!["CreateNamespace=true".into()]);
    let mut meta = ManagedNamespaceMetadata::default();
    meta.labels.insert("team".into(), "shop".into());
    req.managed_namespace_metadata = Some(meta);
    let state = plan(&req, &scope);
    let first = &state.tasks[0];
    assert_eq!(
        (first.key.kind.as_str(), first.key.name.as_str()),
        ("Namespace", "shop")
    );
    assert_eq!(first.phase, SyncPhase::PreSync);
    let manifest = first.manifest.as_ref().expect("has a manifest");
    assert_eq!(manifest["metadata"]["labels"]["team"], "shop");
}

#[test]
fn shared_resources_fail_the_plan_only_when_asked() {
    let mut req = request(vec![cm("a", json!({}))]);
    req.live = vec![live(cm("a", json!({})), Some("other"))];
    assert_eq!(plan(&req, &scope).phase, OperationPhase::Running);
    req.sync_options = SyncOptions(vec!["FailOnSharedResource=true".into()]);
    let state = plan(&req, &scope);
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(state.message.contains("\"other\""), "{}", state.message);
}

#[test]
fn apply_out_of_sync_only_leaves_in_sync_resources_alone() {
    let mut wanted = cm("changed", json!({}));
    wanted["data"] = json!({"k": "new"});
    let mut req = request(vec![cm("same", json!({})), wanted]);
    let mut same = cm("same", json!({}));
    same["metadata"]["resourceVersion"] = json!("7");
    let mut changed = cm("changed", json!({}));
    changed["data"] = json!({"k": "old"});
    req.live = vec![live(same, Some("shop")), live(changed, Some("shop"))];
    req.sync_options = SyncOptions(vec!["ApplyOutOfSyncOnly=true".into()]);
    let state = plan(&req, &scope);
    let status: Vec<(&str, TaskStatus)> = state
        .tasks
        .iter()
        .map(|t| (t.key.name.as_str(), t.status))
        .collect();
    assert_eq!(
        status,
        [
            ("changed", TaskStatus::Pending),
            ("same", TaskStatus::Succeeded)
        ]
    );
}

#[test]
fn a_bad_wave_fails_the_plan_with_the_resource_named() {
    let state = plan(
        &request(vec![cm("a", json!({ANNOTATION_SYNC_WAVE: "soon"}))]),
        &scope,
    );
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(
        state.message.starts_with("ConfigMap shop/a:"),
        "{}",
        state.message
    );
}

#[test]
fn deleting_prunes_everything_between_the_delete_hooks() {
    let mut req = request(vec![
        cm("a", json!({})),
        cm("pre", json!({ANNOTATION_HOOK: "PreDelete"})),
        cm("post", json!({ANNOTATION_HOOK: "PostDelete"})),
        cm("sync-hook", json!({ANNOTATION_HOOK: "PreSync"})),
    ]);
    req.mode = Mode::Delete;
    req.live = vec![
        live(cm("a", json!({})), Some("shop")),
        live(
            cm("kept", json!({ANNOTATION_SYNC_OPTIONS: "Delete=false"})),
            Some("shop"),
        ),
    ];
    let state = plan(&req, &scope);
    assert_eq!(
        names(&state),
        [
            "PreDelete:0:pre",
            "Sync:0:a",
            "Sync:0:kept",
            "PostDelete:0:post"
        ]
    );
    let kept = &state.tasks[2];
    assert_eq!(kept.result, Some(ResultCode::PruneSkipped));
    assert_eq!(state.tasks[1].status, TaskStatus::Pending);
}
