//! The `argocd.argoproj.io/compare-options` annotation: per-resource switches of the
//! comparison, comma-separated, e.g. `IgnoreExtraneous` or
//! `ServerSideDiff=true,IncludeMutationWebhook=true`.

use serde::Serialize;
use serde_json::Value;

use crate::resources::annotation;

/// The annotation holding a resource's compare options.
pub const COMPARE_OPTIONS: &str = "argocd.argoproj.io/compare-options";

/// A resource's compare options, parsed from [`COMPARE_OPTIONS`]. Unknown options are
/// ignored (they may belong to a newer version); `false`/absent is the default of each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompareOptions {
    /// `IgnoreExtraneous`: the resource being extraneous or out of sync does not make the
    /// Application OutOfSync (its health still counts).
    pub ignore_extraneous: bool,
    /// `ServerSideDiff=true|false`: overrides the Application's (or the system's) choice of
    /// diff mode for this resource; `None` when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_side_diff: Option<bool>,
    /// `IncludeMutationWebhook=true`: in server-side diff, changes made by mutating
    /// webhooks (and defaulting of fields the manifest does not set) count as differences.
    pub include_mutation_webhook: bool,
}

impl CompareOptions {
    /// The options of `obj` (a manifest or a live object); all defaults when unannotated.
    pub fn of(obj: &Value) -> Self {
        annotation(obj, COMPARE_OPTIONS).map_or_else(Self::default, Self::parse)
    }

    /// Parses an annotation value. Names are matched as Argo CD writes them, values of
    /// `=true`/`=false` case-insensitively; a bare name means `true`.
    pub fn parse(value: &str) -> Self {
        let mut opts = Self::default();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, flag) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), v.trim().eq_ignore_ascii_case("true")),
                None => (item, true),
            };
            match name {
                "IgnoreExtraneous" => opts.ignore_extraneous = flag,
                "ServerSideDiff" => opts.server_side_diff = Some(flag),
                "IncludeMutationWebhook" => opts.include_mutation_webhook = flag,
                _ => {}
            }
        }
        opts
    }

    /// Whether to use the server-side diff for this resource, given the Application's (or
    /// the system's) default.
    pub fn use_server_side_diff(&self, default: bool) -> bool {
        self.server_side_diff.unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_argo_cd_spellings() {
        assert_eq!(CompareOptions::parse(""), CompareOptions::default());
        let o = CompareOptions::parse("IgnoreExtraneous");
        assert!(o.ignore_extraneous && o.server_side_diff.is_none());
        let o = CompareOptions::parse(" ServerSideDiff=true , IncludeMutationWebhook=true,");
        assert_eq!(o.server_side_diff, Some(true));
        assert!(o.include_mutation_webhook && !o.ignore_extraneous);
        let o = CompareOptions::parse("ServerSideDiff=false,Unknown=1");
        assert_eq!(o.server_side_diff, Some(false));
        assert!(!o.use_server_side_diff(true));
        assert!(CompareOptions::default().use_server_side_diff(true));
        let o = CompareOptions::parse("IncludeMutationWebhook=TRUE,IgnoreExtraneous=false");
        assert!(o.include_mutation_webhook && !o.ignore_extraneous);
    }

    #[test]
    fn read_from_the_annotation() {
        let obj = json!({"metadata": {"annotations": {COMPARE_OPTIONS: "IgnoreExtraneous"}}});
        assert!(CompareOptions::of(&obj).ignore_extraneous);
        assert_eq!(
            CompareOptions::of(&json!({"metadata": {}})),
            CompareOptions::default()
        );
    }
}
