//! Applications: list, get, create, update, patch, delete, sync, rollback, terminate,
//! history, manifests, watch (their live state is [`super::live`]).
//!
//! RBAC objects are Argo CD's: `PROJECT/APP` for Applications in the control plane's
//! namespace, `PROJECT/NAMESPACE/APP` for others. Actions: `get` (also for refresh, history,
//! manifests, the live state and watch), `create`, `update` (on the old and the new project
//! when an update moves an Application), `delete`, `sync` (also rollback and terminate).
//!
//! Requests to the controller (sync, rollback, refresh, terminate) are written into the
//! Application in the store — `operation`, the refresh and terminate annotations — as Argo CD
//! does: the controller that owns the Application's cluster picks them up from its watch,
//! whichever API replica wrote them.

use std::sync::Arc;
use std::time::Duration;

use capstan_model::{
    Application, Operation, OperationInitiator, OperationPhase, REFRESH_ANNOTATION,
    RESOURCES_FINALIZER, RetryStrategy, SyncOperation, SyncOperationResource, SyncOptions,
    SyncStrategy, SyncStrategyApply, SyncStrategyHook, TERMINATE_ANNOTATION, Validate as _,
};
use capstan_store::kinds::{AppProjects, Applications};
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{Precondition, Revision, StoreError};
use serde_json::Value;
use tracing::info;

use super::{Api, Caller};
use crate::error::{ApiError, ApiResult, Code};
use crate::mirror::Entry;
use crate::query::{AppQuery, select_fields};

/// How long a write waits for this replica's copy to show it (so the answer and the next
/// list agree with the write).
const READ_YOUR_WRITE: Duration = Duration::from_secs(5);
/// Attempts at a read-modify-write that keeps meeting concurrent changes.
const ATTEMPTS: usize = 5;

/// What to list, beyond [`AppQuery`].
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// Filters and paging.
    pub query: AppQuery,
    /// Only this namespace's Applications.
    pub app_namespace: Option<String>,
    /// Only Applications with a source in this repository (any URL form).
    pub repo: Option<String>,
    /// Dotted paths to keep in each item.
    pub fields: Vec<String>,
}

/// One page of Applications.
#[derive(Clone, Debug, PartialEq)]
pub struct ListResult {
    /// The Applications (trimmed to the fields asked for).
    pub items: Vec<Value>,
    /// Pass to get the next page.
    pub continue_token: Option<String>,
    /// The store revision of the copy listed.
    pub revision: Revision,
}

/// A refresh asked for with a get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// Resolve the revision again and compare.
    Normal,
    /// And regenerate the manifests.
    Hard,
}

impl std::str::FromStr for Refresh {
    type Err = ApiError;

    fn from_str(text: &str) -> ApiResult<Self> {
        match text {
            "normal" | "true" => Ok(Refresh::Normal),
            "hard" => Ok(Refresh::Hard),
            other => Err(ApiError::invalid(format!(
                "refresh {other:?}: use normal or hard"
            ))),
        }
    }
}

impl Refresh {
    fn as_str(self) -> &'static str {
        match self {
            Refresh::Normal => "normal",
            Refresh::Hard => "hard",
        }
    }
}

/// A sync as asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncParams {
    /// The revision (single source); empty: the target revision.
    pub revision: String,
    /// Per-source revisions (multi-source).
    pub revisions: Vec<String>,
    /// Delete what Git no longer has.
    pub prune: bool,
    /// Simulate only.
    pub dry_run: bool,
    /// `apply` (no hooks) or `hook` (the default).
    pub strategy: String,
    /// Replace what cannot be patched.
    pub force: bool,
    /// Only these resources.
    pub resources: Vec<SyncOperationResource>,
    /// Options for this sync.
    pub sync_options: Vec<String>,
    /// Retries of a failed sync (0: none, negative: no limit).
    pub retry_limit: i64,
}

/// An Application and its spec's store revision.
struct Current {
    app: Application,
    revision: Revision,
}

impl Api {
    /// The RBAC object of the Application at `at` in `project`.
    pub fn rbac_object(&self, at: &ObjectRef, project: &str) -> String {
        if at.namespace == self.config().namespace {
            format!("{project}/{}", at.name)
        } else {
            format!("{project}/{}/{}", at.namespace, at.name)
        }
    }

    /// Where an Application named `name` in `namespace` (empty: the control plane's) lives.
    pub fn app_ref(&self, namespace: &str, name: &str) -> ApiResult<ObjectRef> {
        if name.is_empty() {
            return Err(ApiError::invalid("the Application's name is missing"));
        }
        let namespace = if namespace.is_empty() {
            self.config().namespace.as_str()
        } else {
            namespace
        };
        Ok(ObjectRef::new(namespace, name))
    }

    fn typed_apps(&self) -> TypedStore<Applications> {
        TypedStore::new(self.store().clone())
    }

    /// Reads from the store (not the copy): the caller may have just written.
    async fn current(&self, at: &ObjectRef) -> ApiResult<Current> {
        let object = self
            .typed_apps()
            .get(at)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("application {at}")))?;
        let mut app = object.spec.value;
        app.status = object.status.map(|s| s.value);
        Ok(Current {
            app,
            revision: object.spec.mod_revision,
        })
    }

    /// Allowed to do `action` on `app` (at `at`), or a PermissionDenied naming it.
    fn enforce_on_app(
        &self,
        caller: &Caller,
        action: &str,
        at: &ObjectRef,
        app: &Application,
    ) -> ApiResult<()> {
        let object = self.rbac_object(at, app.spec.project_or_default());
        self.enforce(caller, "applications", action, &object)
    }

    /// A missing Application is "not found" only to a caller who could `action` an
    /// Application of that name in some project; to others it is "permission denied", as for
    /// one that exists: a denial must not tell which names exist.
    fn hide_missing(
        &self,
        caller: &Caller,
        action: &str,
        at: &ObjectRef,
        error: ApiError,
    ) -> ApiError {
        let object = self.rbac_object(at, "*");
        if error.code == Code::NotFound && !self.can(caller, "applications", action, &object) {
            ApiError::denied("applications", action, &object)
        } else {
            error
        }
    }

    /// Reads, checks and rewrites an Application's spec, retrying when it changed meanwhile.
    /// `change` sees the current Application (status included) and edits it.
    /// `asked` names the caller and the action they need, so that a missing Application is
    /// reported to them as [`Api::hide_missing`] says (`None`: the API's own request).
    async fn modify(
        &self,
        at: &ObjectRef,
        asked: Option<(&Caller, &str)>,
        mut change: impl FnMut(&mut Application, Revision) -> ApiResult<()>,
    ) -> ApiResult<Application> {
        for _ in 0..ATTEMPTS {
            let Current { mut app, revision } = match (self.current(at).await, asked) {
                (Ok(current), _) => current,
                (Err(e), Some((caller, action))) => {
                    return Err(self.hide_missing(caller, action, at, e));
                }
                (Err(e), None) => return Err(e),
            };
            change(&mut app, revision)?;
            let status = app.status.take();
            match self
                .typed_apps()
                .update_spec(at, &app, Precondition::ModRevision(revision))
                .await
            {
                Ok(written) => {
                    self.apps()
                        .wait_for_revision(written, READ_YOUR_WRITE)
                        .await;
                    app.status = status;
                    return Ok(self.stamp(at, app, written));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::new(
            Code::Aborted,
            format!("application {at} kept changing; try again"),
        ))
    }

    /// The Application as answered: its namespace and store revision in its metadata.
    fn stamp(&self, at: &ObjectRef, mut app: Application, revision: Revision) -> Application {
        app.metadata.namespace = at.namespace.clone();
        app.metadata.resource_version = revision.to_string();
        app
    }

    fn entry_app(&self, at: &ObjectRef, entry: &Entry<Applications>) -> Application {
        let mut app = (*entry.spec).clone();
        app.status = entry.status.as_deref().cloned();
        self.stamp(at, app, entry.spec_revision)
    }

    /// A page of the Applications the caller may see.
    pub fn list(&self, caller: &Caller, params: &ListParams) -> ApiResult<ListResult> {
        let repo_key = params
            .repo
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| {
                crate::webhook::repo_key(r)
                    .ok_or_else(|| ApiError::invalid(format!("{r:?} is no repository URL")))
            })
            .transpose()?;
        let ((entries, continue_token), revision) =
            {
                let state = self.apps().read();
                let visible = state.objects.iter().filter(|(at, entry)| {
                    params
                        .app_namespace
                        .as_deref()
                        .is_none_or(|ns| ns.is_empty() || at.namespace == ns)
                        && repo_key.as_ref().is_none_or(|key| {
                            entry.spec.spec.effective_sources().iter().any(|s| {
                                crate::webhook::repo_key(&s.repo_url).as_ref() == Some(key)
                            })
                        })
                        && self.can(
                            caller,
                            "applications",
                            "get",
                            &self.rbac_object(at, entry.spec.spec.project_or_default()),
                        )
                });
                let page = params
                    .query
                    .page(visible.map(|(at, entry)| {
                        (at, &*entry.spec, entry.status.as_deref(), (at, entry))
                    }))
                    .map_err(|e| ApiError::invalid(e.0))?;
                // Only the page's entries are copied out, to be encoded after the lock is let go.
                let items: Vec<(ObjectRef, Entry<Applications>)> = page
                    .items
                    .into_iter()
                    .map(|(at, entry)| (at.clone(), entry.clone()))
                    .collect();
                ((items, page.continue_token), state.revision)
            };
        let fields: Vec<&str> = params.fields.iter().map(String::as_str).collect();
        let items = entries
            .iter()
            .map(|(at, entry)| {
                let value = serde_json::to_value(self.entry_app(at, entry))
                    .map_err(|e| ApiError::internal(format!("encoding {at}: {e}")))?;
                Ok(select_fields(&value, &fields))
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(ListResult {
            items,
            continue_token,
            revision,
        })
    }

    /// One Application; with `refresh`, asks the controller to refresh it first (the answer
    /// is the Application as it is now; watch or get again for the refreshed status).
    pub async fn get(
        &self,
        caller: &Caller,
        at: &ObjectRef,
        refresh: Option<Refresh>,
    ) -> ApiResult<Application> {
        let Current { app, revision } = self
            .current(at)
            .await
            .map_err(|e| self.hide_missing(caller, "get", at, e))?;
        self.enforce_on_app(caller, "get", at, &app)?;
        match refresh {
            None => Ok(self.stamp(at, app, revision)),
            Some(kind) => self.request_refresh(at, kind).await,
        }
    }

    /// Writes the refresh annotation (a hard refresh is not weakened to a normal one).
    pub async fn request_refresh(&self, at: &ObjectRef, kind: Refresh) -> ApiResult<Application> {
        self.modify(at, None, |app, _| {
            let current = app.metadata.annotations.get(REFRESH_ANNOTATION);
            if current.map(String::as_str) != Some(Refresh::Hard.as_str()) {
                app.metadata
                    .annotations
                    .insert(REFRESH_ANNOTATION.to_owned(), kind.as_str().to_owned());
            }
            Ok(())
        })
        .await
    }

    /// Checks what a create or update would store.
    async fn check_new(&self, at: &ObjectRef, app: &mut Application) -> ApiResult<()> {
        app.metadata.namespace = at.namespace.clone();
        app.validate()
            .map_err(|e| ApiError::invalid(format!("the application is invalid: {e}")))?;
        let project = app.spec.project_or_default().to_owned();
        if project != capstan_model::DEFAULT_PROJECT {
            let projects = TypedStore::<AppProjects>::new(self.store().clone());
            let known = projects
                .get(&ObjectRef::new(
                    self.config().namespace.as_str(),
                    project.as_str(),
                ))
                .await?
                .is_some();
            if !known {
                return Err(ApiError::invalid(format!(
                    "the application's project {project:?} does not exist; create it first"
                )));
            }
        }
        Ok(())
    }

    /// Creates an Application. An identical one existing already is answered as created;
    /// a different one is an error unless `upsert` (which needs `update` too).
    pub async fn create(
        &self,
        caller: &Caller,
        mut app: Application,
        upsert: bool,
    ) -> ApiResult<Application> {
        let at = self.app_ref(&app.metadata.namespace, &app.metadata.name)?;
        let object = self.rbac_object(&at, app.spec.project_or_default());
        self.enforce(caller, "applications", "create", &object)?;
        // What the controller owns, and requests that need other permissions, are dropped.
        app.status = None;
        app.operation = None;
        app.metadata.resource_version.clear();
        app.metadata.deletion_timestamp = None;
        self.check_new(&at, &mut app).await?;
        match self.typed_apps().create(&at, &app).await {
            Ok(revision) => {
                self.apps()
                    .wait_for_revision(revision, READ_YOUR_WRITE)
                    .await;
                info!(user = %caller.subject.user, app = %at, "application created");
                return Ok(self.stamp(&at, app, revision));
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => return Err(other.into()),
        }
        let existing = self.current(&at).await?;
        let same = existing.app.spec == app.spec
            && existing.app.metadata.labels == app.metadata.labels
            && existing.app.metadata.annotations == app.metadata.annotations;
        if same {
            self.enforce(
                caller,
                "applications",
                "get",
                &self.rbac_object(&at, existing.app.spec.project_or_default()),
            )?;
            return Ok(self.stamp(&at, existing.app, existing.revision));
        }
        if !upsert {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!(
                    "application {at} exists with a different spec; update it, or create with upsert"
                ),
            ));
        }
        self.update(caller, app).await
    }

    /// Replaces an Application's spec, labels, annotations and finalizers (its operation and
    /// status stay). With `metadata.resourceVersion` set, only if the Application was not
    /// changed since.
    pub async fn update(&self, caller: &Caller, mut app: Application) -> ApiResult<Application> {
        let at = self.app_ref(&app.metadata.namespace, &app.metadata.name)?;
        let expected = match app.metadata.resource_version.as_str() {
            "" => None,
            v => Some(v.parse::<Revision>().map_err(|_| {
                ApiError::invalid(format!("metadata.resourceVersion {v:?} is not a revision"))
            })?),
        };
        self.check_new(&at, &mut app).await?;
        let new_object = self.rbac_object(&at, app.spec.project_or_default());
        self.enforce(caller, "applications", "update", &new_object)?;
        let written = self
            .modify(&at, Some((caller, "update")), |current, revision| {
                let old_object = self.rbac_object(&at, current.spec.project_or_default());
                // Moving an Application between projects needs update in both.
                self.enforce(caller, "applications", "update", &old_object)?;
                if expected.is_some_and(|e| e != revision) {
                    return Err(ApiError::new(
                        Code::Aborted,
                        format!(
                            "application {at} was changed since resourceVersion {}; read it again and retry",
                            expected.unwrap_or_default()
                        ),
                    ));
                }
                current.spec = app.spec.clone();
                current.metadata.labels = app.metadata.labels.clone();
                current.metadata.annotations = app.metadata.annotations.clone();
                current.metadata.finalizers = app.metadata.finalizers.clone();
                Ok(())
            })
            .await?;
        info!(user = %caller.subject.user, app = %at, "application updated");
        Ok(written)
    }

    /// Patches an Application: `merge` (RFC 7386, the default) or `json` (RFC 6902) over
    /// its JSON (without status); the result must be a valid Application, checked as an
    /// update.
    pub async fn patch(
        &self,
        caller: &Caller,
        at: &ObjectRef,
        patch: &str,
        patch_type: &str,
    ) -> ApiResult<Application> {
        let patch: Value = serde_json::from_str(patch)
            .map_err(|e| ApiError::invalid(format!("the patch is not JSON: {e}")))?;
        let Current { mut app, revision } = self
            .current(at)
            .await
            .map_err(|e| self.hide_missing(caller, "update", at, e))?;
        self.enforce_on_app(caller, "update", at, &app)?;
        app.status = None;
        let mut doc = serde_json::to_value(&app)
            .map_err(|e| ApiError::internal(format!("encoding {at}: {e}")))?;
        match patch_type {
            "" | "merge" => json_patch::merge(&mut doc, &patch),
            "json" => {
                let ops: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::invalid(format!("not a JSON patch: {e}")))?;
                json_patch::patch(&mut doc, &ops).map_err(|e| {
                    ApiError::invalid(format!("the JSON patch does not apply: {e}"))
                })?;
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "patch type {other:?}: use merge or json"
                )));
            }
        }
        let text = doc.to_string();
        let mut patched = capstan_model::parse_application_yaml(&text)
            .map_err(|e| ApiError::invalid(format!("the patched application is invalid: {e}")))?;
        if patched.metadata.name != at.name
            || (!patched.metadata.namespace.is_empty()
                && patched.metadata.namespace != at.namespace)
        {
            return Err(ApiError::invalid("a patch cannot rename an application"));
        }
        patched.metadata.namespace = at.namespace.clone();
        patched.metadata.resource_version = revision.to_string();
        self.update(caller, patched).await
    }

    /// Deletes an Application. With `cascade` (the default) its resources go first (the
    /// controller deletes them, then the Application); without, they stay in the cluster.
    pub async fn delete(
        &self,
        caller: &Caller,
        at: &ObjectRef,
        cascade: bool,
        propagation_policy: &str,
    ) -> ApiResult<()> {
        let background = match propagation_policy {
            "" | "foreground" => false,
            "background" => true,
            other => {
                return Err(ApiError::invalid(format!(
                    "propagation policy {other:?}: use foreground or background"
                )));
            }
        };
        let Current { app, .. } = self
            .current(at)
            .await
            .map_err(|e| self.hide_missing(caller, "delete", at, e))?;
        self.enforce_on_app(caller, "delete", at, &app)?;
        let others = app
            .metadata
            .finalizers
            .iter()
            .any(|f| !f.starts_with(RESOURCES_FINALIZER));
        if !cascade && !others {
            // Nothing to wait for: gone now.
            if let Some(revision) = self.typed_apps().delete(at, Precondition::None).await? {
                self.apps()
                    .wait_for_revision(revision, READ_YOUR_WRITE)
                    .await;
            }
            info!(user = %caller.subject.user, app = %at, cascade, "application deleted");
            return Ok(());
        }
        self.modify(at, Some((caller, "delete")), |app, _| {
            app.metadata
                .finalizers
                .retain(|f| !f.starts_with(RESOURCES_FINALIZER));
            if cascade {
                let finalizer = if background {
                    format!("{RESOURCES_FINALIZER}/background")
                } else {
                    RESOURCES_FINALIZER.to_owned()
                };
                app.metadata.finalizers.push(finalizer);
            }
            if app.metadata.deletion_timestamp.is_none() {
                app.metadata.deletion_timestamp = Some(capstan_model::Timestamp::new(
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                ));
            }
            Ok(())
        })
        .await?;
        info!(user = %caller.subject.user, app = %at, cascade, "application deletion requested");
        Ok(())
    }

    fn operation_running(app: &Application) -> bool {
        app.operation.is_some()
            || app
                .status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|o| o.phase.is_some_and(|p| p == OperationPhase::Running))
    }

    /// Asks for a sync.
    pub async fn sync(
        &self,
        caller: &Caller,
        at: &ObjectRef,
        params: SyncParams,
    ) -> ApiResult<Application> {
        let strategy = match params.strategy.as_str() {
            "" => None,
            "hook" => Some(SyncStrategy {
                hook: Some(SyncStrategyHook {
                    force: params.force,
                }),
                ..SyncStrategy::default()
            }),
            "apply" => Some(SyncStrategy {
                apply: Some(SyncStrategyApply {
                    force: params.force,
                }),
                ..SyncStrategy::default()
            }),
            other => {
                return Err(ApiError::invalid(format!(
                    "sync strategy {other:?}: use hook or apply"
                )));
            }
        };
        let strategy = match (strategy, params.force) {
            (None, true) => Some(SyncStrategy {
                hook: Some(SyncStrategyHook { force: true }),
                ..SyncStrategy::default()
            }),
            (s, _) => s,
        };
        let app = self
            .modify(at, Some((caller, "sync")), |app, _| {
                self.enforce_on_app(caller, "sync", at, app)?;
                if Self::operation_running(app) {
                    return Err(ApiError::new(
                        Code::FailedPrecondition,
                        format!("another operation is already in progress on {at}; wait for it or terminate it"),
                    ));
                }
                if app.spec.sync_policy.as_ref().is_some_and(|p| p.is_automated()) && !params.revision.is_empty() {
                    let target = app
                        .spec
                        .source
                        .as_ref()
                        .map(|s| s.target_revision.as_str())
                        .unwrap_or_default();
                    if params.revision != target {
                        return Err(ApiError::new(
                            Code::FailedPrecondition,
                            format!(
                                "cannot sync {at} to {:?}: automated sync follows {target:?}; turn it off first",
                                params.revision
                            ),
                        ));
                    }
                }
                let mut options = SyncOptions::default();
                for option in &params.sync_options {
                    options.add(option.clone());
                }
                app.operation = Some(Operation {
                    sync: Some(SyncOperation {
                        revision: params.revision.clone(),
                        revisions: params.revisions.clone(),
                        prune: params.prune,
                        dry_run: params.dry_run,
                        sync_strategy: strategy.clone(),
                        resources: params.resources.clone(),
                        sync_options: options,
                        ..SyncOperation::default()
                    }),
                    initiated_by: OperationInitiator {
                        username: caller.subject.user.clone(),
                        automated: false,
                    },
                    retry: RetryStrategy {
                        limit: params.retry_limit,
                        backoff: None,
                    },
                    ..Operation::default()
                });
                Ok(())
            })
            .await?;
        info!(user = %caller.subject.user, app = %at, "sync requested");
        Ok(app)
    }

    /// Asks for a rollback to history entry `id`.
    pub async fn rollback(
        &self,
        caller: &Caller,
        at: &ObjectRef,
        id: i64,
        prune: bool,
        dry_run: bool,
    ) -> ApiResult<Application> {
        let app = self
            .modify(at, Some((caller, "sync")), |app, _| {
                self.enforce_on_app(caller, "sync", at, app)?;
                if app.spec.sync_policy.as_ref().is_some_and(|p| p.is_automated()) {
                    return Err(ApiError::new(
                        Code::FailedPrecondition,
                        format!("rollback cannot be started on {at} while automated sync is on: the next automated sync would undo it; turn it off first"),
                    ));
                }
                if Self::operation_running(app) {
                    return Err(ApiError::new(
                        Code::FailedPrecondition,
                        format!("another operation is already in progress on {at}"),
                    ));
                }
                let entry = app
                    .status
                    .as_ref()
                    .and_then(|s| s.history.iter().find(|h| h.id == id))
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::not_found(format!("history entry {id} of application {at}"))
                    })?;
                app.operation = Some(Operation::rollback(
                    &entry,
                    OperationInitiator {
                        username: caller.subject.user.clone(),
                        automated: false,
                    },
                    prune,
                    dry_run,
                ));
                Ok(())
            })
            .await?;
        info!(user = %caller.subject.user, app = %at, id, "rollback requested");
        Ok(app)
    }

    /// Asks the controller to terminate the running operation.
    pub async fn terminate(&self, caller: &Caller, at: &ObjectRef) -> ApiResult<()> {
        self.modify(at, Some((caller, "sync")), |app, _| {
            self.enforce_on_app(caller, "sync", at, app)?;
            if !Self::operation_running(app) {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    format!("no operation is in progress on {at}"),
                ));
            }
            app.metadata
                .annotations
                .insert(TERMINATE_ANNOTATION.to_owned(), caller.subject.user.clone());
            Ok(())
        })
        .await?;
        info!(user = %caller.subject.user, app = %at, "termination requested");
        Ok(())
    }

    /// The deployment history (`status.history`), oldest first.
    pub async fn history(&self, caller: &Caller, at: &ObjectRef) -> ApiResult<Value> {
        let app = self.get(caller, at, None).await?;
        let history = app.status.map(|s| s.history).unwrap_or_default();
        serde_json::to_value(history).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Follows changes to the Applications the caller may see and `params` selects: first
    /// every such Application as `ADDED` (unless `from` resumes after a revision the caller
    /// saw), then each change as it happens. The stream ends when the receiver is dropped
    /// or the store's history no longer reaches `from` (then list again and resume from the
    /// list's revision).
    pub fn watch(
        &self,
        caller: Caller,
        params: ListParams,
        from: Option<Revision>,
    ) -> tokio::sync::mpsc::Receiver<ApiResult<AppEvent>> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let api = self.clone();
        tokio::spawn(async move {
            let mut sent: std::collections::HashSet<ObjectRef> = Default::default();
            let start = match from {
                Some(from) => {
                    // What the caller saw at `from` (a list's revision): changes to those
                    // are MODIFIED, and their deletion DELETED, as if this stream had sent them.
                    match api.typed_apps().list_at(None, from).await {
                        Ok(listed) => {
                            for object in listed.items {
                                let entry = Entry {
                                    spec: Arc::new(object.spec.value),
                                    spec_revision: object.spec.mod_revision,
                                    status: object.status.map(|s| Arc::new(s.value)),
                                };
                                if api.watched(&caller, &params, &object.object, &entry) {
                                    sent.insert(object.object);
                                }
                            }
                        }
                        Err(error) => {
                            let _ = tx.send(Err(error.into())).await;
                            return;
                        }
                    }
                    from
                }
                None => {
                    let (snapshot, revision) = {
                        let state = api.apps().read();
                        let snapshot: Vec<(ObjectRef, Entry<Applications>)> = state
                            .objects
                            .iter()
                            .filter(|(at, e)| api.watched(&caller, &params, at, e))
                            .map(|(at, e)| (at.clone(), e.clone()))
                            .collect();
                        (snapshot, state.revision)
                    };
                    for (at, entry) in snapshot {
                        let event = api.event("ADDED", &at, &entry, revision);
                        sent.insert(at);
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    revision
                }
            };
            let mut changes = api.typed_apps().watch(None, start);
            while let Some(change) = futures::StreamExt::next(&mut changes).await {
                let change = match change {
                    Ok(change) => change,
                    Err(error) => {
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                };
                let revision = change.revision();
                let at = change.object().clone();
                api.apps()
                    .wait_for_revision(revision, READ_YOUR_WRITE)
                    .await;
                let event = match api.apps().get(&at) {
                    Some(entry) if api.watched(&caller, &params, &at, &entry) => {
                        let kind = if sent.insert(at.clone()) {
                            "ADDED"
                        } else {
                            "MODIFIED"
                        };
                        api.event(kind, &at, &entry, revision)
                    }
                    // Gone, or no longer visible or selected: deleted for this watcher.
                    _ if sent.remove(&at) => Ok(AppEvent {
                        kind: "DELETED",
                        application: serde_json::json!({
                            "metadata": {"name": at.name, "namespace": at.namespace}
                        }),
                        revision,
                    }),
                    _ => continue,
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        rx
    }

    fn watched(
        &self,
        caller: &Caller,
        params: &ListParams,
        at: &ObjectRef,
        entry: &Entry<Applications>,
    ) -> bool {
        params
            .app_namespace
            .as_deref()
            .is_none_or(|ns| ns.is_empty() || at.namespace == ns)
            && params
                .query
                .matches(at, &entry.spec, entry.status.as_deref())
            && self.can(
                caller,
                "applications",
                "get",
                &self.rbac_object(at, entry.spec.spec.project_or_default()),
            )
    }

    fn event(
        &self,
        kind: &'static str,
        at: &ObjectRef,
        entry: &Entry<Applications>,
        revision: Revision,
    ) -> ApiResult<AppEvent> {
        let application = serde_json::to_value(self.entry_app(at, entry))
            .map_err(|e| ApiError::internal(format!("encoding {at}: {e}")))?;
        Ok(AppEvent {
            kind,
            application,
            revision,
        })
    }
}

/// A change seen by [`Api::watch`].
#[derive(Clone, Debug, PartialEq)]
pub struct AppEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The Application now (for `DELETED`, its name and namespace).
    pub application: Value,
    /// The store revision of the change (resume after it).
    pub revision: Revision,
}

/// An Application's manifests as the API shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestsAnswer {
    /// One JSON document per manifest.
    pub manifests: Vec<Value>,
    /// The revision rendered (comma-joined for several sources).
    pub revision: String,
    /// Each rendered source's type.
    pub source_types: Vec<String>,
}

impl Api {
    /// The manifests the Application's sources render to, at its target revision or at
    /// `revision` (single-source Applications), through the repo-server.
    pub async fn manifests(
        &self,
        caller: &Caller,
        at: &ObjectRef,
        revision: &str,
    ) -> ApiResult<ManifestsAnswer> {
        let mut app = self.get(caller, at, None).await?;
        let source = self.manifest_source().cloned().ok_or_else(|| {
            // The server's configuration, not a passing outage: no 503.
            ApiError::new(
                Code::FailedPrecondition,
                "this API has no repo-server to render with",
            )
        })?;
        if !revision.is_empty() {
            match app.spec.source.as_mut() {
                Some(single) if app.spec.sources.is_empty() => {
                    single.target_revision = revision.to_owned();
                }
                _ => {
                    return Err(ApiError::invalid(
                        "a revision can only be given for an application with one source",
                    ));
                }
            }
        }
        let repositories =
            TypedStore::<capstan_store::kinds::Repositories>::new(self.store().clone())
                .list(None)
                .await?;
        let registered: Vec<&capstan_model::RepositorySpec> = repositories
            .items
            .iter()
            .map(|r| &r.spec.value.spec)
            .collect();
        let rendered = capstan_repo::application::render(&*source, &app, &registered, false)
            .await
            .map_err(|message| ApiError::new(Code::FailedPrecondition, message))?;
        Ok(ManifestsAnswer {
            manifests: rendered.manifests,
            revision: rendered.revision,
            source_types: rendered
                .source_types
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
        })
    }
}
