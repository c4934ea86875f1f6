//! [`Sensitive`]: a string that holds a credential.
//!
//! Every credential field of the model (passwords, tokens, private keys) has this type, so
//! code that stores objects can find them (and encrypt them at rest), and code that logs or
//! prints objects cannot leak them by accident: `Debug` prints `<redacted>`. Serialisation
//! writes the real value, because the store and the wire need it; the API layer removes
//! credentials before it returns an object (see [`crate::Repository::redacted`] and
//! [`crate::Cluster::redacted`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A credential held as text: its `Debug` output is `<redacted>`, it has no `Display`.
///
/// Read the value with [`Sensitive::expose`], only where the credential is used.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself. Call this only where the credential is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no credential is set (the empty string).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl From<String> for Sensitive {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Sensitive {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Serialize for Sensitive {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sensitive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value_but_serialisation_keeps_it() {
        let s = Sensitive::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(
            serde_json::to_string(&s).expect("serialises"),
            "\"hunter2\""
        );
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Sensitive::default()), "\"\"");
    }
}
