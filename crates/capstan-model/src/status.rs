//! What the controller observed and did: [`ApplicationStatus`] (sync and health, resources,
//! history, conditions, the state of the last operation) and [`Operation`] (a requested
//! sync).
//!
//! Status is written by the controller, not by users; it is parsed with the same
//! strictness so that exports from Argo CD (`kubectl get application -o yaml`) round-trip.

use crate::application::{
    ApplicationDestination, Info, ManagedNamespaceMetadata, ResourceIgnoreDifferences,
    RetryStrategy, SyncOptions,
};
use crate::meta::Timestamp;
use crate::source::{ApplicationSource, SourceHydrator, SourceType};
use crate::util::{empty_as_none, is_default, is_false, is_zero, string_enum};
use serde::{Deserialize, Serialize};

string_enum! {
    /// Whether live state matches the desired state.
    pub enum SyncStatusCode {
        /// Live and desired state match.
        Synced = "Synced",
        /// Live state differs from the desired state.
        OutOfSync = "OutOfSync",
        /// The comparison could not be made.
        Unknown = "Unknown",
    }
}

string_enum! {
    /// Health of an Application or resource.
    pub enum HealthStatusCode {
        /// Working as intended.
        Healthy = "Healthy",
        /// Not yet healthy, still changing.
        Progressing = "Progressing",
        /// Failed or unable to become healthy.
        Degraded = "Degraded",
        /// Paused on purpose (e.g. a suspended CronJob).
        Suspended = "Suspended",
        /// Expected but absent from the cluster.
        Missing = "Missing",
        /// Health could not be assessed.
        Unknown = "Unknown",
    }
}

impl HealthStatusCode {
    /// Rank used to aggregate child health into an Application's health: the worst child
    /// wins (Healthy < Suspended < Progressing < Missing < Degraded < Unknown).
    pub fn severity(self) -> u8 {
        match self {
            HealthStatusCode::Healthy => 0,
            HealthStatusCode::Suspended => 1,
            HealthStatusCode::Progressing => 2,
            HealthStatusCode::Missing => 3,
            HealthStatusCode::Degraded => 4,
            HealthStatusCode::Unknown => 5,
        }
    }
}

string_enum! {
    /// Phase of an operation or hook.
    pub enum OperationPhase {
        /// In progress.
        Running = "Running",
        /// Being stopped on request.
        Terminating = "Terminating",
        /// Finished unsuccessfully.
        Failed = "Failed",
        /// Could not run.
        Error = "Error",
        /// Finished successfully.
        Succeeded = "Succeeded",
    }
}

string_enum! {
    /// Result of syncing one resource.
    pub enum ResultCode {
        /// Applied.
        Synced = "Synced",
        /// Applying failed.
        SyncFailed = "SyncFailed",
        /// Deleted because it is no longer in the source.
        Pruned = "Pruned",
        /// Not deleted although it is no longer in the source (pruning is off).
        PruneSkipped = "PruneSkipped",
    }
}

string_enum! {
    /// Kind of a sync hook (`argocd.argoproj.io/hook`).
    pub enum HookType {
        /// Before the sync.
        PreSync = "PreSync",
        /// With the sync.
        Sync = "Sync",
        /// After a successful sync.
        PostSync = "PostSync",
        /// After a failed sync.
        SyncFail = "SyncFail",
        /// Never applied.
        Skip = "Skip",
        /// Before the Application is deleted.
        PreDelete = "PreDelete",
        /// After the Application is deleted.
        PostDelete = "PostDelete",
    }
}

string_enum! {
    /// Phase of a sync in which a resource was handled.
    pub enum SyncPhase {
        /// Pre-sync hooks.
        PreSync = "PreSync",
        /// The main sync.
        Sync = "Sync",
        /// Post-sync hooks.
        PostSync = "PostSync",
        /// Sync-failure hooks.
        SyncFail = "SyncFail",
        /// Pre-delete hooks.
        PreDelete = "PreDelete",
        /// Post-delete hooks.
        PostDelete = "PostDelete",
    }
}

string_enum! {
    /// Phase of a source hydration.
    pub enum HydrateOperationPhase {
        /// In progress.
        Hydrating = "Hydrating",
        /// Failed.
        Failed = "Failed",
        /// Done.
        Hydrated = "Hydrated",
    }
}

/// The observed state of an Application (`status:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// The resources the Application manages, with their sync and health.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    /// The result of the last comparison.
    #[serde(default, skip_serializing_if = "is_default")]
    pub sync: SyncStatus,
    /// The aggregated health.
    #[serde(default, skip_serializing_if = "is_default")]
    pub health: HealthStatus,
    /// Past syncs, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RevisionHistory>,
    /// Errors and warnings currently observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ApplicationCondition>,
    /// When the Application was last compared against the latest source revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<Timestamp>,
    /// The state of the current or last operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    /// Deprecated: when status was last updated without a source refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Timestamp>,
    /// The tool that renders the (first) source.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_type: Option<SourceType>,
    /// External URLs and images of the Application's resources.
    #[serde(default, skip_serializing_if = "is_default")]
    pub summary: ApplicationSummary,
    /// Where resource health is stored: empty (inline in `resources`) or `appTree`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_health_source: String,
    /// The tool of each source, in `spec.sources` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_types: Vec<SourceType>,
    /// Namespace of the controller that manages the Application.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub controller_namespace: String,
    /// State of source hydration.
    #[serde(default, skip_serializing_if = "is_default")]
    pub source_hydrator: SourceHydratorStatus,
    /// Which controller member wrote this status, and under which ownership of the
    /// destination cluster (Capstan's; a sharded control plane only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerShard>,
}

/// The controller member that wrote an Application's status (`status.controller`): the
/// member's name and the revision at which it took ownership of the destination cluster.
/// Every such write is fenced on that ownership, so a status never carries an ownership the
/// member had already lost when the write landed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControllerShard {
    /// The member's name (`capstand controller --name`).
    pub member: String,
    /// The store revision at which the member took the cluster's ownership key.
    pub ownership_revision: u64,
}

/// Sync and health of one managed resource (`status.resources[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceStatus {
    /// API group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Namespace (empty for cluster-scoped resources).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Sync status.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<SyncStatusCode>,
    /// Health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// Whether the resource is a hook.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hook: bool,
    /// Whether the resource should be deleted (it is no longer in the source).
    #[serde(default, skip_serializing_if = "is_false")]
    pub requires_pruning: bool,
    /// Sync wave (`argocd.argoproj.io/sync-wave`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sync_wave: i64,
    /// Whether deleting the resource waits for a user's confirmation.
    #[serde(default, skip_serializing_if = "is_false")]
    pub requires_deletion_confirmation: bool,
}

/// The result of comparing live and desired state (`status.sync`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncStatus {
    /// Synced, OutOfSync or Unknown.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<SyncStatusCode>,
    /// What the comparison used.
    #[serde(default, skip_serializing_if = "is_default")]
    pub compared_to: ComparedTo,
    /// The resolved revision (single source).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// The resolved revision of each source (multiple sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
}

/// The spec a comparison was made against (`status.sync.comparedTo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComparedTo {
    /// The source (single source).
    #[serde(default, skip_serializing_if = "is_default")]
    pub source: ApplicationSource,
    /// The destination.
    #[serde(default, skip_serializing_if = "is_default")]
    pub destination: ApplicationDestination,
    /// The sources (multiple sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// The ignore rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<ResourceIgnoreDifferences>,
}

/// Health of an Application or resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthStatus {
    /// The health code.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<HealthStatusCode>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the health last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Timestamp>,
}

/// One past sync (`status.history[]`), used for rollback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevisionHistory {
    /// The revision synced (single source).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// When the sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<Timestamp>,
    /// Increasing identifier, used by rollback.
    #[serde(default)]
    pub id: i64,
    /// The source synced (single source).
    #[serde(default, skip_serializing_if = "is_default")]
    pub source: ApplicationSource,
    /// When the sync started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_started_at: Option<Timestamp>,
    /// The sources synced (multiple sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// The revision of each source (multiple sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
    /// Who started the sync.
    #[serde(default, skip_serializing_if = "is_default")]
    pub initiated_by: OperationInitiator,
    /// `sha256:` digest of the rendered manifests deployed (Capstan's addition): tells whether
    /// two entries deployed the same thing, whatever their revisions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifests_digest: String,
}

/// An error or warning about an Application (`status.conditions[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplicationCondition {
    /// Condition type, e.g. `ComparisonError`, `SyncError`, `SharedResourceWarning`.
    #[serde(rename = "type", default)]
    pub condition_type: String,
    /// What happened.
    #[serde(default)]
    pub message: String,
    /// When the condition was first observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Timestamp>,
}

impl ApplicationCondition {
    /// Whether this is an error condition (its type ends in `Error`).
    pub fn is_error(&self) -> bool {
        self.condition_type.ends_with("Error")
    }
}

/// External URLs and images of an Application (`status.summary`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSummary {
    /// URLs of Ingresses, Services of type LoadBalancer and link annotations.
    #[serde(
        rename = "externalURLs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub external_urls: Vec<String>,
    /// Container images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

/// State of source hydration (`status.sourceHydrator`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceHydratorStatus {
    /// The last hydration that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_operation: Option<SuccessfulHydrateOperation>,
    /// The hydration in progress or last attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_operation: Option<HydrateOperation>,
}

/// A hydration in progress or last attempted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HydrateOperation {
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Its phase.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub phase: Option<HydrateOperationPhase>,
    /// What happened.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The dry source commit.
    #[serde(rename = "drySHA", default, skip_serializing_if = "String::is_empty")]
    pub dry_sha: String,
    /// The hydrated commit.
    #[serde(
        rename = "hydratedSHA",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub hydrated_sha: String,
    /// The hydrator settings used.
    #[serde(default, skip_serializing_if = "is_default")]
    pub source_hydrator: SourceHydrator,
}

/// The last hydration that succeeded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SuccessfulHydrateOperation {
    /// The dry source commit.
    #[serde(rename = "drySHA", default, skip_serializing_if = "String::is_empty")]
    pub dry_sha: String,
    /// The hydrated commit.
    #[serde(
        rename = "hydratedSHA",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub hydrated_sha: String,
    /// The hydrator settings used.
    #[serde(default, skip_serializing_if = "is_default")]
    pub source_hydrator: SourceHydrator,
}

/// A requested operation (`operation:`); today always a sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    /// The sync to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOperation>,
    /// Who asked for it.
    #[serde(default, skip_serializing_if = "is_default")]
    pub initiated_by: OperationInitiator,
    /// Free-form items about the operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
    /// How to retry it if it fails.
    #[serde(default, skip_serializing_if = "is_default")]
    pub retry: RetryStrategy,
}

impl Operation {
    /// Argo CD's rollback: a sync of the revision and source that history `entry` deployed
    /// (the controller renders that source at that revision instead of the spec's), started
    /// by `initiated_by`. The spec is unchanged, so the Application is OutOfSync afterwards
    /// until its source is changed or synced again; with automated sync on, the next
    /// automated sync deploys the spec's revision again (Argo CD's API refuses a rollback
    /// then, and so will Capstan's).
    pub fn rollback(
        entry: &RevisionHistory,
        initiated_by: OperationInitiator,
        prune: bool,
        dry_run: bool,
    ) -> Self {
        // A multi-source entry rolls back by its sources and their revisions.
        let multiple = !entry.sources.is_empty();
        Operation {
            sync: Some(SyncOperation {
                revision: if multiple {
                    String::new()
                } else {
                    entry.revision.clone()
                },
                source: (!multiple).then(|| entry.source.clone()),
                sources: entry.sources.clone(),
                revisions: entry.revisions.clone(),
                prune,
                dry_run,
                ..SyncOperation::default()
            }),
            initiated_by,
            ..Operation::default()
        }
    }
}

/// Who started an operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationInitiator {
    /// The user, for manual operations.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Whether the controller started it (automated sync).
    #[serde(default, skip_serializing_if = "is_false")]
    pub automated: bool,
}

/// A sync request (`operation.sync`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncOperation {
    /// Revision to sync to (single source); empty means the spec's `targetRevision`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// Delete resources no longer in the source.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prune: bool,
    /// Only simulate the sync.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// Apply or hook strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_strategy: Option<SyncStrategy>,
    /// Sync only these resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<SyncOperationResource>,
    /// Source override (set by rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    /// Local manifests overriding the source (development only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<String>,
    /// Options for this sync only.
    #[serde(default, skip_serializing_if = "SyncOptions::is_empty")]
    pub sync_options: SyncOptions,
    /// Sources override (set by rollback of a multi-source Application).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// Revision of each source to sync to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
    /// How many self-heal attempts have been made.
    #[serde(
        rename = "autoHealAttemptsCount",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub self_heal_attempts_count: i64,
}

/// How a sync applies resources (`syncStrategy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncStrategy {
    /// Apply everything, ignoring hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<SyncStrategyApply>,
    /// Run hooks in their phases (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<SyncStrategyHook>,
}

/// Options of the apply strategy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncStrategyApply {
    /// Delete and re-create resources that cannot be patched.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

/// Options of the hook strategy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncStrategyHook {
    /// Delete and re-create resources that cannot be patched.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

/// A resource selected for a partial sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncOperationResource {
    /// API group (`*` for any).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Kind (`*` for any).
    #[serde(default)]
    pub kind: String,
    /// Name (`*` for any).
    #[serde(default)]
    pub name: String,
    /// Namespace (`*` or empty for any).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// The state of the current or last operation (`status.operationState`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationState {
    /// The operation as requested.
    #[serde(default)]
    pub operation: Operation,
    /// Its phase.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub phase: Option<OperationPhase>,
    /// What happened (usually errors).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The result, for a sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_result: Option<SyncOperationResult>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// How many times it has been retried.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_count: i64,
}

/// The result of a sync (`operationState.syncResult`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncOperationResult {
    /// Result per resource and hook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceResult>,
    /// The revision synced (single source).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// The source synced (single source).
    #[serde(default, skip_serializing_if = "is_default")]
    pub source: ApplicationSource,
    /// The sources synced (multiple sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// The revision of each source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
    /// The managed namespace metadata applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_namespace_metadata: Option<ManagedNamespaceMetadata>,
    /// `sha256:` digest of the rendered manifests being synced (Capstan's addition; copied to
    /// the history entry when the sync succeeds).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifests_digest: String,
}

/// What a sync did to one resource or hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceResult {
    /// API group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Outcome (empty for hooks and for resources not yet handled).
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<ResultCode>,
    /// What happened.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Hook type, for hooks.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub hook_type: Option<HookType>,
    /// State of the hook (or resource) operation.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub hook_phase: Option<OperationPhase>,
    /// Phase of the sync the result belongs to.
    #[serde(
        default,
        deserialize_with = "empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub sync_phase: Option<SyncPhase>,
}
