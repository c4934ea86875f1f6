//! Reading the objects of an input file: multi-document YAML, a JSON value (or several, one
//! after the other), `kind: List` wrappers as `kubectl get -o yaml` prints them.
//!
//! Every object keeps where it came from ([`Origin`]) so that a message about it can name the
//! file, the document and the line. YAML is read in two passes: the parser (the one
//! serde-saphyr is built on) finds where each document starts and reports syntax errors with
//! their position; then each document is deserialised on its own, so a problem in one names
//! that document.

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser};

/// The text of one input, and the name messages use for it.
#[derive(Debug)]
pub struct Source {
    /// The path as given, or `<stdin>`.
    pub name: String,
    /// The whole text.
    pub text: String,
}

impl Source {
    /// Reads a file, or standard input for `-`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            return Ok(Self {
                name: "<stdin>".to_owned(),
                text,
            });
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            name: path.display().to_string(),
            text,
        })
    }

    /// A source from text in memory (tests).
    #[cfg(test)]
    pub fn from_text(name: &str, text: &str) -> Self {
        Self {
            name: name.to_owned(),
            text: text.to_owned(),
        }
    }
}

/// Where an object was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The source's name.
    pub file: String,
    /// 1-based number of the document in the file (empty documents count).
    pub document: usize,
    /// 1-based line where the document's content starts, when known.
    pub line: Option<usize>,
    /// Index in the `items` of a `List` document.
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    /// `file:LINE (document N, items[I])`: editors open `file:LINE` directly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, " (document {}", self.document)?;
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        f.write_str(")")
    }
}

/// One object of an input file.
#[derive(Debug, Clone)]
pub struct Located {
    /// The object.
    pub value: Value,
    /// Where it was read from.
    pub origin: Origin,
}

/// Every object in `source`, in file order: `List` documents are replaced by their items,
/// empty documents are skipped. Anything that is not a Kubernetes object (no `kind`, no
/// `apiVersion`, not a mapping) is an error naming its position.
pub fn objects(source: &Source) -> anyhow::Result<Vec<Located>> {
    let documents = if looks_like_json(&source.text) {
        json_documents(source)?
    } else {
        yaml_documents(source)?
    };
    let mut out = Vec::new();
    for (value, origin) in documents {
        flatten(value, origin, &mut out)?;
    }
    Ok(out)
}

fn looks_like_json(text: &str) -> bool {
    // A YAML file of Kubernetes objects starts with a key, a comment or `---`; JSON with `{`
    // or `[`. Reading JSON with the JSON parser gives exact positions and accepts JSON that
    // YAML's flow syntax would not (e.g. long lines with tabs).
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with(['{', '['])
}

fn json_documents(source: &Source) -> anyhow::Result<Vec<(Value, Origin)>> {
    let text = source.text.trim_start_matches('\u{feff}');
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut previous_end = 0;
    loop {
        let document = documents.len() + 1;
        let start = text[previous_end..]
            .find(|c: char| !c.is_whitespace())
            .map_or(text.len(), |i| previous_end + i);
        let line = line_at(text, start);
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                documents.push((
                    value,
                    Origin {
                        file: source.name.clone(),
                        document,
                        line: Some(line),
                        item: None,
                    },
                ));
                previous_end = stream.byte_offset();
            }
            Some(Err(e)) => {
                let message = e.to_string();
                // serde_json appends " at line L column C"; the position is printed first.
                let message = message
                    .rfind(" at line ")
                    .map_or(message.as_str(), |i| &message[..i]);
                bail!(
                    "{}:{}:{} (document {document}): invalid JSON: {message}",
                    source.name,
                    e.line(),
                    e.column()
                );
            }
        }
    }
    Ok(documents)
}

/// 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Byte offset of the start of the line holding `offset`.
fn line_start(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1)
}

fn yaml_documents(source: &Source) -> anyhow::Result<Vec<(Value, Origin)>> {
    let text = source.text.as_str();
    // Pass 1: where each document starts, and syntax errors with their document.
    let mut starts: Vec<usize> = Vec::new();
    let mut in_document = false;
    for event in Parser::new_from_str(text) {
        match event {
            Ok((Event::DocumentStart(..), span)) => {
                let offset = span.start.byte_offset().unwrap_or_else(|| {
                    // Without a byte offset the parser counts characters.
                    text.char_indices()
                        .nth(span.start.index())
                        .map_or(text.len(), |(i, _)| i)
                });
                starts.push(offset);
                in_document = true;
            }
            Ok((Event::DocumentEnd, _)) => in_document = false,
            Ok(_) => {}
            Err(e) => {
                let document = starts.len() + usize::from(!in_document);
                bail!(
                    "{}:{}:{} (document {document}): invalid YAML: {}",
                    source.name,
                    e.marker().line(),
                    e.marker().col() + 1,
                    e.info()
                );
            }
        }
    }
    // Pass 2: each document on its own. A slice starts at the beginning of its first line so
    // that indentation keeps its meaning.
    let mut bounds: Vec<usize> = starts.iter().map(|&s| line_start(text, s)).collect();
    if let Some(first) = bounds.first_mut() {
        *first = 0;
    }
    let mut documents = Vec::new();
    for (i, &start) in bounds.iter().enumerate() {
        let end = bounds.get(i + 1).copied().unwrap_or(text.len());
        let slice = &text[start..end];
        let document = i + 1;
        let first_line = line_at(text, start);
        let value: Value =
            serde_saphyr::from_str_with_options(slice, serde_saphyr::Options::default()).map_err(
                |e| {
                    let line = e
                        .location()
                        .map(|l| usize::try_from(l.line()).unwrap_or(0) + first_line - 1);
                    let text = e.to_string();
                    let message = bare_message(&text);
                    match line {
                        Some(line) => anyhow!(
                            "{}:{line} (document {document}): invalid YAML: {message}",
                            source.name
                        ),
                        None => anyhow!(
                            "{} (document {document}): invalid YAML: {message}",
                            source.name
                        ),
                    }
                },
            )?;
        if value.is_null() {
            continue;
        }
        let content = starts.get(i).copied().unwrap_or(start);
        documents.push((
            value,
            Origin {
                file: source.name.clone(),
                document,
                line: Some(content_line(text, content)),
                item: None,
            },
        ));
    }
    Ok(documents)
}

/// serde-saphyr's message without its `error: line L column C: ` prefix and source snippet:
/// the position it names is relative to the document, and ours is printed first.
pub fn bare_message(text: &str) -> &str {
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, message)) if position.contains(" column ") => message,
        _ => first,
    }
}

/// The line of a document's first content: past a `---` marker line and comments.
fn content_line(text: &str, start: usize) -> usize {
    let mut line = line_at(text, start);
    for l in text[line_start(text, start)..].lines() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') || t == "---" {
            line += 1;
        } else {
            break;
        }
    }
    line
}

fn flatten(value: Value, origin: Origin, out: &mut Vec<Located>) -> anyhow::Result<()> {
    match value {
        Value::Array(items) => {
            // A JSON array of objects (e.g. the output of `-o json`) reads as a list.
            for (i, item) in items.into_iter().enumerate() {
                let origin = Origin {
                    item: Some(i),
                    ..origin.clone()
                };
                check_object(&item, &origin)?;
                out.push(Located {
                    value: item,
                    origin,
                });
            }
            Ok(())
        }
        Value::Object(mut map) => {
            let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
            let is_list = kind.ends_with("List") && map.get("items").is_some_and(Value::is_array);
            if !is_list {
                let value = Value::Object(map);
                check_object(&value, &origin)?;
                out.push(Located { value, origin });
                return Ok(());
            }
            // The API server's typed lists (`DeploymentList`) leave `kind` and `apiVersion` out
            // of their items; kubectl's `List` keeps them.
            let item_kind = kind.strip_suffix("List").unwrap_or_default().to_owned();
            let api_version = map.get("apiVersion").cloned();
            let Some(Value::Array(items)) = map.remove("items") else {
                return Ok(());
            };
            for (i, mut item) in items.into_iter().enumerate() {
                if let Value::Object(fields) = &mut item
                    && !item_kind.is_empty()
                    && !fields.contains_key("kind")
                {
                    fields.insert("kind".to_owned(), Value::String(item_kind.clone()));
                    if let Some(v) = &api_version {
                        fields.entry("apiVersion").or_insert_with(|| v.clone());
                    }
                }
                let origin = Origin {
                    item: Some(i),
                    ..origin.clone()
                };
                check_object(&item, &origin)?;
                out.push(Located {
                    value: item,
                    origin,
                });
            }
            Ok(())
        }
        other => bail!(
            "{origin}: expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
            type_name(&other)
        ),
    }
}

fn check_object(value: &Value, origin: &Origin) -> anyhow::Result<()> {
    let Some(map) = value.as_object() else {
        bail!(
            "{origin}: expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
            type_name(value)
        );
    };
    for field in ["apiVersion", "kind"] {
        match map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => bail!("{origin}: not a Kubernetes object: `{field}` is missing or not a string"),
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> anyhow::Result<Vec<Located>> {
        objects(&Source::from_text("in.yaml", text))
    }

    fn err(text: &str) -> String {
        format!("{:#}", read(text).expect_err(text))
    }

    #[test]
    fn documents_keep_their_number_and_line() {
        let objs = read(
            "# leading comment\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n# c\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n...\n---\n  apiVersion: v1\n  kind: Pod\n",
        )
        .expect("valid");
        let found: Vec<_> = objs
            .iter()
            .map(|o| (o.origin.document, o.origin.line, o.value["kind"].clone()))
            .collect();
        assert_eq!(
            found,
            [
                (1, Some(2), "ConfigMap".into()),
                (3, Some(8), "ConfigMap".into()),
                (4, Some(13), "Pod".into()),
            ]
        );
        assert_eq!(objs[1].origin.to_string(), "in.yaml:8 (document 3)");
    }

    #[test]
    fn syntax_errors_name_document_and_line() {
        let e = err("apiVersion: v1\nkind: A\n---\napiVersion: v1\nkind: [B\n");
        assert!(e.starts_with("in.yaml:"), "{e}");
        assert!(e.contains("(document 2): invalid YAML"), "{e}");
        let e = err("apiVersion: v1\nkind: A\n---\napiVersion: v1\n kind: B\n  x: : y\n");
        assert!(e.contains("(document 2): invalid YAML"), "{e}");
        let e = err("a: 1\n---\na: 1\na: 2\n");
        assert!(
            e.starts_with("in.yaml:4 (document 2): invalid YAML: duplicate mapping key: a"),
            "{e}"
        );
    }

    #[test]
    fn non_objects_are_refused_with_their_position() {
        let e = err("apiVersion: v1\nkind: A\n---\n- 1\n- 2\n");
        assert!(
            e.starts_with("in.yaml:4 (document 2, items[0]): expected a Kubernetes object"),
            "{e}"
        );
        let e = err("---\nmetadata: {name: x}\n");
        assert!(e.contains("`apiVersion` is missing"), "{e}");
        let e = err("just text\n");
        assert!(e.contains("found a string"), "{e}");
    }

    #[test]
    fn lists_are_flattened() {
        let objs = read(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n\
             ---\napiVersion: apps/v1\nkind: DeploymentList\nitems:\n- metadata: {name: d}\n",
        )
        .expect("valid");
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].value["kind"], "Deployment");
        assert_eq!(objs[1].value["apiVersion"], "apps/v1");
        assert_eq!(
            objs[1].origin.to_string(),
            "in.yaml:6 (document 2, items[0])"
        );
    }

    #[test]
    fn json_values_one_after_another() {
        let objs = read(
            "{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}\n{\"apiVersion\": \"v1\", \"kind\": \"Service\"}\n",
        )
        .expect("valid");
        assert_eq!(objs[1].origin.to_string(), "in.yaml:2 (document 2)");
        let e = err("{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}\n{\"apiVersion\": }\n");
        assert!(e.starts_with("in.yaml:2:"), "{e}");
        assert!(e.contains("(document 2): invalid JSON"), "{e}");
    }
}
