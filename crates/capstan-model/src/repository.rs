//! The `Repository` kind (`capstan.dev/v1alpha1`): a Git repository, Helm repository or OCI
//! registry, with the credentials to read it.
//!
//! Argo CD keeps repositories in Secrets labelled
//! `argocd.argoproj.io/secret-type: repository`, whose keys (`url`, `type`, `name`,
//! `project`, `username`, `password`, `sshPrivateKey`, `insecure`, `enableLfs`, `proxy`,
//! `noProxy`, `githubAppID`, …) are the field names of Capstan's `spec`. Credentials are
//! [`Sensitive`].

use crate::application::serialize_object;
use crate::cluster::ConnectionState;
use crate::meta::{ApiVersion, ObjectMeta};
use crate::sensitive::Sensitive;
use crate::util::{is_default, is_false, is_zero, string_enum};
use serde::{Deserialize, Serialize, Serializer};

/// A registered repository.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "RepositoryRepr")]
pub struct Repository {
    /// Name, labels, annotations.
    pub metadata: ObjectMeta,
    /// Where the repository is and how to read it.
    pub spec: RepositorySpec,
    /// Observed connection state.
    pub status: Option<RepositoryStatus>,
}

impl Repository {
    /// The `kind` of this object.
    pub const KIND: &'static str = "Repository";

    /// A repository with the given object name and spec.
    pub fn new(name: impl Into<String>, spec: RepositorySpec) -> Self {
        Self {
            metadata: ObjectMeta::named(name),
            spec,
            status: None,
        }
    }

    /// A copy with every credential removed, safe to return from the API.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        let s = &mut copy.spec;
        for secret in [
            &mut s.password,
            &mut s.ssh_private_key,
            &mut s.tls_client_cert_key,
            &mut s.github_app_private_key,
            &mut s.gcp_service_account_key,
            &mut s.bearer_token,
        ] {
            *secret = Sensitive::default();
        }
        copy
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RepositoryRepr {
    api_version: ApiVersion,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: RepositorySpec,
    #[serde(default)]
    status: Option<RepositoryStatus>,
}

impl TryFrom<RepositoryRepr> for Repository {
    type Error = String;

    fn try_from(r: RepositoryRepr) -> Result<Self, String> {
        if r.kind != Repository::KIND {
            return Err(format!("expected kind Repository, found {:?}", r.kind));
        }
        if r.api_version != ApiVersion::Capstan {
            return Err(format!(
                "Repository is a Capstan kind; set apiVersion to {}",
                ApiVersion::Capstan
            ));
        }
        Ok(Repository {
            metadata: r.metadata,
            spec: r.spec,
            status: r.status.filter(|s| !is_default(s)),
        })
    }
}

impl Serialize for Repository {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_object::<_, _, _, ()>(
            serializer,
            ApiVersion::Capstan,
            Self::KIND,
            &self.metadata,
            &self.spec,
            self.status.as_ref(),
            None,
        )
    }
}

string_enum! {
    /// What kind of repository it is.
    pub enum RepositoryType {
        /// A Git repository (the default).
        Git = "git",
        /// A Helm chart repository.
        Helm = "helm",
        /// An OCI registry.
        Oci = "oci",
    }
}

/// Where a repository is and how to read it (`spec:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepositorySpec {
    /// Repository URL (`https://…`, `ssh://…`, `git@host:org/repo.git`, `oci://…`).
    #[serde(default)]
    pub url: String,
    /// `git` (default), `helm` or `oci`.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "crate::util::empty_as_none::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub repo_type: Option<RepositoryType>,
    /// Display name; required for Helm repositories.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Project the repository is scoped to, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// User name for HTTPS basic auth.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Password or access token for HTTPS basic auth (credential).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub password: Sensitive,
    /// Bearer token, e.g. for Bitbucket Data Center (credential).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub bearer_token: Sensitive,
    /// SSH private key in PEM (credential; Git over SSH only).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub ssh_private_key: Sensitive,
    /// Skip TLS certificate and SSH host key verification.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// Deprecated form of `insecure` for SSH host keys.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_ignore_host_key: bool,
    /// Fetch Git LFS objects (Git only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_lfs: bool,
    /// TLS client certificate in PEM.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tls_client_cert_data: String,
    /// TLS client private key in PEM (credential).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub tls_client_cert_key: Sensitive,
    /// Treat a Helm repository as OCI (older form of `type: oci`).
    #[serde(rename = "enableOCI", default, skip_serializing_if = "is_false")]
    pub enable_oci: bool,
    /// Talk plain HTTP to an OCI registry.
    #[serde(
        rename = "insecureOCIForceHttp",
        default,
        skip_serializing_if = "is_false"
    )]
    pub insecure_oci_force_http: bool,
    /// GitHub App private key in PEM (credential).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub github_app_private_key: Sensitive,
    /// GitHub App id.
    #[serde(rename = "githubAppID", default, skip_serializing_if = "is_zero")]
    pub github_app_id: i64,
    /// GitHub App installation id.
    #[serde(
        rename = "githubAppInstallationID",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub github_app_installation_id: i64,
    /// GitHub Enterprise API URL for GitHub App auth.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub github_app_enterprise_base_url: String,
    /// Google Cloud service account key in JSON (credential).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub gcp_service_account_key: Sensitive,
    /// Always send basic auth on HTTP.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force_http_basic_auth: bool,
    /// Authenticate with Azure Workload Identity.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_azure_workload_identity: bool,
    /// HTTP(S) proxy URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy: String,
    /// Hosts that bypass the proxy (comma-separated).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub no_proxy: String,
}

impl RepositorySpec {
    /// The repository type, `git` when unset.
    pub fn repo_type_or_default(&self) -> RepositoryType {
        self.repo_type.unwrap_or(RepositoryType::Git)
    }

    /// Whether any credential is configured.
    pub fn has_credentials(&self) -> bool {
        !self.username.is_empty()
            || !self.password.is_empty()
            || !self.bearer_token.is_empty()
            || !self.ssh_private_key.is_empty()
            || !self.tls_client_cert_data.is_empty()
            || !self.github_app_private_key.is_empty()
            || !self.gcp_service_account_key.is_empty()
            || self.use_azure_workload_identity
    }
}

/// Observed state of a repository (`status:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// Whether Capstan can read the repository.
    #[serde(default, skip_serializing_if = "is_default")]
    pub connection_state: ConnectionState,
    /// Whether credentials came from a credential template.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inherited_creds: bool,
}
