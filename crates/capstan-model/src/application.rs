//! The `Application` kind: what to deploy ([`ApplicationSpec`]), where, and how to sync it.
//!
//! Field names on the wire are Argo CD's `argoproj.io/v1alpha1` names, one to one; Rust
//! names are sometimes clearer (`reference` for `ref`, `repo_url` for `repoURL`).
//! Status and operations live in [`crate::status`].

use crate::meta::{ApiVersion, ObjectMeta};
use crate::source::{ApplicationSource, SourceHydrator};
use crate::status::{ApplicationStatus, Operation};
use crate::util::{is_default, is_false};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize, Serializer};

/// The default project an Application belongs to when `spec.project` is empty.
pub const DEFAULT_PROJECT: &str = "default";
/// Revisions kept in `status.history` when `spec.revisionHistoryLimit` is unset.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i64 = 10;

/// The annotation that asks the controller for a refresh (`normal` or `hard`); the
/// controller removes it once served. Written by the API, the CLI and webhooks.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";
/// Set on an Application (any value) to terminate its running operation (what `capstan app
/// terminate-op` and the API write): the sync starts nothing new, deletes its running hooks
/// and ends `Failed` with "operation terminated"; the controller then removes the annotation.
pub const TERMINATE_ANNOTATION: &str = "capstan.dev/terminate-operation";
/// The finalizer that makes deleting an Application delete its resources first (Argo CD's
/// name; `/background` and `/foreground` suffixes choose the propagation).
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// An Application: a set of manifests from Git, Helm or OCI, deployed to one destination
/// cluster and namespace, kept in sync by Capstan.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "ApplicationRepr")]
pub struct Application {
    /// The API the object was written for; it serialises back the same way.
    pub api_version: ApiVersion,
    /// Name, namespace, labels, annotations, finalizers.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: ApplicationSpec,
    /// The observed state, written by the controller.
    pub status: Option<ApplicationStatus>,
    /// A requested operation (e.g. a sync) waiting for, or being run by, the controller.
    pub operation: Option<Operation>,
}

impl Application {
    /// The `kind` of this object.
    pub const KIND: &'static str = "Application";

    /// A Capstan Application with the given name and spec.
    pub fn new(name: impl Into<String>, spec: ApplicationSpec) -> Self {
        Self {
            api_version: ApiVersion::Capstan,
            metadata: ObjectMeta::named(name),
            spec,
            status: None,
            operation: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApplicationRepr {
    api_version: ApiVersion,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: ApplicationSpec,
    #[serde(default)]
    status: Option<ApplicationStatus>,
    #[serde(default)]
    operation: Option<Operation>,
}

impl TryFrom<ApplicationRepr> for Application {
    type Error = String;

    fn try_from(r: ApplicationRepr) -> Result<Self, String> {
        if r.kind != Application::KIND {
            return Err(format!("expected kind Application, found {:?}", r.kind));
        }
        Ok(Application {
            api_version: r.api_version,
            metadata: r.metadata,
            spec: r.spec,
            status: r.status.filter(|s| !is_default(s)),
            operation: r.operation,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectOut<'a, S: Serialize, T: Serialize, O: Serialize> {
    api_version: ApiVersion,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    spec: &'a S,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<&'a O>,
}

/// Serialises a top-level object in Kubernetes order: apiVersion, kind, metadata, spec,
/// status, operation.
pub(crate) fn serialize_object<S, Sp, St, Op>(
    serializer: S,
    api_version: ApiVersion,
    kind: &'static str,
    metadata: &ObjectMeta,
    spec: &Sp,
    status: Option<&St>,
    operation: Option<&Op>,
) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    Sp: Serialize,
    St: Serialize + Default + PartialEq,
    Op: Serialize,
{
    ObjectOut {
        api_version,
        kind,
        metadata,
        spec,
        status: status.filter(|s| !is_default(*s)),
        operation,
    }
    .serialize(serializer)
}

impl Serialize for Application {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_object(
            serializer,
            self.api_version,
            Self::KIND,
            &self.metadata,
            &self.spec,
            self.status.as_ref(),
            self.operation.as_ref(),
        )
    }
}

/// The desired state of an Application (`spec:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// The single source of manifests. Use this or `sources`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    /// Several sources whose manifests are combined. Use this or `source`, not both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// The cluster and namespace to deploy to.
    #[serde(default)]
    pub destination: ApplicationDestination,
    /// The AppProject the Application belongs to; empty means `default`.
    #[serde(default)]
    pub project: String,
    /// When and how to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
    /// Fields of live resources to leave out of the comparison.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<ResourceIgnoreDifferences>,
    /// Free-form name/value items shown with the Application (links, contacts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
    /// How many entries to keep in `status.history` (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    /// Render manifests from a dry source into a branch, then sync that branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hydrator: Option<SourceHydrator>,
}

impl ApplicationSpec {
    /// The project name, with the empty string read as `default`.
    pub fn project_or_default(&self) -> &str {
        if self.project.is_empty() {
            DEFAULT_PROJECT
        } else {
            &self.project
        }
    }

    /// Whether the Application uses `sources` (several sources).
    pub fn has_multiple_sources(&self) -> bool {
        self.source_hydrator.is_none() && !self.sources.is_empty()
    }

    /// The sources in effect: `sources` if set, else `source`, else none.
    pub fn effective_sources(&self) -> Vec<&ApplicationSource> {
        if !self.sources.is_empty() {
            self.sources.iter().collect()
        } else {
            self.source.iter().collect()
        }
    }

    /// The effective history limit (`revisionHistoryLimit`, default 10).
    pub fn revision_history_limit_or_default(&self) -> i64 {
        self.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
    }
}

/// Where an Application deploys: a cluster (by API server URL or by name) and a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationDestination {
    /// The cluster's API server URL, e.g. `https://kubernetes.default.svc`. Set this or
    /// `name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// The namespace for namespaced resources that do not set one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The cluster's name as registered in Capstan. Set this or `server`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// When and how an Application is synced (`syncPolicy:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync automatically when Git changes (and, with `selfHeal`, when the cluster drifts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<SyncPolicyAutomated>,
    /// Options for every sync, e.g. `CreateNamespace=true`, `ServerSideApply=true`.
    #[serde(default, skip_serializing_if = "SyncOptions::is_empty")]
    pub sync_options: SyncOptions,
    /// Retry failed syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStrategy>,
    /// Labels and annotations for the namespace created by `CreateNamespace=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_namespace_metadata: Option<ManagedNamespaceMetadata>,
}

impl SyncPolicy {
    /// Whether automated sync is on (`automated` present and `enabled` not false).
    pub fn is_automated(&self) -> bool {
        self.automated
            .as_ref()
            .is_some_and(|a| a.enabled != Some(false))
    }
}

/// Automated sync settings (`syncPolicy.automated`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncPolicyAutomated {
    /// Delete resources that are no longer in the source.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prune: bool,
    /// Re-sync when live resources drift from the source.
    #[serde(default, skip_serializing_if = "is_false")]
    pub self_heal: bool,
    /// Allow a sync that would leave the Application with no resources.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_empty: bool,
    /// Turn automated sync off without removing these settings (`false`); unset means on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Retries of a failed sync (`retry:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryStrategy {
    /// Maximum number of retries; 0 means none, a negative number means no limit.
    #[serde(default, skip_serializing_if = "crate::util::is_zero")]
    pub limit: i64,
    /// Delay between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// Exponential backoff between retries (`retry.backoff`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backoff {
    /// First delay: a Go duration (`5s`, `2m`, `1h30m`) or a number of seconds. Default 5s.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub duration: String,
    /// Multiplier applied after each retry. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<i64>,
    /// Longest delay. Default 3m.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_duration: String,
}

/// Metadata for a namespace Capstan creates (`syncPolicy.managedNamespaceMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedNamespaceMetadata {
    /// Labels set on the namespace.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// Annotations set on the namespace.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
}

/// Sync options as written (`Key=value` strings); see [`crate::validate::sync_option`] for
/// the accepted keys and values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SyncOptions(pub Vec<String>);

impl SyncOptions {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `option` (e.g. `CreateNamespace=true`) is set exactly.
    pub fn has(&self, option: &str) -> bool {
        self.0.iter().any(|o| o == option)
    }

    /// The value of option `key` (`CreateNamespace=true` → `Some("true")`), if set.
    pub fn value_of(&self, key: &str) -> Option<&str> {
        self.0.iter().find_map(|o| {
            let (k, v) = o.split_once('=')?;
            (k.trim() == key).then(|| v.trim())
        })
    }

    /// Adds an option unless it is already set.
    pub fn add(&mut self, option: impl Into<String>) {
        let option = option.into();
        if !self.has(&option) {
            self.0.push(option);
        }
    }
}

impl From<Vec<String>> for SyncOptions {
    fn from(options: Vec<String>) -> Self {
        Self(options)
    }
}

/// Which fields of which resources to ignore when comparing (`ignoreDifferences[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceIgnoreDifferences {
    /// API group of the resources (empty for the core group).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Kind of the resources.
    #[serde(default)]
    pub kind: String,
    /// Only the resource with this name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Only resources in this namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// RFC 6901 JSON pointers of fields to ignore, e.g. `/spec/replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// jq path expressions of fields to ignore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jq_path_expressions: Vec<String>,
    /// Field managers whose changes are ignored (e.g. `kube-controller-manager`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields_managers: Vec<String>,
}

/// A free-form name/value item (`info[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Info {
    /// Title.
    #[serde(default)]
    pub name: String,
    /// Content (text or URL).
    #[serde(default)]
    pub value: String,
}
