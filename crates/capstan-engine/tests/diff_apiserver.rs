//! The client-side diff against what a real kube-apiserver returns: server-applied objects
//! (defaults, managed fields, generation, uid) compare equal to their manifests, and real
//! changes and Secret values behave as documented.

use anyhow::Result;
use capstan_engine::diff::diff;
use capstan_model::ResourceIgnoreDifferences;
use capstan_testkit::{init_test_logging, shared};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// Server-side applies `manifest` in `ns` and returns the object the server holds.
async fn apply(client: &kube::Client, ns: &str, manifest: &Value) -> Result<Value> {
    let api_version = manifest["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(
        group,
        version,
        manifest["kind"].as_str().unwrap_or_default(),
    );
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk));
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    let applied = api
        .patch(
            name,
            &PatchParams::apply("capstan-test").force(),
            &Patch::Apply(manifest),
        )
        .await?;
    Ok(serde_json::to_value(applied)?)
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
