//! The API tier inside a `capstand` process: its flags, and starting and stopping its
//! listener. The API itself is `capstan-api`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use capstan_api::accounts::AccountConfig;
use capstan_api::live::LiveState;
use capstan_api::rbac::Policy;
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig, PublicOidc, PublicSettings};
use capstan_api::webhook::WebhookSecrets;
use capstan_repo::client::ManifestSource;
use capstan_store::Store;
use tracing::{info, warn};

use crate::units::parse_duration;

/// The file the generated `admin` password is written to, in the data directory.
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Where the all-in-one keeps its generated TLS material, in the data directory.
pub const TLS_DIR: &str = "tls";

/// Flags of the API (shared by every command that serves it).
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Serve the API over plain HTTP, not TLS: when TLS ends at a proxy in front of it
    /// (Argo CD's `--insecure`), or for loopback-only use.
    #[arg(long, env = "CAPSTAN_INSECURE", conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure: bool,
    /// The API's TLS certificate chain (PEM). Without --tls-cert and --tls-key the
    /// all-in-one serves a certificate of its own, signed by a CA it generates on first start
    /// (DATA_DIR/tls/ca.crt: what clients trust, e.g. `curl --cacert`).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        env = "CAPSTAN_TLS_CERT"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "CAPSTAN_TLS_KEY"
    )]
    tls_key: Option<PathBuf>,
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
    /// Single sign-on: the OpenID Connect provider's issuer URL (its
    /// `/.well-known/openid-configuration` is read), e.g. `https://dex.example.com`. Users
    /// then sign in at `/auth/login`; the CLI exchanges its ID token at `/auth/token`.
    #[arg(long, value_name = "URL", env = "CAPSTAN_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// This API's client id at the provider.
    #[arg(
        long,
        value_name = "ID",
        default_value = "capstan",
        env = "CAPSTAN_OIDC_CLIENT_ID"
    )]
    oidc_client_id: String,
    /// Its client secret (use the environment variable: flags show in `ps`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "CAPSTAN_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    oidc_client_secret: Option<String>,
    /// The CLI's client id at the provider, when it has its own (its ID tokens are accepted).
    #[arg(long, value_name = "ID", env = "CAPSTAN_OIDC_CLI_CLIENT_ID")]
    oidc_cli_client_id: Option<String>,
    /// Scopes asked for besides `openid`.
    #[arg(
        long,
        value_name = "SCOPES",
        default_value = "profile,email,groups",
        value_delimiter = ',',
        env = "CAPSTAN_OIDC_SCOPES"
    )]
    oidc_scopes: Vec<String>,
    /// The ID token claim holding the user's groups (what `g` lines of the policy name).
    #[arg(
        long,
        value_name = "CLAIM",
        default_value = "groups",
        env = "CAPSTAN_OIDC_GROUPS_CLAIM"
    )]
    oidc_groups_claim: String,
    /// The URL users reach the API at (for the provider's redirect back to
    /// `URL/auth/callback`). Default: from --listen, `https` unless --insecure.
    #[arg(long, value_name = "URL", env = "CAPSTAN_URL")]
    url: Option<String>,
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

/// Where the API keeps what it makes on first start.
#[derive(Clone, Debug)]
pub struct ApiFiles {
    /// Where a generated CA and serving certificate live (`ca.crt`, `tls.crt`, `tls.key`)
    /// when neither --tls-cert nor --insecure is given; `None`: one of them is required.
    pub generated_tls_dir: Option<PathBuf>,
    /// Where the generated `admin` password is written (0600) when this process creates the
    /// account.
    pub initial_admin_password: PathBuf,
}

impl ApiFiles {
    /// The all-in-one's: both in its data directory.
    pub fn in_data_dir(data_dir: &Path) -> ApiFiles {
        ApiFiles {
            generated_tls_dir: Some(data_dir.join(TLS_DIR)),
            initial_admin_password: data_dir.join(INITIAL_ADMIN_PASSWORD_FILE),
        }
    }
}

/// Starts the API on `listen`: on first start the `admin` password is generated and written
/// to `files.initial_admin_password` (0600); log in with it, change it, delete the file.
/// `manifests` renders for the manifests method, `live` answers about what runs in the
/// clusters (the controller's reconciler); without them those methods answer errors.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    args: &ApiArgs,
    store: Arc<dyn Store>,
    manifests: Option<Arc<dyn ManifestSource>>,
    live: Option<Arc<dyn LiveState>>,
    files: &ApiFiles,
    listen: SocketAddr,
    registry: &mut prometheus_client::registry::Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ApiHandle> {
    let mut config = args.config()?;
    config.live = live;
    // Bound first: the settings name the URL, whose port may have been chosen just now.
    let tls = tls_config(args, files.generated_tls_dir.as_deref(), listen)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} for the API (--listen)"))?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let external = args
        .url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{address}"));
    let oidc = match &args.oidc_issuer {
        Some(issuer) => Some(Arc::new(
            capstan_api::auth::oidc::Oidc::new(capstan_api::auth::oidc::OidcConfig {
                issuer: issuer.clone(),
                client_id: args.oidc_client_id.clone(),
                client_secret: args.oidc_client_secret.clone().unwrap_or_default(),
                extra_audiences: args.oidc_cli_client_id.iter().cloned().collect(),
                scopes: args.oidc_scopes.clone(),
                groups_claim: args.oidc_groups_claim.clone(),
                redirect_url: format!("{}/auth/callback", external.trim_end_matches('/')),
            })
            .map_err(|e| anyhow::anyhow!("--oidc-issuer: {e}"))?,
        )),
        None => None,
    };
    config.public = PublicSettings {
        url: external.clone(),
        oidc: args.oidc_issuer.as_ref().map(|issuer| PublicOidc {
            issuer: issuer.clone(),
            client_id: args.oidc_client_id.clone(),
            cli_client_id: args.oidc_cli_client_id.clone().unwrap_or_default(),
            scopes: args.oidc_scopes.clone(),
        }),
    };
    let started = Api::start(store, manifests, config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the API: {e}"))?;
    if let Some(password) = started.initial_admin_password {
        let path = &files.initial_admin_password;
        write_secret(path, &password)
            .with_context(|| format!("writing the admin password to {}", path.display()))?;
        info!(file = %path.display(), "the admin account's password is in this file (shown once; change it, then delete the file)");
    }
    let metrics = Arc::new(ApiMetrics::default());
    metrics.register(registry);
    let sso = capstan_api::sso::Sso::new(started.api.clone(), oidc, tls.is_some());
    let router = capstan_api::server::router_with_sso(started.api, sso, metrics);
    let task = match tls {
        Some(tls) => tokio::spawn(capstan_api::server::serve_tls(
            listener, router, tls, shutdown,
        )),
        None => tokio::spawn(capstan_api::server::serve(listener, router, shutdown)),
    };
    info!(url = %format!("{scheme}://{address}"), "API listening (REST, gRPC, webhooks)");
    Ok(ApiHandle { address, task })
}

/// The listener's TLS: none with --insecure, the given certificate, or one signed by a CA
/// generated into `generated_dir` on first start (when there is one).
fn tls_config(
    args: &ApiArgs,
    generated_dir: Option<&Path>,
    listen: SocketAddr,
) -> anyhow::Result<Option<Arc<capstan_api::server::TlsConfig>>> {
    if args.insecure {
        return Ok(None);
    }
    let (cert, key) = match (&args.tls_cert, &args.tls_key, generated_dir) {
        (Some(cert), Some(key), _) => (cert.clone(), key.clone()),
        (_, _, Some(dir)) => generated_tls(dir, listen)?,
        _ => anyhow::bail!(
            "give the API's certificate with --tls-cert and --tls-key, or serve plain HTTP behind \
             a TLS-terminating proxy with --insecure"
        ),
    };
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let config = capstan_api::server::tls_config(&read(&cert)?, &read(&key)?)
        .map_err(|e| anyhow::anyhow!("TLS from {} and {}: {e}", cert.display(), key.display()))?;
    Ok(Some(config))
}

/// A CA and a serving certificate for localhost, the loopback addresses and the listen
/// address, made once and kept in `dir` (`ca.crt`, `tls.crt`, `tls.key`).
fn generated_tls(dir: &Path, listen: SocketAddr) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen.ip().is_unspecified() && !names.contains(&listen.ip().to_string()) {
        names.push(listen.ip().to_string());
    }
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Capstan all-in-one CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "capstan");
    let server_cert = params.signed_by(&server_key, &issuer)?;
    std::fs::write(dir.join("ca.crt"), ca_cert.pem())?;
    std::fs::write(&cert, format!("{}{}", server_cert.pem(), ca_cert.pem()))?;
    write_secret(&key, server_key.serialize_pem().trim_end())?;
    info!(ca = %dir.join("ca.crt").display(), "generated a CA and a TLS certificate for the API");
    Ok((cert, key))
}

/// Writes `secret` to a file only its owner can read.
pub fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
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
