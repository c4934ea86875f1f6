//! Size limits and request validation shared by every backend, so that a bad request fails the
//! same way whatever the backend (the etcd backend checks these before sending anything).
//!
//! Also home of the continue-token format, the prefix-to-range helper a range-based backend
//! (etcd) needs, and [`key_with_segment`] for keys that embed arbitrary text.

use std::collections::HashSet;

use crate::error::{Result, StoreError, display_key};
use crate::types::{Revision, Txn, TxnOp};

/// Longest accepted key, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// Largest accepted value, in bytes: 1.5 MiB, etcd's default request limit. (The etcd backend
/// runs etcd with `--max-request-bytes` of at least [`MAX_REQUEST_BYTES`] plus framing.)
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// Largest accepted request (the keys and values of one put or transaction together), in bytes.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// Most compares, and most operations, in one transaction (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// Checks a key: non-empty, at most [`MAX_KEY_BYTES`], no NUL byte.
pub fn validate_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(invalid_key(key, "a key must not be empty"));
    }
    validate_prefix(key)
}

/// Checks a list or watch prefix: like a key, except that the empty prefix (everything) is
/// allowed.
pub fn validate_prefix(prefix: &[u8]) -> Result<()> {
    if prefix.len() > MAX_KEY_BYTES {
        return Err(invalid_key(
            prefix,
            &format!(
                "{} bytes is longer than the limit of {MAX_KEY_BYTES} bytes",
                prefix.len()
            ),
        ));
    }
    if let Some(at) = prefix.iter().position(|byte| *byte == 0) {
        return Err(invalid_key(
            prefix,
            &format!("contains a NUL byte at offset {at}"),
        ));
    }
    Ok(())
}

/// Checks a value against [`MAX_VALUE_BYTES`].
pub fn validate_value(key: &[u8], value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            key: display_key(key),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Checks a whole transaction: every key and value, the operation counts, no key written twice,
/// and the total size.
pub fn validate_txn(txn: &Txn) -> Result<()> {
    if txn.compares.len() > MAX_TXN_OPS {
        return Err(StoreError::invalid_request(format!(
            "a transaction may hold at most {MAX_TXN_OPS} compares, this one has {}",
            txn.compares.len()
        )));
    }
    if txn.success.len() > MAX_TXN_OPS {
        return Err(StoreError::invalid_request(format!(
            "a transaction may hold at most {MAX_TXN_OPS} operations, this one has {}",
            txn.success.len()
        )));
    }
    let mut total = 0usize;
    for compare in &txn.compares {
        validate_key(&compare.key)?;
        total += compare.key.len();
    }
    let mut written = HashSet::with_capacity(txn.success.len());
    for op in &txn.success {
        validate_key(op.key())?;
        if !written.insert(op.key()) {
            return Err(StoreError::invalid_request(format!(
                "key {:?} is written more than once in one transaction",
                display_key(op.key())
            )));
        }
        total += op.key().len();
        if let TxnOp::Put { key, value } = op {
            validate_value(key, value)?;
            total += value.len();
        }
    }
    if total > MAX_REQUEST_BYTES {
        return Err(StoreError::invalid_request(format!(
            "the transaction's keys and values total {total} bytes, more than the limit of {MAX_REQUEST_BYTES} bytes"
        )));
    }
    Ok(())
}

/// `prefix` followed by `text` as one key segment: bytes other than letters, digits, `.`,
/// `-`, `_` and `~` are percent-encoded, so a URL (with its `/` and `:`) stays one segment and
/// two different texts never give the same key.
pub fn key_with_segment(prefix: &str, text: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + text.len());
    key.push_str(prefix);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~') {
            key.push(char::from(byte));
        } else {
            key.push_str(&format!("%{byte:02X}"));
        }
    }
    key
}

/// The exclusive end of the key range holding every key that starts with `prefix`, or `None`
/// when the range is unbounded (empty prefix, or a prefix of only `0xff` bytes). This is etcd's
/// `range_end` for a prefix.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Where a list of `prefix` with `options` reads: at which revision (`None`: the latest) and
/// after which key (`None`: from the start). Checks what every backend refuses alike: the
/// prefix, revision 0, a token of another list, a token with another revision.
pub fn list_position(
    prefix: &[u8],
    options: &crate::ListOptions,
) -> Result<(Option<Revision>, Option<Vec<u8>>)> {
    validate_prefix(prefix)?;
    if options.revision == Some(0) {
        return Err(StoreError::invalid_request(
            "list revision 0 is not a revision; leave it unset to read the latest",
        ));
    }
    let token = options
        .continue_token
        .as_deref()
        .map(|token| ContinueToken::decode(token, prefix))
        .transpose()?;
    match token {
        Some(token) => {
            if options
                .revision
                .is_some_and(|revision| revision != token.revision)
            {
                return Err(StoreError::invalid_request(
                    "a continued list reads at its token's revision; do not also set another revision",
                ));
            }
            Ok((Some(token.revision), Some(token.last_key)))
        }
        None => Ok((options.revision, None)),
    }
}

/// A decoded continue token: where the next page starts and at which revision it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    /// The revision every page of the list reads at.
    pub revision: Revision,
    /// The last key of the previous page; the next page starts strictly after it.
    pub last_key: Vec<u8>,
}

const TOKEN_VERSION: &str = "c1";

impl ContinueToken {
    /// Encodes the token as an opaque, URL-safe string.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(TOKEN_VERSION.len() + 22 + self.last_key.len() * 2);
        out.push_str(TOKEN_VERSION);
        out.push('.');
        out.push_str(&self.revision.to_string());
        out.push('.');
        for byte in &self.last_key {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Decodes a token produced by [`ContinueToken::encode`] and checks that it belongs to a
    /// list of `prefix`.
    pub fn decode(token: &str, prefix: &[u8]) -> Result<Self> {
        let bad = |why: &str| {
            StoreError::invalid_request(format!("continue token {token:?} is not valid: {why}"))
        };
        let mut parts = token.split('.');
        if parts.next() != Some(TOKEN_VERSION) {
            return Err(bad("unknown format"));
        }
        let revision = parts
            .next()
            .and_then(|text| text.parse::<Revision>().ok())
            .filter(|revision| *revision > 0)
            .ok_or_else(|| bad("no revision"))?;
        let hex = parts.next().ok_or_else(|| bad("no key"))?;
        if parts.next().is_some() || hex.len() % 2 != 0 {
            return Err(bad("malformed key"));
        }
        let mut last_key = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks(2) {
            let high = hex_value(pair[0]).ok_or_else(|| bad("malformed key"))?;
            let low = hex_value(pair[1]).ok_or_else(|| bad("malformed key"))?;
            last_key.push(high << 4 | low);
        }
        if !last_key.starts_with(prefix) {
            return Err(bad("it was issued for a list of another prefix"));
        }
        Ok(ContinueToken { revision, last_key })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn invalid_key(key: &[u8], reason: &str) -> StoreError {
    StoreError::InvalidKey {
        key: display_key(key),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_handles_trailing_ff() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"/a\xff"), Some(b"/b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn continue_token_round_trips_and_rejects_garbage() {
        let token = ContinueToken {
            revision: 42,
            last_key: b"/a/\xff\x01".to_vec(),
        };
        let text = token.encode();
        assert_eq!(ContinueToken::decode(&text, b"/a/").expect("valid"), token);
        assert!(ContinueToken::decode(&text, b"/b/").is_err());
        for bad in [
            "",
            "c1",
            "c1.x.2f",
            "c1.0.2f",
            "c1.5.2",
            "c1.5.zz",
            "c2.5.2f",
            "c1.5.2f.1",
        ] {
            assert!(ContinueToken::decode(bad, b"").is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_validated() {
        assert!(validate_key(b"").is_err());
        assert!(validate_key(b"/a\0b").is_err());
        assert!(validate_key(&vec![b'a'; MAX_KEY_BYTES + 1]).is_err());
        assert!(validate_key(&vec![b'a'; MAX_KEY_BYTES]).is_ok());
        assert!(validate_prefix(b"").is_ok());
    }

    #[test]
    fn txns_are_validated() {
        assert!(validate_txn(&Txn::new().put("/a", "1").delete("/a")).is_err());
        assert!(validate_txn(&Txn::new().put("/a", vec![0; MAX_VALUE_BYTES + 1])).is_err());
        let big = (0..2).fold(Txn::new(), |txn, i| {
            txn.put(format!("/k{i}"), vec![0; MAX_VALUE_BYTES])
        });
        assert!(validate_txn(&big).is_err());
        let many = (0..=MAX_TXN_OPS).fold(Txn::new(), |txn, i| txn.put(format!("/k{i}"), "v"));
        assert!(validate_txn(&many).is_err());
        assert!(validate_txn(&Txn::new().put("/a", "1").delete("/b")).is_ok());
    }
}
