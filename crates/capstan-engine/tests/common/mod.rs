//! Helpers shared by the engine's integration tests.

#![allow(dead_code)]

pub mod sync_fixture;

use anyhow::Result;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;

/// A dynamic API for `manifest`'s kind in `ns` (plural guessed from the kind, as kube does).
pub fn api_of(client: &kube::Client, ns: &str, manifest: &Value) -> Api<DynamicObject> {
    let api_version = manifest["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(
        group,
        version,
        manifest["kind"].as_str().unwrap_or_default(),
    );
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Server-side applies `manifest` as `manager` (with force), as the sync would, and returns
/// the object the server holds.
pub async fn apply_as(
    client: &kube::Client,
    ns: &str,
    manifest: &Value,
    manager: &str,
) -> Result<Value> {
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    let applied = api_of(client, ns, manifest)
        .patch(
            name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(manifest),
        )
        .await?;
    Ok(serde_json::to_value(applied)?)
}
