//! An Application's live state: its managed resources with their diffs, a diff against
//! manifests the caller gives (`capstan app diff --local`), its resource tree and the events
//! of its resources.
//!
//! The API checks the caller (`applications, get` on the Application, a missing one
//! reported as [`Api::get`] does) and the request, then asks the [`LiveState`] it was given —
//! the controller's, in the all-in-one ([`crate::live`]). Without one these methods answer
//! Unavailable.

use std::sync::Arc;

use capstan_store::typed::ObjectRef;
use serde_json::Value;

use super::{Api, Caller};
use crate::error::{ApiError, ApiResult, Code};
use crate::live::{LiveState, ManagedResource, ResourceNode, ResourceSelector};

/// The most manifest text one diff request compares (all manifests together).
pub const MAX_DIFF_BYTES: usize = 8 << 20;

impl Api {
    /// The live state, or Unavailable naming why there is none.
    fn live_state(&self) -> ApiResult<&Arc<dyn LiveState>> {
        self.config().live.as_ref().ok_or_else(|| {
            ApiError::new(
                Code::Unavailable,
                "this API runs without a controller, and only a controller holds the live \
                 state (managed resources, diffs, resource trees, events): ask the all-in-one",
            )
        })
    }

    /// The resources the Application manages, desired (rendered from its sources) against
    /// live, with their diffs.
    pub async fn managed_resources(
        &self,
        caller: &Caller,
        at: &ObjectRef,
    ) -> ApiResult<Vec<ManagedResource>> {
        let app = self.get(caller, at, None).await?;
        self.live_state()?.managed_resources(at, &app, None).await
    }

    /// The Application's resources with `manifests` (each one JSON object) as the desired
    /// side instead of what its sources render; compared with the objects it tracks.
    pub async fn diff(
        &self,
        caller: &Caller,
        at: &ObjectRef,
        manifests: &[String],
    ) -> ApiResult<Vec<ManagedResource>> {
        let app = self.get(caller, at, None).await?;
        let live = self.live_state()?;
        let manifests = parse_manifests(manifests)?;
        live.managed_resources(at, &app, Some(manifests)).await
    }

    /// The Application's resource tree.
    pub async fn resource_tree(
        &self,
        caller: &Caller,
        at: &ObjectRef,
    ) -> ApiResult<Vec<ResourceNode>> {
        let app = self.get(caller, at, None).await?;
        self.live_state()?.resource_tree(at, &app).await
    }

    /// Events about `resource` (one of the Application's tree), or about every object of its
    /// tree, oldest first.
    pub async fn events(
        &self,
        caller: &Caller,
        at: &ObjectRef,
        resource: &ResourceSelector,
    ) -> ApiResult<Vec<Value>> {
        let app = self.get(caller, at, None).await?;
        let live = self.live_state()?;
        let resource = if resource.name.is_empty() {
            if !resource.namespace.is_empty() || !resource.uid.is_empty() {
                return Err(ApiError::invalid(
                    "resourceName is missing: name the resource whose events you want, or \
                     leave out resourceNamespace and resourceUID for all of the application's",
                ));
            }
            None
        } else {
            Some(resource)
        };
        live.events(at, &app, resource).await
    }
}

/// Manifests as given to a diff: each a JSON object naming its apiVersion, kind and name.
fn parse_manifests(manifests: &[String]) -> ApiResult<Vec<Value>> {
    let total: usize = manifests.iter().map(String::len).sum();
    if total > MAX_DIFF_BYTES {
        return Err(ApiError::invalid(format!(
            "the manifests are {total} bytes; at most {MAX_DIFF_BYTES} are compared at once: \
             diff fewer at a time"
        )));
    }
    manifests
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| ApiError::invalid(format!("manifests[{i}] is not JSON: {e}")))?;
            if !value.is_object() {
                return Err(ApiError::invalid(format!(
                    "manifests[{i}] is not a JSON object"
                )));
            }
            for (field, path) in [
                ("apiVersion", "/apiVersion"),
                ("kind", "/kind"),
                ("metadata.name", "/metadata/name"),
            ] {
                if value
                    .pointer(path)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::invalid(format!(
                        "manifests[{i}] has no {field}: every manifest names its apiVersion, \
                         kind and metadata.name"
                    )));
                }
            }
            Ok(value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_must_be_named_json_objects_within_the_limit() {
        let good = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#;
        assert_eq!(parse_manifests(&[good.to_owned()]).expect("valid").len(), 1);
        for (bad, says) in [
            ("not json", "manifests[1] is not JSON"),
            ("[1]", "manifests[1] is not a JSON object"),
            (
                r#"{"kind":"ConfigMap","metadata":{"name":"a"}}"#,
                "no apiVersion",
            ),
            (
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
                "no metadata.name",
            ),
        ] {
            let error = parse_manifests(&[good.to_owned(), bad.to_owned()]).expect_err(bad);
            assert_eq!(error.code, Code::InvalidArgument);
            assert!(error.message.contains(says), "{}", error.message);
        }
        let huge = vec![" ".repeat(MAX_DIFF_BYTES / 2 + 1); 2];
        let error = parse_manifests(&huge).expect_err("too large");
        assert!(error.message.contains("at most"), "{}", error.message);
    }
}
