//! The compact form of one live object, built outside the cache's lock from what a watch
//! delivered.
//!
//! What the engine needs of every object is small: its identity, uid, resourceVersion, the
//! uids of its owners (the resource tree), which app tracks it and its health (the tree's
//! colours). The object itself (the body) is needed only for objects an app tracks — the
//! diff compares those with Git — so only those keep it, as compact JSON without
//! `metadata.managedFields` and the `last-applied-configuration` annotation, the two
//! largest parts of most objects that the diff ignores anyway. See `docs/cluster-cache.md`.

use std::fmt;

use serde_json::Value;

use crate::diff::LAST_APPLIED;
use crate::health::{HealthAssessor, HealthVerdict};
use crate::resources::{ResourceKey, str_at};

use super::tracking::Tracking;

/// An object's uid packed into 128 bits (Kubernetes uids are UUIDs: 36 characters as text).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(u128);

impl Uid {
    /// Packs a uid. A uid that is not a UUID (some aggregated APIs invent their own) is
    /// hashed instead; it then prints as that hash, which is still stable and unique enough
    /// to link owners and children.
    pub fn parse(uid: &str) -> Self {
        let hex: Vec<u8> = uid.bytes().filter(|b| *b != b'-').collect();
        if hex.len() == 32 && uid.len() == 36 {
            let mut value: u128 = 0;
            let mut ok = true;
            for b in &hex {
                match (*b as char).to_digit(16) {
                    Some(d) => value = (value << 4) | u128::from(d),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return Self(value);
            }
        }
        Self(fnv1a_128(uid.as_bytes()))
    }
}

/// FNV-1a with the 128-bit parameters: deterministic across processes, unlike std's hasher.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, b| {
        (hash ^ u128::from(*b)).wrapping_mul(PRIME)
    })
}

impl fmt::Display for Uid {
    /// The hyphenated UUID form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Which objects keep their body in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyRetention {
    /// Objects an app tracks (the default). Other objects are known by identity, owners
    /// and health; [`super::ClusterCache::live`] fetches their body from the API server
    /// when asked.
    #[default]
    Tracked,
    /// Every object (more memory; no API call for untracked objects).
    All,
}

/// What compacting needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactRules<'a> {
    pub tracking: &'a Tracking,
    pub health: &'a HealthAssessor,
    pub retention: BodyRetention,
}

/// One object in the form the store takes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompactObject {
    pub namespace: String,
    pub name: String,
    pub uid: Uid,
    pub resource_version: String,
    pub owners: Vec<Uid>,
    pub app: Option<String>,
    pub health: Option<HealthVerdict>,
    pub body: Option<Vec<u8>>,
}

/// Removes what the server keeps for its own bookkeeping and the diff ignores.
pub(crate) fn strip(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(LAST_APPLIED);
        }
    }
}

/// Compacts `obj`, an object of the kind served as `api_version`/`kind`. List responses
/// leave out `apiVersion` and `kind` on their items; they are filled in so the stored body
/// stands on its own.
pub(crate) fn compact(
    mut obj: Value,
    group: &str,
    api_version: &str,
    kind: &str,
    rules: CompactRules<'_>,
) -> CompactObject {
    if let Some(map) = obj.as_object_mut() {
        if !map.get("apiVersion").is_some_and(Value::is_string) {
            map.insert("apiVersion".into(), Value::String(api_version.to_owned()));
        }
        if !map.get("kind").is_some_and(Value::is_string) {
            map.insert("kind".into(), Value::String(kind.to_owned()));
        }
    }
    let key = ResourceKey {
        group: group.to_owned(),
        kind: kind.to_owned(),
        namespace: str_at(&obj, &["metadata", "namespace"]).to_owned(),
        name: str_at(&obj, &["metadata", "name"]).to_owned(),
    };
    let meta = obj.get("metadata");
    let owners: Vec<Uid> = meta
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(Uid::parse)
                .collect()
        })
        .unwrap_or_default();
    let lookup = |field: &'static str| {
        move |k: &str| {
            meta.and_then(|m| m.get(field))
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
        }
    };
    // Owned objects belong to an app through their owner only: a Pod carries its
    // Deployment's template labels, instance label included.
    let app = if owners.is_empty() {
        rules
            .tracking
            .app_of(&key, lookup("labels"), lookup("annotations"))
    } else {
        None
    };
    let uid_text = str_at(&obj, &["metadata", "uid"]);
    let uid = if uid_text.is_empty() {
        // Never stored objects (some aggregated APIs) have no uid; their identity is.
        Uid::parse(&key.to_string())
    } else {
        Uid::parse(uid_text)
    };
    let resource_version = str_at(&obj, &["metadata", "resourceVersion"]).to_owned();
    let deleting = meta.is_some_and(|m| m.get("deletionTimestamp").is_some());
    let health = if deleting || rules.health.has_check(group, kind) {
        rules.health.assess(&obj)
    } else {
        None
    };
    let keep = match rules.retention {
        BodyRetention::All => true,
        BodyRetention::Tracked => app.is_some(),
    };
    let body = keep.then(|| {
        strip(&mut obj);
        // Serialising a Value cannot fail: its keys are strings.
        serde_json::to_vec(&obj).unwrap_or_default()
    });
    CompactObject {
        namespace: key.namespace,
        name: key.name,
        uid,
        resource_version,
        owners,
        app,
        health,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tracking::TrackingMethod;
    use crate::health::HealthStatusCode;
    use serde_json::json;

    #[test]
    fn uids_pack_into_128_bits_and_print_back() {
        let text = "0b7c4a3e-61b2-4c7e-9a41-5f5b1d2e3c4f";
        let uid = Uid::parse(text);
        assert_eq!(uid.to_string(), text);
        assert_eq!(Uid::parse(&text.to_uppercase()), uid);
        assert_ne!(Uid::parse("not-a-uuid"), uid);
        assert_eq!(Uid::parse("not-a-uuid"), Uid::parse("not-a-uuid"));
    }

    #[test]
    fn compacting_keeps_tracked_bodies_without_server_bookkeeping() {
        let tracking = Tracking::new(TrackingMethod::Annotation);
        let health = HealthAssessor::builtin_only();
        let rules = CompactRules {
            tracking: &tracking,
            health: &health,
            retention: BodyRetention::Tracked,
        };
        let obj = json!({"metadata": {"name": "web", "namespace": "shop",
            "uid": "0b7c4a3e-61b2-4c7e-9a41-5f5b1d2e3c4f", "resourceVersion": "42",
            "annotations": {"capstan.dev/tracking-id": "app:apps/Deployment:shop/web",
                LAST_APPLIED: "{\"huge\": true}"},
            "managedFields": [{"manager": "kubectl"}]},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                "availableReplicas": 1, "readyReplicas": 1}});
        let c = compact(obj, "apps", "apps/v1", "Deployment", rules);
        assert_eq!(c.app.as_deref(), Some("app"));
        assert_eq!(c.resource_version, "42");
        let body: Value = serde_json::from_slice(c.body.as_deref().expect("kept")).expect("json");
        assert_eq!(body["apiVersion"], "apps/v1");
        assert_eq!(body["kind"], "Deployment");
        assert!(body["metadata"].get("managedFields").is_none());
        assert!(body["metadata"]["annotations"].get(LAST_APPLIED).is_none());
        assert!(c.health.is_some());

        // Untracked and owned: no body, owners recorded, health still judged.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1",
            "namespace": "shop", "uid": "11111111-2222-3333-4444-555555555555",
            "labels": {"app.kubernetes.io/instance": "app"},
            "ownerReferences": [{"uid": "0b7c4a3e-61b2-4c7e-9a41-5f5b1d2e3c4f"}]},
            "status": {"phase": "Running"}});
        let label_rules = CompactRules {
            tracking: &Tracking::new(TrackingMethod::Label),
            ..rules
        };
        let c = compact(pod, "", "v1", "Pod", label_rules);
        assert_eq!(c.app, None, "owned objects are never tracked themselves");
        assert_eq!(
            c.owners,
            vec![Uid::parse("0b7c4a3e-61b2-4c7e-9a41-5f5b1d2e3c4f")]
        );
        assert!(c.body.is_none());
        assert!(c.health.is_some());

        let deleting = json!({"metadata": {"name": "cm", "uid": "x",
            "deletionTimestamp": "2024-01-01T00:00:00Z"}});
        let c = compact(deleting, "", "v1", "ConfigMap", rules);
        assert_eq!(
            c.health.map(|h| h.status),
            Some(HealthStatusCode::Progressing)
        );
    }
}
