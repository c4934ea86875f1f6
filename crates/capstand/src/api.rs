//! The API tier inside a `capstand` process: its flags, and starting and stopping its
//! listener. The API itself is `capstan-api`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use capstan_api::accounts::AccountConfig;
use capstan_api::rbac::Policy;
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig};
use capstan_api::webhook::WebhookSecrets;
use capstan_repo::client::ManifestSource;
use capstan_store::Store;
use tracing::{info, warn};

use crate::units::parse_duration;

/// The file the generated `admin` password is written to, in the data directory.
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Flags of the API (shared by every command that serves it).
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// RBAC policy in Argo CD's `policy.csv` format (`p, SUBJECT, RESOURCE, ACTION, OBJECT,
    /// allow|deny` and `g, USER-OR-GROUP, ROLE` lines). Built in: `role:admin`,
    /// `role:readonly`, and `g, admin, role:admin`.
    #[arg(long, value_name = "FILE", env = "CAPSTAN_RBAC_POLICY")]
    rbac_policy: Option<PathBuf>,
    /// The role every authenticated user has besides their own (Argo CD's
    /// `policy.default`), e.g. `role:readonly`. Default: none.
    #[arg(long, value_name = "ROLE", env = "CAPSTAN_RBAC_DEFAULT_ROLE")]
    rbac_default_role: Option<String>,
    /// A local account besides `admin`: NAME=CAPABILITIES with capabilities `login`
    /// (password) and `apiKey` (API tokens), e.g. `alice=login` or `ci-bot=apiKey`
    /// (Argo CD's `accounts.NAME`). Repeat for more. Set a password with the API
    /// (`PUT /api/v1/account/password` as admin).
    #[arg(
        long = "account",
        value_name = "NAME=CAPS",
        env = "CAPSTAN_ACCOUNTS",
        value_delimiter = ','
    )]
    accounts: Vec<AccountConfig>,
    /// Turn the `admin` account off (once other accounts or SSO can administer).
    #[arg(long, env = "CAPSTAN_ADMIN_DISABLED")]
    admin_disabled: bool,
    /// How long a login lasts.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration, env = "CAPSTAN_SESSION_TTL")]
    session_ttl: Duration,
    /// The GitHub webhook secret (verifies `X-Hub-Signature-256`). Without it GitHub
    /// deliveries are accepted unsigned.
    #[arg(
        long,
        value_name = "SECRET",
        env = "CAPSTAN_WEBHOOK_GITHUB_SECRET",
        hide_env_values = true
    )]
    webhook_github_secret: Option<String>,
    /// The GitLab webhook secret token (`X-Gitlab-Token`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "CAPSTAN_WEBHOOK_GITLAB_SECRET",
        hide_env_values = true
    )]
    webhook_gitlab_secret: Option<String>,
    /// The Gitea webhook secret (`X-Gitea-Signature`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "CAPSTAN_WEBHOOK_GITEA_SECRET",
        hide_env_values = true
    )]
    webhook_gitea_secret: Option<String>,
    /// The Bitbucket Server webhook secret (`X-Hub-Signature`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "CAPSTAN_WEBHOOK_BITBUCKET_SERVER_SECRET",
        hide_env_values = true
    )]
    webhook_bitbucket_server_secret: Option<String>,
    /// The Bitbucket Cloud webhook UUID (`X-Hook-UUID`).
    #[arg(
        long,
        value_name = "UUID",
        env = "CAPSTAN_WEBHOOK_BITBUCKET_UUID",
        hide_env_values = true
    )]
    webhook_bitbucket_uuid: Option<String>,
}

impl ApiArgs {
    /// The API configuration the flags describe (reads the policy file).
    pub fn config(&self) -> anyhow::Result<ApiConfig> {
        let csv = match &self.rbac_policy {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading --rbac-policy {}", path.display()))?,
            None => String::new(),
        };
        let policy = Policy::parse(&csv, self.rbac_default_role.as_deref()).map_err(|e| {
            anyhow::anyhow!(
                "--rbac-policy {}: {e}",
                self.rbac_policy
                    .as_deref()
                    .map_or_else(|| "(none)".into(), |p| p.display().to_string())
            )
        })?;
        let mut config = ApiConfig::new(policy);
        config.session_ttl = self.session_ttl;
        config.accounts = self.accounts.clone();
        config.admin_enabled = !self.admin_disabled;
        let secret = |s: &Option<String>| s.clone().unwrap_or_default();
        config.webhook = WebhookSecrets {
            github: secret(&self.webhook_github_secret),
            gitlab: secret(&self.webhook_gitlab_secret),
            gitea: secret(&self.webhook_gitea_secret),
            bitbucket_server: secret(&self.webhook_bitbucket_server_secret),
            bitbucket_uuid: secret(&self.webhook_bitbucket_uuid),
        };
        Ok(config)
    }
}

/// A running API listener.
#[derive(Debug)]
pub struct ApiHandle {
    /// Where it listens (the port chosen when `:0` was asked for).
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ApiHandle {
    /// Waits for the listener to finish after its shutdown signal, at most `grace` (open
    /// watch streams would otherwise hold it forever).
    pub async fn stop(self, grace: Duration) {
        let mut task = self.task;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "the API listener failed"),
            Ok(Err(e)) => warn!(error = %e, "the API task failed"),
            Err(_) => {
                warn!("API requests still open after the grace period; closing them");
                task.abort();
            }
        }
    }
}

/// Starts the API on `listen`: on first start the `admin` password is generated and written
/// to `DATA_DIR/initial-admin-password` (0600); log in with it, change it, delete the file.
pub async fn start(
    args: &ApiArgs,
    store: Arc<dyn Store>,
    manifests: Option<Arc<dyn ManifestSource>>,
    data_dir: &Path,
    listen: SocketAddr,
    registry: &mut prometheus_client::registry::Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ApiHandle> {
    let config = args.config()?;
    let started = Api::start(store, manifests, config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the API: {e}"))?;
    if let Some(password) = started.initial_admin_password {
        let path = data_dir.join(INITIAL_ADMIN_PASSWORD_FILE);
        write_secret(&path, &password)
            .with_context(|| format!("writing the admin password to {}", path.display()))?;
        info!(file = %path.display(), "the admin account's password is in this file (shown once; change it, then delete the file)");
    }
    let metrics = Arc::new(ApiMetrics::default());
    metrics.register(registry);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} for the API (--listen)"))?;
    let address = listener.local_addr()?;
    let router = capstan_api::server::router(started.api, metrics);
    let task = tokio::spawn(capstan_api::server::serve(listener, router, shutdown));
    info!(%address, "API listening (REST, gRPC, webhooks)");
    Ok(ApiHandle { address, task })
}

/// Writes `secret` to a file only its owner can read.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode above applies only to a new file: tighten one left from an earlier start.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")
}
