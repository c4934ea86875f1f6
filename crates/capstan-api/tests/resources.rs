//! End-to-end tests of the projects, repositories and clusters services over real HTTP on
//! loopback: one server per test over an embedded store in a temporary directory, spoken to
//! with REST (reqwest) and gRPC (the generated clients). Every scenario runs once per
//! transport, each method with and without permission.
//!
//! The [`Client`] keeps every answer it receives, so a test can check that a credential it
//! sent never came back in any of them.

mod common;

use anyhow::{Context as _, Result};
use capstan_api::accounts::AccountConfig;
use capstan_api::rbac::Policy;
use capstan_api::service::ApiConfig;
use capstan_model::{AppProject, ClusterStatus, ConnectionState, Timestamp};
use capstan_proto::api::v1 as pb;
use capstan_store::Precondition;
use capstan_store::kinds::{AppProjects, Clusters, Repositories};
use capstan_store::typed::{ObjectRef, StatusWrite, TypedStore};
use common::{
    Answer, Client, DEADLINE, Harness, Kind, NS, assert_refused, names, open_store,
    over_rest_and_grpc,
};
use pb::cluster_service_client::ClusterServiceClient;
use pb::project_service_client::ProjectServiceClient;
use pb::repository_service_client::RepositoryServiceClient;
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

/// alice runs project team-a (and its Applications, and reads its repositories); rita runs
/// repositories and clusters; bob has no role at all.
const POLICY: &str = "\
p, role:team-a-admin, projects, *, team-a, allow
p, role:team-a-admin, applications, *, team-a/*, allow
p, role:team-a-admin, repositories, get, team-a/*, allow
g, alice, role:team-a-admin
p, role:infra, repositories, *, *, allow
p, role:infra, clusters, *, *, allow
g, rita, role:infra
";
const USERS: [&str; 3] = ["alice", "rita", "bob"];
const REPO_URL: &str = "https://git.example.com/team-a/deploy.git";
const REPO_PASSWORD: &str = "the-repository-password-3f9a";
const SERVER: &str = "https://10.1.2.3:6443";
const CLUSTER_TOKEN: &str = "the-cluster-bearer-token-77c1";

impl Harness {
    /// An API server on loopback over a fresh store (no repo-server), with the passwords of
    /// alice, rita and bob set.
    async fn start() -> Result<Self> {
        let (dir, store) = open_store().await?;
        let mut config = ApiConfig::new(Policy::parse(POLICY, None)?);
        config.accounts = USERS
            .iter()
            .map(|u| format!("{u}=login").parse::<AccountConfig>())
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        Harness::serve(dir, store, config, &USERS).await
    }

    /// Sessions of admin, alice, rita and bob.
    async fn users(&self, kind: Kind) -> Result<[Client; 4]> {
        Ok([
            self.login(kind, "admin").await?,
            self.login(kind, "alice").await?,
            self.login(kind, "rita").await?,
            self.login(kind, "bob").await?,
        ])
    }

    async fn stored_project(&self, name: &str) -> Result<AppProject> {
        Ok(TypedStore::<AppProjects>::new(self.store.clone())
            .get(&ObjectRef::new(NS, name))
            .await?
            .with_context(|| format!("project {name} is not in the store"))?
            .spec
            .value)
    }
}

/// A path segment: `text` percent-encoded (a URL in a path).
fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `{"items": [...]}` → the items.
fn items(answer: &Value) -> Vec<Value> {
    answer["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no items in {answer}"))
}

impl Client {
    /// Every answer (bodies, error messages) this client and its clones received.
    fn transcript(&self) -> String {
        self.answers.lock().expect("not poisoned").join("\n")
    }

    fn projects(&self) -> ProjectServiceClient<Channel> {
        ProjectServiceClient::new(self.channel.clone())
    }

    fn repositories(&self) -> RepositoryServiceClient<Channel> {
        RepositoryServiceClient::new(self.channel.clone())
    }

    fn clusters(&self) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.channel.clone())
    }

    // Applications (only what the scenarios need).

    async fn create_app(&self, app: &Value) -> Answer<Value> {
        self.create(app, false).await
    }

    async fn get_app(&self, name: &str) -> Answer<Value> {
        self.get(name, "").await
    }

    /// Deletes an Application at once (no cascade).
    async fn delete_app(&self, name: &str) -> Answer<()> {
        self.delete(name, Some(false)).await
    }

    // Projects.

    async fn list_projects(&self) -> Answer<Vec<Value>> {
        let answer = match self.kind {
            Kind::Rest => self.rest(Method::GET, "/api/v1/projects", None).await?,
            Kind::Grpc => self.grpc_json(self.projects().list(self.request(pb::Empty {})).await)?,
        };
        Ok(items(&answer))
    }

    async fn get_project(&self, name: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                self.rest(Method::GET, &format!("/api/v1/projects/{name}"), None)
                    .await
            }
            Kind::Grpc => {
                let request = self.request(pb::ProjectRef {
                    name: name.to_owned(),
                });
                self.grpc_json(self.projects().get(request).await)
            }
        }
    }

    async fn create_project(&self, project: &Value, upsert: bool) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let body = json!({"project": project, "upsert": upsert});
                self.rest(Method::POST, "/api/v1/projects", Some(&body))
                    .await
            }
            Kind::Grpc => {
                let request = self.request(pb::ProjectCreateRequest {
                    project: project.to_string(),
                    upsert,
                });
                self.grpc_json(self.projects().create(request).await)
            }
        }
    }

    async fn update_project(&self, project: &Value) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let name = project["metadata"]["name"].as_str().unwrap_or_default();
                let body = json!({ "project": project });
                self.rest(
                    Method::PUT,
                    &format!("/api/v1/projects/{name}"),
                    Some(&body),
                )
                .await
            }
            Kind::Grpc => {
                let request = self.request(pb::ProjectUpdateRequest {
                    project: project.to_string(),
                });
                self.grpc_json(self.projects().update(request).await)
            }
        }
    }

    async fn delete_project(&self, name: &str) -> Answer<()> {
        match self.kind {
            Kind::Rest => self
                .rest(Method::DELETE, &format!("/api/v1/projects/{name}"), None)
                .await
                .map(drop),
            Kind::Grpc => {
                let request = self.request(pb::ProjectRef {
                    name: name.to_owned(),
                });
                self.grpc(self.projects().delete(request).await).map(drop)
            }
        }
    }

    async fn sync_windows(&self, name: &str) -> Answer<Value> {
        let answer = match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/projects/{name}/syncwindows");
                self.rest(Method::GET, &path, None).await?
            }
            Kind::Grpc => {
                let request = self.request(pb::ProjectRef {
                    name: name.to_owned(),
                });
                self.grpc_json(self.projects().get_sync_windows(request).await)?
            }
        };
        Ok(answer["windows"].clone())
    }

    async fn create_project_token(&self, project: &str, role: &str, id: &str) -> Answer<String> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/projects/{project}/roles/{role}/token");
                let body = json!({"expiresIn": 3600, "id": id});
                let answer = self.rest(Method::POST, &path, Some(&body)).await?;
                Ok(answer["token"].as_str().expect("a token").to_owned())
            }
            Kind::Grpc => {
                let request = self.request(pb::ProjectTokenCreateRequest {
                    project: project.to_owned(),
                    role: role.to_owned(),
                    expires_in: 3600,
                    id: id.to_owned(),
                });
                Ok(self
                    .grpc(self.projects().create_token(request).await)?
                    .token)
            }
        }
    }

    async fn delete_project_token(&self, project: &str, role: &str, iat: i64) -> Answer<()> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/projects/{project}/roles/{role}/token/{iat}");
                self.rest(Method::DELETE, &path, None).await.map(drop)
            }
            Kind::Grpc => {
                let request = self.request(pb::ProjectTokenDeleteRequest {
                    project: project.to_owned(),
                    role: role.to_owned(),
                    iat,
                    id: String::new(),
                });
                self.grpc(self.projects().delete_token(request).await)
                    .map(drop)
            }
        }
    }

    // Repositories.

    async fn list_repositories(&self, force_refresh: bool) -> Answer<Vec<Value>> {
        let answer = match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/repositories?forceRefresh={force_refresh}");
                self.rest(Method::GET, &path, None).await?
            }
            Kind::Grpc => {
                let request = self.request(pb::RepositoryQuery {
                    force_refresh,
                    ..pb::RepositoryQuery::default()
                });
                self.grpc_json(self.repositories().list(request).await)?
            }
        };
        Ok(items(&answer))
    }

    async fn get_repository(&self, url: &str, force_refresh: bool) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!(
                    "/api/v1/repositories/{}?forceRefresh={force_refresh}",
                    segment(url)
                );
                self.rest(Method::GET, &path, None).await
            }
            Kind::Grpc => {
                let request = self.request(pb::RepositoryQuery {
                    repo: url.to_owned(),
                    force_refresh,
                    ..pb::RepositoryQuery::default()
                });
                self.grpc_json(self.repositories().get(request).await)
            }
        }
    }

    async fn create_repository(&self, repository: &Value, upsert: bool) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/repositories?upsert={upsert}");
                self.rest(Method::POST, &path, Some(repository)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::RepositoryCreateRequest {
                    repository: repository.to_string(),
                    upsert,
                });
                self.grpc_json(self.repositories().create(request).await)
            }
        }
    }

    async fn update_repository(&self, repository: &Value) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let url = repository["spec"]["url"].as_str().unwrap_or_default();
                let path = format!("/api/v1/repositories/{}", segment(url));
                self.rest(Method::PUT, &path, Some(repository)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::RepositoryUpdateRequest {
                    repository: repository.to_string(),
                });
                self.grpc_json(self.repositories().update(request).await)
            }
        }
    }

    async fn delete_repository(&self, url: &str) -> Answer<()> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/repositories/{}", segment(url));
                self.rest(Method::DELETE, &path, None).await.map(drop)
            }
            Kind::Grpc => {
                let request = self.request(pb::RepositoryQuery {
                    repo: url.to_owned(),
                    ..pb::RepositoryQuery::default()
                });
                self.grpc(self.repositories().delete(request).await)
                    .map(drop)
            }
        }
    }

    /// The connection state a connection test answers.
    async fn validate_repository(&self, url: &str) -> Answer<Value> {
        let answer = match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/repositories/{}/validate", segment(url));
                self.rest(Method::POST, &path, None).await?
            }
            Kind::Grpc => {
                let request = self.request(pb::RepositoryAccessRequest {
                    repo: url.to_owned(),
                    ..pb::RepositoryAccessRequest::default()
                });
                self.grpc_json(self.repositories().validate_access(request).await)?
            }
        };
        Ok(answer["connectionState"].clone())
    }

    // Clusters.

    async fn list_clusters(&self) -> Answer<Vec<Value>> {
        let answer = match self.kind {
            Kind::Rest => self.rest(Method::GET, "/api/v1/clusters", None).await?,
            Kind::Grpc => self.grpc_json(self.clusters().list(self.request(pb::Empty {})).await)?,
        };
        Ok(items(&answer))
    }

    async fn get_cluster(&self, server: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/clusters/{}", segment(server));
                self.rest(Method::GET, &path, None).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ClusterQuery {
                    server: server.to_owned(),
                    ..pb::ClusterQuery::default()
                });
                self.grpc_json(self.clusters().get(request).await)
            }
        }
    }

    async fn get_cluster_by_name(&self, name: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/clusters/{}?id.type=name", segment(name));
                self.rest(Method::GET, &path, None).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ClusterQuery {
                    name: name.to_owned(),
                    ..pb::ClusterQuery::default()
                });
                self.grpc_json(self.clusters().get(request).await)
            }
        }
    }

    async fn create_cluster(&self, cluster: &Value, upsert: bool) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/clusters?upsert={upsert}");
                self.rest(Method::POST, &path, Some(cluster)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ClusterCreateRequest {
                    cluster: cluster.to_string(),
                    upsert,
                });
                self.grpc_json(self.clusters().create(request).await)
            }
        }
    }

    async fn update_cluster(&self, cluster: &Value) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let server = cluster["spec"]["server"].as_str().unwrap_or_default();
                let path = format!("/api/v1/clusters/{}", segment(server));
                self.rest(Method::PUT, &path, Some(cluster)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ClusterUpdateRequest {
                    cluster: cluster.to_string(),
                });
                self.grpc_json(self.clusters().update(request).await)
            }
        }
    }

    async fn delete_cluster(&self, server: &str) -> Answer<()> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/clusters/{}", segment(server));
                self.rest(Method::DELETE, &path, None).await.map(drop)
            }
            Kind::Grpc => {
                let request = self.request(pb::ClusterQuery {
                    server: server.to_owned(),
                    ..pb::ClusterQuery::default()
                });
                self.grpc(self.clusters().delete(request).await).map(drop)
            }
        }
    }
}

/// An AppProject (Argo CD's JSON, without apiVersion and kind, as Argo CD's clients send).
fn project(name: &str, description: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "description": description,
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*"}],
        },
    })
}

/// team-a with role `ci` allowed to get and sync team-a's Applications.
fn team_a_with_ci_role() -> Value {
    let mut project = project("team-a", "team A");
    project["spec"]["roles"] = json!([{
        "name": "ci",
        "policies": [
            "p, proj:team-a:ci, applications, get, team-a/*, allow",
            "p, proj:team-a:ci, applications, sync, team-a/*, allow",
        ],
    }]);
    project
}

fn application(name: &str, project: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "project": project,
            "source": {"repoURL": REPO_URL, "path": name, "targetRevision": "HEAD"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
        },
    })
}

fn repository(url: &str, password: &str) -> Value {
    json!({"spec": {"url": url, "username": "git", "password": password}})
}

fn cluster(name: &str, server: &str, token: &str) -> Value {
    json!({
        "apiVersion": "capstan.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {
            "server": server,
            "config": {"bearerToken": token, "tlsClientConfig": {"insecure": true}},
        },
    })
}

/// Waits until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    capstan_testkit::wait::wait_until(what, DEADLINE, || {
        let checked = check();
        async move { Ok(checked.await?.then_some(())) }
    })
    .await
}

over_rest_and_grpc!(
    project_crud,
    project_deletion,
    project_role_tokens,
    repository_crud,
    cluster_crud,
);

async fn project_crud(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let [admin, alice, rita, bob] = harness.users(kind).await?;

    // create: alice may create team-a, nothing else; bob nothing.
    assert_refused(
        bob.create_project(&project("team-a", ""), false).await,
        Code::PermissionDenied,
    );
    assert_refused(
        alice.create_project(&project("team-b", ""), false).await,
        Code::PermissionDenied,
    );
    let created = alice
        .create_project(&project("team-a", "team A"), false)
        .await?;
    assert_eq!(created["metadata"]["name"], "team-a");
    assert_eq!(created["metadata"]["namespace"], NS);
    assert_eq!(created["spec"]["description"], "team A");
    admin
        .create_project(&project("team-b", "team B"), false)
        .await?;
    // Invalid: a role name with spaces.
    let mut invalid = project("team-c", "");
    invalid["spec"]["roles"] = json!([{"name": "not a name"}]);
    assert_refused(
        admin.create_project(&invalid, false).await,
        Code::InvalidArgument,
    );

    // Creating the same again answers it; a different one needs upsert.
    alice
        .create_project(&project("team-a", "team A"), false)
        .await?;
    assert_refused(
        alice
            .create_project(&project("team-a", "changed"), false)
            .await,
        Code::AlreadyExists,
    );
    let upserted = alice
        .create_project(&project("team-a", "changed"), true)
        .await?;
    assert_eq!(upserted["spec"]["description"], "changed");

    // get
    let got = alice.get_project("team-a").await?;
    assert_eq!(got["spec"]["description"], "changed");
    assert_refused(bob.get_project("team-a").await, Code::PermissionDenied);
    assert_refused(alice.get_project("team-b").await, Code::PermissionDenied);
    assert_refused(alice.get_project("missing").await, Code::PermissionDenied);
    assert_refused(admin.get_project("missing").await, Code::NotFound);
    // `default` exists before anyone creates it.
    let default = admin.get_project("default").await?;
    assert_eq!(default["spec"]["sourceRepos"], json!(["*"]));

    // list: only what the caller may get.
    assert_eq!(
        names(&admin.list_projects().await?),
        ["default", "team-a", "team-b"]
    );
    assert_eq!(names(&alice.list_projects().await?), ["team-a"]);
    assert!(bob.list_projects().await?.is_empty());
    assert!(rita.list_projects().await?.is_empty());

    // update, with optimistic concurrency.
    let mut edited = got.clone();
    edited["spec"]["description"] = json!("edited");
    edited["spec"]["syncWindows"] = json!([{
        "kind": "deny", "schedule": "0 22 * * *", "duration": "1h", "applications": ["*"],
    }]);
    assert_refused(bob.update_project(&edited).await, Code::PermissionDenied);
    let updated = alice.update_project(&edited).await?;
    assert_eq!(updated["spec"]["description"], "edited");
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        got["metadata"]["resourceVersion"]
    );
    // `edited` still carries the old resourceVersion.
    assert_refused(alice.update_project(&edited).await, Code::Aborted);
    assert_eq!(
        harness.stored_project("team-a").await?.spec.description,
        "edited"
    );
    let mut team_b = project("team-b", "mine now");
    team_b["metadata"]["resourceVersion"] = json!("");
    assert_refused(alice.update_project(&team_b).await, Code::PermissionDenied);

    // sync windows
    let windows = alice.sync_windows("team-a").await?;
    assert_eq!(windows.as_array().map(Vec::len), Some(1), "{windows}");
    assert_eq!(windows[0]["schedule"], "0 22 * * *");
    assert_eq!(admin.sync_windows("team-b").await?, json!([]));
    assert_refused(bob.sync_windows("team-a").await, Code::PermissionDenied);
    Ok(())
}

async fn project_deletion(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let [admin, alice, _, bob] = harness.users(kind).await?;
    alice.create_project(&project("team-a", ""), false).await?;
    alice.create_app(&application("web", "team-a")).await?;

    assert_refused(bob.delete_project("team-a").await, Code::PermissionDenied);
    // Used by an Application: refused, with its name.
    match alice.delete_project("team-a").await {
        Err(refused) if refused.code == Code::FailedPrecondition => {
            assert!(refused.message.contains("capstan/web"), "{refused}");
        }
        other => panic!("expected FailedPrecondition, got {other:?}"),
    }
    // `default` never.
    assert_refused(
        admin.delete_project("default").await,
        Code::FailedPrecondition,
    );

    alice.delete_app("web").await?;
    alice.delete_project("team-a").await?;
    assert_refused(admin.get_project("team-a").await, Code::NotFound);
    assert_refused(admin.delete_project("team-a").await, Code::NotFound);
    // Gone: Applications can no longer name it.
    assert_refused(
        alice.create_app(&application("web", "team-a")).await,
        Code::InvalidArgument,
    );
    Ok(())
}

async fn project_role_tokens(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let [admin, alice, _, bob] = harness.users(kind).await?;
    alice.create_project(&team_a_with_ci_role(), false).await?;
    admin.create_project(&project("team-b", ""), false).await?;
    alice.create_app(&application("web-a", "team-a")).await?;
    admin.create_app(&application("web-b", "team-b")).await?;

    // Issuing needs `projects, update` on the project, an existing role, no chosen id.
    assert_refused(
        bob.create_project_token("team-a", "ci", "").await,
        Code::PermissionDenied,
    );
    assert_refused(
        alice.create_project_token("team-b", "ci", "").await,
        Code::PermissionDenied,
    );
    assert_refused(
        alice.create_project_token("team-a", "nope", "").await,
        Code::NotFound,
    );
    assert_refused(
        alice.create_project_token("team-a", "ci", "mine").await,
        Code::InvalidArgument,
    );
    let token = alice.create_project_token("team-a", "ci", "").await?;

    // Recorded in the role (and in status.jwtTokensByRole), as Argo CD does.
    let stored = harness.stored_project("team-a").await?;
    let records = &stored.spec.roles[0].jwt_tokens;
    assert_eq!(records.len(), 1, "{records:?}");
    let iat = records[0].issued_at;
    assert!(
        iat > 0 && records[0].expires_at == iat + 3600,
        "{records:?}"
    );
    assert!(!records[0].id.is_empty());
    let status = stored.status.context("a status with the tokens")?;
    assert_eq!(status.jwt_tokens_by_role["ci"].items, *records);
    let shown = alice.get_project("team-a").await?;
    assert_eq!(shown["spec"]["roles"][0]["jwtTokens"][0]["iat"], json!(iat));

    // The token stands for proj:team-a:ci and may do what the role's lines allow.
    let ci = harness.client(kind).with_token(&token);
    assert_eq!(ci.user_info().await?, "proj:team-a:ci");
    ci.get_app("web-a").await?;
    assert_refused(ci.get_app("web-b").await, Code::PermissionDenied);
    assert_refused(ci.delete_app("web-a").await, Code::PermissionDenied);
    assert_eq!(
        ci.can_i("applications", "sync", "team-a/web-a").await?,
        "yes"
    );
    assert_eq!(
        ci.can_i("applications", "delete", "team-a/web-a").await?,
        "no"
    );
    assert_eq!(ci.can_i("projects", "get", "team-a").await?, "no");
    assert_refused(ci.get_project("team-a").await, Code::PermissionDenied);
    assert!(ci.list_projects().await?.is_empty());

    // Lines reaching outside the project grant nothing, even written around validation
    // (the in-project line written with them shows when the server has read them).
    let mut widened = harness.stored_project("team-a").await?;
    widened.spec.roles[0].policies.extend(
        [
            "p, proj:team-a:ci, applications, update, team-a/*, allow",
            "p, proj:team-a:ci, applications, get, team-b/*, allow",
            "p, proj:team-a:ci, applications, *, */*, allow",
            "p, proj:team-a:ci, clusters, get, *, allow",
        ]
        .map(str::to_owned),
    );
    TypedStore::<AppProjects>::new(harness.store.clone())
        .update_spec(&ObjectRef::new(NS, "team-a"), &widened, Precondition::None)
        .await?;
    until("the server reads the new role lines", || async {
        Ok(ci.can_i("applications", "update", "team-a/web-a").await? == "yes")
    })
    .await?;
    assert_refused(ci.get_app("web-b").await, Code::PermissionDenied);
    assert_refused(ci.delete_app("web-a").await, Code::PermissionDenied);
    assert_eq!(
        ci.can_i("applications", "delete", "team-b/web-b").await?,
        "no"
    );
    assert_eq!(ci.can_i("clusters", "get", "https://k8s").await?, "no");

    // An update through the API keeps the token records (its body has none).
    let mut edited = team_a_with_ci_role();
    edited["spec"]["description"] = json!("edited");
    alice.update_project(&edited).await?;
    assert_eq!(
        harness.stored_project("team-a").await?.spec.roles[0].jwt_tokens,
        *records
    );
    ci.get_app("web-a").await?;

    // Deleting the token refuses it at once.
    assert_refused(
        bob.delete_project_token("team-a", "ci", iat).await,
        Code::PermissionDenied,
    );
    alice.delete_project_token("team-a", "ci", iat).await?;
    assert_refused(ci.user_info().await, Code::Unauthenticated);
    assert_refused(ci.get_app("web-a").await, Code::Unauthenticated);
    assert_refused(
        alice.delete_project_token("team-a", "ci", iat).await,
        Code::NotFound,
    );
    assert!(
        harness.stored_project("team-a").await?.spec.roles[0]
            .jwt_tokens
            .is_empty()
    );

    // The role must list the token: one whose record is removed around the API (so not
    // revoked) is refused as well.
    let third = alice.create_project_token("team-a", "ci", "").await?;
    let unlisted = harness.client(kind).with_token(&third);
    assert_eq!(unlisted.user_info().await?, "proj:team-a:ci");
    let mut cleared = harness.stored_project("team-a").await?;
    cleared.spec.roles[0].jwt_tokens.clear();
    cleared.status = None;
    TypedStore::<AppProjects>::new(harness.store.clone())
        .update_spec(&ObjectRef::new(NS, "team-a"), &cleared, Precondition::None)
        .await?;
    until("the server refuses the unlisted token", || async {
        Ok(unlisted.user_info().await.is_err())
    })
    .await?;
    assert_refused(unlisted.get_app("web-a").await, Code::Unauthenticated);

    // A token of a deleted project is refused too.
    let second = alice.create_project_token("team-a", "ci", "").await?;
    let ci = harness.client(kind).with_token(&second);
    assert_eq!(ci.user_info().await?, "proj:team-a:ci");
    alice.delete_app("web-a").await?;
    alice.delete_project("team-a").await?;
    assert_refused(ci.user_info().await, Code::Unauthenticated);
    Ok(())
}

async fn repository_crud(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let [admin, alice, rita, bob] = harness.users(kind).await?;
    let repositories = TypedStore::<Repositories>::new(harness.store.clone());

    // create
    for refused in [&alice, &bob] {
        assert_refused(
            refused
                .create_repository(&repository(REPO_URL, REPO_PASSWORD), false)
                .await,
            Code::PermissionDenied,
        );
    }
    let created = rita
        .create_repository(&repository(REPO_URL, REPO_PASSWORD), false)
        .await?;
    assert_eq!(created["spec"]["url"], REPO_URL);
    assert_eq!(created["spec"]["username"], "git");
    assert!(created["spec"].get("password").is_none(), "{created}");
    let name = created["metadata"]["name"]
        .as_str()
        .context("a name")?
        .to_owned();
    assert!(name.starts_with("repo-"), "{name}");
    let at = ObjectRef::new(NS, name.as_str());
    let stored = repositories.get(&at).await?.context("stored")?.spec.value;
    assert_eq!(stored.spec.password.expose(), REPO_PASSWORD);
    // Another form of its URL finds it (a different spec: 409); the same body without its
    // password answers it.
    let again = rita
        .create_repository(
            &json!({"spec": {"url": "https://GIT.example.com/team-a/deploy", "username": "git"}}),
            false,
        )
        .await;
    assert_refused(again, Code::AlreadyExists);
    rita.create_repository(
        &json!({"spec": {"url": REPO_URL, "username": "git"}}),
        false,
    )
    .await?;
    let mut insecure = repository(REPO_URL, REPO_PASSWORD);
    insecure["spec"]["insecure"] = json!(true);
    assert_refused(
        rita.create_repository(&insecure, false).await,
        Code::AlreadyExists,
    );
    rita.create_repository(&insecure, true).await?;
    // A project-scoped one: object team-a/URL, which alice may read.
    let scoped_url = "https://git.example.com/team-a/charts.git";
    let mut scoped = repository(scoped_url, REPO_PASSWORD);
    scoped["spec"]["project"] = json!("team-a");
    rita.create_repository(&scoped, false).await?;

    // list and get
    let urls = |list: Vec<Value>| -> Vec<String> {
        list.iter()
            .map(|r| r["spec"]["url"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let mut all = urls(rita.list_repositories(false).await?);
    all.sort();
    assert_eq!(all, [scoped_url, REPO_URL]);
    assert_eq!(admin.list_repositories(false).await?.len(), 2);
    assert_eq!(urls(alice.list_repositories(false).await?), [scoped_url]);
    assert!(bob.list_repositories(false).await?.is_empty());
    let got = rita.get_repository(REPO_URL, false).await?;
    assert_eq!(got["spec"]["insecure"], true);
    assert!(got.get("status").is_none(), "{got}");
    alice.get_repository(scoped_url, false).await?;
    assert_refused(
        alice.get_repository(REPO_URL, false).await,
        Code::PermissionDenied,
    );
    assert_refused(
        bob.get_repository(REPO_URL, false).await,
        Code::PermissionDenied,
    );
    let missing = "https://git.example.com/missing.git";
    assert_refused(rita.get_repository(missing, false).await, Code::NotFound);
    assert_refused(
        bob.get_repository(missing, false).await,
        Code::PermissionDenied,
    );

    // Connection tests: no repo-server here, so Unknown.
    let state = rita.validate_repository(REPO_URL).await?;
    assert_eq!(state["status"], "Unknown", "{state}");
    assert!(
        state["message"]
            .as_str()
            .is_some_and(|m| m.contains("repo-server")),
        "{state}"
    );
    assert!(state["attemptedAt"].is_string(), "{state}");
    assert_refused(
        bob.validate_repository(REPO_URL).await,
        Code::PermissionDenied,
    );
    let refreshed = rita.get_repository(REPO_URL, true).await?;
    assert_eq!(refreshed["status"]["connectionState"]["status"], "Unknown");
    let listed = rita.list_repositories(true).await?;
    assert!(
        listed
            .iter()
            .all(|r| r["status"]["connectionState"]["status"] == "Unknown"),
        "{listed:?}"
    );

    // Update: what was read (no password) written back keeps the stored password.
    let mut edited = got.clone();
    edited["spec"]["insecure"] = json!(false);
    edited["spec"]["proxy"] = json!("http://proxy.example.com:3128");
    assert_refused(bob.update_repository(&edited).await, Code::PermissionDenied);
    assert_refused(
        alice.update_repository(&edited).await,
        Code::PermissionDenied,
    );
    let updated = rita.update_repository(&edited).await?;
    assert_eq!(updated["spec"]["proxy"], "http://proxy.example.com:3128");
    let stored = repositories.get(&at).await?.context("stored")?.spec.value;
    assert_eq!(stored.spec.password.expose(), REPO_PASSWORD);
    assert!(!stored.spec.insecure);
    // `edited` carries the resourceVersion read before the update.
    assert_refused(rita.update_repository(&edited).await, Code::Aborted);
    // A new password replaces the stored one.
    let mut rotated = updated.clone();
    rotated["spec"]["password"] = json!("a-rotated-password");
    rita.update_repository(&rotated).await?;
    let stored = repositories.get(&at).await?.context("stored")?.spec.value;
    assert_eq!(stored.spec.password.expose(), "a-rotated-password");
    assert_refused(
        rita.update_repository(&repository(missing, "x")).await,
        Code::NotFound,
    );

    // delete
    assert_refused(
        bob.delete_repository(REPO_URL).await,
        Code::PermissionDenied,
    );
    rita.delete_repository(REPO_URL).await?;
    assert!(repositories.get(&at).await?.is_none());
    assert_refused(rita.get_repository(REPO_URL, false).await, Code::NotFound);
    assert_refused(rita.delete_repository(REPO_URL).await, Code::NotFound);

    // No answer to anyone carried a password.
    for client in [&admin, &alice, &rita, &bob] {
        let transcript = client.transcript();
        assert!(!transcript.is_empty());
        for secret in [REPO_PASSWORD, "a-rotated-password"] {
            assert!(!transcript.contains(secret), "{secret} in {transcript}");
        }
    }
    Ok(())
}

async fn cluster_crud(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let [admin, alice, rita, bob] = harness.users(kind).await?;
    let clusters = TypedStore::<Clusters>::new(harness.store.clone());
    let at = ObjectRef::new(NS, "prod");

    // create
    for refused in [&alice, &bob] {
        assert_refused(
            refused
                .create_cluster(&cluster("prod", SERVER, CLUSTER_TOKEN), false)
                .await,
            Code::PermissionDenied,
        );
    }
    let created = rita
        .create_cluster(&cluster("prod", SERVER, CLUSTER_TOKEN), false)
        .await?;
    assert_eq!(created["spec"]["server"], SERVER);
    assert!(
        created["spec"]["config"].get("bearerToken").is_none(),
        "{created}"
    );
    let stored = clusters.get(&at).await?.context("stored")?.spec.value;
    assert_eq!(stored.spec.config.bearer_token.expose(), CLUSTER_TOKEN);
    // The same server again answers it; a different spec needs upsert; a cluster without
    // name gets one from its server.
    rita.create_cluster(&cluster("prod", SERVER, ""), false)
        .await?;
    let mut scoped = cluster("prod", SERVER, "");
    scoped["spec"]["namespaces"] = json!(["web"]);
    assert_refused(
        rita.create_cluster(&scoped, false).await,
        Code::AlreadyExists,
    );
    let unnamed = rita
        .create_cluster(
            &json!({"spec": {"server": "https://staging.example.com", "config": {"bearerToken": CLUSTER_TOKEN}}}),
            false,
        )
        .await?;
    let staging_name = unnamed["metadata"]["name"].as_str().unwrap_or_default();
    assert!(
        staging_name.starts_with("cluster-staging-example-com-"),
        "{unnamed}"
    );

    // list and get, with the connection state the controller reported.
    let mut servers: Vec<String> = rita
        .list_clusters()
        .await?
        .iter()
        .map(|c| c["spec"]["server"].as_str().unwrap_or_default().to_owned())
        .collect();
    servers.sort();
    assert_eq!(
        servers,
        ["https://10.1.2.3:6443", "https://staging.example.com"]
    );
    assert!(bob.list_clusters().await?.is_empty());
    assert!(alice.list_clusters().await?.is_empty());
    let got = rita.get_cluster(SERVER).await?;
    assert_eq!(got["status"]["connectionState"]["status"], "Unknown");
    assert_refused(bob.get_cluster(SERVER).await, Code::PermissionDenied);
    assert_refused(
        rita.get_cluster("https://missing.example.com").await,
        Code::NotFound,
    );
    assert_refused(
        bob.get_cluster("https://missing.example.com").await,
        Code::PermissionDenied,
    );
    clusters
        .put_status(
            &at,
            &ClusterStatus {
                connection_state: ConnectionState {
                    status: "Successful".into(),
                    message: "connected".into(),
                    attempted_at: Some(Timestamp::new("2026-01-02T03:04:05Z")),
                },
                server_version: "1.31".into(),
                ..ClusterStatus::default()
            },
            StatusWrite::new(),
        )
        .await?;
    let got = rita.get_cluster(SERVER).await?;
    assert_eq!(
        got["status"]["connectionState"],
        json!({"status": "Successful", "message": "connected", "attemptedAt": "2026-01-02T03:04:05Z"})
    );
    assert_eq!(got["status"]["serverVersion"], "1.31");
    let listed = rita.list_clusters().await?;
    let prod = listed
        .iter()
        .find(|c| c["metadata"]["name"] == "prod")
        .context("prod listed")?;
    assert_eq!(prod["status"]["connectionState"]["status"], "Successful");
    assert_eq!(
        rita.get_cluster_by_name("prod").await?["spec"]["server"],
        SERVER
    );
    assert_refused(rita.get_cluster_by_name("nope").await, Code::NotFound);
    assert_refused(
        bob.get_cluster_by_name("prod").await,
        Code::PermissionDenied,
    );

    // Update: what was read (no token) written back keeps the stored token and the status.
    let mut edited = got.clone();
    edited["spec"]["namespaces"] = json!(["web", "api"]);
    assert_refused(bob.update_cluster(&edited).await, Code::PermissionDenied);
    let updated = rita.update_cluster(&edited).await?;
    assert_eq!(updated["spec"]["namespaces"], json!(["web", "api"]));
    assert_eq!(updated["status"]["connectionState"]["status"], "Successful");
    let stored = clusters.get(&at).await?.context("stored")?;
    assert_eq!(
        stored.spec.value.spec.config.bearer_token.expose(),
        CLUSTER_TOKEN
    );
    assert_eq!(stored.spec.value.spec.namespaces, ["web", "api"]);
    assert_eq!(
        stored.status.context("status kept")?.value.server_version,
        "1.31"
    );
    assert_refused(rita.update_cluster(&edited).await, Code::Aborted);
    let mut moved = updated.clone();
    moved["spec"]["server"] = json!("https://elsewhere.example.com");
    assert_refused(rita.update_cluster(&moved).await, Code::NotFound);

    // delete
    assert_refused(bob.delete_cluster(SERVER).await, Code::PermissionDenied);
    rita.delete_cluster(SERVER).await?;
    assert!(clusters.get(&at).await?.is_none());
    assert_refused(rita.get_cluster(SERVER).await, Code::NotFound);
    assert_refused(admin.delete_cluster(SERVER).await, Code::NotFound);

    for client in [&admin, &alice, &rita, &bob] {
        let transcript = client.transcript();
        assert!(!transcript.is_empty());
        assert!(
            !transcript.contains(CLUSTER_TOKEN),
            "the token in {transcript}"
        );
    }
    Ok(())
}

/// A cluster updated by a path naming another server is refused, not moved.
#[tokio::test]
async fn a_cluster_server_cannot_change_through_an_update() -> Result<()> {
    let harness = Harness::start().await?;
    let rita = harness.login(Kind::Rest, "rita").await?;
    rita.create_cluster(&cluster("prod", SERVER, CLUSTER_TOKEN), false)
        .await?;
    let mut moved = cluster("prod", "https://elsewhere.example.com", "");
    moved["metadata"]["name"] = json!("prod");
    let path = format!("/api/v1/clusters/{}", segment(SERVER));
    assert_refused(
        rita.rest(Method::PUT, &path, Some(&moved)).await,
        Code::InvalidArgument,
    );
    Ok(())
}

/// Argo CD's clients send `null` for unset fields and may leave apiVersion and kind out.
#[tokio::test]
async fn rest_bodies_as_argo_cd_clients_send_them() -> Result<()> {
    let harness = Harness::start().await?;
    let admin = harness.login(Kind::Rest, "admin").await?;
    let body = json!({"project": {"metadata": {"name": "team-z"}, "spec": {}}, "upsert": null});
    admin
        .rest(Method::POST, "/api/v1/projects", Some(&body))
        .await?;
    // A token request without body: no expiry, generated id.
    let mut with_role = project("team-z", "");
    with_role["spec"]["roles"] = json!([{"name": "deploy"}]);
    admin.update_project(&with_role).await?;
    let answer = admin
        .rest(
            Method::POST,
            "/api/v1/projects/team-z/roles/deploy/token",
            None,
        )
        .await?;
    let token = answer["token"].as_str().context("a token")?;
    let deploy = harness.client(Kind::Rest).with_token(token);
    assert_eq!(deploy.user_info().await?, "proj:team-z:deploy");
    let stored = harness.stored_project("team-z").await?;
    assert_eq!(stored.spec.roles[0].jwt_tokens[0].expires_at, 0);
    // A non-number issue time is a 400.
    assert_refused(
        admin
            .rest(
                Method::DELETE,
                "/api/v1/projects/team-z/roles/deploy/token/yesterday",
                None,
            )
            .await,
        Code::InvalidArgument,
    );
    // A body that is no project is a 400.
    assert_refused(
        admin
            .rest(
                Method::POST,
                "/api/v1/projects",
                Some(&json!({"project": {"kind": "Application"}})),
            )
            .await,
        Code::InvalidArgument,
    );
    Ok(())
}
