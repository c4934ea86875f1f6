//! Resource health: is a live Kubernetes object working, still getting there, or broken?
//!
//! The engine judges every live object it manages and rolls the verdicts up into an
//! Application's health, with Argo CD's statuses, messages and rules:
//!
//! - [`HealthAssessor::assess`] judges one object: an object being deleted is Progressing
//!   ("Pending deletion"); a configured custom Lua check ([`lua`], [`config`]) overrides the
//!   built-in one ([`builtin`]); a kind with neither has no health (`None`).
//! - [`HealthAssessor::app_health`] judges an Application from its managed resources, and
//!   [`is_worse`] is the order the worst status wins by.
//!
//! Start with [`HealthAssessor`]; the user-facing description is `docs/health.md`.

pub mod builtin;
pub mod config;
pub mod lua;

pub use capstan_model::HealthStatusCode;
pub use config::{
    GroupKindPattern, HealthConfig, HealthConfigError, HealthCustomization, LuaLimits,
};
pub use lua::LuaCheckError;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::resources::annotation;
use crate::sync::hooks::HookSpec;

/// The health of one object: a status and a human-readable reason (often empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthVerdict {
    /// The health status.
    pub status: HealthStatusCode,
    /// Why; empty when there is nothing to add.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl HealthVerdict {
    /// A verdict with a status and message.
    pub fn new(status: HealthStatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Whether `new` is a worse health than `current`, in Argo CD's order:
/// Healthy < Suspended < Progressing < Missing < Degraded < Unknown.
pub fn is_worse(current: HealthStatusCode, new: HealthStatusCode) -> bool {
    new.severity() > current.severity()
}

/// The annotation that keeps a resource's health out of its Application's health.
pub const ANNOTATION_IGNORE_HEALTHCHECK: &str = "argocd.argoproj.io/ignore-healthcheck";
/// The finalizer Argo CD puts on hooks; a hook being deleted still reports its own health.
pub const HOOK_FINALIZER: &str = "argocd.argoproj.io/hook-finalizer";

/// The API group of an object (`apps` for `apps/v1`, empty for `v1`).
pub fn api_group(obj: &Value) -> &str {
    crate::resources::group_of(obj)
}

/// The kind of an object (`Deployment`).
pub fn kind(obj: &Value) -> &str {
    crate::resources::str_at(obj, &["kind"])
}

fn has_finalizer(obj: &Value, name: &str) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|f| f.as_str() == Some(name)))
}

fn is_being_deleted(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
}

/// Whether an object is a sync hook (Argo CD or Helm hook annotation); hooks do not count
/// towards an Application's health.
pub fn is_hook(obj: &Value) -> bool {
    HookSpec::of(obj).is_hook()
}

fn is_skip_hook(obj: &Value) -> bool {
    HookSpec::of(obj).is_skipped()
}

/// Judges the health of live objects: built-in checks plus the configured Lua checks.
///
/// ```
/// use capstan_engine::{HealthAssessor, HealthConfig, HealthStatusCode};
/// use serde_json::json;
///
/// let config = HealthConfig::from_yaml_str(r#"
/// resource.customizations.health.example.com_Widget: |
///   if obj.status ~= nil and obj.status.ready then
///     return {status = "Healthy"}
///   end
///   return {status = "Progressing", message = "Waiting for the widget"}
/// "#)?;
/// let assessor = HealthAssessor::new(&config)?;
///
/// let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {"ready": true}});
/// assert_eq!(assessor.assess(&widget).map(|v| v.status), Some(HealthStatusCode::Healthy));
///
/// let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}});
/// assert_eq!(assessor.assess(&pvc).map(|v| v.status), Some(HealthStatusCode::Progressing));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Safe to share between threads (`Send + Sync`): Lua checks keep a small pool of
/// interpreters each, and an evaluation takes one for itself (see [`lua`]).
#[derive(Debug)]
pub struct HealthAssessor {
    custom: Vec<lua::LuaCheck>,
}

impl Default for HealthAssessor {
    fn default() -> Self {
        Self::builtin_only()
    }
}

impl HealthAssessor {
    /// An assessor with the built-in checks only.
    pub fn builtin_only() -> Self {
        Self { custom: Vec::new() }
    }

    /// An assessor with the built-in checks and the custom checks of `config`. Every script
    /// is compiled here; all that fail are reported together.
    pub fn new(config: &HealthConfig) -> Result<Self, HealthConfigError> {
        let mut custom = Vec::new();
        let mut problems = Vec::new();
        for customization in &config.customizations {
            match lua::LuaCheck::compile(customization, &config.limits) {
                Ok(check) => custom.push(check),
                Err(err) => problems.push(err),
            }
        }
        if !problems.is_empty() {
            return Err(HealthConfigError::Compile(problems));
        }
        Ok(Self { custom })
    }

    /// The custom check that applies to a group and kind: an exact pattern first, then the
    /// most specific wildcard pattern (most literal characters; ties go to the earlier
    /// pattern in sorted order).
    fn custom_check(&self, group: &str, kind: &str) -> Option<&lua::LuaCheck> {
        let key = config::group_kind_key(group, kind);
        if let Some(exact) = self.custom.iter().find(|c| c.pattern().as_str() == key) {
            return Some(exact);
        }
        self.custom
            .iter()
            .filter(|c| c.pattern().matches(&key))
            .max_by(|a, b| {
                a.pattern()
                    .literal_len()
                    .cmp(&b.pattern().literal_len())
                    .then_with(|| b.pattern().as_str().cmp(a.pattern().as_str()))
            })
    }

    /// Whether objects of this group and kind have a health check (custom or built-in).
    pub fn has_check(&self, group: &str, kind: &str) -> bool {
        self.custom_check(group, kind).is_some() || builtin::builtin_check(group, kind).is_some()
    }

    /// The health of one live object, or `None` when its kind has no health check.
    ///
    /// Never panics and never blocks for long: a failing custom check gives an `Unknown`
    /// verdict whose message names the check and what went wrong.
    pub fn assess(&self, obj: &Value) -> Option<HealthVerdict> {
        if is_being_deleted(obj) && !has_finalizer(obj, HOOK_FINALIZER) {
            return Some(HealthVerdict::new(
                HealthStatusCode::Progressing,
                "Pending deletion",
            ));
        }
        let (group, kind) = (api_group(obj), kind(obj));
        if let Some(check) = self.custom_check(group, kind) {
            return Some(match check.evaluate(obj) {
                Ok(verdict) => verdict,
                Err(err) => {
                    tracing::debug!(check = %check.pattern(), error = %err, "lua health check failed");
                    HealthVerdict::new(HealthStatusCode::Unknown, err.to_string())
                }
            });
        }
        builtin::builtin_check(group, kind).map(|check| check(obj))
    }

    /// The health of an Application from its managed resources, with each resource's own
    /// verdict, following Argo CD's rules:
    ///
    /// - resources whose desired manifest is a `Skip` hook, live hooks, and live objects
    ///   annotated `argocd.argoproj.io/ignore-healthcheck: "true"` are left out (no verdict);
    /// - a resource that is not live is `Missing`, but does not make the Application Missing
    ///   (its sync status already says so) unless no resource is live at all;
    /// - a resource without a health check has no verdict and does not count;
    /// - a child Application that is Missing or Unknown does not count;
    /// - otherwise the worst status wins ([`is_worse`]).
    pub fn app_health(&self, resources: &[AppResource<'_>]) -> AppHealth {
        let mut status = HealthStatusCode::Healthy;
        let mut verdicts = Vec::with_capacity(resources.len());
        let mut contains_resources = false;
        let mut contains_live = false;
        for res in resources {
            if res.target.is_some_and(is_skip_hook) || res.live.is_some_and(is_hook) {
                verdicts.push(None);
                continue;
            }
            contains_resources = true;
            let Some(live) = res.live else {
                verdicts.push(Some(HealthVerdict::new(HealthStatusCode::Missing, "")));
                continue;
            };
            contains_live = true;
            if annotation(live, ANNOTATION_IGNORE_HEALTHCHECK) == Some("true") {
                verdicts.push(None);
                continue;
            }
            let verdict = self.assess(live);
            if let Some(v) = &verdict {
                let child_app = res.group == "argoproj.io" && res.kind == "Application";
                let ignored = child_app
                    && matches!(
                        v.status,
                        HealthStatusCode::Missing | HealthStatusCode::Unknown
                    );
                if !ignored && is_worse(status, v.status) {
                    status = v.status;
                }
            }
            verdicts.push(verdict);
        }
        if contains_resources && !contains_live && is_worse(status, HealthStatusCode::Missing) {
            status = HealthStatusCode::Missing;
        }
        AppHealth {
            status,
            resources: verdicts,
        }
    }
}

/// One resource an Application manages: its desired manifest and its live object, either of
/// which may be absent.
#[derive(Debug, Clone, Copy)]
pub struct AppResource<'a> {
    /// API group (empty for the core group).
    pub group: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// The desired manifest, if the resource is in the source.
    pub target: Option<&'a Value>,
    /// The live object, if it exists in the cluster.
    pub live: Option<&'a Value>,
}

/// An Application's health and the verdict of each resource (in input order; `None` where a
/// resource has no health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHealth {
    /// The aggregated status.
    pub status: HealthStatusCode,
    /// Per-resource verdicts, in the order the resources were given.
    pub resources: Vec<Option<HealthVerdict>>,
}

#[cfg(test)]
mod tests;
