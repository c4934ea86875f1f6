//! `app diff --local DIR`: the manifests of a local checkout, rendered on this machine the
//! way the repo-server would render the directory:
//!
//! - a `kustomization.yaml` (or `.yml`, `Kustomization`): `kustomize build DIR`;
//! - a `Chart.yaml`: `helm template RELEASE DIR` with the Application's Helm settings: its
//!   release name (else the Application's name), destination namespace, value files (from
//!   DIR), inline values and parameters;
//! - otherwise the directory's `*.yaml`, `*.yml` and `*.json` files (not its subdirectories).
//!
//! Not applied to a local rendering yet: the Application's Kustomize overrides (images, name
//! prefix, common labels) and its directory options (`recurse`, `include`, `exclude`).
//!
//! The `kustomize` and `helm` binaries come from the PATH (the CLI links no renderer). Files
//! must stay inside DIR: a symlink leading out of it is refused, as the repo-server refuses
//! one leading out of a repository. Sizes are bounded.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{CliError, CliResult};

/// The most a file, or all of them together, may hold.
const MAX_BYTES: u64 = 32 << 20;

/// What of the Application a local rendering uses.
#[derive(Debug, Default)]
pub struct AppSettings {
    /// The Application's name (the Helm release name unless the source names one).
    pub name: String,
    /// The destination namespace.
    pub namespace: String,
    /// The source's `helm` settings, as the API sends them.
    pub helm: Value,
}

impl AppSettings {
    /// From an Application as the API answers it (its single source, or the first).
    pub fn of(app: &Value) -> AppSettings {
        let source = if app["spec"]["source"].is_object() {
            &app["spec"]["source"]
        } else {
            &app["spec"]["sources"][0]
        };
        AppSettings {
            name: app["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            namespace: app["spec"]["destination"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            helm: source["helm"].clone(),
        }
    }

    /// `helm template`'s arguments for the chart in `root`.
    fn helm_args(&self, root: &Path) -> CliResult<Vec<std::ffi::OsString>> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let release = Some(text(&self.helm["releaseName"]))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| self.name.clone());
        let mut args: Vec<std::ffi::OsString> = vec![
            "template".into(),
            release.into(),
            root.as_os_str().to_owned(),
        ];
        if !self.namespace.is_empty() {
            args.extend(["--namespace".into(), self.namespace.clone().into()]);
        }
        for file in self.helm["valueFiles"].as_array().into_iter().flatten() {
            let path = root.join(text(file));
            // Value files must stay inside DIR, as the repo-server keeps them in the repository.
            let real = path
                .canonicalize()
                .map_err(|e| CliError::usage(format!("the value file {}: {e}", path.display())))?;
            if !real.starts_with(root) {
                return Err(CliError::usage(format!(
                    "the value file {} leads out of {}: refused",
                    text(file),
                    root.display()
                )));
            }
            args.extend(["--values".into(), real.into_os_string()]);
        }
        let inline = text(&self.helm["values"]);
        if !inline.is_empty() {
            // helm reads `-` as stdin; a file keeps it simple.
            args.extend(["--values".into(), "-".into()]);
        }
        for parameter in self.helm["parameters"].as_array().into_iter().flatten() {
            let flag = if parameter["forceString"] == Value::Bool(true) {
                "--set-string"
            } else {
                "--set"
            };
            args.extend([
                flag.into(),
                format!("{}={}", text(&parameter["name"]), text(&parameter["value"])).into(),
            ]);
        }
        Ok(args)
    }
}

/// The manifests of `dir` for the Application `app` (see the module docs).
pub async fn render(dir: &Path, app: &AppSettings) -> CliResult<Vec<Value>> {
    let root = dir
        .canonicalize()
        .map_err(|e| CliError::usage(format!("--local {}: {e}", dir.display())))?;
    if !root.is_dir() {
        return Err(CliError::usage(format!(
            "--local {}: not a directory",
            dir.display()
        )));
    }
    let text = if ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|f| root.join(f).is_file())
    {
        run_tool("kustomize", &["build".as_ref(), root.as_os_str()]).await?
    } else if root.join("Chart.yaml").is_file() {
        let args = app.helm_args(&root)?;
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let inline = app.helm["values"].as_str().unwrap_or_default();
        run_tool_with_input("helm", &args, inline).await?
    } else {
        return directory(&root);
    };
    parse("the rendered output", &text)
}

/// The YAML and JSON files directly in `root`, in name order.
fn directory(root: &Path) -> CliResult<Vec<Value>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| CliError::usage(format!("--local {}: {e}", root.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    let mut total = 0;
    let mut manifests = Vec::new();
    for file in files {
        let label = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let real = match file.canonicalize() {
            Ok(real) => real,
            // A dangling symlink (an editor's lock file) is not a manifest.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CliError::usage(format!("{label}: {e}"))),
        };
        if !real.starts_with(root) {
            return Err(CliError::usage(format!(
                "{label} is a symlink out of {}: refused",
                root.display()
            )));
        }
        if !real.is_file() {
            continue;
        }
        let size = std::fs::metadata(&real)
            .map_err(|e| CliError::usage(format!("{label}: {e}")))?
            .len();
        total += size;
        if size > MAX_BYTES || total > MAX_BYTES {
            return Err(CliError::usage(format!(
                "{label}: the files add up to more than {} MiB",
                MAX_BYTES >> 20
            )));
        }
        let text =
            std::fs::read_to_string(&real).map_err(|e| CliError::usage(format!("{label}: {e}")))?;
        manifests.extend(parse(&label, &text)?);
    }
    Ok(manifests)
}

/// The Kubernetes objects of a YAML stream (empty documents and `List`s handled).
fn parse(label: &str, text: &str) -> CliResult<Vec<Value>> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, serde_saphyr::Options::default()).map_err(
            |e| {
                CliError::usage(format!(
                    "{label}: not YAML: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ))
            },
        )?;
    let mut objects = Vec::new();
    for document in documents {
        match document {
            Value::Null => {}
            Value::Object(ref o)
                if o.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && o.get("items").is_some() =>
            {
                objects.extend(o["items"].as_array().cloned().unwrap_or_default());
            }
            Value::Object(_) => objects.push(document),
            other => {
                return Err(CliError::usage(format!(
                    "{label}: a document is not an object but {other}"
                )));
            }
        }
    }
    Ok(objects)
}

/// Runs `program` with `args`; its stdout. Failures carry its stderr.
async fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> CliResult<String> {
    run_tool_with_input(program, args, "").await
}

/// [`run_tool`] with `input` on stdin.
async fn run_tool_with_input(
    program: &str,
    args: &[&std::ffi::OsStr],
    input: &str,
) -> CliResult<String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            CliError::usage(format!("cannot run {program}: {e}")).hint(format!(
                "install {program} and put it on the PATH to diff this directory"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that does not read its input closes the pipe: not an error.
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| CliError::other(format!("running {program} failed: {e}")))?;
    if !output.status.success() {
        return Err(CliError::usage(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    if output.stdout.len() as u64 > MAX_BYTES {
        return Err(CliError::usage(format!(
            "{program} rendered more than 32 MiB"
        )));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| CliError::usage(format!("{program} wrote non-UTF-8 output")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_reads_its_yaml_and_refuses_symlinks_out() -> CliResult<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: s}}\n",
        )?;
        std::fs::write(dir.path().join("notes.txt"), "not a manifest")?;
        std::fs::create_dir(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("sub/b.yaml"), "kind: Secret\n")?;
        let manifests = render(dir.path(), &AppSettings::default()).await?;
        let kinds: Vec<&str> = manifests
            .iter()
            .filter_map(|m| m["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["ConfigMap", "Service"]);

        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret.yaml"), "kind: Secret\n")?;
        std::os::unix::fs::symlink(
            outside.path().join("secret.yaml"),
            dir.path().join("z.yaml"),
        )?;
        let error = render(dir.path(), &AppSettings::default())
            .await
            .expect_err("symlink out");
        assert!(error.message.contains("symlink out"), "{error}");
        Ok(())
    }

    #[test]
    fn helm_takes_the_applications_release_namespace_values_and_parameters() -> CliResult<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().canonicalize()?;
        std::fs::write(root.join("values-prod.yaml"), "replicas: 3\n")?;
        let app = AppSettings::of(&serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {
                "destination": {"namespace": "prod"},
                "source": {"helm": {
                    "valueFiles": ["values-prod.yaml"],
                    "parameters": [{"name": "image.tag", "value": "1.2"}, {"name": "port", "value": "80", "forceString": true}],
                }},
            },
        }));
        let args: Vec<String> = app
            .helm_args(&root)?
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let values = root.join("values-prod.yaml").display().to_string();
        assert_eq!(
            args,
            [
                "template",
                "web",
                &root.display().to_string(),
                "--namespace",
                "prod",
                "--values",
                &values,
                "--set",
                "image.tag=1.2",
                "--set-string",
                "port=80",
            ]
        );
        let outside = AppSettings::of(&serde_json::json!({
            "spec": {"source": {"helm": {"valueFiles": ["../../etc/passwd"]}}},
        }));
        let error = outside.helm_args(&root).expect_err("out of DIR");
        assert!(
            error.message.contains("refused") || error.message.contains("value file"),
            "{error}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn malformed_yaml_names_the_file() -> CliResult<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("bad.yaml"), "kind: [unclosed\n")?;
        let error = render(dir.path(), &AppSettings::default())
            .await
            .expect_err("bad yaml");
        assert!(error.message.starts_with("bad.yaml: not YAML"), "{error}");
        Ok(())
    }
}
