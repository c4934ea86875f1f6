//! Writing YAML that reads back exactly.
//!
//! Capstan reads plain scalars the way Kubernetes does (YAML 1.1: `y`, `on`, `0755`,
//! `1_000` are not text). The YAML writer quotes what YAML 1.2 needs quoted, so every
//! string that Capstan's reader would take for something else is written double-quoted
//! here, keys included. The output therefore means the same to Capstan, `kubectl` and
//! Argo CD.

use super::node::{Location, NodeValue};
use super::yaml::resolve_plain;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_saphyr::DoubleQuoted;

/// Whether a plain scalar with this text would read back as this text.
fn reads_back_as_text(text: &str) -> bool {
    if text == "<<" {
        return false;
    }
    let at = Location { line: 1, column: 1 };
    matches!(resolve_plain(text, at), Ok(NodeValue::Str(s)) if s == text)
}

struct Text<'a>(&'a str);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if reads_back_as_text(self.0) {
            s.serialize_str(self.0)
        } else {
            DoubleQuoted(self.0).serialize(s)
        }
    }
}

/// A JSON value written as YAML with quoting that survives Kubernetes' YAML 1.1 reading.
pub(crate) struct Yaml11<'a>(pub(crate) &'a Value);

impl Serialize for Yaml11<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.serialize(s),
            Value::String(text) => Text(text).serialize(s),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Yaml11(item))?;
                }
                seq.end()
            }
            Value::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(&Text(k), &Yaml11(v))?;
                }
                map.end()
            }
        }
    }
}
