//! `capstand all-in-one` as a user runs it: the real binary, pointed at a real kube-apiserver
//! with a kubeconfig, given an Argo CD Application file whose manifests live in a Git
//! repository served over smart HTTP — it syncs them, serves metrics and the API (including
//! what its controller sees in the cluster), and stops cleanly.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use capstan_testkit::net::{free_port, http_get};
use capstan_testkit::process::ManagedProcess;
use capstan_testkit::shared;
use capstan_testkit::wait::wait_until;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

mod common;

const DEADLINE: Duration = Duration::from_secs(90);

/// An Argo CD Application for `url`/`path` into namespace `ns` of the cluster capstand runs
/// against. Background pruning: the test apiserver runs no garbage collector to finish
/// foreground deletions.
fn application(name: &str, url: &str, path: &str, ns: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  namespace: argocd
spec:
  project: default
  source:
    repoURL: {url}
    path: {path}
    targetRevision: HEAD
  destination:
    server: https://kubernetes.default.svc
    namespace: {ns}
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
    - PrunePropagationPolicy=background
"
    )
}

/// `capstand [--log-format json] all-in-one <args>`, its output in `dir/capstand.log`; the
/// process is killed when the value is dropped, so a failing test leaves nothing running.
fn spawn(dir: &Path, args: &[&std::ffi::OsStr]) -> Result<ManagedProcess> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstand"));
    cmd.args(["--log-format", "json", "all-in-one"])
        .args(args)
        .current_dir(dir)
        // Only what the command line says: no kubeconfig from the developer's environment.
        .env_remove("KUBECONFIG")
        .env("HOME", dir);
    ManagedProcess::spawn_command("capstand", cmd, &dir.join("capstand.log"))
}

/// Waits for `process` to exit and returns how (`exit status: N`), within `timeout`.
async fn exit_of(process: &mut ManagedProcess, timeout: Duration) -> Result<String> {
    wait_until("capstand to exit", timeout, || {
        let exited = process.check_running();
        async move {
            match exited {
                Ok(()) => Ok(None),
                Err(e) => Ok(Some(e.to_string())),
            }
        }
    })
    .await
}

/// One test's surroundings: a namespace on the shared apiserver and a kubeconfig for it, a
/// Git repository holding `files` served over smart HTTP, a temporary directory, and in it an
/// Application file for `app` (path `app` of the repository, into the namespace).
struct Scene {
    server: &'static capstan_testkit::KubeApiServer,
    ns: String,
    kubeconfig: std::path::PathBuf,
    app_file: std::path::PathBuf,
    /// Where the API of the process [`Scene::spawn`] starts listens.
    api_port: u16,
    tmp: tempfile::TempDir,
    repo: GitRepo,
    repo_url: String,
    _git: GitHttpServer,
}

impl Scene {
    async fn new(prefix: &str, app: &str, files: &[(&str, &str)]) -> Result<Self> {
        let server = shared::apiserver().await?;
        let ns = server.test_namespace(prefix).await?;
        let kubeconfig = server.kubeconfig_file()?;
        let repo = GitRepo::init()?;
        repo.write_all(files)?;
        repo.commit(app)?;
        let git = GitHttpServer::start_temp(GitHttpOptions::default())?;
        let url = git.url_for(&repo)?;
        let tmp = tempfile::tempdir()?;
        let app_file = tmp.path().join(format!("{app}.yaml"));
        std::fs::write(&app_file, application(app, &url, app, &ns))?;

        Ok(Self {
            server,
            ns,
            kubeconfig,
            app_file,
            api_port: free_port()?,
            tmp,
            repo,
            repo_url: url,
            _git: git,
        })
    }

    /// `capstand all-in-one` on this scene: its kubeconfig and app file, data in `data_dir`
    /// (under the scene's directory), metrics on `metrics_listen`, the API on the scene's
    /// `api_port`, the testkit's helm and kustomize, then `extra`.
    fn spawn(
        &self,
        data_dir: &str,
        metrics_listen: &str,
        extra: &[&std::ffi::OsStr],
    ) -> Result<ManagedProcess> {
        let helm = capstan_testkit::tools::helm()?;
        let kustomize = capstan_testkit::tools::kustomize()?;
        let listen = format!("127.0.0.1:{}", self.api_port);
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--listen".as_ref(),
            listen.as_ref(),
            "--kubeconfig".as_ref(),
            self.kubeconfig.as_os_str(),
            "--data-dir".as_ref(),
            data_dir.as_ref(),
            "--app".as_ref(),
            self.app_file.as_os_str(),
            "--metrics-listen".as_ref(),
            metrics_listen.as_ref(),
            "--helm".as_ref(),
            helm.as_os_str(),
            "--kustomize".as_ref(),
            kustomize.as_os_str(),
        ];
        args.extend_from_slice(extra);
        spawn(self.tmp.path(), &args)
    }
}

#[tokio::test]
async fn syncs_an_application_from_git_serves_metrics_and_stops_on_sigterm() -> Result<()> {
    let scene = &Scene::new(
        "aio",
        "guestbook",
        &[(
            "guestbook/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n",
        )],
    )
    .await?;
    let Scene { server, ns, .. } = scene;
    let metrics_port = free_port()?;
    let mut process = scene.spawn("data", &format!("127.0.0.1:{metrics_port}"), &[])?;

    let checks = async {
        wait_until("capstand ready", DEADLINE, || {
            let alive = process.check_running();
            let ready = http_get(metrics_port, "/readyz");
            async move {
                alive?;
                Ok(matches!(ready, Ok((200, _))).then_some(()))
            }
        })
        .await?;

        let config_maps: Api<ConfigMap> = Api::namespaced(server.client().await?, ns);
        let synced = wait_until("the ConfigMap from Git in the cluster", DEADLINE, || {
            let api = config_maps.clone();
            async move { Ok(api.get_opt("settings").await?) }
        })
        .await?;
        assert_eq!(
            synced
                .data
                .unwrap_or_default()
                .get("color")
                .map(String::as_str),
            Some("blue")
        );
        let annotations = synced.metadata.annotations.unwrap_or_default();
        assert!(
            annotations
                .get("capstan.dev/tracking-id")
                .is_some_and(|id| id.starts_with("guestbook:")),
            "{annotations:?}"
        );

        // The ConfigMap is applied before the sync operation ends (and is counted): wait
        // for the reconcile that ran it to finish.
        let metrics = wait_until("the sync counted in the metrics", DEADLINE, || {
            let answer = http_get(metrics_port, "/metrics");
            async move {
                let (code, text) = answer?;
                anyhow::ensure!(code == 200, "/metrics answered {code}");
                Ok(text
                    .contains("capstan_controller_reconciles_total{result=")
                    .then_some(text))
            }
        })
        .await?;
        for family in [
            "capstan_controller_workqueue_adds_total{reason=\"refresh\"}",
            "capstan_controller_sync_operations",
            "capstan_controller_reconciles_total{result=",
            "capstan_cluster_cache_synced{cluster=\"in-cluster\"} 1",
            "capstan_repo_manifest_requests_total",
        ] {
            assert!(metrics.contains(family), "missing {family:?} in\n{metrics}");
        }
        assert_eq!(http_get(metrics_port, "/healthz")?.0, 200);

        // The API serves TLS by default, with a certificate from a CA generated into the
        // data directory: a client trusting that CA gets answers.
        let ca_pem = std::fs::read(scene.tmp.path().join("data/tls/ca.crt"))?;
        let version = api_over_tls(scene.api_port, &ca_pem, "/api/version").await?;
        assert!(version.contains("\"Version\""), "{version}");
        let key_mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(scene.tmp.path().join("data/tls/tls.key"))?.permissions(),
        );
        assert_eq!(key_mode & 0o777, 0o600);
        anyhow::Ok(())
    };
    if let Err(e) = checks.await {
        return Err(e.context(format!("capstand log:\n{}", process.log_tail(60))));
    }

    process.signal(libc::SIGTERM)?;
    let exit = exit_of(&mut process, Duration::from_secs(40)).await?;
    assert!(exit.contains("exit status: 0"), "{exit}");
    let log = std::fs::read_to_string(process.log_path())?;
    assert!(log.contains("all-in-one ready"), "{log}");
    assert!(log.contains("all-in-one stopped"), "{log}");
    Ok(())
}

/// The manifests of a sync in three waves, after a PreSync hook: a ConfigMap hook that is
/// deleted and created again whenever it runs (so a run shows as a new uid), a wave-0
/// ConfigMap, a wave-1 Deployment (healthy only once its status says so: the test apiserver
/// runs no deployment controller, so the sync waits there), and a wave-2 ConfigMap.
const WAVES: &[(&str, &str)] = &[
    (
        "waves/hook.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: migrate
  annotations:
    argocd.argoproj.io/hook: PreSync
    argocd.argoproj.io/hook-delete-policy: BeforeHookCreation
data:
  step: migrate
",
    ),
    (
        "waves/first.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: first
  annotations:
    argocd.argoproj.io/sync-wave: \"0\"
data:
  wave: \"0\"
",
    ),
    (
        "waves/db.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: db
  annotations:
    argocd.argoproj.io/sync-wave: \"1\"
spec:
  replicas: 1
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: example.invalid/db:1
",
    ),
    (
        "waves/last.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: last
  annotations:
    argocd.argoproj.io/sync-wave: \"2\"
data:
  wave: \"2\"
",
    ),
];

/// The series counting operations a restarted controller resumed and finished.
const RESUMED_SUCCEEDED: &str =
    r#"capstan_controller_syncs_total{trigger="resumed",phase="Succeeded"}"#;

/// The value of the metric line `series` at `/metrics` on `port`, if it is there.
fn metric(port: u16, series: &str) -> Result<Option<String>> {
    let (code, metrics) = http_get(port, "/metrics")?;
    anyhow::ensure!(code == 200, "/metrics answered {code}");
    Ok(metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned))
}

#[tokio::test]
async fn a_sync_killed_mid_wave_resumes_after_restart_without_rerunning_hooks() -> Result<()> {
    let scene = &Scene::new("aio-resume", "waves", WAVES).await?;
    let Scene { server, ns, .. } = scene;
    // The same data directory both times; a metrics address of its own for each process.
    let start = |metrics_listen: &str| scene.spawn("data", metrics_listen, &[]);
    let client = server.client().await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let uid_of = |cm: ConfigMap| cm.metadata.uid.context("a ConfigMap without a uid");

    // First run: the hook and wave 0 are done, wave 1 is applied and waits for the
    // Deployment's health — and the process dies without a chance to save anything more.
    let mut first = start(&format!("127.0.0.1:{}", free_port()?))?;
    let first_run = async {
        wait_until(
            "wave 1 applied: the Deployment in the cluster",
            DEADLINE,
            || {
                let alive = first.check_running();
                let api = deployments.clone();
                async move {
                    alive?;
                    Ok(api.get_opt("db").await?)
                }
            },
        )
        .await?;
        let hook = config_maps
            .get_opt("migrate")
            .await?
            .context("the PreSync hook ran before the waves")?;
        anyhow::ensure!(
            config_maps.get_opt("first").await?.is_some(),
            "wave 0 was applied before wave 1"
        );
        uid_of(hook)
    };
    let hook_uid = match first_run.await {
        Ok(uid) => uid,
        Err(e) => return Err(e.context(format!("capstand log:\n{}", first.log_tail(60)))),
    };
    first.signal(libc::SIGKILL)?;
    let exit = exit_of(&mut first, Duration::from_secs(20)).await?;
    assert!(exit.contains("SIGKILL"), "{exit}");
    assert!(
        config_maps.get_opt("last").await?.is_none(),
        "wave 2 waits for the Deployment, which is not available yet:\n{}",
        first.log_tail(60)
    );

    // The Deployment becomes available, written as its controller would.
    capstan_testkit::workloads::mark_deployment_available(&deployments, "db").await?;

    // Second run on the same data directory: it resumes the saved operation at wave 1 and
    // finishes it, without running the completed hook again. Its log follows the first's in
    // the same file.
    let first_log_len = std::fs::read_to_string(first.log_path())?.len();
    let metrics_port = free_port()?;
    let mut second = start(&format!("127.0.0.1:{metrics_port}"))?;
    let second_run = async {
        wait_until("wave 2 applied: the last ConfigMap", DEADLINE, || {
            let alive = second.check_running();
            let api = config_maps.clone();
            async move {
                alive?;
                Ok(api.get_opt("last").await?)
            }
        })
        .await?;
        wait_until(
            "the resumed operation counted as succeeded",
            DEADLINE,
            || {
                let alive = second.check_running();
                let value = metric(metrics_port, RESUMED_SUCCEEDED);
                async move {
                    alive?;
                    value
                }
            },
        )
        .await
        .and_then(|value| {
            anyhow::ensure!(value == "1", "{RESUMED_SUCCEEDED} {value}");
            Ok(())
        })?;
        let (_, metrics) = http_get(metrics_port, "/metrics")?;
        assert!(
            !metrics.contains(r#"capstan_controller_syncs_total{trigger="automated""#),
            "the operation was resumed, not started again:\n{metrics}"
        );
        let hook = config_maps
            .get_opt("migrate")
            .await?
            .context("the hook is kept")?;
        assert_eq!(
            uid_of(hook)?,
            hook_uid,
            "the completed PreSync hook was run again"
        );
        let log = std::fs::read_to_string(second.log_path())?;
        let log = log.get(first_log_len..).unwrap_or_default();
        assert!(log.contains("resuming the operation in progress"), "{log}");
        anyhow::Ok(())
    };
    if let Err(e) = second_run.await {
        return Err(e.context(format!("capstand log:\n{}", second.log_tail(60))));
    }

    second.signal(libc::SIGTERM)?;
    let exit = exit_of(&mut second, Duration::from_secs(40)).await?;
    assert!(exit.contains("exit status: 0"), "{exit}");
    let log = std::fs::read_to_string(second.log_path())?;
    assert!(log.contains("all-in-one stopped"), "{log}");
    Ok(())
}

/// GET `path` from the API on `port` over TLS, trusting only `ca_pem` (with kube's rustls
/// client, the TLS client already in the build).
async fn api_over_tls(port: u16, ca_pem: &[u8], path: &str) -> Result<String> {
    let text = std::str::from_utf8(ca_pem)?;
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        text.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    )?;
    let mut config = kube::Config::new(format!("https://127.0.0.1:{port}").parse()?);
    config.root_cert = Some(vec![der]);
    let client = kube::Client::try_from(config)?;
    let request = http::Request::get(path).body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

/// `METHOD path` on the API of a scene's process, with a bearer token and a JSON body; the
/// status and the JSON answer.
async fn api_call(
    port: u16,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("http://127.0.0.1:{port}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((status, json))
}

#[tokio::test]
async fn serves_the_api_with_the_generated_admin_password_and_refreshes_on_a_webhook() -> Result<()>
{
    let scene = &Scene::new(
        "aio-api",
        "guestbook",
        &[(
            "guestbook/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n",
        )],
    )
    .await?;
    let metrics_port = free_port()?;
    let port = scene.api_port;
    // Credentials to find (or rather not find) in the store file afterwards.
    let credentials = scene.tmp.path().join("credentials.yaml");
    std::fs::write(
        &credentials,
        format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata: {{name: demo}}\nspec: {{url: '{}', username: git, password: {REPO_PASSWORD}}}\n---\napiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: elsewhere}}\nspec: {{server: 'https://127.0.0.1:9', config: {{bearerToken: {CLUSTER_TOKEN}}}}}\n",
            scene.repo_url
        ),
    )?;
    // Single sign-on wired from the flags to a real provider.
    let provider = capstan_testkit::oidc::OidcProvider::start(
        &[capstan_testkit::oidc::OidcClient {
            id: "capstan".into(),
            secret: "sso-secret".into(),
            redirect_uris: vec![format!("http://127.0.0.1:{port}/auth/callback")],
        }],
        &[],
        &[],
        Duration::from_secs(600),
    )
    .await?;
    let mut process = scene.spawn(
        "data",
        &format!("127.0.0.1:{metrics_port}"),
        &[
            "--app".as_ref(),
            credentials.as_os_str(),
            // Plain HTTP for this test's client; TLS is checked in the first test.
            "--insecure".as_ref(),
            "--oidc-issuer".as_ref(),
            provider.issuer().as_ref(),
            "--oidc-client-secret".as_ref(),
            "sso-secret".as_ref(),
        ],
    )?;

    let checks = async {
        wait_until("capstand ready", DEADLINE, || {
            let alive = process.check_running();
            let ready = http_get(metrics_port, "/readyz");
            async move {
                alive?;
                Ok(matches!(ready, Ok((200, _))).then_some(()))
            }
        })
        .await?;
        // The generated password is readable by its owner only.
        let password_file = scene.tmp.path().join("data/initial-admin-password");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&password_file)?.permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let password = std::fs::read_to_string(&password_file)?.trim().to_owned();
        let log = std::fs::read_to_string(process.log_path())?;
        assert!(!log.contains(&password), "the password is in the log");

        let (code, _) = api_call(
            port,
            reqwest::Method::POST,
            "/api/v1/session",
            None,
            Some(serde_json::json!({"username": "admin", "password": "wrong-password"})),
        )
        .await?;
        assert_eq!(code, 401);
        let (code, login) = api_call(
            port,
            reqwest::Method::POST,
            "/api/v1/session",
            None,
            Some(serde_json::json!({"username": "admin", "password": password})),
        )
        .await?;
        assert_eq!(code, 200, "{login}");
        let token = login["token"].as_str().context("a token")?.to_owned();

        // SSO: /auth/login sends the browser to the provider, back to this API's callback.
        let sso = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?
            .get(format!("http://127.0.0.1:{port}/auth/login"))
            .send()
            .await?;
        assert_eq!(sso.status().as_u16(), 303);
        let location = sso
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(location.starts_with(provider.issuer()), "{location}");
        assert!(
            location.contains(&format!("127.0.0.1%3A{port}%2Fauth%2Fcallback")),
            "{location}"
        );
        // The settings tell a client (the CLI's `login --sso`) where to sign in.
        let (code, settings) =
            api_call(port, reqwest::Method::GET, "/api/v1/settings", None, None).await?;
        assert_eq!(code, 200);
        assert_eq!(settings["url"], format!("http://127.0.0.1:{port}"));
        assert_eq!(settings["oidcConfig"]["issuer"], provider.issuer());
        assert_eq!(settings["oidcConfig"]["clientID"], "capstan");
        assert!(!settings.to_string().contains("sso-secret"), "{settings}");

        // The Application from the --app file, Synced through the API's eyes.
        wait_until("guestbook Synced in the API", DEADLINE, || {
            let token = token.clone();
            async move {
                let (code, app) = api_call(
                    port,
                    reqwest::Method::GET,
                    "/api/v1/applications/guestbook",
                    Some(&token),
                    None,
                )
                .await?;
                anyhow::ensure!(code == 200, "get answered {code}: {app}");
                Ok((app["status"]["sync"]["status"] == "Synced").then_some(()))
            }
        })
        .await?;

        // A commit, then a push announced by webhook: with refreshes every 3 minutes and
        // ref listings cached as long, only the webhook can bring the change in time.
        scene.repo.write_all(&[(
            "guestbook/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: green\n",
        )])?;
        scene.repo.commit("green")?;
        let push = serde_json::json!({
            "ref": "refs/heads/main",
            "repository": {"html_url": scene.repo_url, "default_branch": "main"},
        });
        let client = reqwest::Client::new();
        let answer = client
            .post(format!("http://127.0.0.1:{port}/api/webhook"))
            .header("X-GitHub-Event", "push")
            .body(push.to_string())
            .send()
            .await?;
        assert_eq!(answer.status().as_u16(), 200);
        let answer: serde_json::Value = serde_json::from_str(&answer.text().await?)?;
        assert_eq!(
            answer["refreshed"],
            serde_json::json!(["capstan/guestbook"])
        );

        let config_maps: Api<ConfigMap> = Api::namespaced(scene.server.client().await?, &scene.ns);
        wait_until(
            "the pushed colour in the cluster",
            Duration::from_secs(60),
            || {
                let api = config_maps.clone();
                async move {
                    let cm = api.get_opt("settings").await?;
                    Ok(cm
                        .and_then(|c| c.data)
                        .is_some_and(|d| d.get("color").map(String::as_str) == Some("green"))
                        .then_some(()))
                }
            },
        )
        .await?;
        anyhow::Ok(())
    };
    if let Err(e) = checks.await {
        return Err(e.context(format!("capstand log:\n{}", process.log_tail(60))));
    }
    process.signal(libc::SIGTERM)?;
    let exit = exit_of(&mut process, DEADLINE).await?;
    assert!(exit.contains("exit status: 0"), "{exit}");

    // Encryption at rest: the store file, read raw, holds no credential in clear — yet the
    // Repository and Cluster were stored (and read by the controller) under the key.
    let data = scene.tmp.path().join("data");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("encryption.key"))?.permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    let raw = capstan_store::EmbeddedStore::open(
        data.join("store.redb"),
        capstan_store::EmbeddedOptions::default(),
    )
    .await?;
    let everything = capstan_store::Store::list_all(&raw, b"/", 500).await?;
    let mut sealed = 0;
    for kv in &everything.entries {
        let value = String::from_utf8_lossy(&kv.value);
        let key = String::from_utf8_lossy(&kv.key);
        for secret in [REPO_PASSWORD, CLUSTER_TOKEN] {
            assert!(!value.contains(secret), "{secret} in clear under {key}");
        }
        if key.starts_with("/capstan/repositories/") || key.starts_with("/capstan/clusters/") {
            assert!(
                value.starts_with("capstan:sealed:v1:"),
                "{key} not sealed: {value}"
            );
            sealed += 1;
        }
    }
    assert!(sealed >= 2, "the Repository and the Cluster are stored");
    raw.close().await?;
    Ok(())
}

const REPO_PASSWORD: &str = "repo-password-in-clear-would-be-a-bug";
const CLUSTER_TOKEN: &str = "cluster-token-in-clear-would-be-a-bug";

#[tokio::test]
async fn a_malformed_app_file_stops_the_start_and_is_named() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let bad = tmp.path().join("broken-app.yaml");
    std::fs::write(
        &bad,
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: x\n",
    )?;
    let metrics_listen = format!("127.0.0.1:{}", free_port()?);
    let mut process = spawn(
        tmp.path(),
        &[
            "--kubeconfig".as_ref(),
            "does-not-matter".as_ref(),
            "--metrics-listen".as_ref(),
            metrics_listen.as_ref(),
            "--app".as_ref(),
            bad.as_os_str(),
        ],
    )?;
    let exit = exit_of(&mut process, Duration::from_secs(30)).await?;
    assert!(!exit.contains("exit status: 0"), "{exit}");
    let log = std::fs::read_to_string(process.log_path()).context("reading the log")?;
    assert!(log.contains("broken-app.yaml"), "{log}");
    // Nothing was created: the files are read before the store is opened.
    assert!(!tmp.path().join("capstan-data").exists());
    Ok(())
}

/// Reads a `--summary-out` report once it is written.
async fn summary_of(process: &mut ManagedProcess, path: &Path) -> Result<String> {
    wait_until("the settle report", DEADLINE, || {
        let alive = process.check_running();
        let text = std::fs::read_to_string(path).ok();
        async move {
            alive?;
            Ok(text.filter(|t| !t.is_empty()))
        }
    })
    .await
}

#[tokio::test]
async fn renders_through_a_separate_repo_server_over_grpc_and_reports_it_unreachable() -> Result<()>
{
    let scene = &Scene::new(
        "aio-grpc",
        "web",
        &[(
            "web/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: remote\ndata:\n  color: green\n",
        )],
    )
    .await?;
    let Scene {
        server, ns, tmp, ..
    } = scene;

    // A repo-server of its own, as the scaled-out control plane runs it.
    let repo_server = common::RepoServerProcess::start(tmp, &[]).await?;
    let remote = format!("http://127.0.0.1:{}", repo_server.grpc_port);
    let summary = tmp.path().join("summary.txt");
    let metrics_listen = format!("127.0.0.1:{}", free_port()?);
    let run = |data: &str, repo_server_url: &str, summary_timeout: &str| {
        scene.spawn(
            data,
            &metrics_listen,
            &[
                "--repo-server".as_ref(),
                repo_server_url.as_ref(),
                "--summary-out".as_ref(),
                summary.as_os_str(),
                "--summary-timeout".as_ref(),
                summary_timeout.as_ref(),
            ],
        )
    };
    let mut process = run("data", &remote, "60s")?;
    let report = summary_of(&mut process, &summary).await;
    let report =
        report.map_err(|e| e.context(format!("capstand log:\n{}", process.log_tail(60))))?;
    assert!(
        report.starts_with("settled: all 1 Applications"),
        "{report}"
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(server.client().await?, ns);
    let synced = config_maps.get("remote").await?;
    assert_eq!(
        synced
            .data
            .unwrap_or_default()
            .get("color")
            .map(String::as_str),
        Some("green")
    );
    // The repo-server process did the rendering.
    let (_, metrics) = http_get(repo_server.metrics_port, "/metrics")?;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("GenerateManifests") && l.contains("_count") && !l.ends_with(" 0")),
        "no GenerateManifests calls in\n{metrics}"
    );
    process.signal(libc::SIGTERM)?;
    assert!(
        exit_of(&mut process, Duration::from_secs(40))
            .await?
            .contains("exit status: 0")
    );

    // Nothing listens at the address: the app says so instead of the process failing.
    std::fs::remove_file(&summary)?;
    let nowhere = format!("http://127.0.0.1:{}", free_port()?);
    let mut process = run("data-2", &nowhere, "3s")?;
    let report = summary_of(&mut process, &summary).await?;
    assert!(report.starts_with("not settled: 0 of 1"), "{report}");
    assert!(
        report.contains("ComparisonError") && report.contains("unreachable"),
        "{report}"
    );
    process.signal(libc::SIGTERM)?;
    assert!(
        exit_of(&mut process, Duration::from_secs(40))
            .await?
            .contains("exit status: 0")
    );
    Ok(())
}

/// What the live-state test deploys: a ConfigMap and a Deployment (which stays Progressing:
/// the test apiserver runs no deployment controller; one wave, so the sync does not wait).
const SHOP: &[(&str, &str)] = &[
    (
        "shop/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n",
    ),
    (
        "shop/web.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
",
    ),
];

/// The API's live-state methods over gRPC, with a token.
struct LiveGrpc {
    client: capstan_proto::api::v1::application_service_client::ApplicationServiceClient<
        tonic::transport::Channel,
    >,
    token: String,
}

impl LiveGrpc {
    async fn connect(port: u16, token: &str) -> Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
            .connect_lazy();
        Ok(Self {
            client:
                capstan_proto::api::v1::application_service_client::ApplicationServiceClient::new(
                    channel,
                ),
            token: token.to_owned(),
        })
    }

    fn request<T>(&self, message: T) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse()?);
        Ok(request)
    }

    fn app(name: &str) -> capstan_proto::api::v1::ApplicationRef {
        capstan_proto::api::v1::ApplicationRef {
            name: name.to_owned(),
            ..Default::default()
        }
    }

    /// The JSON document answered, or the gRPC code of the refusal.
    fn answer(
        result: Result<tonic::Response<capstan_proto::api::v1::Json>, tonic::Status>,
    ) -> Result<Result<serde_json::Value, tonic::Code>> {
        match result {
            Ok(answer) => Ok(Ok(serde_json::from_str(&answer.into_inner().json)?)),
            Err(status) => Ok(Err(status.code())),
        }
    }

    async fn managed(&mut self, name: &str) -> Result<Result<serde_json::Value, tonic::Code>> {
        let request = self.request(Self::app(name))?;
        Self::answer(self.client.managed_resources(request).await)
    }

    async fn diff(
        &mut self,
        name: &str,
        manifests: &[String],
    ) -> Result<Result<serde_json::Value, tonic::Code>> {
        let request = self.request(capstan_proto::api::v1::ApplicationDiffRequest {
            name: name.to_owned(),
            manifests: manifests.to_vec(),
            ..Default::default()
        })?;
        Self::answer(self.client.diff(request).await)
    }

    async fn tree(&mut self, name: &str) -> Result<Result<serde_json::Value, tonic::Code>> {
        let request = self.request(Self::app(name))?;
        Self::answer(self.client.resource_tree(request).await)
    }

    async fn events(
        &mut self,
        name: &str,
        resource: (&str, &str, &str),
    ) -> Result<Result<serde_json::Value, tonic::Code>> {
        let request = self.request(capstan_proto::api::v1::ApplicationEventsRequest {
            name: name.to_owned(),
            resource_namespace: resource.0.to_owned(),
            resource_name: resource.1.to_owned(),
            resource_uid: resource.2.to_owned(),
            ..Default::default()
        })?;
        Self::answer(self.client.events(request).await)
    }
}

/// `GET path` on the API with a bearer token; the status and the JSON answer.
async fn api_get(port: u16, token: String, path: String) -> Result<(u16, serde_json::Value)> {
    api_call(port, reqwest::Method::GET, &path, Some(&token), None).await
}

/// The item of a managed-resources or diff answer for `kind` `name`.
fn item<'a>(
    answer: &'a serde_json::Value,
    kind: &str,
    name: &str,
) -> Result<&'a serde_json::Value> {
    answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["kind"] == kind && i["name"] == name)
        .with_context(|| format!("no {kind} {name} in {answer}"))
}

/// A state of an item (JSON text) parsed.
fn state(item: &serde_json::Value, field: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(
        item[field].as_str().context("a state is JSON text")?,
    )?)
}

#[tokio::test]
async fn the_api_answers_from_the_controllers_live_state() -> Result<()> {
    use reqwest::Method;
    use serde_json::json;

    let scene = &Scene::new("aio-live", "shop", SHOP).await?;
    let Scene {
        server,
        ns,
        api_port,
        ..
    } = scene;
    let port = *api_port;
    // Without self-heal, so that a change made in the cluster stays for the test to see.
    std::fs::write(
        &scene.app_file,
        application("shop", &scene.repo_url, "shop", ns).replace("      selfHeal: true\n", ""),
    )?;
    let client = server.client().await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let metrics_port = free_port()?;
    let mut process = scene.spawn(
        "data",
        &format!("127.0.0.1:{metrics_port}"),
        &[
            "--insecure".as_ref(),
            "--account".as_ref(),
            "bob=login".as_ref(),
        ],
    )?;
    let checks = async {
        wait_until("capstand ready", DEADLINE, || {
            let alive = process.check_running();
            let ready = http_get(metrics_port, "/readyz");
            async move {
                alive?;
                Ok(matches!(ready, Ok((200, _))).then_some(()))
            }
        })
        .await?;
        let password =
            std::fs::read_to_string(scene.tmp.path().join("data/initial-admin-password"))?;
        let login = |user: &str, password: &str| {
            api_call(
                port,
                Method::POST,
                "/api/v1/session",
                None,
                Some(json!({"username": user, "password": password})),
            )
        };
        let (_, answer) = login("admin", password.trim()).await?;
        let admin = answer["token"]
            .as_str()
            .context("admin's token")?
            .to_owned();
        let (code, answer) = api_call(
            port,
            Method::PUT,
            "/api/v1/account/password",
            Some(&admin),
            Some(json!({"name": "bob", "currentPassword": password.trim(), "newPassword": "bob-password-1"})),
        )
        .await?;
        anyhow::ensure!(code == 200, "setting bob's password: {code} {answer}");
        let (_, answer) = login("bob", "bob-password-1").await?;
        let bob = answer["token"].as_str().context("bob's token")?.to_owned();
        let get = |token: &str, path: String| api_get(port, token.to_owned(), path);
        let mut grpc = LiveGrpc::connect(port, &admin).await?;
        let managed_path = "/api/v1/applications/shop/managed-resources".to_owned();

        // Synced: nothing differs, over REST and gRPC alike.
        let synced = wait_until(
            "shop synced, as its managed resources show",
            DEADLINE,
            || {
                let answer = get(&admin, managed_path.clone());
                async move {
                    let (code, answer) = answer.await?;
                    anyhow::ensure!(code == 200, "managed resources: {code} {answer}");
                    let items = answer["items"].as_array().cloned().unwrap_or_default();
                    let settled = items.len() == 2
                        && items
                            .iter()
                            .all(|i| i["modified"] == false && i["liveState"] != "null");
                    Ok(settled.then_some(answer))
                }
            },
        )
        .await?;
        let kinds: Vec<&str> = synced["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["kind"].as_str())
            .collect();
        assert_eq!(
            kinds,
            ["ConfigMap", "Deployment"],
            "ordered by group (core first)"
        );
        let settings = item(&synced, "ConfigMap", "settings")?;
        assert_eq!(settings["diff"], "");
        assert_eq!(settings["namespace"], ns.as_str());
        assert_eq!(state(settings, "targetState")?["data"]["color"], "blue");
        let live = state(settings, "liveState")?;
        assert!(live["metadata"]["uid"].is_string(), "{live}");
        assert_eq!(
            state(settings, "predictedLiveState")?["data"]["color"],
            "blue"
        );
        assert_eq!(
            state(settings, "normalizedLiveState")?["data"]["color"],
            "blue"
        );
        assert_eq!(grpc.managed("shop").await?, Ok(synced.clone()));

        // Changed in the cluster behind Git's back (no self-heal here): refreshed, the
        // differences show, live to desired.
        config_maps
            .patch(
                "settings",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"data": {"color": "green"}})),
            )
            .await?;
        deployments
            .patch(
                "web",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"replicas": 3}})),
            )
            .await?;
        let (code, _) = get(
            &admin,
            "/api/v1/applications/shop?refresh=normal".to_owned(),
        )
        .await?;
        assert_eq!(code, 200);
        let drifted = wait_until("the drift in the managed resources", DEADLINE, || {
            let answer = get(&admin, managed_path.clone());
            async move {
                let (_, answer) = answer.await?;
                let both = ["settings", "web"].iter().all(|name| {
                    answer["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|i| i["name"] == *name && i["modified"] == true)
                });
                Ok(both.then_some(answer))
            }
        })
        .await?;
        let settings = item(&drifted, "ConfigMap", "settings")?;
        let diff = settings["diff"].as_str().unwrap_or_default();
        assert!(
            diff.contains("-  color: green") && diff.contains("+  color: blue"),
            "{diff}"
        );
        assert_eq!(state(settings, "liveState")?["data"]["color"], "green");
        let web = item(&drifted, "Deployment", "web")?;
        let diff = web["diff"].as_str().unwrap_or_default();
        assert!(
            diff.contains("-  replicas: 3") && diff.contains("+  replicas: 1"),
            "{diff}"
        );
        assert_eq!(grpc.managed("shop").await?, Ok(drifted.clone()));

        // A diff against given manifests: they are the desired side, compared with what the
        // Application tracks — an object it does not manage is not shown by naming it.
        config_maps
            .create(
                &kube::api::PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "unmanaged"}, "data": {"secret-ish": "not yours"}
                }))?,
            )
            .await?;
        let manifests = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                "data": {"color": "red"}})
            .to_string(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unmanaged"},
                "data": {"fresh": "yes"}})
            .to_string(),
        ];
        let (code, diffed) = api_call(
            port,
            Method::POST,
            "/api/v1/applications/shop/diff",
            Some(&admin),
            Some(json!({"manifests": manifests})),
        )
        .await?;
        assert_eq!(code, 200, "{diffed}");
        let settings = item(&diffed, "ConfigMap", "settings")?;
        let diff = settings["diff"].as_str().unwrap_or_default();
        assert!(diff.contains("+  color: red"), "{diff}");
        let target = state(settings, "targetState")?;
        assert_eq!(target["metadata"]["namespace"], ns.as_str(), "placed");
        assert!(
            target["metadata"]["annotations"]["capstan.dev/tracking-id"]
                .as_str()
                .is_some_and(|id| id.starts_with("shop:")),
            "stamped: {target}"
        );
        let unmanaged = item(&diffed, "ConfigMap", "unmanaged")?;
        assert_eq!(unmanaged["liveState"], "null");
        assert!(!diffed.to_string().contains("not yours"), "{diffed}");
        let web = item(&diffed, "Deployment", "web")?;
        assert_eq!(
            (&web["targetState"], &web["modified"]),
            (&json!("null"), &json!(true))
        );
        assert_eq!(grpc.diff("shop", &manifests).await?, Ok(diffed.clone()));

        // The tree: the managed resources and, through ownerReferences, what they own.
        let deployment_uid = deployments
            .get("web")
            .await?
            .metadata
            .uid
            .context("the Deployment's uid")?;
        let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
            Api::namespaced(client.clone(), ns);
        replica_sets
            .create(
                &kube::api::PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "web-7d4b9", "labels": {"app": "web"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                            "name": "web", "uid": deployment_uid, "controller": true}]},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}}}
                }))?,
            )
            .await?;
        let tree = wait_until("the ReplicaSet in the resource tree", DEADLINE, || {
            let answer = get(&admin, "/api/v1/applications/shop/resource-tree".to_owned());
            async move {
                let (code, answer) = answer.await?;
                anyhow::ensure!(code == 200, "resource tree: {code} {answer}");
                let found = answer["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n| n["kind"] == "ReplicaSet");
                Ok(found.then_some(answer))
            }
        })
        .await?;
        let node = |kind: &str| {
            tree["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["kind"] == kind)
                .cloned()
                .with_context(|| format!("no {kind} in {tree}"))
        };
        let replica_set = node("ReplicaSet")?;
        assert_eq!(
            replica_set["parentRefs"],
            json!([{"group": "apps", "kind": "Deployment", "namespace": ns,
                "name": "web", "uid": deployment_uid}])
        );
        assert_eq!(replica_set["version"], "v1");
        let deployment = node("Deployment")?;
        assert_eq!(deployment["uid"], deployment_uid.as_str());
        assert_eq!(deployment["parentRefs"], json!([]));
        assert!(deployment["createdAt"].is_string(), "{deployment}");
        assert!(deployment["health"]["status"].is_string(), "{deployment}");
        assert!(node("ConfigMap")?["resourceVersion"].is_string());
        assert_eq!(grpc.tree("shop").await?, Ok(tree.clone()));

        // Events from the cluster about the Application's resources, not about others.
        let settings_uid = config_maps
            .get("settings")
            .await?
            .metadata
            .uid
            .context("the ConfigMap's uid")?;
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
        for (name, about, uid) in [
            ("settings.1", "settings", settings_uid.as_str()),
            ("unmanaged.1", "unmanaged", ""),
        ] {
            events
                .create(
                    &kube::api::PostParams::default(),
                    &serde_json::from_value(json!({
                        "metadata": {"name": name},
                        "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap",
                            "namespace": ns, "name": about, "uid": uid},
                        "reason": "Tested", "message": format!("about {about}"),
                        "type": "Normal", "lastTimestamp": "2026-01-01T10:00:00Z",
                        "source": {"component": "capstan-test"},
                    }))?,
                )
                .await?;
        }
        let (code, all) = get(&admin, "/api/v1/applications/shop/events".to_owned()).await?;
        assert_eq!(code, 200, "{all}");
        let messages: Vec<&str> = all["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str())
            .collect();
        assert_eq!(messages, ["about settings"], "{all}");
        assert_eq!(all["items"][0]["kind"], "Event");
        assert!(
            all["items"][0]["metadata"]["managedFields"].is_null(),
            "{all}"
        );
        let one_path = format!(
            "/api/v1/applications/shop/events?resourceNamespace={ns}&resourceName=settings&resourceUID={settings_uid}"
        );
        let (code, one) = get(&admin, one_path).await?;
        assert_eq!((code, &one), (200, &all));
        assert_eq!(grpc.events("shop", ("", "", "")).await?, Ok(all.clone()));
        assert_eq!(
            grpc.events("shop", (ns, "settings", &settings_uid)).await?,
            Ok(one)
        );
        let path = format!(
            "/api/v1/applications/shop/events?resourceNamespace={ns}&resourceName=unmanaged"
        );
        assert_eq!(get(&admin, path).await?.0, 404, "not a resource of shop");

        // Bob may not get the Application: refused alike whether it exists or not.
        for name in ["shop", "nope"] {
            for path in ["managed-resources", "resource-tree", "events"] {
                let (code, answer) =
                    get(&bob, format!("/api/v1/applications/{name}/{path}")).await?;
                assert_eq!(code, 403, "{name} {path}: {answer}");
            }
            let (code, _) = api_call(
                port,
                Method::POST,
                &format!("/api/v1/applications/{name}/diff"),
                Some(&bob),
                Some(json!({"manifests": []})),
            )
            .await?;
            assert_eq!(code, 403);
            let mut as_bob = LiveGrpc::connect(port, &bob).await?;
            let denied = Err(tonic::Code::PermissionDenied);
            assert_eq!(as_bob.managed(name).await?, denied);
            assert_eq!(as_bob.diff(name, &[]).await?, denied);
            assert_eq!(as_bob.tree(name).await?, denied);
            assert_eq!(as_bob.events(name, ("", "", "")).await?, denied);
        }
        anyhow::Ok(())
    };
    if let Err(e) = checks.await {
        return Err(e.context(format!("capstand log:\n{}", process.log_tail(60))));
    }
    process.signal(libc::SIGTERM)?;
    let exit = exit_of(&mut process, DEADLINE).await?;
    assert!(exit.contains("exit status: 0"), "{exit}");
    Ok(())
}
