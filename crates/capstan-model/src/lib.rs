//! Capstan's domain model: the objects users write and the controller acts on —
//! [`Application`], [`AppProject`], [`Cluster`] and [`Repository`] with their status types —
//! how they are read from and written to YAML and JSON, and the rules they must meet.
//!
//! This crate is pure domain: no I/O, no Kubernetes client, no gRPC or HTTP. Other crates
//! (store, API, controller, CLI) build on these types; conversions to the wire formats of
//! the API live at the API edge, not here.
//!
//! # Where to start reading
//!
//! - [`application`] and [`source`]: the `Application` spec, field for field Argo CD's
//!   `argoproj.io/v1alpha1` Application. [`status`] holds what the controller writes back.
//! - [`project`], [`cluster`], [`repository`]: the other kinds.
//! - [`object`]: the parsing entry points ([`parse_application_yaml`],
//!   [`parse_objects_yaml`], …) and [`Object`], "any kind".
//! - [`validate`]: [`Validate::validate`] returns every problem at once as
//!   [`ValidationErrors`].
//! - `codec` (private): the YAML reader that tracks line, column and field path for every
//!   value, and rejects unknown fields with a "did you mean" suggestion.
//!
//! # Compatibility with Argo CD
//!
//! `Application` and `AppProject` YAML written for Argo CD (`apiVersion:
//! argoproj.io/v1alpha1`) parses as it is; an object remembers its `apiVersion` and writes it
//! back unchanged. Capstan's own objects use `capstan.dev/v1alpha1` with the same field names.
//!
//! # Strictness
//!
//! Unknown fields are errors, not silently dropped: `syncpolicy:` instead of `syncPolicy:`
//! is reported as `spec.syncpolicy: unknown field `syncpolicy`; did you mean `syncPolicy`?`
//! with its line and column. Values that Argo CD would also reject (a number where text is
//! expected, an unknown enum value) are errors too. `null` means "unset", as in Argo CD.
//!
//! ```
//! use capstan_model::{parse_application_yaml, Validate};
//!
//! let app = parse_application_yaml(r#"
//! apiVersion: argoproj.io/v1alpha1
//! kind: Application
//! metadata:
//!   name: guestbook
//!   namespace: argocd
//! spec:
//!   project: default
//!   source:
//!     repoURL: https://github.com/argoproj/argocd-example-apps.git
//!     targetRevision: HEAD
//!     path: guestbook
//!   destination:
//!     server: https://kubernetes.default.svc
//!     namespace: guestbook
//! "#)?;
//! assert!(app.validate().is_ok());
//! assert!(app.to_yaml()?.starts_with("apiVersion: argoproj.io/v1alpha1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Credentials ([`Sensitive`]) print as `<redacted>` in `Debug` output and serialise in
//! full; use [`Cluster::redacted`] and [`Repository::redacted`] before returning objects to
//! users.

#![warn(missing_docs)]

pub mod application;
pub mod cluster;
mod codec;
pub mod error;
pub mod meta;
pub mod object;
pub mod path;
pub mod project;
pub mod repository;
pub mod sensitive;
pub mod source;
pub mod status;
mod suggest;
mod util;
pub mod validate;

pub use application::{
    Application, ApplicationDestination, ApplicationSpec, Backoff, DEFAULT_PROJECT,
    DEFAULT_REVISION_HISTORY_LIMIT, Info, ManagedNamespaceMetadata, REFRESH_ANNOTATION,
    RESOURCES_FINALIZER, ResourceIgnoreDifferences, RetryStrategy, SyncOptions, SyncPolicy,
    SyncPolicyAutomated, TERMINATE_ANNOTATION,
};
pub use cluster::{
    AwsAuthConfig, Cluster, ClusterCacheInfo, ClusterConfig, ClusterSpec, ClusterStatus,
    ConnectionState, ExecProviderConfig, IN_CLUSTER_SERVER, TlsClientConfig,
};
pub use codec::node::Location;
pub use codec::{MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, MAX_INPUT_BYTES, to_json, to_yaml};
pub use error::{ParseError, SerializeError};
pub use meta::{
    ARGOCD_API_VERSION, ApiVersion, CAPSTAN_API_VERSION, ObjectMeta, OwnerReference, Timestamp,
};
pub use object::{
    Object, ObjectKind, objects_to_yaml, parse_app_project_yaml, parse_application_yaml,
    parse_cluster_yaml, parse_fragment_yaml, parse_object_json, parse_object_yaml,
    parse_objects_yaml, parse_repository_yaml,
};
pub use path::{FieldPath, PathSegment};
pub use project::{
    AppProject, AppProjectSpec, AppProjectStatus, DestinationServiceAccount, GroupKind, JwtToken,
    JwtTokens, OrphanedResourceKey, OrphanedResourcesMonitorSettings, ProjectRole, SignatureKey,
    SyncWindow, SyncWindowKind,
};
pub use repository::{Repository, RepositorySpec, RepositoryStatus, RepositoryType};
pub use sensitive::Sensitive;
pub use source::{
    ApplicationSource, DirectorySource, DrySource, EnvEntry, HelmFileParameter, HelmParameter,
    HelmSource, HydrateTo, IntOrString, JsonnetOptions, JsonnetVar, KustomizePatch,
    KustomizeReplica, KustomizeSelector, KustomizeSource, PluginParameter, PluginSource,
    SourceHydrator, SourceType, SyncSource,
};
pub use status::{
    ApplicationCondition, ApplicationStatus, ApplicationSummary, ComparedTo, ControllerShard,
    HealthStatus, HealthStatusCode, HookType, HydrateOperation, HydrateOperationPhase, Operation,
    OperationInitiator, OperationPhase, OperationState, ResourceResult, ResourceStatus, ResultCode,
    RevisionHistory, SourceHydratorStatus, SuccessfulHydrateOperation, SyncOperation,
    SyncOperationResource, SyncOperationResult, SyncPhase, SyncStatus, SyncStatusCode,
    SyncStrategy, SyncStrategyApply, SyncStrategyHook,
};
pub use util::UnknownValue;
pub use validate::{Validate, ValidationError, ValidationErrors};
