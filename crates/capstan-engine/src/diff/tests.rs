use serde_json::json;

use super::*;

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}}
        }
    })
}

/// What the API server returns for `deployment`: defaults, server metadata, status.
fn live_of(desired: &Value) -> Value {
    let mut live = desired.clone();
    live["metadata"]["uid"] = json!("1b6f");
    live["metadata"]["resourceVersion"] = json!("4711");
    live["metadata"]["generation"] = json!(3);
    live["metadata"]["creationTimestamp"] = json!("2026-11-26T10:00:00Z");
    live["metadata"]["managedFields"] = json!([{"manager": "capstan", "operation": "Apply"}]);
    live["metadata"]["annotations"] = json!({LAST_APPLIED: "{}"});
    live["spec"]["progressDeadlineSeconds"] = json!(600);
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    live["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    live["status"] = json!({"replicas": 2, "readyReplicas": 2});
    live
}

#[test]
fn server_defaults_and_metadata_are_not_differences() {
    let desired = deployment(2, "nginx:1.27");
    let d = diff(Some(&desired), Some(&live_of(&desired)), &[]).expect("diff");
    assert!(!d.modified, "{}", d.unified);
    assert!(d.unified.is_empty());
}

#[test]
fn a_changed_field_is_a_difference_with_a_readable_diff() {
    let live = live_of(&deployment(2, "nginx:1.27"));
    let desired = deployment(2, "nginx:1.28");
    let d = diff(Some(&desired), Some(&live), &[]).expect("diff");
    assert!(d.modified);
    assert!(
        d.unified.contains("--- live") && d.unified.contains("+++ desired"),
        "{}",
        d.unified
    );
    assert!(
        d.unified.contains("-") && d.unified.contains("nginx:1.27"),
        "{}",
        d.unified
    );
    assert!(
        d.unified.contains("+") && d.unified.contains("nginx:1.28"),
        "{}",
        d.unified
    );
    assert!(
        !d.unified.contains("progressDeadlineSeconds"),
        "defaults are projected away"
    );
}

#[test]
fn missing_and_extraneous_resources() {
    let desired = deployment(1, "nginx");
    let missing = diff(Some(&desired), None, &[]).expect("diff");
    assert!(missing.modified && missing.live.is_none());
    assert!(
        missing.unified.contains("+kind: Deployment"),
        "{}",
        missing.unified
    );
    let extra = diff(None, Some(&live_of(&desired)), &[]).expect("diff");
    assert!(extra.modified && extra.desired.is_none());
    assert!(
        !extra.unified.contains("resourceVersion"),
        "{}",
        extra.unified
    );
}

#[test]
fn ignore_differences_by_json_pointer_and_selector() {
    let live = live_of(&deployment(5, "nginx")); // scaled by an autoscaler
    let desired = deployment(2, "nginx");
    let rule = |kind: &str, name: &str, pointer: &str| ResourceIgnoreDifferences {
        group: "apps".into(),
        kind: kind.into(),
        name: name.into(),
        json_pointers: vec![pointer.into()],
        ..Default::default()
    };
    assert!(
        diff(Some(&desired), Some(&live), &[])
            .expect("diff")
            .modified
    );
    let ignored = diff(
        Some(&desired),
        Some(&live),
        &[rule("Deployment", "", "/spec/replicas")],
    )
    .expect("diff");
    assert!(!ignored.modified, "{}", ignored.unified);
    let any_kind = diff(
        Some(&desired),
        Some(&live),
        &[rule("*", "web", "/spec/replicas")],
    )
    .expect("diff");
    assert!(!any_kind.modified);
    // A rule for another name or kind does not apply.
    for other in [
        rule("Deployment", "api", "/spec/replicas"),
        rule("StatefulSet", "", "/spec/replicas"),
    ] {
        assert!(
            diff(Some(&desired), Some(&live), &[other])
                .expect("diff")
                .modified
        );
    }
    // Escaped pointers reach keys with '/' in them.
    let mut labelled = desired.clone();
    labelled["metadata"]["labels"]["app.kubernetes.io/version"] = json!("2");
    let mut live_labelled = live.clone();
    live_labelled["spec"]["replicas"] = json!(2);
    live_labelled["metadata"]["labels"]["app.kubernetes.io/version"] = json!("1");
    let r = rule(
        "Deployment",
        "",
        "/metadata/labels/app.kubernetes.io~1version",
    );
    assert!(
        !diff(Some(&labelled), Some(&live_labelled), &[r])
            .expect("diff")
            .modified
    );
    let err = diff(
        Some(&desired),
        Some(&live),
        &[rule("Deployment", "", "spec/replicas")],
    )
    .expect_err("not a pointer");
    assert!(err.contains("must start with '/'"), "{err}");
}

#[test]
fn secret_values_are_masked_and_string_data_compares_with_data() {
    let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "stringData": {"password": "hunter2", "user": "admin"}});
    let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "uid": "x"},
        "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="}, "type": "Opaque"});
    let same = diff(Some(&desired), Some(&live), &[]).expect("diff");
    assert!(
        !same.modified,
        "stringData is data in base64: {}",
        same.unified
    );

    let changed = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "stringData": {"password": "correct-horse", "user": "admin"}});
    let d = diff(Some(&changed), Some(&live), &[]).expect("diff");
    assert!(d.modified);
    for secret in [
        "hunter2",
        "aHVudGVyMg",
        "correct-horse",
        "Y29ycmVjdC1ob3JzZQ",
        "YWRtaW4",
    ] {
        assert!(
            !d.unified.contains(secret),
            "secret {secret} leaked:\n{}",
            d.unified
        );
        assert!(!d.live.as_ref().expect("live").to_string().contains(secret));
        assert!(
            !d.desired
                .as_ref()
                .expect("desired")
                .to_string()
                .contains(secret)
        );
    }
    // The unchanged key has one mask on both sides; the changed one has two different masks.
    let (dl, dd) = (d.live.expect("live"), d.desired.expect("desired"));
    assert_eq!(dl["data"]["user"], dd["data"]["user"]);
    assert_ne!(dl["data"]["password"], dd["data"]["password"]);
    assert!(d.unified.contains("password: +++"), "{}", d.unified);
}

#[test]
fn lists_of_different_length_differ() {
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"k": "v"}});
    let mut two = deployment(1, "a");
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("list")
        .push(json!({"name": "sidecar", "image": "b"}));
    let d = diff(Some(&deployment(1, "a")), Some(&live_of(&two)), &[]).expect("diff");
    assert!(d.modified, "an extra container is a difference");
    assert!(d.unified.contains("sidecar"), "{}", d.unified);
    let same = diff(Some(&desired), Some(&desired), &[]).expect("diff");
    assert!(!same.modified);
}
