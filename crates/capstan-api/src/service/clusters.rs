//! Clusters: list, get, create, update, delete.
//!
//! RBAC as in Argo CD (`CreateClusterRBACObject`): resource `clusters`, object the cluster's
//! server URL, or `PROJECT/SERVER` for a cluster scoped to a project; actions `get`,
//! `create`, `update` (on the old and the new object when an update moves the cluster
//! between projects) and `delete`. A caller who may not act on a server gets 403 whether or
//! not it is registered.
//!
//! A cluster is identified by its server URL (one cluster per server; a trailing `/` does
//! not count), or by its name (`spec.name`, else `metadata.name`) when asked so
//! (`id.type=name`). It is stored under `metadata.name` when the body gives one; otherwise
//! under `cluster-HOST-HASH` (the server's host and port with `-` for every other character,
//! and 8 hex digits of the SHA-256 of the server URL), as Argo CD names its cluster Secrets.
//!
//! **Credentials are never answered**: every answer is [`Cluster::redacted`]. On update, a
//! credential left empty keeps the stored one (Argo CD's behaviour) unless the update
//! changes what it belongs to: the bearer token is kept only while no other way to
//! authenticate (username, AWS, exec) is set, the password only while `username` is
//! unchanged, the TLS client key only while `certData` is unchanged, an exec plugin's
//! environment value per variable. The server URL cannot change (it is the cluster's
//! identity): delete and create.
//!
//! The status (`connectionState`, server version, ...) is the controller's, read from the
//! store; a cluster the controller has not reported on yet answers `Unknown`.
//!
//! The steps this shares with repositories (reading, creating, updating and deleting a
//! registration) are in the `registry` module; what is particular to clusters is here.

use capstan_model::{Cluster, ClusterConfig, ClusterSpec, ClusterStatus, ConnectionState, Object};
use capstan_store::Revision;
use capstan_store::kinds::Clusters;
use serde_json::Value;
use tracing::info;

pub use super::registry::rbac_object as cluster_rbac_object;
use super::registry::{
    Found, Registering, Registration, check_stored_name, digest_hex, keep_stored, registering,
    registration_fields,
};
use super::{Api, Caller};
use crate::error::{ApiError, ApiResult};

/// Which cluster a request means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterId {
    /// The one with this server URL.
    Server(String),
    /// The one with this name (`spec.name`, else `metadata.name`).
    Name(String),
}

impl ClusterId {
    /// From a path segment and Argo CD's `id.type` (`server`, the default, or `name`).
    pub fn parse(value: &str, id_type: &str) -> ApiResult<Self> {
        if value.is_empty() {
            return Err(ApiError::invalid("the cluster's server or name is missing"));
        }
        match id_type {
            "" | "server" | "url" => Ok(ClusterId::Server(value.to_owned())),
            "name" => Ok(ClusterId::Name(value.to_owned())),
            other => Err(ApiError::invalid(format!(
                "id.type {other:?}: use server or name"
            ))),
        }
    }

    fn describe(&self) -> String {
        match self {
            ClusterId::Server(server) => format!("cluster {server:?}"),
            ClusterId::Name(name) => format!("cluster named {name:?}"),
        }
    }
}

/// A Cluster from JSON; `apiVersion` and `kind` may be left out.
pub fn cluster_from_json(value: Value) -> ApiResult<Cluster> {
    super::registry::from_json(value)
}

/// A server URL as compared: trimmed, without trailing `/`.
fn normalized_server(server: &str) -> &str {
    server.trim().trim_end_matches('/')
}

/// The store name of a cluster registered without `metadata.name` (see the module docs).
pub fn cluster_store_name(server: &str) -> String {
    let server = normalized_server(server);
    let host: String = server
        .split_once("://")
        .map_or(server, |(_, rest)| rest)
        .split(['/', '@'])
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    let host = host.trim_matches('-');
    let hex = digest_hex(server, 4);
    if host.is_empty() {
        format!("cluster-{hex}")
    } else {
        format!("cluster-{host}-{hex}")
    }
}

/// `new` with the stored credentials of `old` where `new` leaves them empty (see the module
/// docs for when they are kept).
fn keep_credentials(new: &mut ClusterConfig, old: &ClusterConfig) {
    let other_method = !new.username.is_empty()
        || new.aws_auth_config.is_some()
        || new.exec_provider_config.is_some();
    let same_user = !new.username.is_empty() && new.username == old.username;
    let (tls, old_tls) = (&mut new.tls_client_config, &old.tls_client_config);
    let same_cert = !tls.cert_data.is_empty() && tls.cert_data == old_tls.cert_data;
    keep_stored([
        (&mut new.bearer_token, &old.bearer_token, !other_method),
        (&mut new.password, &old.password, same_user),
        (&mut tls.key_data, &old_tls.key_data, same_cert),
    ]);
    if let (Some(exec), Some(old_exec)) = (
        new.exec_provider_config.as_mut(),
        old.exec_provider_config.as_ref(),
    ) {
        keep_stored(
            exec.env
                .iter_mut()
                .filter_map(|(name, value)| Some((value, old_exec.env.get(name)?, true))),
        );
    }
}

impl Registration for Cluster {
    type Kind = Clusters;
    type Spec = ClusterSpec;
    const KIND: &'static str = Cluster::KIND;
    const RESOURCE: &'static str = "clusters";
    const NOUN: &'static str = "cluster";
    const TARGET: &'static str = "server";

    fn from_object(object: Object) -> Result<Self, Object> {
        match object {
            Object::Cluster(cluster) => Ok(*cluster),
            other => Err(other),
        }
    }

    registration_fields!(ClusterSpec);

    fn target(&self) -> &str {
        &self.spec.server
    }

    fn store_name(&self) -> String {
        cluster_store_name(&self.spec.server)
    }

    fn keep_credentials(new: &mut ClusterSpec, old: &ClusterSpec) {
        keep_credentials(&mut new.config, &old.config);
    }
}

impl Api {
    async fn find_cluster(&self, id: &ClusterId) -> ApiResult<Option<Found<Cluster>>> {
        Ok(self
            .registered::<Cluster>()
            .await?
            .into_iter()
            .find(|f| match id {
                ClusterId::Server(server) => {
                    normalized_server(&f.object.spec.server) == normalized_server(server)
                }
                ClusterId::Name(name) => {
                    f.object.display_name() == name || f.object.metadata.name == *name
                }
            }))
    }

    /// The cluster `id` names. A missing one is "not found" only to a caller who could
    /// `action` it (for a name: any cluster); to others it is "permission denied", as for one
    /// that exists.
    async fn found_cluster(
        &self,
        caller: &Caller,
        action: &str,
        id: &ClusterId,
    ) -> ApiResult<Found<Cluster>> {
        self.find_cluster(id).await?.ok_or_else(|| {
            let object = match id {
                ClusterId::Server(server) => server.as_str(),
                ClusterId::Name(_) => "*",
            };
            self.missing::<Cluster>(caller, action, object, id.describe())
        })
    }

    /// The cluster as answered: no credentials, its namespace and revision, its status.
    fn answer_cluster(
        &self,
        cluster: &Cluster,
        revision: Revision,
        status: Option<ClusterStatus>,
    ) -> Cluster {
        let mut answer = self.answered(cluster, revision);
        let mut status = status.unwrap_or_default();
        if status.connection_state.status.is_empty() {
            status.connection_state = ConnectionState {
                status: "Unknown".to_owned(),
                message: "the controller has not reported on this cluster yet".to_owned(),
                attempted_at: None,
            };
        }
        answer.status = Some(status);
        answer
    }

    /// Every cluster the caller may `get`.
    pub async fn list_clusters(&self, caller: &Caller) -> ApiResult<Vec<Cluster>> {
        Ok(self
            .visible::<Cluster>(caller)
            .await?
            .into_iter()
            .map(|f| self.answer_cluster(&f.object, f.revision, f.status))
            .collect())
    }

    /// One cluster.
    pub async fn get_cluster(&self, caller: &Caller, id: &ClusterId) -> ApiResult<Cluster> {
        let found = self.found_cluster(caller, "get", id).await?;
        self.enforce_on(caller, "get", &found.object)?;
        Ok(self.answer_cluster(&found.object, found.revision, found.status))
    }

    /// Registers a cluster. One registered already for the server is answered when it is
    /// the same (credentials left empty count as the stored ones); a different one is an
    /// error unless `upsert` (which needs `update` too).
    pub async fn create_cluster(
        &self,
        caller: &Caller,
        mut cluster: Cluster,
        upsert: bool,
    ) -> ApiResult<Cluster> {
        self.admit(caller, &mut cluster)?;
        let id = ClusterId::Server(cluster.spec.server.clone());
        match registering(cluster, self.find_cluster(&id).await?, upsert)? {
            Registering::Same(found) => {
                Ok(self.answer_cluster(&found.object, found.revision, found.status))
            }
            Registering::Update(cluster) => self.update_cluster(caller, &id, cluster).await,
            Registering::New(mut cluster) => {
                let (at, revision) = self.store_new(&mut cluster).await?;
                info!(user = %caller.subject.user, server = %cluster.spec.server, name = %at.name, "cluster registered");
                Ok(self.answer_cluster(&cluster, revision, None))
            }
        }
    }

    /// Replaces the spec, labels and annotations of the cluster `id` names (the status stays
    /// the controller's). Credentials left empty keep the stored ones (see the module docs).
    /// With `metadata.resourceVersion` set, only if it was not changed since.
    pub async fn update_cluster(
        &self,
        caller: &Caller,
        id: &ClusterId,
        cluster: Cluster,
    ) -> ApiResult<Cluster> {
        let what = id.describe();
        let check = |found: &Found<Cluster>| {
            let old = &found.object;
            if normalized_server(&cluster.spec.server) != normalized_server(&old.spec.server) {
                return Err(ApiError::invalid(format!(
                    "the server of {what} cannot change (to {:?}); register the new server as another cluster",
                    cluster.spec.server
                )));
            }
            check_stored_name(&what, &cluster.metadata.name, &found.at)
        };
        let (found, updated, revision) = self
            .update_registered(
                caller,
                &cluster,
                &what,
                || self.found_cluster(caller, "update", id),
                check,
            )
            .await?;
        info!(user = %caller.subject.user, server = %updated.spec.server, name = %found.at.name, "cluster updated");
        Ok(self.answer_cluster(&updated, revision, found.status))
    }

    /// Unregisters a cluster (its spec and status).
    pub async fn delete_cluster(&self, caller: &Caller, id: &ClusterId) -> ApiResult<()> {
        let found = self.found_cluster(caller, "delete", id).await?;
        self.delete_registered(caller, &found, &id.describe())
            .await?;
        info!(user = %caller.subject.user, server = %found.object.spec.server, name = %found.at.name, "cluster deleted");
        Ok(())
    }
}
