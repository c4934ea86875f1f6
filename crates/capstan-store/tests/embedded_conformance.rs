//! The conformance suite against the embedded backend, plus the model-based property test.

use capstan_store::conformance::{self, Fixture, model};
use capstan_store::{EmbeddedOptions, EmbeddedStore};
use proptest::prelude::*;

/// A fresh store in its own temp dir. The live-watch buffer is deliberately tiny so that the
/// suite's watchers exercise the fall-back to the log.
async fn fresh() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = EmbeddedOptions {
        watch_buffer: 8,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path().join("store.redb"), options)
        .await
        .expect("open a fresh store");
    Fixture::new(store).with_guard(dir)
}

capstan_store::conformance_tests!(fresh);

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random operation sequences give the same results on the embedded backend as on the
    /// reference model.
    #[test]
    fn embedded_matches_model(ops in model::ops_strategy()) {
        conformance::block_on("embedded_matches_model", async move {
            let fixture = fresh().await;
            model::check_against_model(&*fixture.store, &ops).await;
        });
    }
}
