//! The server-side diff against a real kube-apiserver: a dry-run apply's prediction compared
//! with live. Defaults produce no difference, a field removed from Git is seen (where the
//! client-side diff cannot see it), the server's own message explains an invalid manifest,
//! `ignoreDifferences` applies, and Secret values stay masked.

use anyhow::{Result, bail};
use capstan_engine::diff::{DiffError, ServerSideOptions, client_side_diff, server_side_diff};
use capstan_engine::resources::ApiResolver;
use capstan_model::ResourceIgnoreDifferences;
use capstan_testkit::{init_test_logging, shared};
use serde_json::{Value, json};

mod common;
use common::{api_of, apply_as};

/// A Deployment manifest in `ns`, with a `tier` label and an env var the tests drop later.
fn deployment(ns: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web", "tier": "front"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image,
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "MODE", "value": "fast"},
                        {"name": "DEBUG", "value": "1"}]}]}}}})
}

fn options() -> ServerSideOptions {
    ServerSideOptions::default()
}

#[tokio::test]
async fn defaults_produce_no_diff_and_missing_resources_are_predicted() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("ssd-defaults").await?;
    let client = server.client().await?;
    let resolver = ApiResolver::new(client.clone());

    let desired = deployment(&ns, "nginx:1.27");
    // Not there yet: the prediction is the desired side, defaults included.
    let missing = server_side_diff(&resolver, &desired, None, &[], &options()).await?;
    assert!(missing.modified && missing.server_side && missing.live.is_none());
    assert_eq!(missing.changed_paths, vec![""]);
    let predicted = missing.desired.as_ref().expect("predicted object");
    assert_eq!(predicted["spec"]["progressDeadlineSeconds"], 600);
    assert!(predicted["metadata"].get("uid").is_none(), "normalised");
    // A dry run creates nothing.
    assert!(
        api_of(&client, &ns, &desired)
            .get_opt("web")
            .await?
            .is_none()
    );

    let live = apply_as(&client, &ns, &desired, "capstan").await?;
    let same = server_side_diff(&resolver, &desired, Some(&live), &[], &options()).await?;
    assert!(!same.modified, "{}", same.unified);
    assert!(same.unified.is_empty() && same.changed_paths.is_empty());
    // Without projection, the defaults are on both sides.
    assert_eq!(
        same.live.as_ref().expect("live")["spec"]["strategy"]["type"],
        "RollingUpdate"
    );

    let newer = deployment(&ns, "nginx:1.28");
    let changed = server_side_diff(&resolver, &newer, Some(&live), &[], &options()).await?;
    assert_eq!(
        changed.changed_paths,
        vec!["/spec/template/spec/containers/0/image"],
        "{}",
        changed.unified
    );
    assert!(
        changed.unified.contains("nginx:1.28"),
        "{}",
        changed.unified
    );
    Ok(())
}

#[tokio::test]
async fn fields_removed_from_git_are_seen_server_side_only() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("ssd-removed").await?;
    let client = server.client().await?;
    let resolver = ApiResolver::new(client.clone());

    let live = apply_as(&client, &ns, &deployment(&ns, "nginx:1.27"), "capstan").await?;

    // Git drops the `tier` label.
    let mut unlabelled = deployment(&ns, "nginx:1.27");
    unlabelled["metadata"]["labels"]
        .as_object_mut()
        .expect("labels")
        .remove("tier");
    let client_side = client_side_diff(Some(&unlabelled), Some(&live), &[])?;
    assert!(
        !client_side.modified,
        "the projection hides a removed field: {}",
        client_side.unified
    );
    let server_side =
        server_side_diff(&resolver, &unlabelled, Some(&live), &[], &options()).await?;
    assert!(server_side.modified);
    assert_eq!(server_side.changed_paths, vec!["/metadata/labels/tier"]);
    assert!(
        server_side.unified.contains("-    tier: front"),
        "{}",
        server_side.unified
    );

    // Git drops an env var: the list shrinks on the server too.
    let mut fewer_env = deployment(&ns, "nginx:1.27");
    fewer_env["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env")
        .pop();
    let d = server_side_diff(&resolver, &fewer_env, Some(&live), &[], &options()).await?;
    assert_eq!(
        d.changed_paths,
        vec!["/spec/template/spec/containers/0/env"],
        "{}",
        d.unified
    );
    assert!(d.unified.contains("DEBUG"), "{}", d.unified);

    // A field another manager set is not removed by our apply: not a difference.
    let labelled = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"owner": "team-a"}}});
    let live = apply_as(&client, &ns, &labelled, "labeller").await?;
    let theirs = server_side_diff(
        &resolver,
        &deployment(&ns, "nginx:1.27"),
        Some(&live),
        &[],
        &options(),
    )
    .await?;
    assert!(!theirs.modified, "{}", theirs.unified);
    Ok(())
}

#[tokio::test]
async fn ignore_differences_apply_server_side() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("ssd-ignore").await?;
    let client = server.client().await?;
    let resolver = ApiResolver::new(client.clone());

    let desired = deployment(&ns, "nginx:1.27");
    apply_as(&client, &ns, &desired, "capstan").await?;
    let scaled = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 7}});
    let live = apply_as(&client, &ns, &scaled, "hpa-like").await?;

    let plain = server_side_diff(&resolver, &desired, Some(&live), &[], &options()).await?;
    assert_eq!(
        plain.changed_paths,
        vec!["/spec/replicas"],
        "{}",
        plain.unified
    );
    for rule in [
        ResourceIgnoreDifferences {
            group: "apps".into(),
            kind: "Deployment".into(),
            managed_fields_managers: vec!["hpa-like".into()],
            ..Default::default()
        },
        ResourceIgnoreDifferences {
            group: "apps".into(),
            kind: "Deployment".into(),
            jq_path_expressions: vec![".spec.replicas".into()],
            ..Default::default()
        },
        ResourceIgnoreDifferences {
            kind: "*".into(),
            group: "*".into(),
            json_pointers: vec!["/spec/replicas".into()],
            ..Default::default()
        },
    ] {
        let d = server_side_diff(
            &resolver,
            &desired,
            Some(&live),
            std::slice::from_ref(&rule),
            &options(),
        )
        .await?;
        assert!(!d.modified, "{rule:?}: {}", d.unified);
    }
    Ok(())
}

#[tokio::test]
async fn an_invalid_manifest_gives_the_servers_message() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("ssd-invalid").await?;
    let client = server.client().await?;
    let resolver = ApiResolver::new(client.clone());

    let mut mismatched = deployment(&ns, "nginx");
    mismatched["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
    match server_side_diff(&resolver, &mismatched, None, &[], &options()).await {
        Err(DiffError::DryRunRefused { code, message, .. }) => {
            assert_eq!(code, 422);
            assert!(message.contains("does not match"), "{message}");
        }
        other => bail!("expected a refusal, got {other:?}"),
    }
    let mut wrong_type = deployment(&ns, "nginx");
    wrong_type["spec"]["replicas"] = json!("two");
    let err = server_side_diff(&resolver, &wrong_type, None, &[], &options())
        .await
        .expect_err("replicas must be a number");
    assert!(
        err.to_string().contains(".spec.replicas") && err.to_string().contains("apps/Deployment"),
        "{err}"
    );
    let unknown = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "g", "namespace": ns}});
    let err = server_side_diff(&resolver, &unknown, None, &[], &options())
        .await
        .expect_err("no such kind");
    assert!(matches!(err, DiffError::Resolve(_)), "{err}");
    let mut no_namespace = deployment(&ns, "nginx");
    no_namespace["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("namespace");
    let err = server_side_diff(&resolver, &no_namespace, None, &[], &options())
        .await
        .expect_err("namespaced kind without a namespace");
    assert!(err.to_string().contains("metadata.namespace"), "{err}");
    Ok(())
}

#[tokio::test]
async fn secret_values_are_masked_server_side() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("ssd-secret").await?;
    let client = server.client().await?;
    let resolver = ApiResolver::new(client.clone());

    let secret = |password: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": ns},
            "stringData": {"password": password, "user": "admin"}})
    };
    let live = apply_as(&client, &ns, &secret("hunter2"), "capstan").await?;
    let same =
        server_side_diff(&resolver, &secret("hunter2"), Some(&live), &[], &options()).await?;
    assert!(!same.modified, "{}", same.unified);

    let rotated = server_side_diff(
        &resolver,
        &secret("correct-horse"),
        Some(&live),
        &[],
        &options(),
    )
    .await?;
    assert!(rotated.modified, "a rotated value is a difference");
    assert_eq!(rotated.changed_paths, vec!["/data/password"]);
    let shown = serde_json::to_string(&rotated)?;
    for leaked in [
        "hunter2",
        "aHVudGVyMg",
        "correct-horse",
        "Y29ycmVjdC1ob3JzZQ",
        "YWRtaW4",
    ] {
        assert!(!shown.contains(leaked), "{leaked} leaked: {shown}");
    }
    assert!(
        rotated.unified.contains("password: +++"),
        "{}",
        rotated.unified
    );
    Ok(())
}
