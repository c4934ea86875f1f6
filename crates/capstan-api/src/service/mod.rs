//! The one implementation of every API method. The gRPC ([`crate::grpc`]) and REST
//! ([`crate::rest`]) adapters only translate requests and answers; authentication,
//! authorization, validation and store access all happen here, so the two transports cannot
//! disagree.
//!
//! Every method takes the [`Caller`] (who asks, already authenticated) first and checks RBAC
//! itself: there is no route that forgets to.

pub mod accounts;
pub mod applications;
pub mod clusters;
pub mod live;
pub mod projects;
mod registry;
pub mod repositories;
pub mod session;
pub mod webhooks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_repo::client::ManifestSource;
use capstan_store::Store;
use capstan_store::kinds::{AppProjects, Applications};
use capstan_store::typed::TypedStore;
use tracing::info;

use crate::accounts::{ADMIN, AccountConfig, Accounts, Capability, Revocations};
use crate::auth::limits::LoginLimiter;
use crate::auth::sessions::SessionKeys;
use crate::error::{ApiError, ApiResult};
use crate::live::LiveState;
use crate::mirror::Mirror;
use crate::rbac::{Policy, RolePolicy, Subject};
use crate::webhook::{AppIndex, WebhookSecrets};

/// How the API is set up (flags of `capstand api` and the all-in-one).
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The control plane's namespace: where Applications are created when they name none,
    /// and the namespace whose Applications RBAC names as `project/app` (others are
    /// `project/namespace/app`, as in Argo CD).
    pub namespace: String,
    /// How long a session (a login) lasts.
    pub session_ttl: Duration,
    /// Local accounts besides `admin`.
    pub accounts: Vec<AccountConfig>,
    /// Whether the `admin` account may be used.
    pub admin_enabled: bool,
    /// RBAC: `policy.csv` lines and `policy.default`, parsed.
    pub policy: Arc<Policy>,
    /// Webhook secrets per provider.
    pub webhook: WebhookSecrets,
    /// What the settings method tells clients before they log in.
    pub public: PublicSettings,
    /// What runs in the clusters, for managed resources, diffs, resource trees and events:
    /// the controller's view, given by the all-in-one ([`crate::live`]). `None`: those
    /// methods answer Unavailable.
    pub live: Option<Arc<dyn LiveState>>,
}

impl ApiConfig {
    /// Defaults: namespace `capstan`, 24 h sessions, only `admin`, the built-in policy.
    pub fn new(policy: Policy) -> Self {
        ApiConfig {
            namespace: "capstan".to_owned(),
            session_ttl: Duration::from_secs(24 * 3600),
            accounts: Vec::new(),
            admin_enabled: true,
            policy: Arc::new(policy),
            webhook: WebhookSecrets::default(),
            public: PublicSettings::default(),
            live: None,
        }
    }

    /// The configuration of account `name` (`admin` included).
    pub fn account(&self, name: &str) -> Option<AccountConfig> {
        if name == ADMIN {
            return Some(AccountConfig {
                name: ADMIN.to_owned(),
                capabilities: vec![Capability::Login],
                enabled: self.admin_enabled,
            });
        }
        self.accounts.iter().find(|a| a.name == name).cloned()
    }

    /// Every configured account, `admin` first.
    pub fn all_accounts(&self) -> Vec<AccountConfig> {
        let mut all: Vec<AccountConfig> = self.account(ADMIN).into_iter().collect();
        all.extend(self.accounts.iter().filter(|a| a.name != ADMIN).cloned());
        all
    }
}

/// What clients may know before logging in (`GET /api/v1/settings`): where the API is, and
/// how to sign in by SSO (the CLI's `login --sso` reads this).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicSettings {
    /// The URL users reach the API at.
    pub url: String,
    /// Single sign-on, when configured.
    pub oidc: Option<PublicOidc>,
}

/// The public part of the single sign-on configuration (never the client secret).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicOidc {
    /// The provider's issuer URL.
    pub issuer: String,
    /// The API's client id.
    pub client_id: String,
    /// The CLI's client id (the API's when empty).
    pub cli_client_id: String,
    /// Scopes to ask for besides `openid`.
    pub scopes: Vec<String>,
}

impl Api {
    /// The settings answer, in Argo CD's field names.
    pub fn settings(&self) -> serde_json::Value {
        let config = self.config();
        let public = &config.public;
        let logins = config
            .all_accounts()
            .iter()
            .any(|a| a.enabled && a.can(Capability::Login));
        let mut settings = serde_json::json!({
            "url": public.url,
            "controllerNamespace": config.namespace,
            "userLoginsDisabled": !logins,
        });
        if let Some(oidc) = &public.oidc {
            settings["oidcConfig"] = serde_json::json!({
                "name": "SSO",
                "issuer": oidc.issuer,
                "clientID": oidc.client_id,
                "cliClientID": if oidc.cli_client_id.is_empty() { &oidc.client_id } else { &oidc.cli_client_id },
                "scopes": oidc.scopes,
            });
        }
        settings
    }
}

/// Who is calling, as established from their token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// User and groups, for RBAC.
    pub subject: Subject,
    /// The token's id (for logout).
    pub token_id: String,
    /// The token's expiry, if any.
    pub expires_at: Option<u64>,
    /// Project roles the caller acts in: for a project role's token (subject
    /// `proj:PROJECT:ROLE`) that role; for a user, the roles whose `groups` name one of the
    /// user's groups (SSO groups bound to project roles). Their policy lines that count,
    /// read from the projects when the token was checked; RBAC judges the caller by them and
    /// the global policy together ([`Policy::enforce_with`]).
    pub roles: Vec<Arc<RolePolicy>>,
}

/// The API: shared state of every method. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("namespace", &self.inner.config.namespace)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    config: ApiConfig,
    keys: SessionKeys,
    apps: Mirror<Applications, AppIndex>,
    projects: Mirror<AppProjects>,
    accounts: Mirror<Accounts>,
    revoked: Mirror<Revocations>,
    manifests: Option<Arc<dyn ManifestSource>>,
    limiter: Mutex<LoginLimiter>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What [`Api::start`] hands back besides the API.
#[derive(Debug)]
pub struct Started {
    /// The API.
    pub api: Api,
    /// The `admin` password, when this start created the account (first start): show it to
    /// the operator once; it is not kept anywhere in clear.
    pub initial_admin_password: Option<String>,
}

/// Argo CD's control-plane namespace: objects written for Argo CD name it, meaning ours.
const ARGOCD_NAMESPACE: &str = "argocd";

/// How long a start waits for the first listing of the store.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

impl Api {
    /// Starts the API over `store`: loads (or, on first start, creates) the session secret
    /// and the `admin` account, and starts following the store. `manifests` renders
    /// Applications for the manifests method (absent: that method answers Unavailable).
    pub async fn start(
        store: Arc<dyn Store>,
        manifests: Option<Arc<dyn ManifestSource>>,
        config: ApiConfig,
    ) -> ApiResult<Started> {
        let keys = session::load_or_create_keys(&store, &config.namespace).await?;
        let initial_admin_password = if config.admin_enabled {
            session::create_admin_if_missing(&store, &config.namespace).await?
        } else {
            None
        };
        let (apps, apps_task) = Mirror::start(TypedStore::new(store.clone()));
        let (projects, projects_task) = Mirror::start(TypedStore::new(store.clone()));
        let (accounts, accounts_task) = Mirror::start(TypedStore::new(store.clone()));
        let (revoked, revoked_task) = Mirror::start(TypedStore::new(store.clone()));
        for synced in [
            apps.wait_synced(SYNC_TIMEOUT).await,
            projects.wait_synced(SYNC_TIMEOUT).await,
            accounts.wait_synced(SYNC_TIMEOUT).await,
            revoked.wait_synced(SYNC_TIMEOUT).await,
        ] {
            if !synced {
                return Err(ApiError::new(
                    crate::error::Code::Unavailable,
                    "the store did not answer the first listing in time",
                ));
            }
        }
        info!(
            applications = apps.read().objects.len(),
            accounts = config.all_accounts().len(),
            "API ready"
        );
        Ok(Started {
            api: Api {
                inner: Arc::new(Inner {
                    store,
                    config,
                    keys,
                    apps,
                    projects,
                    accounts,
                    revoked,
                    manifests,
                    limiter: Mutex::new(LoginLimiter::default()),
                    tasks: vec![apps_task, projects_task, accounts_task, revoked_task],
                }),
            },
            initial_admin_password,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// What renders Applications (the repo-server), if any.
    pub fn manifest_source(&self) -> Option<&Arc<dyn ManifestSource>> {
        self.inner.manifests.as_ref()
    }

    /// The mirrored Applications with the webhook index.
    pub fn apps(&self) -> &Mirror<Applications, AppIndex> {
        &self.inner.apps
    }

    /// The mirrored AppProjects (what authentication reads for project role tokens).
    pub fn projects(&self) -> &Mirror<AppProjects> {
        &self.inner.projects
    }

    /// Projects, repositories and clusters live in the control plane's namespace: a body
    /// (of a `kind`) may name it, Argo CD's (`argocd`), or none.
    pub(crate) fn check_control_plane_namespace(
        &self,
        kind: &str,
        namespace: &str,
    ) -> ApiResult<()> {
        let ours = self.inner.config.namespace.as_str();
        if namespace.is_empty() || namespace == ARGOCD_NAMESPACE || namespace == ours {
            Ok(())
        } else {
            Err(ApiError::invalid(format!(
                "{kind} live in the control plane's namespace {ours:?}, not {namespace:?}"
            )))
        }
    }

    /// Allowed, or a PermissionDenied naming the permission.
    pub fn enforce(
        &self,
        caller: &Caller,
        resource: &str,
        action: &str,
        object: &str,
    ) -> ApiResult<()> {
        if self.can(caller, resource, action, object) {
            Ok(())
        } else {
            Err(ApiError::denied(resource, action, object))
        }
    }

    /// Whether allowed: by the global policy, and for a project role's token also by the
    /// policy lines of the project roles it acts in ([`Caller::roles`]).
    pub fn can(&self, caller: &Caller, resource: &str, action: &str, object: &str) -> bool {
        self.inner.config.policy.enforce_with(
            &caller.subject,
            &caller.roles,
            resource,
            action,
            object,
        )
    }
}
