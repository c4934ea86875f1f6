//! `capstand api`: the API tier on its own — REST, gRPC, webhooks, SSO — over the shared etcd
//! store. It keeps no state of its own (sessions are signed with a secret in the store,
//! revocations and accounts live there too), so any number of replicas behind a load
//! balancer behave as one. Requests for the controller (sync, refresh, terminate, rollback)
//! are written into the Application, which the owning controller watches.
//!
//! The live state of clusters (managed resources with diffs, the resource tree, events) is
//! held by the controller member owning each cluster: those methods are forwarded to it
//! (`crate::owners` finds it; `capstan_api::remote_live` carries the question).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use capstan_repo::client::{ManifestSource, RepoClient};
use tracing::info;

use crate::api::{ApiArgs, ApiFiles};
use crate::observe::{self, Readiness};
use crate::sealing::EncryptionArgs;
use crate::units::parse_duration;

pub const EXAMPLES: &str = "\
Examples:
  # Two replicas over one etcd, behind a load balancer that terminates TLS
  head -c 32 /dev/urandom | base64 > encryption.key      # once; every replica gets the same file
  capstand api --etcd-endpoints http://etcd-0:2379,http://etcd-1:2379 \\
    --encryption-key-file encryption.key --insecure --listen 0.0.0.0:8080
  # Serving TLS itself, rendering manifests with a repo-server
  capstand api --etcd-endpoints http://etcd:2379 --encryption-key-file encryption.key \\
    --tls-cert tls.crt --tls-key tls.key --repo-server http://repo-server:8081";

/// Flags of `capstand api`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the API listens: REST (`/api/v1/...`), gRPC, Git webhooks (`/api/webhook`) and
    /// SSO (`/auth/...`), all on this one port.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:8080",
        env = "CAPSTAN_LISTEN"
    )]
    listen: SocketAddr,
    #[command(flatten)]
    etcd: crate::etcd::EtcdArgs,
    /// A `capstand repo-server` (`http://HOST:PORT`) for the manifests method; without it that
    /// method answers Unavailable.
    #[arg(long, value_name = "URL", env = "CAPSTAN_REPO_SERVER")]
    repo_server: Option<String>,
    /// How long one manifest request to --repo-server may take.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, requires = "repo_server", env = "CAPSTAN_REPO_SERVER_TIMEOUT")]
    repo_server_timeout: Duration,
    /// Where to write the `admin` password if this replica is the one that creates the account
    /// (the first start of the first replica): 0600; log in, change it, delete the file.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "initial-admin-password",
        env = "CAPSTAN_INITIAL_ADMIN_PASSWORD_FILE"
    )]
    initial_admin_password_file: PathBuf,
    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8083",
        env = "CAPSTAN_METRICS_LISTEN"
    )]
    metrics_listen: SocketAddr,
    /// How long open requests (watch streams) may take to finish on SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, env = "CAPSTAN_SHUTDOWN_GRACE")]
    shutdown_grace: Duration,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    encryption: EncryptionArgs,
}

/// Runs the API until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = observe::Shutdown::on_signal();
    let stopped = || shutdown.wait();

    // Every replica must seal and unseal with the same key: none is generated here.
    let keyring = args.encryption.required_keyring()?;
    let etcd = args.etcd.connect().await?;
    let live_token = keyring.derive(capstan_api::remote_live::TOKEN_PURPOSE);
    let store = crate::etcd::sealed(&etcd, keyring);
    // What runs in the clusters, the members owning them answer (`capstand controller
    // --live-listen`).
    let live: Arc<dyn capstan_api::live::LiveState> =
        Arc::new(capstan_api::remote_live::RemoteLiveState::new(
            Arc::new(crate::owners::ShardOwners {
                store: store.clone(),
                etcd,
            }),
            live_token,
        ));
    let manifests: Option<Arc<dyn ManifestSource>> = match &args.repo_server {
        Some(url) => Some(Arc::new(
            RepoClient::connect_lazy(url, args.repo_server_timeout)
                .map_err(|e| anyhow::anyhow!("--repo-server: {}", e.message))?,
        )),
        None => None,
    };

    let mut registry = prometheus_client::registry::Registry::default();
    let files = ApiFiles {
        generated_tls_dir: None,
        initial_admin_password: args.initial_admin_password_file.clone(),
    };
    let api = crate::api::start(
        &args.api,
        store,
        manifests,
        Some(live),
        &files,
        args.listen,
        registry.sub_registry_with_prefix("capstan_api"),
        stopped(),
    )
    .await?;
    let ready = Readiness::default();
    let observe_task =
        observe::serve(args.metrics_listen, registry, ready.clone(), stopped()).await?;
    ready.set(true);
    info!(
        api = %api.address,
        etcd = %args.etcd.etcd_endpoints.join(","),
        metrics = %args.metrics_listen,
        "API ready"
    );

    stopped().await;
    info!(grace = ?args.shutdown_grace, "shutting down: finishing open requests");
    ready.set(false);
    api.stop(args.shutdown_grace).await;
    let _ = observe_task.await;
    info!("API stopped");
    Ok(())
}
