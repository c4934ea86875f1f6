//! Reading and writing YAML and JSON.
//!
//! Reading is two steps. First the text is parsed (by `yaml`, with serde-saphyr's parser
//! and budget, under explicit size and resource limits) into a [`node::Node`] tree that
//! records the line and column of every value. Then [`de`] maps the tree onto the model types with a serde `Deserializer` that
//! tracks the field path, so every error names its path, line and column, and unknown
//! fields are rejected with a "did you mean" suggestion.
//!
//! YAML is read with Kubernetes' YAML 1.1 conventions (`yes`/`on` are booleans, `0755` is
//! octal), because that is what Argo CD and `kubectl` see in the same file.

pub(crate) mod de;
pub(crate) mod node;
mod write;
mod yaml;

use crate::error::{ParseError, SerializeError};
use node::{Location, Node, NodeValue};
use serde::Serialize;

/// Largest accepted document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// Largest accepted multi-document input, in bytes.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;
/// Deepest accepted nesting of lists and mappings.
pub const MAX_DEPTH: usize = 64;
/// Most documents accepted in one input.
pub const MAX_DOCUMENTS: usize = 10_000;

/// Parses a YAML stream into one node per non-empty document, refusing inputs over `limit`
/// bytes (and documents over [`MAX_DOCUMENT_BYTES`]).
pub(crate) fn parse_yaml_documents(input: &str, limit: usize) -> Result<Vec<Node>, ParseError> {
    if input.len() > limit {
        return Err(ParseError::TooLarge {
            what: "the input",
            size: input.len(),
            limit,
        });
    }
    yaml::parse_stream(input)
}

/// Parses one JSON document into a node (without line and column information).
pub(crate) fn parse_json_document(input: &str) -> Result<Node, ParseError> {
    if input.len() > MAX_DOCUMENT_BYTES {
        return Err(ParseError::TooLarge {
            what: "the input",
            size: input.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let value: serde_json::Value = serde_json::from_str(input).map_err(|e| {
        let location = (e.line() > 0).then(|| Location {
            line: e.line() as u64,
            column: e.column() as u64,
        });
        let text = e.to_string();
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_owned(),
            None => text,
        };
        ParseError::Syntax {
            message: format!("invalid JSON: {message}"),
            location,
        }
    })?;
    Node::from_json(value, 0)
}

impl Node {
    /// Converts a JSON value; nesting deeper than [`MAX_DEPTH`] is refused.
    pub(crate) fn from_json(value: serde_json::Value, depth: usize) -> Result<Node, ParseError> {
        use serde_json::Value;
        if depth > MAX_DEPTH {
            return Err(ParseError::Syntax {
                message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                location: None,
            });
        }
        let value = match value {
            Value::Null => NodeValue::Null,
            Value::Bool(b) => NodeValue::Bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => NodeValue::Int(i),
                (None, Some(u), _) => NodeValue::UInt(u),
                (None, None, Some(f)) => NodeValue::Float(f),
                _ => NodeValue::Null,
            },
            Value::String(s) => NodeValue::Str(s),
            Value::Array(items) => NodeValue::Seq(
                items
                    .into_iter()
                    .map(|v| Node::from_json(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => NodeValue::Map(
                map.into_iter()
                    .map(|(k, v)| {
                        Ok((
                            Node {
                                location: None,
                                value: NodeValue::Str(k),
                            },
                            Node::from_json(v, depth + 1)?,
                        ))
                    })
                    .collect::<Result<_, ParseError>>()?,
            ),
        };
        Ok(Node {
            location: None,
            value,
        })
    }

    /// The value under `key`, if this is a mapping that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, NodeValue::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Writes a value as YAML.
///
/// Strings that Kubernetes' YAML reader would take for something else (`"yes"`, `"0755"`,
/// `"1_000"`) are double-quoted, so the output reads back exactly.
pub fn to_yaml<T: Serialize + ?Sized>(value: &T) -> Result<String, SerializeError> {
    let value = serde_json::to_value(value).map_err(SerializeError::Json)?;
    serde_saphyr::to_string(&write::Yaml11(&value)).map_err(SerializeError::Yaml)
}

/// Writes a value as pretty-printed JSON.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, SerializeError> {
    serde_json::to_string_pretty(value).map_err(SerializeError::Json)
}
