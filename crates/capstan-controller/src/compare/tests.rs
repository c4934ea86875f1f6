use super::*;
use capstan_model::HealthStatusCode;
use serde_json::json;

fn cm(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop"}, "data": {"k": value}})
}

fn live(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("u");
    obj["metadata"]["resourceVersion"] = json!("1");
    obj
}

fn run(input: &CompareInput) -> Comparison {
    compare(input, &HealthAssessor::builtin_only())
}

fn statuses(c: &Comparison) -> Vec<(String, Option<SyncStatusCode>, bool)> {
    c.resources
        .iter()
        .map(|r| (r.name.clone(), r.status, r.requires_pruning))
        .collect()
}

#[test]
fn equal_resources_are_synced_and_changes_missing_and_extra_ones_are_not() {
    let input = CompareInput {
        desired: vec![cm("same", "1"), cm("changed", "new"), cm("missing", "1")],
        tracked: vec![
            live(cm("same", "1")),
            live(cm("changed", "old")),
            live(cm("extra", "1")),
        ],
        ..CompareInput::default()
    };
    let c = run(&input);
    assert_eq!(c.sync, SyncStatusCode::OutOfSync);
    assert_eq!(
        statuses(&c),
        [
            ("changed".into(), Some(SyncStatusCode::OutOfSync), false),
            ("extra".into(), Some(SyncStatusCode::OutOfSync), true),
            ("missing".into(), Some(SyncStatusCode::OutOfSync), false),
            ("same".into(), Some(SyncStatusCode::Synced), false),
        ]
    );
    let missing = c
        .resources
        .iter()
        .find(|r| r.name == "missing")
        .expect("listed");
    assert_eq!(
        missing.health.as_ref().and_then(|h| h.status),
        Some(HealthStatusCode::Missing)
    );
}

#[test]
fn everything_equal_is_synced_and_untracked_objects_at_desired_keys_count_as_live() {
    let input = CompareInput {
        desired: vec![cm("a", "1"), cm("b", "2")],
        tracked: vec![live(cm("a", "1"))],
        untracked: vec![live(cm("b", "2"))],
        ..CompareInput::default()
    };
    let c = run(&input);
    assert_eq!(c.sync, SyncStatusCode::Synced, "{:?}", statuses(&c));
    assert_eq!(c.health.status, Some(HealthStatusCode::Healthy));
}

#[test]
fn hooks_and_ignored_extraneous_objects_do_not_make_the_app_out_of_sync() {
    let mut hook = cm("migrate", "1");
    hook["metadata"]["annotations"] = json!({"argocd.argoproj.io/hook": "PreSync"});
    let mut skipped = cm("skipped", "1");
    skipped["metadata"]["annotations"] = json!({"argocd.argoproj.io/hook": "Skip"});
    let mut extraneous = live(cm("leftover", "1"));
    extraneous["metadata"]["annotations"] =
        json!({"argocd.argoproj.io/compare-options": "IgnoreExtraneous"});
    let input = CompareInput {
        desired: vec![cm("a", "1"), hook, skipped],
        tracked: vec![live(cm("a", "1")), extraneous],
        ..CompareInput::default()
    };
    let c = run(&input);
    assert_eq!(c.sync, SyncStatusCode::Synced, "{:?}", statuses(&c));
    let names: Vec<&str> = c.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "leftover", "migrate"]);
    assert!(c.resources[2].hook && c.resources[2].status.is_none());
}

#[test]
fn ignore_differences_apply_and_bad_rules_are_reported() {
    let rule = |pointer: &str| ResourceIgnoreDifferences {
        kind: "ConfigMap".into(),
        json_pointers: vec![pointer.into()],
        ..ResourceIgnoreDifferences::default()
    };
    let mut input = CompareInput {
        desired: vec![cm("a", "new")],
        tracked: vec![live(cm("a", "old"))],
        ignore: vec![rule("/data/k")],
        ..CompareInput::default()
    };
    assert_eq!(run(&input).sync, SyncStatusCode::Synced);
    input.ignore = vec![rule("data/k")];
    let c = run(&input);
    assert_eq!(c.resources[0].status, Some(SyncStatusCode::Unknown));
    assert_eq!(c.errors.len(), 1);
    assert!(c.errors[0].1.contains("data/k"), "{:?}", c.errors);
}

#[test]
fn waves_and_versions_are_reported() {
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop",
            "annotations": {"argocd.argoproj.io/sync-wave": "3"}}});
    d["spec"] = json!({"replicas": 1});
    let c = run(&CompareInput {
        desired: vec![d],
        ..CompareInput::default()
    });
    assert_eq!(c.resources[0].sync_wave, 3);
    assert_eq!(c.resources[0].version, "v1");
    assert_eq!(c.resources[0].group, "apps");
}

#[test]
fn details_keep_both_sides_and_the_diff_of_every_resource_in_order_when_asked() {
    let mut hook = cm("migrate", "1");
    hook["metadata"]["annotations"] = json!({"argocd.argoproj.io/hook": "PreSync"});
    let mut input = CompareInput {
        desired: vec![
            cm("same", "1"),
            cm("changed", "new"),
            cm("missing", "1"),
            hook,
        ],
        tracked: vec![
            live(cm("same", "1")),
            live(cm("changed", "old")),
            live(cm("extra", "1")),
        ],
        ..CompareInput::default()
    };
    assert!(run(&input).details.is_empty(), "only when asked");
    input.detail = true;
    let c = run(&input);
    let names: Vec<&str> = c.details.iter().map(|d| d.key.name.as_str()).collect();
    let listed: Vec<&str> = c.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, listed);
    assert_eq!(names, ["changed", "extra", "migrate", "missing", "same"]);
    let detail = |name: &str| c.details.iter().find(|d| d.key.name == name).expect("kept");

    let changed = detail("changed").diff.as_ref().expect("diffed");
    assert!(changed.modified);
    assert!(
        changed.unified.contains("-  k: old") && changed.unified.contains("+  k: new"),
        "{}",
        changed.unified
    );
    assert_eq!(
        detail("changed").live.as_ref().map(|l| &l["data"]["k"]),
        Some(&json!("old"))
    );

    let extra = detail("extra");
    assert!(extra.desired.is_none() && extra.live.is_some());
    assert!(
        extra
            .diff
            .as_ref()
            .is_some_and(|d| d.modified && d.desired.is_none())
    );
    let missing = detail("missing");
    assert!(missing.live.is_none());
    assert!(
        missing
            .diff
            .as_ref()
            .is_some_and(|d| d.modified && d.live.is_none())
    );
    let hook = detail("migrate");
    assert!(hook.hook && hook.diff.is_none());
    let same = detail("same").diff.as_ref().expect("diffed");
    assert!(!same.modified && same.unified.is_empty());
    // The statuses are what they are without details.
    input.detail = false;
    assert_eq!(run(&input).resources, c.resources);
}
