//! Server-side diff: ask the API server what applying the manifest would make of the object
//! (a dry-run server-side apply), then compare that prediction with the live object.
//!
//! The prediction carries everything the server would do: defaulting, admission webhooks,
//! and the removal of fields the manager applied before and no longer sets. So it is
//! compared with live **without** the projection of the client-side diff: a field only live
//! has is a difference, which is how a field removed from Git shows up.
//!
//! Changes in the prediction that the applying manager does not own (per the prediction's
//! `managedFields`) are reverted to their live values unless the resource says
//! `IncludeMutationWebhook=true`: they are what mutating webhooks (and defaulting of fields
//! the manifest does not mention) did, and would otherwise show on every comparison for
//! webhooks that stamp times or ids. Removals are never reverted.

use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::managed::FieldSet;
use super::{CompareOptions, DiffError, ResourceDiff, compare};
use crate::resources::{ApiResolver, ResourceKey, str_at};
use capstan_model::ResourceIgnoreDifferences;

/// The field manager Capstan applies as.
pub const DEFAULT_MANAGER: &str = "capstan";

/// How to run the dry-run apply of [`server_side_diff`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSideOptions {
    /// The field manager of the apply: the one the sync applies as, so that fields it set
    /// before and no longer sets are removed in the prediction.
    pub manager: String,
    /// Take over fields other managers own (the sync applies with force too, so the
    /// prediction matches what a sync would do); without it a conflict is an error.
    pub force: bool,
    /// Overrides the resource's `IncludeMutationWebhook` compare option when set.
    pub include_mutation_webhook: Option<bool>,
}

impl Default for ServerSideOptions {
    fn default() -> Self {
        Self {
            manager: DEFAULT_MANAGER.to_owned(),
            force: true,
            include_mutation_webhook: None,
        }
    }
}

/// Compares `desired` with `live` by a dry-run server-side apply of `desired` (see the
/// [module docs](self)). `live` is the object as the cluster holds it now, `None` when it
/// does not exist (the prediction then is the desired side of a missing resource).
/// `desired` must name its namespace when its kind is namespaced (the caller fills in the
/// Application's destination namespace first).
///
/// The result has the same shape as the client-side diff's, with `server_side` set; Secret
/// values are masked and `ignoreDifferences` applies in all its forms.
///
/// Errors: the kind is not served ([`DiffError::Resolve`]), the server refused the manifest
/// ([`DiffError::DryRunRefused`] with the server's message, e.g. a missing required field or
/// a conflict without `force`), or the request failed ([`DiffError::DryRun`]).
pub async fn server_side_diff(
    resolver: &ApiResolver,
    desired: &Value,
    live: Option<&Value>,
    ignore: &[ResourceIgnoreDifferences],
    options: &ServerSideOptions,
) -> Result<ResourceDiff, DiffError> {
    let compare_options = CompareOptions::of(desired);
    let mut key = ResourceKey::of(desired);
    if key.namespace.is_empty()
        && let Some(l) = live
    {
        key.namespace = str_at(l, &["metadata", "namespace"]).to_owned();
    }
    if key.name.is_empty() {
        return Err(DiffError::InvalidManifest {
            key,
            problem: "metadata.name is missing",
        });
    }
    let kind = resolver
        .resolve(desired)
        .await
        .map_err(|e| DiffError::Resolve(Box::new(e)))?;
    if kind.namespaced && key.namespace.is_empty() {
        return Err(DiffError::InvalidManifest {
            key,
            problem: "the kind is namespaced but metadata.namespace is missing",
        });
    }
    let api = resolver.api(&kind, &key.namespace);
    let mut params = PatchParams::apply(&options.manager).dry_run();
    if options.force {
        params = params.force();
    }
    let predicted = match api.patch(&key.name, &params, &Patch::Apply(desired)).await {
        Ok(obj) => obj,
        Err(kube::Error::Api(status)) => {
            return Err(DiffError::DryRunRefused {
                key,
                code: status.code,
                message: status.message,
            });
        }
        Err(source) => {
            return Err(DiffError::DryRun {
                key,
                source: Box::new(source),
            });
        }
    };
    let mut predicted = serde_json::to_value(predicted).map_err(|source| DiffError::Decode {
        key: key.clone(),
        source,
    })?;
    let include_webhooks = options
        .include_mutation_webhook
        .unwrap_or(compare_options.include_mutation_webhook);
    if !include_webhooks && let Some(live) = live {
        let sets = FieldSet::of_managers(&predicted, |m| m == options.manager)?;
        if sets.is_empty() {
            // An API server that records no managed fields leaves nothing to tell the
            // manager's changes from others': compare the prediction as it is.
            tracing::debug!(resource = %key, "dry-run result has no managed fields for the manager");
        } else {
            let mut owned = FieldSet::union(sets);
            if super::is_secret(desired) {
                owned.alias_field("stringData", "data");
            }
            owned.revert_unowned(&mut predicted, Some(live));
        }
    }
    let mut result = compare(Some(&predicted), live, ignore, false, compare_options)?;
    result.server_side = true;
    Ok(result)
}
