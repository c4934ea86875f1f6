//! [`FieldPath`]: where in an object a problem is, written the way users read it,
//! e.g. `spec.sources[1].helm.valueFiles[0]` or `metadata.labels["app.kubernetes.io/name"]`.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A field or map key, by its wire name.
    Field(String),
    /// A list position, counted from 0.
    Index(usize),
}

/// A path from the document root to a field, by wire names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<PathSegment>);

impl FieldPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses a dotted path such as `spec.source` (no indexes); handy in tests and callers
    /// that build paths by hand.
    pub fn parse(dotted: &str) -> Self {
        Self(
            dotted
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| PathSegment::Field(s.to_owned()))
                .collect(),
        )
    }

    /// This path extended by a field or key.
    pub fn field(&self, name: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.0.push(PathSegment::Field(name.into()));
        next
    }

    /// This path extended by a list position.
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(PathSegment::Index(index));
        next
    }

    /// Appends a segment in place.
    pub fn push(&mut self, segment: PathSegment) {
        self.0.push(segment);
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a key can be written bare after a dot (otherwise it is written `["…"]`).
fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document root)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSegment::Field(name) if is_plain_key(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                PathSegment::Field(name) => write!(f, "[{name:?}]")?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_users_write_it() {
        let p = FieldPath::root()
            .field("spec")
            .field("sources")
            .index(1)
            .field("ref");
        assert_eq!(p.to_string(), "spec.sources[1].ref");
        let l = FieldPath::parse("metadata.labels").field("app.kubernetes.io/name");
        assert_eq!(l.to_string(), "metadata.labels[\"app.kubernetes.io/name\"]");
        assert_eq!(FieldPath::root().to_string(), "(document root)");
    }
}
