//! Validation: every rule an object must meet beyond its shape, reported all at once.
//!
//! Parsing already guarantees the shape (types, known fields, enum values). Validation
//! checks meaning: names, exclusive fields, references between fields, durations, cron
//! schedules, sync options, globs, RBAC policy lines. [`Validate::validate`] returns
//! every problem found, each with its field path and a message that says what to do:
//!
//! ```text
//! 2 problems:
//!   - spec.destination: set either server or name, not both
//!   - spec.sources[1].ref: "values" is used by spec.sources[0]; give each source its own ref
//! ```
//!
//! The building blocks (name rules, Go durations, cron, globs, sync options) are public so
//! the API and CLI can check single values with the same messages.

mod application;
mod cluster;
pub mod cron;
pub mod duration;
pub mod glob;
mod meta;
pub mod names;
mod project;
pub mod sync_option;

use crate::path::FieldPath;
use std::fmt;

pub use sync_option::{KNOWN_SYNC_OPTIONS, SyncOption, parse_sync_option};

/// One problem: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field, e.g. `spec.destination`.
    pub path: FieldPath,
    /// What is wrong and how to fix it, in lower case.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in an object (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(Vec<ValidationError>);

impl ValidationErrors {
    /// The problems, in the order the fields appear.
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `ValidationErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether there is a problem at exactly this path (e.g. `"spec.destination"`).
    pub fn has_path(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path.to_string() == path)
    }

    /// The messages of problems at exactly this path.
    pub fn messages_at(&self, path: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|e| e.path.to_string() == path)
            .map(|e| e.message.as_str())
            .collect()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.len() {
            1 => write!(f, "1 problem:")?,
            n => write!(f, "{n} problems:")?,
        }
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl IntoIterator for ValidationErrors {
    type Item = ValidationError;
    type IntoIter = std::vec::IntoIter<ValidationError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Objects that can be checked against Capstan's rules.
pub trait Validate {
    /// Checks every rule and returns all problems found.
    fn validate(&self) -> Result<(), ValidationErrors>;
}

/// Collects problems while rules run.
#[derive(Debug, Default)]
pub(crate) struct Report {
    errors: Vec<ValidationError>,
}

impl Report {
    pub(crate) fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path: path.clone(),
            message: message.into(),
        });
    }

    pub(crate) fn check(&mut self, path: &FieldPath, result: Result<(), String>) {
        if let Err(message) = result {
            self.error(path, message);
        }
    }

    pub(crate) fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.errors))
        }
    }
}

/// Checks a URL of the form `http(s)://host[:port][/path]`.
pub(crate) fn check_http_url(value: &str, schemes: &[&str]) -> Result<(), String> {
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(format!(
            "{value:?} is not a URL; write it with a scheme, e.g. {}://host",
            schemes.first().copied().unwrap_or("https")
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(format!(
            "{value:?} uses the scheme {scheme:?}; use {}",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{value:?} has no host"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{value:?} contains spaces or control characters"));
    }
    Ok(())
}

/// Reports duplicates in a list of keys, at the later occurrence.
pub(crate) fn check_unique<'a>(
    report: &mut Report,
    list_path: &FieldPath,
    keys: impl IntoIterator<Item = (usize, &'a str)>,
    what: &str,
) {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, key) in keys {
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            report.error(
                &list_path.index(i),
                format!("{what} {key:?} is already given at index {first}; remove the duplicate"),
            );
        } else {
            seen.push((key, i));
        }
    }
}
