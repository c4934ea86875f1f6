//! System-wide `ignoreDifferences` from a configuration file, in the two forms a user already
//! has at hand:
//!
//! - Argo CD's `argocd-cm` keys, next to the health keys of the same file:
//!   `resource.customizations.ignoreDifferences.<group>_<Kind>` (or `.all`) whose value is a
//!   YAML block with `jsonPointers`, `jqPathExpressions`, `managedFieldsManagers`. The
//!   `<group>_<Kind>` part takes the same `*`/`?` wildcards as the health keys.
//! - An `ignoreDifferences:` list of entries in an Application's `spec.ignoreDifferences`
//!   form (`group`, `kind`, `name`, `namespace`, `jsonPointers`, ...), so a rule can be copied
//!   from an Application as is.
//!
//! The health configuration reader skips both (they are not health keys), so one file serves
//! `admin health` and `admin diff`.

use capstan_engine::health::GroupKindPattern;
use capstan_engine::health::config::group_kind_key;
use capstan_model::ResourceIgnoreDifferences;
use serde::Deserialize;
use serde_json::Value;

use super::input::bare_message;

/// Key prefix of Argo CD's per-kind `ignoreDifferences` customisation.
pub const KEY_PREFIX: &str = "resource.customizations.ignoreDifferences.";
/// The key of the Application-form list.
pub const LIST_KEY: &str = "ignoreDifferences";

/// The value of a `resource.customizations.ignoreDifferences.*` key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Customization {
    #[serde(default)]
    json_pointers: Vec<String>,
    #[serde(default)]
    jq_path_expressions: Vec<String>,
    #[serde(default)]
    managed_fields_managers: Vec<String>,
}

/// A per-kind rule: the kinds it applies to and what it ignores.
#[derive(Debug, Clone)]
struct KindRule {
    pattern: GroupKindPattern,
    rule: ResourceIgnoreDifferences,
}

/// The `ignoreDifferences` of a configuration file.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    by_kind: Vec<KindRule>,
    listed: Vec<ResourceIgnoreDifferences>,
}

impl IgnoreRules {
    /// Reads the rules from a configuration's text (the key mapping, or a ConfigMap). Other
    /// keys are ignored: they configure health or other parts of Argo CD.
    pub fn from_yaml_str(text: &str) -> Result<Self, String> {
        let value: Value = serde_saphyr::from_str(text).map_err(|e| match e.location() {
            Some(at) => format!(
                "line {}: invalid YAML: {}",
                at.line(),
                bare_message(&e.to_string())
            ),
            None => format!("invalid YAML: {}", bare_message(&e.to_string())),
        })?;
        let Some(map) = value.as_object() else {
            if value.is_null() {
                return Ok(Self::default());
            }
            return Err("expected a mapping of argocd-cm keys, or a ConfigMap".to_owned());
        };
        // The same two shapes the health configuration accepts.
        let data = if map.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
            match map.get("data") {
                None | Some(Value::Null) => return Ok(Self::default()),
                Some(Value::Object(data)) => data,
                Some(_) => return Err("the ConfigMap's `data` is not a mapping".to_owned()),
            }
        } else {
            map
        };
        let mut rules = Self::default();
        for (key, value) in data {
            if let Some(group_kind) = key.strip_prefix(KEY_PREFIX) {
                rules.by_kind.push(kind_rule(key, group_kind, value)?);
            } else if key == LIST_KEY {
                rules.listed = listed_rules(value)?;
            }
        }
        Ok(rules)
    }

    /// The rules that apply to `obj`, in the form `capstan_engine::diff::diff` takes. Per-kind
    /// rules are matched here (the engine knows no wildcards but `*`) and handed over for the
    /// object's own group and kind; listed rules are handed over as written.
    pub fn for_object(&self, obj: &Value) -> Vec<ResourceIgnoreDifferences> {
        let group = capstan_engine::resources::group_of(obj);
        let kind = capstan_engine::resources::str_at(obj, &["kind"]);
        let key = group_kind_key(group, kind);
        self.by_kind
            .iter()
            .filter(|r| r.pattern.matches(&key))
            .map(|r| ResourceIgnoreDifferences {
                group: group.to_owned(),
                kind: kind.to_owned(),
                ..r.rule.clone()
            })
            .chain(self.listed.iter().cloned())
            .collect()
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty() && self.listed.is_empty()
    }
}

fn kind_rule(key: &str, group_kind: &str, value: &Value) -> Result<KindRule, String> {
    // Argo CD's `.all` applies to every kind.
    let pattern = if group_kind == "all" {
        GroupKindPattern::new("*")
    } else {
        GroupKindPattern::from_config_key_part(group_kind).map_err(|problem| {
            format!(
                "key {key:?}: {problem}; expected `{KEY_PREFIX}<group>_<Kind>`, `{KEY_PREFIX}<Kind>` or `{KEY_PREFIX}all`"
            )
        })?
    };
    // In a ConfigMap the value is a YAML block in a string; in a plain file it may be the
    // mapping itself.
    let parsed: Result<Customization, String> = match value {
        Value::String(text) if text.trim().is_empty() => Ok(Customization::default()),
        Value::String(text) => serde_saphyr::from_str(text).map_err(|e| e.to_string()),
        Value::Null => Ok(Customization::default()),
        other => Customization::deserialize(other).map_err(|e| e.to_string()),
    };
    let custom = parsed.map_err(|e| format!("key {key:?}: {}", bare_message(&e)))?;
    for (i, pointer) in custom.json_pointers.iter().enumerate() {
        check_pointer(pointer).map_err(|p| format!("key {key:?}: jsonPointers[{i}]: {p}"))?;
    }
    Ok(KindRule {
        pattern,
        rule: ResourceIgnoreDifferences {
            json_pointers: custom.json_pointers,
            jq_path_expressions: custom.jq_path_expressions,
            managed_fields_managers: custom.managed_fields_managers,
            ..ResourceIgnoreDifferences::default()
        },
    })
}

fn listed_rules(value: &Value) -> Result<Vec<ResourceIgnoreDifferences>, String> {
    let parsed: Result<Vec<ResourceIgnoreDifferences>, String> = match value {
        // In a ConfigMap every value is a string.
        Value::String(text) => serde_saphyr::from_str(text).map_err(|e| e.to_string()),
        Value::Null => Ok(Vec::new()),
        other => Vec::<ResourceIgnoreDifferences>::deserialize(other).map_err(|e| e.to_string()),
    };
    let rules = parsed.map_err(|e| {
        format!(
            "{LIST_KEY}: {} (entries have the form of an Application's spec.ignoreDifferences)",
            bare_message(&e)
        )
    })?;
    for (i, rule) in rules.iter().enumerate() {
        if rule.kind.is_empty() {
            return Err(format!(
                "{LIST_KEY}[{i}]: `kind` is required (use \"*\" for every kind)"
            ));
        }
        for (j, pointer) in rule.json_pointers.iter().enumerate() {
            check_pointer(pointer)
                .map_err(|p| format!("{LIST_KEY}[{i}].jsonPointers[{j}]: {p}"))?;
        }
    }
    Ok(rules)
}

/// The check the engine makes when it applies a pointer, made here too so that the error
/// names the configuration key instead of a resource.
fn check_pointer(pointer: &str) -> Result<(), String> {
    if pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{pointer:?} is not a JSON pointer; it must start with '/', e.g. /spec/replicas"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_argocd_keys_and_the_list_form() {
        let rules = IgnoreRules::from_yaml_str(
            r#"
resource.customizations.health.Pod: "return {status = 'Healthy'}"
resource.customizations.ignoreDifferences.apps_Deployment: |
  jsonPointers:
  - /spec/replicas
resource.customizations.ignoreDifferences.*.example.com_*:
  jsonPointers: [/spec/size]
resource.customizations.ignoreDifferences.all: |
  managedFieldsManagers: [kube-controller-manager]
ignoreDifferences:
  - kind: ConfigMap
    name: settings
    jsonPointers: [/data/generated]
"#,
        )
        .expect("valid");
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        let got = rules.for_object(&deploy);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].group, "apps");
        assert_eq!(got[0].kind, "Deployment");
        assert_eq!(got[0].json_pointers, ["/spec/replicas"]);
        let widget = json!({"apiVersion": "a.example.com/v1", "kind": "Widget"});
        assert!(
            rules
                .for_object(&widget)
                .iter()
                .any(|r| r.json_pointers == ["/spec/size"])
        );
    }

    #[test]
    fn configmap_form_holds_strings() {
        let rules = IgnoreRules::from_yaml_str(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm}
data:
  resource.customizations.ignoreDifferences.Service: |
    jsonPointers: [/spec/clusterIP]
  ignoreDifferences: |
    - group: apps
      kind: StatefulSet
      jsonPointers: [/spec/replicas]
"#,
        )
        .expect("valid");
        assert_eq!(rules.by_kind.len(), 1);
        assert_eq!(rules.listed.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, needle) in [
            (
                "resource.customizations.ignoreDifferences.apps_Deployment: |\n  jsonPointer: [/spec]\n",
                "key \"resource.customizations.ignoreDifferences.apps_Deployment\"",
            ),
            (
                "resource.customizations.ignoreDifferences.Pod: |\n  jsonPointers: [spec/x]\n",
                "jsonPointers[0]: \"spec/x\" is not a JSON pointer",
            ),
            (
                "resource.customizations.ignoreDifferences.a_b_c: ''\n",
                "more than one",
            ),
            (
                "ignoreDifferences:\n- kind: Pod\n  jsonPointer: [/x]\n",
                "ignoreDifferences:",
            ),
            ("ignoreDifferences:\n- group: apps\n", "`kind` is required"),
        ] {
            let e = IgnoreRules::from_yaml_str(yaml).expect_err(yaml);
            assert!(e.contains(needle), "{yaml}: {e}");
        }
    }
}
