//! The `AppProject` kind: a group of Applications with shared guard rails — which
//! repositories and destinations they may use, which resource kinds they may create, who may
//! do what (roles), and when they may sync (sync windows).

use crate::application::{ApplicationDestination, serialize_object};
use crate::meta::{ApiVersion, ObjectMeta};
use crate::util::{is_default, is_false, is_zero, string_enum};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize, Serializer};

/// An AppProject.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "AppProjectRepr")]
pub struct AppProject {
    /// The API the object was written for; it serialises back the same way.
    pub api_version: ApiVersion,
    /// Name, namespace, labels, annotations, finalizers.
    pub metadata: ObjectMeta,
    /// The project's rules.
    pub spec: AppProjectSpec,
    /// Observed state (issued tokens).
    pub status: Option<AppProjectStatus>,
}

impl AppProject {
    /// The `kind` of this object.
    pub const KIND: &'static str = "AppProject";

    /// A Capstan AppProject with the given name and spec.
    pub fn new(name: impl Into<String>, spec: AppProjectSpec) -> Self {
        Self {
            api_version: ApiVersion::Capstan,
            metadata: ObjectMeta::named(name),
            spec,
            status: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AppProjectRepr {
    api_version: ApiVersion,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: AppProjectSpec,
    #[serde(default)]
    status: Option<AppProjectStatus>,
}

impl TryFrom<AppProjectRepr> for AppProject {
    type Error = String;

    fn try_from(r: AppProjectRepr) -> Result<Self, String> {
        if r.kind != AppProject::KIND {
            return Err(format!("expected kind AppProject, found {:?}", r.kind));
        }
        Ok(AppProject {
            api_version: r.api_version,
            metadata: r.metadata,
            spec: r.spec,
            status: r.status.filter(|s| !is_default(s)),
        })
    }
}

impl Serialize for AppProject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_object::<_, _, _, ()>(
            serializer,
            self.api_version,
            Self::KIND,
            &self.metadata,
            &self.spec,
            self.status.as_ref(),
            None,
        )
    }
}

/// The rules of a project (`spec:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppProjectSpec {
    /// Repository URLs (globs; `!` negates) the project's Applications may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_repos: Vec<String>,
    /// Clusters and namespaces (globs; `!` negates) the Applications may deploy to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<ApplicationDestination>,
    /// What the project is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Roles with policies, bound to SSO groups or used by tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<ProjectRole>,
    /// Cluster-scoped kinds the Applications may create (none when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_resource_whitelist: Vec<GroupKind>,
    /// Namespaced kinds the Applications may not create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_resource_blacklist: Vec<GroupKind>,
    /// Whether to report resources in the destination namespaces that no Application
    /// manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned_resources: Option<OrphanedResourcesMonitorSettings>,
    /// When syncs may and may not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_windows: Vec<SyncWindow>,
    /// Namespaced kinds the Applications may create. Unset allows every kind; an empty
    /// list allows none (so the distinction is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_resource_whitelist: Option<Vec<GroupKind>>,
    /// GPG keys commits must be signed with to be synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signature_keys: Vec<SignatureKey>,
    /// Cluster-scoped kinds the Applications may not create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_resource_blacklist: Vec<GroupKind>,
    /// Namespaces (globs) whose Applications may use this project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_namespaces: Vec<String>,
    /// Only clusters assigned to this project may be destinations.
    #[serde(default, skip_serializing_if = "is_false")]
    pub permit_only_project_scoped_clusters: bool,
    /// Service accounts to impersonate when syncing to each destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_service_accounts: Vec<DestinationServiceAccount>,
}

/// An API group and kind (globs allowed), e.g. `{group: "*", kind: Namespace}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupKind {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// A role in a project (`roles[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectRole {
    /// Role name, unique in the project.
    #[serde(default)]
    pub name: String,
    /// What the role is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Casbin policy lines: `p, proj:<project>:<role>, <resource>, <action>, <object>,
    /// allow|deny`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Tokens issued for this role (older Argo CD versions kept them here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_tokens: Vec<JwtToken>,
    /// SSO groups bound to this role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A token issued for a project role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtToken {
    /// Issued at (Unix seconds).
    #[serde(rename = "iat", default)]
    pub issued_at: i64,
    /// Expires at (Unix seconds); 0 means never.
    #[serde(rename = "exp", default, skip_serializing_if = "is_zero")]
    pub expires_at: i64,
    /// Token id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

string_enum! {
    /// Whether a sync window allows or blocks syncs.
    pub enum SyncWindowKind {
        /// Syncs may run only while an allow window is open.
        Allow = "allow",
        /// Syncs may not run while the window is open.
        Deny = "deny",
    }
}

/// A recurring time window in which syncs are allowed or denied (`syncWindows[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncWindow {
    /// `allow` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SyncWindowKind>,
    /// When the window opens: a 5-field cron expression (`minute hour day month weekday`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub schedule: String,
    /// How long it stays open: a Go duration such as `1h` or `30m`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub duration: String,
    /// Applications (globs) the window applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<String>,
    /// Destination namespaces (globs) the window applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Destination clusters (globs, by name or server) the window applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Allow manual syncs while the window blocks automated ones.
    #[serde(default, skip_serializing_if = "is_false")]
    pub manual_sync: bool,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time_zone: String,
    /// Match applications AND namespaces AND clusters instead of OR.
    #[serde(rename = "andOperator", default, skip_serializing_if = "is_false")]
    pub use_and_operator: bool,
    /// What the window is for (at most 255 characters).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Let a sync that started inside the window finish after it closes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sync_overrun: bool,
}

/// Orphaned resource monitoring (`orphanedResources`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrphanedResourcesMonitorSettings {
    /// Raise a warning condition on Applications with orphaned resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<bool>,
    /// Resources never reported as orphaned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<OrphanedResourceKey>,
}

/// A resource (globs allowed) excluded from orphan monitoring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrphanedResourceKey {
    /// API group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A GPG key id commits must be signed with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureKey {
    /// Key id in hex (16 characters, or a 40-character fingerprint).
    #[serde(rename = "keyID", default)]
    pub key_id: String,
}

/// The service account impersonated when syncing to a destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationServiceAccount {
    /// Destination server URL (glob).
    #[serde(default)]
    pub server: String,
    /// Destination namespace (glob).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Service account, `name` or `namespace:name`.
    #[serde(default)]
    pub default_service_account: String,
}

/// Observed state of a project (`status:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppProjectStatus {
    /// Tokens issued, by role name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub jwt_tokens_by_role: IndexMap<String, JwtTokens>,
}

/// A list of tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtTokens {
    /// The tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<JwtToken>,
}
