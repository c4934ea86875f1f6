//! The API client: every method the CLI calls, over gRPC, or over REST where a proxy blocks
//! gRPC (`--rest`, or found out on the first call: see [`Client::call`]).
//!
//! Both transports answer the same JSON (the API sends objects as JSON text over gRPC too),
//! so each method here returns a [`Value`] of one shape whichever transport carried it, and
//! errors become the same [`CliError`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use capstan_proto::api::v1 as pb;
use pb::account_service_client::AccountServiceClient;
use pb::application_service_client::ApplicationServiceClient;
use pb::cluster_service_client::ClusterServiceClient;
use pb::project_service_client::ProjectServiceClient;
use pb::repository_service_client::RepositoryServiceClient;
use pb::session_service_client::SessionServiceClient;
use pb::settings_service_client::SettingsServiceClient;
use pb::version_service_client::VersionServiceClient;
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};

use crate::error::{CliError, CliResult, Exit};
use crate::tls::{TlsOptions, client_config};

/// Where the API is and how to reach it.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `host:port` or a URL.
    pub server: String,
    /// The bearer token, when logged in.
    pub token: Option<String>,
    /// Plain HTTP.
    pub plaintext: bool,
    /// TLS trust.
    pub tls: TlsOptions,
    /// REST only.
    pub rest: bool,
}

impl Target {
    /// The server's base URL (`https://host:port`, or `http://` with `plaintext`).
    pub fn base_url(&self) -> CliResult<String> {
        let server = self.server.trim().trim_end_matches('/');
        if server.is_empty() {
            return Err(CliError::usage("no server given")
                .hint("log in with `capstan login SERVER`, or pass --server or CAPSTAN_SERVER"));
        }
        let url = if server.starts_with("https://") || server.starts_with("http://") {
            server.to_owned()
        } else if self.plaintext {
            format!("http://{server}")
        } else {
            format!("https://{server}")
        };
        url.parse::<http::Uri>().map_err(|e| {
            CliError::usage(format!("the server {server:?} is not an address: {e}"))
        })?;
        Ok(url)
    }
}

/// The API client (cheap to clone).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: String,
    token: Option<String>,
    channel: Channel,
    http: reqwest::Client,
    /// Set once gRPC is known not to get through: every later call goes over REST.
    rest: AtomicBool,
}

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// A client for `target`; nothing is sent until the first call.
    pub fn new(target: &Target) -> CliResult<Client> {
        let base = target.base_url()?;
        let tls = base.starts_with("https://");
        let endpoint = Endpoint::from_shared(base.clone())
            .map_err(|e| CliError::usage(format!("the server address {base:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = if tls {
            let config = Arc::new(client_config(&target.tls, &[b"h2"])?);
            endpoint.connect_with_connector_lazy(tls_connector(config))
        } else {
            endpoint.connect_lazy()
        };
        let mut http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if tls {
            http =
                http.tls_backend_preconfigured(client_config(&target.tls, &[b"h2", b"http/1.1"])?);
        }
        let http = http
            .build()
            .map_err(|e| CliError::other(format!("HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                base,
                token: target.token.clone().filter(|t| !t.is_empty()),
                channel,
                http,
                rest: AtomicBool::new(target.rest),
            }),
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Whether calls go over REST.
    pub fn uses_rest(&self) -> bool {
        self.inner.rest.load(Ordering::Relaxed)
    }

    /// A gRPC request with the token.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.inner.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// One call: over gRPC unless REST is chosen; when gRPC turns out not to get through
    /// (something on the way answers plain HTTP, see [`not_grpc`]), this call and every
    /// later one go over REST.
    async fn call<G, R>(&self, grpc: G, rest: R) -> CliResult<Value>
    where
        G: AsyncFnOnce(Channel) -> Result<Value, tonic::Status>,
        R: AsyncFnOnce(&Rest<'_>) -> CliResult<Value>,
    {
        if !self.uses_rest() {
            match grpc(self.inner.channel.clone()).await {
                Ok(value) => return Ok(value),
                Err(status) if not_grpc(&status) => {
                    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                        eprintln!(
                            "gRPC does not get through ({}); using REST",
                            status.message()
                        );
                    }
                    self.inner.rest.store(true, Ordering::Relaxed);
                }
                Err(status) => return Err(status_error(&status)),
            }
        }
        rest(&Rest { client: self }).await
    }

    // --- sessions, settings, version -----------------------------------------------------

    /// Logs in; the session token.
    pub async fn login(&self, username: &str, password: &str) -> CliResult<String> {
        let request = pb::LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let body = json!({ "username": username, "password": password });
        let answer = self
            .call(
                async |c| {
                    let token = SessionServiceClient::new(c)
                        .create(self.request(request))
                        .await?;
                    Ok(json!({ "token": token.into_inner().token }))
                },
                async |r| {
                    r.send(reqwest::Method::POST, "/api/v1/session", &[], Some(body))
                        .await
                },
            )
            .await?;
        string_field(&answer, "token")
    }

    /// Trades an ID token from the SSO provider for a session token (`POST /auth/token`,
    /// a REST-only route: the browser flow's sibling).
    pub async fn exchange_id_token(&self, id_token: &str) -> CliResult<String> {
        let body = json!({ "idToken": id_token });
        let answer = Rest { client: self }
            .send(reqwest::Method::POST, "/auth/token", &[], Some(body))
            .await?;
        string_field(&answer, "token")
    }

    /// Ends the session (the token is revoked on the server).
    pub async fn logout(&self) -> CliResult<()> {
        self.call(
            async |c| {
                SessionServiceClient::new(c)
                    .delete(self.request(pb::Empty {}))
                    .await?;
                Ok(Value::Null)
            },
            async |r| {
                r.send(reqwest::Method::DELETE, "/api/v1/session", &[], None)
                    .await
            },
        )
        .await
        .map(drop)
    }

    /// Who the token belongs to.
    pub async fn user_info(&self) -> CliResult<Value> {
        self.call(
            async |c| {
                let info = SessionServiceClient::new(c)
                    .get_user_info(self.request(pb::Empty {}))
                    .await?
                    .into_inner();
                Ok(json!({
                    "loggedIn": info.logged_in,
                    "username": info.username,
                    "iss": info.iss,
                    "groups": info.groups,
                }))
            },
            async |r| r.get("/api/v1/session/userinfo", &[]).await,
        )
        .await
    }

    /// What the server tells clients before they log in (SSO configuration).
    pub async fn settings(&self) -> CliResult<Value> {
        self.call(
            async |c| {
                json_of(
                    SettingsServiceClient::new(c)
                        .get(self.request(pb::Empty {}))
                        .await?,
                )
            },
            async |r| r.get("/api/v1/settings", &[]).await,
        )
        .await
    }

    /// The server's version.
    pub async fn version(&self) -> CliResult<Value> {
        self.call(
            async |c| {
                json_of(
                    VersionServiceClient::new(c)
                        .version(self.request(pb::Empty {}))
                        .await?,
                )
            },
            async |r| r.get("/api/version", &[]).await,
        )
        .await
    }

    // --- applications ----------------------------------------------------------------------

    /// One page of Applications: `{"items": [...], "continue": "...", "resourceVersion": N}`.
    pub async fn list_apps(&self, query: pb::ApplicationQuery) -> CliResult<Value> {
        let mut params: Vec<(&str, String)> = Vec::new();
        for p in &query.projects {
            params.push(("projects", p.clone()));
        }
        for c in &query.clusters {
            params.push(("clusters", c.clone()));
        }
        for n in &query.namespaces {
            params.push(("namespaces", n.clone()));
        }
        for h in &query.health {
            params.push(("health", h.clone()));
        }
        for s in &query.sync {
            params.push(("sync", s.clone()));
        }
        for f in &query.fields {
            params.push(("fields", f.clone()));
        }
        for (key, value) in [
            ("selector", &query.selector),
            ("search", &query.search),
            ("continue", &query.r#continue),
            ("appNamespace", &query.app_namespace),
            ("repo", &query.repo),
        ] {
            if !value.is_empty() {
                params.push((key, value.clone()));
            }
        }
        if query.limit > 0 {
            params.push(("limit", query.limit.to_string()));
        }
        self.call(
            async |c| {
                let list = ApplicationServiceClient::new(c)
                    .list(self.request(query))
                    .await?
                    .into_inner();
                let items = list
                    .items
                    .iter()
                    .map(|i| serde_json::from_str(i))
                    .collect::<Result<Vec<Value>, _>>()
                    .map_err(|e| tonic::Status::internal(e.to_string()))?;
                Ok(json!({
                    "items": items,
                    "continue": list.r#continue,
                    "resourceVersion": list.resource_version,
                }))
            },
            async |r| {
                let page = r.get("/api/v1/applications", &params).await?;
                Ok(json!({
                    "items": page["items"].as_array().cloned().unwrap_or_default(),
                    "continue": page["metadata"]["continue"].as_str().unwrap_or_default(),
                    "resourceVersion": page["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or_default(),
                }))
            },
        )
        .await
    }

    /// One Application; `refresh` is "", "normal" or "hard".
    pub async fn get_app(&self, at: &AppAt, refresh: &str) -> CliResult<Value> {
        let request = pb::ApplicationRef {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            refresh: refresh.to_owned(),
        };
        let mut params = at.params();
        if !refresh.is_empty() {
            params.push(("refresh", refresh.to_owned()));
        }
        self.call(
            async |c| {
                json_of(
                    ApplicationServiceClient::new(c)
                        .get(self.request(request))
                        .await?,
                )
            },
            async |r| r.get(&at.path(""), &params).await,
        )
        .await
    }

    /// Creates an Application (`app` is its JSON).
    pub async fn create_app(&self, app: &Value, upsert: bool) -> CliResult<Value> {
        let request = pb::ApplicationCreateRequest {
            application: app.to_string(),
            upsert,
        };
        let params = vec![("upsert", upsert.to_string())];
        self.call(
            async |c| {
                json_of(
                    ApplicationServiceClient::new(c)
                        .create(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send_with(
                    reqwest::Method::POST,
                    "/api/v1/applications",
                    &params,
                    Some(app.clone()),
                )
                .await
            },
        )
        .await
    }

    /// Replaces an Application's spec (the whole object, as read).
    pub async fn update_app(&self, at: &AppAt, app: &Value) -> CliResult<Value> {
        let request = pb::ApplicationUpdateRequest {
            application: app.to_string(),
        };
        self.call(
            async |c| {
                json_of(
                    ApplicationServiceClient::new(c)
                        .update(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send_with(
                    reqwest::Method::PUT,
                    &at.path(""),
                    &at.params(),
                    Some(app.clone()),
                )
                .await
            },
        )
        .await
    }

    /// Patches an Application: `patch_type` "merge" (RFC 7386) or "json" (RFC 6902).
    pub async fn patch_app(&self, at: &AppAt, patch: &Value, patch_type: &str) -> CliResult<Value> {
        let request = pb::ApplicationPatchRequest {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            patch: patch.to_string(),
            patch_type: patch_type.to_owned(),
        };
        let body = json!({
            "patch": patch.to_string(),
            "patchType": patch_type,
            "appNamespace": at.namespace,
        });
        self.call(
            async |c| {
                json_of(
                    ApplicationServiceClient::new(c)
                        .patch(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send(reqwest::Method::PATCH, &at.path(""), &[], Some(body))
                    .await
            },
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
        let mut params = at.params();
        params.push(("cascade", cascade.to_string()));
        if !propagation.is_empty() {
            params.push(("propagationPolicy", propagation.to_owned()));
        }
        self.call(
            async |c| {
                ApplicationServiceClient::new(c)
                    .delete(self.request(request))
                    .await?;
                Ok(Value::Null)
            },
            async |r| {
                r.send(reqwest::Method::DELETE, &at.path(""), &params, None)
                    .await
            },
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
            async |c| {
                json_of(
                    ApplicationServiceClient::new(c)
                        .sync(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send(reqwest::Method::POST, &at.path("/sync"), &[], Some(body))
                    .await
            },
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
            async |c| {
                json_of(
                    ApplicationServiceClient::new(c)
                        .rollback(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send(
                    reqwest::Method::POST,
                    &at.path("/rollback"),
                    &[],
                    Some(body),
                )
                .await
            },
        )
        .await
    }

    /// Stops the running operation.
    pub async fn terminate_op(&self, at: &AppAt) -> CliResult<()> {
        let request = at.reference();
        self.call(
            async |c| {
                ApplicationServiceClient::new(c)
                    .terminate_operation(self.request(request))
                    .await?;
                Ok(Value::Null)
            },
            async |r| {
                r.send(
                    reqwest::Method::DELETE,
                    &at.path("/operation"),
                    &at.params(),
                    None,
                )
                .await
            },
        )
        .await
        .map(drop)
    }

    /// The deployment history (a list of entries).
    pub async fn history(&self, at: &AppAt) -> CliResult<Vec<Value>> {
        let request = at.reference();
        let answer = self
            .call(
                async |c| {
                    json_of(
                        ApplicationServiceClient::new(c)
                            .history(self.request(request))
                            .await?,
                    )
                },
                async |r| r.get(&at.path("/history"), &at.params()).await,
            )
            .await?;
        Ok(items(answer))
    }

    /// The rendered manifests at `revision` (empty: the target): `{"manifests": [objects],
    /// "revision": "..."}`.
    pub async fn manifests(&self, at: &AppAt, revision: &str) -> CliResult<Value> {
        let request = pb::ApplicationManifestsRequest {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            revision: revision.to_owned(),
        };
        let mut params = at.params();
        if !revision.is_empty() {
            params.push(("revision", revision.to_owned()));
        }
        let answer = self
            .call(
                async |c| {
                    let list = ApplicationServiceClient::new(c)
                        .manifests(self.request(request))
                        .await?
                        .into_inner();
                    Ok(json!({ "manifests": list.manifests, "revision": list.revision }))
                },
                async |r| r.get(&at.path("/manifests"), &params).await,
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
        let answer = self
            .call(
                async |c| {
                    json_of(
                        ApplicationServiceClient::new(c)
                            .managed_resources(self.request(request))
                            .await?,
                    )
                },
                async |r| r.get(&at.path("/managed-resources"), &at.params()).await,
            )
            .await?;
        Ok(items(answer))
    }

    /// The managed resources compared with `manifests` (a local rendering) instead of Git's.
    pub async fn diff(&self, at: &AppAt, manifests: &[Value]) -> CliResult<Vec<Value>> {
        let texts: Vec<String> = manifests.iter().map(Value::to_string).collect();
        let request = pb::ApplicationDiffRequest {
            name: at.name.clone(),
            app_namespace: at.namespace.clone(),
            manifests: texts.clone(),
        };
        let body = json!({ "appNamespace": at.namespace, "manifests": texts });
        let answer = self
            .call(
                async |c| {
                    json_of(
                        ApplicationServiceClient::new(c)
                            .diff(self.request(request))
                            .await?,
                    )
                },
                async |r| {
                    r.send(reqwest::Method::POST, &at.path("/diff"), &[], Some(body))
                        .await
                },
            )
            .await?;
        Ok(items(answer))
    }

    /// The resource tree: managed resources and their children (`{"nodes": [...]}`).
    pub async fn resource_tree(&self, at: &AppAt) -> CliResult<Value> {
        let request = at.reference();
        self.call(
            async |c| {
                json_of(
                    ApplicationServiceClient::new(c)
                        .resource_tree(self.request(request))
                        .await?,
                )
            },
            async |r| r.get(&at.path("/resource-tree"), &at.params()).await,
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
        let answer = self
            .call(
                async |c| {
                    json_of(
                        ApplicationServiceClient::new(c)
                            .events(self.request(request))
                            .await?,
                    )
                },
                async |r| r.get(&at.path("/events"), &at.params()).await,
            )
            .await?;
        Ok(items(answer))
    }

    // --- accounts --------------------------------------------------------------------------

    /// Every account.
    pub async fn list_accounts(&self) -> CliResult<Vec<Value>> {
        let answer = self
            .call(
                async |c| {
                    json_of(
                        AccountServiceClient::new(c)
                            .list(self.request(pb::Empty {}))
                            .await?,
                    )
                },
                async |r| r.get("/api/v1/account", &[]).await,
            )
            .await?;
        Ok(items(answer))
    }

    /// One account.
    pub async fn get_account(&self, name: &str) -> CliResult<Value> {
        let request = pb::AccountRef {
            name: name.to_owned(),
        };
        self.call(
            async |c| {
                json_of(
                    AccountServiceClient::new(c)
                        .get(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.get(&format!("/api/v1/account/{}", segment(name)), &[])
                    .await
            },
        )
        .await
    }

    /// Changes a password (`name` empty: the caller's own).
    pub async fn update_password(&self, name: &str, current: &str, new: &str) -> CliResult<()> {
        let request = pb::PasswordChange {
            name: name.to_owned(),
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        let body = json!({ "name": name, "currentPassword": current, "newPassword": new });
        self.call(
            async |c| {
                AccountServiceClient::new(c)
                    .update_password(self.request(request))
                    .await?;
                Ok(Value::Null)
            },
            async |r| {
                r.send(
                    reqwest::Method::PUT,
                    "/api/v1/account/password",
                    &[],
                    Some(body),
                )
                .await
            },
        )
        .await
        .map(drop)
    }

    /// A new API token for account `name`.
    pub async fn create_account_token(
        &self,
        name: &str,
        expires_in: i64,
        id: &str,
    ) -> CliResult<String> {
        let request = pb::TokenRequest {
            name: name.to_owned(),
            expires_in,
            id: id.to_owned(),
        };
        let body = json!({ "expiresIn": expires_in, "id": id });
        let answer = self
            .call(
                async |c| {
                    let token = AccountServiceClient::new(c)
                        .create_token(self.request(request))
                        .await?;
                    Ok(json!({ "token": token.into_inner().token }))
                },
                async |r| {
                    r.send(
                        reqwest::Method::POST,
                        &format!("/api/v1/account/{}/token", segment(name)),
                        &[],
                        Some(body),
                    )
                    .await
                },
            )
            .await?;
        string_field(&answer, "token")
    }

    /// Revokes an API token.
    pub async fn delete_account_token(&self, name: &str, id: &str) -> CliResult<()> {
        let request = pb::TokenRef {
            name: name.to_owned(),
            id: id.to_owned(),
        };
        let path = format!("/api/v1/account/{}/token/{}", segment(name), segment(id));
        self.call(
            async |c| {
                AccountServiceClient::new(c)
                    .delete_token(self.request(request))
                    .await?;
                Ok(Value::Null)
            },
            async |r| r.send(reqwest::Method::DELETE, &path, &[], None).await,
        )
        .await
        .map(drop)
    }

    /// Whether the caller may: "yes" or "no".
    pub async fn can_i(&self, action: &str, resource: &str, object: &str) -> CliResult<String> {
        let request = pb::CanIRequest {
            resource: resource.to_owned(),
            action: action.to_owned(),
            subresource: object.to_owned(),
        };
        let path = format!(
            "/api/v1/account/can-i/{}/{}/{}",
            segment(resource),
            segment(action),
            object.split('/').map(segment).collect::<Vec<_>>().join("/")
        );
        let answer = self
            .call(
                async |c| {
                    let answer = AccountServiceClient::new(c)
                        .can_i(self.request(request))
                        .await?;
                    Ok(json!({ "value": answer.into_inner().value }))
                },
                async |r| r.get(&path, &[]).await,
            )
            .await?;
        string_field(&answer, "value")
    }

    // --- projects --------------------------------------------------------------------------

    /// Every project the caller may see.
    pub async fn list_projects(&self) -> CliResult<Vec<Value>> {
        let answer = self
            .call(
                async |c| {
                    json_of(
                        ProjectServiceClient::new(c)
                            .list(self.request(pb::Empty {}))
                            .await?,
                    )
                },
                async |r| r.get("/api/v1/projects", &[]).await,
            )
            .await?;
        Ok(items(answer))
    }

    /// One project.
    pub async fn get_project(&self, name: &str) -> CliResult<Value> {
        let request = pb::ProjectRef {
            name: name.to_owned(),
        };
        self.call(
            async |c| {
                json_of(
                    ProjectServiceClient::new(c)
                        .get(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.get(&format!("/api/v1/projects/{}", segment(name)), &[])
                    .await
            },
        )
        .await
    }

    /// Creates a project (`project` is its JSON).
    pub async fn create_project(&self, project: &Value, upsert: bool) -> CliResult<Value> {
        let request = pb::ProjectCreateRequest {
            project: project.to_string(),
            upsert,
        };
        let body = json!({ "project": project, "upsert": upsert });
        self.call(
            async |c| {
                json_of(
                    ProjectServiceClient::new(c)
                        .create(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send(reqwest::Method::POST, "/api/v1/projects", &[], Some(body))
                    .await
            },
        )
        .await
    }

    /// Replaces a project (as read, with its resourceVersion).
    pub async fn update_project(&self, name: &str, project: &Value) -> CliResult<Value> {
        let request = pb::ProjectUpdateRequest {
            project: project.to_string(),
        };
        let body = json!({ "project": project });
        self.call(
            async |c| {
                json_of(
                    ProjectServiceClient::new(c)
                        .update(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send(
                    reqwest::Method::PUT,
                    &format!("/api/v1/projects/{}", segment(name)),
                    &[],
                    Some(body),
                )
                .await
            },
        )
        .await
    }

    /// Deletes a project.
    pub async fn delete_project(&self, name: &str) -> CliResult<()> {
        let request = pb::ProjectRef {
            name: name.to_owned(),
        };
        let path = format!("/api/v1/projects/{}", segment(name));
        self.call(
            async |c| {
                ProjectServiceClient::new(c)
                    .delete(self.request(request))
                    .await?;
                Ok(Value::Null)
            },
            async |r| r.send(reqwest::Method::DELETE, &path, &[], None).await,
        )
        .await
        .map(drop)
    }

    /// A token for a project role.
    pub async fn create_project_token(
        &self,
        project: &str,
        role: &str,
        expires_in: i64,
    ) -> CliResult<String> {
        let request = pb::ProjectTokenCreateRequest {
            project: project.to_owned(),
            role: role.to_owned(),
            expires_in,
            id: String::new(),
        };
        let path = format!(
            "/api/v1/projects/{}/roles/{}/token",
            segment(project),
            segment(role)
        );
        let body = json!({ "expiresIn": expires_in });
        let answer = self
            .call(
                async |c| {
                    let token = ProjectServiceClient::new(c)
                        .create_token(self.request(request))
                        .await?;
                    Ok(json!({ "token": token.into_inner().token }))
                },
                async |r| r.send(reqwest::Method::POST, &path, &[], Some(body)).await,
            )
            .await?;
        string_field(&answer, "token")
    }

    /// Revokes a project role's tokens issued at `iat` (only `id`, when given).
    pub async fn delete_project_token(
        &self,
        project: &str,
        role: &str,
        iat: i64,
        id: &str,
    ) -> CliResult<()> {
        let request = pb::ProjectTokenDeleteRequest {
            project: project.to_owned(),
            role: role.to_owned(),
            iat,
            id: id.to_owned(),
        };
        let path = format!(
            "/api/v1/projects/{}/roles/{}/token/{iat}",
            segment(project),
            segment(role)
        );
        let params = if id.is_empty() {
            Vec::new()
        } else {
            vec![("id", id.to_owned())]
        };
        self.call(
            async |c| {
                ProjectServiceClient::new(c)
                    .delete_token(self.request(request))
                    .await?;
                Ok(Value::Null)
            },
            async |r| r.send(reqwest::Method::DELETE, &path, &params, None).await,
        )
        .await
        .map(drop)
    }

    // --- repositories ----------------------------------------------------------------------

    /// Every repository the caller may see.
    pub async fn list_repos(&self) -> CliResult<Vec<Value>> {
        let answer = self
            .call(
                async |c| {
                    json_of(
                        RepositoryServiceClient::new(c)
                            .list(self.request(pb::RepositoryQuery::default()))
                            .await?,
                    )
                },
                async |r| r.get("/api/v1/repositories", &[]).await,
            )
            .await?;
        Ok(items(answer))
    }

    /// One repository; `refresh` tests its connection.
    pub async fn get_repo(&self, url: &str, project: &str, refresh: bool) -> CliResult<Value> {
        let request = pb::RepositoryQuery {
            repo: url.to_owned(),
            force_refresh: refresh,
            app_project: project.to_owned(),
        };
        let mut params = vec![("forceRefresh", refresh.to_string())];
        if !project.is_empty() {
            params.push(("appProject", project.to_owned()));
        }
        self.call(
            async |c| {
                json_of(
                    RepositoryServiceClient::new(c)
                        .get(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.get(&format!("/api/v1/repositories/{}", segment(url)), &params)
                    .await
            },
        )
        .await
    }

    /// Registers a repository (`repository` is its JSON, credentials included).
    pub async fn create_repo(&self, repository: &Value, upsert: bool) -> CliResult<Value> {
        let request = pb::RepositoryCreateRequest {
            repository: repository.to_string(),
            upsert,
        };
        let params = vec![("upsert", upsert.to_string())];
        self.call(
            async |c| {
                json_of(
                    RepositoryServiceClient::new(c)
                        .create(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send_with(
                    reqwest::Method::POST,
                    "/api/v1/repositories",
                    &params,
                    Some(repository.clone()),
                )
                .await
            },
        )
        .await
    }

    /// Removes a repository.
    pub async fn delete_repo(&self, url: &str, project: &str) -> CliResult<()> {
        let request = pb::RepositoryQuery {
            repo: url.to_owned(),
            force_refresh: false,
            app_project: project.to_owned(),
        };
        let params = if project.is_empty() {
            Vec::new()
        } else {
            vec![("appProject", project.to_owned())]
        };
        let path = format!("/api/v1/repositories/{}", segment(url));
        self.call(
            async |c| {
                RepositoryServiceClient::new(c)
                    .delete(self.request(request))
                    .await?;
                Ok(Value::Null)
            },
            async |r| r.send(reqwest::Method::DELETE, &path, &params, None).await,
        )
        .await
        .map(drop)
    }

    // --- clusters --------------------------------------------------------------------------

    /// Every cluster the caller may see.
    pub async fn list_clusters(&self) -> CliResult<Vec<Value>> {
        let answer = self
            .call(
                async |c| {
                    json_of(
                        ClusterServiceClient::new(c)
                            .list(self.request(pb::Empty {}))
                            .await?,
                    )
                },
                async |r| r.get("/api/v1/clusters", &[]).await,
            )
            .await?;
        Ok(items(answer))
    }

    /// One cluster, by server URL or name.
    pub async fn get_cluster(&self, server_or_name: &str) -> CliResult<Value> {
        let (request, path, params) = cluster_query(server_or_name);
        self.call(
            async |c| {
                json_of(
                    ClusterServiceClient::new(c)
                        .get(self.request(request))
                        .await?,
                )
            },
            async |r| r.get(&path, &params).await,
        )
        .await
    }

    /// Registers a cluster (`cluster` is its JSON, credentials included).
    pub async fn create_cluster(&self, cluster: &Value, upsert: bool) -> CliResult<Value> {
        let request = pb::ClusterCreateRequest {
            cluster: cluster.to_string(),
            upsert,
        };
        let params = vec![("upsert", upsert.to_string())];
        self.call(
            async |c| {
                json_of(
                    ClusterServiceClient::new(c)
                        .create(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send_with(
                    reqwest::Method::POST,
                    "/api/v1/clusters",
                    &params,
                    Some(cluster.clone()),
                )
                .await
            },
        )
        .await
    }

    /// Updates a cluster (found by its `spec.server`); empty credentials keep the stored ones.
    pub async fn update_cluster(&self, cluster: &Value) -> CliResult<Value> {
        let server = cluster["spec"]["server"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let request = pb::ClusterUpdateRequest {
            cluster: cluster.to_string(),
        };
        let path = format!("/api/v1/clusters/{}", segment(&server));
        self.call(
            async |c| {
                json_of(
                    ClusterServiceClient::new(c)
                        .update(self.request(request))
                        .await?,
                )
            },
            async |r| {
                r.send_with(reqwest::Method::PUT, &path, &[], Some(cluster.clone()))
                    .await
            },
        )
        .await
    }

    /// Removes a cluster, by server URL or name.
    pub async fn delete_cluster(&self, server_or_name: &str) -> CliResult<()> {
        let (request, path, params) = cluster_query(server_or_name);
        self.call(
            async |c| {
                ClusterServiceClient::new(c)
                    .delete(self.request(request))
                    .await?;
                Ok(Value::Null)
            },
            async |r| r.send(reqwest::Method::DELETE, &path, &params, None).await,
        )
        .await
        .map(drop)
    }
}

/// A cluster named by its server URL (it has a scheme) or its name.
fn cluster_query(server_or_name: &str) -> (pb::ClusterQuery, String, Vec<(&'static str, String)>) {
    let path = format!("/api/v1/clusters/{}", segment(server_or_name));
    if server_or_name.contains("://") {
        (
            pb::ClusterQuery {
                server: server_or_name.to_owned(),
                name: String::new(),
            },
            path,
            Vec::new(),
        )
    } else {
        (
            pb::ClusterQuery {
                server: String::new(),
                name: server_or_name.to_owned(),
            },
            path,
            vec![("id.type", "name".to_owned())],
        )
    }
}

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

    fn path(&self, suffix: &str) -> String {
        format!("/api/v1/applications/{}{suffix}", segment(&self.name))
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        if self.namespace.is_empty() {
            Vec::new()
        } else {
            vec![("appNamespace", self.namespace.clone())]
        }
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

/// A REST call in progress (see [`Client::call`]).
#[derive(Debug)]
struct Rest<'a> {
    client: &'a Client,
}

/// The largest REST answer read (a list page of thousands of apps fits).
const MAX_ANSWER_BYTES: usize = 256 << 20;

impl Rest<'_> {
    async fn get(&self, path: &str, query: &[(&str, String)]) -> CliResult<Value> {
        self.send_with(reqwest::Method::GET, path, query, None)
            .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> CliResult<Value> {
        self.send_with(method, path, query, body).await
    }

    async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> CliResult<Value> {
        let inner = &self.client.inner;
        let mut url = format!("{}{path}", inner.base);
        if !query.is_empty() {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (key, value) in query {
                form.append_pair(key, value);
            }
            url.push('?');
            url.push_str(&form.finish());
        }
        let mut request = inner.http.request(method, &url);
        if let Some(token) = &inner.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&inner.base, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unreachable(&inner.base, &e))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(CliError::other("the server's answer is too large"));
        }
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&bytes).chars().take(300).collect())
            })
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value["message"]
            .as_str()
            .or_else(|| value["error"].as_str())
            .or_else(|| value.as_str())
            .unwrap_or_default()
            .to_owned();
        let code = value["code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .map(tonic::Code::from)
            .unwrap_or_else(|| code_of_http(status.as_u16()));
        Err(CliError::from_server(code, &message))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One path segment, percent-encoded (repository and cluster URLs travel in the path).
fn segment(text: &str) -> String {
    percent_encode(text)
}

fn code_of_http(status: u16) -> tonic::Code {
    match status {
        400 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        409 => tonic::Code::AlreadyExists,
        429 => tonic::Code::ResourceExhausted,
        502..=504 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    }
}

fn unreachable(base: &str, error: &reqwest::Error) -> CliError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    CliError::new(Exit::Unavailable, format!("cannot reach {base}: {message}")).hint(
        "check the address, that the server runs, and TLS (--insecure, --server-ca, --plaintext)",
    )
}

/// Whether a gRPC failure means that something on the way answered plain HTTP (a proxy
/// without HTTP/2 or gRPC support), so REST may get through where gRPC did not.
fn not_grpc(status: &tonic::Status) -> bool {
    let message = status.message();
    matches!(
        status.code(),
        tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Unimplemented
    ) && (message.contains("HTTP status code")
        || message.contains("content-type")
        || message.contains("protocol error")
        || message.contains("invalid compression flag"))
}

/// A gRPC status as the user's error; transport failures say what could not be reached.
fn status_error(status: &tonic::Status) -> CliError {
    if status.code() == tonic::Code::Unavailable || status.code() == tonic::Code::Unknown {
        let mut message = status.message().to_owned();
        let mut source = std::error::Error::source(status);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        if status.code() == tonic::Code::Unavailable || message.contains("transport error") {
            return CliError::new(Exit::Unavailable, format!("cannot reach the server: {message}"))
                .hint("check the address, that the server runs, and TLS (--insecure, --server-ca, --plaintext); if a proxy blocks gRPC, add --rest");
        }
        return CliError::from_server(status.code(), &message);
    }
    CliError::from_server(status.code(), status.message())
}

fn json_of(response: tonic::Response<pb::Json>) -> Result<Value, tonic::Status> {
    serde_json::from_str(&response.into_inner().json)
        .map_err(|e| tonic::Status::internal(format!("the server's JSON: {e}")))
}

/// A list's entries: an array, or `{"items": [...]}`.
pub fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn string_field(value: &Value, field: &str) -> CliResult<String> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::other(format!("the server's answer has no {field:?}")))
}

/// Connects TLS streams for gRPC with our rustls configuration (`--insecure` and
/// `--server-ca` included, which tonic's own TLS options cannot express).
fn tls_connector(
    config: Arc<rustls::ClientConfig>,
) -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Future<
        Output = std::io::Result<
            hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        >,
    > + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: http::Uri| {
        let config = config.clone();
        async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other("the server address has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme_and_bad_ones_a_usage_error() {
        let target = |server: &str, plaintext: bool| Target {
            server: server.to_owned(),
            plaintext,
            ..Target::default()
        };
        assert_eq!(
            target("localhost:8080", false).base_url().ok().as_deref(),
            Some("https://localhost:8080")
        );
        assert_eq!(
            target("localhost:8080", true).base_url().ok().as_deref(),
            Some("http://localhost:8080")
        );
        assert_eq!(
            target("http://h:1/", false).base_url().ok().as_deref(),
            Some("http://h:1")
        );
        assert_eq!(
            target("", false).base_url().map_err(|e| e.exit).err(),
            Some(Exit::Usage)
        );
        assert_eq!(
            target("bad host:x", false)
                .base_url()
                .map_err(|e| e.exit)
                .err(),
            Some(Exit::Usage)
        );
    }

    #[test]
    fn names_in_another_namespace_and_path_segments() {
        assert_eq!(
            AppAt::parse("team/web", ""),
            AppAt {
                name: "web".into(),
                namespace: "team".into()
            }
        );
        assert_eq!(AppAt::parse("web", "ns").to_string(), "ns/web");
        assert_eq!(
            segment("https://git.example/a b.git"),
            "https%3A%2F%2Fgit.example%2Fa%20b.git"
        );
    }

    #[test]
    fn lists_come_as_arrays_or_items() {
        assert_eq!(items(json!([1, 2])), vec![json!(1), json!(2)]);
        assert_eq!(items(json!({"items": [3]})), vec![json!(3)]);
        assert!(items(json!({"items": null})).is_empty());
    }
}
