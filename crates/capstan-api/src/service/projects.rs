//! Projects (AppProjects): list, get, create, update, delete, sync windows, and project role
//! tokens.
//!
//! RBAC as in Argo CD: resource `projects`, object the project's name, actions `get`,
//! `create`, `update` (also to issue and delete a role's tokens) and `delete`. Projects live
//! in the control plane's namespace.
//!
//! The project `default` exists even when nobody created it (as Argo CD's install creates
//! it): until it is stored, reads answer a permissive one (every repository, destination and
//! cluster-scoped kind: what the controller assumes too), an update stores it, and it can
//! never be deleted. A project that Applications still use cannot be deleted either.
//!
//! **Role tokens.** `create_project_token` issues a JWT for the subject `proj:PROJECT:ROLE`
//! and records `{iat, exp, id}` (the id is the token's `jti`) in the role's `jwtTokens` and
//! in `status.jwtTokensByRole`, as Argo CD does. A token is accepted only while the role
//! lists it (see [`Api::authenticate`]); deleting it removes the record and revokes the id.
//! Tokens are managed only here: an update keeps the stored records of the roles it keeps,
//! whatever its body says, and a create starts without any.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use capstan_model::{
    AppProject, AppProjectSpec, ApplicationDestination, DEFAULT_PROJECT, GroupKind, JwtToken,
    JwtTokens, Object, SyncWindow, Validate as _,
};
use capstan_store::kinds::AppProjects;
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{Precondition, Revision, StoreError};
use serde_json::Value;
use tracing::info;

use super::{Api, Caller};
use crate::error::{ApiError, ApiResult, Code};
use crate::rbac::project_role_subject;

/// How long a write waits for this replica's copy to show it.
const READ_YOUR_WRITE: Duration = Duration::from_secs(5);
/// Attempts at a read-modify-write that keeps meeting concurrent changes.
const ATTEMPTS: usize = 5;
/// The most tokens one role may hold.
pub const MAX_ROLE_TOKENS: usize = 100;

/// A project as read, and its spec's store revision (`None`: the implicit `default`).
struct Current {
    project: AppProject,
    revision: Option<Revision>,
}

/// The `default` project before anyone stores one: permissive, as the controller assumes.
fn implicit_default() -> AppProject {
    AppProject::new(
        DEFAULT_PROJECT,
        AppProjectSpec {
            source_repos: vec!["*".into()],
            destinations: vec![ApplicationDestination {
                server: "*".into(),
                namespace: "*".into(),
                name: String::new(),
            }],
            cluster_resource_whitelist: vec![GroupKind {
                group: "*".into(),
                kind: "*".into(),
            }],
            ..AppProjectSpec::default()
        },
    )
}

/// An AppProject from JSON (Capstan's or Argo CD's); `apiVersion` and `kind` may be left out
/// (Argo CD's clients do), then it is read as Argo CD's.
pub fn project_from_json(value: Value) -> ApiResult<AppProject> {
    let value = with_kind(value, capstan_model::ARGOCD_API_VERSION, AppProject::KIND)?;
    match capstan_model::parse_object_json(&value.to_string()) {
        Ok(Object::AppProject(project)) => Ok(*project),
        Ok(other) => Err(ApiError::invalid(format!(
            "the body is a {}, not an AppProject",
            other.kind()
        ))),
        Err(e) => Err(ApiError::invalid(format!(
            "the AppProject does not parse: {e}"
        ))),
    }
}

/// `value` (a JSON object) with `apiVersion` and `kind` filled in when absent.
pub(crate) fn with_kind(mut value: Value, api_version: &str, kind: &str) -> ApiResult<Value> {
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::invalid(format!(
            "the {kind} is not a JSON object"
        )));
    };
    for (key, default) in [("apiVersion", api_version), ("kind", kind)] {
        if object.get(key).is_none_or(Value::is_null) {
            object.insert(key.to_owned(), Value::String(default.to_owned()));
        }
    }
    Ok(value)
}

/// The spec without any token record (what a create or an update may not set).
fn without_tokens(spec: &AppProjectSpec) -> AppProjectSpec {
    let mut spec = spec.clone();
    for role in &mut spec.roles {
        role.jwt_tokens.clear();
    }
    spec
}

/// Every token record of `role` in `project` (its `jwtTokens` and `status.jwtTokensByRole`,
/// without repeats).
fn tokens_of(project: &AppProject, role: &str) -> Vec<JwtToken> {
    let mut tokens: Vec<JwtToken> = project
        .spec
        .roles
        .iter()
        .filter(|r| r.name == role)
        .flat_map(|r| r.jwt_tokens.iter().cloned())
        .collect();
    if let Some(listed) = project
        .status
        .as_ref()
        .and_then(|s| s.jwt_tokens_by_role.get(role))
    {
        for token in &listed.items {
            if !tokens.contains(token) {
                tokens.push(token.clone());
            }
        }
    }
    tokens
}

/// Sets the token records of every role to `tokens` (role → records; roles not named have
/// none), in the spec and in `status.jwtTokensByRole`.
fn set_tokens(project: &mut AppProject, tokens: &BTreeMap<String, Vec<JwtToken>>) {
    let mut by_role = indexmap::IndexMap::new();
    for role in &mut project.spec.roles {
        role.jwt_tokens = tokens.get(&role.name).cloned().unwrap_or_default();
        if !role.jwt_tokens.is_empty() {
            by_role.insert(
                role.name.clone(),
                JwtTokens {
                    items: role.jwt_tokens.clone(),
                },
            );
        }
    }
    let mut status = project.status.take().unwrap_or_default();
    status.jwt_tokens_by_role = by_role;
    project.status = (status != capstan_model::AppProjectStatus::default()).then_some(status);
}

fn all_tokens(project: &AppProject) -> BTreeMap<String, Vec<JwtToken>> {
    project
        .spec
        .roles
        .iter()
        .map(|r| (r.name.clone(), tokens_of(project, &r.name)))
        .collect()
}

fn seconds_i64(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

impl Api {
    /// Where project `name` lives.
    pub fn project_ref(&self, name: &str) -> ApiResult<ObjectRef> {
        if name.is_empty() {
            return Err(ApiError::invalid("the project's name is missing"));
        }
        Ok(ObjectRef::new(self.config().namespace.as_str(), name))
    }

    fn typed_projects(&self) -> TypedStore<AppProjects> {
        TypedStore::new(self.store().clone())
    }

    /// The project as answered: its namespace and store revision in its metadata.
    fn stamp_project(&self, mut project: AppProject, revision: Option<Revision>) -> AppProject {
        project.metadata.namespace = self.config().namespace.clone();
        project.metadata.resource_version = revision.map(|r| r.to_string()).unwrap_or_default();
        project
    }

    /// Reads from the store (not the copy): the caller may have just written.
    async fn current_project(&self, at: &ObjectRef) -> ApiResult<Current> {
        match self.typed_projects().get(at).await? {
            Some(object) => Ok(Current {
                project: object.spec.value,
                revision: Some(object.spec.mod_revision),
            }),
            None if at.name == DEFAULT_PROJECT => Ok(Current {
                project: implicit_default(),
                revision: None,
            }),
            None => Err(ApiError::not_found(format!("project {:?}", at.name))),
        }
    }

    /// Reads, changes, validates and writes back a project, retrying when it changed
    /// meanwhile (the implicit `default` is created by its first change).
    async fn modify_project(
        &self,
        at: &ObjectRef,
        mut change: impl FnMut(&mut AppProject, Option<Revision>) -> ApiResult<()>,
    ) -> ApiResult<AppProject> {
        for _ in 0..ATTEMPTS {
            let Current {
                mut project,
                revision,
            } = self.current_project(at).await?;
            change(&mut project, revision)?;
            project.metadata.name = at.name.clone();
            project.metadata.namespace = at.namespace.clone();
            project.metadata.resource_version.clear();
            project
                .validate()
                .map_err(|e| ApiError::invalid(format!("the project is invalid: {e}")))?;
            let written = match revision {
                Some(revision) => {
                    self.typed_projects()
                        .update_spec(at, &project, Precondition::ModRevision(revision))
                        .await
                }
                None => self.typed_projects().create(at, &project).await,
            };
            match written {
                Ok(written) => {
                    self.projects()
                        .wait_for_revision(written, READ_YOUR_WRITE)
                        .await;
                    return Ok(self.stamp_project(project, Some(written)));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::not_found(format!("project {:?}", at.name)));
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::new(
            Code::Aborted,
            format!("project {:?} kept changing; try again", at.name),
        ))
    }

    /// Every project the caller may `get`, by name.
    pub fn list_projects(&self, caller: &Caller) -> Vec<AppProject> {
        let namespace = self.config().namespace.as_str();
        let mut projects: Vec<AppProject> = {
            let state = self.projects().read();
            state
                .objects
                .iter()
                .filter(|(at, _)| at.namespace == namespace)
                .filter(|(at, _)| self.can(caller, "projects", "get", &at.name))
                .map(|(_, entry)| {
                    self.stamp_project((*entry.spec).clone(), Some(entry.spec_revision))
                })
                .collect()
        };
        let has_default = projects.iter().any(|p| p.metadata.name == DEFAULT_PROJECT);
        if !has_default && self.can(caller, "projects", "get", DEFAULT_PROJECT) {
            projects.push(self.stamp_project(implicit_default(), None));
            projects.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        }
        projects
    }

    /// One project.
    pub async fn get_project(&self, caller: &Caller, name: &str) -> ApiResult<AppProject> {
        let at = self.project_ref(name)?;
        self.enforce(caller, "projects", "get", name)?;
        let Current { project, revision } = self.current_project(&at).await?;
        Ok(self.stamp_project(project, revision))
    }

    /// The project's sync windows (`spec.syncWindows`).
    pub async fn project_sync_windows(
        &self,
        caller: &Caller,
        name: &str,
    ) -> ApiResult<Vec<SyncWindow>> {
        Ok(self.get_project(caller, name).await?.spec.sync_windows)
    }

    /// Creates a project. An identical one existing already is answered as created; a
    /// different one is an error unless `upsert` (which needs `update` too). Token records in
    /// the body are dropped (issue tokens with [`Api::create_project_token`]).
    pub async fn create_project(
        &self,
        caller: &Caller,
        mut project: AppProject,
        upsert: bool,
    ) -> ApiResult<AppProject> {
        let at = self.project_ref(&project.metadata.name)?;
        self.enforce(caller, "projects", "create", &at.name)?;
        self.check_control_plane_namespace("projects", &project.metadata.namespace)?;
        project.metadata.namespace = at.namespace.clone();
        project.metadata.resource_version.clear();
        project.metadata.deletion_timestamp = None;
        project.spec = without_tokens(&project.spec);
        project.status = None;
        project
            .validate()
            .map_err(|e| ApiError::invalid(format!("the project is invalid: {e}")))?;
        match self.typed_projects().create(&at, &project).await {
            Ok(revision) => {
                self.projects()
                    .wait_for_revision(revision, READ_YOUR_WRITE)
                    .await;
                info!(user = %caller.subject.user, project = %at.name, "project created");
                return Ok(self.stamp_project(project, Some(revision)));
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => return Err(other.into()),
        }
        let existing = self.current_project(&at).await?;
        let same = without_tokens(&existing.project.spec) == project.spec
            && existing.project.metadata.labels == project.metadata.labels
            && existing.project.metadata.annotations == project.metadata.annotations;
        if same {
            return Ok(self.stamp_project(existing.project, existing.revision));
        }
        if !upsert {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!(
                    "project {:?} exists with a different spec; update it, or create with upsert",
                    at.name
                ),
            ));
        }
        self.update_project(caller, project).await
    }

    /// Replaces a project's spec, labels, annotations and finalizers. The roles' token
    /// records stay as stored (for the roles kept). With `metadata.resourceVersion` set, only
    /// if the project was not changed since.
    pub async fn update_project(
        &self,
        caller: &Caller,
        project: AppProject,
    ) -> ApiResult<AppProject> {
        let at = self.project_ref(&project.metadata.name)?;
        self.enforce(caller, "projects", "update", &at.name)?;
        self.check_control_plane_namespace("projects", &project.metadata.namespace)?;
        let expected = match project.metadata.resource_version.as_str() {
            "" => None,
            v => Some(v.parse::<Revision>().map_err(|_| {
                ApiError::invalid(format!("metadata.resourceVersion {v:?} is not a revision"))
            })?),
        };
        let written = self
            .modify_project(&at, |current, revision| {
                if let Some(expected) = expected
                    && revision != Some(expected)
                {
                    return Err(ApiError::new(
                        Code::Aborted,
                        format!(
                            "project {:?} was changed since resourceVersion {expected}; read it again and retry",
                            at.name
                        ),
                    ));
                }
                let tokens = all_tokens(current);
                current.spec = project.spec.clone();
                current.metadata.labels = project.metadata.labels.clone();
                current.metadata.annotations = project.metadata.annotations.clone();
                current.metadata.finalizers = project.metadata.finalizers.clone();
                set_tokens(current, &tokens);
                Ok(())
            })
            .await?;
        info!(user = %caller.subject.user, project = %at.name, "project updated");
        Ok(written)
    }

    /// Deletes a project; refused for `default` and while Applications use it.
    pub async fn delete_project(&self, caller: &Caller, name: &str) -> ApiResult<()> {
        let at = self.project_ref(name)?;
        self.enforce(caller, "projects", "delete", name)?;
        if name == DEFAULT_PROJECT {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                "the default project cannot be deleted",
            ));
        }
        let users: Vec<String> = {
            let state = self.apps().read();
            state
                .objects
                .iter()
                .filter(|(_, entry)| entry.spec.spec.project_or_default() == name)
                .map(|(at, _)| at.to_string())
                .collect()
        };
        if !users.is_empty() {
            let shown: Vec<&str> = users.iter().take(5).map(String::as_str).collect();
            let more = if users.len() > shown.len() {
                ", ..."
            } else {
                ""
            };
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!(
                    "project {name:?} is used by {} application(s) ({}{more}); delete them or move them to another project first",
                    users.len(),
                    shown.join(", ")
                ),
            ));
        }
        match self
            .typed_projects()
            .delete(&at, Precondition::None)
            .await?
        {
            Some(revision) => {
                self.projects()
                    .wait_for_revision(revision, READ_YOUR_WRITE)
                    .await;
                info!(user = %caller.subject.user, project = name, "project deleted");
                Ok(())
            }
            None => Err(ApiError::not_found(format!("project {name:?}"))),
        }
    }

    /// Issues a token for role `role` of `project` (shown only in this answer), valid for
    /// `expires_in` (`None`: no expiry). The token's id is its `jti`, generated: `id` must be
    /// empty (a chosen id could not be the signed token's id, and revocation needs that).
    pub async fn create_project_token(
        &self,
        caller: &Caller,
        project: &str,
        role: &str,
        expires_in: Option<Duration>,
        id: &str,
    ) -> ApiResult<String> {
        let at = self.project_ref(project)?;
        self.enforce(caller, "projects", "update", project)?;
        if !id.is_empty() {
            return Err(ApiError::invalid(
                "a project role token's id is generated (it is the token's jti); leave id empty",
            ));
        }
        if role.is_empty() {
            return Err(ApiError::invalid("the role's name is missing"));
        }
        let (token, claims) = self
            .keys()
            .issue(
                &project_role_subject(project, role),
                &[],
                expires_in,
                SystemTime::now(),
            )
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let record = JwtToken {
            issued_at: seconds_i64(claims.iat),
            expires_at: claims.exp.map_or(0, seconds_i64),
            id: claims.jti.clone(),
        };
        self.modify_project(&at, |current, _| {
            let mut tokens = all_tokens(current);
            let Some(listed) = tokens.get_mut(role) else {
                return Err(ApiError::not_found(format!(
                    "role {role:?} of project {project:?}"
                )));
            };
            if listed.len() >= MAX_ROLE_TOKENS {
                return Err(ApiError::new(
                    Code::ResourceExhausted,
                    format!(
                        "role {role:?} of project {project:?} has {MAX_ROLE_TOKENS} tokens; delete some first"
                    ),
                ));
            }
            listed.push(record.clone());
            set_tokens(current, &tokens);
            Ok(())
        })
        .await?;
        info!(user = %caller.subject.user, project, role, iat = record.issued_at, "project role token created");
        Ok(token)
    }

    /// Deletes (and revokes) the tokens of role `role` of `project` issued at `iat` (only
    /// the one with id `id`, when given).
    pub async fn delete_project_token(
        &self,
        caller: &Caller,
        project: &str,
        role: &str,
        iat: i64,
        id: &str,
    ) -> ApiResult<()> {
        let at = self.project_ref(project)?;
        self.enforce(caller, "projects", "update", project)?;
        let matches = |t: &JwtToken| t.issued_at == iat && (id.is_empty() || t.id == id);
        let current = self.current_project(&at).await?.project;
        if !current.spec.roles.iter().any(|r| r.name == role) {
            return Err(ApiError::not_found(format!(
                "role {role:?} of project {project:?}"
            )));
        }
        let doomed: Vec<JwtToken> = tokens_of(&current, role)
            .into_iter()
            .filter(|t| matches(t))
            .collect();
        if doomed.is_empty() {
            return Err(ApiError::not_found(format!(
                "token issued at {iat} of role {role:?} of project {project:?}"
            )));
        }
        // Revoked first: should removing the record fail, the tokens are refused all the same.
        for token in doomed.iter().filter(|t| !t.id.is_empty()) {
            let expires_at = u64::try_from(token.expires_at).ok().filter(|e| *e > 0);
            self.revoke(&token.id, expires_at).await?;
        }
        self.modify_project(&at, |current, _| {
            let mut tokens = all_tokens(current);
            if let Some(listed) = tokens.get_mut(role) {
                listed.retain(|t| !matches(t));
            }
            set_tokens(current, &tokens);
            Ok(())
        })
        .await?;
        info!(user = %caller.subject.user, project, role, iat, "project role token deleted");
        Ok(())
    }
}
