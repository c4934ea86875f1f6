//! Property: any Application (and its free-form values) survives YAML and JSON unchanged.

use capstan_model::*;
use indexmap::IndexMap;
use proptest::prelude::*;
use serde_json::Value;

/// Text that stresses YAML: words YAML 1.1 reads as booleans, numbers and null, YAML
/// syntax characters, whitespace and line breaks, and arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9.-]{0,12}",
        1 => prop::sample::select(vec![
            "yes", "No", "on", "OFF", "y", "n", "~", "null", "true", "False", "0755", "0x1F",
            "1_000", "+1", "-2", ".5", "1e3", "08", "1.0", "<<", "", " ", "- x", "a: b",
            "#hash", "&anchor", "*alias", "!tag", "%directive", "@at", "`tick", "{x}", "[x]",
            "'single'", "\"double\"", "multi\nline\n", "trailing\n\n", "\ttab", "ends with space ",
            ".inf", ".nan", "2024-01-01", "12:30", "?", ":", "|", ">", "=", "\\",
        ]).prop_map(str::to_owned),
        2 => any::<String>(),
        1 => "[a-z ]{60,300}",
        1 => "([a-z]{1,12}[ \n]{1,3}){10,40}",
    ]
}

fn string_map() -> impl Strategy<Value = IndexMap<String, String>> {
    prop::collection::vec((text(), text()), 0..4).prop_map(|pairs| pairs.into_iter().collect())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn values_object() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(
        prop::collection::vec((text(), json_value()), 0..6)
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
    )
}

fn helm() -> impl Strategy<Value = HelmSource> {
    (
        prop::collection::vec(text(), 0..3),
        prop::collection::vec((text(), text(), any::<bool>()), 0..3),
        text(),
        text(),
        values_object(),
        any::<[bool; 5]>(),
        prop::collection::vec(text(), 0..2),
    )
        .prop_map(
            |(files, params, release, values, obj, flags, api_versions)| HelmSource {
                value_files: files,
                parameters: params
                    .into_iter()
                    .map(|(name, value, force_string)| HelmParameter {
                        name,
                        value,
                        force_string,
                    })
                    .collect(),
                release_name: release,
                values,
                values_object: obj,
                pass_credentials: flags[0],
                ignore_missing_value_files: flags[1],
                skip_crds: flags[2],
                skip_tests: flags[3],
                skip_schema_validation: flags[4],
                api_versions,
                ..HelmSource::default()
            },
        )
}

fn kustomize() -> impl Strategy<Value = KustomizeSource> {
    (
        text(),
        prop::collection::vec(text(), 0..3),
        string_map(),
        string_map(),
        prop::collection::vec(
            (
                text(),
                prop_oneof![
                    any::<i64>().prop_map(IntOrString::Int),
                    text().prop_map(IntOrString::String)
                ],
            ),
            0..3,
        ),
        prop::collection::vec((text(), text(), any::<bool>()), 0..3),
        any::<[bool; 4]>(),
    )
        .prop_map(
            |(prefix, images, labels, annotations, replicas, patches, flags)| KustomizeSource {
                name_prefix: prefix,
                images,
                common_labels: labels,
                common_annotations: annotations,
                replicas: replicas
                    .into_iter()
                    .map(|(name, count)| KustomizeReplica { name, count })
                    .collect(),
                patches: patches
                    .into_iter()
                    .map(|(path, patch, opt)| KustomizePatch {
                        path,
                        patch,
                        target: opt.then(|| KustomizeSelector {
                            kind: "Deployment".into(),
                            ..Default::default()
                        }),
                        options: [("allowNameChange".to_owned(), opt)].into_iter().collect(),
                    })
                    .collect(),
                force_common_labels: flags[0],
                label_without_selector: flags[1],
                label_include_templates: flags[2],
                ignore_missing_components: flags[3],
                ..KustomizeSource::default()
            },
        )
}

fn plugin() -> impl Strategy<Value = PluginSource> {
    (
        text(),
        prop::collection::vec((text(), text()), 0..3),
        prop::collection::vec(
            (
                text(),
                prop::option::of(text()),
                prop::option::of(prop::collection::vec(text(), 0..3)),
                prop::option::of(string_map()),
            ),
            0..3,
        ),
    )
        .prop_map(|(name, env, params)| PluginSource {
            name,
            env: env
                .into_iter()
                .map(|(name, value)| EnvEntry { name, value })
                .collect(),
            parameters: params
                .into_iter()
                .map(|(name, string, array, map)| PluginParameter {
                    name,
                    string,
                    array,
                    map,
                })
                .collect(),
        })
}

fn source() -> impl Strategy<Value = ApplicationSource> {
    (
        text(),
        text(),
        text(),
        prop::option::of(helm()),
        prop::option::of(kustomize()),
        prop::option::of(plugin()),
        prop::option::of((any::<bool>(), text(), text())),
        (text(), text(), text()),
    )
        .prop_map(
            |(repo_url, path, rev, helm, kustomize, plugin, dir, (chart, reference, name))| {
                ApplicationSource {
                    repo_url,
                    path,
                    target_revision: rev,
                    helm,
                    kustomize,
                    plugin,
                    directory: dir.map(|(recurse, include, exclude)| DirectorySource {
                        recurse,
                        include,
                        exclude,
                        jsonnet: JsonnetOptions {
                            tlas: vec![JsonnetVar {
                                name: "a".into(),
                                value: "b".into(),
                                code: recurse,
                            }],
                            ..Default::default()
                        },
                    }),
                    chart,
                    reference,
                    name,
                }
            },
        )
}

fn sync_policy() -> impl Strategy<Value = SyncPolicy> {
    (
        prop::option::of((
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(any::<bool>()),
        )),
        prop::collection::vec(text(), 0..4),
        prop::option::of((
            any::<i64>(),
            prop::option::of((text(), prop::option::of(any::<i64>()), text())),
        )),
        prop::option::of((string_map(), string_map())),
    )
        .prop_map(|(automated, options, retry, mnm)| SyncPolicy {
            automated: automated.map(|(prune, self_heal, allow_empty, enabled)| {
                SyncPolicyAutomated {
                    prune,
                    self_heal,
                    allow_empty,
                    enabled,
                }
            }),
            sync_options: SyncOptions(options),
            retry: retry.map(|(limit, backoff)| RetryStrategy {
                limit,
                backoff: backoff.map(|(duration, factor, max_duration)| Backoff {
                    duration,
                    factor,
                    max_duration,
                }),
            }),
            managed_namespace_metadata: mnm.map(|(labels, annotations)| ManagedNamespaceMetadata {
                labels,
                annotations,
            }),
        })
}

fn application() -> impl Strategy<Value = Application> {
    (
        (
            any::<bool>(),
            text(),
            text(),
            string_map(),
            string_map(),
            prop::collection::vec(text(), 0..2),
        ),
        prop::option::of(source()),
        prop::collection::vec(source(), 0..3),
        (text(), text(), text(), text()),
        prop::option::of(sync_policy()),
        prop::collection::vec((text(), text(), prop::collection::vec(text(), 0..2)), 0..3),
        prop::collection::vec((text(), text()), 0..3),
        prop::option::of(any::<i64>()),
    )
        .prop_map(
            |(
                (argo, name, namespace, labels, annotations, finalizers),
                source,
                sources,
                (server, ns, dest_name, project),
                sync_policy,
                ignores,
                info,
                limit,
            )| {
                Application {
                    api_version: if argo {
                        ApiVersion::ArgoCd
                    } else {
                        ApiVersion::Capstan
                    },
                    metadata: ObjectMeta {
                        name,
                        namespace,
                        labels,
                        annotations,
                        finalizers,
                        ..ObjectMeta::default()
                    },
                    spec: ApplicationSpec {
                        source,
                        sources,
                        destination: ApplicationDestination {
                            server,
                            namespace: ns,
                            name: dest_name,
                        },
                        project,
                        sync_policy,
                        ignore_differences: ignores
                            .into_iter()
                            .map(|(group, kind, json_pointers)| ResourceIgnoreDifferences {
                                group,
                                kind,
                                json_pointers,
                                ..Default::default()
                            })
                            .collect(),
                        info: info
                            .into_iter()
                            .map(|(name, value)| Info { name, value })
                            .collect(),
                        revision_history_limit: limit,
                        source_hydrator: None,
                    },
                    status: None,
                    operation: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn applications_round_trip_through_yaml(app in application()) {
        let yaml = app.to_yaml().expect("serialises");
        let back = parse_application_yaml(&yaml)
            .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{yaml}"));
        prop_assert_eq!(&back, &app, "yaml:\n{}", yaml);
    }

    #[test]
    fn applications_round_trip_through_json(app in application()) {
        let json = app.to_json().expect("serialises");
        let Object::Application(back) = parse_object_json(&json).expect("parses") else {
            panic!("not an Application")
        };
        prop_assert_eq!(&*back, &app);
    }

    #[test]
    fn free_form_values_keep_their_order(values in values_object()) {
        let app = Application::new("a", ApplicationSpec {
            source: Some(ApplicationSource {
                repo_url: "https://charts.acme.io".into(),
                helm: Some(HelmSource { values_object: values.clone(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let back = parse_application_yaml(&app.to_yaml().expect("serialises")).expect("parses");
        let got = back.spec.source.and_then(|s| s.helm).and_then(|h| h.values_object);
        // Compare as text too: serde_json maps compare without order.
        prop_assert_eq!(
            serde_json::to_string(&got).expect("json"),
            serde_json::to_string(&values).expect("json")
        );
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(input in any::<String>()) {
        let _ = parse_objects_yaml(&input);
        let _ = parse_object_json(&input);
    }

    #[test]
    fn validation_never_panics(app in application()) {
        let _ = app.validate();
    }
}
