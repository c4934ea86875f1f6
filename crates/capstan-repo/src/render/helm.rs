//! Helm sources: the real `helm template`, with Argo CD's `helm` options.
//!
//! The chart is a directory of a Git checkout, or a chart pulled from a Helm HTTP repository
//! with [`pull_chart`] (`helm pull`, which also resolves a semver range such as `1.2.*`).
//! `helm template RELEASE CHART` runs with, in Argo CD's order and meaning:
//! - `--namespace`: `helm.namespace`, else the destination namespace;
//! - `--kube-version` / `--api-versions`: `helm.kubeVersion` / `helm.apiVersions`, else the
//!   destination cluster's;
//! - `--values` for each of `helm.valueFiles` (relative to the chart; `$ref/path` names a file of
//!   another source of a multi-source Application), then one for `valuesObject` (or `values`,
//!   when there is no `valuesObject`); a missing values file is an error unless
//!   `ignoreMissingValueFiles`; a path that leaves the repository or is a URL is refused;
//! - `--set` / `--set-string` (`forceString`) for `helm.parameters`, with commas escaped as
//!   Argo CD does (a value in `{…}` stays a list), and `--set-file` for `fileParameters`;
//! - `--include-crds` unless `skipCrds`; `--skip-tests`; `--skip-schema-validation`.
//!
//! Parameter values and values file paths may use the build environment
//! (`${ARGOCD_APP_NAME}`, see [`super::env`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use capstan_model::HelmSource;

use super::env::{AppContext, envsubst};
use super::process::{Invocation, ToolRunner};
use super::{Format, RenderError, Rendered, parse_yaml_document, push_documents};
use crate::checkout::join_inside;

/// How to run Helm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelmTool {
    /// The `helm` binary.
    pub program: PathBuf,
}

/// Files another source of the same Application provides, for `$name/path` values files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefSource {
    /// The source's `ref` name (without the `$`).
    pub name: String,
    /// The root of its checkout.
    pub root: PathBuf,
}

/// One Helm render.
#[derive(Clone, Copy, Debug)]
pub struct HelmRequest<'a> {
    /// The root that relative paths must stay inside: the checkout of a Git source, or the
    /// pulled chart's directory.
    pub root: &'a Path,
    /// The chart directory.
    pub chart_dir: &'a Path,
    /// The Application's `helm` options.
    pub options: Option<&'a HelmSource>,
    /// The Application the render is for.
    pub app: &'a AppContext,
    /// Other sources' files, for `$ref` values files.
    pub refs: &'a [RefSource],
}

/// Runs `helm template`; see the [module docs](self).
pub async fn render(
    runner: &ToolRunner,
    tool: &HelmTool,
    req: HelmRequest<'_>,
) -> Result<Rendered, RenderError> {
    let defaults = HelmSource::default();
    let o = req.options.unwrap_or(&defaults);
    let env = req.app.build_env();
    let field = |name: &str| format!("spec.source.helm.{name}");

    let release = if o.release_name.is_empty() {
        &req.app.name
    } else {
        &o.release_name
    };
    if release.is_empty() {
        return Err(RenderError::InvalidOption {
            field: field("releaseName"),
            message: "is empty and the Application has no name to default to".to_owned(),
        });
    }
    let mut args: Vec<OsString> = vec!["template".into(), release.into(), req.chart_dir.into()];
    let namespace = if o.namespace.is_empty() {
        &req.app.namespace
    } else {
        &o.namespace
    };
    if !namespace.is_empty() {
        args.extend(["--namespace".into(), namespace.into()]);
    }
    let kube_version = if o.kube_version.is_empty() {
        &req.app.kube_version
    } else {
        &o.kube_version
    };
    if !kube_version.is_empty() {
        args.extend(["--kube-version".into(), kube_version.into()]);
    }
    let api_versions = if o.api_versions.is_empty() {
        &req.app.api_versions
    } else {
        &o.api_versions
    };
    for api in api_versions {
        args.extend(["--api-versions".into(), api.into()]);
    }

    for (i, file) in o.value_files.iter().enumerate() {
        let file = substitute_value_file(file, &env, req.refs);
        let path = resolve_file(&req, &file, &field(&format!("valueFiles[{i}]")))?;
        if !path.is_file() {
            if o.ignore_missing_value_files {
                tracing::debug!(file, "values file missing; ignored as configured");
                continue;
            }
            return Err(RenderError::InvalidOption {
                field: field(&format!("valueFiles[{i}]")),
                message: format!(
                    "values file {file:?} does not exist; fix the path or set ignoreMissingValueFiles"
                ),
            });
        }
        args.extend(["--values".into(), path.into()]);
    }

    // Inline values go through a file (not the command line), removed when this returns.
    let inline = match &o.values_object {
        Some(object) if !object.is_null() => Some(
            serde_json::to_string(object)
                .map_err(|e| RenderError::io("encoding valuesObject")(std::io::Error::other(e)))?,
        ),
        _ if !o.values.trim().is_empty() => Some(o.values.clone()),
        _ => None,
    };
    let _values_file = match inline {
        Some(text) => {
            std::fs::create_dir_all(runner.home())
                .map_err(RenderError::io("creating the tool home directory"))?;
            let file = tempfile::Builder::new()
                .prefix("values-")
                .suffix(".yaml")
                .tempfile_in(runner.home())
                .map_err(RenderError::io("creating a values file"))?;
            std::fs::write(file.path(), text).map_err(RenderError::io("writing a values file"))?;
            args.extend(["--values".into(), file.path().into()]);
            Some(file)
        }
        None => None,
    };

    for (i, p) in o.parameters.iter().enumerate() {
        if p.name.is_empty() {
            return Err(RenderError::InvalidOption {
                field: field(&format!("parameters[{i}].name")),
                message: "is empty".to_owned(),
            });
        }
        let flag = if p.force_string {
            "--set-string"
        } else {
            "--set"
        };
        let value = escape_commas(&envsubst(&p.value, &env));
        args.extend([flag.into(), format!("{}={value}", p.name).into()]);
    }
    for (i, p) in o.file_parameters.iter().enumerate() {
        let path = resolve_file(&req, &p.path, &field(&format!("fileParameters[{i}].path")))?;
        let mut arg = OsString::from(format!("{}=", p.name));
        arg.push(path);
        args.extend(["--set-file".into(), arg]);
    }
    if !o.skip_crds {
        args.push("--include-crds".into());
    }
    if o.skip_tests {
        args.push("--skip-tests".into());
    }
    if o.skip_schema_validation {
        args.push("--skip-schema-validation".into());
    }

    let output = runner
        .run(Invocation {
            tool: "helm",
            program: &tool.program,
            command: "template",
            args,
            cwd: req.chart_dir,
            env,
        })
        .await?;
    let text = String::from_utf8(output).map_err(|_| RenderError::InvalidOption {
        field: "helm template output".to_owned(),
        message: "is not UTF-8 text".to_owned(),
    })?;
    let mut out = Rendered::default();
    push_documents("helm template output", &text, Format::Yaml, &mut out)?;
    Ok(out)
}

/// Substitutes the build environment into a values file path. A leading `$name/` that names
/// another source (or is no variable of the build environment, so a mistyped ref is reported
/// as one) is kept: like Argo CD, the ref is resolved first and only the rest is substituted.
fn substitute_value_file(file: &str, env: &[(String, String)], refs: &[RefSource]) -> String {
    if let Some((name, rest)) = file.strip_prefix('$').and_then(|r| r.split_once('/'))
        && (refs.iter().any(|r| r.name == name)
            || (!name.starts_with('{') && !env.iter().any(|(k, _)| k == name)))
    {
        return format!("${name}/{}", envsubst(rest, env));
    }
    envsubst(file, env)
}

/// Resolves a file named by an option: `$ref/path` inside that source's checkout, anything
/// else relative to the chart and inside the request's root.
fn resolve_file(req: &HelmRequest<'_>, file: &str, field: &str) -> Result<PathBuf, RenderError> {
    let refuse = |reason| RenderError::PathRefused {
        field: field.to_owned(),
        path: file.to_owned(),
        reason,
    };
    if file.contains("://") {
        return Err(refuse(
            "remote values files are not fetched by the repo-server",
        ));
    }
    if let Some(rest) = file.strip_prefix('$') {
        let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
        let source = req
            .refs
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| RenderError::InvalidOption {
                field: field.to_owned(),
                message: format!(
                    "{file:?} refers to source ${name}, but no source of this Application has ref: {name}"
                ),
            })?;
        return join_inside(&source.root, &source.root, path)
            .ok_or_else(|| refuse("it leaves the referenced source's repository"));
    }
    join_inside(req.root, req.chart_dir, file).ok_or_else(|| refuse("it leaves the repository"))
}

/// Escapes `,` (Helm's `--set` separator) unless already escaped; a `{a,b}` list is left as is.
fn escape_commas(value: &str) -> String {
    if value.starts_with('{') && value.ends_with('}') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut prev = None;
    for c in value.chars() {
        if c == ',' && prev != Some('\\') {
            out.push('\\');
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

/// A chart pulled from a Helm repository.
#[derive(Debug)]
pub struct PulledChart {
    /// The directory the chart was unpacked into (removed on drop).
    pub dir: tempfile::TempDir,
    /// The chart directory inside it.
    pub chart_dir: PathBuf,
    /// The chart's version (the one chosen when a range was asked for).
    pub version: String,
}

/// Credentials for a Helm repository.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HelmCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
    /// Send the credentials to every host the repository redirects to (`passCredentials`).
    pub pass_credentials: bool,
}

impl std::fmt::Debug for HelmCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmCredentials")
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("pass_credentials", &self.pass_credentials)
            .finish()
    }
}

/// Pulls `chart` at `version` (an exact version or a semver range; empty means the latest)
/// from the Helm HTTP repository at `repo_url` into a new directory under `parent`.
pub async fn pull_chart(
    runner: &ToolRunner,
    tool: &HelmTool,
    repo_url: &str,
    chart: &str,
    version: &str,
    credentials: &HelmCredentials,
    parent: &Path,
) -> Result<PulledChart, RenderError> {
    if chart.is_empty() || chart.contains(['/', '\\', '\0']) || chart.starts_with('.') {
        return Err(RenderError::InvalidOption {
            field: "spec.source.chart".to_owned(),
            message: format!("{chart:?} is not a chart name"),
        });
    }
    std::fs::create_dir_all(parent)
        .map_err(RenderError::io(format!("creating {}", parent.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("chart-")
        .tempdir_in(parent)
        .map_err(RenderError::io("creating a chart directory"))?;
    let mut args: Vec<OsString> = vec![
        "pull".into(),
        chart.into(),
        "--repo".into(),
        repo_url.into(),
        "--untar".into(),
        "--untardir".into(),
        dir.path().into(),
    ];
    if !version.is_empty() && version != "*" {
        args.extend(["--version".into(), version.into()]);
    }
    if !credentials.username.is_empty() || !credentials.password.is_empty() {
        args.extend([
            "--username".into(),
            credentials.username.clone().into(),
            "--password".into(),
            credentials.password.clone().into(),
        ]);
    }
    if credentials.pass_credentials {
        args.push("--pass-credentials".into());
    }
    runner
        .run(Invocation {
            tool: "helm",
            program: &tool.program,
            command: "pull",
            args,
            cwd: dir.path(),
            env: Vec::new(),
        })
        .await?;
    let chart_dir = dir.path().join(chart);
    let meta = std::fs::read_to_string(chart_dir.join("Chart.yaml")).map_err(RenderError::io(
        format!("reading Chart.yaml of the pulled chart {chart}"),
    ))?;
    let meta = parse_yaml_document(&format!("{chart}/Chart.yaml"), &meta)?;
    let version = meta
        .get("version")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(PulledChart {
        dir,
        chart_dir,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_are_escaped_like_argo_cd() {
        assert_eq!(escape_commas("a,b"), "a\\,b");
        assert_eq!(escape_commas("a\\,b"), "a\\,b");
        assert_eq!(escape_commas("{a,b}"), "{a,b}");
        assert_eq!(escape_commas("plain"), "plain");
    }

    #[test]
    fn value_file_refs_are_not_substituted_away() {
        let env = AppContext {
            name: "web".into(),
            ..AppContext::default()
        }
        .build_env();
        let refs = [RefSource {
            name: "values".into(),
            root: "/ref".into(),
        }];
        let f = |p: &str| substitute_value_file(p, &env, &refs);
        assert_eq!(
            f("$values/envs/${ARGOCD_APP_NAME}.yaml"),
            "$values/envs/web.yaml"
        );
        assert_eq!(
            f("$typo/envs/x.yaml"),
            "$typo/envs/x.yaml",
            "reported as a ref"
        );
        assert_eq!(f("$ARGOCD_APP_NAME/values.yaml"), "web/values.yaml");
        assert_eq!(f("${ARGOCD_APP_NAME}/values.yaml"), "web/values.yaml");
        assert_eq!(f("values-$ARGOCD_APP_NAME.yaml"), "values-web.yaml");
    }

    #[test]
    fn values_files_stay_inside() {
        let app = AppContext::default();
        let refs = [RefSource {
            name: "values".into(),
            root: "/ref".into(),
        }];
        let req = HelmRequest {
            root: Path::new("/co"),
            chart_dir: Path::new("/co/charts/web"),
            options: None,
            app: &app,
            refs: &refs,
        };
        let f = |p: &str| resolve_file(&req, p, "f");
        assert_eq!(
            f("values-prod.yaml").expect("ok"),
            Path::new("/co/charts/web/values-prod.yaml")
        );
        assert_eq!(
            f("../../envs/prod.yaml").expect("ok"),
            Path::new("/co/envs/prod.yaml")
        );
        assert_eq!(
            f("$values/envs/prod.yaml").expect("ok"),
            Path::new("/ref/envs/prod.yaml")
        );
        for bad in [
            "../../../etc/passwd",
            "/etc/passwd",
            "$values/../x",
            "https://evil/v.yaml",
        ] {
            assert!(
                matches!(f(bad), Err(RenderError::PathRefused { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            f("$other/x.yaml"),
            Err(RenderError::InvalidOption { .. })
        ));
    }
}
