//! The REST API fuzzed from its own OpenAPI document by schemathesis (the real tool, from
//! PyPI, installed by `scripts/tools.sh`): whatever it sends — malformed bodies, hostile
//! strings, huge numbers, wrong types, as admin with every permission — no answer is a 5xx
//! and the server keeps answering.

use std::process::Command;
use std::sync::Arc;

use anyhow::Context as _;
use capstan_api::live::{LiveFuture, LiveState, ManagedResource, ResourceNode, ResourceSelector};
use capstan_api::rbac::Policy;
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig};
use capstan_store::kinds::{AppProjects, Applications};
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};

/// A live state with nothing running: without one, the live-state methods answer 503 by
/// design (the API has no controller), which is not what the fuzzer looks for.
#[derive(Debug)]
struct NothingRuns;

impl LiveState for NothingRuns {
    fn managed_resources<'a>(
        &'a self,
        _: &'a ObjectRef,
        _: &'a capstan_model::Application,
        _: Option<Vec<serde_json::Value>>,
    ) -> LiveFuture<'a, Vec<ManagedResource>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn resource_tree<'a>(
        &'a self,
        _: &'a ObjectRef,
        _: &'a capstan_model::Application,
    ) -> LiveFuture<'a, Vec<ResourceNode>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn events<'a>(
        &'a self,
        _: &'a ObjectRef,
        _: &'a capstan_model::Application,
        _: Option<&'a ResourceSelector>,
    ) -> LiveFuture<'a, Vec<serde_json::Value>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error() -> anyhow::Result<()> {
    let st = capstan_testkit::tools::schemathesis()?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("s.redb"), EmbeddedOptions::default()).await?);
    // Something to find: a project and Applications named as the fuzzer's path values may be.
    TypedStore::<AppProjects>::new(store.clone())
        .create(
            &ObjectRef::new("capstan", "team-a"),
            &capstan_model::parse_app_project_yaml(
                "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: team-a}\nspec: {sourceRepos: ['*'], destinations: [{server: '*', namespace: '*'}]}\n",
            )?,
        )
        .await?;
    for name in ["guestbook", "x", "0"] {
        let app = capstan_model::parse_application_yaml(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: '{name}'}}\nspec:\n  project: team-a\n  source: {{repoURL: 'https://git.example.com/a.git', path: a, targetRevision: HEAD}}\n  destination: {{server: 'https://kubernetes.default.svc', namespace: a}}\n"
        ))?;
        TypedStore::<Applications>::new(store.clone())
            .create(&ObjectRef::new("capstan", name), &app)
            .await?;
    }
    let mut config = ApiConfig::new(Policy::parse("", None)?);
    config.accounts = vec!["ci-bot=apiKey".parse().map_err(anyhow::Error::msg)?];
    config.live = Some(Arc::new(NothingRuns));
    let started = Api::start(store, None, config).await?;
    let password = started.initial_admin_password.context("first start")?;
    let token = started.api.login("admin", &password).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let router = capstan_api::server::router(started.api.clone(), Arc::new(ApiMetrics::default()));
    tokio::spawn(capstan_api::server::serve(
        listener,
        router,
        std::future::pending(),
    ));

    let report = dir.path().join("schemathesis");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .arg("run")
            .arg(format!("http://127.0.0.1:{port}/api/openapi.json"))
            .args(["--checks", "not_a_server_error"])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            // A stream never ends, and logging out would leave the rest unauthenticated.
            .args(["--exclude-operation-id", "ApplicationService_Watch"])
            .args(["--exclude-operation-id", "SessionService_Delete"])
            .args(["--max-examples", "40", "--seed", "20261127"])
            // One worker: two parsing at once trip a CPython 3.11 bug (gh-106905) inside
            // hypothesis — a crash of the tool, not a finding.
            .args(["--workers", "1"])
            .args(["--generation-database", "none", "--no-color"])
            .arg("--report-dir")
            .arg(&report)
            .current_dir(std::env::temp_dir())
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{stdout}");
    // It really ran the operations (not an empty selection).
    assert!(
        stdout.contains("ApplicationService_Create")
            || stdout.contains("POST /api/v1/applications"),
        "{stdout}"
    );
    Ok(())
}
