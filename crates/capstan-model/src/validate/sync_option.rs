//! Sync options (`syncPolicy.syncOptions`, `operation.sync.syncOptions`): the `Key=value`
//! strings Capstan understands.
//!
//! Argo CD compares these strings exactly, so `CreateNamespace = true` or
//! `createNamespace=true` silently do nothing there. Capstan refuses them with a fix.

use crate::suggest;

/// Every sync option key and the values it accepts.
pub const KNOWN_SYNC_OPTIONS: &[(&str, &[&str])] = &[
    ("Validate", &["true", "false"]),
    ("CreateNamespace", &["true", "false"]),
    ("PruneLast", &["true", "false"]),
    ("ApplyOutOfSyncOnly", &["true", "false"]),
    ("ServerSideApply", &["true", "false"]),
    ("ClientSideApplyMigration", &["true", "false"]),
    ("Replace", &["true", "false"]),
    ("Force", &["true", "false"]),
    (
        "PrunePropagationPolicy",
        &["foreground", "background", "orphan"],
    ),
    ("RespectIgnoreDifferences", &["true", "false"]),
    ("FailOnSharedResource", &["true", "false"]),
    ("SkipDryRunOnMissingResource", &["true", "false"]),
    ("Delete", &["true", "false", "confirm"]),
    ("Prune", &["true", "false", "confirm"]),
];

/// A sync option understood by Capstan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOption {
    /// The key, e.g. `CreateNamespace`.
    pub key: &'static str,
    /// The value, e.g. `true`.
    pub value: &'static str,
}

/// Parses one `Key=value` sync option, or says what is wrong with it.
pub fn parse_sync_option(text: &str) -> Result<SyncOption, String> {
    let keys: Vec<&str> = KNOWN_SYNC_OPTIONS.iter().map(|(k, _)| *k).collect();
    let Some((key, value)) = text.split_once('=') else {
        return Err(match suggest::closest(text, &keys) {
            Some(k) => format!("{text:?} has no value; write it as Key=value, e.g. {k}=true"),
            None => format!(
                "{text:?} is not a sync option; write Key=value with a key from {}",
                suggest::quoted_list(&keys)
            ),
        });
    };
    if key != key.trim() || value != value.trim() {
        return Err(format!(
            "{text:?} has spaces around '='; write it as {}={}",
            key.trim(),
            value.trim()
        ));
    }
    let Some((known_key, values)) = KNOWN_SYNC_OPTIONS.iter().find(|(k, _)| *k == key) else {
        return Err(match suggest::closest(key, &keys) {
            Some(k) => format!("unknown sync option {key:?}; did you mean `{k}`?"),
            None => format!(
                "unknown sync option {key:?}; use one of {}",
                suggest::quoted_list(&keys)
            ),
        });
    };
    let Some(known_value) = values.iter().find(|v| **v == value) else {
        return Err(match suggest::closest(value, values) {
            Some(v) => format!("{key}={value} is not valid; did you mean `{key}={v}`?"),
            None => format!(
                "{key}={value} is not valid; {key} takes {}",
                suggest::quoted_list(values)
            ),
        });
    };
    Ok(SyncOption {
        key: known_key,
        value: known_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_options() {
        for ok in [
            "Validate=false",
            "CreateNamespace=true",
            "PruneLast=true",
            "ApplyOutOfSyncOnly=true",
            "ServerSideApply=true",
            "Replace=true",
            "PrunePropagationPolicy=foreground",
            "PrunePropagationPolicy=background",
            "PrunePropagationPolicy=orphan",
            "RespectIgnoreDifferences=true",
            "FailOnSharedResource=true",
            "SkipDryRunOnMissingResource=true",
            "Delete=false",
            "Prune=false",
            "Prune=confirm",
        ] {
            assert!(parse_sync_option(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn explains_bad_options() {
        let e = |t: &str| parse_sync_option(t).expect_err(t);
        assert!(e("createNamespace=true").contains("did you mean `CreateNamespace`"));
        assert!(e("CreateNamespace = true").contains("spaces around '='"));
        assert!(e("CreateNamespace=True").contains("did you mean `CreateNamespace=true`"));
        assert!(
            e("PrunePropagationPolicy=delete").contains("`foreground`, `background`, `orphan`")
        );
        assert!(e("CreateNamespace").contains("has no value"));
        assert!(e("Frobnicate=yes").contains("unknown sync option"));
    }
}
