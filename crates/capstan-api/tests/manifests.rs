//! An Application's manifests through the API, rendered by a real repo-server from a real
//! Git repository over smart HTTP: at the target revision, at an older commit, refused
//! without permission, and a clear error for a source that does not render.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use capstan_api::rbac::Policy;
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig};
use capstan_proto::api::v1 as pb;
use capstan_repo::service::{RepoServer, RepoServerConfig};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use serde_json::{Value, json};

fn config_map(color: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: {color}\n"
    )
}

async fn call(url: &str, token: &str) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((
        status,
        serde_json::from_str(&response.text().await?).unwrap_or_default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_render_at_the_target_or_an_older_revision_over_rest_and_grpc() -> Result<()> {
    let repo = GitRepo::init()?;
    repo.write_all(&[("web/settings.yaml", config_map("blue").as_str())])?;
    let first = repo.commit("blue")?;
    repo.write_all(&[("web/settings.yaml", config_map("green").as_str())])?;
    repo.commit("green")?;
    let git = GitHttpServer::start_temp(GitHttpOptions::default())?;
    let url = git.url_for(&repo)?;

    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("s.redb"), EmbeddedOptions::default()).await?);
    let repo_server = RepoServer::new(RepoServerConfig::new(dir.path().join("repo")))
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let mut config = ApiConfig::new(Policy::parse("", None)?);
    config.accounts = vec!["bob=login".parse().map_err(anyhow::Error::msg)?];
    let started = Api::start(store, Some(Arc::new(repo_server)), config).await?;
    let api = started.api;
    let admin_password = started.initial_admin_password.context("first start")?;
    let admin = api.login("admin", &admin_password).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = capstan_api::server::router(api.clone(), Arc::new(ApiMetrics::default()));
    tokio::spawn(capstan_api::server::serve(
        listener,
        router,
        std::future::pending(),
    ));

    let app = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {"project": "default",
            "source": {"repoURL": url, "path": "web", "targetRevision": "HEAD"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}}});
    let created = reqwest::Client::new()
        .post(format!("{base}/api/v1/applications"))
        .bearer_auth(&admin)
        .body(app.to_string())
        .send()
        .await?;
    assert_eq!(created.status().as_u16(), 200);

    // REST, at the target revision: Argo CD's shape, each manifest a JSON string.
    let (status, answer) =
        call(&format!("{base}/api/v1/applications/web/manifests"), &admin).await?;
    assert_eq!(status, 200, "{answer}");
    let manifest: Value =
        serde_json::from_str(answer["manifests"][0].as_str().context("a string")?)?;
    assert_eq!(manifest["data"]["color"], "green");
    assert_eq!(answer["sourceType"], "Directory");
    assert_eq!(answer["revision"].as_str().map(str::len), Some(40));

    // gRPC, at the first commit.
    let mut client =
        pb::application_service_client::ApplicationServiceClient::connect(base.clone()).await?;
    let mut request = tonic::Request::new(pb::ApplicationManifestsRequest {
        name: "web".into(),
        app_namespace: String::new(),
        revision: first.clone(),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {admin}").parse()?);
    let old = client.manifests(request).await?.into_inner();
    let manifest: Value = serde_json::from_str(&old.manifests[0])?;
    assert_eq!(manifest["data"]["color"], "blue");
    assert_eq!(old.revision, first);

    // Without permission: refused (bob has no role), over both.
    api.update_password(
        &api.authenticate(&admin)?,
        "bob",
        &admin_password,
        "bob-password-1",
    )
    .await?;
    let bob = api.login("bob", "bob-password-1").await?;
    let (status, _) = call(&format!("{base}/api/v1/applications/web/manifests"), &bob).await?;
    assert_eq!(status, 403);
    let mut request = tonic::Request::new(pb::ApplicationManifestsRequest {
        name: "web".into(),
        app_namespace: String::new(),
        revision: String::new(),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bob}").parse()?);
    let refused = client.manifests(request).await.expect_err("bob may not");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // A revision that does not exist: a clear error naming the source, not a 5xx.
    let (status, answer) = call(
        &format!("{base}/api/v1/applications/web/manifests?revision=no-such-branch"),
        &admin,
    )
    .await?;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or_default().contains(&url),
        "{answer}"
    );
    Ok(())
}
