//! A serde `Deserializer` over a [`Node`] tree that knows, for every value, its field path
//! and its line and column, and puts both into every error.
//!
//! Null follows Go's `encoding/json` (which Kubernetes and Argo CD use): a `null` where a
//! string, number, boolean, list or object is expected leaves that field at its zero value,
//! so `syncPolicy:` with nothing under it means "no sync policy", as it does in Argo CD.

use super::node::{Location, Node, NodeValue};
use crate::path::{FieldPath, PathSegment};
use crate::suggest;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    Visitor,
};
use std::borrow::Cow;
use std::fmt;

/// A path under construction during deserialisation: a linked list on the stack, turned into
/// a [`FieldPath`] only when an error needs it.
pub(crate) struct PathLink<'p> {
    parent: Option<&'p PathLink<'p>>,
    segment: LinkSegment<'p>,
}

enum LinkSegment<'p> {
    Root,
    Key(Cow<'p, str>),
    Index(usize),
}

impl PathLink<'_> {
    pub(crate) const ROOT: PathLink<'static> = PathLink {
        parent: None,
        segment: LinkSegment::Root,
    };

    fn to_path(&self) -> FieldPath {
        let mut segments = Vec::new();
        let mut link = Some(self);
        while let Some(l) = link {
            match &l.segment {
                LinkSegment::Root => {}
                LinkSegment::Key(k) => segments.push(PathSegment::Field(k.to_string())),
                LinkSegment::Index(i) => segments.push(PathSegment::Index(*i)),
            }
            link = l.parent;
        }
        let mut path = FieldPath::root();
        for s in segments.into_iter().rev() {
            path.push(s);
        }
        path
    }
}

/// What went wrong while mapping a node onto a model type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DeErrorKind {
    /// A message from a type's own `Deserialize` impl.
    Custom(String),
    /// The value has the wrong YAML type.
    InvalidType {
        found: String,
        expected: String,
        hint: Option<&'static str>,
    },
    /// The value has the right type but is not accepted.
    InvalidValue { found: String, expected: String },
    /// A list or tuple of the wrong length.
    InvalidLength { length: usize, expected: String },
    /// A key that the object does not have.
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    /// A string that is not one of an enum's values.
    UnknownVariant {
        value: String,
        expected: &'static [&'static str],
    },
    /// A required field is absent.
    MissingField(&'static str),
    /// A field given twice.
    DuplicateField(&'static str),
}

/// A deserialisation error with the field path and location it happened at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    pub(crate) kind: DeErrorKind,
    pub(crate) path: Option<FieldPath>,
    pub(crate) location: Option<Location>,
}

impl DeError {
    fn new(kind: DeErrorKind) -> Self {
        Self {
            kind,
            path: None,
            location: None,
        }
    }

    /// Records where the error happened, unless a deeper frame already did.
    fn at(mut self, path: &PathLink<'_>, node: &Node) -> Self {
        if self.path.is_none() {
            let mut p = path.to_path();
            match &self.kind {
                // Name the missing field itself, located at the object that lacks it.
                DeErrorKind::MissingField(field) | DeErrorKind::DuplicateField(field) => {
                    p.push(PathSegment::Field((*field).to_owned()));
                }
                _ => {}
            }
            self.path = Some(p);
            self.location = node.location;
        }
        self
    }

    /// The message without path and location, in lower case, saying what to do.
    pub(crate) fn message(&self) -> String {
        match &self.kind {
            DeErrorKind::Custom(m) => m.clone(),
            DeErrorKind::InvalidType {
                found,
                expected,
                hint,
            } => {
                let mut m = format!("expected {expected}, found {found}");
                if let Some(h) = hint {
                    m.push_str("; ");
                    m.push_str(h);
                }
                m
            }
            DeErrorKind::InvalidValue { found, expected } => {
                format!("invalid value {found}; expected {expected}")
            }
            DeErrorKind::InvalidLength { length, expected } => {
                format!("invalid length {length}; expected {expected}")
            }
            DeErrorKind::UnknownField { field, expected } => {
                match suggest::closest(field, expected) {
                    Some(s) => format!("unknown field `{field}`; did you mean `{s}`?"),
                    None if expected.is_empty() => {
                        format!("unknown field `{field}`; this object takes no fields")
                    }
                    None => format!(
                        "unknown field `{field}`; remove it or use one of {}",
                        suggest::quoted_list(expected)
                    ),
                }
            }
            DeErrorKind::UnknownVariant { value, expected } => {
                match suggest::closest(value, expected) {
                    Some(s) => format!("unknown value {value:?}; did you mean `{s}`?"),
                    None => format!(
                        "unknown value {value:?}; use one of {}",
                        suggest::quoted_list(expected)
                    ),
                }
            }
            DeErrorKind::MissingField(_) => "required field is missing; add it".to_owned(),
            DeErrorKind::DuplicateField(_) => "field is given more than once; keep one".to_owned(),
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location {
            write!(f, "{loc}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message())
    }
}

impl std::error::Error for DeError {}

/// Describes a YAML value the way a user reads it.
fn describe_unexpected(u: &Unexpected<'_>) -> String {
    match u {
        Unexpected::Bool(b) => format!("the boolean `{b}`"),
        Unexpected::Unsigned(n) => format!("the number `{n}`"),
        Unexpected::Signed(n) => format!("the number `{n}`"),
        Unexpected::Float(n) => format!("the number `{n}`"),
        Unexpected::Char(c) => format!("the text {:?}", c.to_string()),
        Unexpected::Str(s) => format!("the text {s:?}"),
        Unexpected::Bytes(_) => "binary data".to_owned(),
        Unexpected::Unit => "null".to_owned(),
        Unexpected::Option => "an optional value".to_owned(),
        Unexpected::NewtypeStruct => "a value".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        Unexpected::Map => "a mapping".to_owned(),
        Unexpected::Enum | Unexpected::UnitVariant => "an enum value".to_owned(),
        Unexpected::NewtypeVariant | Unexpected::TupleVariant | Unexpected::StructVariant => {
            "an enum value".to_owned()
        }
        Unexpected::Other(o) => (*o).to_owned(),
    }
}

/// Rewrites serde's "expected" phrases (`struct ApplicationSpec`, `i64`, `a sequence`) as
/// YAML terms.
fn describe_expected(exp: &dyn de::Expected) -> String {
    let text = exp.to_string();
    if text.starts_with("struct ") || text.starts_with("a map") || text == "map" {
        return "a mapping".to_owned();
    }
    match text.as_str() {
        "a sequence" | "sequence" => "a list".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize"
        | "usize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "bool" => "`true` or `false`".to_owned(),
        "a string" | "string" => "text".to_owned(),
        _ => text,
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(DeErrorKind::Custom(msg.to_string()))
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let expected = describe_expected(exp);
        let scalar = matches!(
            unexp,
            Unexpected::Bool(_)
                | Unexpected::Unsigned(_)
                | Unexpected::Signed(_)
                | Unexpected::Float(_)
        );
        let hint = if expected == "text" && scalar {
            Some("put the value in quotes to keep it as text")
        } else if expected == "a whole number" && matches!(unexp, Unexpected::Str(_)) {
            Some("remove the quotes")
        } else if expected == "`true` or `false`" && matches!(unexp, Unexpected::Str(_)) {
            Some("write `true` or `false` without quotes")
        } else if expected == "a list" && (scalar || matches!(unexp, Unexpected::Str(_))) {
            Some("write each item on its own line, starting with `- `")
        } else {
            None
        };
        DeError::new(DeErrorKind::InvalidType {
            found: describe_unexpected(&unexp),
            expected,
            hint,
        })
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(DeErrorKind::InvalidValue {
            found: describe_unexpected(&unexp),
            expected: describe_expected(exp),
        })
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DeError::new(DeErrorKind::InvalidLength {
            length: len,
            expected: exp.to_string(),
        })
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(DeErrorKind::UnknownVariant {
            value: variant.to_owned(),
            expected,
        })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(DeErrorKind::UnknownField {
            field: field.to_owned(),
            expected,
        })
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(DeErrorKind::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(DeErrorKind::DuplicateField(field))
    }
}

/// Deserialises a model type from a node.
pub(crate) fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: &PathLink::ROOT,
    })
}

/// The text form of a scalar used as a mapping key (`1: x` has the key `"1"`, as
/// Kubernetes' YAML-to-JSON conversion does).
fn key_text(node: &Node) -> Result<Cow<'_, str>, DeError> {
    match &node.value {
        NodeValue::Str(s) => Ok(Cow::Borrowed(s)),
        NodeValue::Bool(b) => Ok(Cow::Owned(b.to_string())),
        NodeValue::Int(i) => Ok(Cow::Owned(i.to_string())),
        NodeValue::UInt(u) => Ok(Cow::Owned(u.to_string())),
        NodeValue::Float(f) => Ok(Cow::Owned(f.to_string())),
        NodeValue::Null => Err(DeError::new(DeErrorKind::Custom(
            "a mapping key is null; write the key as text".to_owned(),
        ))),
        NodeValue::Seq(_) | NodeValue::Map(_) => Err(DeError::new(DeErrorKind::Custom(
            "a mapping key is a list or mapping; keys must be text".to_owned(),
        ))),
    }
}

struct NodeDe<'n, 'p> {
    node: &'n Node,
    path: &'p PathLink<'p>,
}

impl<'n, 'p> NodeDe<'n, 'p> {
    fn visit_any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Bool(b) => visitor.visit_bool(*b),
            NodeValue::Int(i) => visitor.visit_i64(*i),
            NodeValue::UInt(u) => visitor.visit_u64(*u),
            NodeValue::Float(f) => visitor.visit_f64(*f),
            NodeValue::Str(s) => visitor.visit_str(s),
            NodeValue::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                path: self.path,
            }),
            NodeValue::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                pending: None,
                path: self.path,
            }),
        };
        result.map_err(|e| e.at(self.path, self.node))
    }

    fn visit_empty_seq<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor
            .visit_seq(SeqDe {
                items: [].iter().enumerate(),
                path: self.path,
            })
            .map_err(|e| e.at(self.path, self.node))
    }

    fn visit_empty_map<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor
            .visit_map(MapDe {
                entries: [].iter(),
                pending: None,
                path: self.path,
            })
            .map_err(|e| e.at(self.path, self.node))
    }

    fn unexpected(&self) -> Unexpected<'_> {
        match &self.node.value {
            NodeValue::Null => Unexpected::Unit,
            NodeValue::Bool(b) => Unexpected::Bool(*b),
            NodeValue::Int(i) => Unexpected::Signed(*i),
            NodeValue::UInt(u) => Unexpected::Unsigned(*u),
            NodeValue::Float(f) => Unexpected::Float(*f),
            NodeValue::Str(s) => Unexpected::Str(s),
            NodeValue::Seq(_) => Unexpected::Seq,
            NodeValue::Map(_) => Unexpected::Map,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.node.value, NodeValue::Null)
    }
}

macro_rules! null_as {
    ($($method:ident => $visit:ident($zero:expr)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                if self.is_null() {
                    let (path, node) = (self.path, self.node);
                    visitor.$visit::<DeError>($zero).map_err(|e| e.at(path, node))
                } else {
                    self.visit_any(visitor)
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for NodeDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_any(visitor)
    }

    null_as! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_any(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, node) = (self.path, self.node);
        if self.is_null() {
            visitor
                .visit_none::<DeError>()
                .map_err(|e| e.at(path, node))
        } else {
            visitor.visit_some(self).map_err(|e| e.at(path, node))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.visit_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (path, node) = (self.path, self.node);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(path, node))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            self.visit_empty_seq(visitor)
        } else {
            self.visit_any(visitor)
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            self.visit_empty_map(visitor)
        } else {
            self.visit_any(visitor)
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Derived struct visitors also accept lists (fields by position); YAML users never
        // mean that, so only mappings (or null) are objects.
        match &self.node.value {
            NodeValue::Map(_) | NodeValue::Null => self.deserialize_map(visitor),
            _ => Err(
                <DeError as de::Error>::invalid_type(self.unexpected(), &"a mapping")
                    .at(self.path, self.node),
            ),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (path, node) = (self.path, self.node);
        match &node.value {
            NodeValue::Str(s) => {
                let de: de::value::StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                visitor.visit_enum(de).map_err(|e| e.at(path, node))
            }
            NodeValue::Null => {
                let de: de::value::StrDeserializer<'_, DeError> = "".into_deserializer();
                visitor.visit_enum(de).map_err(|e| e.at(path, node))
            }
            _ => self.visit_any(visitor),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// Deserialises a mapping key: always as text.
struct KeyDe<'n, 'p> {
    node: &'n Node,
    text: Cow<'n, str>,
    path: &'p PathLink<'p>,
}

impl<'de> Deserializer<'de> for KeyDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, node) = (self.path, self.node);
        visitor
            .visit_str::<DeError>(&self.text)
            .map_err(|e| e.at(path, node))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct SeqDe<'n, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'n, Node>>,
    path: &'p PathLink<'p>,
}

impl<'de> SeqAccess<'de> for SeqDe<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((index, node)) => {
                let link = PathLink {
                    parent: Some(self.path),
                    segment: LinkSegment::Index(index),
                };
                seed.deserialize(NodeDe { node, path: &link })
                    .map(Some)
                    .map_err(|e| e.at(&link, node))
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'n, 'p> {
    entries: std::slice::Iter<'n, (Node, Node)>,
    pending: Option<(&'n Node, Cow<'n, str>)>,
    path: &'p PathLink<'p>,
}

impl<'de> MapAccess<'de> for MapDe<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let text = key_text(key).map_err(|e| e.at(self.path, key))?;
        let link = PathLink {
            parent: Some(self.path),
            segment: LinkSegment::Key(text.clone()),
        };
        let k = seed
            .deserialize(KeyDe {
                node: key,
                text: text.clone(),
                path: &link,
            })
            .map_err(|e| e.at(&link, key))?;
        self.pending = Some((value, text));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((node, text)) = self.pending.take() else {
            return Err(DeError::new(DeErrorKind::Custom(
                "internal error: value requested before key".to_owned(),
            )));
        };
        let link = PathLink {
            parent: Some(self.path),
            segment: LinkSegment::Key(text),
        };
        seed.deserialize(NodeDe { node, path: &link })
            .map_err(|e| e.at(&link, node))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
