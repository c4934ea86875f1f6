//! Comparing a desired manifest with the live object: normalisation, `ignoreDifferences`,
//! Secret masking and a readable unified diff.
//!
//! This is the client-side comparison (Argo CD's default, without server-side diff):
//! 1. **normalise** both sides: drop what the server owns (`status`, `metadata.managedFields`,
//!    `resourceVersion`, `uid`, `generation`, `creationTimestamp`, `selfLink`, the
//!    `kubectl.kubernetes.io/last-applied-configuration` annotation); a desired Secret's
//!    `stringData` is folded into `data` (base64) as the API server does;
//! 2. remove the fields the Application's (or the system's) `ignoreDifferences` name by JSON
//!    pointer, for the matching group, kind, name and namespace;
//! 3. **project** the live object onto the fields the desired manifest sets: fields only the
//!    live object has (server defaults such as `spec.progressDeadlineSeconds`) do not count.
//!    Lists of the same length are compared item by item with the same rule; lists of
//!    different lengths differ;
//! 4. compare. The result carries both normalised sides, with **Secret values masked** (equal
//!    values get equal masks, so a change still shows), and a unified diff of their YAML.
//!
//! Known limit of the projection: a field removed from Git but still set live is not seen as
//! a difference (Argo CD's three-way diff uses the last-applied annotation for that, and its
//! server-side diff sees it exactly); the server-side diff mode comes with the sync engine.

use std::collections::HashMap;

use base64::Engine as _;
use capstan_model::ResourceIgnoreDifferences;
use serde_json::{Map, Value};

/// The annotation `kubectl apply` leaves behind; never compared.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The result of [`diff`] for one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceDiff {
    /// Whether the resource differs (or exists on one side only).
    pub modified: bool,
    /// The live object after normalisation and projection, Secret values masked; `None` when
    /// the resource does not exist live.
    pub live: Option<Value>,
    /// The desired manifest after normalisation, Secret values masked; `None` when Git no
    /// longer has it (it would be pruned).
    pub desired: Option<Value>,
    /// A unified diff from live to desired (empty when equal).
    pub unified: String,
}

/// Compares `desired` with `live`; `ignore` are the `ignoreDifferences` entries in force (the
/// Application's and the system-wide ones together). See the [module docs](self).
pub fn diff(
    desired: Option<&Value>,
    live: Option<&Value>,
    ignore: &[ResourceIgnoreDifferences],
) -> Result<ResourceDiff, String> {
    let mut desired = desired.map(normalize);
    let mut live = live.map(normalize);
    let reference = desired.as_ref().or(live.as_ref()).cloned();
    if let Some(obj) = &reference {
        for rule in ignore.iter().filter(|r| matches(r, obj)) {
            for pointer in &rule.json_pointers {
                for side in [desired.as_mut(), live.as_mut()].into_iter().flatten() {
                    remove_pointer(side, pointer)?;
                }
            }
        }
    }
    if let (Some(d), Some(l)) = (&desired, &live) {
        live = Some(project(d, l));
    }
    let modified = desired != live;
    if reference.as_ref().is_some_and(is_secret) {
        mask_secrets(desired.as_mut(), live.as_mut());
    }
    let unified = if modified {
        unified_diff(live.as_ref(), desired.as_ref())
    } else {
        String::new()
    };
    Ok(ResourceDiff {
        modified,
        live,
        desired,
        unified,
    })
}

fn group_of(obj: &Value) -> &str {
    let api = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    api.rsplit_once('/').map_or("", |(g, _)| g)
}

fn text<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(obj, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn is_secret(obj: &Value) -> bool {
    group_of(obj).is_empty() && text(obj, &["kind"]) == "Secret"
}

/// Whether an `ignoreDifferences` entry applies to `obj` (`kind: "*"` matches every kind; an
/// empty name or namespace matches all).
fn matches(rule: &ResourceIgnoreDifferences, obj: &Value) -> bool {
    let kind_ok = rule.kind == "*" || rule.kind == text(obj, &["kind"]);
    let group_ok = rule.group == "*" || rule.group == group_of(obj);
    let name_ok = rule.name.is_empty() || rule.name == text(obj, &["metadata", "name"]);
    let ns_ok =
        rule.namespace.is_empty() || rule.namespace == text(obj, &["metadata", "namespace"]);
    kind_ok && group_ok && name_ok && ns_ok
}

/// Drops server-owned fields; folds a Secret's `stringData` into `data`.
fn normalize(obj: &Value) -> Value {
    let mut obj = obj.clone();
    let Some(map) = obj.as_object_mut() else {
        return obj;
    };
    map.remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for key in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "selfLink",
        ] {
            meta.remove(key);
        }
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.remove(LAST_APPLIED);
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if is_secret(&Value::Object(map.clone()))
        && let Some(Value::Object(string_data)) = map.remove("stringData")
    {
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

/// Removes the field at an RFC 6901 pointer; a pointer to nothing is fine.
fn remove_pointer(obj: &mut Value, pointer: &str) -> Result<(), String> {
    if pointer.is_empty() {
        return Err("ignoreDifferences jsonPointers: the empty pointer would ignore the whole object; name a field such as /spec/replicas".to_owned());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "ignoreDifferences jsonPointers: {pointer:?} is not a JSON pointer; it must start with '/', e.g. /spec/replicas"
        ));
    };
    let parts: Vec<String> = rest
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = parts.split_last().expect("split yields at least one part");
    let mut cur = obj;
    for p in parents {
        let next = match cur {
            Value::Object(m) => m.get_mut(p.as_str()),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return Ok(()),
        }
    }
    match cur {
        Value::Object(m) => {
            m.remove(last.as_str());
        }
        Value::Array(a) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The live value restricted to the fields `desired` sets; see the [module docs](self).
fn project(desired: &Value, live: &Value) -> Value {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => Value::Object(
            d.keys()
                .filter_map(|k| l.get(k).map(|lv| (k.clone(), project(&d[k], lv))))
                .collect(),
        ),
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            Value::Array(d.iter().zip(l).map(|(dv, lv)| project(dv, lv)).collect())
        }
        _ => live.clone(),
    }
}

/// Replaces the values of `data` on both sides by masks: equal values get equal masks.
fn mask_secrets(desired: Option<&mut Value>, live: Option<&mut Value>) {
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
