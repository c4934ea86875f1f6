//! What runs in an Application's cluster, for the API methods that show it: managed
//! resources with their diffs, a diff against given manifests, the resource tree and events.
//!
//! The API process holds no cluster state; the controller does (its cluster caches, its
//! render and compare code). [`LiveState`] is what the API asks, after authenticating the
//! caller and checking RBAC itself; the controller implements it from its reconciler
//! (`capstan_controller::live`), and the all-in-one, which runs both in one process, hands
//! that implementation to the API ([`crate::service::ApiConfig::live`]). Without one (a
//! standalone `capstand api`), these methods answer Unavailable. In the scale-out design the
//! API reaches the controller member that owns the Application's cluster for this (issue 8):
//! another implementation of this trait, over the network.
//!
//! The answer types serialise to Argo CD's JSON shapes (`ResourceDiff`, `ResourceNode`).

use std::future::Future;
use std::pin::Pin;

use capstan_model::Application;
use capstan_store::typed::ObjectRef;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::ApiResult;

/// What the methods of [`LiveState`] return: a boxed future, so the trait stays
/// dyn-compatible.
pub type LiveFuture<'a, T> = Pin<Box<dyn Future<Output = ApiResult<T>> + Send + 'a>>;

/// The live state of Applications (see the [module docs](self)). Callers have checked that
/// the caller may `get` the Application; implementations answer for the Application given
/// (read from the store by the API), at `at`.
pub trait LiveState: Send + Sync + std::fmt::Debug {
    /// Every resource the Application manages, desired against live, ordered by group, kind,
    /// namespace and name. With `manifests`, those are the desired side instead of what the
    /// sources render — placed in the destination namespace and stamped with tracking as
    /// rendered manifests are — and compared only with objects the Application tracks.
    fn managed_resources<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
        manifests: Option<Vec<Value>>,
    ) -> LiveFuture<'a, Vec<ManagedResource>>;

    /// The Application's resource tree: the objects it manages and, through
    /// `ownerReferences`, everything they own (ReplicaSets, Pods, ...), roots first.
    fn resource_tree<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
    ) -> LiveFuture<'a, Vec<ResourceNode>>;

    /// Kubernetes Events (as JSON) from the destination cluster about `resource` (which must
    /// belong to the Application's tree), or without one about every object of the tree;
    /// oldest first.
    fn events<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
        resource: Option<&'a ResourceSelector>,
    ) -> LiveFuture<'a, Vec<Value>>;
}

/// One managed resource, desired against live: Argo CD's `ResourceDiff`. The four states are
/// JSON text, as Argo CD sends them (`"null"` for a missing side); Secret values are masked
/// in all of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedResource {
    /// API group (empty for the core group).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The desired manifest (placed and stamped); `None` when Git no longer has it.
    #[serde(serialize_with = "json_text", deserialize_with = "from_json_text")]
    pub target_state: Option<Value>,
    /// The live object; `None` when it does not exist.
    #[serde(serialize_with = "json_text", deserialize_with = "from_json_text")]
    pub live_state: Option<Value>,
    /// The live object as compared: normalised, `ignoreDifferences` applied, projected onto
    /// the fields the manifest sets.
    #[serde(serialize_with = "json_text", deserialize_with = "from_json_text")]
    pub normalized_live_state: Option<Value>,
    /// What the object will look like once synced: the manifest, normalised.
    #[serde(serialize_with = "json_text", deserialize_with = "from_json_text")]
    pub predicted_live_state: Option<Value>,
    /// Whether it is a hook (hooks are not compared).
    pub hook: bool,
    /// Whether desired and live differ (or one side is missing).
    pub modified: bool,
    /// A unified diff from live to desired, of their YAML (empty when equal).
    pub diff: String,
}

/// The inverse of `json_text`: `"null"` is `None`.
fn from_json_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    let text = String::deserialize(deserializer)?;
    match serde_json::from_str::<Value>(&text).map_err(serde::de::Error::custom)? {
        Value::Null => Ok(None),
        value => Ok(Some(value)),
    }
}

fn json_text<S: Serializer>(value: &Option<Value>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.serialize_str(&value.to_string()),
        None => serializer.serialize_str("null"),
    }
}

/// One object of an Application's resource tree: Argo CD's `ResourceNode`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceNode {
    /// API group.
    pub group: String,
    /// The version the controller watches the kind at.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object's uid (empty for app-of-apps children, which live in the store).
    pub uid: String,
    /// The object's resourceVersion.
    pub resource_version: String,
    /// Its owners in the tree (empty for the Application's own resources).
    pub parent_refs: Vec<ResourceRef>,
    /// Its health, for kinds with a health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<NodeHealth>,
    /// When it was created (RFC 3339), when the controller keeps the object's body (the
    /// Application's own resources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// An owner of a [`ResourceNode`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
}

/// The health of a [`ResourceNode`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub status: String,
    /// Why (often empty).
    pub message: String,
}

/// The object whose events are asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSelector {
    /// Its namespace (empty: cluster-scoped).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid, when known (empty: any object of that name).
    pub uid: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_json_text_and_a_missing_side_is_null() {
        let item = ManagedResource {
            kind: "ConfigMap".into(),
            name: "a".into(),
            target_state: Some(serde_json::json!({"data": {"k": "v"}})),
            modified: true,
            ..ManagedResource::default()
        };
        let json = serde_json::to_value(&item).expect("serialises");
        assert_eq!(json["targetState"], r#"{"data":{"k":"v"}}"#);
        assert_eq!(json["liveState"], "null");
        assert_eq!(json["normalizedLiveState"], "null");
        assert_eq!(json["predictedLiveState"], "null");
        assert_eq!(json["modified"], true);
        assert_eq!(json["hook"], false);
        assert_eq!(json["diff"], "");
        assert_eq!(json["group"], "");
    }
}
