//! Properties of normalisation and the client-side diff over arbitrary objects: an object
//! never differs from itself or from what the server makes of it, applying the desired
//! fields onto any live object leaves no difference, the changed paths agree with the
//! verdict (and ignoring them all leaves none), and Secret values never show.

use capstan_engine::diff::{LAST_APPLIED, client_side_diff};
use capstan_model::ResourceIgnoreDifferences;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Keys drawn from a small set, so that desired and live objects overlap.
fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "spec", "data", "items", "a", "b", "name", "x/y", "status", "replicas",
    ])
    .prop_map(str::to_owned)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9 :-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn labels() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z]{1,4}", "[a-z0-9]{0,4}", 0..3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

/// An object with apiVersion, kind and metadata.name, and arbitrary content.
fn object() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("apps/v1", "Deployment"),
            ("example.com/v1alpha1", "Widget"),
        ]),
        "[a-z][a-z0-9-]{0,8}",
        labels(),
        prop::collection::vec((key(), json_value()), 0..5),
    )
        .prop_map(|((api_version, kind), name, labels, fields)| {
            let mut obj = Map::new();
            obj.insert("apiVersion".into(), json!(api_version));
            obj.insert("kind".into(), json!(kind));
            let mut metadata = json!({"name": name});
            if !labels.is_empty() {
                metadata["labels"] = Value::Object(labels);
            }
            obj.insert("metadata".into(), metadata);
            for (k, v) in fields {
                obj.insert(k, v);
            }
            Value::Object(obj)
        })
}

/// What applying `desired` onto `live` leaves, as a server-side apply would: every field
/// the desired object sets takes its value; objects merge field by field; anything else
/// (lists, scalars) is replaced.
fn apply_onto(live: &Value, desired: &Value) -> Value {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            let mut out = l.clone();
            for (k, dv) in d {
                let merged = match l.get(k) {
                    Some(lv) => apply_onto(lv, dv),
                    None => dv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => desired.clone(),
    }
}

/// What the API server adds: metadata it owns, status, the last-applied annotation.
fn served(obj: &Value) -> Value {
    let mut live = obj.clone();
    live["metadata"]["uid"] = json!("8d0c");
    live["metadata"]["resourceVersion"] = json!("12");
    live["metadata"]["generation"] = json!(1);
    live["metadata"]["creationTimestamp"] = json!("2026-11-26T10:00:00Z");
    live["metadata"]["managedFields"] = json!([{"manager": "capstan", "operation": "Apply",
        "fieldsV1": {"f:metadata": {"f:name": {}}}}]);
    live["metadata"]["annotations"] = json!({LAST_APPLIED: obj.to_string()});
    live["status"] = json!({"observedGeneration": 1});
    live
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn an_object_never_differs_from_itself(x in object()) {
        let d = client_side_diff(Some(&x), Some(&x), &[]).expect("diff");
        prop_assert!(!d.modified, "{}", d.unified);
        prop_assert!(d.unified.is_empty());
        prop_assert!(d.changed_paths.is_empty());
    }

    #[test]
    fn what_the_server_adds_is_no_difference(x in object()) {
        // Without Secret `stringData`, which the server folds away (covered by unit tests).
        let mut x = x;
        if let Some(m) = x.as_object_mut() {
            m.remove("stringData");
        }
        let d = client_side_diff(Some(&x), Some(&served(&x)), &[]).expect("diff");
        prop_assert!(!d.modified, "{}", d.unified);
    }

    #[test]
    fn applying_the_desired_object_leaves_no_difference(d in object(), l in object()) {
        // Live objects never hold `stringData` (the server stores it as `data`, which is
        // always a map).
        let mut live = l;
        if let Some(m) = live.as_object_mut() {
            m.remove("stringData");
            if m.get("data").is_some_and(|v| !v.is_object()) {
                m.remove("data");
            }
        }
        let merged = apply_onto(&live, &d);
        let result = client_side_diff(Some(&d), Some(&merged), &[]).expect("diff");
        prop_assert!(!result.modified, "{}", result.unified);
    }

    #[test]
    fn changed_paths_agree_with_the_verdict(d in object(), l in object()) {
        let r = client_side_diff(Some(&d), Some(&l), &[]).expect("diff");
        prop_assert_eq!(r.modified, !r.changed_paths.is_empty());
        prop_assert_eq!(r.modified, !r.unified.is_empty());
        for p in &r.changed_paths {
            prop_assert!(p.is_empty() || p.starts_with('/'), "{}", p);
        }
    }

    #[test]
    fn ignoring_every_changed_path_leaves_no_difference(d in object(), l in object()) {
        let r = client_side_diff(Some(&d), Some(&l), &[]).expect("diff");
        let rule = ResourceIgnoreDifferences {
            group: "*".into(),
            kind: "*".into(),
            json_pointers: r.changed_paths.clone(),
            ..Default::default()
        };
        let ignored = client_side_diff(Some(&d), Some(&l), &[rule]).expect("diff");
        prop_assert!(!ignored.modified, "{:?}\n{}", r.changed_paths, ignored.unified);
    }

    #[test]
    fn secret_values_never_show(
        desired in prop::collection::btree_map("[a-z]{1,6}", "s3cr3t-[a-z]{6,10}", 1..4),
        live in prop::collection::btree_map("[a-z]{1,6}", "s3cr3t-[a-z]{6,10}", 0..4),
        use_string_data in any::<bool>(),
    ) {
        use base64::Engine as _;
        let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
        let field = if use_string_data { "stringData" } else { "data" };
        let desired_data: Map<String, Value> = desired
            .iter()
            .map(|(k, v)| {
                let v = if use_string_data { v.clone() } else { b64(v) };
                (k.clone(), Value::String(v))
            })
            .collect();
        let live_data: Map<String, Value> = live
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(b64(v))))
            .collect();
        let d = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            field: desired_data});
        let l = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": live_data});
        let r = client_side_diff(Some(&d), Some(&l), &[]).expect("diff");
        let shown = serde_json::to_string(&r).expect("serialises");
        for v in desired.values().chain(live.values()) {
            prop_assert!(!shown.contains(v.as_str()), "{} shown: {}", v, shown);
            // Each base64 form minus its padding, which may start mid-way in a mask-free run.
            let encoded = b64(v);
            prop_assert!(!shown.contains(encoded.trim_end_matches('=')), "{} shown", encoded);
        }
    }
}
