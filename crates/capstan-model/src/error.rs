//! Errors of parsing ([`ParseError`]) and writing ([`SerializeError`]) objects.
//!
//! Validation problems are a different thing, reported all at once as
//! [`crate::validate::ValidationErrors`].

use crate::codec::node::Location;
use crate::path::FieldPath;

fn at(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!("{l}: "),
        None => String::new(),
    }
}

/// Why a YAML or JSON text could not be turned into model objects.
///
/// Every variant says where (document, line and column, field path) when that is known,
/// and the message says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input (or one document of it) is larger than Capstan accepts.
    #[error(
        "{what} is {size} bytes, over the limit of {limit} bytes; split it into smaller documents"
    )]
    TooLarge {
        /// `the input` or `the document`.
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The text is not well-formed YAML or JSON, or goes over a parser limit (nesting
    /// depth, aliases, number of nodes).
    #[error("{}{message}", at(location))]
    Syntax {
        /// What is wrong.
        message: String,
        /// Where, if known.
        location: Option<Location>,
    },
    /// A value does not fit the schema: wrong type, unknown field, unknown enum value,
    /// missing required field.
    #[error("{}{path}: {message}", at(location))]
    Field {
        /// The field, e.g. `spec.syncpolicy`.
        path: FieldPath,
        /// What is wrong and what to do.
        message: String,
        /// Where, if known.
        location: Option<Location>,
    },
    /// The input holds no document.
    #[error(
        "the input holds no object; write a YAML document with apiVersion, kind, metadata and spec"
    )]
    Empty,
    /// The input holds several documents where one object is expected.
    #[error(
        "the input holds {count} documents but one object is expected; split them, or read them with parse_objects_yaml"
    )]
    MultipleDocuments {
        /// How many documents were found.
        count: usize,
    },
    /// The object is of another kind than the one asked for.
    #[error(
        "{}kind: expected {expected}, found {found}; fix `kind` or read the file as {found}",
        at(location)
    )]
    WrongKind {
        /// The kind asked for.
        expected: &'static str,
        /// The kind found.
        found: &'static str,
        /// Where `kind` is.
        location: Option<Location>,
    },
    /// A problem in one document of a multi-document input.
    #[error("document {number}: {source}")]
    InDocument {
        /// 1-based document number.
        number: usize,
        /// The problem.
        #[source]
        source: Box<ParseError>,
    },
}

impl ParseError {
    /// Line and column of the problem, if known.
    pub fn location(&self) -> Option<Location> {
        match self {
            ParseError::Syntax { location, .. }
            | ParseError::Field { location, .. }
            | ParseError::WrongKind { location, .. } => *location,
            ParseError::InDocument { source, .. } => source.location(),
            _ => None,
        }
    }

    /// Field path of the problem, if it is about a field.
    pub fn path(&self) -> Option<&FieldPath> {
        match self {
            ParseError::Field { path, .. } => Some(path),
            ParseError::InDocument { source, .. } => source.path(),
            _ => None,
        }
    }

    /// The message without location and path.
    pub fn message(&self) -> String {
        match self {
            ParseError::Syntax { message, .. } | ParseError::Field { message, .. } => {
                message.clone()
            }
            ParseError::InDocument { source, .. } => source.message(),
            other => other.to_string(),
        }
    }

    /// 1-based number of the document the problem is in, for multi-document input.
    pub fn document(&self) -> Option<usize> {
        match self {
            ParseError::InDocument { number, .. } => Some(*number),
            _ => None,
        }
    }

    pub(crate) fn in_document(self, number: usize) -> Self {
        ParseError::InDocument {
            number,
            source: Box::new(self),
        }
    }
}

impl From<crate::codec::de::DeError> for ParseError {
    fn from(e: crate::codec::de::DeError) -> Self {
        ParseError::Field {
            message: e.message(),
            path: e.path.unwrap_or_default(),
            location: e.location,
        }
    }
}

/// Why an object could not be written out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SerializeError {
    /// Writing YAML failed.
    #[error("cannot write YAML: {0}")]
    Yaml(#[source] serde_saphyr::SerializeError),
    /// Writing JSON failed.
    #[error("cannot write JSON: {0}")]
    Json(#[source] serde_json::Error),
}
