//! The on-disk encoding of entries (table `kv`) and history records (table `log`).
//!
//! A small hand-written, versioned, little-endian format: every record starts with a format
//! byte, every length is checked on decode, and anything unexpected is reported as
//! [`StoreError::Corrupt`] with the table and key it was found at — never a panic.

use crate::error::{Result, StoreError, display_key};
use crate::types::{KeyMeta, KeyValue, Revision, WatchEvent};

const ENTRY_FORMAT: u8 = 1;
const EVENT_FORMAT: u8 = 1;
const KIND_PUT: u8 = 0;
const KIND_DELETE: u8 = 1;

/// Encodes a `kv` table value: metadata followed by the user's value.
pub(super) fn encode_entry(meta: KeyMeta, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 24 + value.len());
    out.push(ENTRY_FORMAT);
    out.extend_from_slice(&meta.create_revision.to_le_bytes());
    out.extend_from_slice(&meta.mod_revision.to_le_bytes());
    out.extend_from_slice(&meta.version.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a `kv` table value stored under `key`.
pub(super) fn decode_entry(key: &[u8], bytes: &[u8]) -> Result<KeyValue> {
    let location = || format!("table kv, key {:?}", display_key(key));
    let mut cursor = Cursor { bytes, pos: 0 };
    let format = cursor.u8().ok_or_else(|| truncated(location()))?;
    if format != ENTRY_FORMAT {
        return Err(StoreError::corrupt(
            format!("unknown entry format {format}"),
            location(),
        ));
    }
    let create_revision = cursor.u64().ok_or_else(|| truncated(location()))?;
    let mod_revision = cursor.u64().ok_or_else(|| truncated(location()))?;
    let version = cursor.u64().ok_or_else(|| truncated(location()))?;
    if create_revision == 0 || mod_revision < create_revision || version == 0 {
        return Err(StoreError::corrupt(
            format!(
                "impossible metadata create={create_revision} mod={mod_revision} version={version}"
            ),
            location(),
        ));
    }
    Ok(KeyValue {
        key: key.to_vec(),
        value: cursor.rest().to_vec(),
        create_revision,
        mod_revision,
        version,
    })
}

/// Decodes only the metadata of a `kv` table value (compares need no more).
pub(super) fn decode_meta(key: &[u8], bytes: &[u8]) -> Result<KeyMeta> {
    // Entries are small relative to the cost of a second code path; reuse the full decoder's
    // checks on the header only.
    let header = bytes.get(..25).unwrap_or(bytes);
    decode_entry(key, header).map(|kv| kv.meta())
}

/// Encodes a `log` table value: one change, with the commit time (for time-based retention).
pub(super) fn encode_event(committed_at_ms: u64, event: &WatchEvent) -> Vec<u8> {
    let (kind, key, revision, prev) = match event {
        WatchEvent::Put { kv, prev } => (KIND_PUT, &kv.key, kv.mod_revision, prev),
        WatchEvent::Delete {
            key,
            revision,
            prev,
        } => (KIND_DELETE, key, *revision, prev),
    };
    let mut out = Vec::with_capacity(64 + key.len());
    out.push(EVENT_FORMAT);
    out.push(kind);
    out.extend_from_slice(&committed_at_ms.to_le_bytes());
    out.extend_from_slice(&revision.to_le_bytes());
    put_bytes(&mut out, key);
    match prev {
        Some(prev) => {
            out.push(1);
            out.extend_from_slice(&prev.create_revision.to_le_bytes());
            out.extend_from_slice(&prev.mod_revision.to_le_bytes());
            out.extend_from_slice(&prev.version.to_le_bytes());
            put_bytes(&mut out, &prev.value);
        }
        None => out.push(0),
    }
    if let WatchEvent::Put { kv, .. } = event {
        out.extend_from_slice(&kv.create_revision.to_le_bytes());
        out.extend_from_slice(&kv.version.to_le_bytes());
        put_bytes(&mut out, &kv.value);
    }
    out
}

/// A decoded `log` record.
pub(super) struct LogRecord {
    /// When the change was committed, in milliseconds since the Unix epoch.
    pub(super) committed_at_ms: u64,
    /// The change.
    pub(super) event: WatchEvent,
}

/// Decodes a `log` table value found at `position` (revision, index within the revision).
pub(super) fn decode_event(position: (Revision, u32), bytes: &[u8]) -> Result<LogRecord> {
    let location = || format!("table log, revision {} index {}", position.0, position.1);
    let mut cursor = Cursor { bytes, pos: 0 };
    let mut decode = || -> Option<Result<LogRecord>> {
        let format = cursor.u8()?;
        if format != EVENT_FORMAT {
            return Some(Err(StoreError::corrupt(
                format!("unknown log record format {format}"),
                location(),
            )));
        }
        let kind = cursor.u8()?;
        let committed_at_ms = cursor.u64()?;
        let revision = cursor.u64()?;
        let key = cursor.bytes()?.to_vec();
        let prev = match cursor.u8()? {
            0 => None,
            1 => {
                let create_revision = cursor.u64()?;
                let mod_revision = cursor.u64()?;
                let version = cursor.u64()?;
                let value = cursor.bytes()?.to_vec();
                Some(KeyValue {
                    key: key.clone(),
                    value,
                    create_revision,
                    mod_revision,
                    version,
                })
            }
            other => {
                return Some(Err(StoreError::corrupt(
                    format!("bad previous-entry flag {other}"),
                    location(),
                )));
            }
        };
        let event = match kind {
            KIND_PUT => {
                let create_revision = cursor.u64()?;
                let version = cursor.u64()?;
                let value = cursor.bytes()?.to_vec();
                WatchEvent::Put {
                    kv: KeyValue {
                        key,
                        value,
                        create_revision,
                        mod_revision: revision,
                        version,
                    },
                    prev,
                }
            }
            KIND_DELETE => WatchEvent::Delete {
                key,
                revision,
                prev,
            },
            other => {
                return Some(Err(StoreError::corrupt(
                    format!("unknown event kind {other}"),
                    location(),
                )));
            }
        };
        if !cursor.rest().is_empty() {
            return Some(Err(StoreError::corrupt(
                "trailing bytes after the record",
                location(),
            )));
        }
        if revision != position.0 {
            return Some(Err(StoreError::corrupt(
                format!(
                    "record says revision {revision} but is stored under revision {}",
                    position.0
                ),
                location(),
            )));
        }
        Some(Ok(LogRecord {
            committed_at_ms,
            event,
        }))
    };
    decode().unwrap_or_else(|| Err(truncated(location())))
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are bounded by crate::limits far below u32::MAX.
    let len = u32::try_from(bytes.len()).expect("keys and values are limited to a few MiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn truncated(location: String) -> StoreError {
    StoreError::corrupt("record is truncated", location)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_le_bytes)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        self.pos = self.bytes.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: u64, modified: u64, version: u64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: modified,
            version,
        }
    }

    #[test]
    fn entries_round_trip() {
        let entry = kv("/a", "value", 3, 7, 2);
        let bytes = encode_entry(entry.meta(), &entry.value);
        assert_eq!(decode_entry(b"/a", &bytes).expect("decodes"), entry);
        assert_eq!(decode_meta(b"/a", &bytes).expect("decodes"), entry.meta());
    }

    #[test]
    fn events_round_trip() {
        let events = [
            WatchEvent::Put {
                kv: kv("/a", "2", 3, 7, 2),
                prev: Some(kv("/a", "1", 3, 3, 1)),
            },
            WatchEvent::Put {
                kv: kv("/a", "", 7, 7, 1),
                prev: None,
            },
            WatchEvent::Delete {
                key: b"/a".to_vec(),
                revision: 7,
                prev: Some(kv("/a", "1", 3, 3, 1)),
            },
        ];
        for event in events {
            let bytes = encode_event(99, &event);
            let record = decode_event((7, 0), &bytes).expect("decodes");
            assert_eq!(record.committed_at_ms, 99);
            assert_eq!(record.event, event);
        }
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let entry = encode_entry(
            KeyMeta {
                create_revision: 1,
                mod_revision: 1,
                version: 1,
            },
            b"v",
        );
        for len in 0..25 {
            assert!(matches!(
                decode_entry(b"/a", &entry[..len]),
                Err(StoreError::Corrupt { .. })
            ));
        }
        let event = encode_event(
            1,
            &WatchEvent::Put {
                kv: kv("/a", "2", 3, 7, 2),
                prev: Some(kv("/a", "1", 3, 3, 1)),
            },
        );
        for len in 0..event.len() {
            assert!(matches!(
                decode_event((7, 0), &event[..len]),
                Err(StoreError::Corrupt { .. })
            ));
        }
        assert!(matches!(
            decode_event((8, 0), &event),
            Err(StoreError::Corrupt { .. })
        ));
        let mut flipped = event.clone();
        flipped[1] = 9;
        assert!(matches!(
            decode_event((7, 0), &flipped),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
