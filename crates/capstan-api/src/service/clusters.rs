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

use capstan_model::{
    Cluster, ClusterConfig, ClusterStatus, ConnectionState, Object, Validate as _,
};
use capstan_store::kinds::Clusters;
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{Precondition, Revision, StoreError};
use serde_json::Value;
use sha2::Digest as _;
use tracing::info;

use super::projects::with_kind;
use super::{Api, Caller};
use crate::error::{ApiError, ApiResult, Code};

/// Attempts at a read-modify-write that keeps meeting concurrent changes.
const ATTEMPTS: usize = 5;

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
    let value = with_kind(value, capstan_model::CAPSTAN_API_VERSION, Cluster::KIND)?;
    match capstan_model::parse_object_json(&value.to_string()) {
        Ok(Object::Cluster(cluster)) => Ok(*cluster),
        Ok(other) => Err(ApiError::invalid(format!(
            "the body is a {}, not a Cluster",
            other.kind()
        ))),
        Err(e) => Err(ApiError::invalid(format!(
            "the Cluster does not parse: {e}"
        ))),
    }
}

/// A server URL as compared: trimmed, without trailing `/`.
fn normalized_server(server: &str) -> &str {
    server.trim().trim_end_matches('/')
}

/// The RBAC object of a cluster: its server, or `PROJECT/SERVER` when scoped to a project.
pub fn cluster_rbac_object(server: &str, project: &str) -> String {
    if project.is_empty() {
        server.to_owned()
    } else {
        format!("{project}/{server}")
    }
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
    let digest = sha2::Sha256::digest(server.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
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
    if new.bearer_token.is_empty() && !other_method {
        new.bearer_token = old.bearer_token.clone();
    }
    if new.password.is_empty() && !new.username.is_empty() && new.username == old.username {
        new.password = old.password.clone();
    }
    let (tls, old_tls) = (&mut new.tls_client_config, &old.tls_client_config);
    if tls.key_data.is_empty() && !tls.cert_data.is_empty() && tls.cert_data == old_tls.cert_data {
        tls.key_data = old_tls.key_data.clone();
    }
    if let (Some(exec), Some(old_exec)) = (
        new.exec_provider_config.as_mut(),
        old.exec_provider_config.as_ref(),
    ) {
        for (name, value) in &mut exec.env {
            if value.is_empty()
                && let Some(stored) = old_exec.env.get(name)
            {
                *value = stored.clone();
            }
        }
    }
}

/// A registered cluster as read.
struct Found {
    at: ObjectRef,
    cluster: Cluster,
    revision: Revision,
    status: Option<ClusterStatus>,
}

impl Api {
    fn typed_clusters(&self) -> TypedStore<Clusters> {
        TypedStore::new(self.store().clone())
    }

    /// The registered clusters, from the store (lists are small; reads see every write).
    async fn registered_clusters(&self) -> ApiResult<Vec<Found>> {
        let listed = self
            .typed_clusters()
            .list(Some(self.config().namespace.as_str()))
            .await?;
        Ok(listed
            .items
            .into_iter()
            .map(|o| Found {
                at: o.object,
                cluster: o.spec.value,
                revision: o.spec.mod_revision,
                status: o.status.map(|s| s.value),
            })
            .collect())
    }

    async fn find_cluster(&self, id: &ClusterId) -> ApiResult<Option<Found>> {
        Ok(self
            .registered_clusters()
            .await?
            .into_iter()
            .find(|f| match id {
                ClusterId::Server(server) => {
                    normalized_server(&f.cluster.spec.server) == normalized_server(server)
                }
                ClusterId::Name(name) => {
                    f.cluster.display_name() == name || f.cluster.metadata.name == *name
                }
            }))
    }

    /// A missing cluster is "not found" only to a caller who could `action` it (for a name:
    /// any cluster); to others it is "permission denied", as for one that exists.
    fn missing_cluster(&self, caller: &Caller, action: &str, id: &ClusterId) -> ApiError {
        let object = match id {
            ClusterId::Server(server) => server.as_str(),
            ClusterId::Name(_) => "*",
        };
        if self.can(caller, "clusters", action, object) {
            ApiError::not_found(id.describe())
        } else {
            ApiError::denied("clusters", action, object)
        }
    }

    /// The cluster as answered: no credentials, its namespace and revision, its status.
    fn answer_cluster(
        &self,
        cluster: &Cluster,
        revision: Revision,
        status: Option<ClusterStatus>,
    ) -> Cluster {
        let mut answer = cluster.redacted();
        answer.metadata.namespace = self.config().namespace.clone();
        answer.metadata.resource_version = revision.to_string();
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
            .registered_clusters()
            .await?
            .into_iter()
            .filter(|f| {
                let spec = &f.cluster.spec;
                self.can(
                    caller,
                    "clusters",
                    "get",
                    &cluster_rbac_object(&spec.server, &spec.project),
                )
            })
            .map(|f| self.answer_cluster(&f.cluster, f.revision, f.status))
            .collect())
    }

    /// One cluster.
    pub async fn get_cluster(&self, caller: &Caller, id: &ClusterId) -> ApiResult<Cluster> {
        let found = self
            .find_cluster(id)
            .await?
            .ok_or_else(|| self.missing_cluster(caller, "get", id))?;
        let spec = &found.cluster.spec;
        self.enforce(
            caller,
            "clusters",
            "get",
            &cluster_rbac_object(&spec.server, &spec.project),
        )?;
        Ok(self.answer_cluster(&found.cluster, found.revision, found.status))
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
        if cluster.spec.server.trim().is_empty() {
            return Err(ApiError::invalid("the cluster's server is missing"));
        }
        let object = cluster_rbac_object(&cluster.spec.server, &cluster.spec.project);
        self.enforce(caller, "clusters", "create", &object)?;
        self.check_control_plane_namespace("clusters", &cluster.metadata.namespace)?;
        cluster.status = None;
        cluster.metadata.resource_version.clear();
        cluster.metadata.deletion_timestamp = None;
        let id = ClusterId::Server(cluster.spec.server.clone());
        if let Some(found) = self.find_cluster(&id).await? {
            let mut merged = cluster.spec.clone();
            keep_credentials(&mut merged.config, &found.cluster.spec.config);
            let same = merged == found.cluster.spec
                && cluster.metadata.labels == found.cluster.metadata.labels
                && cluster.metadata.annotations == found.cluster.metadata.annotations;
            if same {
                return Ok(self.answer_cluster(&found.cluster, found.revision, found.status));
            }
            if !upsert {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    format!(
                        "cluster {:?} is registered with a different spec; update it, or create with upsert",
                        cluster.spec.server
                    ),
                ));
            }
            cluster.metadata.name.clear();
            return self.update_cluster(caller, &id, cluster).await;
        }
        if cluster.metadata.name.is_empty() {
            cluster.metadata.name = cluster_store_name(&cluster.spec.server);
        }
        cluster.metadata.namespace = self.config().namespace.clone();
        cluster
            .validate()
            .map_err(|e| ApiError::invalid(format!("the cluster is invalid: {e}")))?;
        let at = ObjectRef::new(
            self.config().namespace.as_str(),
            cluster.metadata.name.as_str(),
        );
        match self.typed_clusters().create(&at, &cluster).await {
            Ok(revision) => {
                info!(user = %caller.subject.user, server = %cluster.spec.server, name = %at.name, "cluster registered");
                Ok(self.answer_cluster(&cluster, revision, None))
            }
            Err(StoreError::Conflict { .. }) => Err(ApiError::new(
                Code::AlreadyExists,
                format!(
                    "a cluster named {:?} is registered already; choose another metadata.name or leave it empty",
                    at.name
                ),
            )),
            Err(other) => Err(other.into()),
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
        self.enforce(
            caller,
            "clusters",
            "update",
            &cluster_rbac_object(&cluster.spec.server, &cluster.spec.project),
        )?;
        self.check_control_plane_namespace("clusters", &cluster.metadata.namespace)?;
        let expected = match cluster.metadata.resource_version.as_str() {
            "" => None,
            v => Some(v.parse::<Revision>().map_err(|_| {
                ApiError::invalid(format!("metadata.resourceVersion {v:?} is not a revision"))
            })?),
        };
        for _ in 0..ATTEMPTS {
            let found = self
                .find_cluster(id)
                .await?
                .ok_or_else(|| self.missing_cluster(caller, "update", id))?;
            let old = &found.cluster;
            self.enforce(
                caller,
                "clusters",
                "update",
                &cluster_rbac_object(&old.spec.server, &old.spec.project),
            )?;
            if normalized_server(&cluster.spec.server) != normalized_server(&old.spec.server) {
                return Err(ApiError::invalid(format!(
                    "the server of {} cannot change (to {:?}); register the new server as another cluster",
                    id.describe(),
                    cluster.spec.server
                )));
            }
            if !cluster.metadata.name.is_empty() && cluster.metadata.name != found.at.name {
                return Err(ApiError::invalid(format!(
                    "{} is stored as {:?}, not {:?}",
                    id.describe(),
                    found.at.name,
                    cluster.metadata.name
                )));
            }
            if let Some(expected) = expected
                && expected != found.revision
            {
                return Err(ApiError::new(
                    Code::Aborted,
                    format!(
                        "{} was changed since resourceVersion {expected}; read it again and retry",
                        id.describe()
                    ),
                ));
            }
            let mut updated = old.clone();
            updated.spec = cluster.spec.clone();
            keep_credentials(&mut updated.spec.config, &old.spec.config);
            updated.metadata.labels = cluster.metadata.labels.clone();
            updated.metadata.annotations = cluster.metadata.annotations.clone();
            updated.metadata.namespace = found.at.namespace.clone();
            updated.metadata.resource_version.clear();
            updated.status = None;
            updated
                .validate()
                .map_err(|e| ApiError::invalid(format!("the cluster is invalid: {e}")))?;
            match self
                .typed_clusters()
                .update_spec(
                    &found.at,
                    &updated,
                    Precondition::ModRevision(found.revision),
                )
                .await
            {
                Ok(revision) => {
                    info!(user = %caller.subject.user, server = %updated.spec.server, name = %found.at.name, "cluster updated");
                    return Ok(self.answer_cluster(&updated, revision, found.status));
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::new(
            Code::Aborted,
            format!("{} kept changing; try again", id.describe()),
        ))
    }

    /// Unregisters a cluster (its spec and status).
    pub async fn delete_cluster(&self, caller: &Caller, id: &ClusterId) -> ApiResult<()> {
        let found = self
            .find_cluster(id)
            .await?
            .ok_or_else(|| self.missing_cluster(caller, "delete", id))?;
        let spec = &found.cluster.spec;
        self.enforce(
            caller,
            "clusters",
            "delete",
            &cluster_rbac_object(&spec.server, &spec.project),
        )?;
        match self
            .typed_clusters()
            .delete(&found.at, Precondition::None)
            .await?
        {
            Some(_) => {
                info!(user = %caller.subject.user, server = %spec.server, name = %found.at.name, "cluster deleted");
                Ok(())
            }
            None => Err(ApiError::not_found(id.describe())),
        }
    }
}
