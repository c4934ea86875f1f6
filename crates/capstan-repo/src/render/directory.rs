//! Argo CD's plain directory source: YAML, JSON and Jsonnet manifests read from a directory.
//!
//! [`render`] is a pure function over the files of a source ([`SourceFile`]s from
//! [`crate::tree::read_dir`]) and the [`DirectoryOptions`]; it does no I/O, so it can run on a
//! rayon pool. [`render_with`] also takes the evaluator for `.jsonnet` files (the service
//! passes [`super::jsonnet::Evaluator`] over a checkout, made only when [`needs_jsonnet`] says
//! a file will be evaluated). What it does, as Argo CD does:
//! - only `.yaml`, `.yml`, `.json` and `.jsonnet` files are read; other files (`.libsonnet`
//!   libraries among them) are skipped with a reason;
//! - without `recurse`, only the files directly in the source directory;
//! - `include` / `exclude` are globs (with `{a,b}` alternation; `*` also matches `/`) matched
//!   against the path relative to the source path; exclude wins over include;
//! - YAML files may hold several documents separated by `---`; empty documents are skipped;
//! - a `kind: List` (or any `*List` kind with `items`) is expanded into its items;
//! - a document without `apiVersion` and `kind` is not a Kubernetes object: it is skipped with
//!   a reason;
//! - malformed YAML or JSON fails the render with the file and line;
//! - a `.jsonnet` file evaluates to one manifest (an object) or several (an array of objects);
//!   its manifests go through the same `*List` expansion and skipping as YAML documents.

use globset::{Glob, GlobMatcher};
use serde_json::Value;

use super::{Format, RenderError, Rendered, push_documents, push_values};
use crate::tree::{SkippedFile, SourceFile};

/// The `directory` options of a source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryOptions {
    /// Read sub-directories too.
    pub recurse: bool,
    /// Only files matching this glob (empty: all).
    pub include: String,
    /// Not files matching this glob (empty: none).
    pub exclude: String,
}

fn matcher(field: &'static str, pattern: &str) -> Result<Option<GlobMatcher>, RenderError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Glob::new(pattern)
        .map(|g| Some(g.compile_matcher()))
        .map_err(|source| RenderError::InvalidGlob {
            field,
            pattern: pattern.to_owned(),
            source,
        })
}

/// Evaluates a `.jsonnet` file into its manifests (see [`super::jsonnet::Evaluator`]).
pub type JsonnetFn<'a> = dyn Fn(&SourceFile) -> Result<Vec<Value>, RenderError> + 'a;

/// What to do with a file.
enum Use {
    Parse(Format),
    Jsonnet,
    Skip(String),
}

/// Which files are read, in order, and why the others are not.
struct Filter {
    include: Option<GlobMatcher>,
    exclude: Option<GlobMatcher>,
}

impl Filter {
    fn new(options: &DirectoryOptions) -> Result<Self, RenderError> {
        Ok(Self {
            include: matcher("include", &options.include)?,
            exclude: matcher("exclude", &options.exclude)?,
        })
    }

    fn check(&self, path: &str, options: &DirectoryOptions) -> Use {
        if !options.recurse && path.contains('/') {
            return Use::Skip("in a sub-directory and directory.recurse is off".to_owned());
        }
        let lower = path.to_ascii_lowercase();
        let found = if lower.ends_with(".json") {
            Use::Parse(Format::Json)
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Use::Parse(Format::Yaml)
        } else if lower.ends_with(".jsonnet") {
            Use::Jsonnet
        } else if lower.ends_with(".libsonnet") {
            return Use::Skip(
                "a Jsonnet library (.libsonnet): only imported, not evaluated".to_owned(),
            );
        } else {
            return Use::Skip(
                "not a .yaml, .yml or .json manifest, nor a .jsonnet file".to_owned(),
            );
        };
        if self.exclude.as_ref().is_some_and(|m| m.is_match(path)) {
            return Use::Skip(format!("matches directory.exclude {:?}", options.exclude));
        }
        if self.include.as_ref().is_some_and(|m| !m.is_match(path)) {
            return Use::Skip(format!(
                "does not match directory.include {:?}",
                options.include
            ));
        }
        found
    }
}

/// The files [`render_with`] would evaluate as Jsonnet, in order.
pub fn jsonnet_files<'a>(
    files: &'a [SourceFile],
    options: &DirectoryOptions,
) -> Result<Vec<&'a SourceFile>, RenderError> {
    let filter = Filter::new(options)?;
    Ok(files
        .iter()
        .filter(|f| matches!(filter.check(&f.path, options), Use::Jsonnet))
        .collect())
}

/// Whether [`render_with`] would evaluate any of `files` as Jsonnet (so it needs an
/// evaluator, and the service a checkout).
pub fn needs_jsonnet(
    files: &[SourceFile],
    options: &DirectoryOptions,
) -> Result<bool, RenderError> {
    Ok(!jsonnet_files(files, options)?.is_empty())
}

/// Renders a directory source without a Jsonnet evaluator: `.jsonnet` files that would be
/// evaluated are skipped with a reason. See the [module docs](self).
pub fn render(files: &[SourceFile], options: &DirectoryOptions) -> Result<Rendered, RenderError> {
    render_with(files, options, None)
}

/// Renders a directory source, evaluating `.jsonnet` files with `jsonnet`; see the
/// [module docs](self).
pub fn render_with(
    files: &[SourceFile],
    options: &DirectoryOptions,
    jsonnet: Option<&JsonnetFn<'_>>,
) -> Result<Rendered, RenderError> {
    let filter = Filter::new(options)?;
    let mut out = Rendered::default();
    for file in files {
        let path = file.path.as_str();
        let skip = |out: &mut Rendered, reason: String| {
            out.skipped.push(SkippedFile {
                path: path.to_owned(),
                reason,
            });
        };
        match filter.check(path, options) {
            Use::Skip(reason) => skip(&mut out, reason),
            Use::Jsonnet => match jsonnet {
                Some(evaluate) => push_values(path, evaluate(file)?, &mut out)?,
                None => skip(
                    &mut out,
                    "a Jsonnet file, and this render has no Jsonnet evaluator".to_owned(),
                ),
            },
            Use::Parse(format) => {
                let Ok(text) = std::str::from_utf8(&file.data) else {
                    skip(&mut out, "not UTF-8 text".to_owned());
                    continue;
                };
                push_documents(path, text, format, &mut out)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str) -> SourceFile {
        SourceFile {
            path: path.to_owned(),
            repo_path: format!("app/{path}"),
            data: data.as_bytes().to_vec(),
        }
    }

    fn names(r: &Rendered) -> Vec<String> {
        r.manifests
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

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: NAME\n";

    fn cm(name: &str) -> String {
        CM.replace("NAME", name)
    }

    #[test]
    fn multi_document_yaml_json_and_lists() {
        let files = [
            file(
                "a.yaml",
                &format!("---\n{}---\n---\n{}", cm("a1"), cm("a2")),
            ),
            file(
                "b.json",
                r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"b"}}"#,
            ),
            file(
                "list.yml",
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s1}\n- {apiVersion: v1, kind: Secret, metadata: {name: s2}}\n",
            ),
            file("c.yaml", "foo: bar\n"),
            file("README.md", "# hi"),
            file("sub/d.yaml", &cm("d")),
        ];
        let r = render(&files, &DirectoryOptions::default()).expect("renders");
        assert_eq!(
            names(&r),
            [
                "ConfigMap/a1",
                "ConfigMap/a2",
                "Service/b",
                "Secret/s1",
                "Secret/s2"
            ]
        );
        let skipped: Vec<&str> = r.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, ["c.yaml", "README.md", "sub/d.yaml"]);
        assert!(r.skipped[0].reason.contains("not a Kubernetes object"));
        let r = render(
            &files,
            &DirectoryOptions {
                recurse: true,
                ..Default::default()
            },
        )
        .expect("renders");
        assert!(names(&r).contains(&"ConfigMap/d".to_owned()));
    }

    #[test]
    fn include_and_exclude_with_braces() {
        let files = [
            file("a.yaml", &cm("a")),
            file("b.yml", &cm("b")),
            file(
                "c.json",
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
            ),
            file("sub/d.yaml", &cm("d")),
            file("sub/e-test.yaml", &cm("e")),
        ];
        let opts = DirectoryOptions {
            recurse: true,
            include: "{*.yaml,*.json}".to_owned(),
            exclude: "*-test.yaml".to_owned(),
        };
        let r = render(&files, &opts).expect("renders");
        assert_eq!(names(&r), ["ConfigMap/a", "ConfigMap/c", "ConfigMap/d"]);
        let opts = DirectoryOptions {
            recurse: true,
            include: "sub/*".to_owned(),
            exclude: String::new(),
        };
        let r = render(&files, &opts).expect("renders");
        assert_eq!(names(&r), ["ConfigMap/d", "ConfigMap/e"]);
        let bad = DirectoryOptions {
            include: "{a,".to_owned(),
            ..Default::default()
        };
        assert!(matches!(
            render(&files, &bad),
            Err(RenderError::InvalidGlob { .. })
        ));
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let files = [file(
            "broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: [a, b\n",
        )];
        let err = render(&files, &DirectoryOptions::default()).expect_err("malformed");
        let RenderError::Yaml {
            file: name, line, ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(name, "broken.yaml");
        assert!(line.is_some_and(|l| l >= 5), "{err}");
        assert!(err.to_string().starts_with("broken.yaml:"), "{err}");

        let files = [file("bad.json", "{\n\"a\": 1,\n}")];
        let err = render(&files, &DirectoryOptions::default()).expect_err("malformed");
        assert!(err.to_string().starts_with("bad.json:3:"), "{err}");
    }

    #[test]
    fn jsonnet_files_follow_the_filters() {
        let files = [
            file("a.yaml", &cm("a")),
            file("main.jsonnet", "list"),
            file("lib.libsonnet", "{}"),
            file("skip-test.jsonnet", "one"),
            file("sub/s.jsonnet", "one"),
        ];
        // A stand-in evaluator: the file's text names what it returns.
        let evaluate = |f: &SourceFile| -> Result<Vec<Value>, RenderError> {
            let obj = |name: &str| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
            Ok(match f.data.as_slice() {
                b"list" => vec![
                    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList", "items": [obj("l1"), obj("l2")]}),
                    serde_json::json!({"foo": "bar"}),
                ],
                _ => vec![obj(&f.path)],
            })
        };
        let opts = DirectoryOptions {
            exclude: "*-test.*".to_owned(),
            ..Default::default()
        };
        assert!(needs_jsonnet(&files, &opts).expect("valid globs"));
        let r = render_with(&files, &opts, Some(&evaluate)).expect("renders");
        assert_eq!(names(&r), ["ConfigMap/a", "ConfigMap/l1", "ConfigMap/l2"]);
        let reasons: Vec<(&str, &str)> = r
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect();
        assert!(
            reasons.contains(&(
                "main.jsonnet",
                "document 2 is not a Kubernetes object (no apiVersion or kind)"
            )),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|(p, r)| *p == "lib.libsonnet" && r.contains("Jsonnet library")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|(p, r)| *p == "skip-test.jsonnet" && r.contains("exclude")),
            "{reasons:?}"
        );

        let opts = DirectoryOptions {
            recurse: true,
            include: "sub/*".to_owned(),
            ..Default::default()
        };
        let r = render_with(&files, &opts, Some(&evaluate)).expect("renders");
        assert_eq!(names(&r), ["ConfigMap/sub/s.jsonnet"]);

        let yaml_only = DirectoryOptions {
            include: "*.yaml".to_owned(),
            ..Default::default()
        };
        assert!(!needs_jsonnet(&files, &yaml_only).expect("valid globs"));
        // Without an evaluator, Jsonnet files are skipped with a reason.
        let r = render(&files, &DirectoryOptions::default()).expect("renders");
        assert_eq!(names(&r), ["ConfigMap/a"]);
        assert!(
            r.skipped
                .iter()
                .any(|s| s.path == "main.jsonnet" && s.reason.contains("no Jsonnet evaluator"))
        );
        // Evaluation errors stop the render.
        let failing = |_: &SourceFile| -> Result<Vec<Value>, RenderError> {
            Err(RenderError::Jsonnet {
                file: "app/main.jsonnet".to_owned(),
                line: Some(3),
                message: "runtime error: boom".to_owned(),
            })
        };
        let err =
            render_with(&files, &DirectoryOptions::default(), Some(&failing)).expect_err("fails");
        assert_eq!(
            err.to_string(),
            "app/main.jsonnet:3: jsonnet: runtime error: boom"
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = (b'a' + (i - 1) as u8) as char;
            let cur = (b'a' + i as u8) as char;
            bomb.push_str(&format!(
                "{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let files = [file("bomb.yaml", &bomb)];
        assert!(render(&files, &DirectoryOptions::default()).is_err());
    }
}
