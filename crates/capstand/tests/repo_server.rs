//! `capstand repo-server` as an operator runs it: the real binary, gRPC, health, metrics,
//! graceful shutdown.

use std::time::Duration;

use capstan_proto::repo::v1 as pb;
use capstan_proto::repo::v1::repo_service_client::RepoServiceClient;
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use capstan_testkit::net::http_get;
use capstan_testkit::wait::wait_until;

mod common;
use common::RepoServerProcess as Capstand;

#[tokio::test]
async fn serves_grpc_health_and_metrics_and_stops_cleanly() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n",
    )?;
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    )?;
    repo.write(
        "chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
    )?;
    repo.write(
        "jsonnet/main.jsonnet",
        "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: std.extVar('app')}}",
    )?;
    let head = repo.commit("apps")?;
    let tmp = tempfile::tempdir()?;
    let Capstand {
        mut process,
        grpc_port,
        metrics_port,
    } = Capstand::start(&tmp, &[]).await?;
    assert_eq!(http_get(metrics_port, "/healthz")?.0, 200);

    let mut client = RepoServiceClient::connect(format!("http://127.0.0.1:{grpc_port}")).await?;
    let source =
        serde_json::json!({"repoURL": repo.file_url(), "path": "app", "targetRevision": "HEAD"});
    let out = client
        .generate_manifests(pb::GenerateManifestsRequest {
            source_json: source.to_string(),
            app: Some(pb::AppContext {
                name: "demo".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(out.revision, head);
    assert_eq!(out.source_type, "Directory");
    let cm: serde_json::Value = serde_json::from_str(&out.manifests[0])?;
    assert_eq!(cm["metadata"]["name"], "hello");

    let chart = serde_json::json!({"repoURL": repo.file_url(), "path": "chart"});
    let out = client
        .generate_manifests(pb::GenerateManifestsRequest {
            source_json: chart.to_string(),
            app: Some(pb::AppContext {
                name: "rel".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(out.source_type, "Helm");
    assert!(
        out.manifests[0].contains("\"name\":\"rel\""),
        "{:?}",
        out.manifests
    );

    // Jsonnet is evaluated by a child `capstand jsonnet-eval`.
    let jsonnet = serde_json::json!({"repoURL": repo.file_url(), "path": "jsonnet",
        "directory": {"jsonnet": {"extVars": [{"name": "app", "value": "$ARGOCD_APP_NAME"}]}}});
    let out = client
        .generate_manifests(pb::GenerateManifestsRequest {
            source_json: jsonnet.to_string(),
            app: Some(pb::AppContext {
                name: "from-jsonnet".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        out.manifests[0].contains("\"name\":\"from-jsonnet\""),
        "{:?}",
        out.manifests
    );

    // A bad request is a gRPC status with a useful message, not a crash.
    let err = client
        .generate_manifests(pb::GenerateManifestsRequest {
            source_json: "{\"repoURL\": 5}".into(),
            ..Default::default()
        })
        .await
        .expect_err("invalid source");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("source_json"), "{}", err.message());

    let apps = client
        .list_apps(pb::ListAppsRequest {
            repo_url: repo.file_url(),
            revision: "HEAD".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(apps.apps.len(), 1);
    assert_eq!(
        (
            apps.apps[0].path.as_str(),
            apps.apps[0].source_type.as_str()
        ),
        ("chart", "Helm")
    );

    let (code, metrics) = http_get(metrics_port, "/metrics")?;
    assert_eq!(code, 200);
    for line in [
        "capstan_repo_manifest_requests_total{outcome=\"rendered\"} 3",
        "capstan_repo_git_fetches_total 1",
        "capstan_repo_grpc_request_duration_seconds_count{method=\"GenerateManifests\"} 4",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }

    process.signal(libc::SIGTERM)?;
    let status = wait_until("capstand to exit", Duration::from_secs(30), || {
        let exited = process.check_running();
        async move {
            match exited {
                Ok(()) => Ok(None),
                Err(e) => Ok(Some(e.to_string())),
            }
        }
    })
    .await?;
    assert!(
        status.contains("exit status: 0") || status.contains("exited with 0"),
        "{status}\n{}",
        process.log_tail(20)
    );
    Ok(())
}

const PLUGINS: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: tpl
spec:
  generate:
    command: [sh, -c, 'sed "s/NAME/$ARGOCD_APP_NAME/" app.tpl']
  discover:
    fileName: "*.tpl"
"#;

/// Every source type through the gRPC service, from a repository served over smart HTTP
/// with a bearer token.
#[tokio::test]
async fn every_source_type_over_grpc_from_smart_http() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    repo.write_all(&[
        ("dir/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dir\n"),
        ("jsonnet/main.jsonnet", "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'jsonnet-' + std.extVar('n')}}"),
        ("base/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kbase\n"),
        ("base/kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("overlay/kustomization.yaml", "resources:\n- ../base\n"),
        ("chart/Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n"),
        ("chart/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-{{ .Values.color }}\n"),
        ("envs/prod.yaml", "color: red\n"),
        ("tpl/app.tpl", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plugin-NAME\n"),
    ])?;
    repo.commit("all source types")?;
    let git = GitHttpServer::start_temp(GitHttpOptions::default().with_bearer_token("tok"))?;
    let url = git.url_for(&repo)?;
    let tmp = tempfile::tempdir()?;
    let plugins = tmp.path().join("plugins.yaml");
    std::fs::write(&plugins, PLUGINS)?;
    let server = Capstand::start(&tmp, &["--plugins".as_ref(), plugins.as_os_str()]).await?;
    let mut client =
        RepoServiceClient::connect(format!("http://127.0.0.1:{}", server.grpc_port)).await?;
    let creds = pb::RepoCredentials {
        bearer_token: "tok".into(),
        ..Default::default()
    };
    let cases = [
        (
            serde_json::json!({"repoURL": url, "path": "dir"}),
            "Directory",
            "dir",
        ),
        (
            serde_json::json!({"repoURL": url, "path": "jsonnet", "directory": {"jsonnet": {"extVars": [{"name": "n", "value": "x"}]}}}),
            "Directory",
            "jsonnet-x",
        ),
        (
            serde_json::json!({"repoURL": url, "path": "overlay", "kustomize": {"namePrefix": "p-"}}),
            "Kustomize",
            "p-kbase",
        ),
        (
            serde_json::json!({"repoURL": url, "path": "chart", "helm": {"valueFiles": ["$values/envs/prod.yaml"]}}),
            "Helm",
            "web-red",
        ),
        (
            serde_json::json!({"repoURL": url, "path": "tpl"}),
            "Plugin",
            "plugin-web",
        ),
    ];
    for (source, kind, name) in cases {
        let out = client
            .generate_manifests(pb::GenerateManifestsRequest {
                source_json: source.to_string(),
                app: Some(pb::AppContext {
                    name: "web".into(),
                    namespace: "shop".into(),
                    ..Default::default()
                }),
                credentials: Some(creds.clone()),
                ref_sources: vec![pb::RefSource {
                    name: "values".into(),
                    repo_url: url.clone(),
                    target_revision: "HEAD".into(),
                    credentials: Some(creds.clone()),
                }],
                no_cache: false,
            })
            .await
            .map_err(|s| anyhow::anyhow!("{kind} {source}: {}", s.message()))?
            .into_inner();
        assert_eq!(out.source_type, kind, "{source}");
        let first: serde_json::Value = serde_json::from_str(&out.manifests[0])?;
        assert_eq!(first["metadata"]["name"], name, "{source}");
    }

    // Wrong credentials are refused, and the message carries no secret.
    let err = client
        .generate_manifests(pb::GenerateManifestsRequest {
            source_json: serde_json::json!({"repoURL": url, "path": "dir"}).to_string(),
            credentials: Some(pb::RepoCredentials {
                bearer_token: "stolen-token".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(!err.message().contains("stolen-token"), "{}", err.message());
    Ok(())
}
