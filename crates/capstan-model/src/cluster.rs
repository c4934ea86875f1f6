//! The `Cluster` kind (`capstan.dev/v1alpha1`): a Kubernetes cluster Applications deploy to,
//! with the credentials to reach it.
//!
//! Argo CD has no Cluster kind; it keeps clusters in Secrets labelled
//! `argocd.argoproj.io/secret-type: cluster`. Capstan's `spec` holds the same fields with
//! the same names (`server`, `name`, `namespaces`, `clusterResources`, `project`, `shard`,
//! `config` with `bearerToken`, `tlsClientConfig`, `execProviderConfig`, `awsAuthConfig`,
//! …); Argo CD's `labels`/`annotations` are `metadata.labels`/`metadata.annotations`, and
//! what Argo CD reports under `info` is `status`. Credentials are [`Sensitive`].

use crate::application::serialize_object;
use crate::meta::{ApiVersion, ObjectMeta, Timestamp};
use crate::sensitive::Sensitive;
use crate::util::{is_default, is_false, is_zero};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize, Serializer};

/// The address Applications use for the cluster Capstan runs in.
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";

/// A registered cluster.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "ClusterRepr")]
pub struct Cluster {
    /// Name, labels, annotations.
    pub metadata: ObjectMeta,
    /// How to reach the cluster.
    pub spec: ClusterSpec,
    /// Observed connection state and cache information.
    pub status: Option<ClusterStatus>,
}

impl Cluster {
    /// The `kind` of this object.
    pub const KIND: &'static str = "Cluster";

    /// A cluster with the given object name and spec.
    pub fn new(name: impl Into<String>, spec: ClusterSpec) -> Self {
        Self {
            metadata: ObjectMeta::named(name),
            spec,
            status: None,
        }
    }

    /// The name Applications use in `destination.name`: `spec.name`, else `metadata.name`.
    pub fn display_name(&self) -> &str {
        if self.spec.name.is_empty() {
            &self.metadata.name
        } else {
            &self.spec.name
        }
    }

    /// A copy with every credential removed, safe to return from the API.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        let c = &mut copy.spec.config;
        c.password = Sensitive::default();
        c.bearer_token = Sensitive::default();
        c.tls_client_config.key_data = Sensitive::default();
        if let Some(exec) = c.exec_provider_config.as_mut() {
            for value in exec.env.values_mut() {
                *value = Sensitive::default();
            }
        }
        copy
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClusterRepr {
    api_version: ApiVersion,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: ClusterSpec,
    #[serde(default)]
    status: Option<ClusterStatus>,
}

impl TryFrom<ClusterRepr> for Cluster {
    type Error = String;

    fn try_from(r: ClusterRepr) -> Result<Self, String> {
        if r.kind != Cluster::KIND {
            return Err(format!("expected kind Cluster, found {:?}", r.kind));
        }
        if r.api_version != ApiVersion::Capstan {
            return Err(format!(
                "Cluster is a Capstan kind; set apiVersion to {}",
                ApiVersion::Capstan
            ));
        }
        Ok(Cluster {
            metadata: r.metadata,
            spec: r.spec,
            status: r.status.filter(|s| !is_default(s)),
        })
    }
}

impl Serialize for Cluster {
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

/// How to reach a cluster (`spec:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// API server URL, e.g. `https://10.0.0.1:6443`.
    #[serde(default)]
    pub server: String,
    /// Name used in `destination.name`; defaults to `metadata.name`. Free text (Argo CD
    /// cluster names such as EKS ARNs are allowed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespaces Capstan may manage; empty means the whole cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// With `namespaces` set: manage cluster-scoped resources too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster_resources: bool,
    /// Project the cluster is scoped to, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// Fixed controller shard; unset lets Capstan place the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<i64>,
    /// Connection and credentials.
    #[serde(default)]
    pub config: ClusterConfig,
}

/// Connection settings and credentials (`spec.config`), as in Argo CD's cluster secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfig {
    /// Basic-auth user name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Basic-auth password (credential).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub password: Sensitive,
    /// Bearer token (credential).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub bearer_token: Sensitive,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tls_client_config: TlsClientConfig,
    /// Authenticate with AWS IAM (EKS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_auth_config: Option<AwsAuthConfig>,
    /// Authenticate by running a command (client-go exec plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_provider_config: Option<ExecProviderConfig>,
    /// Do not ask the server for gzip responses.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_compression: bool,
    /// Proxy for requests to the API server (`http`, `https` or `socks5` URL).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_url: String,
}

/// TLS settings for the API server connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsClientConfig {
    /// Skip server certificate verification (testing only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// Server name for SNI and certificate checks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    /// Client certificate, base64 of PEM.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert_data: String,
    /// Client private key, base64 of PEM (credential).
    #[serde(default, skip_serializing_if = "Sensitive::is_empty")]
    pub key_data: Sensitive,
    /// CA bundle to trust, base64 of PEM.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_data: String,
}

/// AWS IAM authentication (EKS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsAuthConfig {
    /// EKS cluster name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// Role to assume.
    #[serde(rename = "roleARN", default, skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
    /// AWS profile to use.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profile: String,
}

/// A command that prints credentials (client-go exec plugin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecProviderConfig {
    /// The command.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables (values may hold credentials).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, Sensitive>,
    /// `client.authentication.k8s.io/v1` or `/v1beta1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Shown when the command is missing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub install_hint: String,
}

/// Observed state of a cluster (`status:`; Argo CD's `info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Whether Capstan can reach the cluster.
    #[serde(default, skip_serializing_if = "is_default")]
    pub connection_state: ConnectionState,
    /// Kubernetes version of the cluster.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_version: String,
    /// Cache statistics.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cache_info: ClusterCacheInfo,
    /// Applications deployed to the cluster.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub applications_count: i64,
    /// API versions the cluster serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
    /// When a cache refresh was last requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_requested_at: Option<Timestamp>,
}

/// Cluster cache statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterCacheInfo {
    /// Resources watched.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resources_count: i64,
    /// APIs watched.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub apis_count: i64,
    /// Last full cache sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cache_sync_time: Option<Timestamp>,
}

/// Whether a remote (cluster or repository) is reachable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionState {
    /// `Successful`, `Failed` or `Unknown`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When this was determined.
    #[serde(
        rename = "attemptedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub attempted_at: Option<Timestamp>,
}
