//! The conformance suite against the embedded backend behind `SealedStore`, sealing the
//! suite's keys: encryption at rest changes values only, never the store's semantics. The two
//! value-size boundary cases write under `/v/` and `/big/`, left unsealed: a sealed prefix
//! has its own, smaller limit (`MAX_SEALED_PLAINTEXT_BYTES`, tested in `sealed.rs`).

use std::sync::Arc;

use capstan_store::conformance::Fixture;
use capstan_store::sealed::{Keyring, SealedStore};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};

async fn fresh() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = EmbeddedOptions {
        watch_buffer: 8,
        ..EmbeddedOptions::default()
    };
    let inner: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"), options)
            .await
            .expect("open a fresh store"),
    );
    let keyring = Keyring::new(&Keyring::generate_key(), &[]).expect("a key");
    let sealed = [
        "/a", "/c", "/e", "/f", "/h", "/k", "/m", "/o", "/p", "/r", "/s", "/t", "/w", "/x", "/y",
    ];
    Fixture::new(SealedStore::new(inner, keyring, &sealed)).with_guard(dir)
}

capstan_store::conformance_tests!(fresh);
