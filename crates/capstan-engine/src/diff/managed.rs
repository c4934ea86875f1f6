//! `metadata.managedFields`: which fields a field manager owns, read from `fieldsV1`.
//!
//! `fieldsV1` is a tree whose keys say how to step into the object:
//! - `f:name` — the field `name` of an object;
//! - `k:{"name":"web"}` — the item of an associative list whose key fields have these values;
//! - `v:"value"` — the item of a set-like list equal to the value;
//! - `i:3` — an item of a list by position;
//! - `.` — the node itself (its existence) is owned, alongside what is listed under it.
//!
//! A node with no children at all (`{}`) is owned whole: a scalar, or an atomic list or map.
//!
//! Used twice: `ignoreDifferences.managedFieldsManagers` removes what the listed managers own
//! ([`FieldSet::remove_from`]), and the server-side diff keeps only the changes the applying
//! manager owns ([`FieldSet::revert_unowned`]).

use serde_json::{Map, Value};

use super::DiffError;

/// How a `fieldsV1` key steps into an object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// `f:name`.
    Field(String),
    /// `k:{json}`: the key fields of an associative list item.
    Key(Map<String, Value>),
    /// `v:json`: an item of a set-like list.
    Value(Value),
    /// `i:N`: an item by position.
    Index(usize),
}

/// A parsed `fieldsV1` tree.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSet {
    /// `.`: the node's existence is owned.
    pub(crate) own: bool,
    /// What is owned below the node.
    pub(crate) children: Vec<(Step, FieldSet)>,
}

impl FieldSet {
    /// Parses one `fieldsV1` object; `manager` names the entry in errors.
    pub(crate) fn parse(fields: &Value, manager: &str) -> Result<Self, DiffError> {
        let bad = |problem: String| DiffError::ManagedFields {
            manager: manager.to_owned(),
            problem,
        };
        let Value::Object(map) = fields else {
            return Err(bad(format!("fieldsV1 is not an object: {fields}")));
        };
        let mut set = FieldSet::default();
        for (key, child) in map {
            if key == "." {
                set.own = true;
                continue;
            }
            let step = if let Some(name) = key.strip_prefix("f:") {
                Step::Field(name.to_owned())
            } else if let Some(json) = key.strip_prefix("k:") {
                match serde_json::from_str(json) {
                    Ok(Value::Object(keys)) => Step::Key(keys),
                    _ => return Err(bad(format!("list key {key:?} is not a JSON object"))),
                }
            } else if let Some(json) = key.strip_prefix("v:") {
                Step::Value(
                    serde_json::from_str(json)
                        .map_err(|e| bad(format!("set item {key:?} is not JSON: {e}")))?,
                )
            } else if let Some(n) = key.strip_prefix("i:") {
                Step::Index(
                    n.parse()
                        .map_err(|_| bad(format!("list index {key:?} is not a number")))?,
                )
            } else {
                return Err(bad(format!("unknown fieldsV1 key {key:?}")));
            };
            set.children.push((step, FieldSet::parse(child, manager)?));
        }
        Ok(set)
    }

    /// The union of the `fieldsV1` of every `managedFields` entry of `obj` whose manager
    /// `which` accepts.
    pub(crate) fn of_managers(
        obj: &Value,
        which: impl Fn(&str) -> bool,
    ) -> Result<Vec<FieldSet>, DiffError> {
        let Some(entries) = obj
            .get("metadata")
            .and_then(|m| m.get("managedFields"))
            .and_then(Value::as_array)
        else {
            return Ok(Vec::new());
        };
        let mut sets = Vec::new();
        for entry in entries {
            let manager = entry
                .get("manager")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // Only the main resource: a status subresource's fields are normalised away anyway.
            let subresource = entry
                .get("subresource")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !which(manager) || !subresource.is_empty() {
                continue;
            }
            if let Some(fields) = entry.get("fieldsV1") {
                sets.push(FieldSet::parse(fields, manager)?);
            }
        }
        Ok(sets)
    }

    /// The fields any of `sets` owns; the empty set for none.
    pub(crate) fn union(sets: Vec<FieldSet>) -> FieldSet {
        sets.into_iter().reduce(FieldSet::merge).unwrap_or_default()
    }

    /// Makes what is owned under the field `from` owned under `to` as well: the API server
    /// records a Secret's `stringData` as applied but stores it in `data`.
    pub(crate) fn alias_field(&mut self, from: &str, to: &str) {
        let Some(source) = self.field(from).cloned() else {
            return;
        };
        let to = Step::Field(to.to_owned());
        match self.children.iter().position(|(s, _)| *s == to) {
            Some(i) => {
                let mine = std::mem::take(&mut self.children[i].1);
                self.children[i].1 = mine.merge(source);
            }
            None => self.children.push((to, source)),
        }
    }

    fn merge(mut self, other: FieldSet) -> FieldSet {
        if self.whole() || other.whole() {
            return FieldSet::default();
        }
        self.own |= other.own;
        for (step, child) in other.children {
            match self.children.iter().position(|(s, _)| *s == step) {
                Some(i) => {
                    let mine = std::mem::take(&mut self.children[i].1);
                    self.children[i].1 = mine.merge(child);
                }
                None => self.children.push((step, child)),
            }
        }
        self
    }

    /// Whether the whole node is owned: `{}`, no children, no `.`.
    fn whole(&self) -> bool {
        !self.own && self.children.is_empty()
    }

    fn field(&self, name: &str) -> Option<&FieldSet> {
        self.children.iter().find_map(|(s, c)| match s {
            Step::Field(n) if n == name => Some(c),
            _ => None,
        })
    }

    /// The names of the key fields this node's list items are identified by (from any `k:`).
    fn list_keys(&self) -> Option<Vec<String>> {
        self.children.iter().find_map(|(s, _)| match s {
            Step::Key(keys) => Some(keys.keys().cloned().collect()),
            _ => None,
        })
    }

    /// The child of a list node that owns `item` (at `index`), if any.
    fn item(&self, item: &Value, index: usize) -> Option<&FieldSet> {
        self.children
            .iter()
            .find_map(|(s, c)| item_matches(s, item, index).then_some(c))
    }

    /// Removes what this set owns from `value` (the node the set describes); `others` is
    /// what every other manager owns at the same node. A list item these managers created
    /// (`.`) and no other manager owns anything in goes whole, with the defaults the server
    /// filled in; in an item others share, the key fields stay, since they identify it. A
    /// map, list or item the removal leaves empty (or with nothing but its key fields) held
    /// only these fields, and goes too.
    pub(crate) fn remove_from(&self, value: &mut Value, others: Option<&FieldSet>) {
        match value {
            Value::Object(map) => {
                for (step, child) in &self.children {
                    let Step::Field(name) = step else { continue };
                    let Some(v) = map.get_mut(name.as_str()) else {
                        continue;
                    };
                    if child.whole() {
                        map.shift_remove(name.as_str());
                        continue;
                    }
                    let was_empty = is_empty_container(v);
                    child.remove_from(v, others.and_then(|o| o.field(name)));
                    // Emptied by the removal: it held nothing but what these managers own.
                    if !was_empty && is_empty_container(v) {
                        map.shift_remove(name.as_str());
                    }
                }
            }
            Value::Array(items) => {
                let mut keep = Vec::with_capacity(items.len());
                for (index, mut item) in std::mem::take(items).into_iter().enumerate() {
                    let Some((step, child)) = self
                        .children
                        .iter()
                        .find(|(s, _)| item_matches(s, &item, index))
                    else {
                        keep.push(item);
                        continue;
                    };
                    let shared = others.and_then(|o| o.step(step));
                    if child.whole() || matches!(step, Step::Value(_)) {
                        continue;
                    }
                    if child.own && shared.is_none() {
                        continue;
                    }
                    let key_fields: Vec<String> = match step {
                        Step::Key(k) => k.keys().cloned().collect(),
                        _ => Vec::new(),
                    };
                    let only_keys = |item: &Value| {
                        item.as_object()
                            .is_some_and(|m| m.keys().all(|k| key_fields.contains(k)))
                    };
                    let had_more = !only_keys(&item);
                    remove_except(child, &mut item, &key_fields, shared);
                    if !((child.own || had_more) && only_keys(&item)) {
                        keep.push(item);
                    }
                }
                *items = keep;
            }
            _ => {}
        }
    }

    fn step(&self, step: &Step) -> Option<&FieldSet> {
        self.children
            .iter()
            .find_map(|(s, c)| (s == step).then_some(c))
    }

    /// Reverts, in `predicted` (a dry-run result), the changes against `live` that this set
    /// (the applying manager's fields in the dry-run result) does not own: a field the
    /// manager does not own takes the live value, or goes when live has none. Removals are
    /// kept — a field the manager stopped setting and the server dropped is exactly what
    /// the server-side diff is for. Changes the manager does not own come from mutating
    /// webhooks and from defaulting; see the module docs of [`super::server`].
    pub(crate) fn revert_unowned(&self, predicted: &mut Value, live: Option<&Value>) {
        if self.whole() {
            return;
        }
        match predicted {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    let live_child = live.and_then(|l| l.get(k.as_str()));
                    match self.field(&k) {
                        Some(owned) => {
                            if let Some(v) = map.get_mut(k.as_str()) {
                                owned.revert_unowned(v, live_child);
                            }
                        }
                        None => match live_child {
                            Some(lv) => {
                                map.insert(k, lv.clone());
                            }
                            None => {
                                map.shift_remove(k.as_str());
                            }
                        },
                    }
                }
            }
            Value::Array(items) => {
                let live_items = live.and_then(Value::as_array);
                let keys = self.list_keys();
                let mut kept = Vec::with_capacity(items.len());
                for (index, mut item) in std::mem::take(items).into_iter().enumerate() {
                    let counterpart =
                        live_items.and_then(|l| find_counterpart(l, &item, index, keys.as_deref()));
                    match self.item(&item, index) {
                        Some(owned) => {
                            owned.revert_unowned(&mut item, counterpart);
                            kept.push(item);
                        }
                        // An item nobody asked for: keep it only as live has it.
                        None => kept.extend(counterpart.cloned()),
                    }
                }
                *items = kept;
            }
            _ => {}
        }
    }
}

/// [`FieldSet::remove_from`] on an item, keeping its key fields.
fn remove_except(set: &FieldSet, item: &mut Value, keep: &[String], others: Option<&FieldSet>) {
    if keep.is_empty() {
        set.remove_from(item, others);
        return;
    }
    let trimmed = FieldSet {
        own: set.own,
        children: set
            .children
            .iter()
            .filter(|(s, _)| !matches!(s, Step::Field(n) if keep.contains(n)))
            .cloned()
            .collect(),
    };
    trimmed.remove_from(item, others);
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn item_matches(step: &Step, item: &Value, index: usize) -> bool {
    match step {
        Step::Key(keys) => item
            .as_object()
            .is_some_and(|m| keys.iter().all(|(k, v)| m.get(k) == Some(v))),
        Step::Value(v) => item == v,
        Step::Index(i) => *i == index,
        Step::Field(_) => false,
    }
}

/// The live item that is "the same" as `item`: same key fields when the list is keyed, else
/// an equal item, else the item at the same position.
fn find_counterpart<'a>(
    live: &'a [Value],
    item: &Value,
    index: usize,
    keys: Option<&[String]>,
) -> Option<&'a Value> {
    if let Some(keys) = keys {
        return live.iter().find(|l| {
            keys.iter()
                .all(|k| l.get(k).is_some() && l.get(k) == item.get(k))
        });
    }
    live.iter().find(|l| *l == item).or_else(|| live.get(index))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What the API server records for a Deployment applied by two managers.
    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "team": "a"},
                "managedFields": [
                    {"manager": "capstan", "operation": "Apply", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
                    {"manager": "hpa-like", "operation": "Apply", "fieldsV1": {
                        "f:metadata": {"f:labels": {".": {}, "f:team": {}}},
                        "f:spec": {"f:replicas": {},
                            "f:template": {"f:spec": {"f:containers": {
                                "k:{\"name\":\"web\"}": {".": {}, "f:name": {},
                                    "f:resources": {"f:limits": {"f:cpu": {}}}},
                                "k:{\"name\":\"sidecar\"}": {".": {}, "f:name": {}, "f:image": {}}}}},
                            "f:finalizersLike": {"v:\"x\"": {}}}}},
                    {"manager": "kubelet", "subresource": "status", "fieldsV1": {"f:status": {}}}
                ]},
            "spec": {"replicas": 5, "finalizersLike": ["x", "y"],
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "resources": {"limits": {"cpu": "1"}}},
                    {"name": "sidecar", "image": "envoy"}
                ]}}}
        })
    }

    #[test]
    fn fields_v1_parses_every_key_form() {
        let set = FieldSet::parse(
            &json!({".": {}, "f:a": {}, "k:{\"name\":\"x\",\"port\":80}": {".": {}},
                "v:\"s\"": {}, "i:2": {}}),
            "m",
        )
        .expect("parses");
        assert!(set.own);
        let steps: Vec<&Step> = set.children.iter().map(|(s, _)| s).collect();
        assert_eq!(steps[0], &Step::Field("a".into()));
        let Step::Key(keys) = steps[1] else {
            panic!("a key step: {steps:?}")
        };
        assert_eq!(keys["name"], json!("x"));
        assert_eq!(keys["port"], json!(80));
        assert_eq!(steps[2], &Step::Value(json!("s")));
        assert_eq!(steps[3], &Step::Index(2));
        for bad in [
            json!({"x:y": {}}),
            json!({"k:[1]": {}}),
            json!({"i:a": {}}),
            json!(3),
        ] {
            let err = FieldSet::parse(&bad, "hpa").expect_err("bad fieldsV1");
            assert!(err.to_string().contains("hpa"), "{err}");
        }
    }

    #[test]
    fn removing_a_managers_fields_keeps_other_managers_fields_and_list_keys() {
        let mut v = live();
        let sets = FieldSet::of_managers(&v, |m| m == "hpa-like").expect("parses");
        assert_eq!(sets.len(), 1);
        let others =
            FieldSet::union(FieldSet::of_managers(&v, |m| m != "hpa-like").expect("parses"));
        FieldSet::union(sets).remove_from(&mut v, Some(&others));
        assert!(v["spec"].get("replicas").is_none());
        assert_eq!(v["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx"}]),
            "the shared item stays with its key; the item hpa-like created goes"
        );
        // Without the other managers' fields every item hpa-like has a hand in looks like
        // its own: its fields go, the keys of an item left with nothing else too.
        let mut alone = live();
        let sets = FieldSet::of_managers(&alone, |m| m == "hpa-like").expect("parses");
        FieldSet::union(sets).remove_from(&mut alone, None);
        assert!(
            alone["spec"].get("template").is_none(),
            "emptied containers, pod spec and template go: {alone}"
        );
        assert_eq!(v["spec"]["finalizersLike"], json!(["y"]));
        // The status subresource entry is not read.
        assert!(
            FieldSet::of_managers(&live(), |m| m == "kubelet")
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn containers_emptied_by_removal_go() {
        let set = FieldSet::parse(
            &json!({"f:a": {".": {}, "f:x": {}}, "f:b": {"f:y": {}}, "f:d": {"f:z": {}}}),
            "m",
        )
        .expect("parses");
        // `d` was empty before: someone set it so, it stays.
        let mut v = json!({"a": {"x": 1}, "b": {"y": 1}, "c": 1, "d": {}});
        set.remove_from(&mut v, None);
        assert_eq!(v, json!({"c": 1, "d": {}}));
    }

    #[test]
    fn unions_merge_children_and_whole_wins() {
        let a =
            FieldSet::parse(&json!({"f:a": {"f:x": {}}, "f:b": {"f:y": {}}}), "a").expect("parses");
        let b =
            FieldSet::parse(&json!({".": {}, "f:a": {"f:z": {}}, "f:b": {}}), "b").expect("parses");
        let u = FieldSet::union(vec![a, b]);
        let expected = FieldSet::parse(
            &json!({".": {}, "f:a": {"f:x": {}, "f:z": {}}, "f:b": {}}),
            "u",
        )
        .expect("parses");
        assert!(u.own);
        assert_eq!(u.field("a"), expected.field("a"));
        assert!(u.field("b").is_some_and(FieldSet::whole));
    }

    #[test]
    fn unowned_changes_are_reverted_and_removals_kept() {
        let owned = FieldSet::parse(
            &json!({"f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}),
            "capstan",
        )
        .expect("parses");
        let live = json!({"metadata": {"labels": {"app": "web", "old": "x"}, "uid": "1"},
            "spec": {"containers": [{"name": "web", "image": "a", "pull": "Always"}],
                "stamp": "t1"}});
        // The dry run: the image changed (owned), `old` removed, a webhook re-stamped
        // `stamp`, injected a sidecar and defaulted a field in the new container.
        let mut predicted = json!({"metadata": {"labels": {"app": "web"}, "uid": "1"},
            "spec": {"containers": [
                {"name": "web", "image": "b", "pull": "Always", "injected": true},
                {"name": "proxy", "image": "envoy"}], "stamp": "t2", "added": 1}});
        owned.revert_unowned(&mut predicted, Some(&live));
        assert_eq!(
            predicted,
            json!({"metadata": {"labels": {"app": "web"}, "uid": "1"},
                "spec": {"containers": [{"name": "web", "image": "b", "pull": "Always"}],
                    "stamp": "t1"}})
        );
    }
}
