//! The live state the API shows of an Application ([`capstan_api::live::LiveState`]),
//! answered by the [`Reconciler`] from what it holds: its cluster caches, and the very
//! comparison a reconcile makes (`Reconciler::observe`: render, place and stamp, gather the
//! live objects, compare) with each resource's sides and diff kept.
//!
//! - **Managed resources**: every resource desired or tracked, as Argo CD's `ResourceDiff`
//!   (target, live, normalised live and predicted live states; Secret values masked; the
//!   engine's unified diff), app-of-apps children included (their live side is the stored
//!   child, when this Application manages it).
//! - **Diff**: the same with manifests given by the caller as the desired side, compared
//!   with the objects the Application tracks only — naming an object does not reveal it.
//! - **Resource tree**: the cache's tree of the Application (its objects, then through
//!   `ownerReferences` what they own), plus its app-of-apps children.
//! - **Events**: read from the destination cluster with the controller's client for it,
//!   about the objects of the tree only.
//!
//! Answers need a cluster this member owns, whose cache has listed everything and is not
//! stale; otherwise Unavailable (or FailedPrecondition for an Application whose destination
//! or project does not allow a comparison), as an [`ApiError`] the API passes on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use capstan_api::error::{ApiError, ApiResult, Code};
use capstan_api::live::{
    LiveFuture, LiveState, ManagedResource, NodeHealth, ResourceNode, ResourceRef, ResourceSelector,
};
use capstan_engine::cache::TreeNode;
use capstan_engine::diff;
use capstan_engine::resources::ResourceKey;
use capstan_model::{Application, SyncStatusCode};
use capstan_store::typed::ObjectRef;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::children;
use crate::compare::ResourceDetail;
use crate::reconcile::{ClusterHandle, Desired, Observed, ReconcileError, Reconciler};

impl LiveState for Reconciler {
    fn managed_resources<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
        manifests: Option<Vec<Value>>,
    ) -> LiveFuture<'a, Vec<ManagedResource>> {
        Box::pin(async move {
            let observed = self.live_comparison(at, app, manifests).await?;
            Ok(managed_resources(&observed))
        })
    }

    fn resource_tree<'a>(
        &'a self,
        _at: &'a ObjectRef,
        app: &'a Application,
    ) -> LiveFuture<'a, Vec<ResourceNode>> {
        Box::pin(async move {
            let cluster = self.live_cluster(app)?;
            Ok(resource_tree(&cluster, app))
        })
    }

    fn events<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
        resource: Option<&'a ResourceSelector>,
    ) -> LiveFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let cluster = self.live_cluster(app)?;
            events(&cluster, at, app, resource).await
        })
    }
}

impl Reconciler {
    /// The cluster to answer about `app` from: registered, owned by this member, listed and
    /// reachable.
    fn live_cluster(&self, app: &Application) -> ApiResult<Arc<ClusterHandle>> {
        let destination = &app.spec.destination;
        let cluster = self.cluster_of(app).ok_or_else(|| {
            ApiError::new(
                Code::FailedPrecondition,
                format!(
                    "destination cluster {:?} is not registered or not connected (see the cluster's status)",
                    if destination.server.is_empty() {
                        &destination.name
                    } else {
                        &destination.server
                    }
                ),
            )
        })?;
        if !self.owns(&cluster.server) {
            return Err(ApiError::new(
                Code::Unavailable,
                format!(
                    "cluster {} is reconciled by another controller member; ask again shortly",
                    cluster.name
                ),
            ));
        }
        if !cluster.cache.is_synced() {
            return Err(ApiError::new(
                Code::Unavailable,
                format!(
                    "the controller is still listing cluster {}; ask again shortly",
                    cluster.name
                ),
            ));
        }
        if let Some(error) = crate::clusters::unreachable(&cluster.cache) {
            return Err(ApiError::new(
                Code::Unavailable,
                format!(
                    "cluster {} ({}) is unreachable: {error}",
                    cluster.name, cluster.server
                ),
            ));
        }
        Ok(cluster)
    }

    /// The reconcile's comparison of `app` (with `manifests` as the desired side, when
    /// given), details kept; the project must admit the Application, as for a reconcile.
    async fn live_comparison(
        &self,
        at: &ObjectRef,
        app: &Application,
        manifests: Option<Vec<Value>>,
    ) -> ApiResult<Observed> {
        let cluster = self.live_cluster(app)?;
        if let Err(refusal) = self.admit(at, app, &cluster).await.map_err(api_error)? {
            let reasons: Vec<String> = refusal.into_iter().map(|c| c.message).collect();
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!(
                    "the project refuses the application: {}",
                    reasons.join("; ")
                ),
            ));
        }
        let had_children = app
            .status
            .as_ref()
            .is_some_and(|s| s.resources.iter().any(|r| r.group == children::GROUP));
        let desired = match manifests {
            Some(manifests) => Desired::Given(manifests),
            None => Desired::Rendered { app, hard: false },
        };
        Box::pin(self.observe(at, app, &cluster, desired, had_children, true))
            .await
            .map_err(api_error)?
            .map_err(|message| ApiError::new(Code::FailedPrecondition, message))
    }
}

fn api_error(error: ReconcileError) -> ApiError {
    match error {
        ReconcileError::Store(e) => e.into(),
        other => ApiError::new(Code::Unavailable, other.to_string()),
    }
}

/// The managed resources of a comparison, ordered by group, kind, namespace and name.
fn managed_resources(observed: &Observed) -> Vec<ManagedResource> {
    let mut items: Vec<ManagedResource> = observed
        .comparison
        .details
        .iter()
        .map(managed_resource)
        .collect();
    let compared = &observed.child_comparison;
    for status in &compared.statuses {
        let at = ObjectRef::new(status.namespace.as_str(), status.name.as_str());
        let desired = observed
            .children
            .iter()
            .find(|c| c.kind() == status.kind && c.at() == &at)
            .map(children::Child::to_json);
        let live = compared.stored(&status.kind, &at).cloned();
        let modified = status.status != Some(SyncStatusCode::Synced);
        let diff = diff::client_side_diff(desired.as_ref(), live.as_ref(), &[]).ok();
        items.push(ManagedResource {
            group: status.group.clone(),
            kind: status.kind.clone(),
            namespace: status.namespace.clone(),
            name: status.name.clone(),
            normalized_live_state: diff.as_ref().and_then(|d| d.live.clone()),
            predicted_live_state: diff.as_ref().and_then(|d| d.desired.clone()),
            diff: diff
                .filter(|_| modified)
                .map(|d| d.unified)
                .unwrap_or_default(),
            target_state: desired,
            live_state: live,
            hook: false,
            modified,
        });
    }
    items.sort_by(|a, b| {
        (&a.group, &a.kind, &a.namespace, &a.name).cmp(&(&b.group, &b.kind, &b.namespace, &b.name))
    });
    items
}

fn managed_resource(detail: &ResourceDetail) -> ManagedResource {
    let mut target = detail.desired.clone();
    let mut live = detail.live.clone();
    if target
        .as_ref()
        .or(live.as_ref())
        .is_some_and(diff::is_secret)
    {
        diff::mask_secrets(target.as_mut(), live.as_mut());
    }
    let key = &detail.key;
    let (normalized, predicted, modified, unified) = match &detail.diff {
        Some(d) => (
            d.live.clone(),
            d.desired.clone(),
            d.modified,
            d.unified.clone(),
        ),
        // Hooks are not compared.
        None if detail.hook => (None, None, false, String::new()),
        // An unusable ignoreDifferences rule (the Application's ComparisonError says which).
        None => (None, None, true, String::new()),
    };
    ManagedResource {
        group: key.group.clone(),
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        target_state: target,
        live_state: live,
        normalized_live_state: normalized,
        predicted_live_state: predicted,
        hook: detail.hook,
        modified,
        diff: unified,
    }
}

/// The tree the cache holds of `app`, owners named, and its app-of-apps children as of its
/// last comparison.
fn resource_tree(cluster: &ClusterHandle, app: &Application) -> Vec<ResourceNode> {
    let nodes = cluster.cache.tree(&app.metadata.name);
    let by_uid: HashMap<&str, &TreeNode> = nodes.iter().map(|n| (n.uid.as_str(), n)).collect();
    let mut tree: Vec<ResourceNode> = nodes
        .iter()
        .map(|node| ResourceNode {
            group: node.key.group.clone(),
            version: node.version.clone(),
            kind: node.key.kind.clone(),
            namespace: node.key.namespace.clone(),
            name: node.key.name.clone(),
            uid: node.uid.clone(),
            resource_version: node.resource_version.clone(),
            parent_refs: node
                .parents
                .iter()
                .filter_map(|uid| by_uid.get(uid.as_str()))
                .map(|parent| ResourceRef {
                    group: parent.key.group.clone(),
                    kind: parent.key.kind.clone(),
                    namespace: parent.key.namespace.clone(),
                    name: parent.key.name.clone(),
                    uid: parent.uid.clone(),
                })
                .collect(),
            health: node.health.as_ref().map(|h| NodeHealth {
                status: h.status.as_str().to_owned(),
                message: h.message.clone(),
            }),
            // Only the Application's own objects keep their body in the cache.
            created_at: node
                .app
                .as_ref()
                .and_then(|_| cluster.cache.get(&node.key))
                .and_then(|body| {
                    body.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                }),
        })
        .collect();
    let children = app
        .status
        .iter()
        .flat_map(|s| &s.resources)
        .filter(|r| r.group == children::GROUP && !r.requires_pruning);
    for child in children {
        tree.push(ResourceNode {
            group: child.group.clone(),
            version: child.version.clone(),
            kind: child.kind.clone(),
            namespace: child.namespace.clone(),
            name: child.name.clone(),
            health: child
                .health
                .as_ref()
                .and_then(|h| h.status)
                .map(|status| NodeHealth {
                    status: status.as_str().to_owned(),
                    message: String::new(),
                }),
            ..ResourceNode::default()
        });
    }
    tree
}

/// Core v1 Events, the kind every cluster serves.
fn event_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Event".into(),
        plural: "events".into(),
    }
}

/// How many Events one page of a listing holds.
const EVENT_PAGE: u32 = 500;

/// The events about `resource` (an object of the Application's tree) or about every object
/// of the tree, oldest first.
async fn events(
    cluster: &ClusterHandle,
    at: &ObjectRef,
    app: &Application,
    resource: Option<&ResourceSelector>,
) -> ApiResult<Vec<Value>> {
    let tree = cluster.cache.tree(&app.metadata.name);
    let wanted: Vec<&TreeNode> = match resource {
        Some(r) => {
            let found: Vec<&TreeNode> = tree
                .iter()
                .filter(|n| {
                    n.key.name == r.name
                        && n.key.namespace == r.namespace
                        && (r.uid.is_empty() || n.uid == r.uid)
                })
                .collect();
            if found.is_empty() {
                return Err(ApiError::not_found(format!(
                    "resource {:?} in namespace {:?} of application {at}",
                    r.name, r.namespace
                )));
            }
            found
        }
        None => tree.iter().collect(),
    };
    let uids: HashSet<&str> = wanted.iter().map(|n| n.uid.as_str()).collect();
    let keys: HashSet<&ResourceKey> = wanted.iter().map(|n| &n.key).collect();
    // An event lives in the namespace of its object ("default" for cluster-scoped ones).
    let namespaces: BTreeSet<&str> = wanted
        .iter()
        .map(|n| match n.key.namespace.as_str() {
            "" => "default",
            ns => ns,
        })
        .collect();
    let client = cluster.resolver.client().clone();
    let mut found = Vec::new();
    for namespace in namespaces {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &event_resource());
        let mut params = ListParams::default().limit(EVENT_PAGE);
        if let Some(r) = resource {
            params = params.fields(&format!("involvedObject.name={}", r.name));
        }
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| cluster_error(cluster, e))?;
            for event in page.items {
                let mut value = serde_json::to_value(event)
                    .map_err(|e| ApiError::internal(format!("encoding an event: {e}")))?;
                let involved = &value["involvedObject"];
                let uid = involved["uid"].as_str().unwrap_or_default();
                let about = if uid.is_empty() {
                    keys.contains(&ResourceKey {
                        group: involved["apiVersion"]
                            .as_str()
                            .and_then(|v| v.rsplit_once('/'))
                            .map(|(g, _)| g.to_owned())
                            .unwrap_or_default(),
                        kind: involved["kind"].as_str().unwrap_or_default().to_owned(),
                        namespace: involved["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        name: involved["name"].as_str().unwrap_or_default().to_owned(),
                    })
                } else {
                    uids.contains(uid)
                };
                if about {
                    if let Some(map) = value.as_object_mut() {
                        map.insert("apiVersion".into(), "v1".into());
                        map.insert("kind".into(), "Event".into());
                    }
                    // The server's bookkeeping, as large as the event and of no use here.
                    if let Some(meta) = value["metadata"].as_object_mut() {
                        meta.remove("managedFields");
                    }
                    found.push(value);
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => break,
            }
        }
    }
    found.sort_by_cached_key(event_time);
    Ok(found)
}

/// When an event last happened: `lastTimestamp`, else `eventTime`, else `firstTimestamp`,
/// else its creation.
fn event_time(event: &Value) -> jiff::Timestamp {
    [
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| event.pointer(p).and_then(Value::as_str))
    .find_map(|t| t.parse().ok())
    .unwrap_or(jiff::Timestamp::MIN)
}

fn cluster_error(cluster: &ClusterHandle, error: kube::Error) -> ApiError {
    let status = capstan_engine::cluster::status_of(&error);
    let (message, _) = capstan_engine::cluster::explain(error);
    let message = format!("reading events from cluster {}: {message}", cluster.name);
    match status {
        // The controller's credentials for the cluster do not allow it: configuration.
        Some(401 | 403) => ApiError::new(Code::FailedPrecondition, message),
        _ => ApiError::new(Code::Unavailable, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_ordered_by_their_last_time() {
        let mut events = [
            json!({"lastTimestamp": "2026-01-01T10:00:02Z"}),
            json!({"eventTime": "2026-01-01T10:00:01.500000Z"}),
            json!({"metadata": {"creationTimestamp": "2026-01-01T09:00:00Z"}}),
            json!({}),
        ];
        events.sort_by_cached_key(event_time);
        assert_eq!(events[0], json!({}));
        assert_eq!(
            events[1]["metadata"]["creationTimestamp"],
            "2026-01-01T09:00:00Z"
        );
        assert_eq!(events[2]["eventTime"], "2026-01-01T10:00:01.500000Z");
        assert_eq!(events[3]["lastTimestamp"], "2026-01-01T10:00:02Z");
    }

    #[test]
    fn secret_values_are_masked_in_every_state() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "a"}, "stringData": {"password": "new"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "a"}, "data": {"password": "b2xk"}});
        let detail = ResourceDetail {
            key: ResourceKey::of(&desired),
            hook: false,
            diff: diff::client_side_diff(Some(&desired), Some(&live), &[]).ok(),
            desired: Some(desired),
            live: Some(live),
        };
        let item = managed_resource(&detail);
        assert!(item.modified);
        let text = serde_json::to_string(&item).expect("serialises");
        for secret in ["new", "b2xk", "bmV3"] {
            assert!(!text.contains(secret), "{secret} shows in {text}");
        }
        assert!(item.diff.contains("password"), "{}", item.diff);
    }
}
