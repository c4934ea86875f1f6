//! The client-side diff against what a real kube-apiserver returns: server-applied objects
//! (defaults, managed fields, generation, uid) compare equal to their manifests, real
//! changes (also made by a separate client) show, every `ignoreDifferences` form works, and
//! Secret values behave as documented.

use std::time::Duration;

use anyhow::Result;
use capstan_engine::diff::{client_side_diff, diff};
use capstan_model::ResourceIgnoreDifferences;
use capstan_testkit::{init_test_logging, shared, wait::wait_until};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

mod common;
use common::{api_of, apply_as};

/// Server-side applies `manifest` in `ns` and returns the object the server holds.
async fn apply(client: &kube::Client, ns: &str, manifest: &Value) -> Result<Value> {
    apply_as(client, ns, manifest, "capstan-test").await
}

fn deployment(image: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image,
                    "ports": [{"containerPort": 80}]}]}}}})
}

#[tokio::test]
async fn applied_objects_compare_equal_and_changes_show() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("diff").await?;
    let client = server.client().await?;

    let desired = deployment("nginx:1.27", 2);
    let live = apply(&client, &ns, &desired).await?;
    // The server added defaults (strategy, progressDeadlineSeconds, protocol, ...) and metadata.
    assert!(live["spec"]["progressDeadlineSeconds"].is_i64());
    assert!(live["metadata"]["managedFields"].is_array());
    let same = diff(Some(&desired), Some(&live), &[]).map_err(anyhow::Error::msg)?;
    assert!(!same.modified, "{}", same.unified);

    let newer = deployment("nginx:1.28", 2);
    let changed = diff(Some(&newer), Some(&live), &[]).map_err(anyhow::Error::msg)?;
    assert!(changed.modified);
    assert!(
        changed.unified.contains("nginx:1.28"),
        "{}",
        changed.unified
    );

    // Someone scales it by hand: a difference, unless ignored.
    let scaled = apply(&client, &ns, &deployment("nginx:1.27", 5)).await?;
    assert!(
        diff(Some(&desired), Some(&scaled), &[])
            .map_err(anyhow::Error::msg)?
            .modified
    );
    let ignore = ResourceIgnoreDifferences {
        group: "apps".into(),
        kind: "Deployment".into(),
        json_pointers: vec!["/spec/replicas".into()],
        ..Default::default()
    };
    assert!(
        !diff(Some(&desired), Some(&scaled), &[ignore])
            .map_err(anyhow::Error::msg)?
            .modified
    );

    // A Secret written with stringData reads back as data; values never show in the diff.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "stringData": {"password": "hunter2"}});
    let live_secret = apply(&client, &ns, &secret).await?;
    assert!(live_secret["data"]["password"].is_string());
    let same = diff(Some(&secret), Some(&live_secret), &[]).map_err(anyhow::Error::msg)?;
    assert!(!same.modified, "{}", same.unified);
    let rotated = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "stringData": {"password": "correct-horse"}});
    let d = diff(Some(&rotated), Some(&live_secret), &[]).map_err(anyhow::Error::msg)?;
    assert!(d.modified);
    for leaked in ["hunter2", "correct-horse", "aHVudGVyMg"] {
        assert!(!d.unified.contains(leaked), "{}", d.unified);
    }
    Ok(())
}

fn ignore(f: impl FnOnce(&mut ResourceIgnoreDifferences)) -> Vec<ResourceIgnoreDifferences> {
    let mut rule = ResourceIgnoreDifferences {
        group: "apps".into(),
        kind: "Deployment".into(),
        ..Default::default()
    };
    f(&mut rule);
    vec![rule]
}

#[tokio::test]
async fn ignore_differences_in_each_form() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("diff-ignore").await?;
    let client = server.client().await?;

    let mut desired = deployment("nginx:1.27", 2);
    desired["spec"]["template"]["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "busybox"}]);
    apply_as(&client, &ns, &desired, "capstan").await?;

    // A sidecar injector adds an init container, an autoscaler takes over the replicas: each
    // with its own field manager, as controllers in a cluster do.
    let injected = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"initContainers": [
            {"name": "istio-init", "image": "istio/proxyv2"}]}}}});
    apply_as(&client, &ns, &injected, "istio-like").await?;
    let scaled = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let live = apply_as(&client, &ns, &scaled, "hpa-like").await?;
    assert_eq!(live["spec"]["replicas"], 5);
    assert_eq!(
        live["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let plain = client_side_diff(Some(&desired), Some(&live), &[])?;
    assert!(plain.modified);
    assert_eq!(
        plain.changed_paths,
        vec!["/spec/replicas", "/spec/template/spec/initContainers"],
        "{}",
        plain.unified
    );

    let replicas_by_pointer = ignore(|r| r.json_pointers = vec!["/spec/replicas".into()]);
    let sidecar_by_jq = ignore(|r| {
        r.jq_path_expressions =
            vec![r#".spec.template.spec.initContainers[] | select(.name == "istio-init")"#.into()]
    });
    let by_managers = ignore(|r| {
        r.managed_fields_managers = vec!["hpa-like".into(), "istio-like".into()];
    });
    let pointer = client_side_diff(Some(&desired), Some(&live), &replicas_by_pointer)?;
    assert_eq!(
        pointer.changed_paths,
        vec!["/spec/template/spec/initContainers"]
    );
    let jq = client_side_diff(Some(&desired), Some(&live), &sidecar_by_jq)?;
    assert_eq!(jq.changed_paths, vec!["/spec/replicas"], "{}", jq.unified);
    let both: Vec<_> = replicas_by_pointer
        .into_iter()
        .chain(sidecar_by_jq)
        .collect();
    let quiet = client_side_diff(Some(&desired), Some(&live), &both)?;
    assert!(!quiet.modified, "{}", quiet.unified);

    let managers = client_side_diff(Some(&desired), Some(&live), &by_managers)?;
    assert!(!managers.modified, "{}", managers.unified);
    // Only the listed managers' fields: a change to a field capstan owns still shows.
    let only_hpa = ignore(|r| r.managed_fields_managers = vec!["hpa-like".into()]);
    let sidecar_left = client_side_diff(Some(&desired), Some(&live), &only_hpa)?;
    assert_eq!(
        sidecar_left.changed_paths,
        vec!["/spec/template/spec/initContainers"]
    );
    let newer = {
        let mut d = desired.clone();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        d
    };
    let image = client_side_diff(Some(&newer), Some(&live), &by_managers)?;
    assert_eq!(
        image.changed_paths,
        vec!["/spec/template/spec/containers/0/image"]
    );
    Ok(())
}

#[tokio::test]
async fn drift_made_by_a_separate_client_is_detected() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("diff-drift").await?;
    let ours = server.client().await?;
    let theirs = server.client().await?;

    let desired = deployment("nginx:1.27", 2);
    apply_as(&ours, &ns, &desired, "capstan").await?;
    let api = api_of(&ours, &ns, &desired);
    let live = serde_json::to_value(api.get("web").await?)?;
    assert!(!client_side_diff(Some(&desired), Some(&live), &[])?.modified);

    // Someone edits the image and adds an env var with their own client (a merge patch, as
    // `kubectl edit` or `kubectl set image` would send).
    let edit = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:evil", "ports": [{"containerPort": 80}]}]}}}});
    api_of(&theirs, &ns, &desired)
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(&edit),
        )
        .await?;

    let drifted = wait_until(
        "the edit to be visible",
        Duration::from_secs(10),
        || async {
            let obj = serde_json::to_value(api.get("web").await?)?;
            let image = obj["spec"]["template"]["spec"]["containers"][0]["image"].clone();
            Ok((image == "nginx:evil").then_some(obj))
        },
    )
    .await?;
    let d = client_side_diff(Some(&desired), Some(&drifted), &[])?;
    assert!(d.modified);
    assert_eq!(
        d.changed_paths,
        vec!["/spec/template/spec/containers/0/image"]
    );
    assert!(
        d.unified.contains("-") && d.unified.contains("nginx:evil"),
        "{}",
        d.unified
    );
    assert_eq!(d.key.namespace, ns, "the namespace comes from live");
    Ok(())
}
