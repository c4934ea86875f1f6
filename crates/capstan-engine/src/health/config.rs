//! Health customisations: which Lua script judges which group/kind, and the sandbox limits.
//!
//! The format is Argo CD's `argocd-cm` keys, so an existing `data:` section (or the whole
//! ConfigMap) can be used as is:
//!
//! ```yaml
//! resource.customizations.health.cert-manager.io_Certificate: |
//!   hs = {}
//!   ...
//!   return hs
//! resource.customizations.useOpenLibs.cert-manager.io_Certificate: "true"
//! capstan.health.lua.timeoutMillis: "500"
//! ```
//!
//! `<group_kind>` is `group_Kind`, or just `Kind` for the core group; `*` and `?` are
//! wildcards (`*.crossplane.io_*`, `apps_Deploy*`). Keys that are not health settings are
//! ignored, as they configure other parts of Argo CD. See `docs/health.md`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::lua::LuaCheckError;

/// Key prefix of a custom health script.
pub const HEALTH_KEY_PREFIX: &str = "resource.customizations.health.";
/// Key prefix of the flag that opens more Lua libraries to a script.
pub const OPEN_LIBS_KEY_PREFIX: &str = "resource.customizations.useOpenLibs.";
/// Key prefix of Capstan's own health settings (the Lua sandbox limits).
pub const CAPSTAN_KEY_PREFIX: &str = "capstan.health.";
const MAX_INSTRUCTIONS_KEY: &str = "capstan.health.lua.maxInstructions";
const MAX_MEMORY_KEY: &str = "capstan.health.lua.maxMemoryBytes";
const TIMEOUT_KEY: &str = "capstan.health.lua.timeoutMillis";

/// Errors in a health configuration.
#[derive(Debug, thiserror::Error)]
pub enum HealthConfigError {
    /// The document is not YAML/JSON of the expected shape.
    #[error("invalid health configuration: {0}")]
    Parse(String),
    /// A key's `<group_kind>` part is malformed.
    #[error(
        "key {key:?}: {problem}; expected `{HEALTH_KEY_PREFIX}<group>_<Kind>` or `{HEALTH_KEY_PREFIX}<Kind>`"
    )]
    InvalidKey {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A value has the wrong type or form.
    #[error("key {key:?}: {problem}")]
    InvalidValue {
        /// The offending key.
        key: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// One or more scripts do not compile.
    #[error("{} health check(s) do not compile: {}", .0.len(), list(.0))]
    Compile(Vec<LuaCheckError>),
}

fn list(errors: &[LuaCheckError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The group/kind key Argo CD uses for an object: `group/Kind`, or `Kind` for the core group.
pub fn group_kind_key(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{group}/{kind}")
    }
}

/// A `group/Kind` (or core `Kind`) pattern, where `*` matches any run of characters
/// (including `/` and `.`) and `?` any one character, as in Argo CD.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKindPattern(String);

impl GroupKindPattern {
    /// A pattern from its `group/Kind` form.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self(pattern.into())
    }

    /// A pattern from the `<group_kind>` part of an `argocd-cm` key (`cert-manager.io_Certificate`,
    /// `Certificate`).
    pub fn from_config_key_part(group_kind: &str) -> Result<Self, String> {
        let parts: Vec<&str> = group_kind.split('_').collect();
        match parts.as_slice() {
            [kind] if !kind.is_empty() => Ok(Self::new(*kind)),
            [group, kind] if !group.is_empty() && !kind.is_empty() => {
                Ok(Self::new(format!("{group}/{kind}")))
            }
            [_] => Err("the group/kind part is empty".to_owned()),
            [_, _] => Err(format!("{group_kind:?} has an empty group or kind")),
            _ => Err(format!("{group_kind:?} has more than one `_`")),
        }
    }

    /// The pattern text (`group/Kind`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern contains wildcards.
    pub fn is_wildcard(&self) -> bool {
        self.0.contains(['*', '?'])
    }

    /// The number of non-wildcard characters: more means more specific.
    pub fn literal_len(&self) -> usize {
        self.0.chars().filter(|c| !matches!(c, '*' | '?')).count()
    }

    /// Whether a `group/Kind` key matches.
    pub fn matches(&self, key: &str) -> bool {
        glob_match(&self.0, key)
    }
}

impl fmt::Display for GroupKindPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*`/`?` glob matching without recursion: on a mismatch, let the last `*` swallow one more
/// character. Linear in practice, quadratic at worst.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Limits on one evaluation of a Lua health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LuaLimits {
    /// Lua VM instructions a script may execute (counted in steps of 1,000).
    pub max_instructions: u64,
    /// Bytes a script may allocate beyond the object it was given.
    pub max_memory_bytes: usize,
    /// Wall-clock time a script may run.
    #[serde(with = "millis")]
    pub timeout: Duration,
}

impl Default for LuaLimits {
    fn default() -> Self {
        Self {
            max_instructions: 10_000_000,
            max_memory_bytes: 32 * 1024 * 1024,
            // Argo CD's limit.
            timeout: Duration::from_secs(1),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// One custom health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCustomization {
    /// The objects it judges.
    pub pattern: GroupKindPattern,
    /// The Lua script (Argo CD's `health.lua` contract).
    pub script: String,
    /// Whether the script may use the extra functions `os.clock` and `os.difftime` (every
    /// script has `os.time` and `os.date`); see `docs/health.md`.
    pub use_open_libs: bool,
}

/// All health customisations and the sandbox limits.
///
/// Deserialises from the `argocd-cm` form described in the [module docs](self): a mapping of
/// keys to values, or a whole ConfigMap with such a `data:` mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthConfig {
    /// The custom checks, sorted by pattern.
    pub customizations: Vec<HealthCustomization>,
    /// Limits for every Lua evaluation.
    pub limits: LuaLimits,
}

impl HealthConfig {
    /// Reads the configuration from YAML (or JSON, which is YAML).
    pub fn from_yaml_str(text: &str) -> Result<Self, HealthConfigError> {
        let value: Value =
            serde_saphyr::from_str(text).map_err(|e| HealthConfigError::Parse(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Reads the configuration from a JSON/YAML value: the key mapping, or a ConfigMap.
    pub fn from_value(value: &Value) -> Result<Self, HealthConfigError> {
        let Some(map) = value.as_object() else {
            return Err(HealthConfigError::Parse(
                "expected a mapping of argocd-cm keys, or a ConfigMap".to_owned(),
            ));
        };
        let is_config_map = map.get("kind").and_then(Value::as_str) == Some("ConfigMap");
        let data = if is_config_map {
            match map.get("data") {
                None | Some(Value::Null) => return Ok(Self::default()),
                Some(Value::Object(data)) => data,
                Some(_) => {
                    return Err(HealthConfigError::Parse(
                        "the ConfigMap's `data` is not a mapping".to_owned(),
                    ));
                }
            }
        } else {
            map
        };
        let mut entries = BTreeMap::new();
        for (key, value) in data {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ if !is_health_key(key) => continue,
                _ => {
                    return Err(HealthConfigError::InvalidValue {
                        key: key.clone(),
                        problem: "expected a string".to_owned(),
                    });
                }
            };
            entries.insert(key.clone(), text);
        }
        Self::from_data(&entries)
    }

    /// Reads the configuration from `argocd-cm`-style `data` entries.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, HealthConfigError> {
        let mut scripts: BTreeMap<GroupKindPattern, String> = BTreeMap::new();
        let mut open_libs: BTreeMap<GroupKindPattern, (String, bool)> = BTreeMap::new();
        let mut limits = LuaLimits::default();
        for (key, value) in data {
            if let Some(group_kind) = key.strip_prefix(HEALTH_KEY_PREFIX) {
                let pattern = parse_pattern(key, group_kind)?;
                if value.trim().is_empty() {
                    // Argo CD ignores an empty script; so do we.
                    continue;
                }
                scripts.insert(pattern, value.clone());
            } else if let Some(group_kind) = key.strip_prefix(OPEN_LIBS_KEY_PREFIX) {
                let pattern = parse_pattern(key, group_kind)?;
                let enabled = parse_bool(key, value)?;
                open_libs.insert(pattern, (key.clone(), enabled));
            } else if key.starts_with(CAPSTAN_KEY_PREFIX) {
                match key.as_str() {
                    MAX_INSTRUCTIONS_KEY => limits.max_instructions = parse_number(key, value)?,
                    MAX_MEMORY_KEY => {
                        limits.max_memory_bytes =
                            usize::try_from(parse_number(key, value)?).unwrap_or(usize::MAX);
                    }
                    TIMEOUT_KEY => {
                        limits.timeout = Duration::from_millis(parse_number(key, value)?)
                    }
                    _ => {
                        return Err(HealthConfigError::InvalidValue {
                            key: key.clone(),
                            problem: format!(
                                "unknown setting; expected one of {MAX_INSTRUCTIONS_KEY}, {MAX_MEMORY_KEY}, {TIMEOUT_KEY}"
                            ),
                        });
                    }
                }
            }
        }
        for (pattern, (key, _)) in &open_libs {
            if !scripts.contains_key(pattern) {
                return Err(HealthConfigError::InvalidValue {
                    key: key.clone(),
                    problem: format!(
                        "there is no {HEALTH_KEY_PREFIX}{} script for it to apply to",
                        key.strip_prefix(OPEN_LIBS_KEY_PREFIX).unwrap_or_default()
                    ),
                });
            }
        }
        let customizations = scripts
            .into_iter()
            .map(|(pattern, script)| {
                let use_open_libs = open_libs.get(&pattern).is_some_and(|(_, on)| *on);
                HealthCustomization {
                    pattern,
                    script,
                    use_open_libs,
                }
            })
            .collect();
        Ok(Self {
            customizations,
            limits,
        })
    }
}

impl<'de> Deserialize<'de> for HealthConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}

fn is_health_key(key: &str) -> bool {
    key.starts_with(HEALTH_KEY_PREFIX)
        || key.starts_with(OPEN_LIBS_KEY_PREFIX)
        || key.starts_with(CAPSTAN_KEY_PREFIX)
}

fn parse_pattern(key: &str, group_kind: &str) -> Result<GroupKindPattern, HealthConfigError> {
    GroupKindPattern::from_config_key_part(group_kind).map_err(|problem| {
        HealthConfigError::InvalidKey {
            key: key.to_owned(),
            problem,
        }
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, HealthConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(HealthConfigError::InvalidValue {
            key: key.to_owned(),
            problem: format!("expected \"true\" or \"false\", got {other:?}"),
        }),
    }
}

fn parse_number(key: &str, value: &str) -> Result<u64, HealthConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| HealthConfigError::InvalidValue {
            key: key.to_owned(),
            problem: format!("expected a non-negative whole number, got {value:?}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_semantics() {
        let p = GroupKindPattern::new("*.example.com/*");
        assert!(p.matches("foo.example.com/Widget"));
        assert!(p.matches("a.b.example.com/Widget"));
        assert!(!p.matches("example.com/Widget"));
        let p = GroupKindPattern::new("apps/Deploy*");
        assert!(p.matches("apps/Deployment"));
        assert!(!p.matches("apps/StatefulSet"));
        assert!(GroupKindPattern::new("*").matches("apps/Deployment"));
        assert!(GroupKindPattern::new("Pod?").matches("Pods"));
        assert!(!GroupKindPattern::new("Pod?").matches("Pod"));
        assert!(GroupKindPattern::new("a*b*c").matches("aXXbYYbc"));
        assert!(!GroupKindPattern::new("a*b*c").matches("aXXbYYb"));
    }

    proptest::proptest! {
        #[test]
        fn glob_without_wildcards_is_equality(a in "[a-zA-Z./-]{0,12}", b in "[a-zA-Z./-]{0,12}") {
            proptest::prop_assert_eq!(glob_match(&a, &b), a == b);
        }

        #[test]
        fn glob_star_around_any_part_matches(prefix in "[a-z./]{0,8}", middle in "[a-z./]{0,8}", suffix in "[a-z./]{0,8}") {
            let text = format!("{prefix}{middle}{suffix}");
            let star_middle = format!("{prefix}*{suffix}");
            let star_ends = format!("*{middle}*");
            let question_marks = "?".repeat(text.chars().count());
            proptest::prop_assert!(glob_match(&star_middle, &text));
            proptest::prop_assert!(glob_match(&star_ends, &text));
            proptest::prop_assert!(glob_match(&question_marks, &text));
            proptest::prop_assert!(glob_match("*", &text));
        }
    }

    #[test]
    fn key_parts_follow_argo_cd() {
        assert_eq!(
            GroupKindPattern::from_config_key_part("cert-manager.io_Certificate").map(|p| p.0),
            Ok("cert-manager.io/Certificate".to_owned())
        );
        assert_eq!(
            GroupKindPattern::from_config_key_part("PersistentVolumeClaim").map(|p| p.0),
            Ok("PersistentVolumeClaim".to_owned())
        );
        assert!(GroupKindPattern::from_config_key_part("a_b_c").is_err());
        assert!(GroupKindPattern::from_config_key_part("_Kind").is_err());
        assert!(GroupKindPattern::from_config_key_part("").is_err());
    }

    #[test]
    fn reads_data_map_and_configmap() {
        let yaml = r#"
resource.customizations.health.cert-manager.io_Certificate: |
  return {status = "Healthy"}
resource.customizations.useOpenLibs.cert-manager.io_Certificate: true
resource.customizations.health.PersistentVolumeClaim: "return {status = 'Healthy'}"
capstan.health.lua.timeoutMillis: "250"
capstan.health.lua.maxInstructions: 5000
url: https://argocd.example.com
"#;
        let config = HealthConfig::from_yaml_str(yaml).expect("valid");
        assert_eq!(config.customizations.len(), 2);
        assert_eq!(
            config.customizations[0].pattern.as_str(),
            "PersistentVolumeClaim"
        );
        assert!(!config.customizations[0].use_open_libs);
        assert_eq!(
            config.customizations[1].pattern.as_str(),
            "cert-manager.io/Certificate"
        );
        assert!(config.customizations[1].use_open_libs);
        assert_eq!(config.limits.timeout, Duration::from_millis(250));
        assert_eq!(config.limits.max_instructions, 5000);

        let cm = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: argocd}
data:
  resource.customizations.health.apps_Deploy*: "return {status = 'Healthy'}"
"#;
        let config = HealthConfig::from_yaml_str(cm).expect("valid");
        assert_eq!(config.customizations[0].pattern.as_str(), "apps/Deploy*");

        let json: HealthConfig = serde_json::from_str(
            r#"{"resource.customizations.health.Pod": "return {status = 'Healthy'}"}"#,
        )
        .expect("valid json");
        assert_eq!(json.customizations[0].pattern.as_str(), "Pod");
    }

    #[test]
    fn rejects_bad_entries() {
        for (yaml, needle) in [
            ("resource.customizations.health.a_b_c: x", "more than one"),
            (
                "resource.customizations.health.Pod: x\nresource.customizations.useOpenLibs.Pod: maybe",
                "expected \"true\"",
            ),
            (
                "resource.customizations.useOpenLibs.Pod: \"true\"",
                "no resource.customizations.health.Pod",
            ),
            ("capstan.health.lua.timeout: 5", "unknown setting"),
            ("capstan.health.lua.timeoutMillis: -5", "non-negative"),
            ("- a list", "expected a mapping"),
        ] {
            let err = HealthConfig::from_yaml_str(yaml)
                .expect_err(yaml)
                .to_string();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }
}
