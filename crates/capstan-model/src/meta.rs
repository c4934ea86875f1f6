//! Kubernetes-style object metadata shared by every kind: [`ObjectMeta`], [`ApiVersion`],
//! [`Timestamp`].
//!
//! This is a small, self-contained subset of `k8s.io/apimachinery`'s `ObjectMeta` with the
//! same wire names, so that `kubectl get application -o yaml` output parses as it is. The
//! model crate does not depend on `k8s-openapi`.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The API group and version Capstan's own objects use.
pub const CAPSTAN_API_VERSION: &str = "capstan.dev/v1alpha1";
/// The API group and version of Argo CD's objects, accepted as input for `Application` and
/// `AppProject`.
pub const ARGOCD_API_VERSION: &str = "argoproj.io/v1alpha1";

/// Which API an object was written for. An object remembers it, so that it serialises back
/// with the `apiVersion` it was parsed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// `capstan.dev/v1alpha1`, Capstan's own API.
    #[default]
    Capstan,
    /// `argoproj.io/v1alpha1`, Argo CD's API (same field names as Capstan's for the kinds
    /// both have).
    ArgoCd,
}

impl ApiVersion {
    /// The `apiVersion` string, e.g. `capstan.dev/v1alpha1`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::Capstan => CAPSTAN_API_VERSION,
            ApiVersion::ArgoCd => ARGOCD_API_VERSION,
        }
    }

    /// Parses an `apiVersion` string; `None` for any other API.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            CAPSTAN_API_VERSION => Some(ApiVersion::Capstan),
            ARGOCD_API_VERSION => Some(ApiVersion::ArgoCd),
            _ => None,
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ApiVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ApiVersion::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unsupported apiVersion {text:?}; use {CAPSTAN_API_VERSION} (or {ARGOCD_API_VERSION} for Argo CD objects)"
            ))
        })
    }
}

/// A point in time as Kubernetes writes it (RFC 3339, e.g. `2024-05-01T12:00:00Z`).
///
/// Kept as the text it was read from, so it serialises back unchanged; see
/// [`Timestamp::is_rfc3339`] for the format check validation uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub String);

impl Timestamp {
    /// Wraps an RFC 3339 time text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The time as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text has the RFC 3339 shape Kubernetes writes: `YYYY-MM-DDTHH:MM:SS`,
    /// optional fractional seconds, then `Z` or `±HH:MM`.
    pub fn is_rfc3339(&self) -> bool {
        is_rfc3339(&self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|s| s.len() == range.len() && s.iter().all(u8::is_ascii_digit))
    };
    let num = |range: std::ops::Range<usize>| -> u32 {
        text.get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or(u32::MAX)
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !(b[10] == b'T' || b[10] == b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Standard object metadata (`metadata:`), with Kubernetes' wire names.
///
/// `labels` and `annotations` keep the order they were written in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The object's name, unique per kind (and namespace). Must be a DNS-1123 subdomain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Prefix for a server-generated name (accepted for compatibility; not used by Capstan).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    /// The namespace the object lives in (for Argo CD's "apps in any namespace").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Server-assigned unique id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Server-assigned version used for optimistic concurrency.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Sequence number of the desired state (bumped on every spec change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When the object was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Timestamp>,
    /// When deletion was requested; set while finalizers run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Timestamp>,
    /// Grace period of a pending deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Identifying key/value pairs, used by selectors.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// Non-identifying key/value pairs (e.g. `argocd.argoproj.io/refresh`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
    /// Objects this one depends on (e.g. the app-of-apps parent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// Finalizers that must run before deletion completes, e.g.
    /// `resources-finalizer.argocd.argoproj.io` (cascade delete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Server-side apply bookkeeping, kept opaque so exported objects round-trip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<serde_json::Value>,
    /// Deprecated Kubernetes field, accepted so old exports parse.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
}

impl ObjectMeta {
    /// Metadata with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// A reference to an owning object (`metadata.ownerReferences[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OwnerReference {
    /// API version of the owner.
    #[serde(default)]
    pub api_version: String,
    /// Kind of the owner.
    #[serde(default)]
    pub kind: String,
    /// Name of the owner.
    #[serde(default)]
    pub name: String,
    /// UID of the owner.
    #[serde(default)]
    pub uid: String,
    /// Whether the owner is the managing controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// Whether the owner cannot be deleted before this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shapes() {
        for ok in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.123456Z",
            "2024-05-01T12:00:00+02:00",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T12:00:00Z",
            "2024-05-01 12:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T25:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
