//! Behaviour specific to the embedded backend: the file (reopen, locking, damage), closing, and
//! automatic compaction. The shared semantics are in `embedded_conformance.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use capstan_store::conformance::next_events;
use capstan_store::{
    EmbeddedOptions, EmbeddedStore, ListOptions, Precondition, Retention, Revision, Store,
    StoreError, WatchEvent,
};
use futures::StreamExt;

async fn open(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path, EmbeddedOptions::default())
        .await
        .expect("open store")
}

async fn put(store: &EmbeddedStore, key: &str, value: &[u8]) -> Revision {
    store
        .put(key.as_bytes(), value.to_vec(), Precondition::None)
        .await
        .expect("put")
        .revision
}

/// Data, revisions and the compaction point survive a clean close; revision numbers are never
/// reused.
#[tokio::test]
async fn reopen_keeps_data_and_revisions_monotonic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/dir/store.redb");
    let store = open(&path).await;
    let mut last = 0;
    for i in 0..20 {
        last = put(&store, &format!("/r/{i}"), b"v").await;
    }
    store
        .delete(b"/r/0", Precondition::None)
        .await
        .expect("delete");
    let deleted_at = store.current_revision().await.expect("revision");
    assert!(deleted_at > last);
    store.compact(last).await.expect("compact");
    store.close().await.expect("close");

    let store = open(&path).await;
    assert_eq!(
        store.current_revision().await.expect("revision"),
        deleted_at,
        "the revision survives a reopen"
    );
    assert_eq!(
        store.compact_revision(),
        last,
        "the compaction point survives a reopen"
    );
    assert_eq!(store.get(b"/r/0").await.expect("get"), None);
    let kv = store
        .get(b"/r/5")
        .await
        .expect("get")
        .expect("present after reopen");
    assert_eq!(kv.value, b"v");
    let next = put(&store, "/r/new", b"v").await;
    assert_eq!(
        next,
        deleted_at + 1,
        "the next write continues the numbering"
    );

    // Delete everything and compact all history away: numbering still continues.
    let keys: Vec<Vec<u8>> = store
        .list_all(b"/r/", 100)
        .await
        .expect("list")
        .entries
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    for key in keys {
        store
            .delete(&key, Precondition::None)
            .await
            .expect("delete");
    }
    let head = store.current_revision().await.expect("revision");
    store.compact(head).await.expect("compact");
    store.close().await.expect("close");
    let store = open(&path).await;
    assert_eq!(store.current_revision().await.expect("revision"), head);
    assert!(
        put(&store, "/after", b"v").await > head,
        "no revision is reused after compaction and reopen"
    );
    assert!(matches!(
        store.watch(b"", 0).next().await,
        Some(Err(StoreError::Compacted { compact_revision })) if compact_revision == head
    ));
    store.close().await.expect("close");
}

/// Only one handle may have the file open; closing releases it.
#[tokio::test]
async fn second_open_is_refused_until_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = open(&path).await;
    match EmbeddedStore::open(&path, EmbeddedOptions::default()).await {
        Err(StoreError::AlreadyOpen { path: reported }) => assert_eq!(reported, path),
        other => panic!("expected AlreadyOpen, got {other:?}"),
    }
    store.close().await.expect("close");
    open(&path).await.close().await.expect("reopen after close");
}

/// After close, every handle and watcher reports `Closed`.
#[tokio::test]
async fn closed_store_reports_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir.path().join("store.redb")).await;
    let clone = store.clone();
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch(b"/", start);
    put(&store, "/a", b"1").await;
    assert_eq!(next_events(&mut watch, 1).await.len(), 1);
    store.close().await.expect("close");
    assert!(matches!(clone.get(b"/a").await, Err(StoreError::Closed)));
    assert!(matches!(
        clone.put(b"/a", b"2".to_vec(), Precondition::None).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        clone.current_revision().await,
        Err(StoreError::Closed)
    ));
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch ends promptly");
    assert!(
        matches!(ended, Some(Err(StoreError::Closed))),
        "got {ended:?}"
    );
    let mut late = clone.watch(b"/", 0);
    let first = tokio::time::timeout(Duration::from_secs(10), late.next())
        .await
        .expect("a late watch ends promptly");
    assert!(
        matches!(first, Some(Err(StoreError::Closed))),
        "got {first:?}"
    );
}

/// A missing file is created (with its directories) by default and refused otherwise.
#[tokio::test]
async fn missing_file_handling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.redb");
    let options = EmbeddedOptions {
        create_if_missing: false,
        ..EmbeddedOptions::default()
    };
    match EmbeddedStore::open(&path, options).await {
        Err(StoreError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("expected a not-found error, got {other:?}"),
    }
    assert!(!path.exists(), "nothing is created");
    // An empty file holds nothing and is initialised.
    std::fs::write(&path, b"").expect("empty file");
    let store = EmbeddedStore::open(&path, EmbeddedOptions::default())
        .await
        .expect("an empty file is initialised");
    assert_eq!(
        store.current_revision().await.expect("revision"),
        1,
        "a fresh store is at revision 1"
    );
    store.close().await.expect("close");
}

/// A file that is not a store is refused with `Corrupt`, and left exactly as it was.
#[tokio::test]
async fn garbage_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("garbage.redb");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(&path, &garbage).expect("write garbage");
    let result = EmbeddedStore::open(&path, EmbeddedOptions::default()).await;
    assert!(
        matches!(result, Err(StoreError::Corrupt { .. })),
        "got {result:?}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read back"),
        garbage,
        "a refused file is never modified"
    );

    // A text file, too.
    std::fs::write(&path, b"this is not a database\n").expect("write text");
    let result = EmbeddedStore::open(&path, EmbeddedOptions::default()).await;
    assert!(
        matches!(result, Err(StoreError::Corrupt { .. })),
        "got {result:?}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read back"),
        b"this is not a database\n"
    );
}

/// A redb file written by something else is not mistaken for an empty store.
#[tokio::test]
async fn foreign_redb_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("foreign.redb");
    {
        const OTHER: redb::TableDefinition<'static, &str, u64> =
            redb::TableDefinition::new("other");
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        txn.open_table(OTHER)
            .expect("table")
            .insert("x", 1)
            .expect("insert");
        txn.commit().expect("commit");
    }
    match EmbeddedStore::open(&path, EmbeddedOptions::default()).await {
        Err(StoreError::Corrupt { what, .. }) => {
            assert!(what.contains("not a Capstan store"), "{what}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A truncated store file is refused (not silently reset or shortened further).
#[tokio::test]
async fn truncated_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = open(&path).await;
    for i in 0..200 {
        put(&store, &format!("/t/{i:03}"), &vec![b'x'; 2000]).await;
    }
    store.close().await.expect("close");
    let full = std::fs::metadata(&path).expect("metadata").len();
    for keep in [full / 2, full / 4, 4096, 100] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for truncation");
        file.set_len(keep).expect("truncate");
        drop(file);
        let result = EmbeddedStore::open(&path, EmbeddedOptions::default()).await;
        eprintln!("truncated to {keep} of {full}: {result:?}");
        assert!(
            matches!(result, Err(StoreError::Corrupt { .. })),
            "a file truncated to {keep} of {full} bytes must be refused, got {result:?}"
        );
        assert_eq!(
            std::fs::metadata(&path).expect("metadata").len(),
            keep,
            "the refused file is not modified"
        );
    }
}

/// Damage inside a page holding data is detected by the checksums on open.
#[tokio::test]
async fn bit_flip_in_data_is_detected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let marker = b"MARKER-0123456789-MARKER-0123456789-MARKER";
    let store = open(&path).await;
    put(&store, "/m", marker).await;
    store.close().await.expect("close");
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(marker.len())
        .position(|window| window == marker)
        .expect("the value is in the file");
    bytes[at + 5] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write damaged file");
    match EmbeddedStore::open(&path, EmbeddedOptions::default()).await {
        Err(StoreError::Corrupt { what, location }) => {
            assert!(
                location.contains("store.redb"),
                "the error says where: {location}"
            );
            assert!(!what.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Retention by revision count compacts automatically.
#[tokio::test]
async fn automatic_compaction_by_revisions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = EmbeddedOptions {
        retention: Retention {
            max_revisions: Some(40),
            max_age: None,
        },
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path().join("store.redb"), options)
        .await
        .expect("open");
    for i in 0..200 {
        put(&store, &format!("/a/{}", i % 10), b"v").await;
    }
    let current = store.current_revision().await.expect("revision");
    let compacted = store.compact_revision();
    assert!(compacted > 0, "history was compacted");
    assert!(
        current - compacted <= 40 + 40 / 8 + 1,
        "at most the retention plus slack is kept: {current} - {compacted}"
    );
    assert!(
        current - compacted >= 40,
        "at least the retention is kept: {current} - {compacted}"
    );
    assert!(matches!(
        store.watch(b"/a/", 1).next().await,
        Some(Err(StoreError::Compacted { .. }))
    ));
    let recent = store
        .watch(b"/a/", current - 40)
        .take(40)
        .collect::<Vec<_>>()
        .await;
    assert!(
        recent.iter().all(Result::is_ok),
        "the retained history replays"
    );
    let past = store
        .list(b"/a/", ListOptions::new().at_revision(current - 40))
        .await
        .expect("list in retention");
    assert_eq!(past.entries.len(), 10);
    store.close().await.expect("close");
}

/// Retention by age compacts history older than the limit once writes continue.
#[tokio::test]
async fn automatic_compaction_by_age() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = EmbeddedOptions {
        retention: Retention {
            max_revisions: None,
            max_age: Some(Duration::from_millis(200)),
        },
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path().join("store.redb"), options)
        .await
        .expect("open");
    let first = put(&store, "/age/first", b"v").await;
    // Keep writing (retention runs after writes) until the first write has aged out.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    while store.compact_revision() < first {
        assert!(
            Instant::now() < deadline,
            "age-based compaction did not happen in time"
        );
        tick.tick().await;
        put(&store, "/age/tick", b"v").await;
    }
    let current = store.current_revision().await.expect("revision");
    assert!(store.compact_revision() < current, "recent history is kept");
    let watch_from_first = store.watch(b"/age/", first - 1).next().await;
    assert!(
        matches!(watch_from_first, Some(Err(StoreError::Compacted { .. }))),
        "got {watch_from_first:?}"
    );
    assert_eq!(
        store
            .get(b"/age/first")
            .await
            .expect("get")
            .map(|kv| kv.value),
        Some(b"v".to_vec())
    );
    store.close().await.expect("close");
}

/// A watch that starts live keeps up with writes as they happen and reports previous values.
#[tokio::test]
async fn live_watch_reports_previous_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir.path().join("store.redb")).await;
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch(b"/p/", start);
    put(&store, "/p/a", b"1").await;
    put(&store, "/p/a", b"2").await;
    store
        .delete(b"/p/a", Precondition::None)
        .await
        .expect("delete");
    let events = next_events(&mut watch, 3).await;
    let prevs: Vec<Option<Vec<u8>>> = events
        .iter()
        .map(|event| event.prev().map(|prev| prev.value.clone()))
        .collect();
    assert_eq!(prevs, [None, Some(b"1".to_vec()), Some(b"2".to_vec())]);
    assert!(matches!(events[2], WatchEvent::Delete { .. }));
    store.close().await.expect("close");
}
