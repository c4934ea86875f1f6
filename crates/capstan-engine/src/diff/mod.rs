//! Comparing a desired manifest with the live object: normalisation, `ignoreDifferences`,
//! compare options, Secret masking, a structured per-resource result and a readable unified
//! diff. Start at [`client_side_diff`] (the default mode) or [`server_side_diff`].
//!
//! The client-side comparison (Argo CD's default):
//! 1. **normalise** both sides: drop what the server owns (`status`, `metadata.managedFields`,
//!    `resourceVersion`, `uid`, `generation`, `creationTimestamp`, `selfLink`, the
//!    `kubectl.kubernetes.io/last-applied-configuration` annotation); a desired Secret's
//!    `stringData` is folded into `data` (base64) as the API server does;
//! 2. apply the Application's (and the system's) `ignoreDifferences` entries that match the
//!    resource's group, kind, name and namespace, on both sides: the fields the listed
//!    `managedFieldsManagers` own (read from the live object's `managedFields` before they
//!    are normalised away; module `managed`), then `jsonPointers`, then `jqPathExpressions`
//!    ([`jq`]);
//! 3. **project** the live object onto the fields the desired manifest sets: fields only the
//!    live object has (server defaults such as `spec.progressDeadlineSeconds`) do not count.
//!    Lists of the same length are compared item by item with the same rule; lists of
//!    different lengths differ;
//! 4. compare. The result ([`ResourceDiff`]) carries both normalised sides, with **Secret
//!    values masked** (equal values get equal masks, so a change still shows), the JSON
//!    pointers that differ, and a unified diff of their YAML.
//!
//! Known limit of the projection: a field removed from Git but still set live is not seen as
//! a difference. The [server-side diff](server) sees it: it compares a dry-run apply's result
//! with live, without projection (steps 1, 2 and 4 are the same).
//!
//! The `argocd.argoproj.io/compare-options` annotation is parsed into [`CompareOptions`].
//! The user guide is `docs/diff.md`.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use capstan_model::ResourceIgnoreDifferences;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::resources::{ResolveError, ResourceKey, group_of, str_at};

pub mod jq;
mod managed;
mod options;
mod paths;
pub mod server;

pub use options::{COMPARE_OPTIONS, CompareOptions};
pub use server::{DEFAULT_MANAGER, ServerSideOptions, server_side_diff};

/// The annotation `kubectl apply` leaves behind; never compared.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// An `ignoreDifferences` JSON pointer is malformed.
    #[error("ignoreDifferences jsonPointers: {pointer:?} is not usable: {reason}")]
    InvalidPointer {
        /// The pointer as written.
        pointer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A jq path expression does not parse or names an unknown function.
    #[error("ignoreDifferences jqPathExpressions: cannot compile {expression:?}: {problem}")]
    JqSyntax {
        /// The expression as written.
        expression: String,
        /// What the parser or compiler said.
        problem: String,
    },
    /// A jq path expression uses something path expressions may not.
    #[error("ignoreDifferences jqPathExpressions: {expression:?} is refused: {reason}")]
    JqUnsupported {
        /// The expression as written.
        expression: String,
        /// Why.
        reason: &'static str,
    },
    /// A jq path expression ran too long (or an earlier run of it still runs).
    #[error(
        "ignoreDifferences jqPathExpressions: {expression:?} did not finish within {timeout:?}; simplify it"
    )]
    JqTimeout {
        /// The expression as written.
        expression: String,
        /// The time limit.
        timeout: std::time::Duration,
    },
    /// A jq path expression selected too many paths.
    #[error(
        "ignoreDifferences jqPathExpressions: {expression:?} selected more than {max} paths; does it recurse without end?"
    )]
    JqTooManyPaths {
        /// The expression as written.
        expression: String,
        /// The limit.
        max: usize,
    },
    /// The evaluation of a jq path expression failed inside the interpreter.
    #[error(
        "ignoreDifferences jqPathExpressions: evaluating {expression:?} failed inside the jq interpreter"
    )]
    JqFailed {
        /// The expression as written.
        expression: String,
    },
    /// Too many earlier jq evaluations overran their time and are still running.
    #[error(
        "ignoreDifferences jqPathExpressions: {running} earlier evaluations overran their time limit and still run; fix the slow expressions"
    )]
    JqBusy {
        /// How many still run.
        running: usize,
    },
    /// No thread could be started to evaluate a jq expression.
    #[error("cannot start a thread for jq evaluation: {0}")]
    JqThread(#[source] std::io::Error),
    /// A `managedFields` entry of the live object cannot be read.
    #[error("managedFields of manager {manager:?}: {problem}")]
    ManagedFields {
        /// The entry's manager.
        manager: String,
        /// What is wrong with its `fieldsV1`.
        problem: String,
    },
    /// The manifest lacks what the server-side diff needs.
    #[error("cannot diff {key} on the server: {problem}")]
    InvalidManifest {
        /// The resource.
        key: ResourceKey,
        /// What is missing.
        problem: &'static str,
    },
    /// The kind of the manifest is not served (boxed: the client error inside is large).
    #[error(transparent)]
    Resolve(Box<ResolveError>),
    /// The API server refused the dry-run apply: the manifest is invalid, or conflicts.
    #[error("the API server refused the dry-run apply of {key} ({code}): {message}")]
    DryRunRefused {
        /// The resource.
        key: ResourceKey,
        /// HTTP status code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The dry-run apply did not reach the server or its answer was unreadable.
    #[error("dry-run apply of {key} failed: {source}")]
    DryRun {
        /// The resource.
        key: ResourceKey,
        /// What the client said (boxed: it is large, and this path is rare).
        #[source]
        source: Box<kube::Error>,
    },
    /// The dry-run result could not be turned into JSON.
    #[error("dry-run result of {key} is not valid JSON: {source}")]
    Decode {
        /// The resource.
        key: ResourceKey,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The comparison of one resource: what the API shows per resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDiff {
    /// The resource (from the desired manifest, else the live object; the namespace is the
    /// live one when the manifest leaves it out).
    pub key: ResourceKey,
    /// Whether the resource differs (or exists on one side only).
    pub modified: bool,
    /// The live object after normalisation (and, client-side, projection), Secret values
    /// masked; `None` when the resource does not exist live.
    pub live: Option<Value>,
    /// The desired manifest after normalisation (server-side: the dry-run result), Secret
    /// values masked; `None` when Git no longer has it (it would be pruned).
    pub desired: Option<Value>,
    /// A unified diff from live to desired (empty when equal).
    pub unified: String,
    /// JSON pointers (RFC 6901) of the fields that differ, e.g. `/spec/replicas`, in document
    /// order; lists of different lengths are reported at the list; `""` (the root) when the
    /// resource exists on one side only. Empty when equal.
    pub changed_paths: Vec<String>,
    /// The resource's compare options (from the manifest, else the live object).
    pub compare_options: CompareOptions,
    /// Whether this resource's state is left out of the Application's sync status: it is
    /// extraneous (live only, it would be pruned) and says `IgnoreExtraneous`.
    pub sync_status_ignored: bool,
    /// Whether the comparison used the server-side diff.
    pub server_side: bool,
}

/// Compares `desired` with `live`; `ignore` are the `ignoreDifferences` entries in force (the
/// Application's and the system-wide ones together). See the [module docs](self).
///
/// The error is [`DiffError`]'s message; [`client_side_diff`] returns it typed.
pub fn diff(
    desired: Option<&Value>,
    live: Option<&Value>,
    ignore: &[ResourceIgnoreDifferences],
) -> Result<ResourceDiff, String> {
    client_side_diff(desired, live, ignore).map_err(|e| e.to_string())
}

/// [`diff`] with a typed error: the client-side comparison of the [module docs](self).
/// Compare options are read from `desired`, else `live`.
///
/// Runs jq path expressions on helper threads and waits for them (at most
/// [`jq::TIMEOUT`] each); from async code with many resources, call it from
/// `spawn_blocking`.
pub fn client_side_diff(
    desired: Option<&Value>,
    live: Option<&Value>,
    ignore: &[ResourceIgnoreDifferences],
) -> Result<ResourceDiff, DiffError> {
    let options = desired.or(live).map(CompareOptions::of).unwrap_or_default();
    compare(desired, live, ignore, true, options)
}

/// Checks `ignoreDifferences` entries without comparing anything: every JSON pointer is
/// well-formed and every jq path expression compiles. For validating an Application or the
/// system settings when they are written, rather than on every comparison.
pub fn validate_ignore_differences(ignore: &[ResourceIgnoreDifferences]) -> Result<(), DiffError> {
    for rule in ignore {
        for pointer in &rule.json_pointers {
            paths::parse_pointer(pointer)?;
        }
        for expression in &rule.jq_path_expressions {
            jq::check(expression)?;
        }
    }
    Ok(())
}

/// The comparison shared by both modes; `project` is the client-side projection.
fn compare(
    desired: Option<&Value>,
    live: Option<&Value>,
    ignore: &[ResourceIgnoreDifferences],
    project: bool,
    compare_options: CompareOptions,
) -> Result<ResourceDiff, DiffError> {
    let Some(reference) = desired.or(live) else {
        return Ok(ResourceDiff {
            key: ResourceKey::default(),
            modified: false,
            live: None,
            desired: None,
            unified: String::new(),
            changed_paths: Vec::new(),
            compare_options,
            sync_status_ignored: false,
            server_side: false,
        });
    };
    let mut key = ResourceKey::of(reference);
    if key.namespace.is_empty()
        && let Some(l) = live
    {
        key.namespace = str_at(l, &["metadata", "namespace"]).to_owned();
    }
    let rules: Vec<&ResourceIgnoreDifferences> =
        ignore.iter().filter(|r| matches(r, reference)).collect();
    // managedFields are read from the live object before normalisation drops them.
    let managers: BTreeSet<&str> = rules
        .iter()
        .flat_map(|r| r.managed_fields_managers.iter().map(String::as_str))
        .collect();
    let owned = match live {
        Some(l) if !managers.is_empty() => {
            let listed = managed::FieldSet::of_managers(l, |m| managers.contains(m))?;
            let others = managed::FieldSet::of_managers(l, |m| !managers.contains(m))?;
            (!listed.is_empty()).then(|| {
                let others = (!others.is_empty()).then(|| managed::FieldSet::union(others));
                (managed::FieldSet::union(listed), others)
            })
        }
        _ => None,
    };

    let mut desired = desired.map(normalize);
    let mut live = live.map(normalize);
    if let Some((listed, others)) = &owned {
        for side in [desired.as_mut(), live.as_mut()].into_iter().flatten() {
            listed.remove_from(side, others.as_ref());
        }
    }
    let pointers = rules
        .iter()
        .flat_map(|r| &r.json_pointers)
        .map(|p| paths::parse_pointer(p))
        .collect::<Result<Vec<_>, _>>()?;
    if !pointers.is_empty() {
        for side in [desired.as_mut(), live.as_mut()].into_iter().flatten() {
            // All resolved before any is removed: `/items/1` and `/items/2` name the items
            // of the object as it is, not as it is after the first removal.
            let found = pointers
                .iter()
                .filter_map(|t| paths::resolve_pointer(side, t))
                .collect();
            paths::remove_paths(side, found);
        }
    }
    // Each distinct expression is compiled and run once per comparison.
    let expressions: BTreeSet<&str> = rules
        .iter()
        .flat_map(|r| r.jq_path_expressions.iter().map(String::as_str))
        .collect();
    for expression in expressions {
        let [on_desired, on_live] = jq::select(expression, [desired.as_ref(), live.as_ref()])?;
        if let Some(d) = desired.as_mut() {
            paths::remove_paths(d, on_desired);
        }
        if let Some(l) = live.as_mut() {
            paths::remove_paths(l, on_live);
        }
    }

    if project && let (Some(d), Some(l)) = (&desired, &live) {
        live = Some(project_onto(d, l));
    }
    let modified = desired != live;
    let changed_paths = if modified {
        paths::changed_paths(live.as_ref(), desired.as_ref())
    } else {
        Vec::new()
    };
    if is_secret(reference) {
        mask_secrets(desired.as_mut(), live.as_mut());
    }
    let unified = if modified {
        unified_diff(live.as_ref(), desired.as_ref())
    } else {
        String::new()
    };
    let sync_status_ignored = modified && desired.is_none() && compare_options.ignore_extraneous;
    Ok(ResourceDiff {
        key,
        modified,
        live,
        desired,
        unified,
        changed_paths,
        compare_options,
        sync_status_ignored,
        server_side: false,
    })
}

/// Whether `obj` is a (core) Secret, whose values the diff masks.
pub fn is_secret(obj: &Value) -> bool {
    group_of(obj).is_empty() && str_at(obj, &["kind"]) == "Secret"
}

/// Whether an `ignoreDifferences` entry applies to `obj` (`kind: "*"` matches every kind; an
/// empty name or namespace matches all).
fn matches(rule: &ResourceIgnoreDifferences, obj: &Value) -> bool {
    let kind_ok = rule.kind == "*" || rule.kind == str_at(obj, &["kind"]);
    let group_ok = rule.group == "*" || rule.group == group_of(obj);
    let name_ok = rule.name.is_empty() || rule.name == str_at(obj, &["metadata", "name"]);
    let ns_ok =
        rule.namespace.is_empty() || rule.namespace == str_at(obj, &["metadata", "namespace"]);
    kind_ok && group_ok && name_ok && ns_ok
}

/// Drops server-owned fields; folds a Secret's `stringData` into `data`.
fn normalize(obj: &Value) -> Value {
    let secret = is_secret(obj);
    let mut obj = obj.clone();
    let Some(map) = obj.as_object_mut() else {
        return obj;
    };
    map.shift_remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for key in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "selfLink",
        ] {
            meta.shift_remove(key);
        }
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.shift_remove(LAST_APPLIED);
            if annotations.is_empty() {
                meta.shift_remove("annotations");
            }
        }
    }
    if secret && let Some(Value::Object(string_data)) = map.shift_remove("stringData") {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(data) = data {
            for (k, v) in string_data {
                let plain = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                data.insert(
                    k,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(plain)),
                );
            }
        }
    }
    obj
}

/// The live value restricted to the fields `desired` sets; see the [module docs](self).
fn project_onto(desired: &Value, live: &Value) -> Value {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => Value::Object(
            d.keys()
                .filter_map(|k| l.get(k).map(|lv| (k.clone(), project_onto(&d[k], lv))))
                .collect(),
        ),
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => Value::Array(
            d.iter()
                .zip(l)
                .map(|(dv, lv)| project_onto(dv, lv))
                .collect(),
        ),
        _ => live.clone(),
    }
}

/// Replaces the values of `data` and `stringData` on both sides of a Secret by masks: equal
/// values get equal masks, so a change still shows. [`ResourceDiff`]'s sides are masked
/// already; this is for showing the Secret as it was given (the API's target and live
/// states).
pub fn mask_secrets(desired: Option<&mut Value>, live: Option<&mut Value>) {
    let mut masks: HashMap<String, String> = HashMap::new();
    for side in [desired, live].into_iter().flatten() {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(data)) = side.get_mut(field) {
                for v in data.values_mut() {
                    let key = v.to_string();
                    let next = masks.len();
                    let mask = masks
                        .entry(key)
                        .or_insert_with(|| "+".repeat(8 + next))
                        .clone();
                    *v = Value::String(mask);
                }
            }
        }
    }
}

fn yaml(v: Option<&Value>) -> String {
    v.map_or_else(String::new, |v| {
        serde_saphyr::to_string(v).unwrap_or_else(|_| v.to_string())
    })
}

fn unified_diff(live: Option<&Value>, desired: Option<&Value>) -> String {
    let (a, b) = (yaml(live), yaml(desired));
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("live", "desired")
        .to_string()
}

#[cfg(test)]
mod tests;
