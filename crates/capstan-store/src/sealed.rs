//! Encryption at rest: [`SealedStore`] wraps any [`Store`] and encrypts the values under
//! chosen key prefixes (credentials: clusters, repositories, the API's secrets) with an
//! operator-supplied key, so the store's files, backups and etcd snapshots hold no secret in
//! clear. Everything above it — the typed layer, the controller, the API — reads and writes
//! plaintext and does not know.
//!
//! A sealed value is `capstan:sealed:v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`,
//! ChaCha20-Poly1305 (ring) with a random 96-bit nonce per write and the value's key as
//! associated data, so a sealed value copied under another key does not open. The key id
//! (the first 8 hex digits of the key's SHA-256) names which key sealed it. Old keys may be
//! kept for reading while values are rewritten under the new one ([`Keyring`]).
//!
//! A value under a sealed prefix that is not sealed (written before sealing was turned on)
//! is read as it is and sealed at its next write. A sealed value that does not open (wrong
//! key, tampering) is an error naming the key, never garbage.
//!
//! Revisions, versions and compares are the inner store's: sealing changes values only. A
//! sealed value is about a third larger (base64), so values under sealed prefixes may hold
//! at most [`MAX_SEALED_PLAINTEXT_BYTES`] (about 1.1 MiB; credentials are a few KiB).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::Digest as _;

use crate::error::{Result, StoreError, display_key};
use crate::store::{Store, WatchStream};
use crate::types::{
    KeyValue, ListOptions, ListPage, Revision, Txn, TxnOp, TxnOpResult, TxnResponse, WatchEvent,
};

/// What every sealed value starts with.
const MAGIC: &[u8] = b"capstan:sealed:v1:";

/// The bytes of a key.
pub const KEY_BYTES: usize = 32;

/// The largest value a sealed prefix holds: what still fits the store's value limit once
/// sealed (magic, key id, base64 of nonce, ciphertext and tag).
pub const MAX_SEALED_PLAINTEXT_BYTES: usize =
    (crate::limits::MAX_VALUE_BYTES - MAGIC.len() - 9) / 4 * 3 - NONCE_LEN - 16;

/// One encryption key with its id.
struct SealingKey {
    id: String,
    key: LessSafeKey,
    /// For secrets derived from the key ([`Keyring::derive`]).
    derive: ring::hmac::Key,
}

impl SealingKey {
    fn new(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() != KEY_BYTES {
            return Err(format!(
                "an encryption key has {KEY_BYTES} bytes, this one {}",
                bytes.len()
            ));
        }
        let digest = sha2::Sha256::digest(bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| "the encryption key is not usable".to_owned())?;
        Ok(SealingKey {
            id,
            key: LessSafeKey::new(key),
            derive: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes),
        })
    }
}

fn derive_with(key: &SealingKey, purpose: &str) -> String {
    let tag = ring::hmac::sign(
        &key.derive,
        format!("capstan derived secret\0{purpose}").as_bytes(),
    );
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The key values are sealed with, and older keys still accepted for reading.
pub struct Keyring {
    current: SealingKey,
    old: Vec<SealingKey>,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("old", &self.old.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring sealing with `current` (32 bytes) and opening with it and `old`.
    pub fn new(current: &[u8], old: &[&[u8]]) -> std::result::Result<Self, String> {
        Ok(Keyring {
            current: SealingKey::new(current)?,
            old: old
                .iter()
                .map(|k| SealingKey::new(k))
                .collect::<std::result::Result<_, _>>()?,
            random: SystemRandom::new(),
        })
    }

    /// A new random key (what the all-in-one generates on first start).
    pub fn generate_key() -> Vec<u8> {
        let mut key = vec![0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the operating system provides randomness");
        key
    }

    /// The id of the sealing key (for logs: which key is in use).
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// A secret for `purpose` derived from the current key (HMAC-SHA256 of the purpose),
    /// hex: what components sharing the key can prove to each other without another secret
    /// to distribute. Never the key itself, and different for every purpose.
    pub fn derive(&self, purpose: &str) -> String {
        derive_with(&self.current, purpose)
    }

    /// [`Keyring::derive`] with the current key and then every old one: what to accept
    /// while a key rotation rolls through the components.
    pub fn derive_all(&self, purpose: &str) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|key| derive_with(key, purpose))
            .collect()
    }

    fn seal(&self, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| StoreError::Corrupt {
                what: "no randomness for a nonce".to_owned(),
                location: display_key(key),
            })?;
        let mut sealed = value.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key),
                &mut sealed,
            )
            .map_err(|_| StoreError::Corrupt {
                what: "sealing failed".to_owned(),
                location: display_key(key),
            })?;
        let mut payload = nonce.to_vec();
        payload.extend_from_slice(&sealed);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(self.current.id.as_bytes());
        out.push(b':');
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(payload)
                .as_bytes(),
        );
        Ok(out)
    }

    fn open(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>> {
        let Some(rest) = value.strip_prefix(MAGIC) else {
            // Written before sealing was on: read as it is, sealed at its next write.
            return Ok(value);
        };
        let corrupt = |what: &str| StoreError::Corrupt {
            what: what.to_owned(),
            location: display_key(key),
        };
        let colon = rest
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| corrupt("a sealed value without its key id"))?;
        let (id, payload) = (&rest[..colon], &rest[colon + 1..]);
        let sealing = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id.as_bytes() == id)
            .ok_or_else(|| {
                corrupt(&format!(
                    "the value was sealed with key {}, which is not configured (configured: {})",
                    String::from_utf8_lossy(id),
                    std::iter::once(&self.current)
                        .chain(&self.old)
                        .map(|k| k.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|_| corrupt("a sealed value that is not base64"))?;
        if payload.len() < NONCE_LEN {
            return Err(corrupt("a sealed value too short to hold its nonce"));
        }
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| corrupt("a sealed value with a bad nonce"))?;
        let mut sealed = sealed.to_vec();
        let plain = sealing
            .key
            .open_in_place(nonce, Aad::from(key), &mut sealed)
            .map_err(|_| {
                corrupt(
                    "a sealed value that does not open: tampered with, or moved from another key",
                )
            })?;
        Ok(plain.to_vec())
    }
}

/// A [`Store`] that seals the values under some prefixes (see the [module docs](self)).
pub struct SealedStore {
    inner: Arc<dyn Store>,
    sealing: Sealing,
}

/// Which keys are sealed, and with what: shared by the store and its watch streams.
#[derive(Clone)]
struct Sealing {
    keyring: Arc<Keyring>,
    prefixes: Arc<[Vec<u8>]>,
}

impl Sealing {
    fn sealed(&self, key: &[u8]) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p))
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue> {
        if self.sealed(&kv.key) {
            kv.value = self.keyring.open(&kv.key, std::mem::take(&mut kv.value))?;
        }
        Ok(kv)
    }

    fn open_prev(&self, prev: Option<KeyValue>) -> Result<Option<KeyValue>> {
        prev.map(|kv| self.open_kv(kv)).transpose()
    }
}

impl fmt::Debug for SealedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedStore")
            .field("inner", &self.inner)
            .field("keyring", &self.sealing.keyring)
            .finish()
    }
}

/// The prefixes holding credentials: clusters, repositories, the API's secrets.
pub const CREDENTIAL_PREFIXES: &[&str] = &[
    "/capstan/clusters/",
    "/capstan/repositories/",
    "/capstan/apisettings/",
];

impl SealedStore {
    /// Seals the values of `inner` under `prefixes` with `keyring`.
    pub fn new(inner: Arc<dyn Store>, keyring: Keyring, prefixes: &[&str]) -> Self {
        SealedStore {
            inner,
            sealing: Sealing {
                keyring: Arc::new(keyring),
                prefixes: prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
            },
        }
    }
}

impl Store for SealedStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        Box::pin(async move { self.sealing.open_prev(self.inner.get(key).await?) })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a [u8],
        options: ListOptions,
    ) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(async move {
            let mut page = self.inner.list(prefix, options).await?;
            page.entries = page
                .entries
                .into_iter()
                .map(|kv| self.sealing.open_kv(kv))
                .collect::<Result<_>>()?;
            Ok(page)
        })
    }

    fn txn(&self, mut txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        Box::pin(async move {
            for op in &mut txn.success {
                if let TxnOp::Put { key, value } = op
                    && self.sealing.sealed(key)
                {
                    if value.len() > MAX_SEALED_PLAINTEXT_BYTES {
                        return Err(StoreError::ValueTooLarge {
                            key: display_key(key),
                            size: value.len(),
                            limit: MAX_SEALED_PLAINTEXT_BYTES,
                        });
                    }
                    *value = self.sealing.keyring.seal(key, value)?;
                }
            }
            let mut response = self.inner.txn(txn).await?;
            for result in &mut response.results {
                match result {
                    TxnOpResult::Put { prev } | TxnOpResult::Delete { prev } => {
                        *prev = self.sealing.open_prev(prev.take())?;
                    }
                }
            }
            Ok(response)
        })
    }

    fn watch(&self, prefix: &[u8], from_revision: Revision) -> WatchStream {
        let sealing = self.sealing.clone();
        self.inner
            .watch(prefix, from_revision)
            .map(move |event| match event? {
                WatchEvent::Put { kv, prev } => Ok(WatchEvent::Put {
                    kv: sealing.open_kv(kv)?,
                    prev: sealing.open_prev(prev)?,
                }),
                WatchEvent::Delete {
                    key,
                    revision,
                    prev,
                } => Ok(WatchEvent::Delete {
                    key,
                    revision,
                    prev: sealing.open_prev(prev)?,
                }),
            })
            .boxed()
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        self.inner.compact(revision)
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        self.inner.current_revision()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmbeddedOptions, EmbeddedStore, Precondition};

    #[test]
    fn derived_secrets_differ_by_purpose_and_key_and_follow_rotation() {
        let (a, b) = ([1u8; KEY_BYTES], [2u8; KEY_BYTES]);
        let old = Keyring::new(&a, &[]).expect("a key");
        let rotated = Keyring::new(&b, &[&a]).expect("keys");
        assert_eq!(old.derive("live"), old.derive("live"));
        assert_ne!(old.derive("live"), old.derive("other"));
        assert_ne!(old.derive("live"), rotated.derive("live"));
        assert_eq!(old.derive("live").len(), 64);
        // The key itself never shows.
        let hex_key: String = a.iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(old.derive("live"), hex_key);
        // While rotating, the old key's secret is still accepted.
        assert_eq!(
            rotated.derive_all("live"),
            vec![rotated.derive("live"), old.derive("live")]
        );
    }

    async fn stores(dir: &std::path::Path, key: &[u8]) -> (Arc<dyn Store>, SealedStore) {
        let raw: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(dir.join("s.redb"), EmbeddedOptions::default())
                .await
                .expect("opens"),
        );
        let sealed = SealedStore::new(
            raw.clone(),
            Keyring::new(key, &[]).expect("a key"),
            CREDENTIAL_PREFIXES,
        );
        (raw, sealed)
    }

    const SECRET: &[u8] = br#"{"config":{"bearerToken":"very-secret-token"}}"#;

    #[tokio::test]
    async fn sealed_prefixes_hold_no_plaintext_and_read_back_through_every_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (raw, sealed) = stores(dir.path(), &Keyring::generate_key()).await;
        let key = b"/capstan/clusters/capstan/prod/spec";
        let other = b"/capstan/applications/capstan/web/spec";
        let mut watch = sealed.watch(b"/capstan/", 1);
        let put = sealed
            .put(key, SECRET.to_vec(), Precondition::MustNotExist)
            .await
            .expect("put");
        sealed
            .put(other, b"{}".to_vec(), Precondition::None)
            .await
            .expect("put");

        // The raw store: ciphertext under the sealed prefix, plaintext elsewhere.
        let stored = raw.get(key).await.expect("get").expect("exists").value;
        assert!(stored.starts_with(MAGIC));
        assert!(!String::from_utf8_lossy(&stored).contains("very-secret-token"));
        assert_eq!(
            raw.get(other).await.expect("get").expect("exists").value,
            b"{}"
        );

        // Through the sealed store: get, list, watch, and the previous value of a txn.
        assert_eq!(
            sealed.get(key).await.expect("get").expect("exists").value,
            SECRET
        );
        let listed = sealed
            .list(b"/capstan/clusters/", ListOptions::new())
            .await
            .expect("list");
        assert_eq!(listed.entries[0].value, SECRET);
        match watch.next().await.expect("an event").expect("opens") {
            WatchEvent::Put { kv, .. } => assert_eq!(kv.value, SECRET),
            other => panic!("unexpected {other:?}"),
        }
        let replaced = sealed
            .put(key, b"{}".to_vec(), Precondition::ModRevision(put.revision))
            .await
            .expect("put");
        assert_eq!(replaced.prev.expect("a previous value").value, SECRET);
    }

    #[tokio::test]
    async fn a_wrong_key_or_a_moved_value_is_an_error_and_plaintext_from_before_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Keyring::generate_key();
        let (raw, sealed) = stores(dir.path(), &first).await;
        let key = b"/capstan/repositories/capstan/private/spec";
        sealed
            .put(key, SECRET.to_vec(), Precondition::None)
            .await
            .expect("put");

        // Another key: an error naming the key, not garbage.
        let other = SealedStore::new(
            raw.clone(),
            Keyring::new(&Keyring::generate_key(), &[]).expect("a key"),
            CREDENTIAL_PREFIXES,
        );
        let error = other.get(key).await.expect_err("does not open");
        assert!(error.to_string().contains("corrupt"), "{error}");
        // Rotated: the old key still opens it.
        let rotated = SealedStore::new(
            raw.clone(),
            Keyring::new(&Keyring::generate_key(), &[&first]).expect("keys"),
            CREDENTIAL_PREFIXES,
        );
        assert_eq!(
            rotated
                .get(key)
                .await
                .expect("opens")
                .expect("exists")
                .value,
            SECRET
        );

        // A sealed value copied under another key does not open there.
        let copied = b"/capstan/repositories/capstan/elsewhere/spec";
        let value = raw.get(key).await.expect("get").expect("exists").value;
        raw.put(copied, value, Precondition::None)
            .await
            .expect("put");
        assert!(sealed.get(copied).await.is_err());

        // A value written before sealing was turned on reads as it is.
        let legacy = b"/capstan/repositories/capstan/legacy/spec";
        raw.put(legacy, SECRET.to_vec(), Precondition::None)
            .await
            .expect("put");
        assert_eq!(
            sealed
                .get(legacy)
                .await
                .expect("reads")
                .expect("exists")
                .value,
            SECRET
        );
    }

    #[tokio::test]
    async fn the_largest_sealed_value_fits_and_one_more_byte_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, sealed) = stores(dir.path(), &Keyring::generate_key()).await;
        let key = b"/capstan/clusters/capstan/big/spec";
        let largest = vec![b'x'; MAX_SEALED_PLAINTEXT_BYTES];
        sealed
            .put(key, largest.clone(), Precondition::None)
            .await
            .expect("the largest value fits once sealed");
        assert_eq!(
            sealed.get(key).await.expect("get").expect("exists").value,
            largest
        );
        let error = sealed
            .put(
                key,
                vec![b'x'; MAX_SEALED_PLAINTEXT_BYTES + 1],
                Precondition::None,
            )
            .await
            .expect_err("one byte more is too large");
        assert!(
            matches!(error, StoreError::ValueTooLarge { size, limit, .. }
                if size == MAX_SEALED_PLAINTEXT_BYTES + 1 && limit == MAX_SEALED_PLAINTEXT_BYTES),
            "{error}"
        );
    }

    #[test]
    fn keys_must_have_32_bytes() {
        assert!(Keyring::new(&[0u8; 16], &[]).is_err());
        assert!(Keyring::new(&[0u8; 32], &[&[1u8; 31]]).is_err());
    }
}
