//! Config management plugins through the repo-server: named and discovered plugins, the
//! environment and parameters they see, and their failures.

use std::time::Duration;

use capstan_model::{ApplicationSource, EnvEntry, PluginParameter, PluginSource, SourceType};
use capstan_repo::git::Credentials;
use capstan_repo::render::env::AppContext;
use capstan_repo::render::plugin::parse_plugins;
use capstan_repo::service::{ErrorKind, ManifestRequest, RepoServer, RepoServerConfig};
use capstan_testkit::git::GitRepo;

const PLUGINS: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: tpl
spec:
  version: v1
  init:
    command: [sh, -c]
    args: ["cat *.tpl > rendered.out"]
  generate:
    command: [sh, -c]
    args:
      - |
        printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n' "$ARGOCD_APP_NAME"
        printf '  region: "%s"\n  replicas: "%s"\n  zone1: "%s"\n  team: "%s"\n' "$ARGOCD_ENV_REGION" "$PARAM_REPLICAS" "$PARAM_ZONES_1" "$PARAM_LABELS_TEAM"
        printf '  template: "%s"\n  revision: "%s"\n  mode: "%s"\n' "$(cat rendered.out)" "$ARGOCD_APP_REVISION" "$PARAM_MODE"
        printf '  home_is_private: "%s"\n' "$(test "$HOME" != /root && echo yes)"
  discover:
    fileName: "*.tpl"
  parameters:
    static:
      - name: mode
        string: default-mode
---
apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: by-glob
spec:
  generate:
    command: [sh, -c, "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: by-glob\\n'"]
  discover:
    find:
      glob: "**/*.cue"
---
apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: by-command
spec:
  generate:
    command: [sh, -c, "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: by-command\\n'"]
  discover:
    find:
      command: [sh, -c, "ls | grep -x marker.txt"]
---
apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: broken
spec:
  generate:
    command: [sh, -c, "echo 'cannot render: missing secret' >&2; exit 2"]
---
apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: hangs
spec:
  generate:
    command: [sleep, "60"]
---
apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: not-yaml
spec:
  generate:
    command: [sh, -c, "echo 'key: [unclosed'"]
"#;

struct Setup {
    repo: GitRepo,
    server: RepoServer,
    _tmp: tempfile::TempDir,
}

async fn setup() -> anyhow::Result<Setup> {
    let repo = GitRepo::init()?;
    repo.write_all(&[
        ("tpl-app/app.tpl", "hello-from-template"),
        ("cue-app/deep/x.cue", "package x"),
        ("cmd-app/marker.txt", "x"),
        (
            "plain/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n",
        ),
    ])?;
    repo.commit("apps")?;
    let tmp = tempfile::tempdir()?;
    let mut config = RepoServerConfig::new(tmp.path().join("work"));
    config.plugins = parse_plugins(PLUGINS).map_err(anyhow::Error::msg)?;
    config.tool_limits.timeout = Duration::from_secs(2);
    let server = RepoServer::new(config).await?;
    Ok(Setup {
        repo,
        server,
        _tmp: tmp,
    })
}

fn request(repo: &GitRepo, path: &str) -> ManifestRequest {
    ManifestRequest {
        source: ApplicationSource::git(repo.file_url(), path, "HEAD"),
        app: AppContext {
            name: "web".into(),
            namespace: "shop".into(),
            ..AppContext::default()
        },
        credentials: Credentials::None,
        ..ManifestRequest::default()
    }
}

fn with_plugin(mut req: ManifestRequest, plugin: PluginSource) -> ManifestRequest {
    req.source.plugin = Some(plugin);
    req
}

#[tokio::test]
async fn a_named_plugin_sees_env_parameters_and_its_init_output() -> anyhow::Result<()> {
    let s = setup().await?;
    let plugin = PluginSource {
        name: "tpl-v1".into(),
        env: vec![EnvEntry {
            name: "REGION".into(),
            value: "eu-west".into(),
        }],
        parameters: vec![
            PluginParameter {
                name: "replicas".into(),
                string: Some("3".into()),
                ..Default::default()
            },
            PluginParameter {
                name: "zones".into(),
                array: Some(vec!["a".into(), "b".into()]),
                ..Default::default()
            },
            PluginParameter {
                name: "labels".into(),
                map: Some(
                    [("team".to_owned(), "core".to_owned())]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            },
        ],
    };
    let out = s
        .server
        .generate(with_plugin(request(&s.repo, "tpl-app"), plugin))
        .await?;
    assert_eq!(out.manifests.source_type, SourceType::Plugin);
    let cm = &out.manifests.manifests[0];
    assert_eq!(cm["metadata"]["name"], "web");
    let data = &cm["data"];
    assert_eq!(data["region"], "eu-west");
    assert_eq!(data["replicas"], "3");
    assert_eq!(data["zone1"], "b");
    assert_eq!(data["team"], "core");
    assert_eq!(
        data["template"], "hello-from-template",
        "init ran first, in the source directory"
    );
    assert_eq!(data["revision"], s.repo.head()?.as_str());
    assert_eq!(data["mode"], "default-mode", "static parameter default");
    assert_eq!(data["home_is_private"], "yes");
    Ok(())
}

#[tokio::test]
async fn discovery_by_file_name_glob_and_command_comes_before_detection() -> anyhow::Result<()> {
    let s = setup().await?;
    let name = |m: &serde_json::Value| {
        m["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let tpl = s.server.generate(request(&s.repo, "tpl-app")).await?;
    assert_eq!(tpl.manifests.source_type, SourceType::Plugin);
    let cue = s.server.generate(request(&s.repo, "cue-app")).await?;
    assert_eq!(name(&cue.manifests.manifests[0]), "by-glob");
    let cmd = s.server.generate(request(&s.repo, "cmd-app")).await?;
    assert_eq!(name(&cmd.manifests.manifests[0]), "by-command");
    let plain = s.server.generate(request(&s.repo, "plain")).await?;
    assert_eq!(
        plain.manifests.source_type,
        SourceType::Directory,
        "no rule matches"
    );
    // An explicit directory source is never handed to a plugin.
    let mut req = request(&s.repo, "tpl-app");
    req.source.directory = Some(Default::default());
    let dir = s.server.generate(req).await?;
    assert_eq!(dir.manifests.source_type, SourceType::Directory);
    Ok(())
}

#[tokio::test]
async fn plugin_errors_are_clear() -> anyhow::Result<()> {
    let s = setup().await?;
    let named = |n: &str| PluginSource {
        name: n.into(),
        ..Default::default()
    };
    let err = s
        .server
        .generate(with_plugin(request(&s.repo, "plain"), named("nope")))
        .await
        .expect_err("unknown plugin");
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    assert!(
        err.message.contains("\"nope\"") && err.message.contains("configured: tpl, by-glob"),
        "{err}"
    );

    let err = s
        .server
        .generate(with_plugin(
            request(&s.repo, "plain"),
            PluginSource::default(),
        ))
        .await
        .expect_err("nothing discovered");
    assert!(err.message.contains("discover rules match"), "{err}");

    let err = s
        .server
        .generate(with_plugin(request(&s.repo, "plain"), named("broken")))
        .await
        .expect_err("plugin fails");
    assert!(
        err.message.contains("cannot render: missing secret"),
        "{err}"
    );

    let err = s
        .server
        .generate(with_plugin(request(&s.repo, "plain"), named("hangs")))
        .await
        .expect_err("plugin hangs");
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded, "{err}");

    let err = s
        .server
        .generate(with_plugin(request(&s.repo, "plain"), named("not-yaml")))
        .await
        .expect_err("bad output");
    assert!(err.message.contains("output of plugin not-yaml"), "{err}");
    Ok(())
}
