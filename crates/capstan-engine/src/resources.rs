//! What the cache, the diff and the sync share about Kubernetes objects: the key that names
//! one ([`ResourceKey`]), reading a manifest's identity, and turning a manifest's
//! `apiVersion`/`kind` into an API endpoint through discovery ([`ApiResolver`]).
//!
//! The resolver caches what discovery told it and asks again on a miss, so a CRD applied a
//! moment ago (in the same sync, or by someone else) is found without a restart.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Errors naming an object's API endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The manifest lacks `apiVersion` or `kind`.
    #[error("manifest has no {0}: every object needs apiVersion and kind")]
    Incomplete(&'static str),
    /// The API server does not serve the kind (yet): a missing CRD, or a typo.
    #[error(
        "the server does not serve kind {kind} in {api_version}: is its CustomResourceDefinition installed?"
    )]
    UnknownKind {
        /// `group/version` as written.
        api_version: String,
        /// The kind.
        kind: String,
    },
    /// Discovery itself failed (the API server is unreachable or refused).
    #[error("discovery of {api_version} failed: {source}")]
    Discovery {
        /// `group/version` asked for.
        api_version: String,
        /// What the client said.
        #[source]
        source: kube::Error,
    },
}

/// Names one object: group, kind, namespace (empty for cluster-scoped) and name. The version
/// is left out on purpose: the same object is served under several versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    /// API group; empty for the core group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ResourceKey {
    /// The key of a manifest or live object (namespace as written; see [`Self::in_namespace`]).
    pub fn of(obj: &Value) -> Self {
        Self {
            group: group_of(obj).to_owned(),
            kind: str_at(obj, &["kind"]).to_owned(),
            namespace: str_at(obj, &["metadata", "namespace"]).to_owned(),
            name: str_at(obj, &["metadata", "name"]).to_owned(),
        }
    }

    /// The same key in `namespace`.
    #[must_use]
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }
}

impl fmt::Display for ResourceKey {
    /// `group/Kind namespace/name`, the form used in messages and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        write!(f, "{} ", self.kind)?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        f.write_str(&self.name)
    }
}

/// The string at `path` in `obj`, or `""`.
pub fn str_at<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(obj, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The API group of an object (`""` for the core group).
pub fn group_of(obj: &Value) -> &str {
    str_at(obj, &["apiVersion"])
        .rsplit_once('/')
        .map_or("", |(g, _)| g)
}

/// The annotation `key` of an object, if set.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

/// Gives a namespaced object `namespace` if it names none; strips the namespace from a
/// cluster-scoped one (the API server would refuse it). Comparison and sync both place
/// manifests this way, so their keys agree with the live objects'.
pub fn place_in_namespace(manifest: &mut Value, namespaced: bool, namespace: &str) {
    let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if !namespaced {
        meta.remove("namespace");
    } else if !namespace.is_empty()
        && meta
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        meta.insert("namespace".into(), Value::String(namespace.to_owned()));
    }
}

/// Which kinds are namespaced, from [`ApiResolver::scopes`].
#[derive(Clone, Debug, Default)]
pub struct Scopes(HashMap<(String, String), Option<bool>>);

impl Scopes {
    /// Whether `obj`'s kind is namespaced; `None` when nobody could tell (not served, no CRD).
    pub fn namespaced(&self, obj: &Value) -> Option<bool> {
        self.0
            .get(&(
                str_at(obj, &["apiVersion"]).to_owned(),
                str_at(obj, &["kind"]).to_owned(),
            ))
            .copied()
            .flatten()
    }
}

/// Whether a CRD among `manifests` makes `group`/`kind` namespaced.
fn crd_scope(manifests: &[Value], group: &str, kind: &str) -> Option<bool> {
    manifests
        .iter()
        .filter(|m| str_at(m, &["kind"]) == "CustomResourceDefinition")
        .find(|m| {
            str_at(m, &["spec", "group"]) == group && str_at(m, &["spec", "names", "kind"]) == kind
        })
        .map(|m| str_at(m, &["spec", "scope"]) != "Cluster")
}

/// Where a kind is served and whether it is namespaced.
#[derive(Clone, Debug)]
pub struct ResolvedKind {
    /// The endpoint (group, version, plural).
    pub resource: ApiResource,
    /// Whether objects of the kind live in namespaces.
    pub namespaced: bool,
    /// Verbs and subresources.
    pub capabilities: ApiCapabilities,
}

/// Turns `apiVersion`/`kind` into API endpoints through discovery, remembering the answers.
#[derive(Clone)]
pub struct ApiResolver {
    client: kube::Client,
    known: Arc<RwLock<HashMap<GroupVersionKind, ResolvedKind>>>,
}

impl fmt::Debug for ApiResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResolver").finish_non_exhaustive()
    }
}

impl ApiResolver {
    /// A resolver over `client`'s cluster.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            known: Arc::default(),
        }
    }

    /// The client it resolves against.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Where `obj`'s kind is served (asks discovery on a miss).
    pub async fn resolve(&self, obj: &Value) -> Result<ResolvedKind, ResolveError> {
        let api_version = str_at(obj, &["apiVersion"]);
        let kind = str_at(obj, &["kind"]);
        if api_version.is_empty() {
            return Err(ResolveError::Incomplete("apiVersion"));
        }
        if kind.is_empty() {
            return Err(ResolveError::Incomplete("kind"));
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
            .await
    }

    /// Where a group/version/kind is served (asks discovery on a miss).
    pub async fn resolve_gvk(&self, gvk: &GroupVersionKind) -> Result<ResolvedKind, ResolveError> {
        if let Some(found) = self.known.read().expect("not poisoned").get(gvk) {
            return Ok(found.clone());
        }
        let api_version = gvk.api_version();
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, gvk)
            .await
            .map_err(|source| match &source {
                kube::Error::Api(status) if status.code == 404 => ResolveError::UnknownKind {
                    api_version: api_version.clone(),
                    kind: gvk.kind.clone(),
                },
                kube::Error::Discovery(_) => ResolveError::UnknownKind {
                    api_version: api_version.clone(),
                    kind: gvk.kind.clone(),
                },
                _ => ResolveError::Discovery {
                    api_version: api_version.clone(),
                    source,
                },
            })?;
        let resolved = ResolvedKind {
            namespaced: capabilities.scope == Scope::Namespaced,
            resource,
            capabilities,
        };
        self.known
            .write()
            .expect("not poisoned")
            .insert(gvk.clone(), resolved.clone());
        Ok(resolved)
    }

    /// Which of `manifests`' kinds are namespaced, asking discovery once per kind; a CRD
    /// among the manifests answers for the kind it defines (it may not be served yet).
    pub async fn scopes(&self, manifests: &[Value]) -> Scopes {
        let mut known = HashMap::new();
        for manifest in manifests {
            let id = (
                str_at(manifest, &["apiVersion"]).to_owned(),
                str_at(manifest, &["kind"]).to_owned(),
            );
            if known.contains_key(&id) {
                continue;
            }
            let namespaced = match self.resolve(manifest).await {
                Ok(kind) => Some(kind.namespaced),
                Err(ResolveError::UnknownKind { .. }) => {
                    let group = id.0.rsplit_once('/').map_or("", |(g, _)| g);
                    crd_scope(manifests, group, &id.1)
                }
                Err(_) => None,
            };
            known.insert(id, namespaced);
        }
        Scopes(known)
    }

    /// Forgets what discovery said (after CRDs were deleted or changed).
    pub fn forget(&self) {
        self.known.write().expect("not poisoned").clear();
    }

    /// A dynamic API for `kind` in `namespace` (ignored for cluster-scoped kinds).
    pub fn api(&self, kind: &ResolvedKind, namespace: &str) -> Api<DynamicObject> {
        if kind.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &kind.resource)
        } else {
            Api::all_with(self.client.clone(), &kind.resource)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_read_group_kind_namespace_and_name() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}});
        let key = ResourceKey::of(&obj);
        assert_eq!(key.group, "apps");
        assert_eq!(key.to_string(), "apps/Deployment shop/web");
        let core = ResourceKey::of(&json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop"}}));
        assert_eq!(core.group, "");
        assert_eq!(core.to_string(), "Namespace shop");
        assert_eq!(core.clone().in_namespace("x").namespace, "x");
    }

    #[test]
    fn annotations_are_read_when_present() {
        let obj = json!({"metadata": {"annotations": {"a": "1"}}});
        assert_eq!(annotation(&obj, "a"), Some("1"));
        assert_eq!(annotation(&obj, "b"), None);
        assert_eq!(annotation(&json!({}), "a"), None);
    }
}
