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

fn rule(f: impl FnOnce(&mut ResourceIgnoreDifferences)) -> ResourceIgnoreDifferences {
    let mut r = ResourceIgnoreDifferences {
        group: "apps".into(),
        kind: "Deployment".into(),
        ..Default::default()
    };
    f(&mut r);
    r
}

#[test]
fn jq_path_expressions_remove_what_they_select_on_both_sides() {
    let mut desired = deployment(2, "nginx");
    desired["metadata"]["annotations"] = json!({"foo": "git", "keep": "1"});
    let mut live = live_of(&desired);
    live["metadata"]["annotations"] =
        json!({"foo": "changed-by-a-tool", "keep": "1", LAST_APPLIED: "{}"});
    live["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("list")
        .push(json!({"name": "istio-proxy", "image": "istio/proxyv2"}));
    let plain = diff(Some(&desired), Some(&live), &[]).expect("diff");
    assert_eq!(
        plain.changed_paths,
        vec![
            "/metadata/annotations/foo",
            "/spec/template/spec/containers"
        ]
    );
    let ignored = client_side_diff(
        Some(&desired),
        Some(&live),
        &[rule(|r| {
            r.jq_path_expressions = vec![
                r#".metadata.annotations."foo""#.into(),
                r#".spec.template.spec.containers[] | select(.name == "istio-proxy")"#.into(),
            ]
        })],
    )
    .expect("diff");
    assert!(!ignored.modified, "{}", ignored.unified);
    // The unselected annotation still counts.
    let mut other = desired.clone();
    other["metadata"]["annotations"]["keep"] = json!("2");
    let still = client_side_diff(
        Some(&other),
        Some(&live),
        &[rule(|r| {
            r.jq_path_expressions = vec![
                r#".metadata.annotations."foo""#.into(),
                r#".spec.template.spec.containers[] | select(.name == "istio-proxy")"#.into(),
            ]
        })],
    )
    .expect("diff");
    assert_eq!(still.changed_paths, vec!["/metadata/annotations/keep"]);
    // A bad expression is an error naming it, even through the string API.
    let err = diff(
        Some(&desired),
        Some(&live),
        &[rule(|r| {
            r.jq_path_expressions = vec![".spec | | .x".into()]
        })],
    )
    .expect_err("bad jq");
    assert!(
        err.contains(".spec | | .x") && err.contains("jqPathExpressions"),
        "{err}"
    );
}

#[test]
fn managed_fields_managers_ignore_what_they_own() {
    let desired = deployment(2, "nginx");
    let mut live = live_of(&deployment(6, "nginx"));
    live["metadata"]["managedFields"] = json!([
        {"manager": "capstan", "operation": "Apply", "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
        {"manager": "hpa-like", "operation": "Apply", "fieldsV1": {
            "f:spec": {"f:replicas": {}}}}
    ]);
    let plain = diff(Some(&desired), Some(&live), &[]).expect("diff");
    assert_eq!(plain.changed_paths, vec!["/spec/replicas"]);
    let by = |m: &str| rule(|r| r.managed_fields_managers = vec![m.into()]);
    let ignored = diff(Some(&desired), Some(&live), &[by("hpa-like")]).expect("diff");
    assert!(!ignored.modified, "{}", ignored.unified);
    // Another manager's fields are not ignored, nor is a manager that is not there.
    assert!(
        diff(Some(&desired), Some(&live), &[by("nobody")])
            .expect("diff")
            .modified
    );
    let newer = deployment(2, "nginx:2");
    let image = diff(Some(&newer), Some(&live), &[by("hpa-like")]).expect("diff");
    assert_eq!(
        image.changed_paths,
        vec!["/spec/template/spec/containers/0/image"]
    );
    // Broken managed fields are an error naming the manager.
    live["metadata"]["managedFields"][1]["fieldsV1"] = json!({"z:what": {}});
    let err = diff(Some(&desired), Some(&live), &[by("hpa-like")]).expect_err("bad fieldsV1");
    assert!(err.contains("hpa-like") && err.contains("z:what"), "{err}");
}

#[test]
fn the_structured_result_names_the_resource_and_serialises_for_the_api() {
    let mut desired = deployment(2, "nginx:1.28");
    desired["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("namespace");
    let live = live_of(&deployment(3, "nginx:1.27"));
    let d = client_side_diff(Some(&desired), Some(&live), &[]).expect("diff");
    assert_eq!(d.key.to_string(), "apps/Deployment shop/web");
    assert!(!d.server_side && !d.sync_status_ignored);
    let shown = serde_json::to_value(&d).expect("serialises");
    assert_eq!(shown["key"]["kind"], "Deployment");
    assert_eq!(
        shown["changedPaths"],
        json!(["/spec/replicas", "/spec/template/spec/containers/0/image"])
    );
    assert_eq!(shown["modified"], true);
    assert!(
        shown["unified"]
            .as_str()
            .is_some_and(|u| u.contains("nginx:1.28"))
    );
    assert_eq!(shown["compareOptions"]["ignoreExtraneous"], false);
}

#[test]
fn ignore_extraneous_leaves_an_extraneous_resource_out_of_sync_status() {
    let mut extra = live_of(&deployment(1, "nginx"));
    extra["metadata"]["annotations"][COMPARE_OPTIONS] = json!("IgnoreExtraneous");
    let d = client_side_diff(None, Some(&extra), &[]).expect("diff");
    assert!(d.modified && d.compare_options.ignore_extraneous);
    assert!(d.sync_status_ignored);
    // Without the option, or when Git has the resource, it counts.
    let plain = client_side_diff(None, Some(&live_of(&deployment(1, "nginx"))), &[]).expect("diff");
    assert!(plain.modified && !plain.sync_status_ignored);
    let mut desired = deployment(2, "nginx");
    desired["metadata"]["annotations"] = json!({COMPARE_OPTIONS: "IgnoreExtraneous"});
    let tracked = client_side_diff(Some(&desired), Some(&extra), &[]).expect("diff");
    assert!(tracked.modified && !tracked.sync_status_ignored);
    assert!(tracked.compare_options.ignore_extraneous);
}

#[test]
fn ignore_differences_are_validated_up_front() {
    assert!(
        validate_ignore_differences(&[rule(|r| {
            r.json_pointers = vec!["/spec/replicas".into()];
            r.jq_path_expressions = vec![".spec.replicas".into()];
        })])
        .is_ok()
    );
    assert!(matches!(
        validate_ignore_differences(&[rule(|r| r.json_pointers = vec!["spec".into()])]),
        Err(DiffError::InvalidPointer { .. })
    ));
    assert!(matches!(
        validate_ignore_differences(&[rule(|r| r.jq_path_expressions = vec![".a[".into()])]),
        Err(DiffError::JqSyntax { .. })
    ));
}

#[test]
fn several_pointers_into_one_list_name_the_items_as_they_are() {
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "items": [0, 1, 2, 3]});
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "items": [0, 9, 8, 3]});
    let r = ResourceIgnoreDifferences {
        kind: "ConfigMap".into(),
        json_pointers: vec!["/items/1".into(), "/items/2".into()],
        ..Default::default()
    };
    let d = client_side_diff(Some(&desired), Some(&live), &[r]).expect("diff");
    assert!(!d.modified, "{}", d.unified);
}
