//! The etcd flags every component of a scaled-out control plane shares, and connecting.

use std::sync::Arc;

use anyhow::Context as _;
use capstan_store::sealed::{CREDENTIAL_PREFIXES, Keyring, SealedStore};
use capstan_store::{EtcdOptions, EtcdStore, Store};

/// Where the control plane's store lives.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// The etcd cluster holding the store: client URLs, comma-separated. Required by
    /// `controller` and `api`; a `repo-server` given it registers itself there for the
    /// controllers to find.
    #[arg(
        long,
        value_name = "URLS",
        value_delimiter = ',',
        env = "CAPSTAN_ETCD_ENDPOINTS"
    )]
    pub etcd_endpoints: Vec<String>,
    /// A prefix in front of every key in etcd (several control planes on one etcd, e.g.
    /// `/capstan-prod`). Every component of one control plane uses the same.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        env = "CAPSTAN_ETCD_PREFIX"
    )]
    pub etcd_prefix: String,
}

impl EtcdArgs {
    /// Whether any endpoint was given.
    pub fn given(&self) -> bool {
        !self.etcd_endpoints.is_empty()
    }

    /// Connects; `--etcd-endpoints` must have been given.
    pub async fn connect(&self) -> anyhow::Result<EtcdStore> {
        anyhow::ensure!(
            self.given(),
            "--etcd-endpoints is required (or CAPSTAN_ETCD_ENDPOINTS), e.g. http://etcd:2379"
        );
        let mut options = EtcdOptions::new(self.etcd_endpoints.clone());
        options.namespace = self.etcd_prefix.clone().into_bytes();
        EtcdStore::connect(options)
            .await
            .with_context(|| format!("connecting to etcd at {}", self.etcd_endpoints.join(",")))
    }
}

/// The control plane's store over `etcd`: credentials sealed with `keyring`, as every
/// component of one control plane reads and writes them.
pub fn sealed(etcd: &EtcdStore, keyring: Keyring) -> Arc<dyn Store> {
    Arc::new(SealedStore::new(
        Arc::new(etcd.clone()),
        keyring,
        CREDENTIAL_PREFIXES,
    ))
}
