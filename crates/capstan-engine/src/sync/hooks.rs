//! Hooks and waves as manifests declare them: Argo CD's annotations, and Helm's hook
//! annotations mapped onto them the way Argo CD maps them (so a chart's migration Job runs
//! as a PreSync hook without edits).

use capstan_model::HookType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::resources::annotation;

/// `argocd.argoproj.io/hook`: the phases a hook runs in (comma-separated).
pub const ANNOTATION_HOOK: &str = "argocd.argoproj.io/hook";
/// `argocd.argoproj.io/hook-delete-policy`.
pub const ANNOTATION_HOOK_DELETE_POLICY: &str = "argocd.argoproj.io/hook-delete-policy";
/// `argocd.argoproj.io/sync-wave`: an integer, lower waves first.
pub const ANNOTATION_SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";
/// Helm's hook annotation.
pub const ANNOTATION_HELM_HOOK: &str = "helm.sh/hook";
/// Helm's hook weight, read as the wave.
pub const ANNOTATION_HELM_HOOK_WEIGHT: &str = "helm.sh/hook-weight";
/// Helm's hook delete policy.
pub const ANNOTATION_HELM_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

/// When a hook object is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeletePolicy {
    /// After the hook succeeded.
    HookSucceeded,
    /// After the hook failed.
    HookFailed,
    /// Before a new one is created (the default when none is given).
    BeforeHookCreation,
}

/// How a manifest takes part in a sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookSpec {
    /// The phases it runs in as a hook; empty for an ordinary resource.
    pub types: Vec<HookType>,
    /// Its delete policies (only meaningful for hooks).
    pub delete_policies: Vec<DeletePolicy>,
}

impl HookSpec {
    /// Reads the hook annotations of `obj`. Argo CD's annotation wins over Helm's.
    pub fn of(obj: &Value) -> Self {
        let types = if let Some(list) = annotation(obj, ANNOTATION_HOOK) {
            list.split(',')
                .filter_map(|t| argo_hook(t.trim()))
                .collect()
        } else if let Some(list) = annotation(obj, ANNOTATION_HELM_HOOK) {
            let mut types: Vec<HookType> = Vec::new();
            for t in list.split(',').filter_map(|t| helm_hook(t.trim())) {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
            types
        } else {
            Vec::new()
        };
        let mut delete_policies: Vec<DeletePolicy> = Vec::new();
        let policies = annotation(obj, ANNOTATION_HOOK_DELETE_POLICY)
            .map(|l| (l, false))
            .or_else(|| annotation(obj, ANNOTATION_HELM_DELETE_POLICY).map(|l| (l, true)));
        if let Some((list, helm)) = policies {
            for p in list.split(',').map(str::trim) {
                let policy = if helm { helm_policy(p) } else { argo_policy(p) };
                if let Some(p) = policy.filter(|p| !delete_policies.contains(p)) {
                    delete_policies.push(p);
                }
            }
        }
        if delete_policies.is_empty() {
            delete_policies.push(DeletePolicy::BeforeHookCreation);
        }
        Self {
            types,
            delete_policies,
        }
    }

    /// Whether the manifest is a hook (it is never applied as an ordinary resource).
    pub fn is_hook(&self) -> bool {
        !self.types.is_empty()
    }

    /// Whether the manifest is marked `Skip`: neither applied nor run.
    pub fn is_skipped(&self) -> bool {
        self.types.contains(&HookType::Skip)
    }

    /// Whether it is deleted under `policy`.
    pub fn deletes_on(&self, policy: DeletePolicy) -> bool {
        self.delete_policies.contains(&policy)
    }
}

fn argo_hook(name: &str) -> Option<HookType> {
    Some(match name {
        "PreSync" => HookType::PreSync,
        "Sync" => HookType::Sync,
        "PostSync" => HookType::PostSync,
        "SyncFail" => HookType::SyncFail,
        "Skip" => HookType::Skip,
        "PreDelete" => HookType::PreDelete,
        "PostDelete" => HookType::PostDelete,
        _ => return None,
    })
}

/// Helm's hook names onto Argo CD's phases; `test*` and `pre-rollback`-like hooks have no
/// counterpart in a GitOps sync and are skipped (Argo CD does the same).
fn helm_hook(name: &str) -> Option<HookType> {
    Some(match name {
        "pre-install" | "pre-upgrade" => HookType::PreSync,
        "post-install" | "post-upgrade" => HookType::PostSync,
        "pre-delete" => HookType::PreDelete,
        "post-delete" => HookType::PostDelete,
        "crd-install" => return None,
        _ => HookType::Skip,
    })
}

fn argo_policy(name: &str) -> Option<DeletePolicy> {
    Some(match name {
        "HookSucceeded" => DeletePolicy::HookSucceeded,
        "HookFailed" => DeletePolicy::HookFailed,
        "BeforeHookCreation" => DeletePolicy::BeforeHookCreation,
        _ => return None,
    })
}

fn helm_policy(name: &str) -> Option<DeletePolicy> {
    Some(match name {
        "hook-succeeded" => DeletePolicy::HookSucceeded,
        "hook-failed" => DeletePolicy::HookFailed,
        "before-hook-creation" => DeletePolicy::BeforeHookCreation,
        _ => return None,
    })
}

/// The wave of a manifest: `argocd.argoproj.io/sync-wave`, else Helm's hook weight, else 0.
/// An unreadable value is an error so that a typo does not silently reorder a rollout.
pub fn wave_of(obj: &Value) -> Result<i64, String> {
    let (key, raw) = match annotation(obj, ANNOTATION_SYNC_WAVE) {
        Some(v) => (ANNOTATION_SYNC_WAVE, v),
        None => match annotation(obj, ANNOTATION_HELM_HOOK_WEIGHT) {
            Some(v) => (ANNOTATION_HELM_HOOK_WEIGHT, v),
            None => return Ok(0),
        },
    };
    raw.trim()
        .parse()
        .map_err(|_| format!("annotation {key}: {raw:?} is not an integer wave"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(annotations: Value) -> Value {
        json!({"metadata": {"annotations": annotations}})
    }

    #[test]
    fn argo_hooks_list_phases_and_policies() {
        let h = HookSpec::of(&with(json!({
            ANNOTATION_HOOK: "PreSync, PostSync",
            ANNOTATION_HOOK_DELETE_POLICY: "HookSucceeded,HookFailed"})));
        assert_eq!(h.types, vec![HookType::PreSync, HookType::PostSync]);
        assert!(h.deletes_on(DeletePolicy::HookSucceeded));
        assert!(!h.deletes_on(DeletePolicy::BeforeHookCreation));
        assert!(h.is_hook() && !h.is_skipped());
    }

    #[test]
    fn before_hook_creation_is_the_default_policy() {
        let h = HookSpec::of(&with(json!({ANNOTATION_HOOK: "Sync"})));
        assert_eq!(h.delete_policies, vec![DeletePolicy::BeforeHookCreation]);
        assert!(!HookSpec::of(&json!({})).is_hook());
    }

    #[test]
    fn helm_hooks_map_onto_phases_and_argo_wins() {
        let h = HookSpec::of(&with(json!({
            ANNOTATION_HELM_HOOK: "pre-install,pre-upgrade,post-install",
            ANNOTATION_HELM_DELETE_POLICY: "hook-succeeded",
            ANNOTATION_HELM_HOOK_WEIGHT: "-5"})));
        assert_eq!(h.types, vec![HookType::PreSync, HookType::PostSync]);
        assert_eq!(h.delete_policies, vec![DeletePolicy::HookSucceeded]);
        assert!(HookSpec::of(&with(json!({ANNOTATION_HELM_HOOK: "test"}))).is_skipped());
        let both = HookSpec::of(&with(json!({
            ANNOTATION_HOOK: "Sync", ANNOTATION_HELM_HOOK: "pre-install"})));
        assert_eq!(both.types, vec![HookType::Sync]);
    }

    #[test]
    fn waves_come_from_the_annotation_or_the_helm_weight() {
        assert_eq!(wave_of(&with(json!({ANNOTATION_SYNC_WAVE: "-2"}))), Ok(-2));
        assert_eq!(
            wave_of(&with(json!({ANNOTATION_HELM_HOOK_WEIGHT: "7"}))),
            Ok(7)
        );
        assert_eq!(wave_of(&json!({})), Ok(0));
        let err = wave_of(&with(json!({ANNOTATION_SYNC_WAVE: "first"})));
        assert!(err.is_err_and(|e| e.contains("not an integer")));
    }
}
