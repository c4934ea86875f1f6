//! The methods of [`Client`] besides Applications: sessions, settings and version, accounts,
//! projects, repositories, clusters.

use capstan_proto::api::v1 as pb;
use pb::account_service_client::AccountServiceClient as Accounts;
use pb::cluster_service_client::ClusterServiceClient as Clusters;
use pb::project_service_client::ProjectServiceClient as Projects;
use pb::repository_service_client::RepositoryServiceClient as Repositories;
use pb::session_service_client::SessionServiceClient as Sessions;
use pb::settings_service_client::SettingsServiceClient as Settings;
use pb::version_service_client::VersionServiceClient as Versions;
use serde_json::{Value, json};

use super::{Client, RestCall, empty, items, json_of, segment, string_field};
use crate::error::CliResult;

/// `{"token": ...}`, as REST answers a token.
fn token_of(response: tonic::Response<pb::SessionToken>) -> Value {
    json!({ "token": response.into_inner().token })
}

/// A cluster named by its server URL (it has a scheme) or by its name.
fn cluster_query(server_or_name: &str) -> (pb::ClusterQuery, RestCall) {
    let rest = RestCall::get(format!("/api/v1/clusters/{}", segment(server_or_name)));
    if server_or_name.contains("://") {
        let query = pb::ClusterQuery {
            server: server_or_name.to_owned(),
            name: String::new(),
        };
        (query, rest)
    } else {
        let query = pb::ClusterQuery {
            server: String::new(),
            name: server_or_name.to_owned(),
        };
        (query, rest.param("id.type", "name"))
    }
}

impl Client {
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
                    Ok(token_of(
                        Sessions::new(c).create(self.request(request)).await?,
                    ))
                },
                RestCall::post("/api/v1/session").body(body),
            )
            .await?;
        string_field(&answer, "token")
    }

    /// Trades an ID token from the SSO provider for a session token (`POST /auth/token`,
    /// a REST-only route: the browser flow's sibling).
    pub async fn exchange_id_token(&self, id_token: &str) -> CliResult<String> {
        let answer = self
            .send(RestCall::post("/auth/token").body(json!({ "idToken": id_token })))
            .await?;
        string_field(&answer, "token")
    }

    /// Ends the session (the token is revoked on the server).
    pub async fn logout(&self) -> CliResult<()> {
        self.call(
            async |c| {
                Ok(empty(
                    Sessions::new(c).delete(self.request(pb::Empty {})).await?,
                ))
            },
            RestCall::delete("/api/v1/session"),
        )
        .await
        .map(drop)
    }

    /// Who the token belongs to.
    pub async fn user_info(&self) -> CliResult<Value> {
        self.call(
            async |c| {
                let info = Sessions::new(c)
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
            RestCall::get("/api/v1/session/userinfo"),
        )
        .await
    }

    /// What the server tells clients before they log in (SSO configuration).
    pub async fn settings(&self) -> CliResult<Value> {
        self.call(
            async |c| json_of(Settings::new(c).get(self.request(pb::Empty {})).await?),
            RestCall::get("/api/v1/settings"),
        )
        .await
    }

    /// The server's version.
    pub async fn version(&self) -> CliResult<Value> {
        self.call(
            async |c| json_of(Versions::new(c).version(self.request(pb::Empty {})).await?),
            RestCall::get("/api/version"),
        )
        .await
    }

    // --- accounts ------------------------------------------------------------------------

    /// Every account.
    pub async fn list_accounts(&self) -> CliResult<Vec<Value>> {
        self.call(
            async |c| json_of(Accounts::new(c).list(self.request(pb::Empty {})).await?),
            RestCall::get("/api/v1/account"),
        )
        .await
        .map(items)
    }

    /// One account.
    pub async fn get_account(&self, name: &str) -> CliResult<Value> {
        let request = pb::AccountRef {
            name: name.to_owned(),
        };
        self.call(
            async |c| json_of(Accounts::new(c).get(self.request(request)).await?),
            RestCall::get(format!("/api/v1/account/{}", segment(name))),
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
                Ok(empty(
                    Accounts::new(c)
                        .update_password(self.request(request))
                        .await?,
                ))
            },
            RestCall::put("/api/v1/account/password").body(body),
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
        let answer = self
            .call(
                async |c| {
                    Ok(token_of(
                        Accounts::new(c).create_token(self.request(request)).await?,
                    ))
                },
                RestCall::post(format!("/api/v1/account/{}/token", segment(name)))
                    .body(json!({ "expiresIn": expires_in, "id": id })),
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
        self.call(
            async |c| {
                Ok(empty(
                    Accounts::new(c).delete_token(self.request(request)).await?,
                ))
            },
            RestCall::delete(format!(
                "/api/v1/account/{}/token/{}",
                segment(name),
                segment(id)
            )),
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
        let object_path: Vec<String> = object.split('/').map(segment).collect();
        let answer = self
            .call(
                async |c| {
                    let answer = Accounts::new(c).can_i(self.request(request)).await?;
                    Ok(json!({ "value": answer.into_inner().value }))
                },
                RestCall::get(format!(
                    "/api/v1/account/can-i/{}/{}/{}",
                    segment(resource),
                    segment(action),
                    object_path.join("/")
                )),
            )
            .await?;
        string_field(&answer, "value")
    }

    // --- projects ------------------------------------------------------------------------

    /// Every project the caller may see.
    pub async fn list_projects(&self) -> CliResult<Vec<Value>> {
        self.call(
            async |c| json_of(Projects::new(c).list(self.request(pb::Empty {})).await?),
            RestCall::get("/api/v1/projects"),
        )
        .await
        .map(items)
    }

    /// One project.
    pub async fn get_project(&self, name: &str) -> CliResult<Value> {
        let request = pb::ProjectRef {
            name: name.to_owned(),
        };
        self.call(
            async |c| json_of(Projects::new(c).get(self.request(request)).await?),
            RestCall::get(format!("/api/v1/projects/{}", segment(name))),
        )
        .await
    }

    /// Creates a project (`project` is its JSON).
    pub async fn create_project(&self, project: &Value, upsert: bool) -> CliResult<Value> {
        let request = pb::ProjectCreateRequest {
            project: project.to_string(),
            upsert,
        };
        self.call(
            async |c| json_of(Projects::new(c).create(self.request(request)).await?),
            RestCall::post("/api/v1/projects")
                .body(json!({ "project": project, "upsert": upsert })),
        )
        .await
    }

    /// Replaces a project (as read, with its resourceVersion).
    pub async fn update_project(&self, name: &str, project: &Value) -> CliResult<Value> {
        let request = pb::ProjectUpdateRequest {
            project: project.to_string(),
        };
        self.call(
            async |c| json_of(Projects::new(c).update(self.request(request)).await?),
            RestCall::put(format!("/api/v1/projects/{}", segment(name)))
                .body(json!({ "project": project })),
        )
        .await
    }

    /// Deletes a project.
    pub async fn delete_project(&self, name: &str) -> CliResult<()> {
        let request = pb::ProjectRef {
            name: name.to_owned(),
        };
        self.call(
            async |c| Ok(empty(Projects::new(c).delete(self.request(request)).await?)),
            RestCall::delete(format!("/api/v1/projects/{}", segment(name))),
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
        let answer = self
            .call(
                async |c| {
                    Ok(token_of(
                        Projects::new(c).create_token(self.request(request)).await?,
                    ))
                },
                RestCall::post(format!(
                    "/api/v1/projects/{}/roles/{}/token",
                    segment(project),
                    segment(role)
                ))
                .body(json!({ "expiresIn": expires_in })),
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
        self.call(
            async |c| {
                Ok(empty(
                    Projects::new(c).delete_token(self.request(request)).await?,
                ))
            },
            RestCall::delete(format!(
                "/api/v1/projects/{}/roles/{}/token/{iat}",
                segment(project),
                segment(role)
            ))
            .param("id", id),
        )
        .await
        .map(drop)
    }

    // --- repositories --------------------------------------------------------------------

    /// Every repository the caller may see.
    pub async fn list_repos(&self) -> CliResult<Vec<Value>> {
        let request = pb::RepositoryQuery::default();
        self.call(
            async |c| json_of(Repositories::new(c).list(self.request(request)).await?),
            RestCall::get("/api/v1/repositories"),
        )
        .await
        .map(items)
    }

    /// One repository; `refresh` tests its connection.
    pub async fn get_repo(&self, url: &str, project: &str, refresh: bool) -> CliResult<Value> {
        let request = pb::RepositoryQuery {
            repo: url.to_owned(),
            force_refresh: refresh,
            app_project: project.to_owned(),
        };
        self.call(
            async |c| json_of(Repositories::new(c).get(self.request(request)).await?),
            RestCall::get(format!("/api/v1/repositories/{}", segment(url)))
                .param("forceRefresh", &refresh.to_string())
                .param("appProject", project),
        )
        .await
    }

    /// Registers a repository (`repository` is its JSON, credentials included).
    pub async fn create_repo(&self, repository: &Value, upsert: bool) -> CliResult<Value> {
        let request = pb::RepositoryCreateRequest {
            repository: repository.to_string(),
            upsert,
        };
        self.call(
            async |c| json_of(Repositories::new(c).create(self.request(request)).await?),
            RestCall::post("/api/v1/repositories")
                .param("upsert", &upsert.to_string())
                .body(repository.clone()),
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
        self.call(
            async |c| {
                Ok(empty(
                    Repositories::new(c).delete(self.request(request)).await?,
                ))
            },
            RestCall::delete(format!("/api/v1/repositories/{}", segment(url)))
                .param("appProject", project),
        )
        .await
        .map(drop)
    }

    // --- clusters ------------------------------------------------------------------------

    /// Every cluster the caller may see.
    pub async fn list_clusters(&self) -> CliResult<Vec<Value>> {
        self.call(
            async |c| json_of(Clusters::new(c).list(self.request(pb::Empty {})).await?),
            RestCall::get("/api/v1/clusters"),
        )
        .await
        .map(items)
    }

    /// One cluster, by server URL or name.
    pub async fn get_cluster(&self, server_or_name: &str) -> CliResult<Value> {
        let (request, rest) = cluster_query(server_or_name);
        self.call(
            async |c| json_of(Clusters::new(c).get(self.request(request)).await?),
            rest,
        )
        .await
    }

    /// Registers a cluster (`cluster` is its JSON, credentials included).
    pub async fn create_cluster(&self, cluster: &Value, upsert: bool) -> CliResult<Value> {
        let request = pb::ClusterCreateRequest {
            cluster: cluster.to_string(),
            upsert,
        };
        self.call(
            async |c| json_of(Clusters::new(c).create(self.request(request)).await?),
            RestCall::post("/api/v1/clusters")
                .param("upsert", &upsert.to_string())
                .body(cluster.clone()),
        )
        .await
    }

    /// Updates a cluster (found by its `spec.server`); empty credentials keep the stored ones.
    pub async fn update_cluster(&self, cluster: &Value) -> CliResult<Value> {
        let server = cluster["spec"]["server"].as_str().unwrap_or_default();
        let rest =
            RestCall::put(format!("/api/v1/clusters/{}", segment(server))).body(cluster.clone());
        let request = pb::ClusterUpdateRequest {
            cluster: cluster.to_string(),
        };
        self.call(
            async |c| json_of(Clusters::new(c).update(self.request(request)).await?),
            rest,
        )
        .await
    }

    /// Removes a cluster, by server URL or name.
    pub async fn delete_cluster(&self, server_or_name: &str) -> CliResult<()> {
        let (request, rest) = cluster_query(server_or_name);
        let rest = RestCall {
            method: http::Method::DELETE,
            ..rest
        };
        self.call(
            async |c| Ok(empty(Clusters::new(c).delete(self.request(request)).await?)),
            rest,
        )
        .await
        .map(drop)
    }
}
