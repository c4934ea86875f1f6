//! The cases of the conformance suite. Each takes a factory, builds a fresh backend, and panics
//! (with a message saying what was expected) when the backend misbehaves. Waits are bounded by
//! deadlines ([`super::EVENT_DEADLINE`], [`super::CASE_DEADLINE`]); no case sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde::{Deserialize, Serialize};

use super::{StoreFactory, assert_error, next_event, next_events};
use crate::error::StoreError;
use crate::limits::{MAX_KEY_BYTES, MAX_TXN_OPS, MAX_VALUE_BYTES};
use crate::store::Store;
use crate::typed::{ObjectRef, Resource, StatusWrite, TypedEvent, TypedStore};
use crate::types::{
    Compare, CompareOp, KeyValue, ListOptions, Precondition, Revision, Txn, TxnOpResult, WatchEvent,
};

async fn put(store: &dyn Store, key: &str, value: &str) -> Revision {
    store
        .put(
            key.as_bytes(),
            value.as_bytes().to_vec(),
            Precondition::None,
        )
        .await
        .unwrap_or_else(|error| panic!("put {key} failed: {error}"))
        .revision
}

async fn delete(store: &dyn Store, key: &str) -> Revision {
    store
        .delete(key.as_bytes(), Precondition::None)
        .await
        .unwrap_or_else(|error| panic!("delete {key} failed: {error}"))
        .revision
}

async fn get(store: &dyn Store, key: &str) -> Option<KeyValue> {
    store
        .get(key.as_bytes())
        .await
        .unwrap_or_else(|error| panic!("get {key} failed: {error}"))
}

async fn value(store: &dyn Store, key: &str) -> Option<String> {
    get(store, key)
        .await
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

async fn current(store: &dyn Store) -> Revision {
    store.current_revision().await.expect("current revision")
}

fn keys_of(entries: &[KeyValue]) -> Vec<String> {
    entries
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

async fn list_keys(store: &dyn Store, prefix: &[u8]) -> Vec<String> {
    keys_of(
        &store
            .list(prefix, ListOptions::new())
            .await
            .expect("list")
            .entries,
    )
}

fn describe(event: &WatchEvent) -> (String, String, Revision) {
    match event {
        WatchEvent::Put { kv, .. } => (
            "put".to_string(),
            String::from_utf8_lossy(&kv.key).into_owned(),
            kv.mod_revision,
        ),
        WatchEvent::Delete { key, revision, .. } => (
            "delete".to_string(),
            String::from_utf8_lossy(key).into_owned(),
            *revision,
        ),
    }
}

/// Writes a sentinel key and asserts it is the very next event: nothing unexpected (no
/// duplicate, nothing outside the prefix) was delivered before it.
async fn expect_only_sentinel_next(
    store: &dyn Store,
    watch: &mut crate::store::WatchStream,
    key: &str,
) {
    let revision = put(store, key, "sentinel").await;
    let event = next_event(watch).await.expect("sentinel event");
    assert_eq!(
        describe(&event),
        ("put".to_string(), key.to_string(), revision),
        "expected the sentinel as the next event, got another one"
    );
}

/// get, put, update, delete, re-create: values and per-key metadata.
pub async fn get_put_delete(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    assert_eq!(get(store, "/t/a").await, None);

    let first = store
        .put(b"/t/a", b"one".to_vec(), Precondition::None)
        .await
        .expect("put");
    assert_eq!(first.prev, None, "a create has no previous entry");
    let kv = get(store, "/t/a").await.expect("present after put");
    assert_eq!(
        kv,
        KeyValue {
            key: b"/t/a".to_vec(),
            value: b"one".to_vec(),
            create_revision: first.revision,
            mod_revision: first.revision,
            version: 1
        }
    );

    let second = store
        .put(b"/t/a", b"two".to_vec(), Precondition::None)
        .await
        .expect("update");
    assert!(second.revision > first.revision);
    assert_eq!(
        second.prev.as_ref(),
        Some(&kv),
        "an update returns the entry it replaced"
    );
    let updated = get(store, "/t/a").await.expect("present");
    assert_eq!(
        (
            updated.create_revision,
            updated.mod_revision,
            updated.version
        ),
        (first.revision, second.revision, 2)
    );
    assert_eq!(updated.value, b"two");

    let deleted = store
        .delete(b"/t/a", Precondition::None)
        .await
        .expect("delete");
    assert!(deleted.revision > second.revision);
    assert_eq!(
        deleted.prev.as_ref(),
        Some(&updated),
        "a delete returns the deleted entry"
    );
    assert_eq!(get(store, "/t/a").await, None);

    let again = store
        .delete(b"/t/a", Precondition::None)
        .await
        .expect("delete of an absent key is not an error");
    assert_eq!(again.prev, None);
    assert_eq!(
        again.revision, deleted.revision,
        "deleting nothing does not advance the revision"
    );
    assert_eq!(current(store).await, deleted.revision);

    let recreated = store
        .put(b"/t/a", Vec::new(), Precondition::None)
        .await
        .expect("re-create");
    let kv = get(store, "/t/a").await.expect("present");
    assert_eq!(
        (
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.value.len()
        ),
        (recreated.revision, recreated.revision, 1, 0),
        "a re-created key starts over; empty values are allowed"
    );
}

/// The revision only ever increases, once per change, and failed or empty writes leave it.
pub async fn revisions_increase(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let mut last = current(store).await;
    for i in 0..20 {
        let key = format!("/r/{}", i % 4);
        let revision = if i % 5 == 4 {
            delete(store, &key).await
        } else {
            put(store, &key, &i.to_string()).await
        };
        assert!(
            revision >= last,
            "revision went backwards: {revision} after {last}"
        );
        if i % 5 != 4 {
            assert!(revision > last, "a put must advance the revision");
        }
        last = revision;
        assert_eq!(current(store).await, last);
    }
    let failed = store
        .put(b"/r/0", b"x".to_vec(), Precondition::MustNotExist)
        .await;
    assert_error(failed, StoreError::is_conflict, "conflict");
    assert_eq!(
        current(store).await,
        last,
        "a failed write does not advance the revision"
    );
    let empty = store
        .txn(Txn::new().delete("/r/absent"))
        .await
        .expect("txn");
    assert!(empty.succeeded);
    assert_eq!(empty.revision, last);
    assert_eq!(
        current(store).await,
        last,
        "a transaction that changes nothing does not advance the revision"
    );
}

/// Compare-and-swap on `mod_revision`.
pub async fn compare_and_swap(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let first = put(store, "/cas/a", "1").await;
    let second = store
        .put(b"/cas/a", b"2".to_vec(), Precondition::ModRevision(first))
        .await
        .expect("CAS with the current revision succeeds");
    let stale = store
        .put(b"/cas/a", b"3".to_vec(), Precondition::ModRevision(first))
        .await;
    match stale {
        Err(StoreError::Conflict {
            current_revision, ..
        }) => {
            assert_eq!(
                current_revision, second.revision,
                "the conflict names the key's current revision"
            )
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        value(store, "/cas/a").await.as_deref(),
        Some("2"),
        "a failed CAS writes nothing"
    );

    // ModRevision(0) means "does not exist".
    assert_error(
        store
            .put(b"/cas/a", b"x".to_vec(), Precondition::ModRevision(0))
            .await,
        StoreError::is_conflict,
        "conflict",
    );
    store
        .put(b"/cas/new", b"x".to_vec(), Precondition::ModRevision(0))
        .await
        .expect("CAS on 0 creates");

    // Deletes too.
    match store
        .delete(b"/cas/a", Precondition::ModRevision(first))
        .await
    {
        Err(StoreError::Conflict {
            current_revision, ..
        }) => assert_eq!(current_revision, second.revision),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let deleted = store
        .delete(b"/cas/a", Precondition::ModRevision(second.revision))
        .await
        .expect("CAS delete");
    assert!(deleted.prev.is_some());
    match store
        .put(
            b"/cas/a",
            b"4".to_vec(),
            Precondition::ModRevision(second.revision),
        )
        .await
    {
        Err(StoreError::Conflict {
            current_revision, ..
        }) => {
            assert_eq!(
                current_revision, 0,
                "an absent key's revision is reported as 0"
            )
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// `MustExist` and `MustNotExist`.
pub async fn existence_preconditions(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let created = store
        .put(b"/e/a", b"1".to_vec(), Precondition::MustNotExist)
        .await
        .expect("create");
    match store
        .put(b"/e/a", b"2".to_vec(), Precondition::MustNotExist)
        .await
    {
        Err(StoreError::Conflict {
            current_revision, ..
        }) => assert_eq!(current_revision, created.revision),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(value(store, "/e/a").await.as_deref(), Some("1"));
    match store
        .put(b"/e/b", b"1".to_vec(), Precondition::MustExist)
        .await
    {
        Err(StoreError::Conflict {
            current_revision, ..
        }) => assert_eq!(current_revision, 0),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(get(store, "/e/b").await, None);
    store
        .put(b"/e/a", b"2".to_vec(), Precondition::MustExist)
        .await
        .expect("update of an existing key");
    assert_error(
        store.delete(b"/e/b", Precondition::MustExist).await,
        StoreError::is_conflict,
        "conflict",
    );
    store
        .delete(b"/e/a", Precondition::MustExist)
        .await
        .expect("delete of an existing key");
    assert_error(
        store.delete(b"/e/a", Precondition::MustExist).await,
        StoreError::is_conflict,
        "conflict",
    );
}

/// A successful transaction applies every operation at one revision.
pub async fn txn_applies_atomically(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let owner = put(store, "/x/owner", "member-1").await;
    put(store, "/x/old", "old").await;
    put(store, "/x/b", "b0").await;
    let response = store
        .txn(
            Txn::new()
                .when(Compare::mod_revision(b"/x/owner", CompareOp::Equal, owner))
                .when(Compare::not_exists(b"/x/a"))
                .put("/x/a", "a1")
                .put("/x/b", "b1")
                .delete("/x/old")
                .delete("/x/never"),
        )
        .await
        .expect("txn");
    assert!(response.succeeded, "every compare holds: {response:?}");
    assert!(response.failures.is_empty());
    assert_eq!(current(store).await, response.revision);
    assert_eq!(response.results.len(), 4);
    assert!(matches!(
        &response.results[0],
        TxnOpResult::Put { prev: None }
    ));
    assert!(
        matches!(&response.results[1], TxnOpResult::Put { prev: Some(prev) } if prev.value == b"b0")
    );
    assert!(
        matches!(&response.results[2], TxnOpResult::Delete { prev: Some(prev) } if prev.value == b"old")
    );
    assert!(matches!(
        &response.results[3],
        TxnOpResult::Delete { prev: None }
    ));
    let a = get(store, "/x/a").await.expect("a");
    let b = get(store, "/x/b").await.expect("b");
    assert_eq!(
        (a.mod_revision, b.mod_revision),
        (response.revision, response.revision),
        "one revision for the whole txn"
    );
    assert_eq!(b.version, 2);
    assert_eq!(get(store, "/x/old").await, None);
    assert_eq!(
        keys_of(
            &store
                .list(b"/x/", ListOptions::new())
                .await
                .expect("list")
                .entries
        ),
        ["/x/a", "/x/b", "/x/owner"]
    );
}

/// A failed transaction writes nothing and names every compare that failed.
pub async fn txn_failure_writes_nothing(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let owner = put(store, "/y/owner", "member-1").await;
    put(store, "/y/b", "b0").await;
    let moved = put(store, "/y/owner", "member-2").await;
    let before = current(store).await;
    let response = store
        .txn(
            Txn::new()
                .when(Compare::exists(b"/y/b"))
                .when(Compare::mod_revision(b"/y/owner", CompareOp::Equal, owner))
                .when(Compare::exists(b"/y/missing"))
                .put("/y/a", "a1")
                .put("/y/b", "b1")
                .delete("/y/b2"),
        )
        .await
        .expect("txn");
    assert!(!response.succeeded);
    assert!(response.results.is_empty());
    assert_eq!(response.revision, before);
    let failed: Vec<(usize, Revision)> = response
        .failures
        .iter()
        .map(|failure| (failure.index, failure.current.mod_revision))
        .collect();
    assert_eq!(
        failed,
        [(1, moved), (2, 0)],
        "failures name the failing compares and the keys' current revisions"
    );
    assert_eq!(get(store, "/y/a").await, None, "no partial write");
    assert_eq!(
        value(store, "/y/b").await.as_deref(),
        Some("b0"),
        "no partial write"
    );
    assert_eq!(current(store).await, before);
}

/// Compares on mod/create revision and version with every operator.
pub async fn txn_compare_targets(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let created = put(store, "/c/k", "1").await;
    let modified = put(store, "/c/k", "2").await;
    let cases: Vec<(Compare, bool)> = vec![
        (
            Compare::create_revision(b"/c/k", CompareOp::Equal, created),
            true,
        ),
        (
            Compare::create_revision(b"/c/k", CompareOp::Equal, modified),
            false,
        ),
        (
            Compare::mod_revision(b"/c/k", CompareOp::NotEqual, created),
            true,
        ),
        (
            Compare::mod_revision(b"/c/k", CompareOp::Less, modified + 1),
            true,
        ),
        (
            Compare::mod_revision(b"/c/k", CompareOp::Greater, modified),
            false,
        ),
        (Compare::version(b"/c/k", CompareOp::Equal, 2), true),
        (Compare::version(b"/c/k", CompareOp::Greater, 2), false),
        (Compare::version(b"/c/absent", CompareOp::Equal, 0), true),
        (
            Compare::mod_revision(b"/c/absent", CompareOp::Less, 1),
            true,
        ),
        (
            Compare::create_revision(b"/c/absent", CompareOp::Greater, 0),
            false,
        ),
        (Compare::exists(b"/c/k"), true),
        (Compare::not_exists(b"/c/k"), false),
    ];
    for (compare, holds) in cases {
        let response = store
            .txn(Txn::new().when(compare.clone()))
            .await
            .expect("txn");
        assert_eq!(response.succeeded, holds, "{compare:?}");
    }
}

/// Transactions that are too big or write a key twice are rejected whole.
pub async fn txn_rejects_invalid_requests(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let before = current(store).await;
    let twice = store.txn(Txn::new().put("/v/a", "1").delete("/v/a")).await;
    assert_error(
        twice,
        |error| matches!(error, StoreError::InvalidRequest { .. }),
        "invalid request",
    );
    let many = (0..=MAX_TXN_OPS).fold(Txn::new(), |txn, i| txn.put(format!("/v/{i}"), "x"));
    assert_error(
        store.txn(many).await,
        |error| matches!(error, StoreError::InvalidRequest { .. }),
        "invalid request",
    );
    let heavy = (0..2).fold(Txn::new(), |txn, i| {
        txn.put(format!("/v/big{i}"), vec![b'x'; MAX_VALUE_BYTES])
    });
    assert_error(
        store.txn(heavy).await,
        |error| matches!(error, StoreError::InvalidRequest { .. }),
        "invalid request",
    );
    assert!(
        list_keys(store, b"/v/").await.is_empty(),
        "nothing of a rejected transaction is written"
    );
    assert_eq!(current(store).await, before);
}

/// Prefix lists include exactly the keys that start with the prefix, in byte order.
pub async fn list_prefix_boundaries(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let keys: [&[u8]; 12] = [
        b"/a",
        b"/a/",
        b"/a/x",
        b"/a/y/z",
        b"/ab",
        b"/ab/x",
        b"/b",
        b"/p\xff",
        b"/p\xff\xff",
        b"/p\xffa",
        b"/q",
        b"/\xff",
    ];
    for key in keys {
        store
            .put(key, b"v".to_vec(), Precondition::None)
            .await
            .expect("put");
    }
    let listed = |prefix: &'static [u8]| async move {
        store
            .list(prefix, ListOptions::new())
            .await
            .expect("list")
            .entries
            .into_iter()
            .map(|kv| kv.key)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(b"/a/").await,
        [&b"/a/"[..], b"/a/x", b"/a/y/z"],
        "/a/ must not match /a or /ab"
    );
    assert_eq!(
        listed(b"/a").await,
        [&b"/a"[..], b"/a/", b"/a/x", b"/a/y/z", b"/ab", b"/ab/x"]
    );
    assert_eq!(listed(b"/ab/").await, [&b"/ab/x"[..]]);
    assert_eq!(
        listed(b"/p\xff").await,
        [&b"/p\xff"[..], b"/p\xffa", b"/p\xff\xff"],
        "0xff bytes at the end of a prefix"
    );
    assert_eq!(listed(b"/\xff").await, [&b"/\xff"[..]]);
    assert_eq!(listed(b"/z").await, Vec::<Vec<u8>>::new());
    let mut all: Vec<Vec<u8>> = keys.iter().map(|key| key.to_vec()).collect();
    all.sort();
    assert_eq!(
        listed(b"").await,
        all,
        "the empty prefix lists everything, in byte order"
    );
}

/// Pages of a list: limits, tokens, one revision, no gaps or duplicates.
pub async fn list_pagination(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    for i in 0..57 {
        put(store, &format!("/page/{i:03}"), &i.to_string()).await;
    }
    put(store, "/pagf", "outside").await;
    for (limit, pages) in [(10, 6), (19, 3), (57, 1), (100, 1), (1, 57)] {
        let mut options = ListOptions::new().limit(limit);
        let mut keys = Vec::new();
        let mut revisions = Vec::new();
        let mut count = 0;
        loop {
            let page = store
                .list(b"/page/", options.clone())
                .await
                .expect("list page");
            count += 1;
            assert!(page.entries.len() <= limit);
            revisions.push(page.revision);
            keys.extend(keys_of(&page.entries));
            match page.continue_token {
                Some(token) => {
                    assert_eq!(
                        page.entries.len(),
                        limit,
                        "only a full page may have a continuation"
                    );
                    options = ListOptions::new().limit(limit).continue_from(token);
                }
                None => break,
            }
        }
        assert_eq!(count, pages, "limit {limit}: number of pages");
        let expected: Vec<String> = (0..57).map(|i| format!("/page/{i:03}")).collect();
        assert_eq!(
            keys, expected,
            "limit {limit}: pages concatenate to the whole list"
        );
        assert!(
            revisions.windows(2).all(|pair| pair[0] == pair[1]),
            "every page reads at one revision"
        );
    }
    let all = store
        .list(b"/page/", ListOptions::new().limit(0))
        .await
        .expect("list");
    assert_eq!(all.entries.len(), 57, "limit 0 means no limit");
    assert_eq!(all.continue_token, None);
    let via_helper = store.list_all(b"/page/", 7).await.expect("list_all");
    assert_eq!(via_helper.entries, all.entries);
}

/// Pagination while writers change the listed keys: every page reads at the first page's
/// revision, so the result is exactly the state at that revision.
pub async fn list_pagination_with_concurrent_writes(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = Arc::clone(&fixture.store);
    let mut initial = BTreeMap::new();
    for i in 0..60 {
        let key = format!("/cw/{i:03}");
        put(&*store, &key, "v0").await;
        initial.insert(key, "v0".to_string());
    }
    let writer_store = Arc::clone(&store);
    let writer = tokio::spawn(async move {
        let mut applied: Vec<(Revision, String, Option<String>)> = Vec::new();
        for i in 0..60usize {
            let (key, value) = match i % 3 {
                0 => (format!("/cw/{:03}", (i * 7) % 60), Some(format!("v{i}"))),
                1 => (format!("/cw/{:03}", (i * 11) % 60), None),
                _ => (format!("/cw/{:03}x", i), Some("new".to_string())),
            };
            let revision = match &value {
                Some(value) => put(&*writer_store, &key, value).await,
                None => delete(&*writer_store, &key).await,
            };
            applied.push((revision, key, value));
        }
        applied
    });

    let mut options = ListOptions::new().limit(7);
    let mut listed = Vec::new();
    let mut revision = None;
    loop {
        let page = store
            .list(b"/cw/", options.clone())
            .await
            .expect("list page");
        assert_eq!(
            *revision.get_or_insert(page.revision),
            page.revision,
            "every page reads at the first page's revision"
        );
        listed.extend(page.entries);
        match page.continue_token {
            Some(token) => options = ListOptions::new().limit(7).continue_from(token),
            None => break,
        }
        // Let the writer make progress between pages.
        tokio::task::yield_now().await;
    }
    let revision = revision.expect("at least one page");
    let applied = writer.await.expect("writer task");

    let mut expected = initial;
    for (at, key, value) in &applied {
        if *at <= revision {
            match value {
                Some(value) => expected.insert(key.clone(), value.clone()),
                None => expected.remove(key),
            };
        }
    }
    let got: BTreeMap<String, String> = listed
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(got.len(), listed.len(), "no key is listed twice");
    assert_eq!(
        got, expected,
        "the pages hold exactly the state at revision {revision}"
    );
    assert!(listed.iter().all(|kv| kv.mod_revision <= revision));

    // The same list at that revision, read again after all the writes, is identical.
    let again = store.list_all(b"/cw/", 1000).await.expect("list");
    assert!(again.revision >= revision);
    let replay = store
        .list(b"/cw/", ListOptions::new().at_revision(revision))
        .await
        .expect("list at revision");
    assert_eq!(
        replay.entries, listed,
        "a list at a past revision is stable"
    );
}

/// Reads at past revisions see the state (and metadata) as of then.
pub async fn list_at_revision(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let r1 = put(store, "/h/a", "1").await;
    let r2 = put(store, "/h/b", "1").await;
    let r3 = put(store, "/h/a", "2").await;
    let r4 = delete(store, "/h/b").await;
    let r5 = put(store, "/h/c", "1").await;
    put(store, "/other", "x").await;
    let state = |at: Revision| async move {
        let page = store
            .list(b"/h/", ListOptions::new().at_revision(at))
            .await
            .expect("list at revision");
        assert_eq!(page.revision, at);
        page.entries
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                    kv.version,
                )
            })
            .collect::<Vec<_>>()
    };
    let s = |key: &str, value: &str, modified: Revision, version: u64| {
        (key.to_string(), value.to_string(), modified, version)
    };
    assert_eq!(state(r1).await, [s("/h/a", "1", r1, 1)]);
    assert_eq!(
        state(r2).await,
        [s("/h/a", "1", r1, 1), s("/h/b", "1", r2, 1)]
    );
    assert_eq!(
        state(r3).await,
        [s("/h/a", "2", r3, 2), s("/h/b", "1", r2, 1)]
    );
    assert_eq!(state(r4).await, [s("/h/a", "2", r3, 2)]);
    assert_eq!(
        state(r5).await,
        [s("/h/a", "2", r3, 2), s("/h/c", "1", r5, 1)]
    );

    // Pagination at a past revision.
    let first = store
        .list(b"/h/", ListOptions::new().at_revision(r3).limit(1))
        .await
        .expect("page 1");
    assert_eq!(keys_of(&first.entries), ["/h/a"]);
    let token = first.continue_token.expect("more");
    let second = store
        .list(b"/h/", ListOptions::new().limit(1).continue_from(token))
        .await
        .expect("page 2");
    assert_eq!(
        (keys_of(&second.entries), second.revision),
        (vec!["/h/b".to_string()], r3)
    );

    let now = current(store).await;
    assert_error(
        store
            .list(b"/h/", ListOptions::new().at_revision(now + 1))
            .await,
        |error| matches!(error, StoreError::FutureRevision { .. }),
        "future revision",
    );
}

/// A watch from revision 0 replays everything under the prefix, then follows live writes.
pub async fn watch_from_zero(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let a1 = store
        .put(b"/w/a", b"1".to_vec(), Precondition::None)
        .await
        .expect("put");
    put(store, "/elsewhere", "x").await;
    let a2 = store
        .put(b"/w/a", b"2".to_vec(), Precondition::None)
        .await
        .expect("put");
    let b = store
        .put(b"/w/b", b"1".to_vec(), Precondition::None)
        .await
        .expect("put");
    let deleted = store
        .delete(b"/w/a", Precondition::None)
        .await
        .expect("delete");

    let mut watch = store.watch(b"/w/", 0);
    let events = next_events(&mut watch, 4).await;
    let a1_kv = KeyValue {
        key: b"/w/a".to_vec(),
        value: b"1".to_vec(),
        create_revision: a1.revision,
        mod_revision: a1.revision,
        version: 1,
    };
    let a2_kv = KeyValue {
        value: b"2".to_vec(),
        mod_revision: a2.revision,
        version: 2,
        ..a1_kv.clone()
    };
    let b_kv = KeyValue {
        key: b"/w/b".to_vec(),
        value: b"1".to_vec(),
        create_revision: b.revision,
        mod_revision: b.revision,
        version: 1,
    };
    assert_eq!(
        events,
        [
            WatchEvent::Put {
                kv: a1_kv.clone(),
                prev: None
            },
            WatchEvent::Put {
                kv: a2_kv.clone(),
                prev: Some(a1_kv)
            },
            WatchEvent::Put {
                kv: b_kv,
                prev: None
            },
            WatchEvent::Delete {
                key: b"/w/a".to_vec(),
                revision: deleted.revision,
                prev: Some(a2_kv)
            },
        ]
    );
    // Live.
    let live = put(store, "/w/c", "live").await;
    let event = next_event(&mut watch).await.expect("live event");
    assert_eq!(
        describe(&event),
        ("put".to_string(), "/w/c".to_string(), live)
    );
    expect_only_sentinel_next(store, &mut watch, "/w/zz-sentinel").await;
}

/// A watch from a mid revision starts strictly after it.
pub async fn watch_from_mid_revision(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let mut revisions = Vec::new();
    for i in 0..6 {
        revisions.push(put(store, &format!("/m/{i}"), "v").await);
    }
    let mut watch = store.watch(b"/m/", revisions[2]);
    let events = next_events(&mut watch, 3).await;
    let got: Vec<Revision> = events.iter().map(WatchEvent::revision).collect();
    assert_eq!(
        got,
        revisions[3..],
        "events start strictly after the requested revision"
    );
    expect_only_sentinel_next(store, &mut watch, "/m/zz-sentinel").await;
}

/// Dropping a watch and watching again from the last seen revision continues exactly.
pub async fn watch_resume_after_drop(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let start = current(store).await;
    for i in 0..5 {
        put(store, &format!("/rs/{i}"), "v").await;
    }
    let mut watch = store.watch(b"/rs/", start);
    let seen = next_events(&mut watch, 3).await;
    drop(watch);
    let last = seen.last().map(WatchEvent::revision).expect("three events");
    for i in 5..8 {
        put(store, &format!("/rs/{i}"), "v").await;
    }
    let mut resumed = store.watch(b"/rs/", last);
    let rest = next_events(&mut resumed, 5).await;
    let keys: Vec<String> = seen
        .iter()
        .chain(rest.iter())
        .map(|event| describe(event).1)
        .collect();
    let expected: Vec<String> = (0..8).map(|i| format!("/rs/{i}")).collect();
    assert_eq!(
        keys, expected,
        "no gap and no duplicate across the resumption"
    );
    expect_only_sentinel_next(store, &mut resumed, "/rs/zz-sentinel").await;
}

/// Concurrent writers: every watcher sees one total order, strictly by revision, that matches
/// each writer's own order and the final state.
pub async fn watch_ordering_with_concurrent_writers(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = Arc::clone(&fixture.store);
    let start = current(&*store).await;
    let mut live = store.watch(b"/o/", start);
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..25 {
                    let key = format!("/o/{writer}/{}", i % 5);
                    let revision = if i % 7 == 6 {
                        store
                            .txn(
                                Txn::new()
                                    .put(format!("{key}-t1"), "t")
                                    .put(format!("{key}-t2"), "t"),
                            )
                            .await
                            .expect("txn")
                            .revision
                    } else {
                        put(&*store, &key, &i.to_string()).await
                    };
                    revisions.push(revision);
                }
                revisions
            })
        })
        .collect();
    let mut per_writer = Vec::new();
    for writer in writers {
        per_writer.push(writer.await.expect("writer task"));
    }
    for revisions in &per_writer {
        assert!(
            revisions.windows(2).all(|pair| pair[0] < pair[1]),
            "one writer's revisions increase"
        );
    }
    let total: usize = per_writer.iter().map(Vec::len).sum();
    // Every txn above writes two keys: count events, not writes.
    let txns = 4 * (0..25).filter(|i| i % 7 == 6).count();
    let expected_events = total + txns;

    let live_events = next_events(&mut live, expected_events).await;
    let mut replay = store.watch(b"/o/", start);
    let replayed = next_events(&mut replay, expected_events).await;
    assert_eq!(
        live_events, replayed,
        "a live watcher and a replaying watcher see the same history"
    );
    for pair in live_events.windows(2) {
        let (a, b) = (pair[0].revision(), pair[1].revision());
        assert!(a <= b, "events out of revision order: {a} then {b}");
    }
    let mut seen_revisions: Vec<Revision> = live_events.iter().map(WatchEvent::revision).collect();
    seen_revisions.dedup();
    let mut written: Vec<Revision> = per_writer.concat();
    written.sort_unstable();
    assert_eq!(
        seen_revisions, written,
        "exactly the written revisions, each once"
    );

    // Replaying the events gives the final state.
    let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for event in &live_events {
        match event {
            WatchEvent::Put { kv, .. } => {
                state.insert(kv.key.clone(), kv.value.clone());
            }
            WatchEvent::Delete { key, .. } => {
                state.remove(key);
            }
        }
    }
    let listed: BTreeMap<Vec<u8>, Vec<u8>> = store
        .list_all(b"/o/", 1000)
        .await
        .expect("list")
        .entries
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    assert_eq!(state, listed);
    expect_only_sentinel_next(&*store, &mut live, "/o/zz-sentinel").await;
}

/// The events of one transaction share its revision and come in operation order.
pub async fn watch_txn_events_share_a_revision(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    put(store, "/tx/d", "gone soon").await;
    let start = current(store).await;
    let mut watch = store.watch(b"/tx/", start);
    let response = store
        .txn(
            Txn::new()
                .put("/tx/c", "1")
                .put("/tx/a", "1")
                .delete("/tx/d")
                .delete("/tx/absent")
                .put("/other/x", "1"),
        )
        .await
        .expect("txn");
    let events = next_events(&mut watch, 3).await;
    let got: Vec<(String, String, Revision)> = events.iter().map(describe).collect();
    let r = response.revision;
    assert_eq!(
        got,
        [
            ("put".to_string(), "/tx/c".to_string(), r),
            ("put".to_string(), "/tx/a".to_string(), r),
            ("delete".to_string(), "/tx/d".to_string(), r)
        ]
    );
    expect_only_sentinel_next(store, &mut watch, "/tx/zz-sentinel").await;
}

/// A watch on `/w/a/` does not see `/w/ab` or `/w/a`.
pub async fn watch_prefix_boundaries(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let start = current(store).await;
    let mut watch = store.watch(b"/wp/a/", start);
    put(store, "/wp/a", "no").await;
    put(store, "/wp/ab", "no").await;
    let inside = put(store, "/wp/a/x", "yes").await;
    put(store, "/wp/b/x", "no").await;
    let event = next_event(&mut watch).await.expect("event");
    assert_eq!(
        describe(&event),
        ("put".to_string(), "/wp/a/x".to_string(), inside)
    );
    expect_only_sentinel_next(store, &mut watch, "/wp/a/zz-sentinel").await;

    // The empty prefix watches everything.
    let mut all = store.watch(b"", start);
    let events = next_events(&mut all, 5).await;
    assert_eq!(
        events
            .iter()
            .map(|event| describe(event).1)
            .collect::<Vec<_>>(),
        ["/wp/a", "/wp/ab", "/wp/a/x", "/wp/b/x", "/wp/a/zz-sentinel"]
    );
}

/// A watch may start at a future revision; it delivers only what comes after it.
pub async fn watch_from_future_revision(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let now = current(store).await;
    let mut watch = store.watch(b"/f/", now + 3);
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(put(store, &format!("/f/{i}"), "v").await);
    }
    let expected: Vec<Revision> = revisions
        .iter()
        .copied()
        .filter(|revision| *revision > now + 3)
        .collect();
    let events = next_events(&mut watch, expected.len()).await;
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        expected
    );
    expect_only_sentinel_next(store, &mut watch, "/f/zz-sentinel").await;
}

/// A watcher that is not polled does not block writers, and when polled again delivers every
/// event, in order.
pub async fn slow_watcher_catches_up(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = Arc::clone(&fixture.store);
    let start = current(&*store).await;
    let mut slow = store.watch(b"/slow/", start);
    // Poll once so the watcher is fully set up (live), then stop polling.
    let first = put(&*store, "/slow/first", "v").await;
    assert_eq!(
        next_event(&mut slow).await.expect("first").revision(),
        first
    );

    // Far more revisions than any reasonable live buffer, from concurrent writers, while the
    // watcher is not polled. If a writer waited for the watcher, this would hang.
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..150 {
                    put(&*store, &format!("/slow/{writer}/{i:03}"), "v").await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task");
    }
    let events = next_events(&mut slow, 600).await;
    assert!(
        events
            .windows(2)
            .all(|pair| pair[0].revision() < pair[1].revision()),
        "in order, no duplicates"
    );
    let mut per_writer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in &events {
        let key = describe(event).1;
        let writer = key.split('/').nth(2).unwrap_or_default().to_string();
        per_writer.entry(writer).or_default().push(key);
    }
    for (writer, keys) in per_writer {
        let expected: Vec<String> = (0..150).map(|i| format!("/slow/{writer}/{i:03}")).collect();
        assert_eq!(keys, expected, "writer {writer}: every event, in order");
    }
    expect_only_sentinel_next(&*store, &mut slow, "/slow/zz-sentinel").await;
}

/// Compaction bounds history: older reads and watches fail with `Compacted`, newer ones work.
pub async fn compaction(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let r1 = put(store, "/k/a", "1").await;
    let r2 = put(store, "/k/a", "2").await;
    // A list whose continuation will outlive its revision.
    put(store, "/k/0", "1").await;
    let token = store
        .list(b"/k/", ListOptions::new().limit(1))
        .await
        .expect("page")
        .continue_token
        .expect("more");
    let r3 = put(store, "/k/b", "1").await;
    let r4 = put(store, "/k/a", "3").await;
    let r5 = delete(store, "/k/b").await;

    store.compact(r3).await.expect("compact");
    assert_error(
        store.compact(r3).await,
        StoreError::is_compacted,
        "compacted (not newer than the compaction point)",
    );
    assert_error(
        store.compact(r2).await,
        StoreError::is_compacted,
        "compacted",
    );
    let now = current(store).await;
    assert_error(
        store.compact(now + 1).await,
        |error| matches!(error, StoreError::FutureRevision { .. }),
        "future revision",
    );

    assert_error(
        store.list(b"/k/", ListOptions::new().at_revision(r2)).await,
        StoreError::is_compacted,
        "compacted",
    );
    let at_r3 = store
        .list(b"/k/", ListOptions::new().at_revision(r3))
        .await
        .expect("the compaction point is readable");
    assert_eq!(keys_of(&at_r3.entries), ["/k/0", "/k/a", "/k/b"]);
    assert_eq!(at_r3.entries[1].value, b"2");
    // A continuation whose revision was compacted away fails, so the caller relists.
    assert_error(
        store
            .list(b"/k/", ListOptions::new().limit(1).continue_from(token))
            .await,
        StoreError::is_compacted,
        "compacted",
    );

    let mut old = store.watch(b"/k/", r1);
    match next_event(&mut old).await {
        Err(StoreError::Compacted { compact_revision }) => assert_eq!(compact_revision, r3),
        other => panic!(
            "a watch from before the compaction point must fail with Compacted, got {other:?}"
        ),
    }
    assert!(
        tokio::time::timeout(super::EVENT_DEADLINE, old.next())
            .await
            .expect("the stream ends")
            .is_none(),
        "the stream ends after the error"
    );

    let mut from_point = store.watch(b"/k/", r3);
    let events = next_events(&mut from_point, 2).await;
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        [r4, r5]
    );
    expect_only_sentinel_next(store, &mut from_point, "/k/zz-sentinel").await;
    assert_eq!(
        value(store, "/k/a").await.as_deref(),
        Some("3"),
        "compaction never touches current data"
    );

    // Compacting at the current revision is allowed.
    let now = current(store).await;
    store
        .compact(now)
        .await
        .expect("compact at the current revision");
    let mut watch = store.watch(b"/k/", now);
    let next = put(store, "/k/c", "1").await;
    assert_eq!(
        next_event(&mut watch).await.expect("event").revision(),
        next
    );
}

/// Values over the limit are rejected with a clear error; at the limit they round-trip.
pub async fn large_values_rejected(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let before = current(store).await;
    match store
        .put(
            b"/big/a",
            vec![b'x'; MAX_VALUE_BYTES + 1],
            Precondition::None,
        )
        .await
    {
        Err(StoreError::ValueTooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES))
        }
        other => panic!(
            "expected ValueTooLarge, got {:?}",
            other.map(|response| response.revision)
        ),
    }
    assert_error(
        store
            .txn(Txn::new().put("/big/b", vec![b'x'; MAX_VALUE_BYTES + 1]))
            .await,
        |error| matches!(error, StoreError::ValueTooLarge { .. }),
        "value too large",
    );
    assert_eq!(current(store).await, before, "nothing written");
    let at_limit: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
    store
        .put(b"/big/c", at_limit.clone(), Precondition::None)
        .await
        .expect("a value at the limit is accepted");
    assert_eq!(
        get(store, "/big/c").await.map(|kv| kv.value),
        Some(at_limit)
    );
}

/// Bad keys, prefixes, tokens and revisions are rejected before anything happens.
pub async fn invalid_keys_and_requests_rejected(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let invalid_key = |error: &StoreError| matches!(error, StoreError::InvalidKey { .. });
    let invalid_request = |error: &StoreError| matches!(error, StoreError::InvalidRequest { .. });
    assert_error(
        store.put(b"", b"v".to_vec(), Precondition::None).await,
        invalid_key,
        "invalid key (empty)",
    );
    assert_error(
        store.put(b"/a\0b", b"v".to_vec(), Precondition::None).await,
        invalid_key,
        "invalid key (NUL)",
    );
    assert_error(
        store
            .put(
                &vec![b'k'; MAX_KEY_BYTES + 1],
                b"v".to_vec(),
                Precondition::None,
            )
            .await,
        invalid_key,
        "invalid key (long)",
    );
    store
        .put(
            &vec![b'k'; MAX_KEY_BYTES],
            b"v".to_vec(),
            Precondition::None,
        )
        .await
        .expect("a key at the limit");
    assert_error(store.get(b"").await, invalid_key, "invalid key");
    assert_error(
        store.delete(b"/x\0", Precondition::None).await,
        invalid_key,
        "invalid key",
    );
    assert_error(
        store.txn(Txn::new().when(Compare::exists(b""))).await,
        invalid_key,
        "invalid key in a compare",
    );
    assert_error(
        store.list(b"/a\0", ListOptions::new()).await,
        invalid_key,
        "invalid prefix",
    );
    let mut watch = store.watch(b"/a\0", 0);
    assert_error(
        next_event(&mut watch).await,
        invalid_key,
        "invalid watch prefix",
    );

    assert_error(
        store
            .list(b"/", ListOptions::new().continue_from("garbage"))
            .await,
        invalid_request,
        "bad token",
    );
    for i in 0..3 {
        put(store, &format!("/tok/{i}"), "v").await;
    }
    let token = store
        .list(b"/tok/", ListOptions::new().limit(1))
        .await
        .expect("list")
        .continue_token
        .expect("more");
    assert_error(
        store
            .list(b"/other/", ListOptions::new().continue_from(token))
            .await,
        invalid_request,
        "token of another prefix",
    );
    assert_error(
        store.list(b"/", ListOptions::new().at_revision(0)).await,
        invalid_request,
        "revision 0",
    );
}

/// A small resource for the typed cases.
#[derive(Debug)]
pub struct Widget;

/// [`Widget`]'s spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidgetSpec {
    /// Some user-owned field.
    pub size: u32,
}

/// [`Widget`]'s status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidgetStatus {
    /// The spec revision the controller last acted on.
    pub observed: u64,
    /// Some controller-owned field.
    pub ready: bool,
}

impl Resource for Widget {
    const KIND: &'static str = "widgets";
    type Spec = WidgetSpec;
    type Status = WidgetStatus;
}

/// A status write does not move the spec's revision and vice versa, so neither writer's
/// compare-and-swap conflicts with the other's writes.
pub async fn typed_spec_status_independence(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let widgets: TypedStore<Widget> = TypedStore::new(Arc::clone(&fixture.store));
    let object = ObjectRef::new("team", "w1");
    let created = widgets
        .create(&object, &WidgetSpec { size: 1 })
        .await
        .expect("create");

    // The user reads the spec; the controller writes status twice.
    let user_view = widgets.get(&object).await.expect("get").expect("exists");
    assert_eq!(user_view.spec.mod_revision, created);
    assert!(user_view.status.is_none());
    let s1 = widgets
        .put_status(
            &object,
            &WidgetStatus {
                observed: created,
                ready: false,
            },
            StatusWrite::new().precondition(Precondition::MustNotExist),
        )
        .await
        .expect("first status");
    let s2 = widgets
        .put_status(
            &object,
            &WidgetStatus {
                observed: created,
                ready: true,
            },
            StatusWrite::new().precondition(Precondition::ModRevision(s1)),
        )
        .await
        .expect("status CAS");
    let after_status = widgets.get(&object).await.expect("get").expect("exists");
    assert_eq!(
        after_status.spec.mod_revision, created,
        "status writes do not touch the spec's revision"
    );
    assert_eq!(after_status.spec.version, 1);

    // The user's CAS based on the spec read before the status writes still succeeds.
    let edited = widgets
        .update_spec(
            &object,
            &WidgetSpec { size: 2 },
            Precondition::ModRevision(user_view.spec.mod_revision),
        )
        .await
        .expect("the user's edit does not conflict with status writes");
    let after_edit = widgets.get(&object).await.expect("get").expect("exists");
    let status = after_edit.status.expect("status kept");
    assert_eq!(
        (status.mod_revision, status.version),
        (s2, 2),
        "spec writes do not touch the status' revision"
    );
    assert_eq!(after_edit.spec.mod_revision, edited);

    // ... and the controller's CAS based on its last status write still succeeds too.
    widgets
        .put_status(
            &object,
            &WidgetStatus {
                observed: edited,
                ready: true,
            },
            StatusWrite::new().precondition(Precondition::ModRevision(s2)),
        )
        .await
        .expect("the controller's CAS does not conflict with the user's edit");

    // Stale writers on either side do conflict.
    assert_error(
        widgets
            .update_spec(
                &object,
                &WidgetSpec { size: 3 },
                Precondition::ModRevision(created),
            )
            .await,
        StoreError::is_conflict,
        "conflict on a stale spec",
    );
    assert_error(
        widgets
            .put_status(
                &object,
                &WidgetStatus {
                    observed: 0,
                    ready: false,
                },
                StatusWrite::new().precondition(Precondition::ModRevision(s2)),
            )
            .await,
        StoreError::is_conflict,
        "conflict on a stale status",
    );
}

/// Create, get, update, list, delete through the typed layer.
pub async fn typed_lifecycle(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let widgets: TypedStore<Widget> = TypedStore::new(Arc::clone(&fixture.store));
    let a = ObjectRef::new("team-a", "w");
    let a2 = ObjectRef::new("team-a", "w-2");
    let b = ObjectRef::new("team-b", "w");
    widgets
        .create(&a, &WidgetSpec { size: 1 })
        .await
        .expect("create");
    widgets
        .create(&a2, &WidgetSpec { size: 2 })
        .await
        .expect("create");
    widgets
        .create(&b, &WidgetSpec { size: 3 })
        .await
        .expect("create");
    assert_error(
        widgets.create(&a, &WidgetSpec { size: 9 }).await,
        StoreError::is_conflict,
        "conflict (exists)",
    );
    assert_error(
        widgets
            .update_spec(
                &ObjectRef::new("team-a", "missing"),
                &WidgetSpec { size: 1 },
                Precondition::None,
            )
            .await,
        StoreError::is_not_found,
        "not found",
    );
    assert_error(
        widgets
            .put_status(
                &ObjectRef::new("team-a", "missing"),
                &WidgetStatus {
                    observed: 0,
                    ready: true,
                },
                StatusWrite::new(),
            )
            .await,
        StoreError::is_not_found,
        "not found (no status without a spec)",
    );
    widgets
        .put_status(
            &a2,
            &WidgetStatus {
                observed: 1,
                ready: true,
            },
            StatusWrite::new(),
        )
        .await
        .expect("status");

    let team_a = widgets.list(Some("team-a")).await.expect("list");
    let names: Vec<(String, u32, bool)> = team_a
        .items
        .iter()
        .map(|object| {
            (
                object.object.name.clone(),
                object.spec.value.size,
                object.status.is_some(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("w".to_string(), 1, false), ("w-2".to_string(), 2, true)]
    );
    let everything = widgets.list(None).await.expect("list");
    assert_eq!(everything.items.len(), 3);
    assert!(everything.revision >= team_a.revision);
    assert_eq!(
        widgets.list(Some("team")).await.expect("list").items.len(),
        0,
        "namespace prefixes do not overlap"
    );

    let deleted = widgets
        .delete(&a2, Precondition::None)
        .await
        .expect("delete");
    assert!(deleted.is_some());
    assert!(widgets.get(&a2).await.expect("get").is_none());
    assert!(
        fixture
            .store
            .list(b"/capstan/widgets/team-a/w-2/", ListOptions::new())
            .await
            .expect("list")
            .entries
            .is_empty(),
        "spec and status are both gone"
    );
    assert_eq!(
        widgets
            .delete(&a2, Precondition::None)
            .await
            .expect("delete again"),
        None
    );
    let current = widgets.get(&a).await.expect("get").expect("exists");
    assert_error(
        widgets
            .delete(&a, Precondition::ModRevision(current.spec.mod_revision + 1))
            .await,
        StoreError::is_conflict,
        "conflict",
    );
    widgets
        .delete(&a, Precondition::ModRevision(current.spec.mod_revision))
        .await
        .expect("CAS delete");
}

/// Status writes fenced on an ownership key fail once ownership moves.
pub async fn typed_status_fencing(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let widgets: TypedStore<Widget> = TypedStore::new(Arc::clone(&fixture.store));
    let object = ObjectRef::new("team", "fenced");
    widgets
        .create(&object, &WidgetSpec { size: 1 })
        .await
        .expect("create");
    let ownership = b"/capstan/shards/owners/cluster-1";
    let held = store
        .put(ownership, b"member-1".to_vec(), Precondition::MustNotExist)
        .await
        .expect("acquire")
        .revision;
    let fence = Compare::create_revision(ownership, CompareOp::Equal, held);
    widgets
        .put_status(
            &object,
            &WidgetStatus {
                observed: 1,
                ready: true,
            },
            StatusWrite::new().fence(fence.clone()),
        )
        .await
        .expect("the owner writes status");

    // Ownership moves: released and taken by another member.
    delete(store, "/capstan/shards/owners/cluster-1").await;
    let taken = store
        .put(ownership, b"member-2".to_vec(), Precondition::MustNotExist)
        .await
        .expect("acquire")
        .revision;
    let before = widgets.get(&object).await.expect("get").expect("exists");
    match widgets
        .put_status(
            &object,
            &WidgetStatus {
                observed: 2,
                ready: false,
            },
            StatusWrite::new().fence(fence),
        )
        .await
    {
        Err(StoreError::FenceLost {
            current_revision, ..
        }) => assert_eq!(current_revision, taken),
        other => panic!("expected FenceLost, got {other:?}"),
    }
    let after = widgets.get(&object).await.expect("get").expect("exists");
    assert_eq!(
        before.status, after.status,
        "a fenced-off write changes nothing"
    );

    // The new owner's fence holds.
    let new_fence = Compare::create_revision(ownership, CompareOp::Equal, taken);
    widgets
        .put_status(
            &object,
            &WidgetStatus {
                observed: 3,
                ready: true,
            },
            StatusWrite::new().fence(new_fence),
        )
        .await
        .expect("the new owner writes status");
}

/// Typed watches decode spec and status changes and skip other keys.
pub async fn typed_watch(factory: &dyn StoreFactory) {
    let fixture = factory.create().await;
    let store = &*fixture.store;
    let widgets: TypedStore<Widget> = TypedStore::new(Arc::clone(&fixture.store));
    let listed = widgets.list(Some("team")).await.expect("list");
    let mut watch = widgets.watch(Some("team"), listed.revision);
    let object = ObjectRef::new("team", "w");
    let created = widgets
        .create(&object, &WidgetSpec { size: 1 })
        .await
        .expect("create");
    put(store, "/capstan/widgets/team/w/unrelated", "ignored").await;
    widgets
        .create(&ObjectRef::new("other", "w"), &WidgetSpec { size: 1 })
        .await
        .expect("create elsewhere");
    let status = widgets
        .put_status(
            &object,
            &WidgetStatus {
                observed: created,
                ready: true,
            },
            StatusWrite::new(),
        )
        .await
        .expect("status");
    let deleted = widgets
        .delete(&object, Precondition::None)
        .await
        .expect("delete")
        .expect("deleted");

    let mut events = Vec::new();
    while events.len() < 4 {
        match tokio::time::timeout(super::EVENT_DEADLINE, watch.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            other => panic!(
                "expected a typed event, got {:?}",
                other.map(|item| item.map(|result| result.map(|event| event.revision())))
            ),
        }
    }
    match &events[0] {
        TypedEvent::SpecPut { object: got, spec } => {
            assert_eq!(
                (got, spec.value.size, spec.mod_revision),
                (&object, 1, created)
            )
        }
        other => panic!("expected SpecPut, got {other:?}"),
    }
    match &events[1] {
        TypedEvent::StatusPut { status: got, .. } => {
            assert_eq!((got.value.ready, got.mod_revision), (true, status))
        }
        other => panic!("expected StatusPut, got {other:?}"),
    }
    assert!(matches!(&events[2], TypedEvent::SpecDeleted { revision, .. } if *revision == deleted));
    assert!(
        matches!(&events[3], TypedEvent::StatusDeleted { revision, .. } if *revision == deleted)
    );
}

/// Random operation sequences agree with the reference model (deterministic sample; the
/// proptest in the backend's tests explores more and shrinks failures).
pub async fn model_random_ops(factory: &dyn StoreFactory) {
    let mut runner = TestRunner::deterministic();
    let strategy = super::model::ops_strategy();
    for _ in 0..6 {
        let ops = strategy
            .new_tree(&mut runner)
            .expect("a generated sequence")
            .current();
        let fixture = factory.create().await;
        super::model::check_against_model(&*fixture.store, &ops).await;
    }
}
