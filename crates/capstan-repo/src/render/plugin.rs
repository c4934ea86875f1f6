//! Config management plugins: Argo CD's `ConfigManagementPlugin` contract, run by the
//! repo-server itself.
//!
//! Plugins are declared by the operator (never by an Application) in a YAML file of one or
//! more `ConfigManagementPlugin` documents, the format of Argo CD's `plugin.yaml`:
//!
//! ```yaml
//! apiVersion: argoproj.io/v1alpha1
//! kind: ConfigManagementPlugin
//! metadata:
//!   name: envsubst
//! spec:
//!   version: v1            # optional; the plugin is then also named "envsubst-v1"
//!   init:                  # optional, runs before generate
//!     command: [sh, -c]
//!     args: ["test -f app.tpl"]
//!   generate:              # prints YAML or JSON manifests on stdout
//!     command: [sh, -c, "envsubst < app.tpl"]
//!   discover:              # optional; without it the plugin is used only when named
//!     fileName: "*.tpl"    # a glob in the source directory, or
//!     find:
//!       glob: "**/*.tpl"   # a glob below it, or
//!       command: [sh, -c, "ls *.tpl"]   # a command whose non-empty output means "mine"
//!   parameters:
//!     static:
//!       - {name: mode, string: fast}
//! ```
//!
//! The commands run in the source directory of a checkout, through the [`ToolRunner`] (same
//! time, output and concurrency limits as Helm and Kustomize), with the build environment
//! ([`super::env`]), `ARGOCD_ENV_<name>` (and `CAPSTAN_ENV_<name>`) for each entry of the
//! Application's `plugin.env`, and the parameters: `ARGOCD_APP_PARAMETERS` holds them all as
//! JSON, and each is also `PARAM_<NAME>` (a string), `PARAM_<NAME>_<i>` (an array) or
//! `PARAM_<NAME>_<KEY>` (a map), names upper-cased with other characters turned into `_`.
//! Static parameters with a default apply unless the Application sets the same name.

use std::path::Path;

use capstan_model::{PluginParameter, PluginSource};
use globset::GlobBuilder;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

use super::env::AppContext;
use super::process::{Invocation, ToolRunner};
use super::{Format, RenderError, Rendered, push_documents};
use crate::checkout::source_dir;

/// A command and its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginCommand {
    /// The program and its first arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// More arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `spec.discover.find`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindRule {
    /// A glob below the source directory (`**` crosses directories).
    #[serde(default)]
    pub glob: String,
    /// A command whose non-empty output means the plugin applies.
    #[serde(default)]
    pub command: Vec<String>,
    /// More arguments of `command`.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `spec.discover`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoverRule {
    /// A glob of file names in the source directory.
    #[serde(default)]
    pub file_name: String,
    /// A glob or command.
    #[serde(default)]
    pub find: Option<FindRule>,
}

/// A static parameter announcement (`spec.parameters.static[]`); only the name and default
/// value matter to rendering, the rest is for UIs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticParameter {
    /// Name.
    pub name: String,
    /// Default text value.
    #[serde(default)]
    pub string: Option<String>,
    /// Default list value.
    #[serde(default)]
    pub array: Option<Vec<String>>,
    /// Default map value.
    #[serde(default)]
    pub map: Option<IndexMap<String, String>>,
}

/// `spec.parameters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginParameters {
    /// Parameters with defaults.
    #[serde(default, rename = "static")]
    pub static_parameters: Vec<StaticParameter>,
    /// A command printing more announcements (used by UIs; not run for rendering).
    #[serde(default)]
    pub dynamic: Option<PluginCommand>,
}

/// `spec` of a plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginSpecBody {
    /// Optional version; the plugin is then also named `<name>-<version>`.
    #[serde(default)]
    pub version: String,
    /// Runs before `generate`.
    #[serde(default)]
    pub init: Option<PluginCommand>,
    /// Prints the manifests.
    pub generate: PluginCommand,
    /// When the plugin applies to a source that does not name it.
    #[serde(default)]
    pub discover: Option<DiscoverRule>,
    /// Parameters.
    #[serde(default)]
    pub parameters: PluginParameters,
    /// Accepted for compatibility; files in a checkout are always written without the
    /// executable bit.
    #[serde(default)]
    pub preserve_file_mode: bool,
    /// Accepted for compatibility; Git credentials are never given to plugins.
    #[serde(default)]
    pub provide_git_creds: bool,
    /// Accepted for compatibility (Argo CD's lock between runs); plugins here always run in a
    /// fresh checkout of their own.
    #[serde(default)]
    pub lock_repo: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
struct Metadata {
    name: String,
}

/// One `ConfigManagementPlugin`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugin {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    metadata: Metadata,
    /// The plugin's behaviour.
    pub spec: PluginSpecBody,
}

impl Plugin {
    /// The plugin's name (`metadata.name`).
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// Whether `wanted` (an Application's `plugin.name`) names this plugin: its name, or
    /// `<name>-<version>` when it has a version.
    pub fn is_named(&self, wanted: &str) -> bool {
        wanted == self.metadata.name
            || (!self.spec.version.is_empty()
                && wanted == format!("{}-{}", self.metadata.name, self.spec.version))
    }
}

/// Parses a plugin configuration file: one or more `ConfigManagementPlugin` documents.
pub fn parse_plugins(yaml: &str) -> Result<Vec<Plugin>, String> {
    let docs: Vec<Plugin> = serde_saphyr::from_multiple(yaml)
        .map_err(|e| format!("invalid plugin configuration: {e}"))?;
    let mut seen = std::collections::HashSet::new();
    for (i, p) in docs.iter().enumerate() {
        let at = format!("plugin {} ({:?})", i + 1, p.metadata.name);
        if p.kind != "ConfigManagementPlugin" {
            return Err(format!(
                "{at}: kind must be ConfigManagementPlugin, found {:?}",
                p.kind
            ));
        }
        if !p.api_version.is_empty() && !p.api_version.ends_with("/v1alpha1") {
            return Err(format!(
                "{at}: apiVersion {:?} is not supported; use argoproj.io/v1alpha1",
                p.api_version
            ));
        }
        if p.metadata.name.is_empty() {
            return Err(format!("{at}: metadata.name is required"));
        }
        if p.spec.generate.command.is_empty() {
            return Err(format!("{at}: spec.generate.command is required"));
        }
        if let Some(init) = &p.spec.init
            && init.command.is_empty()
        {
            return Err(format!("{at}: spec.init.command is empty"));
        }
        if !seen.insert(p.metadata.name.clone()) {
            return Err(format!("{at}: another plugin already has this name"));
        }
    }
    Ok(docs)
}

/// The paths of the files below a source directory, relative to it, `/`-separated.
pub fn relative_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push((e.path(), rel)),
                Ok(t) if t.is_file() => out.push(rel),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

fn glob_matches(pattern: &str, files: &[String]) -> bool {
    let pattern = pattern.trim_start_matches("./");
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .is_ok_and(|m| files.iter().any(|f| m.is_match(f)))
}

/// The first plugin (in configuration order) whose discovery rules match the source
/// directory `dir` of a checkout. Plugins without rules are never discovered.
pub async fn discover<'a>(
    runner: &ToolRunner,
    plugins: &'a [Plugin],
    dir: &Path,
    app: &AppContext,
) -> Result<Option<&'a Plugin>, RenderError> {
    if !plugins.iter().any(|p| p.spec.discover.is_some()) {
        return Ok(None);
    }
    let files = relative_files(dir);
    let top: Vec<String> = files.iter().filter(|f| !f.contains('/')).cloned().collect();
    for plugin in plugins {
        let Some(rule) = &plugin.spec.discover else {
            continue;
        };
        if !rule.file_name.is_empty() {
            if glob_matches(&rule.file_name, &top) {
                return Ok(Some(plugin));
            }
            continue;
        }
        let Some(find) = &rule.find else {
            continue;
        };
        if !find.glob.is_empty() {
            if glob_matches(&find.glob, &files) {
                return Ok(Some(plugin));
            }
            continue;
        }
        if let Some((program, first)) = find.command.split_first() {
            let args = first.iter().chain(&find.args).map(Into::into).collect();
            let out = runner
                .run(Invocation {
                    tool: plugin.name(),
                    program: Path::new(program),
                    command: "discover",
                    args,
                    cwd: dir,
                    env: app.build_env(),
                })
                .await;
            match out {
                Ok(out) if !String::from_utf8_lossy(&out).trim().is_empty() => {
                    return Ok(Some(plugin));
                }
                Ok(_) => {}
                // A failing discovery command means "not mine", as in Argo CD.
                Err(e) => {
                    tracing::debug!(plugin = plugin.name(), error = %e, "discovery command failed")
                }
            }
        }
    }
    Ok(None)
}

/// `PARAM_` name of a parameter: upper case, other characters as `_`.
fn param_env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The parameters in effect: the Application's, then static defaults it did not set.
fn effective_parameters(plugin: &Plugin, source: Option<&PluginSource>) -> Vec<PluginParameter> {
    let mut params: Vec<PluginParameter> = source.map(|s| s.parameters.clone()).unwrap_or_default();
    for s in &plugin.spec.parameters.static_parameters {
        if params.iter().any(|p| p.name == s.name) {
            continue;
        }
        if s.string.is_some() || s.array.is_some() || s.map.is_some() {
            params.push(PluginParameter {
                name: s.name.clone(),
                string: s.string.clone(),
                array: s.array.clone(),
                map: s.map.clone(),
            });
        }
    }
    params
}

/// The environment of a plugin's commands; see the [module docs](self).
pub fn plugin_env(
    plugin: &Plugin,
    source: Option<&PluginSource>,
    app: &AppContext,
) -> Vec<(String, String)> {
    let mut env = app.build_env();
    for e in source.map(|s| s.env.as_slice()).unwrap_or_default() {
        env.push((format!("ARGOCD_ENV_{}", e.name), e.value.clone()));
        env.push((format!("CAPSTAN_ENV_{}", e.name), e.value.clone()));
    }
    let params = effective_parameters(plugin, source);
    let json: Vec<Value> = params
        .iter()
        .map(|p| {
            let mut o = serde_json::Map::new();
            o.insert("name".into(), Value::String(p.name.clone()));
            if let Some(s) = &p.string {
                o.insert("string".into(), Value::String(s.clone()));
            }
            if let Some(a) = &p.array {
                o.insert("array".into(), serde_json::json!(a));
            }
            if let Some(m) = &p.map {
                o.insert("map".into(), serde_json::json!(m));
            }
            Value::Object(o)
        })
        .collect();
    let json = Value::Array(json).to_string();
    env.push(("ARGOCD_APP_PARAMETERS".into(), json.clone()));
    env.push(("CAPSTAN_APP_PARAMETERS".into(), json));
    for p in &params {
        let base = format!("PARAM_{}", param_env_name(&p.name));
        if let Some(s) = &p.string {
            env.push((base.clone(), s.clone()));
        }
        if let Some(a) = &p.array {
            env.extend(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{base}_{i}"), v.clone())),
            );
        }
        if let Some(m) = &p.map {
            env.extend(
                m.iter()
                    .map(|(k, v)| (format!("{base}_{}", param_env_name(k)), v.clone())),
            );
        }
    }
    env
}

async fn run_command(
    runner: &ToolRunner,
    plugin: &Plugin,
    command: &str,
    c: &PluginCommand,
    dir: &Path,
    env: &[(String, String)],
) -> Result<Vec<u8>, RenderError> {
    let (program, first) = c
        .command
        .split_first()
        .map_or(("", &[][..]), |(p, f)| (p.as_str(), f));
    runner
        .run(Invocation {
            tool: plugin.name(),
            program: Path::new(program),
            command,
            args: first.iter().chain(&c.args).map(Into::into).collect(),
            cwd: dir,
            env: env.to_vec(),
        })
        .await
}

/// One plugin render.
#[derive(Clone, Copy, Debug)]
pub struct PluginRequest<'a> {
    /// The checkout's root.
    pub root: &'a Path,
    /// The source path inside it.
    pub path: &'a str,
    /// The Application's `plugin` options.
    pub options: Option<&'a PluginSource>,
    /// The Application the render is for.
    pub app: &'a AppContext,
}

/// Runs `init` (if any) and `generate` of `plugin` in the source directory and parses the
/// manifests it prints.
pub async fn render(
    runner: &ToolRunner,
    plugin: &Plugin,
    req: PluginRequest<'_>,
) -> Result<Rendered, RenderError> {
    let dir = source_dir(req.root, req.path)?;
    let env = plugin_env(plugin, req.options, req.app);
    if let Some(init) = &plugin.spec.init {
        run_command(runner, plugin, "init", init, &dir, &env).await?;
    }
    let out = run_command(
        runner,
        plugin,
        "generate",
        &plugin.spec.generate,
        &dir,
        &env,
    )
    .await?;
    let text = String::from_utf8(out).map_err(|_| RenderError::InvalidOption {
        field: format!("output of plugin {}", plugin.name()),
        message: "is not UTF-8 text".to_owned(),
    })?;
    let mut rendered = Rendered::default();
    push_documents(
        &format!("output of plugin {}", plugin.name()),
        &text,
        Format::Yaml,
        &mut rendered,
    )?;
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLUGINS: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: tpl
spec:
  version: v2
  generate:
    command: [sh, -c, "cat *.tpl"]
  discover:
    fileName: "*.tpl"
  parameters:
    static:
      - name: mode
        string: fast
      - name: title-only
---
kind: ConfigManagementPlugin
metadata:
  name: plain
spec:
  generate:
    command: [cat, x.yaml]
"#;

    #[test]
    fn parses_and_names() {
        let plugins = parse_plugins(PLUGINS).expect("valid");
        assert_eq!(plugins.len(), 2);
        assert!(plugins[0].is_named("tpl") && plugins[0].is_named("tpl-v2"));
        assert!(!plugins[1].is_named("plain-v2"));
        let err = parse_plugins(
            "kind: ConfigManagementPlugin\nmetadata: {name: x}\nspec: {generate: {command: []}}\n",
        )
        .expect_err("no command");
        assert!(err.contains("spec.generate.command"), "{err}");
        let err = parse_plugins(&format!(
            "{PLUGINS}---\n{}",
            PLUGINS.split("---").nth(1).unwrap_or_default()
        ))
        .expect_err("duplicate");
        assert!(err.contains("already has this name"), "{err}");
        assert!(
            parse_plugins("kind: Secret\nmetadata: {name: x}\nspec: {generate: {command: [a]}}\n")
                .is_err()
        );
    }

    #[test]
    fn environment_carries_env_and_parameters() {
        let plugins = parse_plugins(PLUGINS).expect("valid");
        let source = PluginSource {
            name: "tpl".into(),
            env: vec![capstan_model::EnvEntry {
                name: "REGION".into(),
                value: "eu".into(),
            }],
            parameters: vec![
                PluginParameter {
                    name: "replica-count".into(),
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
                    map: Some(IndexMap::from([(
                        "team.name".to_owned(),
                        "core".to_owned(),
                    )])),
                    ..Default::default()
                },
            ],
        };
        let env = plugin_env(
            &plugins[0],
            Some(&source),
            &AppContext {
                name: "web".into(),
                ..Default::default()
            },
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ARGOCD_ENV_REGION"), Some("eu"));
        assert_eq!(get("CAPSTAN_ENV_REGION"), Some("eu"));
        assert_eq!(get("ARGOCD_APP_NAME"), Some("web"));
        assert_eq!(get("PARAM_REPLICA_COUNT"), Some("3"));
        assert_eq!(get("PARAM_ZONES_1"), Some("b"));
        assert_eq!(get("PARAM_LABELS_TEAM_NAME"), Some("core"));
        assert_eq!(get("PARAM_MODE"), Some("fast"), "static default applies");
        let all: Value =
            serde_json::from_str(get("ARGOCD_APP_PARAMETERS").expect("set")).expect("json");
        assert_eq!(
            all[1],
            serde_json::json!({"name": "zones", "array": ["a", "b"]})
        );
        assert_eq!(all.as_array().map(Vec::len), Some(4));
    }

    #[test]
    fn globs() {
        let files = vec!["a.tpl".to_owned(), "sub/b.env".to_owned()];
        assert!(glob_matches("*.tpl", &files));
        assert!(glob_matches("./*.tpl", &files));
        assert!(glob_matches("**/*.env", &files));
        assert!(
            !glob_matches("*.env", &files),
            "* does not cross directories"
        );
    }
}
