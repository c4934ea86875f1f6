//! Argo CD's plain directory source: YAML and JSON manifests read from a directory.
//!
//! [`render`] is a pure function over the files of a source ([`SourceFile`]s from
//! [`crate::tree::read_dir`]) and the [`DirectoryOptions`]; it does no I/O, so it can run on a
//! rayon pool. What it does, as Argo CD does:
//! - only `.yaml`, `.yml` and `.json` files are read; other files are skipped with a reason;
//! - without `recurse`, only the files directly in the source directory;
//! - `include` / `exclude` are globs (with `{a,b}` alternation; `*` also matches `/`) matched
//!   against the path relative to the source path; exclude wins over include;
//! - YAML files may hold several documents separated by `---`; empty documents are skipped;
//! - a `kind: List` (or any `*List` kind with `items`) is expanded into its items;
//! - a document without `apiVersion` and `kind` is not a Kubernetes object: it is skipped with
//!   a reason;
//! - malformed YAML or JSON fails the render with the file and line.

use globset::{Glob, GlobMatcher};

use super::{Format, RenderError, Rendered, push_documents};
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

/// Renders a directory source; see the [module docs](self).
pub fn render(files: &[SourceFile], options: &DirectoryOptions) -> Result<Rendered, RenderError> {
    let include = matcher("include", &options.include)?;
    let exclude = matcher("exclude", &options.exclude)?;
    let mut out = Rendered::default();
    for file in files {
        let path = file.path.as_str();
        let skip = |out: &mut Rendered, reason: String| {
            out.skipped.push(SkippedFile {
                path: path.to_owned(),
                reason,
            });
        };
        if !options.recurse && path.contains('/') {
            skip(
                &mut out,
                "in a sub-directory and directory.recurse is off".to_owned(),
            );
            continue;
        }
        let lower = path.to_ascii_lowercase();
        let format = if lower.ends_with(".json") {
            Format::Json
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else {
            skip(&mut out, "not a .yaml, .yml or .json file".to_owned());
            continue;
        };
        if exclude.as_ref().is_some_and(|m| m.is_match(path)) {
            skip(
                &mut out,
                format!("matches directory.exclude {:?}", options.exclude),
            );
            continue;
        }
        if include.as_ref().is_some_and(|m| !m.is_match(path)) {
            skip(
                &mut out,
                format!("does not match directory.include {:?}", options.include),
            );
            continue;
        }
        let Ok(text) = std::str::from_utf8(&file.data) else {
            skip(&mut out, "not UTF-8 text".to_owned());
            continue;
        };
        push_documents(path, text, format, &mut out)?;
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
