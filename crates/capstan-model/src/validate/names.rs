//! Kubernetes name rules: DNS-1123 labels and subdomains, qualified names (label and
//! annotation keys), label values. Each check returns a message that says what to write.

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A DNS-1123 label: at most 63 lowercase letters, digits and `-`, starting and ending
/// with a letter or digit (namespace names, for example).
pub fn check_dns1123_label(value: &str) -> Result<(), String> {
    const RULE: &str = "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit";
    if value.is_empty() {
        return Err(format!("must not be empty; {RULE}"));
    }
    if value.len() > 63 {
        return Err(format!(
            "{value:?} is {} characters long; {RULE}",
            value.len()
        ));
    }
    let ok = value.chars().all(|c| is_alnum_lower(c) || c == '-')
        && value.starts_with(is_alnum_lower)
        && value.ends_with(is_alnum_lower);
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid DNS-1123 label; {RULE}"))
    }
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels (object
/// names, for example).
pub fn check_dns1123_subdomain(value: &str) -> Result<(), String> {
    const RULE: &str = "use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";
    if value.is_empty() {
        return Err(format!("must not be empty; {RULE}"));
    }
    if value.len() > 253 {
        return Err(format!(
            "{value:?} is {} characters long; {RULE}",
            value.len()
        ));
    }
    let ok = value.split('.').all(|part| {
        !part.is_empty()
            && part.chars().all(|c| is_alnum_lower(c) || c == '-')
            && part.starts_with(is_alnum_lower)
            && part.ends_with(is_alnum_lower)
    });
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid name; {RULE}"))
    }
}

fn is_name_part(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !part.is_empty()
        && part.len() <= 63
        && part
            .chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
        && part.starts_with(alnum)
        && part.ends_with(alnum)
}

/// A qualified name, as label and annotation keys use: an optional DNS subdomain prefix and
/// `/`, then at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter
/// or digit (e.g. `app.kubernetes.io/name`).
pub fn check_qualified_name(value: &str) -> Result<(), String> {
    const RULE: &str = "write [prefix/]name where name has at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, and prefix is a DNS subdomain";
    let (prefix, name) = match value.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, value),
    };
    if let Some(p) = prefix
        && check_dns1123_subdomain(p).is_err()
    {
        return Err(format!("{value:?} has an invalid prefix {p:?}; {RULE}"));
    }
    if is_name_part(name) {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid key; {RULE}"))
    }
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid label value; use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit (or leave it empty)"
        ))
    }
}

/// An environment variable name: letters, digits and `_`, not starting with a digit.
pub fn check_env_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !value.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid environment variable name; use letters, digits and '_', not starting with a digit"
        ))
    }
}

/// An identifier for `ref` and similar names: a letter, then letters, digits, `-` and `_`,
/// at most 63 characters.
pub fn check_identifier(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid identifier; start with a letter and use at most 63 letters, digits, '-' and '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(check_dns1123_label("guestbook").is_ok());
        assert!(check_dns1123_label("a-1").is_ok());
        for bad in ["", "Guestbook", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(check_dns1123_label(bad).is_err(), "{bad}");
        }
        assert!(check_dns1123_subdomain("my.app-1").is_ok());
        for bad in ["", "my..app", "My.app", "app.", &"a".repeat(254)] {
            assert!(check_dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_and_values() {
        for ok in ["app", "app.kubernetes.io/name", "Team_Name", "a.b/c-d"] {
            assert!(check_qualified_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/x", "a/", "Bad_Prefix/x", "-x", "a/b/c"] {
            assert!(check_qualified_name(bad).is_err(), "{bad}");
        }
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_3").is_ok());
        assert!(check_label_value("has space").is_err());
        assert!(check_env_name("FOO_1").is_ok());
        assert!(check_env_name("1FOO").is_err());
        assert!(check_identifier("values").is_ok());
        assert!(check_identifier("1values").is_err());
        assert!(check_identifier("va/lues").is_err());
    }
}
