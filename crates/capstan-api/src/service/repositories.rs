//! Repositories: list, get, create, update, delete, and the connection test.
//!
//! RBAC as in Argo CD (`createRBACObject`): resource `repositories`, object the repository's
//! URL as registered, or `PROJECT/URL` for a repository scoped to a project; actions `get`,
//! `create` (also for the connection test, which makes the repo-server connect), `update`
//! (on the old and the new object when an update moves the repository between projects)
//! and `delete`. A caller who may not act on a URL gets 403 whether or not it is registered.
//!
//! **Names.** A repository is identified by its URL (compared in normal form: scheme and
//! host lower-cased, no trailing `/` or `.git`, no user) and its project. It is stored under
//! `metadata.name` when the body gives one; otherwise under `repo-` and the first 16 hex
//! digits of the SHA-256 of the normal URL, a newline and the project — stable, so
//! registering a URL again finds it, and per project, as one URL may be registered for
//! several projects (Argo CD names its Secrets `repo-<hash of URL and project>` likewise).
//!
//! **Credentials are never answered**: every answer is [`Repository::redacted`]. On update,
//! a credential left empty keeps the stored one, so a client that writes back what it read
//! does not wipe secrets (Argo CD's behaviour) — except where the update changes what the
//! credential belongs to: the password and a bearer token are kept only while `username` is
//! unchanged (and the password only with a username), the TLS client key only while
//! `tlsClientCertData` is unchanged, the GitHub App key only while `githubAppID` is. To
//! remove a credential, delete the repository and register it again.
//!
//! **Connection test** (`validate`, and `forceRefresh` on get and list): the repo-server
//! resolves `HEAD` of the repository with its credentials, bypassing its cache; the answer
//! is a `connectionState` (`Successful`, `Failed` with the reason, or `Unknown` when no
//! repo-server is configured or the type is not Git).

use std::time::{Duration, SystemTime};

use capstan_model::{
    ConnectionState, Object, Repository, RepositorySpec, RepositoryStatus, RepositoryType,
    Sensitive, Timestamp, Validate as _,
};
use capstan_store::kinds::Repositories;
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{Precondition, Revision, StoreError};
use futures::StreamExt as _;
use serde_json::Value;
use sha2::Digest as _;
use tracing::info;

use super::projects::with_kind;
use super::{Api, Caller};
use crate::error::{ApiError, ApiResult, Code};

/// Attempts at a read-modify-write that keeps meeting concurrent changes.
const ATTEMPTS: usize = 5;
/// How long a connection test may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connection tests run at once for a list with `forceRefresh`.
const PARALLEL_TESTS: usize = 8;

/// Credentials to test a connection with instead of the registered ones (Argo CD's
/// `RepoAccessQuery`); empty fields take the registered values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoAccess {
    /// The project the repository is (to be) registered for; empty: none.
    pub project: String,
    /// User name for basic auth.
    pub username: String,
    /// Password or access token for basic auth.
    pub password: Sensitive,
    /// Bearer token.
    pub bearer_token: Sensitive,
}

/// A Repository from JSON; `apiVersion` and `kind` may be left out.
pub fn repository_from_json(value: Value) -> ApiResult<Repository> {
    let value = with_kind(value, capstan_model::CAPSTAN_API_VERSION, Repository::KIND)?;
    match capstan_model::parse_object_json(&value.to_string()) {
        Ok(Object::Repository(repository)) => Ok(*repository),
        Ok(other) => Err(ApiError::invalid(format!(
            "the body is a {}, not a Repository",
            other.kind()
        ))),
        Err(e) => Err(ApiError::invalid(format!(
            "the Repository does not parse: {e}"
        ))),
    }
}

/// The normal form of a repository URL (see the module docs); the trimmed URL for what does
/// not parse as one.
pub fn normalized_url(url: &str) -> String {
    capstan_repo::git::RepoUrl::parse(url).map_or_else(
        |_| url.trim().trim_end_matches('/').to_owned(),
        |u| u.as_str().to_owned(),
    )
}

/// The store name of a repository registered without `metadata.name` (see the module docs).
pub fn repository_store_name(url: &str, project: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{}\n{project}", normalized_url(url)).as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("repo-{hex}")
}

/// The RBAC object of a repository: its URL, or `PROJECT/URL` when scoped to a project.
pub fn repository_rbac_object(url: &str, project: &str) -> String {
    if project.is_empty() {
        url.to_owned()
    } else {
        format!("{project}/{url}")
    }
}

/// `new` with the stored credentials of `old` where `new` leaves them empty (see the module
/// docs for when they are kept).
fn keep_credentials(new: &mut RepositorySpec, old: &RepositorySpec) {
    let same_user = new.username == old.username;
    if new.password.is_empty() && !new.username.is_empty() && same_user {
        new.password = old.password.clone();
    }
    if new.bearer_token.is_empty() && same_user {
        new.bearer_token = old.bearer_token.clone();
    }
    if new.ssh_private_key.is_empty() {
        new.ssh_private_key = old.ssh_private_key.clone();
    }
    if new.tls_client_cert_key.is_empty()
        && !new.tls_client_cert_data.is_empty()
        && new.tls_client_cert_data == old.tls_client_cert_data
    {
        new.tls_client_cert_key = old.tls_client_cert_key.clone();
    }
    if new.github_app_private_key.is_empty()
        && new.github_app_id != 0
        && new.github_app_id == old.github_app_id
    {
        new.github_app_private_key = old.github_app_private_key.clone();
    }
    if new.gcp_service_account_key.is_empty() {
        new.gcp_service_account_key = old.gcp_service_account_key.clone();
    }
}

/// `message` with every credential of `spec` replaced (an error may quote what it was given).
fn scrub(message: &str, spec: &RepositorySpec) -> String {
    let mut message = message.to_owned();
    for secret in [
        &spec.password,
        &spec.bearer_token,
        &spec.ssh_private_key,
        &spec.tls_client_cert_key,
        &spec.github_app_private_key,
        &spec.gcp_service_account_key,
    ] {
        if secret.expose().len() >= 4 {
            message = message.replace(secret.expose(), "<redacted>");
        }
    }
    message
}

pub(crate) fn now_timestamp() -> Timestamp {
    Timestamp::new(humantime::format_rfc3339_seconds(SystemTime::now()).to_string())
}

/// A registered repository as read.
struct Found {
    at: ObjectRef,
    repository: Repository,
    revision: Revision,
}

impl Api {
    fn typed_repositories(&self) -> TypedStore<Repositories> {
        TypedStore::new(self.store().clone())
    }

    /// The registered repositories, from the store (lists are small; reads see every write).
    async fn registered_repositories(&self) -> ApiResult<Vec<Found>> {
        let listed = self
            .typed_repositories()
            .list(Some(self.config().namespace.as_str()))
            .await?;
        Ok(listed
            .items
            .into_iter()
            .map(|o| Found {
                at: o.object,
                repository: o.spec.value,
                revision: o.spec.mod_revision,
            })
            .collect())
    }

    /// The repository registered for `url` and `project` (`None`: the one without project
    /// if any, else the first for any project).
    async fn find_repository(&self, url: &str, project: Option<&str>) -> ApiResult<Option<Found>> {
        let wanted = normalized_url(url);
        let mut candidates: Vec<Found> = self
            .registered_repositories()
            .await?
            .into_iter()
            .filter(|f| normalized_url(&f.repository.spec.url) == wanted)
            .filter(|f| project.is_none_or(|p| f.repository.spec.project == p))
            .collect();
        candidates.sort_by_key(|f| !f.repository.spec.project.is_empty());
        Ok(candidates.into_iter().next())
    }

    /// A missing repository is "not found" only to a caller who could `action` it; to others
    /// it is "permission denied", as for one that exists.
    fn missing_repository(
        &self,
        caller: &Caller,
        action: &str,
        url: &str,
        project: &str,
    ) -> ApiError {
        let object = repository_rbac_object(url, project);
        if self.can(caller, "repositories", action, &object) {
            ApiError::not_found(format!("repository {url:?}"))
        } else {
            ApiError::denied("repositories", action, &object)
        }
    }

    /// The repository as answered: no credentials, its namespace and revision, and the
    /// connection state when tested.
    fn answer_repository(
        &self,
        repository: &Repository,
        revision: Revision,
        state: Option<ConnectionState>,
    ) -> Repository {
        let mut answer = repository.redacted();
        answer.metadata.namespace = self.config().namespace.clone();
        answer.metadata.resource_version = revision.to_string();
        answer.status = state.map(|connection_state| RepositoryStatus {
            connection_state,
            inherited_creds: false,
        });
        answer
    }

    /// Tests whether the repo-server can read the repository `spec` describes, with its
    /// credentials.
    pub async fn test_repository_connection(&self, spec: &RepositorySpec) -> ConnectionState {
        let state = |status: &str, message: String| ConnectionState {
            status: status.to_owned(),
            message,
            attempted_at: Some(now_timestamp()),
        };
        let Some(manifests) = self.manifests() else {
            return state(
                "Unknown",
                "no repo-server is configured, so connections cannot be tested".to_owned(),
            );
        };
        let kind = spec.repo_type_or_default();
        if kind != RepositoryType::Git {
            return state(
                "Unknown",
                format!(
                    "connection tests cover Git repositories; this one is of type {}",
                    kind.as_str()
                ),
            );
        }
        let credentials = capstan_repo::registered::git_credentials(spec);
        let resolved = tokio::time::timeout(
            CONNECTION_TIMEOUT,
            manifests.resolve_commit(&spec.url, &credentials, "HEAD", true),
        )
        .await;
        match resolved {
            Ok(Ok(_)) => state("Successful", String::new()),
            Ok(Err(error)) => state("Failed", scrub(&error.message, spec)),
            Err(_) => state(
                "Failed",
                format!("no answer within {} s", CONNECTION_TIMEOUT.as_secs()),
            ),
        }
    }

    /// Every repository the caller may `get`; with `force_refresh`, each with a connection
    /// test.
    pub async fn list_repositories(
        &self,
        caller: &Caller,
        force_refresh: bool,
    ) -> ApiResult<Vec<Repository>> {
        let visible: Vec<Found> = self
            .registered_repositories()
            .await?
            .into_iter()
            .filter(|f| {
                let spec = &f.repository.spec;
                self.can(
                    caller,
                    "repositories",
                    "get",
                    &repository_rbac_object(&spec.url, &spec.project),
                )
            })
            .collect();
        if !force_refresh {
            return Ok(visible
                .iter()
                .map(|f| self.answer_repository(&f.repository, f.revision, None))
                .collect());
        }
        let answers = futures::stream::iter(visible)
            .map(|f| async move {
                let state = self.test_repository_connection(&f.repository.spec).await;
                (f, state)
            })
            .buffered(PARALLEL_TESTS)
            .map(|(f, state)| self.answer_repository(&f.repository, f.revision, Some(state)))
            .collect()
            .await;
        Ok(answers)
    }

    /// The repository registered for `url` (for `project`, when given); with
    /// `force_refresh`, with a connection test.
    pub async fn get_repository(
        &self,
        caller: &Caller,
        url: &str,
        project: Option<&str>,
        force_refresh: bool,
    ) -> ApiResult<Repository> {
        let found = self.find_repository(url, project).await?.ok_or_else(|| {
            self.missing_repository(caller, "get", url, project.unwrap_or_default())
        })?;
        let spec = &found.repository.spec;
        self.enforce(
            caller,
            "repositories",
            "get",
            &repository_rbac_object(&spec.url, &spec.project),
        )?;
        let state = if force_refresh {
            Some(self.test_repository_connection(spec).await)
        } else {
            None
        };
        Ok(self.answer_repository(&found.repository, found.revision, state))
    }

    /// Registers a repository. One registered already for the URL and project is answered
    /// when it is the same (credentials left empty count as the stored ones); a different
    /// one is an error unless `upsert` (which needs `update` too).
    pub async fn create_repository(
        &self,
        caller: &Caller,
        mut repository: Repository,
        upsert: bool,
    ) -> ApiResult<Repository> {
        if repository.spec.url.trim().is_empty() {
            return Err(ApiError::invalid("the repository's url is missing"));
        }
        let object = repository_rbac_object(&repository.spec.url, &repository.spec.project);
        self.enforce(caller, "repositories", "create", &object)?;
        self.check_control_plane_namespace("repositories", &repository.metadata.namespace)?;
        repository.status = None;
        repository.metadata.resource_version.clear();
        repository.metadata.deletion_timestamp = None;
        let existing = self
            .find_repository(&repository.spec.url, Some(&repository.spec.project))
            .await?;
        if let Some(found) = existing {
            let mut merged = repository.spec.clone();
            keep_credentials(&mut merged, &found.repository.spec);
            let same = merged == found.repository.spec
                && repository.metadata.labels == found.repository.metadata.labels
                && repository.metadata.annotations == found.repository.metadata.annotations;
            if same {
                return Ok(self.answer_repository(&found.repository, found.revision, None));
            }
            if !upsert {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    format!(
                        "repository {:?} is registered with a different spec; update it, or create with upsert",
                        repository.spec.url
                    ),
                ));
            }
            repository.metadata.name.clear();
            return self.update_repository(caller, repository).await;
        }
        if repository.metadata.name.is_empty() {
            repository.metadata.name =
                repository_store_name(&repository.spec.url, &repository.spec.project);
        }
        repository.metadata.namespace = self.config().namespace.clone();
        repository
            .validate()
            .map_err(|e| ApiError::invalid(format!("the repository is invalid: {e}")))?;
        let at = ObjectRef::new(
            self.config().namespace.as_str(),
            repository.metadata.name.as_str(),
        );
        match self.typed_repositories().create(&at, &repository).await {
            Ok(revision) => {
                info!(user = %caller.subject.user, repository = %repository.spec.url, name = %at.name, "repository registered");
                Ok(self.answer_repository(&repository, revision, None))
            }
            Err(StoreError::Conflict { .. }) => Err(ApiError::new(
                Code::AlreadyExists,
                format!(
                    "a repository named {:?} is registered already; choose another metadata.name or leave it empty",
                    at.name
                ),
            )),
            Err(other) => Err(other.into()),
        }
    }

    /// Replaces a registered repository's spec, labels and annotations; the one registered
    /// for the body's URL and project. Credentials left empty keep the stored ones (see the
    /// module docs). With `metadata.resourceVersion` set, only if it was not changed since.
    pub async fn update_repository(
        &self,
        caller: &Caller,
        repository: Repository,
    ) -> ApiResult<Repository> {
        let url = repository.spec.url.clone();
        if url.trim().is_empty() {
            return Err(ApiError::invalid("the repository's url is missing"));
        }
        let project = repository.spec.project.clone();
        self.enforce(
            caller,
            "repositories",
            "update",
            &repository_rbac_object(&url, &project),
        )?;
        self.check_control_plane_namespace("repositories", &repository.metadata.namespace)?;
        let expected = match repository.metadata.resource_version.as_str() {
            "" => None,
            v => Some(v.parse::<Revision>().map_err(|_| {
                ApiError::invalid(format!("metadata.resourceVersion {v:?} is not a revision"))
            })?),
        };
        for _ in 0..ATTEMPTS {
            // The one for this project, else (moving it into a project) the one for none.
            let found = match self.find_repository(&url, Some(&project)).await? {
                Some(found) => Some(found),
                None if !project.is_empty() => self.find_repository(&url, Some("")).await?,
                None => None,
            };
            let found =
                found.ok_or_else(|| self.missing_repository(caller, "update", &url, &project))?;
            let old = &found.repository;
            self.enforce(
                caller,
                "repositories",
                "update",
                &repository_rbac_object(&old.spec.url, &old.spec.project),
            )?;
            if !repository.metadata.name.is_empty() && repository.metadata.name != found.at.name {
                return Err(ApiError::invalid(format!(
                    "the repository for {url:?} is stored as {:?}, not {:?}",
                    found.at.name, repository.metadata.name
                )));
            }
            if let Some(expected) = expected
                && expected != found.revision
            {
                return Err(ApiError::new(
                    Code::Aborted,
                    format!(
                        "repository {url:?} was changed since resourceVersion {expected}; read it again and retry"
                    ),
                ));
            }
            let mut updated = old.clone();
            updated.spec = repository.spec.clone();
            keep_credentials(&mut updated.spec, &old.spec);
            updated.metadata.labels = repository.metadata.labels.clone();
            updated.metadata.annotations = repository.metadata.annotations.clone();
            updated.metadata.namespace = found.at.namespace.clone();
            updated.metadata.resource_version.clear();
            updated.status = None;
            updated
                .validate()
                .map_err(|e| ApiError::invalid(format!("the repository is invalid: {e}")))?;
            match self
                .typed_repositories()
                .update_spec(
                    &found.at,
                    &updated,
                    Precondition::ModRevision(found.revision),
                )
                .await
            {
                Ok(revision) => {
                    info!(user = %caller.subject.user, repository = %url, name = %found.at.name, "repository updated");
                    return Ok(self.answer_repository(&updated, revision, None));
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::new(
            Code::Aborted,
            format!("repository {url:?} kept changing; try again"),
        ))
    }

    /// Unregisters the repository for `url` (for `project`, when given).
    pub async fn delete_repository(
        &self,
        caller: &Caller,
        url: &str,
        project: Option<&str>,
    ) -> ApiResult<()> {
        let found = self.find_repository(url, project).await?.ok_or_else(|| {
            self.missing_repository(caller, "delete", url, project.unwrap_or_default())
        })?;
        let spec = &found.repository.spec;
        self.enforce(
            caller,
            "repositories",
            "delete",
            &repository_rbac_object(&spec.url, &spec.project),
        )?;
        match self
            .typed_repositories()
            .delete(&found.at, Precondition::None)
            .await?
        {
            Some(_) => {
                info!(user = %caller.subject.user, repository = %spec.url, name = %found.at.name, "repository deleted");
                Ok(())
            }
            None => Err(ApiError::not_found(format!("repository {url:?}"))),
        }
    }

    /// Tests a connection to `url`: with the registered repository's credentials, replaced
    /// by those `access` gives (so a repository can be tested before it is registered).
    /// Needs `repositories, create`.
    pub async fn validate_repository(
        &self,
        caller: &Caller,
        url: &str,
        access: RepoAccess,
    ) -> ApiResult<ConnectionState> {
        if url.trim().is_empty() {
            return Err(ApiError::invalid("the repository's url is missing"));
        }
        self.enforce(
            caller,
            "repositories",
            "create",
            &repository_rbac_object(url, &access.project),
        )?;
        let mut spec = self
            .find_repository(url, Some(&access.project))
            .await?
            .map(|f| f.repository.spec)
            .unwrap_or_else(|| RepositorySpec {
                url: url.to_owned(),
                project: access.project.clone(),
                ..RepositorySpec::default()
            });
        if !access.username.is_empty() || !access.password.is_empty() {
            spec.username = access.username;
            spec.password = access.password;
            spec.bearer_token = Sensitive::default();
        }
        if !access.bearer_token.is_empty() {
            spec.bearer_token = access.bearer_token;
        }
        Ok(self.test_repository_connection(&spec).await)
    }
}
