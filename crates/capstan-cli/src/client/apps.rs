//! The Application methods of [`Client`].

use capstan_proto::api::v1 as pb;
use pb::application_service_client::ApplicationServiceClient as Apps;
use serde_json::{Value, json};

use super::{Client, RestCall, empty, items, json_of, segment};
use crate::error::CliResult;

/// An Application's name and namespace (empty: the server's default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppAt {
    /// The name.
    pub name: String,
    /// The namespace; empty for the control plane's.
    pub namespace: String,
}

impl AppAt {
    /// `NAME` or `NAMESPACE/NAME` (Argo CD's way of naming an app in another namespace).
    pub fn parse(text: &str, namespace_flag: &str) -> AppAt {
        match text.split_once('/') {
            Some((namespace, name)) => AppAt {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
            },
            None => AppAt {
                name: text.to_owned(),
                namespace: namespace_flag.to_owned(),
            },
        }
    }

    fn reference(&self) -> pb::ApplicationRef {
        pb::ApplicationRef {
            name: self.name.clone(),
            app_namespace: self.namespace.clone(),
            refresh: String::new(),
        }
    }

    /// `GET` of `/api/v1/applications/NAME{suffix}?appNamespace=...`.
    fn get(&self, suffix: &str) -> RestCall {
        self.rest(RestCall::get, suffix)
    }

    /// `make` of the Application's path plus `suffix`, with its namespace as a parameter.
    fn rest(&self, make: fn(String) -> RestCall, suffix: &str) -> RestCall {
        make(format!(
            "/api/v1/applications/{}{suffix}",
            segment(&self.name)
        ))
        .param("appNamespace", &self.namespace)
    }
}

impl std::fmt::Display for AppAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

impl Client {
    /// One page of Applications: `{"items": [...], "continue": "...", "resourceVersion": N}`.
    pub async fn list_apps(&self, query: pb::ApplicationQuery) -> CliResult<Value> {
        let mut rest = RestCall::get("/api/v1/applications");
        for (key, values) in [
            ("projects", &query.projects),
            ("clusters", &query.clusters),
            ("namespaces", &query.namespaces),
            ("health", &query.health),
            ("sync", &query.sync),
            ("fields", &query.fields),
        ] {
            rest = rest.query(values.iter().map(|v| (key, v.clone())).collect());
        }
        rest = rest
            .param("selector", &query.selector)
            .param("search", &query.search)
            .param("continue", &query.r#continue)
            .param("appNamespace", &query.app_namespace)
            .param("repo", &query.repo);
        if query.limit > 0 {
            rest = rest.param("limit", &query.limit.to_string());
        }
        let answer = self
            .call(
                async |c| {
                    let list = Apps::new(c).list(self.request(query)).await?.into_inner();
                    let items = list
                        .items
                        .iter()
                        .map(|i| serde_json::from_str(i))
                        .collect::<Result<Vec<Value>, _>>()
                        .map_err(|e| tonic::Status::internal(e.to_string()))?;
                    // The REST answer's shape: one way to read both below.
                    Ok(json!({
                        "items": items,
                        "metadata": {
                            "continue": list.r#continue,
                            "resourceVersion": list.resource_version.to_string(),
                        },
                    }))
                },
                rest,
            )
            .await?;
        Ok(json!({
            "items": answer["items"].as_array().cloned().unwrap_or_default(),
            "continue": answer["metadata"]["continue"].as_str().unwrap_or_default(),
            "resourceVersion": answer["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_default(),
        }))
    }

    /// One Application; `refresh` is "", "normal" or "hard".
    pub async fn get_app(&self, at: &AppAt, refresh: &str) -> CliResult<Value> {
        let request = pb::ApplicationRef {
            refresh: refresh.to_owned(),
            ..at.reference()
        };
        self.call(
            async |c| json_of(Apps::new(c).get(self.request(request)).await?),
            at.get("").param("refresh", refresh),
        )
        .await
    }

    /// Creates an Application (`app` is its JSON).
    pub async fn create_app(&self, app: &Value, upsert: bool) -> CliResult<Value> {
        let request = pb::ApplicationCreateRequest {
            application: app.to_string(),
            upsert,
        };
        self.call(
            async |c| json_of(Apps::new(c).create(self.request(request)).await?),
            RestCall::post("/api/v1/applications")
                .query(vec![("upsert", upsert.to_string())])
                .body(app.clone()),
        )
        .await
    }

    /// Replaces an Application's spec (the whole object, as read).
    pub async fn update_app(&self, at: &AppAt, app: &Value) -> CliResult<Value> {
        let request = pb::ApplicationUpdateRequest {
            application: app.to_string(),
        };
        self.call(
            async |c| json_of(Apps::new(c).update(self.request(request)).await?),
            at.rest(RestCall::put, "").body(app.clone()),
        )
        .await
    }

    /// Deletes an Application; `cascade` deletes its resources too.
    pub async fn delete_app(&self, at: &AppAt, cascade: bool, propagation: &str) -> CliResult<()> {
        let request = pb::ApplicationDeleteRequest {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            cascade: Some(cascade),
            propagation_policy: propagation.to_owned(),
        };
        self.call(
            async |c| Ok(empty(Apps::new(c).delete(self.request(request)).await?)),
            at.rest(RestCall::delete, "")
                .param("cascade", &cascade.to_string())
                .param("propagationPolicy", propagation),
        )
        .await
        .map(drop)
    }

    /// Starts a sync; the Application with its operation.
    pub async fn sync_app(&self, request: pb::ApplicationSyncRequest) -> CliResult<Value> {
        let at = AppAt {
            name: request.name.clone(),
            namespace: request.app_namespace.clone(),
        };
        let strategy = match request.strategy.as_str() {
            "apply" => json!({ "apply": { "force": request.force } }),
            "hook" => json!({ "hook": { "force": request.force } }),
            _ if request.force => json!({ "hook": { "force": true } }),
            _ => Value::Null,
        };
        // Argo CD's ApplicationSyncRequest as JSON.
        let body = json!({
            "appNamespace": request.app_namespace,
            "revision": request.revision,
            "revisions": request.revisions,
            "prune": request.prune,
            "dryRun": request.dry_run,
            "strategy": strategy,
            "resources": request.resources.iter().map(|r| json!({
                "group": r.group, "kind": r.kind, "name": r.name, "namespace": r.namespace,
            })).collect::<Vec<_>>(),
            "syncOptions": { "items": request.sync_options },
            "retryStrategy": { "limit": request.retry_limit },
        });
        self.call(
            async |c| json_of(Apps::new(c).sync(self.request(request)).await?),
            RestCall::post(format!("/api/v1/applications/{}/sync", segment(&at.name))).body(body),
        )
        .await
    }

    /// Rolls back to history entry `id`.
    pub async fn rollback_app(
        &self,
        at: &AppAt,
        id: i64,
        prune: bool,
        dry_run: bool,
    ) -> CliResult<Value> {
        let request = pb::ApplicationRollbackRequest {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            id,
            prune,
            dry_run,
        };
        let body = json!({
            "id": id, "prune": prune, "dryRun": dry_run, "appNamespace": at.namespace,
        });
        self.call(
            async |c| json_of(Apps::new(c).rollback(self.request(request)).await?),
            RestCall::post(format!(
                "/api/v1/applications/{}/rollback",
                segment(&at.name)
            ))
            .body(body),
        )
        .await
    }

    /// Stops the running operation.
    pub async fn terminate_op(&self, at: &AppAt) -> CliResult<()> {
        let request = at.reference();
        self.call(
            async |c| {
                Ok(empty(
                    Apps::new(c)
                        .terminate_operation(self.request(request))
                        .await?,
                ))
            },
            at.rest(RestCall::delete, "/operation"),
        )
        .await
        .map(drop)
    }

    /// The deployment history (a list of entries).
    pub async fn history(&self, at: &AppAt) -> CliResult<Vec<Value>> {
        let request = at.reference();
        self.call(
            async |c| json_of(Apps::new(c).history(self.request(request)).await?),
            at.get("/history"),
        )
        .await
        .map(items)
    }

    /// The rendered manifests at `revision` (empty: the target): `{"manifests": [objects],
    /// "revision": "..."}`.
    pub async fn manifests(&self, at: &AppAt, revision: &str) -> CliResult<Value> {
        let request = pb::ApplicationManifestsRequest {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            revision: revision.to_owned(),
        };
        let answer = self
            .call(
                async |c| {
                    let list = Apps::new(c)
                        .manifests(self.request(request))
                        .await?
                        .into_inner();
                    Ok(json!({ "manifests": list.manifests, "revision": list.revision }))
                },
                at.get("/manifests").param("revision", revision),
            )
            .await?;
        // Both transports send each manifest as JSON text (as Argo CD does).
        let manifests = answer["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| match m {
                Value::String(text) => serde_json::from_str(text),
                other => Ok(other.clone()),
            })
            .collect::<Result<Vec<Value>, _>>()?;
        Ok(json!({ "manifests": manifests, "revision": answer["revision"] }))
    }

    /// The managed resources with their live and desired states and diffs.
    pub async fn managed_resources(&self, at: &AppAt) -> CliResult<Vec<Value>> {
        let request = at.reference();
        self.call(
            async |c| {
                json_of(
                    Apps::new(c)
                        .managed_resources(self.request(request))
                        .await?,
                )
            },
            at.get("/managed-resources"),
        )
        .await
        .map(items)
    }

    /// The managed resources compared with `manifests` (a local rendering) instead of Git's.
    pub async fn diff(&self, at: &AppAt, manifests: &[Value]) -> CliResult<Vec<Value>> {
        let texts: Vec<String> = manifests.iter().map(Value::to_string).collect();
        let body = json!({ "appNamespace": at.namespace, "manifests": texts });
        let request = pb::ApplicationDiffRequest {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            manifests: texts,
        };
        self.call(
            async |c| json_of(Apps::new(c).diff(self.request(request)).await?),
            RestCall::post(format!("/api/v1/applications/{}/diff", segment(&at.name))).body(body),
        )
        .await
        .map(items)
    }

    /// The resource tree: managed resources and their children (`{"nodes": [...]}`).
    pub async fn resource_tree(&self, at: &AppAt) -> CliResult<Value> {
        let request = at.reference();
        self.call(
            async |c| json_of(Apps::new(c).resource_tree(self.request(request)).await?),
            at.get("/resource-tree"),
        )
        .await
    }

    /// Kubernetes events about the Application's resources, oldest first.
    pub async fn events(&self, at: &AppAt) -> CliResult<Vec<Value>> {
        let request = pb::ApplicationEventsRequest {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            ..Default::default()
        };
        self.call(
            async |c| json_of(Apps::new(c).events(self.request(request)).await?),
            at.get("/events"),
        )
        .await
        .map(items)
    }
}
