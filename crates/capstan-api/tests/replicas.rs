//! Two API replicas over one store, sharing no memory: whatever one does, the other sees —
//! a login on one is good on the other, a logout or password change on one ends the session
//! on both, an Application created through one is listed and refreshed by webhook through
//! the other.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use capstan_api::rbac::Policy;
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use capstan_testkit::wait::wait_until;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(10);

/// Starts a replica over `store`; its base URL.
async fn replica(store: Arc<dyn Store>) -> Result<(String, Option<String>)> {
    let mut config = ApiConfig::new(Policy::parse("", None)?);
    config.accounts = vec!["alice=login".parse().map_err(anyhow::Error::msg)?];
    let started = Api::start(store, None, config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = capstan_api::server::router(started.api, Arc::new(ApiMetrics::default()));
    tokio::spawn(capstan_api::server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    Ok((base, started.initial_admin_password))
}

async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((
        status,
        serde_json::from_str(&response.text().await?).unwrap_or_default(),
    ))
}

async fn login(base: &str, user: &str, password: &str) -> Result<String> {
    let (status, answer) = call(
        reqwest::Method::POST,
        &format!("{base}/api/v1/session"),
        None,
        Some(json!({"username": user, "password": password})),
    )
    .await?;
    anyhow::ensure!(status == 200, "login of {user} answered {status}: {answer}");
    Ok(answer["token"].as_str().context("a token")?.to_owned())
}

/// Waits until `GET path` with `token` on `base` answers `status`.
async fn until_status(base: &str, path: &str, token: &str, status: u16) -> Result<()> {
    wait_until(&format!("{path} answering {status}"), DEADLINE, || {
        let url = format!("{base}{path}");
        let token = token.to_owned();
        async move {
            let (got, _) = call(reqwest::Method::GET, &url, Some(&token), None).await?;
            Ok((got == status).then_some(()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_over_one_store_behave_as_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("s.redb"), EmbeddedOptions::default()).await?);
    let (a, password) = replica(store.clone()).await?;
    let (b, second_password) = replica(store).await?;
    let password = password.context("the first replica creates admin")?;
    assert_eq!(second_password, None, "the second finds admin created");

    // A login on one replica is good on the other.
    let admin = login(&a, "admin", &password).await?;
    until_status(&b, "/api/v1/session/userinfo", &admin, 200).await?;

    // An Application created through A is listed by B.
    let app = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {"project": "default",
            "source": {"repoURL": "https://git.example.com/web.git", "path": "web", "targetRevision": "HEAD"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}}});
    let (status, created) = call(
        reqwest::Method::POST,
        &format!("{a}/api/v1/applications"),
        Some(&admin),
        Some(app),
    )
    .await?;
    assert_eq!(status, 200, "{created}");
    wait_until("B lists the app created through A", DEADLINE, || {
        let url = format!("{b}/api/v1/applications");
        let admin = admin.clone();
        async move {
            let (_, list) = call(reqwest::Method::GET, &url, Some(&admin), None).await?;
            Ok((list["items"].as_array().map_or(0, Vec::len) == 1).then_some(()))
        }
    })
    .await?;

    // A push delivered to B refreshes it (B's index follows the store).
    let (status, pushed) = call(
        reqwest::Method::POST,
        &format!("{b}/api/webhook"),
        None,
        None,
    )
    .await?;
    assert_eq!(status, 400, "an unknown delivery: {pushed}");
    let push = json!({"ref": "refs/heads/main",
        "repository": {"html_url": "https://git.example.com/web", "default_branch": "main"}});
    let response = reqwest::Client::new()
        .post(format!("{b}/api/webhook"))
        .header("X-GitHub-Event", "push")
        .body(push.to_string())
        .send()
        .await?;
    let refreshed: Value = serde_json::from_str(&response.text().await?)?;
    assert_eq!(refreshed["refreshed"], json!(["capstan/web"]));

    // A password set through B; a session of alice begun on A ends on A when she changes it
    // through B.
    let (status, _) = call(
        reqwest::Method::PUT,
        &format!("{b}/api/v1/account/password"),
        Some(&admin),
        Some(
            json!({"name": "alice", "currentPassword": password, "newPassword": "first-password"}),
        ),
    )
    .await?;
    assert_eq!(status, 200);
    let alice = login(&a, "alice", "first-password").await?;
    let (status, _) = call(
        reqwest::Method::PUT,
        &format!("{b}/api/v1/account/password"),
        Some(&alice),
        Some(json!({"currentPassword": "first-password", "newPassword": "second-password"})),
    )
    .await?;
    assert_eq!(status, 200);
    until_status(&a, "/api/v1/session/userinfo", &alice, 401).await?;

    // Logging out on A ends the session on B too.
    let (status, _) = call(
        reqwest::Method::DELETE,
        &format!("{a}/api/v1/session"),
        Some(&admin),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    until_status(&b, "/api/v1/session/userinfo", &admin, 401).await?;
    Ok(())
}

#[tokio::test]
async fn settings_answer_alike_over_rest_and_grpc_without_a_login() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("s.redb"), EmbeddedOptions::default()).await?);
    let (base, _) = replica(store).await?;
    let (status, rest) = call(
        reqwest::Method::GET,
        &format!("{base}/api/v1/settings"),
        None,
        None,
    )
    .await?;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["controllerNamespace"], "capstan");
    assert_eq!(rest["userLoginsDisabled"], false);
    let mut client =
        capstan_proto::api::v1::settings_service_client::SettingsServiceClient::connect(base)
            .await?;
    let grpc = client
        .get(capstan_proto::api::v1::Empty {})
        .await?
        .into_inner();
    assert_eq!(serde_json::from_str::<Value>(&grpc.json)?, rest);
    Ok(())
}
