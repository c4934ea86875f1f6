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
//!
//! The steps this shares with clusters (reading, creating, updating and deleting a
//! registration) are in the `registry` module; what is particular to repositories is here.

use std::time::{Duration, SystemTime};

use capstan_model::{
    ConnectionState, Object, Repository, RepositorySpec, RepositoryStatus, RepositoryType,
    Sensitive, Timestamp,
};
use capstan_store::Revision;
use capstan_store::kinds::Repositories;
use futures::StreamExt as _;
use serde_json::Value;
use tracing::info;

pub use super::registry::rbac_object as repository_rbac_object;
use super::registry::{
    Found, Registering, Registration, check_stored_name, digest_hex, keep_stored, registering,
    registration_fields,
};
use super::{Api, Caller};
use crate::error::{ApiError, ApiResult};

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
    super::registry::from_json(value)
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
    let hex = digest_hex(&format!("{}\n{project}", normalized_url(url)), 8);
    format!("repo-{hex}")
}

/// `new` with the stored credentials of `old` where `new` leaves them empty (see the module
/// docs for when they are kept).
fn keep_credentials(new: &mut RepositorySpec, old: &RepositorySpec) {
    let same_user = new.username == old.username;
    let password_user = !new.username.is_empty() && same_user;
    let same_cert = !new.tls_client_cert_data.is_empty()
        && new.tls_client_cert_data == old.tls_client_cert_data;
    let same_app = new.github_app_id != 0 && new.github_app_id == old.github_app_id;
    keep_stored([
        (&mut new.password, &old.password, password_user),
        (&mut new.bearer_token, &old.bearer_token, same_user),
        (&mut new.ssh_private_key, &old.ssh_private_key, true),
        (
            &mut new.tls_client_cert_key,
            &old.tls_client_cert_key,
            same_cert,
        ),
        (
            &mut new.github_app_private_key,
            &old.github_app_private_key,
            same_app,
        ),
        (
            &mut new.gcp_service_account_key,
            &old.gcp_service_account_key,
            true,
        ),
    ]);
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

impl Registration for Repository {
    type Kind = Repositories;
    type Spec = RepositorySpec;
    const KIND: &'static str = Repository::KIND;
    const RESOURCE: &'static str = "repositories";
    const NOUN: &'static str = "repository";
    const TARGET: &'static str = "url";

    fn from_object(object: Object) -> Result<Self, Object> {
        match object {
            Object::Repository(repository) => Ok(*repository),
            other => Err(other),
        }
    }

    registration_fields!(RepositorySpec);

    fn target(&self) -> &str {
        &self.spec.url
    }

    fn store_name(&self) -> String {
        repository_store_name(&self.spec.url, &self.spec.project)
    }

    fn keep_credentials(new: &mut RepositorySpec, old: &RepositorySpec) {
        keep_credentials(new, old);
    }
}

impl Api {
    /// The repository registered for `url` and `project` (`None`: the one without project
    /// if any, else the first for any project).
    async fn find_repository(
        &self,
        url: &str,
        project: Option<&str>,
    ) -> ApiResult<Option<Found<Repository>>> {
        let wanted = normalized_url(url);
        let mut candidates: Vec<Found<Repository>> = self
            .registered::<Repository>()
            .await?
            .into_iter()
            .filter(|f| normalized_url(&f.object.spec.url) == wanted)
            .filter(|f| project.is_none_or(|p| f.object.spec.project == p))
            .collect();
        candidates.sort_by_key(|f| !f.object.spec.project.is_empty());
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
        self.missing::<Repository>(caller, action, &object, format!("repository {url:?}"))
    }

    /// The repository registered for `url` (for `project`, when given), or
    /// [`Api::missing_repository`].
    async fn found_repository(
        &self,
        caller: &Caller,
        action: &str,
        url: &str,
        project: Option<&str>,
    ) -> ApiResult<Found<Repository>> {
        self.find_repository(url, project).await?.ok_or_else(|| {
            self.missing_repository(caller, action, url, project.unwrap_or_default())
        })
    }

    /// The repository an update for `url` and `project` replaces: the one for this project,
    /// else (moving it into a project) the one for none.
    async fn repository_to_update(
        &self,
        caller: &Caller,
        url: &str,
        project: &str,
    ) -> ApiResult<Found<Repository>> {
        let found = match self.find_repository(url, Some(project)).await? {
            Some(found) => Some(found),
            None if !project.is_empty() => self.find_repository(url, Some("")).await?,
            None => None,
        };
        found.ok_or_else(|| self.missing_repository(caller, "update", url, project))
    }

    /// The repository as answered: no credentials, its namespace and revision, and the
    /// connection state when tested.
    fn answer_repository(
        &self,
        repository: &Repository,
        revision: Revision,
        state: Option<ConnectionState>,
    ) -> Repository {
        let mut answer = self.answered(repository, revision);
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
        let Some(manifests) = self.manifest_source() else {
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
        let visible = self.visible::<Repository>(caller).await?;
        if !force_refresh {
            return Ok(visible
                .iter()
                .map(|f| self.answer_repository(&f.object, f.revision, None))
                .collect());
        }
        let answers = futures::stream::iter(visible)
            .map(|f| async move {
                let state = self.test_repository_connection(&f.object.spec).await;
                (f, state)
            })
            .buffered(PARALLEL_TESTS)
            .map(|(f, state)| self.answer_repository(&f.object, f.revision, Some(state)))
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
        let found = self.found_repository(caller, "get", url, project).await?;
        self.enforce_on(caller, "get", &found.object)?;
        let spec = &found.object.spec;
        let state = if force_refresh {
            Some(self.test_repository_connection(spec).await)
        } else {
            None
        };
        Ok(self.answer_repository(&found.object, found.revision, state))
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
        self.admit(caller, &mut repository)?;
        let existing = self
            .find_repository(&repository.spec.url, Some(&repository.spec.project))
            .await?;
        match registering(repository, existing, upsert)? {
            Registering::Same(found) => {
                Ok(self.answer_repository(&found.object, found.revision, None))
            }
            Registering::Update(repository) => self.update_repository(caller, repository).await,
            Registering::New(mut repository) => {
                let (at, revision) = self.store_new(&mut repository).await?;
                info!(user = %caller.subject.user, repository = %repository.spec.url, name = %at.name, "repository registered");
                Ok(self.answer_repository(&repository, revision, None))
            }
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
        let what = format!("repository {url:?}");
        let (found, updated, revision) = self
            .update_registered(
                caller,
                &repository,
                &what,
                || self.repository_to_update(caller, &url, &project),
                |found| {
                    check_stored_name(
                        &format!("the repository for {url:?}"),
                        &repository.metadata.name,
                        &found.at,
                    )
                },
            )
            .await?;
        info!(user = %caller.subject.user, repository = %url, name = %found.at.name, "repository updated");
        Ok(self.answer_repository(&updated, revision, None))
    }

    /// Unregisters the repository for `url` (for `project`, when given).
    pub async fn delete_repository(
        &self,
        caller: &Caller,
        url: &str,
        project: Option<&str>,
    ) -> ApiResult<()> {
        let found = self
            .found_repository(caller, "delete", url, project)
            .await?;
        self.delete_registered(caller, &found, &format!("repository {url:?}"))
            .await?;
        info!(user = %caller.subject.user, repository = %found.object.spec.url, name = %found.at.name, "repository deleted");
        Ok(())
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
            .map(|f| f.object.spec)
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
