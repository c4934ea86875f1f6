//! Renderers: turn the files of a source into Kubernetes manifests.
//!
//! - [`directory`] is a pure function over files read from the object database
//!   ([`crate::tree::read_dir`]), so the service can run it on a CPU pool; its `.jsonnet`
//!   files are evaluated in process by [`jsonnet`], on a checkout (imports need files on disk);
//! - [`kustomize`] and [`helm`] run the real tools ([`process`] bounds their time, output and
//!   number) on a checkout made by [`crate::checkout`], after applying the Application's
//!   source options the way Argo CD does;
//! - [`detect`] picks the renderer for a source that does not name one.
//!
//! Every renderer returns a [`Rendered`] and fails with a [`RenderError`] whose message names
//! the file, option or tool at fault and says what to change.

pub mod detect;
pub mod directory;
pub mod env;
pub mod helm;
pub mod jsonnet;
pub mod jsonnet_child;
pub mod kustomize;
pub mod plugin;
pub mod process;

use std::time::Duration;

use serde_json::Value;

use crate::tree::{SkippedFile, TreeError};

/// The result of a renderer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    /// The manifests, in the order the files or the tool produced them.
    pub manifests: Vec<Value>,
    /// Files and documents that were not used, with the reason.
    pub skipped: Vec<SkippedFile>,
}

/// Errors of the renderers.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An include or exclude pattern is not a valid glob.
    #[error(
        "directory.{field} pattern {pattern:?} is not a valid glob; fix spec.source.directory.{field}"
    )]
    InvalidGlob {
        /// `include` or `exclude`.
        field: &'static str,
        /// The pattern.
        pattern: String,
        /// The glob error.
        #[source]
        source: globset::Error,
    },
    /// YAML could not be parsed.
    #[error("{file}:{}: invalid YAML: {message}", line.map_or_else(|| "?".to_owned(), |l| l.to_string()))]
    Yaml {
        /// The file (relative to the source path) or the tool whose output it was.
        file: String,
        /// The 1-based line of the problem, when known.
        line: Option<u64>,
        /// The parser's message.
        message: String,
        /// The parser's error.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A JSON file could not be parsed.
    #[error("{file}:{line}: invalid JSON: {source}")]
    Json {
        /// The file, relative to the source path.
        file: String,
        /// The 1-based line of the problem.
        line: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest is not a JSON/YAML object.
    #[error(
        "{file}: document {document} is a {found}, not a Kubernetes object (a mapping with apiVersion and kind)"
    )]
    NotAnObject {
        /// The file, relative to the source path.
        file: String,
        /// The 1-based document index within the file.
        document: usize,
        /// What it is instead.
        found: &'static str,
    },
    /// Reading the repository's files failed or was refused.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A source option cannot be applied.
    #[error("{field}: {message}")]
    InvalidOption {
        /// The option, as a path in the Application (`spec.source.kustomize.images[0]`).
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A path in a source option leaves the repository or is otherwise not allowed.
    #[error(
        "{field} {path:?} is not allowed: {reason}; use a path inside the repository (or $ref/… for another source's files)"
    )]
    PathRefused {
        /// The option, as a path in the Application.
        field: String,
        /// The path given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A tool binary could not be started.
    #[error("cannot run {tool} ({program}): {source}; check the repo-server's {tool} setting")]
    ToolMissing {
        /// The tool (`helm`, `kustomize`, a plugin name).
        tool: String,
        /// The program that was started.
        program: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// A tool exited unsuccessfully.
    #[error("`{tool} {command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The tool.
        tool: String,
        /// The sub-command (`build`, `template`), without arguments that could hold secrets.
        command: String,
        /// The exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// A tool ran longer than allowed and was killed.
    #[error(
        "`{tool} {command}` did not finish within {}s and was stopped; simplify the source or raise the repo-server's tool timeout", timeout.as_secs_f64()
    )]
    ToolTimedOut {
        /// The tool.
        tool: String,
        /// The sub-command.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// A tool wrote more than allowed and was killed.
    #[error(
        "`{tool} {command}` wrote more than {limit} bytes of output and was stopped; raise the repo-server's output limit if this is expected"
    )]
    OutputTooLarge {
        /// The tool.
        tool: String,
        /// The sub-command.
        command: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A Jsonnet file failed to evaluate, or its output is not manifests.
    #[error("{file}{}: jsonnet: {message}", line.map_or_else(String::new, |l| format!(":{l}")))]
    Jsonnet {
        /// The file, relative to the repository root.
        file: String,
        /// The 1-based line in that file, when known.
        line: Option<usize>,
        /// What went wrong, with the innermost frames of the Jsonnet stack trace.
        message: String,
    },
    /// Local file handling for a render failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl RenderError {
    /// An [`RenderError::Io`] for `what`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| RenderError::Io { what, source }
    }
}

/// How a text holding manifests is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON value.
    Json,
    /// A stream of YAML documents separated by `---`.
    Yaml,
}

/// Parses `text` (named `label` in errors) and appends its Kubernetes objects to `out`:
/// empty documents are ignored, `*List` kinds are expanded into their items, and documents
/// without `apiVersion` and `kind` are recorded as skipped.
pub(crate) fn push_documents(
    label: &str,
    text: &str,
    format: Format,
    out: &mut Rendered,
) -> Result<(), RenderError> {
    let documents = match format {
        Format::Json => parse_json(label, text)?,
        Format::Yaml => parse_yaml(label, text)?,
    };
    push_values(label, documents, out)
}

/// Appends the Kubernetes objects among `documents` (the values of the file `label`) to `out`,
/// as [`push_documents`] does for parsed text: `null`s are ignored, `*List` kinds are expanded
/// and values without `apiVersion` and `kind` are recorded as skipped; any other non-object
/// is an error naming its 1-based position.
pub(crate) fn push_values(
    label: &str,
    documents: Vec<Value>,
    out: &mut Rendered,
) -> Result<(), RenderError> {
    for (index, doc) in documents.into_iter().enumerate() {
        let document = index + 1;
        match doc {
            Value::Null => {}
            Value::Object(_) => expand(label, document, doc, out),
            other => {
                return Err(RenderError::NotAnObject {
                    file: label.to_owned(),
                    document,
                    found: type_name(&other),
                });
            }
        }
    }
    Ok(())
}

/// Adds a document's manifest, expanding `*List` kinds into their items.
fn expand(label: &str, document: usize, doc: Value, out: &mut Rendered) {
    let is_object = |v: &Value| {
        let text = |key| v.get(key).and_then(Value::as_str).unwrap_or_default();
        !text("kind").is_empty() && !text("apiVersion").is_empty()
    };
    let mut skip = |reason: String| {
        out.skipped.push(SkippedFile {
            path: label.to_owned(),
            reason,
        });
    };
    if !is_object(&doc) {
        skip(format!(
            "document {document} is not a Kubernetes object (no apiVersion or kind)"
        ));
        return;
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind.ends_with("List")
        && let Some(Value::Array(items)) = doc.get("items")
    {
        for (i, item) in items.iter().enumerate() {
            if is_object(item) {
                out.manifests.push(item.clone());
            } else {
                skip(format!(
                    "document {document}, {kind} item {i} is not a Kubernetes object (no apiVersion or kind)"
                ));
            }
        }
        return;
    }
    out.manifests.push(doc);
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    }
}

fn parse_yaml(label: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    // The default options carry serde-saphyr's budget (depth, nodes, aliases), which stops
    // alias bombs and pathological nesting.
    serde_saphyr::from_multiple_with_options::<Value>(text, serde_saphyr::Options::default())
        .map_err(|e| yaml_error(label, e))
}

/// Parses one YAML document of a repository file (a kustomization, a `Chart.yaml`), named
/// `label` in errors, within the same budget.
pub(crate) fn parse_yaml_document(label: &str, text: &str) -> Result<Value, RenderError> {
    serde_saphyr::from_str_with_options::<Value>(text, serde_saphyr::Options::default())
        .map_err(|e| yaml_error(label, e))
}

fn yaml_error(label: &str, e: serde_saphyr::Error) -> RenderError {
    RenderError::Yaml {
        file: label.to_owned(),
        line: e.location().map(|l| l.line()),
        message: e.to_string().lines().next().unwrap_or_default().to_owned(),
        source: Box::new(e),
    }
}

fn parse_json(label: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    let value: Value = serde_json::from_str(text).map_err(|source| RenderError::Json {
        file: label.to_owned(),
        line: source.line(),
        source,
    })?;
    Ok(vec![value])
}
