//! Kustomize sources: Argo CD's `kustomize` options applied to the kustomization, then the
//! real `kustomize build`.
//!
//! Argo CD applies its options by running `kustomize edit …` commands before the build. We
//! make the same edits to the kustomization file of the (throw-away) checkout in process, with
//! `kustomize edit`'s semantics, which saves a process start per option:
//! - `namePrefix`, `nameSuffix`, `namespace` replace the field;
//! - `images` (`[old=]new[:tag][@digest]`, `*` keeps a part) replace the entries of the same
//!   name and are sorted by name, like `kustomize edit set image`;
//! - `replicas` replace the entries of the same name, sorted by name;
//! - `commonLabels` / `commonAnnotations` are added; an existing key is an error unless
//!   `forceCommonLabels` / `forceCommonAnnotations`; with `labelWithoutSelector` the labels go
//!   to a `labels` entry without selectors (and into templates with `labelIncludeTemplates`);
//!   `commonAnnotationsEnvsubst` substitutes the build environment into annotation values;
//! - `components` are appended unless present; a missing one is an error unless
//!   `ignoreMissingComponents`;
//! - `patches` are appended to the kustomization's `patches`.
//!
//! Before the build, every kustomization reachable from the source (through `resources`,
//! `bases`, `components`) is checked: a local path that leaves the repository is refused.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use capstan_model::KustomizeSource;
use serde_json::{Map, Value};

use super::env::{AppContext, envsubst};
use super::process::{Invocation, ToolRunner};
use super::{Format, RenderError, Rendered, parse_yaml_document, push_documents};
use crate::checkout::{join_inside, source_dir};

/// The file names kustomize accepts for a kustomization, in its order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How to run kustomize.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KustomizeTool {
    /// The `kustomize` binary.
    pub program: PathBuf,
    /// The `helm` binary, passed as `--helm-command` when the build options enable Helm.
    pub helm: Option<PathBuf>,
    /// Extra `kustomize build` options for every build (Argo CD's `kustomize.buildOptions`),
    /// e.g. `--enable-helm`; set by the operator, never by an Application.
    pub build_options: Vec<String>,
}

/// One Kustomize render.
#[derive(Clone, Copy, Debug)]
pub struct KustomizeRequest<'a> {
    /// The checkout's root.
    pub root: &'a Path,
    /// The source path inside it.
    pub path: &'a str,
    /// The Application's `kustomize` options.
    pub options: Option<&'a KustomizeSource>,
    /// The Application the render is for.
    pub app: &'a AppContext,
}

/// The kustomization file in `dir`, if any.
pub fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// Applies the options, checks paths and runs `kustomize build`; see the [module docs](self).
pub async fn render(
    runner: &ToolRunner,
    tool: &KustomizeTool,
    req: KustomizeRequest<'_>,
) -> Result<Rendered, RenderError> {
    let dir = source_dir(req.root, req.path)?;
    let env = req.app.build_env();
    {
        let (root, dir, options, env) = (
            req.root.to_path_buf(),
            dir.clone(),
            req.options.cloned(),
            env.clone(),
        );
        tokio::task::spawn_blocking(move || prepare(&root, &dir, options.as_ref(), &env))
            .await
            .map_err(|e| {
                RenderError::io("preparing the kustomization")(std::io::Error::other(e))
            })??;
    }

    let mut args: Vec<OsString> = vec!["build".into(), dir.clone().into()];
    if let Some(opts) = req.options {
        if !opts.kube_version.is_empty() {
            args.extend([
                "--helm-kube-version".into(),
                opts.kube_version.clone().into(),
            ]);
        }
        for api in &opts.api_versions {
            args.extend(["--helm-api-versions".into(), api.into()]);
        }
    }
    args.extend(tool.build_options.iter().map(OsString::from));
    if let Some(helm) = &tool.helm
        && tool.build_options.iter().any(|o| o == "--enable-helm")
    {
        args.extend(["--helm-command".into(), helm.clone().into()]);
    }
    let output = runner
        .run(Invocation {
            tool: "kustomize",
            program: &tool.program,
            command: "build",
            args,
            cwd: &dir,
            env,
        })
        .await?;
    let text = String::from_utf8(output).map_err(|_| RenderError::InvalidOption {
        field: "kustomize build output".to_owned(),
        message: "is not UTF-8 text".to_owned(),
    })?;
    let mut out = Rendered::default();
    push_documents("kustomize build output", &text, Format::Yaml, &mut out)?;
    Ok(out)
}

/// Edits the kustomization in `dir` with `options` and checks the paths of every reachable
/// kustomization. Blocking.
fn prepare(
    root: &Path,
    dir: &Path,
    options: Option<&KustomizeSource>,
    env: &[(String, String)],
) -> Result<(), RenderError> {
    let file = kustomization_file(dir).ok_or_else(|| RenderError::InvalidOption {
        field: "spec.source.path".to_owned(),
        message: format!(
            "{} has no kustomization.yaml, kustomization.yml or Kustomization file",
            relative(root, dir)
        ),
    })?;
    if let Some(options) = options.filter(|o| has_edits(o)) {
        let mut k = read_kustomization(root, &file)?;
        apply_options(&mut k, options, root, dir, env)?;
        let text = serde_json::to_string_pretty(&Value::Object(k))
            .map_err(|e| RenderError::io("writing the kustomization")(std::io::Error::other(e)))?;
        // JSON is YAML: kustomize reads it as is.
        std::fs::write(&file, text)
            .map_err(RenderError::io(format!("writing {}", file.display())))?;
    }
    check_paths(root, dir)
}

/// Whether rendering with `options` edits the kustomization file (so the checkout cannot be
/// shared with other renders).
pub fn edits_kustomization(options: Option<&KustomizeSource>) -> bool {
    options.is_some_and(has_edits)
}

fn has_edits(o: &KustomizeSource) -> bool {
    !(o.name_prefix.is_empty()
        && o.name_suffix.is_empty()
        && o.images.is_empty()
        && o.replicas.is_empty()
        && o.common_labels.is_empty()
        && o.common_annotations.is_empty()
        && o.namespace.is_empty()
        && o.components.is_empty()
        && o.patches.is_empty())
}

fn relative(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p).display().to_string();
    if rel.is_empty() { ".".to_owned() } else { rel }
}

fn read_kustomization(root: &Path, file: &Path) -> Result<Map<String, Value>, RenderError> {
    let label = relative(root, file);
    let text =
        std::fs::read_to_string(file).map_err(RenderError::io(format!("reading {label}")))?;
    let value = parse_yaml_document(&label, &text)?;
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err(RenderError::InvalidOption {
            field: label,
            message: "is not a mapping; a kustomization is a YAML mapping of fields".to_owned(),
        }),
    }
}

fn apply_options(
    k: &mut Map<String, Value>,
    o: &KustomizeSource,
    root: &Path,
    dir: &Path,
    env: &[(String, String)],
) -> Result<(), RenderError> {
    let field = |name: &str| format!("spec.source.kustomize.{name}");
    let set_text = |k: &mut Map<String, Value>, key: &str, value: &str| {
        if !value.is_empty() {
            k.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    };
    set_text(k, "namePrefix", &o.name_prefix);
    set_text(k, "nameSuffix", &o.name_suffix);
    if !o.images.is_empty() {
        let images: Vec<String> = o.images.iter().map(|i| envsubst(i, env)).collect();
        set_images(k, &images)?;
    }
    if !o.replicas.is_empty() {
        let mut wanted = Vec::new();
        for (i, r) in o.replicas.iter().enumerate() {
            let count =
                r.count
                    .as_int()
                    .filter(|c| *c >= 0)
                    .ok_or_else(|| RenderError::InvalidOption {
                        field: field(&format!("replicas[{i}].count")),
                        message: format!("{:?} is not a whole number of replicas", r.count),
                    })?;
            wanted.push((r.name.clone(), count));
        }
        set_replicas(k, wanted);
    }
    if !o.common_labels.is_empty() {
        add_labels(k, o)?;
    }
    if !o.common_annotations.is_empty() {
        let annotations = entry_map(k, "commonAnnotations", "commonAnnotations")?;
        for (key, value) in &o.common_annotations {
            let value = if o.common_annotations_envsubst {
                envsubst(value, env)
            } else {
                value.clone()
            };
            put(
                annotations,
                key,
                value,
                o.force_common_annotations,
                "annotation",
                "forceCommonAnnotations",
            )?;
        }
    }
    set_text(k, "namespace", &o.namespace);
    if !o.components.is_empty() {
        let list = entry_list(k, "components")?;
        for (i, c) in o.components.iter().enumerate() {
            let exists = join_inside(root, dir, c).is_some_and(|p| p.exists());
            if join_inside(root, dir, c).is_none() {
                return Err(RenderError::PathRefused {
                    field: field(&format!("components[{i}]")),
                    path: c.clone(),
                    reason: "it leaves the repository",
                });
            }
            if !exists {
                if o.ignore_missing_components {
                    continue;
                }
                return Err(RenderError::InvalidOption {
                    field: field(&format!("components[{i}]")),
                    message: format!(
                        "component {c:?} does not exist in {}; fix the path or set ignoreMissingComponents",
                        relative(root, dir)
                    ),
                });
            }
            if !list.iter().any(|v| v.as_str() == Some(c)) {
                list.push(Value::String(c.clone()));
            }
        }
    }
    if !o.patches.is_empty() {
        let list = entry_list(k, "patches")?;
        for p in &o.patches {
            list.push(
                serde_json::to_value(p)
                    .map_err(|e| RenderError::io("encoding a patch")(std::io::Error::other(e)))?,
            );
        }
    }
    Ok(())
}

/// The mapping at `key`, created if absent.
fn entry_map<'a>(
    k: &'a mut Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<&'a mut Map<String, Value>, RenderError> {
    let v = k.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().ok_or_else(|| RenderError::InvalidOption {
        field: format!("kustomization {what}"),
        message: "is not a mapping".to_owned(),
    })
}

/// The list at `key`, created if absent.
fn entry_list<'a>(
    k: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Vec<Value>, RenderError> {
    let v = k.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if v.is_null() {
        *v = Value::Array(Vec::new());
    }
    v.as_array_mut().ok_or_else(|| RenderError::InvalidOption {
        field: format!("kustomization {key}"),
        message: "is not a list".to_owned(),
    })
}

fn put(
    map: &mut Map<String, Value>,
    key: &str,
    value: String,
    force: bool,
    what: &str,
    force_field: &str,
) -> Result<(), RenderError> {
    if map.contains_key(key) && !force {
        return Err(RenderError::InvalidOption {
            field: format!("spec.source.kustomize.common{}s", capitalise(what)),
            message: format!(
                "{what} {key:?} is already set by the kustomization; set spec.source.kustomize.{force_field} to override it"
            ),
        });
    }
    map.insert(key.to_owned(), Value::String(value));
    Ok(())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn add_labels(k: &mut Map<String, Value>, o: &KustomizeSource) -> Result<(), RenderError> {
    let target = if o.label_without_selector {
        selectorless_labels(k, o.label_include_templates)?
    } else {
        entry_map(k, "commonLabels", "commonLabels")?
    };
    for (key, value) in &o.common_labels {
        put(
            target,
            key,
            value.clone(),
            o.force_common_labels,
            "label",
            "forceCommonLabels",
        )?;
    }
    Ok(())
}

/// The `pairs` of the `labels` entry `kustomize edit add label --without-selector
/// [--include-templates]` would write to: the first entry with the same settings, else a new
/// one.
fn selectorless_labels(
    k: &mut Map<String, Value>,
    include_templates: bool,
) -> Result<&mut Map<String, Value>, RenderError> {
    let list = entry_list(k, "labels")?;
    let same_settings = |v: &Value| {
        let flag = |name| v.get(name).and_then(Value::as_bool).unwrap_or(false);
        !flag("includeSelectors") && flag("includeTemplates") == include_templates
    };
    let index = match list.iter().position(same_settings) {
        Some(i) => i,
        None => {
            let mut entry = Map::new();
            entry.insert("pairs".to_owned(), Value::Object(Map::new()));
            if include_templates {
                entry.insert("includeTemplates".to_owned(), Value::Bool(true));
            }
            list.push(Value::Object(entry));
            list.len() - 1
        }
    };
    let entry = list[index]
        .as_object_mut()
        .ok_or_else(|| RenderError::InvalidOption {
            field: "kustomization labels".to_owned(),
            message: "holds an entry that is not a mapping".to_owned(),
        })?;
    entry_map(entry, "pairs", "labels[].pairs")
}

/// An image override as `kustomize edit set image` parses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Image {
    name: String,
    new_name: String,
    new_tag: String,
    digest: String,
}

/// Parses `[old=]new[:tag][@digest]` like kustomize.
fn parse_image(arg: &str) -> Option<Image> {
    let (key, value) = match arg.split_once('=') {
        Some((k, v)) => (Some(k), v),
        None => (None, arg),
    };
    let (rest, digest) = match value.split_once('@') {
        Some((r, d)) => (r, d),
        None => (value, ""),
    };
    // A tag is after the last ':' that comes after the last '/' (a registry port is not a tag).
    let (name, tag) = match rest.rfind(':') {
        Some(i) if rest.rfind('/').is_none_or(|s| s < i) => (&rest[..i], &rest[i + 1..]),
        _ => (rest, ""),
    };
    let tag_ok = tag == "*"
        || tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if name.is_empty() || !tag_ok || (key.is_none() && tag.is_empty() && digest.is_empty()) {
        return None;
    }
    Some(match key {
        Some(k) if !k.is_empty() => Image {
            name: k.to_owned(),
            new_name: name.to_owned(),
            new_tag: tag.to_owned(),
            digest: digest.to_owned(),
        },
        Some(_) => return None,
        None => Image {
            name: name.to_owned(),
            new_tag: tag.to_owned(),
            digest: digest.to_owned(),
            ..Image::default()
        },
    })
}

fn set_images(k: &mut Map<String, Value>, args: &[String]) -> Result<(), RenderError> {
    let mut wanted: Vec<Image> = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let image = parse_image(arg).ok_or_else(|| RenderError::InvalidOption {
            field: format!("spec.source.kustomize.images[{i}]"),
            message: format!(
                "{arg:?} is not an image override; use name:tag, name@digest, name=newname, name=newname:tag or name=newname@digest"
            ),
        })?;
        wanted.retain(|w| w.name != image.name);
        wanted.push(image);
    }
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let existing = k
        .get("images")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut merged: Vec<Image> = Vec::new();
    for old in &existing {
        let old = Image {
            name: text(old, "name"),
            new_name: text(old, "newName"),
            new_tag: text(old, "newTag"),
            digest: text(old, "digest"),
        };
        match wanted.iter().position(|w| w.name == old.name) {
            Some(i) => {
                let mut w = wanted.remove(i);
                let keep = |new: &mut String, old: &str| {
                    if new == "*" {
                        *new = old.to_owned();
                    }
                };
                keep(&mut w.new_name, &old.new_name);
                keep(&mut w.new_tag, &old.new_tag);
                keep(&mut w.digest, &old.digest);
                merged.push(w);
            }
            None => merged.push(old),
        }
    }
    merged.extend(wanted);
    merged.sort_by(|a, b| a.name.cmp(&b.name));
    let list = merged
        .into_iter()
        .map(|mut i| {
            for part in [&mut i.new_name, &mut i.new_tag, &mut i.digest] {
                if part == "*" {
                    part.clear();
                }
            }
            let mut m = Map::new();
            m.insert("name".to_owned(), Value::String(i.name));
            for (key, value) in [
                ("newName", i.new_name),
                ("newTag", i.new_tag),
                ("digest", i.digest),
            ] {
                if !value.is_empty() {
                    m.insert(key.to_owned(), Value::String(value));
                }
            }
            Value::Object(m)
        })
        .collect();
    k.insert("images".to_owned(), Value::Array(list));
    Ok(())
}

fn set_replicas(k: &mut Map<String, Value>, wanted: Vec<(String, i64)>) {
    let mut all: Vec<(String, Value)> = k
        .get("replicas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let name = r.get("name")?.as_str()?.to_owned();
            Some((name, r.get("count").cloned().unwrap_or(Value::Null)))
        })
        .filter(|(name, _)| !wanted.iter().any(|(w, _)| w == name))
        .collect();
    all.extend(wanted.into_iter().map(|(n, c)| (n, Value::from(c))));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let list = all
        .into_iter()
        .map(|(name, count)| serde_json::json!({ "name": name, "count": count }))
        .collect();
    k.insert("replicas".to_owned(), Value::Array(list));
}

/// Fields of a kustomization that hold local paths, and whether the path may be a directory
/// holding another kustomization (which is then checked too).
const PATH_LISTS: [(&str, bool); 9] = [
    ("resources", true),
    ("bases", true),
    ("components", true),
    ("crds", false),
    ("configurations", false),
    ("generators", true),
    ("transformers", true),
    ("validators", true),
    ("patchesStrategicMerge", false),
];

/// The items of a list field, with their index (none when absent or not a list).
fn items(v: Option<&Value>) -> impl Iterator<Item = (usize, &Value)> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

/// Every path a kustomization names, as (field, path, may be a directory holding another
/// kustomization).
fn local_paths<'k>(k: &'k Map<String, Value>) -> Vec<(String, &'k str, bool)> {
    let mut paths = Vec::new();
    let mut add = |field: String, v: Option<&'k Value>, may_be_dir: bool| {
        if let Some(s) = v.and_then(Value::as_str) {
            paths.push((field, s, may_be_dir));
        }
    };
    for (key, may_be_dir) in PATH_LISTS {
        for (i, v) in items(k.get(key)) {
            add(format!("{key}[{i}]"), Some(v), may_be_dir);
        }
    }
    for key in ["patches", "patchesJson6902", "replacements"] {
        for (i, v) in items(k.get(key)) {
            add(format!("{key}[{i}].path"), v.get("path"), false);
        }
    }
    for key in ["configMapGenerator", "secretGenerator"] {
        for (i, g) in items(k.get(key)) {
            for list in ["files", "envs"] {
                for (j, v) in items(g.get(list)) {
                    add(format!("{key}[{i}].{list}[{j}]"), Some(v), false);
                }
            }
            add(format!("{key}[{i}].env"), g.get("env"), false);
        }
    }
    add(
        "helmGlobals.chartHome".to_owned(),
        k.get("helmGlobals").and_then(|h| h.get("chartHome")),
        false,
    );
    for (i, c) in items(k.get("helmCharts")) {
        add(
            format!("helmCharts[{i}].valuesFile"),
            c.get("valuesFile"),
            false,
        );
        for (j, v) in items(c.get("additionalValuesFiles")) {
            add(
                format!("helmCharts[{i}].additionalValuesFiles[{j}]"),
                Some(v),
                false,
            );
        }
    }
    add(
        "openapi.path".to_owned(),
        k.get("openapi").and_then(|o| o.get("path")),
        false,
    );
    // Generator `files` entries may be `key=path`.
    for (field, path, _) in &mut paths {
        if field.contains(".files[") {
            *path = path.split_once('=').map_or(*path, |(_, p)| p);
        }
    }
    paths
}

/// Checks that no kustomization reachable from `start` names a local path outside `root`.
fn check_paths(root: &Path, start: &Path) -> Result<(), RenderError> {
    let mut queue = vec![start.to_path_buf()];
    let mut seen = HashSet::new();
    while let Some(dir) = queue.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        let Some(file) = kustomization_file(&dir) else {
            continue;
        };
        let k = read_kustomization(root, &file)?;
        let label = relative(root, &file);
        for (field, path, may_be_dir) in local_paths(&k) {
            // Remote bases (`https://…`, `git@…`) are kustomize's business; inline patches
            // (several lines) are not paths.
            if path.contains("://") || path.starts_with("git@") || path.contains('\n') {
                continue;
            }
            let Some(target) = join_inside(root, &dir, path) else {
                return Err(RenderError::PathRefused {
                    field: format!("{label}: {field}"),
                    path: path.to_owned(),
                    reason: "it leaves the repository",
                });
            };
            if may_be_dir && target.is_dir() {
                queue.push(target);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_overrides_parse_like_kustomize() {
        let img = |n: &str, nn: &str, t: &str, d: &str| {
            Some(Image {
                name: n.into(),
                new_name: nn.into(),
                new_tag: t.into(),
                digest: d.into(),
            })
        };
        assert_eq!(parse_image("nginx:1.27"), img("nginx", "", "1.27", ""));
        assert_eq!(
            parse_image("nginx=ghcr.io/x/nginx"),
            img("nginx", "ghcr.io/x/nginx", "", "")
        );
        assert_eq!(
            parse_image("nginx=registry:5000/nginx:2@sha256:ab"),
            img("nginx", "registry:5000/nginx", "2", "sha256:ab")
        );
        assert_eq!(
            parse_image("alpine@sha256:ff"),
            img("alpine", "", "", "sha256:ff")
        );
        assert_eq!(parse_image("nginx:*"), img("nginx", "", "*", ""));
        assert_eq!(parse_image("nginx"), None, "no override at all");
        assert_eq!(parse_image("=x:1"), None);
        assert_eq!(parse_image("nginx:bad tag"), None);
    }

    #[test]
    fn images_merge_replace_and_sort() {
        let mut k = serde_json::from_str::<Map<String, Value>>(
            r#"{"images":[{"name":"zeta","newTag":"1"},{"name":"app","newName":"reg/app","newTag":"old"}]}"#,
        )
        .expect("json");
        set_images(&mut k, &["app=*:new".to_owned(), "base:3".to_owned()]).expect("set");
        assert_eq!(
            Value::Object(k),
            serde_json::json!({"images": [
                {"name": "app", "newName": "reg/app", "newTag": "new"},
                {"name": "base", "newTag": "3"},
                {"name": "zeta", "newTag": "1"},
            ]})
        );
    }

    #[test]
    fn replicas_replace_and_sort() {
        let mut k = serde_json::from_str::<Map<String, Value>>(
            r#"{"replicas":[{"name":"web","count":1},{"name":"db","count":1}]}"#,
        )
        .expect("json");
        set_replicas(&mut k, vec![("web".into(), 5), ("api".into(), 2)]);
        assert_eq!(
            k["replicas"],
            serde_json::json!([{"name":"api","count":2},{"name":"db","count":1},{"name":"web","count":5}])
        );
    }
}
