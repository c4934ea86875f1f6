//! The Kustomize and Helm renderers against the real `kustomize` and `helm` binaries (the
//! versions pinned in `tools/versions`).
//!
//! Every test builds a Git repository, fetches it over `file://` into a fresh [`RepoCache`],
//! and renders from a new [`checkout`] per render (renderers edit the checkout in place, as the
//! service does with its throw-away checkouts). Assertions are on the rendered manifests, and
//! refusals are checked to happen before any tool runs. The Helm repository test packages a
//! chart with the real `helm`, serves it over HTTP on loopback and pulls it with
//! [`pull_chart`].

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use capstan_model::{
    HelmFileParameter, HelmParameter, HelmSource, IntOrString, KustomizePatch, KustomizeReplica,
    KustomizeSelector, KustomizeSource,
};
use capstan_repo::checkout::{Checkout, checkout};
use capstan_repo::git::{CacheConfig, Credentials, RepoCache, RepoHandle, RepoUrl};
use capstan_repo::render::env::AppContext;
use capstan_repo::render::helm::{self, HelmCredentials, HelmRequest, HelmTool, RefSource};
use capstan_repo::render::kustomize::{self, KustomizeRequest, KustomizeTool};
use capstan_repo::render::process::{ToolLimits, ToolRunner};
use capstan_repo::render::{RenderError, Rendered};
use capstan_repo::tree::{TreeError, TreeLimits};
use capstan_testkit::git::GitRepo;
use capstan_testkit::tools;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

/// A repository fetched into a private cache, with a tool runner whose `HOME` is private too.
struct Fixture {
    tmp: tempfile::TempDir,
    handle: RepoHandle,
    commit: gix::ObjectId,
    runner: ToolRunner,
    _repo: GitRepo,
}

impl Fixture {
    /// Commits `files` to a new repository and fetches it over `file://`.
    async fn new(files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let repo = GitRepo::init()?;
        repo.write_all(files)?;
        repo.commit("fixture")?;
        let tmp = tempfile::tempdir()?;
        let cache = RepoCache::new(CacheConfig {
            root: tmp.path().join("cache"),
            max_bytes: u64::MAX,
        })?;
        let url = RepoUrl::parse(&repo.file_url())?;
        let (handle, _) = cache.fetch(&url, &Credentials::None).await?;
        let commit = gix::ObjectId::from_hex(repo.head()?.as_bytes())?;
        let runner = ToolRunner::new(tmp.path().join("home"), ToolLimits::default());
        Ok(Self {
            tmp,
            handle,
            commit,
            runner,
            _repo: repo,
        })
    }

    /// A new checkout of the commit (blocking, which is fine on a test's runtime).
    fn checkout(&self) -> Checkout {
        let repo = self.handle.open().expect("open the cached repository");
        checkout(
            &repo,
            self.commit,
            &self.tmp.path().join("checkouts"),
            &TreeLimits::default(),
        )
        .expect("checkout")
    }

    /// `kustomize build` of `path` in a new checkout, for [`app`].
    async fn kustomize(
        &self,
        path: &str,
        options: Option<&KustomizeSource>,
    ) -> Result<Rendered, RenderError> {
        self.kustomize_with(&kustomize_tool(), path, options).await
    }

    async fn kustomize_with(
        &self,
        tool: &KustomizeTool,
        path: &str,
        options: Option<&KustomizeSource>,
    ) -> Result<Rendered, RenderError> {
        let co = self.checkout();
        let app = app();
        let req = KustomizeRequest {
            root: co.root(),
            path,
            options,
            app: &app,
        };
        kustomize::render(&self.runner, tool, req).await
    }

    /// `helm template` of the chart at `chart` in a new checkout.
    async fn helm(
        &self,
        chart: &str,
        options: Option<&HelmSource>,
        app: &AppContext,
        refs: &[RefSource],
    ) -> Result<Rendered, RenderError> {
        let co = self.checkout();
        let chart_dir = co.root().join(chart);
        let req = HelmRequest {
            root: co.root(),
            chart_dir: &chart_dir,
            options,
            app,
            refs,
        };
        helm::render(&self.runner, &helm_tool(), req).await
    }

    /// How many tool processes were started so far.
    fn tool_runs(&self) -> u64 {
        self.runner.stats().started
    }
}

fn kustomize_tool() -> KustomizeTool {
    KustomizeTool {
        program: tools::kustomize().expect("kustomize is built (bash scripts/tools.sh)"),
        ..KustomizeTool::default()
    }
}

fn helm_tool() -> HelmTool {
    HelmTool {
        program: tools::helm().expect("helm is built (bash scripts/tools.sh)"),
    }
}

/// The Application every render is for.
fn app() -> AppContext {
    AppContext {
        name: "guestbook".into(),
        namespace: "prod".into(),
        project: "default".into(),
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        kube_version: "1.31.4".into(),
        api_versions: vec!["example.com/v1".into(), "apps/v1".into(), "v1".into()],
        ..AppContext::default()
    }
}

/// `Kind/name` of each manifest, in order.
fn names(out: &Rendered) -> Vec<String> {
    out.manifests
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["kind"].as_str().unwrap_or("?"),
                m["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The manifest `kind`/`name`; panics with what was rendered when it is absent.
fn find<'a>(out: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    out.manifests
        .iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", names(out)))
}

fn has(out: &Rendered, kind: &str) -> bool {
    out.manifests.iter().any(|m| m["kind"] == kind)
}

/// A `commonLabels` / `commonAnnotations` map.
fn pairs<M: FromIterator<(String, String)>>(items: &[(&str, &str)]) -> M {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Kustomize
// ---------------------------------------------------------------------------------------------

const BASE_KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deployment.yaml
- configmap.yaml
";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
      - name: sidecar
        image: busybox:1.36
";

const CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: base
";

/// The overlay sets an annotation itself (for the force tests) and patches the base.
const OVERLAY_KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../base
commonAnnotations:
  team: platform
patches:
- patch: |-
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: settings
    data:
      mode: prod
";

const COMPONENT_KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
resources:
- extra.yaml
";

const EXTRA_CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: extra
data:
  from: component
";

/// A base, a `prod` overlay on it and a component.
async fn kustomize_fixture() -> anyhow::Result<Fixture> {
    Fixture::new(&[
        ("base/kustomization.yaml", BASE_KUSTOMIZATION),
        ("base/deployment.yaml", DEPLOYMENT),
        ("base/configmap.yaml", CONFIGMAP),
        ("overlays/prod/kustomization.yaml", OVERLAY_KUSTOMIZATION),
        (
            "components/extra/kustomization.yaml",
            COMPONENT_KUSTOMIZATION,
        ),
        ("components/extra/extra.yaml", EXTRA_CONFIGMAP),
    ])
    .await
}

fn image_of(deployment: &Value, container: &str) -> String {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .and_then(|c| c["image"].as_str())
        .unwrap_or_else(|| panic!("no container {container} in {deployment}"))
        .to_owned()
}

#[tokio::test]
async fn kustomize_base_and_overlay_render() -> anyhow::Result<()> {
    let fx = kustomize_fixture().await?;

    let out = fx.kustomize("overlays/prod", None).await?;
    assert_eq!(names(&out), ["ConfigMap/settings", "Deployment/web"]);
    let cm = find(&out, "ConfigMap", "settings");
    assert_eq!(cm["data"]["mode"], "prod", "the overlay's patch applies");
    assert_eq!(cm["metadata"]["annotations"]["team"], "platform");
    let web = find(&out, "Deployment", "web");
    assert_eq!(web["spec"]["replicas"], 1);
    assert_eq!(image_of(web, "web"), "nginx:1.25");
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);

    // The base on its own, and a trailing slash / `./` in the source path.
    let out = fx.kustomize("./base/", None).await?;
    assert_eq!(find(&out, "ConfigMap", "settings")["data"]["mode"], "base");
    assert!(
        find(&out, "ConfigMap", "settings")["metadata"]
            .get("annotations")
            .is_none()
    );

    // Options that edit nothing leave the output as it was.
    let out = fx
        .kustomize("overlays/prod", Some(&KustomizeSource::default()))
        .await?;
    assert_eq!(names(&out), ["ConfigMap/settings", "Deployment/web"]);
    Ok(())
}

#[tokio::test]
async fn kustomize_names_images_namespace_and_replicas() -> anyhow::Result<()> {
    let fx = kustomize_fixture().await?;
    let mut options = KustomizeSource {
        name_prefix: "pre-".into(),
        name_suffix: "-suf".into(),
        images: vec![
            "nginx=registry.example/nginx:1.27".into(),
            "busybox:${ARGOCD_APP_NAME}".into(),
        ],
        namespace: "team-a".into(),
        replicas: vec![KustomizeReplica {
            name: "web".into(),
            count: IntOrString::Int(3),
        }],
        ..KustomizeSource::default()
    };
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    assert_eq!(
        names(&out),
        ["ConfigMap/pre-settings-suf", "Deployment/pre-web-suf"]
    );
    for m in &out.manifests {
        assert_eq!(m["metadata"]["namespace"], "team-a", "{m}");
    }
    let web = find(&out, "Deployment", "pre-web-suf");
    assert_eq!(image_of(web, "web"), "registry.example/nginx:1.27");
    assert_eq!(
        image_of(web, "sidecar"),
        "busybox:guestbook",
        "${{ARGOCD_APP_NAME}} is the Application's name"
    );
    assert_eq!(web["spec"]["replicas"], 3);

    // A count written as text is a number too; a non-number is refused before kustomize runs.
    options.replicas[0].count = IntOrString::String("4".into());
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    assert_eq!(
        find(&out, "Deployment", "pre-web-suf")["spec"]["replicas"],
        4
    );
    let runs = fx.tool_runs();
    options.replicas[0].count = IntOrString::String("many".into());
    let err = fx
        .kustomize("overlays/prod", Some(&options))
        .await
        .expect_err("not a number");
    assert!(
        matches!(&err, RenderError::InvalidOption { field, .. } if field == "spec.source.kustomize.replicas[0].count"),
        "{err}"
    );
    assert_eq!(fx.tool_runs(), runs, "kustomize did not run");

    // An image override that is not one.
    let bad = KustomizeSource {
        images: vec!["nginx".into()],
        ..KustomizeSource::default()
    };
    let err = fx
        .kustomize("overlays/prod", Some(&bad))
        .await
        .expect_err("bad image");
    assert!(
        matches!(&err, RenderError::InvalidOption { field, .. } if field == "spec.source.kustomize.images[0]"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn kustomize_common_labels_with_and_without_selector() -> anyhow::Result<()> {
    let fx = kustomize_fixture().await?;
    let label = |v: &Value| v.get("env").and_then(Value::as_str).map(str::to_owned);
    let mut options = KustomizeSource {
        common_labels: pairs(&[("env", "prod")]),
        ..KustomizeSource::default()
    };

    // commonLabels: everywhere, selectors included.
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    let web = find(&out, "Deployment", "web");
    assert_eq!(label(&web["metadata"]["labels"]).as_deref(), Some("prod"));
    assert_eq!(
        label(&web["spec"]["selector"]["matchLabels"]).as_deref(),
        Some("prod")
    );
    assert_eq!(
        label(&web["spec"]["template"]["metadata"]["labels"]).as_deref(),
        Some("prod")
    );
    assert_eq!(
        label(&find(&out, "ConfigMap", "settings")["metadata"]["labels"]).as_deref(),
        Some("prod")
    );

    // labelWithoutSelector: on the resources, not in selectors (nor templates).
    options.label_without_selector = true;
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    let web = find(&out, "Deployment", "web");
    assert_eq!(label(&web["metadata"]["labels"]).as_deref(), Some("prod"));
    assert_eq!(
        web["spec"]["selector"]["matchLabels"],
        json!({"app": "web"})
    );
    assert_eq!(
        web["spec"]["template"]["metadata"]["labels"],
        json!({"app": "web"})
    );

    // ... and with labelIncludeTemplates, in templates but still not in selectors.
    options.label_include_templates = true;
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    let web = find(&out, "Deployment", "web");
    assert_eq!(
        web["spec"]["selector"]["matchLabels"],
        json!({"app": "web"})
    );
    assert_eq!(
        label(&web["spec"]["template"]["metadata"]["labels"]).as_deref(),
        Some("prod")
    );
    Ok(())
}

#[tokio::test]
async fn kustomize_common_annotations_force_and_envsubst() -> anyhow::Result<()> {
    let fx = kustomize_fixture().await?;
    let annotations =
        |out: &Rendered| find(out, "ConfigMap", "settings")["metadata"]["annotations"].clone();

    // A new key is added next to the kustomization's own.
    let mut options = KustomizeSource {
        common_annotations: pairs(&[("owner", "${ARGOCD_APP_NAME}/${ARGOCD_APP_NAMESPACE}")]),
        ..KustomizeSource::default()
    };
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    assert_eq!(
        annotations(&out),
        json!({"team": "platform", "owner": "${ARGOCD_APP_NAME}/${ARGOCD_APP_NAMESPACE}"}),
        "without commonAnnotationsEnvsubst the value is kept as written"
    );
    options.common_annotations_envsubst = true;
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    assert_eq!(annotations(&out)["owner"], "guestbook/prod");
    assert_eq!(
        find(&out, "Deployment", "web")["metadata"]["annotations"]["owner"],
        "guestbook/prod"
    );

    // A key the kustomization already sets needs forceCommonAnnotations.
    let mut options = KustomizeSource {
        common_annotations: pairs(&[("team", "apps")]),
        ..KustomizeSource::default()
    };
    let runs = fx.tool_runs();
    let err = fx
        .kustomize("overlays/prod", Some(&options))
        .await
        .expect_err("existing key without force");
    let RenderError::InvalidOption { field, message } = &err else {
        panic!("{err}");
    };
    assert_eq!(field, "spec.source.kustomize.commonAnnotations");
    assert!(
        message.contains("\"team\"") && message.contains("forceCommonAnnotations"),
        "{message}"
    );
    assert_eq!(fx.tool_runs(), runs, "kustomize did not run");
    options.force_common_annotations = true;
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    assert_eq!(annotations(&out), json!({"team": "apps"}));
    Ok(())
}

#[tokio::test]
async fn kustomize_components() -> anyhow::Result<()> {
    let fx = kustomize_fixture().await?;
    let mut options = KustomizeSource {
        components: vec!["../../components/extra".into()],
        ..KustomizeSource::default()
    };
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    assert_eq!(
        find(&out, "ConfigMap", "extra")["data"]["from"],
        "component"
    );
    assert_eq!(out.manifests.len(), 3, "{:?}", names(&out));

    // Missing: an error naming it, unless ignoreMissingComponents.
    options.components.push("../../components/nope".into());
    let err = fx
        .kustomize("overlays/prod", Some(&options))
        .await
        .expect_err("missing component");
    let RenderError::InvalidOption { field, message } = &err else {
        panic!("{err}");
    };
    assert_eq!(field, "spec.source.kustomize.components[1]");
    assert!(
        message.contains("components/nope") && message.contains("ignoreMissingComponents"),
        "{message}"
    );
    options.ignore_missing_components = true;
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    assert_eq!(
        names(&out),
        ["ConfigMap/extra", "ConfigMap/settings", "Deployment/web"]
    );

    // Only a missing one, ignored: the plain overlay.
    options.components = vec!["../../components/nope".into()];
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    assert_eq!(names(&out), ["ConfigMap/settings", "Deployment/web"]);

    // One that leaves the repository is refused even when missing ones are ignored.
    options.components = vec!["../../../../../tmp".into()];
    let err = fx
        .kustomize("overlays/prod", Some(&options))
        .await
        .expect_err("escaping component");
    assert!(
        matches!(&err, RenderError::PathRefused { field, .. } if field == "spec.source.kustomize.components[0]"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn kustomize_patches_with_targets() -> anyhow::Result<()> {
    let fx = kustomize_fixture().await?;
    let options = KustomizeSource {
        patches: vec![
            // JSON 6902, selected by kind and name.
            KustomizePatch {
                patch: r#"[{"op": "replace", "path": "/spec/replicas", "value": 5},
                           {"op": "add", "path": "/spec/template/spec/containers/0/env",
                            "value": [{"name": "MODE", "value": "patched"}]}]"#
                    .into(),
                target: Some(KustomizeSelector {
                    group: "apps".into(),
                    version: "v1".into(),
                    kind: "Deployment".into(),
                    name: "web".into(),
                    ..KustomizeSelector::default()
                }),
                ..KustomizePatch::default()
            },
            // Strategic merge, selected by kind and a name pattern.
            KustomizePatch {
                patch: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: any\ndata:\n  extra: from-argo\n".into(),
                target: Some(KustomizeSelector {
                    kind: "ConfigMap".into(),
                    name: "set.*".into(),
                    ..KustomizeSelector::default()
                }),
                ..KustomizePatch::default()
            },
        ],
        ..KustomizeSource::default()
    };
    let out = fx.kustomize("overlays/prod", Some(&options)).await?;
    let web = find(&out, "Deployment", "web");
    assert_eq!(web["spec"]["replicas"], 5);
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "MODE", "value": "patched"}])
    );
    assert!(
        web["spec"]["template"]["spec"]["containers"][1]
            .get("env")
            .is_none()
    );
    let cm = find(&out, "ConfigMap", "settings");
    assert_eq!(
        cm["data"],
        json!({"mode": "prod", "extra": "from-argo"}),
        "the Application's patch comes on top of the overlay's own"
    );
    Ok(())
}

#[tokio::test]
async fn kustomize_inflates_helm_charts_with_the_configured_helm() -> anyhow::Result<()> {
    // The chart lives in the kustomization's own `charts/` (kustomize's default chartHome):
    // kustomize itself refuses chart files outside the kustomization's directory.
    let mut files: Vec<(String, &str)> = helm_chart_files()
        .into_iter()
        .map(|(path, text)| (format!("inflate/{path}"), text))
        .collect();
    files.push((
        "inflate/kustomization.yaml".into(),
        "\
helmCharts:
- name: demo
  releaseName: inflated
  namespace: kns
  valuesInline:
    layer: from-kustomize
",
    ));
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    let fx = Fixture::new(&files).await?;
    let tool = KustomizeTool {
        helm: Some(tools::helm()?),
        build_options: vec!["--enable-helm".into()],
        ..kustomize_tool()
    };
    let options = KustomizeSource {
        kube_version: "1.29.0".into(),
        api_versions: vec!["example.com/v1".into()],
        ..KustomizeSource::default()
    };
    let out = fx.kustomize_with(&tool, "inflate", Some(&options)).await?;
    let cm = find(&out, "ConfigMap", "inflated-config");
    assert_eq!(cm["metadata"]["namespace"], "kns");
    assert_eq!(cm["data"]["layer"], "from-kustomize");
    assert_eq!(cm["data"]["kubeVersion"], "v1.29.0");
    assert_eq!(cm["data"]["hasExample"], "true");

    // Without --enable-helm, kustomize refuses helmCharts.
    let err = fx
        .kustomize("inflate", Some(&options))
        .await
        .expect_err("helm not enabled");
    let RenderError::ToolFailed { tool, stderr, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(tool, "kustomize");
    assert!(stderr.contains("--enable-helm"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn kustomize_hostile_and_broken_sources() -> anyhow::Result<()> {
    let fx = Fixture::new(&[
        ("base/kustomization.yaml", BASE_KUSTOMIZATION),
        ("base/deployment.yaml", DEPLOYMENT),
        ("base/configmap.yaml", CONFIGMAP),
        (
            "overlays/escape/kustomization.yaml",
            "resources:\n- ../../base\n- ../../../../etc\n",
        ),
        // Only reaches the escape through another kustomization.
        (
            "overlays/indirect/kustomization.yaml",
            "resources:\n- ../escape\n",
        ),
        (
            "overlays/patch-file/kustomization.yaml",
            "resources:\n- ../../base\npatches:\n- path: ../../../secret.yaml\n",
        ),
        (
            "overlays/chart-home/kustomization.yaml",
            "helmGlobals:\n  chartHome: ../../../charts\n",
        ),
        (
            "overlays/generator/kustomization.yaml",
            "configMapGenerator:\n- name: stolen\n  files:\n  - passwd=../../../../../etc/passwd\n",
        ),
        ("broken/kustomization.yaml", "resources: [unclosed\n"),
        (
            "broken-base/kustomization.yaml",
            "resources:\n- ../broken\n",
        ),
        ("nokust/cm.yaml", CONFIGMAP),
        (
            "missing-file/kustomization.yaml",
            "resources:\n- does-not-exist.yaml\n",
        ),
    ])
    .await?;

    for (path, field, target) in [
        (
            "overlays/escape",
            "overlays/escape/kustomization.yaml: resources[1]",
            "../../../../etc",
        ),
        (
            "overlays/indirect",
            "overlays/escape/kustomization.yaml: resources[1]",
            "../../../../etc",
        ),
        (
            "overlays/patch-file",
            "overlays/patch-file/kustomization.yaml: patches[0].path",
            "../../../secret.yaml",
        ),
        (
            "overlays/chart-home",
            "overlays/chart-home/kustomization.yaml: helmGlobals.chartHome",
            "../../../charts",
        ),
        (
            "overlays/generator",
            "overlays/generator/kustomization.yaml: configMapGenerator[0].files[0]",
            "../../../../../etc/passwd",
        ),
    ] {
        let err = fx.kustomize(path, None).await.expect_err(path);
        let RenderError::PathRefused {
            field: f, path: p, ..
        } = &err
        else {
            panic!("{path}: {err}");
        };
        assert_eq!((f.as_str(), p.as_str()), (field, target), "{path}");
        assert!(err.to_string().contains("not allowed"), "{err}");
    }
    // Refused with options too (the options are applied, then the paths checked).
    let err = fx
        .kustomize(
            "overlays/escape",
            Some(&KustomizeSource {
                name_prefix: "x-".into(),
                ..KustomizeSource::default()
            }),
        )
        .await
        .expect_err("escape with options");
    assert!(matches!(err, RenderError::PathRefused { .. }), "{err}");
    assert_eq!(fx.tool_runs(), 0, "kustomize never ran on a refused source");

    // A source path with `..`, or absolute.
    for path in ["overlays/../../etc", "../base", "/etc"] {
        let err = fx.kustomize(path, None).await.expect_err(path);
        assert!(
            matches!(err, RenderError::Tree(TreeError::InvalidPath { .. })),
            "{path}: {err}"
        );
        assert!(err.to_string().contains(path), "{err}");
    }

    // Malformed YAML, in the source's kustomization or in one it reaches.
    for path in ["broken", "broken-base"] {
        let err = fx.kustomize(path, None).await.expect_err(path);
        let RenderError::Yaml { file, line, .. } = &err else {
            panic!("{path}: {err}");
        };
        assert_eq!(file, "broken/kustomization.yaml", "{path}");
        assert!(line.is_some(), "{err}");
        assert!(
            err.to_string().starts_with("broken/kustomization.yaml:"),
            "{err}"
        );
    }

    // No kustomization at all, and a directory that does not exist.
    for path in ["nokust", "nowhere"] {
        let err = fx.kustomize(path, None).await.expect_err(path);
        let RenderError::InvalidOption { field, message } = &err else {
            panic!("{path}: {err}");
        };
        assert_eq!(field, "spec.source.path");
        assert!(
            message.contains(&format!("{path} has no kustomization.yaml")),
            "{message}"
        );
    }
    assert_eq!(fx.tool_runs(), 0);

    // kustomize itself fails: its error output says which file.
    let err = fx
        .kustomize("missing-file", None)
        .await
        .expect_err("missing resource");
    let RenderError::ToolFailed {
        tool,
        command,
        stderr,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((tool.as_str(), command.as_str()), ("kustomize", "build"));
    assert!(stderr.contains("does-not-exist.yaml"), "{stderr}");
    assert_eq!(fx.runner.stats().failed, 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helm
// ---------------------------------------------------------------------------------------------

const CHART_YAML: &str = "\
apiVersion: v2
name: demo
description: A chart for Capstan's renderer tests
type: application
version: 0.1.0
";

const CHART_VALUES: &str = "\
greeting: hello
layer: chart-defaults
flag: false
csv: none
list: []
cert: \"\"
fromRef: \"\"
failMe: false
";

/// Everything the options can change shows up in the ConfigMap's data.
const CHART_CONFIGMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
  namespace: {{ .Release.Namespace }}
data:
  greeting: {{ .Values.greeting | quote }}
  layer: {{ .Values.layer | quote }}
  flag: {{ .Values.flag | toString | quote }}
  flagKind: {{ kindOf .Values.flag | quote }}
  csv: {{ .Values.csv | toString | quote }}
  listKind: {{ kindOf .Values.list | quote }}
  listLength: {{ len .Values.list | quote }}
  cert: {{ .Values.cert | quote }}
  fromRef: {{ .Values.fromRef | quote }}
  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
  hasExample: {{ .Capabilities.APIVersions.Has "example.com/v1" | quote }}
  chartVersion: {{ .Chart.Version | quote }}
"#;

const CHART_FAIL: &str = "{{- if .Values.failMe }}{{ fail \"failMe is set: this chart refuses to render\" }}{{- end }}\n";

const CHART_TEST_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-test
  annotations:
    helm.sh/hook: test
spec:
  restartPolicy: Never
  containers:
  - name: check
    image: busybox:1.36
    command: [\"true\"]
";

const CHART_CRD: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names:
    kind: Widget
    plural: widgets
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
";

/// The chart at `charts/demo`, with values files beside it and one in `charts/shared`.
fn helm_chart_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("charts/demo/Chart.yaml", CHART_YAML),
        ("charts/demo/values.yaml", CHART_VALUES),
        ("charts/demo/templates/configmap.yaml", CHART_CONFIGMAP),
        ("charts/demo/templates/fail.yaml", CHART_FAIL),
        ("charts/demo/templates/tests/test-pod.yaml", CHART_TEST_POD),
        ("charts/demo/crds/widgets.yaml", CHART_CRD),
        (
            "charts/demo/values-prod.yaml",
            "greeting: hi-prod\nlayer: values-prod\n",
        ),
        (
            "charts/demo/files/cert.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ),
        ("charts/shared/common.yaml", "layer: shared\n"),
    ]
}

const CHART: &str = "charts/demo";

async fn helm_fixture() -> anyhow::Result<Fixture> {
    Fixture::new(&helm_chart_files()).await
}

/// The data of the chart's ConfigMap for release `release`.
fn config_data(out: &Rendered, release: &str) -> Value {
    find(out, "ConfigMap", &format!("{release}-config"))["data"].clone()
}

fn param(name: &str, value: &str) -> HelmParameter {
    HelmParameter {
        name: name.into(),
        value: value.into(),
        force_string: false,
    }
}

#[tokio::test]
async fn helm_release_namespace_and_capabilities() -> anyhow::Result<()> {
    let fx = helm_fixture().await?;

    // Defaults: the Application's name, destination namespace and cluster capabilities.
    let out = fx.helm(CHART, None, &app(), &[]).await?;
    let cm = find(&out, "ConfigMap", "guestbook-config");
    assert_eq!(cm["metadata"]["namespace"], "prod");
    assert_eq!(cm["data"]["kubeVersion"], "v1.31.4");
    assert_eq!(cm["data"]["hasExample"], "true");
    assert_eq!(cm["data"]["greeting"], "hello");
    assert_eq!(cm["data"]["chartVersion"], "0.1.0");

    // The options win over the Application.
    let options = HelmSource {
        release_name: "custom".into(),
        namespace: "other".into(),
        kube_version: "1.30.0".into(),
        api_versions: vec!["apps/v1".into()],
        ..HelmSource::default()
    };
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    let cm = find(&out, "ConfigMap", "custom-config");
    assert_eq!(cm["metadata"]["namespace"], "other");
    assert_eq!(cm["data"]["kubeVersion"], "v1.30.0");
    assert_eq!(
        cm["data"]["hasExample"], "false",
        "helm.apiVersions replaces the cluster's"
    );
    assert!(
        !names(&out).contains(&"ConfigMap/guestbook-config".to_owned()),
        "{:?}",
        names(&out)
    );

    // No release name and no Application name to default to.
    let nameless = AppContext {
        name: String::new(),
        ..app()
    };
    let err = fx
        .helm(CHART, None, &nameless, &[])
        .await
        .expect_err("no release name");
    assert!(
        matches!(&err, RenderError::InvalidOption { field, .. } if field == "spec.source.helm.releaseName"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn helm_values_precedence() -> anyhow::Result<()> {
    let fx = helm_fixture().await?;
    let layer = |out: &Rendered| config_data(out, "guestbook")["layer"].clone();

    let out = fx.helm(CHART, None, &app(), &[]).await?;
    assert_eq!(layer(&out), "chart-defaults");

    // A values file beside the chart, then one in another directory of the repository: the
    // later file wins for the keys it sets.
    let mut options = HelmSource {
        value_files: vec!["values-prod.yaml".into()],
        ..HelmSource::default()
    };
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    assert_eq!(layer(&out), "values-prod");
    assert_eq!(config_data(&out, "guestbook")["greeting"], "hi-prod");
    options.value_files.push("../shared/common.yaml".into());
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    assert_eq!(layer(&out), "shared");
    assert_eq!(config_data(&out, "guestbook")["greeting"], "hi-prod");

    // Inline `values` beat the files; `valuesObject` beats `values`.
    options.values = "layer: values-text\n".into();
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    assert_eq!(layer(&out), "values-text");
    options.values_object = Some(json!({"layer": "values-object"}));
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    assert_eq!(layer(&out), "values-object");

    // Parameters beat everything, and may use the build environment.
    options.parameters = vec![
        param("layer", "parameter"),
        param("greeting", "hi ${ARGOCD_APP_NAME}"),
    ];
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    assert_eq!(layer(&out), "parameter");
    assert_eq!(config_data(&out, "guestbook")["greeting"], "hi guestbook");
    Ok(())
}

#[tokio::test]
async fn helm_parameters_strings_commas_lists_and_files() -> anyhow::Result<()> {
    let fx = helm_fixture().await?;
    let mut options = HelmSource {
        parameters: vec![
            param("flag", "true"),
            param("csv", "a,b,c"),
            param("list", "{x,y,z}"),
        ],
        file_parameters: vec![HelmFileParameter {
            name: "cert".into(),
            path: "files/cert.pem".into(),
        }],
        ..HelmSource::default()
    };
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    let data = config_data(&out, "guestbook");
    assert_eq!(data["flagKind"], "bool", "--set parses true");
    assert_eq!(data["csv"], "a,b,c", "a comma does not split the value");
    assert_eq!(data["listKind"], "slice", "{{…}} stays a list");
    assert_eq!(data["listLength"], "3");
    assert_eq!(
        data["cert"],
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    );

    options.parameters[0].force_string = true;
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    let data = config_data(&out, "guestbook");
    assert_eq!(
        data["flagKind"], "string",
        "forceString keeps \"true\" text"
    );
    assert_eq!(data["flag"], "true");

    // A parameter without a name, and a file parameter out of the repository.
    let runs = fx.tool_runs();
    let err = fx
        .helm(
            CHART,
            Some(&HelmSource {
                parameters: vec![param("", "x")],
                ..HelmSource::default()
            }),
            &app(),
            &[],
        )
        .await
        .expect_err("nameless parameter");
    assert!(matches!(err, RenderError::InvalidOption { .. }), "{err}");
    let err = fx
        .helm(
            CHART,
            Some(&HelmSource {
                file_parameters: vec![HelmFileParameter {
                    name: "cert".into(),
                    path: "../../../../etc/passwd".into(),
                }],
                ..HelmSource::default()
            }),
            &app(),
            &[],
        )
        .await
        .expect_err("file parameter outside");
    assert!(
        matches!(&err, RenderError::PathRefused { field, .. } if field == "spec.source.helm.fileParameters[0].path"),
        "{err}"
    );
    assert_eq!(fx.tool_runs(), runs, "helm did not run");
    Ok(())
}

#[tokio::test]
async fn helm_crds_and_tests_can_be_skipped() -> anyhow::Result<()> {
    let fx = helm_fixture().await?;
    let crd = |out: &Rendered| has(out, "CustomResourceDefinition");
    let test_pod = |out: &Rendered| {
        out.manifests
            .iter()
            .any(|m| m["kind"] == "Pod" && m["metadata"]["annotations"]["helm.sh/hook"] == "test")
    };

    let out = fx.helm(CHART, None, &app(), &[]).await?;
    assert!(crd(&out), "CRDs are included by default: {:?}", names(&out));
    assert_eq!(
        find(&out, "CustomResourceDefinition", "widgets.example.com")["spec"]["group"],
        "example.com"
    );
    assert!(test_pod(&out), "tests are included by default");

    let options = HelmSource {
        skip_crds: true,
        ..HelmSource::default()
    };
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    assert!(!crd(&out), "{:?}", names(&out));
    assert!(test_pod(&out));

    let options = HelmSource {
        skip_tests: true,
        ..HelmSource::default()
    };
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    assert!(crd(&out));
    assert!(!test_pod(&out), "{:?}", names(&out));
    assert_eq!(names(&out).len(), 2, "{:?}", names(&out));
    Ok(())
}

#[tokio::test]
async fn helm_missing_and_referenced_value_files() -> anyhow::Result<()> {
    let fx = helm_fixture().await?;
    let values_repo = Fixture::new(&[(
        "envs/prod.yaml",
        "fromRef: from-the-values-repo\nlayer: ref\n",
    )])
    .await?;
    let values_checkout = values_repo.checkout();
    let refs = [RefSource {
        name: "values".into(),
        root: values_checkout.root().to_path_buf(),
    }];

    // A missing file is an error naming it, unless ignoreMissingValueFiles.
    let mut options = HelmSource {
        value_files: vec!["values-prod.yaml".into(), "values-missing.yaml".into()],
        ..HelmSource::default()
    };
    let err = fx
        .helm(CHART, Some(&options), &app(), &[])
        .await
        .expect_err("missing values file");
    let RenderError::InvalidOption { field, message } = &err else {
        panic!("{err}");
    };
    assert_eq!(field, "spec.source.helm.valueFiles[1]");
    assert!(
        message.contains("values-missing.yaml") && message.contains("ignoreMissingValueFiles"),
        "{message}"
    );
    options.ignore_missing_value_files = true;
    let out = fx.helm(CHART, Some(&options), &app(), &[]).await?;
    assert_eq!(config_data(&out, "guestbook")["layer"], "values-prod");

    // `$values/…` reads the other source's checkout, in order with the other files.
    options
        .value_files
        .push("$values/envs/${ARGOCD_APP_NAMESPACE}.yaml".into());
    let out = fx.helm(CHART, Some(&options), &app(), &refs).await?;
    let data = config_data(&out, "guestbook");
    assert_eq!(data["fromRef"], "from-the-values-repo");
    assert_eq!(data["layer"], "ref");
    assert_eq!(data["greeting"], "hi-prod");

    // An unknown ref, and a ref path that climbs out of its source.
    let runs = fx.tool_runs();
    for (file, refused) in [
        ("$other/envs/prod.yaml", false),
        ("$values/../outside.yaml", true),
    ] {
        let options = HelmSource {
            value_files: vec![file.into()],
            ..HelmSource::default()
        };
        let err = fx
            .helm(CHART, Some(&options), &app(), &refs)
            .await
            .expect_err(file);
        if refused {
            assert!(matches!(err, RenderError::PathRefused { .. }), "{err}");
        } else {
            assert!(
                matches!(&err, RenderError::InvalidOption { message, .. } if message.contains("ref: other")),
                "{err}"
            );
        }
    }
    assert_eq!(fx.tool_runs(), runs, "helm did not run");
    Ok(())
}

#[tokio::test]
async fn helm_hostile_value_files_are_refused() -> anyhow::Result<()> {
    let fx = helm_fixture().await?;
    for file in [
        "../../../../etc/passwd",
        "../../../etc/passwd",
        "/etc/passwd",
        "https://attacker.example/values.yaml",
        "file:///etc/passwd",
    ] {
        // Even when missing files would be ignored.
        let options = HelmSource {
            value_files: vec!["values-prod.yaml".into(), file.into()],
            ignore_missing_value_files: true,
            ..HelmSource::default()
        };
        let err = fx
            .helm(CHART, Some(&options), &app(), &[])
            .await
            .expect_err(file);
        let RenderError::PathRefused { field, path, .. } = &err else {
            panic!("{file}: {err}");
        };
        assert_eq!(field, "spec.source.helm.valueFiles[1]");
        assert_eq!(path, file);
    }
    assert_eq!(fx.tool_runs(), 0, "helm never ran");
    Ok(())
}

#[tokio::test]
async fn helm_template_error_is_reported() -> anyhow::Result<()> {
    let fx = helm_fixture().await?;
    let options = HelmSource {
        parameters: vec![param("failMe", "true")],
        ..HelmSource::default()
    };
    let err = fx
        .helm(CHART, Some(&options), &app(), &[])
        .await
        .expect_err("template fails");
    let RenderError::ToolFailed {
        tool,
        command,
        stderr,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((tool.as_str(), command.as_str()), ("helm", "template"));
    assert!(
        stderr.contains("failMe is set: this chart refuses to render"),
        "{stderr}"
    );
    assert!(
        err.to_string().contains("this chart refuses to render"),
        "{err}"
    );

    // A directory that is not a chart.
    let err = fx
        .helm("charts/shared", None, &app(), &[])
        .await
        .expect_err("not a chart");
    assert!(
        matches!(&err, RenderError::ToolFailed { stderr, .. } if stderr.contains("Chart.yaml")),
        "{err}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helm repository
// ---------------------------------------------------------------------------------------------

/// Serves the files of a directory over HTTP on loopback (a Helm chart repository), and
/// records the paths requested.
struct StaticServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StaticServer {
    async fn start(dir: PathBuf) -> anyhow::Result<Self> {
        use axum::http::{StatusCode, Uri};

        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let (dir, log) = (dir.clone(), Arc::clone(&log));
            async move {
                let path = uri.path().trim_start_matches('/').to_owned();
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(path.clone());
                if path.is_empty() || path.split('/').any(|p| p == ".." || p.is_empty()) {
                    return (StatusCode::NOT_FOUND, Vec::new());
                }
                match tokio::fs::read(dir.join(&path)).await {
                    Ok(bytes) => (StatusCode::OK, bytes),
                    Err(_) => (StatusCode::NOT_FOUND, Vec::new()),
                }
            }
        });
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                panic!("static server: {e}");
            }
        });
        Ok(Self {
            url,
            requests,
            task,
        })
    }

    fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the real `helm` CLI with a private `HOME`; fails with its error output.
fn helm_cli(home: &Path, args: &[&OsStr]) -> anyhow::Result<()> {
    let out = std::process::Command::new(tools::helm()?)
        .args(args)
        .env("HOME", home)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn helm_pull_chart_from_an_http_repository() -> anyhow::Result<()> {
    // The chart's sources, packaged at three versions into a served directory and indexed.
    let fx = helm_fixture().await?;
    let sources = fx.checkout();
    let tmp = tempfile::tempdir()?;
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served)?;
    let server = StaticServer::start(served.clone()).await?;
    let cli_home = tmp.path().join("cli-home");
    let chart_src = sources.root().join(CHART);
    for version in ["1.0.0", "1.2.0", "2.0.0"] {
        helm_cli(
            &cli_home,
            &[
                "package".as_ref(),
                chart_src.as_os_str(),
                "-d".as_ref(),
                served.as_os_str(),
                "--version".as_ref(),
                version.as_ref(),
            ],
        )?;
    }
    helm_cli(
        &cli_home,
        &[
            "repo".as_ref(),
            "index".as_ref(),
            served.as_os_str(),
            "--url".as_ref(),
            server.url.as_ref(),
        ],
    )?;

    let tool = helm_tool();
    let runner = ToolRunner::new(tmp.path().join("home"), ToolLimits::default());
    let pulls = tmp.path().join("pulls");
    let none = HelmCredentials::default();

    // A range picks the highest match, not the highest version.
    let pulled =
        helm::pull_chart(&runner, &tool, &server.url, "demo", "1.*", &none, &pulls).await?;
    assert_eq!(pulled.version, "1.2.0");
    assert!(pulled.chart_dir.join("Chart.yaml").is_file());
    assert!(pulled.chart_dir.starts_with(pulled.dir.path()));
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r == "index.yaml")
            && requests.iter().any(|r| r == "demo-1.2.0.tgz"),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r == "demo-2.0.0.tgz"),
        "{requests:?}"
    );

    // The pulled chart renders like a Git one, values files relative to it included.
    let options = HelmSource {
        value_files: vec!["values-prod.yaml".into()],
        ..HelmSource::default()
    };
    let app = app();
    let req = HelmRequest {
        root: pulled.dir.path(),
        chart_dir: &pulled.chart_dir,
        options: Some(&options),
        app: &app,
        refs: &[],
    };
    let out = helm::render(&runner, &tool, req).await?;
    let data = config_data(&out, "guestbook");
    assert_eq!(data["chartVersion"], "1.2.0");
    assert_eq!(data["layer"], "values-prod");
    assert!(has(&out, "CustomResourceDefinition"));
    // ... and a values file may not leave the pulled chart's directory.
    let escape = HelmSource {
        value_files: vec!["../../values.yaml".into()],
        ..HelmSource::default()
    };
    let err = helm::render(
        &runner,
        &tool,
        HelmRequest {
            options: Some(&escape),
            ..req
        },
    )
    .await
    .expect_err("outside the pulled chart");
    assert!(matches!(err, RenderError::PathRefused { .. }), "{err}");

    // No version: the latest; an exact version: that one.
    let latest = helm::pull_chart(&runner, &tool, &server.url, "demo", "", &none, &pulls).await?;
    assert_eq!(latest.version, "2.0.0");
    let exact =
        helm::pull_chart(&runner, &tool, &server.url, "demo", "1.0.0", &none, &pulls).await?;
    assert_eq!(exact.version, "1.0.0");
    assert_ne!(
        exact.dir.path(),
        pulled.dir.path(),
        "each pull has its own directory"
    );

    // A chart or version the repository does not have.
    for (chart, version, expected) in [("nope", "", "nope"), ("demo", "3.*", "3.*")] {
        let err = helm::pull_chart(&runner, &tool, &server.url, chart, version, &none, &pulls)
            .await
            .expect_err(chart);
        let RenderError::ToolFailed {
            tool: t,
            command,
            stderr,
            ..
        } = &err
        else {
            panic!("{chart} {version}: {err}");
        };
        assert_eq!((t.as_str(), command.as_str()), ("helm", "pull"));
        assert!(stderr.contains(expected), "{stderr}");
    }

    // A chart name that is a path is refused before helm runs.
    let runs = runner.stats().started;
    for chart in ["../demo", "a/b", ""] {
        let err = helm::pull_chart(&runner, &tool, &server.url, chart, "", &none, &pulls)
            .await
            .expect_err(chart);
        assert!(matches!(err, RenderError::InvalidOption { .. }), "{err}");
    }
    assert_eq!(runner.stats().started, runs);
    drop(pulled);

    // Through the repo-server: an exact version is cached, a range resolves to its match.
    let mut config = capstan_repo::service::RepoServerConfig::new(tmp.path().join("server"));
    config.helm = helm_tool();
    config.kustomize = kustomize_tool();
    let server_side = capstan_repo::service::RepoServer::new(config).await?;
    let chart_request = |version: &str| {
        let mut source = capstan_model::ApplicationSource::git(&server.url, "", version);
        source.chart = "demo".into();
        capstan_repo::service::ManifestRequest {
            source,
            app: app.clone(),
            ..Default::default()
        }
    };
    let first = server_side.generate(chart_request("1.0.0")).await?;
    assert_eq!(first.manifests.revision, "1.0.0");
    assert_eq!(first.manifests.source_type, capstan_model::SourceType::Helm);
    assert!(!first.manifests.manifests.is_empty());
    let again = server_side.generate(chart_request("1.0.0")).await?;
    assert_eq!(again.cache, capstan_repo::service::CacheOutcome::Memory);
    let ranged = server_side
        .generate(chart_request(">=1.1.0 <2.0.0"))
        .await?;
    assert_eq!(ranged.manifests.revision, "1.2.0");
    let err = server_side
        .generate(chart_request("9.9.9"))
        .await
        .expect_err("missing version");
    assert!(err.message.contains("9.9.9"), "{err}");
    Ok(())
}
