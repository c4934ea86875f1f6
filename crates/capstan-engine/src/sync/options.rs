//! Sync options: the Application's (`syncPolicy.syncOptions`), the operation's, and each
//! resource's own `argocd.argoproj.io/sync-options` annotation, read into one struct per
//! resource. A resource's annotation wins over the Application's setting for that resource.

use capstan_model::SyncOptions;
use serde_json::Value;

use crate::resources::annotation;

/// Per-resource sync options (comma-separated, Argo CD's names).
pub const ANNOTATION_SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";

/// How a pruned object's dependents are deleted (`PrunePropagationPolicy=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Propagation {
    /// Dependents first, then the object (Argo CD's default).
    #[default]
    Foreground,
    /// The object at once, dependents by the garbage collector.
    Background,
    /// The object only; dependents are left behind.
    Orphan,
}

impl Propagation {
    /// The Kubernetes name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Foreground => "Foreground",
            Self::Background => "Background",
            Self::Orphan => "Orphan",
        }
    }
}

/// What a prune (or delete) may do to a resource (`Prune=` / `Delete=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Removal {
    /// Removed as usual.
    #[default]
    Allowed,
    /// Never removed (`Prune=false`).
    Never,
    /// Only after a person confirms (`Prune=confirm`); Capstan reports it as skipped.
    NeedsConfirmation,
}

/// The sync options in force for one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceOptions {
    /// `Prune=false|confirm`.
    pub prune: Removal,
    /// `Delete=false|confirm` (when the Application is deleted).
    pub delete: Removal,
    /// `PruneLast=true`: pruned after everything else is applied and healthy.
    pub prune_last: bool,
    /// `Replace=true`: replace (PUT, or create) instead of server-side apply.
    pub replace: bool,
    /// `Force=true` (with Replace): delete and re-create when the object cannot be replaced.
    pub force: bool,
    /// `Validate=false`: the server ignores unknown or duplicate fields.
    pub skip_validation: bool,
    /// `SkipDryRunOnMissingResource=true`: no dry run when the kind is not served yet.
    pub skip_dry_run_on_missing: bool,
    /// Take the fields other managers own when they conflict (on unless
    /// `ForceConflicts=false`): Git is the source of truth, as with Argo CD's
    /// `ServerSideApply=true`, which always forces conflicts.
    pub force_conflicts: bool,
}

impl Default for ResourceOptions {
    fn default() -> Self {
        Self {
            prune: Removal::Allowed,
            delete: Removal::Allowed,
            prune_last: false,
            replace: false,
            force: false,
            skip_validation: false,
            skip_dry_run_on_missing: false,
            force_conflicts: true,
        }
    }
}

impl ResourceOptions {
    /// The options for `obj`: the Application's `app` options, overridden by the object's own
    /// annotation.
    pub fn of(app: &SyncOptions, obj: &Value) -> Self {
        let mut options = Self::default();
        options.read(app.0.iter().map(String::as_str));
        if let Some(own) = annotation(obj, ANNOTATION_SYNC_OPTIONS) {
            options.read(own.split(','));
        }
        options
    }

    fn read<'a>(&mut self, items: impl Iterator<Item = &'a str>) {
        for item in items {
            let Some((key, value)) = item.trim().split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let on = value.eq_ignore_ascii_case("true");
            match key {
                "Prune" => self.prune = removal(value),
                "Delete" => self.delete = removal(value),
                "PruneLast" => self.prune_last = on,
                "Replace" => self.replace = on,
                "Force" => self.force = on,
                "Validate" => self.skip_validation = value.eq_ignore_ascii_case("false"),
                "SkipDryRunOnMissingResource" => self.skip_dry_run_on_missing = on,
                "ForceConflicts" => self.force_conflicts = !value.eq_ignore_ascii_case("false"),
                _ => {}
            }
        }
    }
}

fn removal(value: &str) -> Removal {
    if value.eq_ignore_ascii_case("false") {
        Removal::Never
    } else if value.eq_ignore_ascii_case("confirm") {
        Removal::NeedsConfirmation
    } else {
        Removal::Allowed
    }
}

/// The options that apply to the whole operation (Application plus operation options).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperationOptions {
    /// `CreateNamespace=true`: create the destination namespace first.
    pub create_namespace: bool,
    /// `ApplyOutOfSyncOnly=true`: skip resources that are already in sync.
    pub apply_out_of_sync_only: bool,
    /// `FailOnSharedResource=true`: fail when a resource belongs to another Application.
    pub fail_on_shared_resource: bool,
    /// `PrunePropagationPolicy=`.
    pub propagation: Propagation,
    /// `PruneLast=true` at Application level.
    pub prune_last: bool,
}

impl OperationOptions {
    /// Reads the operation-wide options.
    pub fn of(options: &SyncOptions) -> Self {
        let on = |key: &str| {
            options
                .value_of(key)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        let propagation = match options
            .value_of("PrunePropagationPolicy")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("background") => Propagation::Background,
            Some("orphan") => Propagation::Orphan,
            _ => Propagation::Foreground,
        };
        Self {
            create_namespace: on("CreateNamespace"),
            apply_out_of_sync_only: on("ApplyOutOfSyncOnly"),
            fail_on_shared_resource: on("FailOnSharedResource"),
            propagation,
            prune_last: on("PruneLast"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(list: &[&str]) -> SyncOptions {
        SyncOptions(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn the_resource_annotation_overrides_the_application() {
        let app = opts(&["Validate=false", "Replace=true", "PruneLast=true"]);
        let obj = json!({"metadata": {"annotations": {
            ANNOTATION_SYNC_OPTIONS: "Replace=false, Prune=false,Delete=confirm"}}});
        let o = ResourceOptions::of(&app, &obj);
        assert!(o.skip_validation);
        assert!(!o.replace, "the annotation turned Replace off");
        assert!(o.prune_last);
        assert_eq!(o.prune, Removal::Never);
        assert_eq!(o.delete, Removal::NeedsConfirmation);
        assert_eq!(
            ResourceOptions::of(&opts(&[]), &json!({})),
            ResourceOptions::default()
        );
    }

    #[test]
    fn operation_options_read_namespace_and_propagation() {
        let o = OperationOptions::of(&opts(&[
            "CreateNamespace=true",
            "PrunePropagationPolicy=orphan",
            "ApplyOutOfSyncOnly=true",
        ]));
        assert!(o.create_namespace && o.apply_out_of_sync_only && !o.fail_on_shared_resource);
        assert_eq!(o.propagation, Propagation::Orphan);
        assert_eq!(
            OperationOptions::of(&opts(&[])).propagation,
            Propagation::Foreground
        );
    }
}
