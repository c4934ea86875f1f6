//! The conformance suite against the etcd backend, on real etcds from the testkit: plain
//! (under a namespace, so every key crosses the namespace translation), behind `SealedStore`
//! (without a namespace), and the model-based property test.
//!
//! Each conformance case gets an etcd of its own. A key prefix would isolate the cases' keys
//! on one shared etcd, but not what the suite checks beyond keys: etcd's revision and
//! compaction point are global to the cluster, and the cases assert exact revision arithmetic
//! (a write advances the revision by one, a no-op leaves it), compact the history, and replay
//! it from revision 0 — one case's compaction would fail another's replay. The property test
//! shares one etcd between its (sequential) runs, each in a fresh namespace (the model counts
//! revisions from the store's initial one and only compacts after it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use capstan_store::conformance::{self, Fixture, model};
use capstan_store::{EtcdOptions, EtcdStore, Precondition, Store};
use capstan_testkit::Etcd;
use proptest::prelude::*;

async fn start_etcd() -> Etcd {
    capstan_testkit::init_test_logging();
    Etcd::start()
        .await
        .expect("start etcd (scripts/tools.sh builds it)")
}

async fn connect(etcd: &Etcd, namespace: &str) -> EtcdStore {
    EtcdStore::connect(EtcdOptions::new([etcd.endpoint()]).namespace(namespace))
        .await
        .expect("connect to etcd")
}

mod plain {
    use super::*;

    /// A fresh etcd; the store keeps its keys under a namespace.
    async fn fresh() -> Fixture {
        let etcd = start_etcd().await;
        let store = connect(&etcd, "/conformance").await;
        Fixture::new(store).with_guard(etcd)
    }

    capstan_store::conformance_tests!(fresh);
}

mod sealed {
    use capstan_store::sealed::{Keyring, SealedStore};

    use super::*;

    /// A fresh etcd behind `SealedStore`, sealing the suite's keys as
    /// `tests/sealed_conformance.rs` does (the value-size cases write under `/v/` and `/big/`,
    /// left unsealed).
    async fn fresh() -> Fixture {
        let etcd = start_etcd().await;
        let inner: Arc<dyn Store> = Arc::new(connect(&etcd, "").await);
        let keyring = Keyring::new(&Keyring::generate_key(), &[]).expect("a key");
        let sealed = [
            "/a", "/c", "/e", "/f", "/h", "/k", "/m", "/o", "/p", "/r", "/s", "/t", "/w", "/x",
            "/y",
        ];
        Fixture::new(SealedStore::new(inner, keyring, &sealed)).with_guard(etcd)
    }

    capstan_store::conformance_tests!(fresh);
}

/// A fresh namespace on the test binary's shared etcd. A write outside the namespace first
/// moves the revision past any compaction an earlier run made, so the model (which assumes
/// nothing was compacted) agrees with etcd about every revision from the initial one on.
async fn fresh_namespace() -> Fixture {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    capstan_testkit::init_test_logging();
    let etcd = capstan_testkit::shared::etcd()
        .await
        .expect("start etcd (scripts/tools.sh builds it)");
    let run = NEXT.fetch_add(1, Ordering::Relaxed);
    connect(etcd, "/model-markers")
        .await
        .put(b"/marker", run.to_string().into_bytes(), Precondition::None)
        .await
        .expect("marker write");
    Fixture::new(connect(etcd, &format!("/model/{}-{run}", std::process::id())).await)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random operation sequences give the same results on the etcd backend as on the
    /// reference model.
    #[test]
    fn etcd_matches_model(ops in model::ops_strategy()) {
        conformance::block_on("etcd_matches_model", async move {
            let fixture = fresh_namespace().await;
            model::check_against_model(&*fixture.store, &ops).await;
        });
    }
}
