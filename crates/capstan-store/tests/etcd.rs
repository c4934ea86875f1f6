//! The etcd backend beyond the conformance suite, against real etcds: unreachable etcd,
//! namespaces sharing one etcd (and the key layout in etcd), watches resumed after a
//! compaction, across an etcd restart, past a compaction thanks to progress notifications,
//! and after etcd is gone for good.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use capstan_store::conformance::cases::{Widget, WidgetSpec, WidgetStatus};
use capstan_store::conformance::{next_event, next_events};
use capstan_store::typed::{ObjectRef, StatusWrite, TypedStore};
use capstan_store::{
    EtcdOptions, EtcdStore, ListOptions, Precondition, Revision, Store, StoreError, WatchEvent,
};
use capstan_testkit::Etcd;

fn options(etcd: &Etcd) -> EtcdOptions {
    EtcdOptions::new([etcd.endpoint()])
}

async fn put(store: &dyn Store, key: &str, value: &str) -> Revision {
    store
        .put(
            key.as_bytes(),
            value.as_bytes().to_vec(),
            Precondition::None,
        )
        .await
        .unwrap_or_else(|error| panic!("put {key}: {}", chain(&error)))
        .revision
}

fn keys(events: &[WatchEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| String::from_utf8_lossy(event.key()).into_owned())
        .collect()
}

/// An error with all its causes, as an operator would read it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_an_unreachable_etcd_fails_within_the_deadline() -> Result<()> {
    capstan_testkit::init_test_logging();
    let port = capstan_testkit::net::free_port()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let options = EtcdOptions {
        connect_timeout: Duration::from_secs(2),
        ..EtcdOptions::new([endpoint.clone()])
    };
    let started = Instant::now();
    let error = EtcdStore::connect(options)
        .await
        .expect_err("nothing listens on the port");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    let message = chain(&error);
    tracing::info!(%message, "the error an operator sees");
    assert!(
        message.contains("connecting to etcd") && message.contains(&endpoint),
        "the error names what failed and where: {message}"
    );

    for (endpoints, what) in [(vec![], "no endpoint"), (vec!["not a url"], "a bad URL")] {
        let error = EtcdStore::connect(EtcdOptions::new(endpoints))
            .await
            .expect_err(what);
        assert!(
            matches!(error, StoreError::InvalidRequest { .. }),
            "{what}: {error:?}"
        );
    }
    let error = EtcdStore::connect(EtcdOptions::new([endpoint]).namespace(b"/a\0".to_vec()))
        .await
        .expect_err("a namespace with NUL");
    assert!(matches!(error, StoreError::InvalidKey { .. }), "{error:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_share_one_etcd_without_seeing_each_other() -> Result<()> {
    capstan_testkit::init_test_logging();
    let etcd = capstan_testkit::shared::etcd().await?;
    let run = std::process::id();
    let (ns_a, ns_b) = (format!("/ns-a-{run}"), format!("/ns-b-{run}"));
    let a: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(options(etcd).namespace(ns_a.clone())).await?);
    let b: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(options(etcd).namespace(ns_b.clone())).await?);
    let raw = EtcdStore::connect(options(etcd)).await?;

    let start = b.current_revision().await?;
    let mut b_watch = b.watch(b"", start);

    let widgets = TypedStore::<Widget>::new(Arc::clone(&a));
    let object = ObjectRef::new("team", "w1");
    widgets.create(&object, &WidgetSpec { size: 1 }).await?;
    widgets
        .put_status(
            &object,
            &WidgetStatus {
                observed: 1,
                ready: true,
            },
            StatusWrite::new(),
        )
        .await?;

    // In etcd, the keys are the store's keys behind the namespace: spec and status apart.
    let in_etcd: Vec<String> = raw
        .list(ns_a.as_bytes(), ListOptions::new())
        .await?
        .entries
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    assert_eq!(
        in_etcd,
        [
            format!("{ns_a}/capstan/widgets/team/w1/spec"),
            format!("{ns_a}/capstan/widgets/team/w1/status"),
        ]
    );
    // The other namespace sees none of it, neither in lists nor in its watch.
    assert!(b.list(b"", ListOptions::new()).await?.entries.is_empty());
    assert!(
        TypedStore::<Widget>::new(Arc::clone(&b))
            .get(&object)
            .await?
            .is_none()
    );
    let sentinel = put(&*b, "/sentinel", "b").await;
    let event = next_event(&mut b_watch).await?;
    assert_eq!(
        (event.key(), event.revision()),
        (&b"/sentinel"[..], sentinel),
        "b's watch sees b's write first, nothing of a's"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_before_the_compaction_point_ends_with_compacted_and_a_relist_resumes()
-> Result<()> {
    capstan_testkit::init_test_logging();
    let etcd = Etcd::start().await?;
    let store = EtcdStore::connect(options(&etcd)).await?;
    let old = put(&store, "/c/a", "1").await;
    put(&store, "/c/a", "2").await;
    put(&store, "/c/b", "1").await;
    // The compaction point is a delete: etcd drops its tombstone with the compaction.
    let point = store.delete(b"/c/b", Precondition::None).await?.revision;
    store.compact(point).await?;

    for from in [old, point - 1] {
        let mut watch = store.watch(b"/c/", from);
        match next_event(&mut watch).await {
            Err(StoreError::Compacted { compact_revision }) => assert_eq!(compact_revision, point),
            other => panic!("a watch from {from} (compacted at {point}) gave {other:?}"),
        }
        assert!(
            tokio::time::timeout(
                Duration::from_secs(15),
                futures::StreamExt::next(&mut watch)
            )
            .await
            .context("the stream ends")?
            .is_none(),
            "the stream ends after Compacted"
        );
    }
    match store
        .list(b"/c/", ListOptions::new().at_revision(old))
        .await
    {
        Err(StoreError::Compacted { compact_revision }) => assert!(compact_revision > old),
        other => panic!("a list at a compacted revision gave {other:?}"),
    }

    // What the error tells the caller to do: relist, then watch from the list's revision.
    let page = store.list_all(b"/c/", 100).await?;
    assert_eq!(page.entries.len(), 1);
    let mut watch = store.watch(b"/c/", page.revision);
    let next = put(&store, "/c/c", "1").await;
    assert_eq!(next_event(&mut watch).await?.revision(), next);

    // From the compaction point itself: exactly what came after it.
    let mut from_point = store.watch(b"/c/", point);
    assert_eq!(keys(&next_events(&mut from_point, 1).await), ["/c/c"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_survives_an_etcd_restart_without_gaps_or_duplicates() -> Result<()> {
    capstan_testkit::init_test_logging();
    let mut etcd = Etcd::start().await?;
    let store = EtcdStore::connect(options(&etcd)).await?;
    let start = store.current_revision().await?;
    let mut watch = store.watch(b"/r/", start);
    let a = put(&store, "/r/a", "1").await;
    assert_eq!(next_event(&mut watch).await?.revision(), a);
    // Written before the restart and not yet read by the consumer.
    put(&store, "/r/b", "1").await;

    etcd.restart().await?;
    let after_restart = Instant::now();
    let c = put(&store, "/r/c", "1").await;
    let events = next_events(&mut watch, 2).await;
    assert_eq!(keys(&events), ["/r/b", "/r/c"], "no gap, no duplicate");
    assert_eq!(events[1].revision(), c);
    let sentinel = put(&store, "/r/zz", "1").await;
    assert_eq!(
        next_event(&mut watch).await?.revision(),
        sentinel,
        "nothing delivered twice"
    );
    tracing::info!(elapsed = ?after_restart.elapsed(), "caught up after the restart");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_behind_the_compaction_point_ends_with_compacted() -> Result<()> {
    capstan_testkit::init_test_logging();
    let mut etcd = Etcd::start().await?;
    let store = EtcdStore::connect(options(&etcd)).await?;
    let start = store.current_revision().await?;
    let mut watch = store.watch(b"/quiet/", start);
    let first = put(&store, "/quiet/a", "1").await;
    assert_eq!(next_event(&mut watch).await?.revision(), first);

    // While the watched prefix is quiet, other keys change and history is compacted; then
    // the stream breaks. Resuming from the last revision the watch saw needs history that
    // is gone, so the watch says so (relist) instead of silently skipping.
    for i in 0..3 {
        put(&store, &format!("/busy/{i}"), "x").await;
    }
    let point = store.current_revision().await?;
    store.compact(point).await?;
    etcd.restart().await?;
    match next_event(&mut watch).await {
        Err(StoreError::Compacted { compact_revision }) => assert_eq!(compact_revision, point),
        other => panic!("expected Compacted after resuming behind compaction, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_let_a_quiet_watch_resume_past_a_compaction() -> Result<()> {
    capstan_testkit::init_test_logging();
    let mut etcd = Etcd::start_with_args(&["--watch-progress-notify-interval=200ms"]).await?;
    let store = EtcdStore::connect(options(&etcd)).await?;
    let start = store.current_revision().await?;
    let mut watch = store.watch(b"/quiet/", start);
    let first = put(&store, "/quiet/a", "1").await;
    assert_eq!(next_event(&mut watch).await?.revision(), first);

    // As above, but the watch is polled while the prefix is quiet, so etcd's progress
    // notifications tell it that nothing under its prefix happened up to the busy writes.
    for i in 0..3 {
        put(&store, &format!("/busy/{i}"), "x").await;
    }
    let point = store.current_revision().await?;
    assert!(
        tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut watch))
            .await
            .is_err(),
        "no event under the quiet prefix"
    );
    store.compact(point).await?;
    etcd.restart().await?;
    let next = put(&store, "/quiet/b", "1").await;
    let event = next_event(&mut watch).await?;
    assert_eq!(
        (event.key(), event.revision()),
        (&b"/quiet/b"[..], next),
        "resumed after the compaction point without a relist"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_watches_fail_clearly_when_etcd_is_gone() -> Result<()> {
    capstan_testkit::init_test_logging();
    let mut etcd = Etcd::start().await?;
    let endpoint = etcd.endpoint();
    let store = EtcdStore::connect(EtcdOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        watch_reconnect_timeout: Duration::from_secs(3),
        ..options(&etcd)
    })
    .await?;
    let start = store.current_revision().await?;
    let mut watch = store.watch(b"/gone/", start);
    let a = put(&store, "/gone/a", "1").await;
    assert_eq!(next_event(&mut watch).await?.revision(), a);

    etcd.process().stop();
    let stopped = Instant::now();
    match next_event(&mut watch).await {
        Err(error @ StoreError::Backend { .. }) => {
            let message = chain(&error);
            tracing::info!(%message, "the error a watcher sees");
            assert!(
                message.contains("could not re-establish") && message.contains(&endpoint),
                "{message}"
            );
        }
        other => panic!("expected the watch to give up with an error, got {other:?}"),
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(12),
        "gave up after {:?}",
        stopped.elapsed()
    );
    assert!(
        tokio::time::timeout(
            Duration::from_secs(15),
            futures::StreamExt::next(&mut watch)
        )
        .await
        .context("the stream ends")?
        .is_none()
    );

    let started = Instant::now();
    let error = store.get(b"/gone/a").await.expect_err("etcd is gone");
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    tracing::info!(message = %chain(&error), "the error a request sees");
    assert!(chain(&error).contains(&endpoint), "{}", chain(&error));
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_keys_vanish_on_revoke_at_once_and_after_the_ttl_without_keep_alives() -> Result<()>
{
    capstan_testkit::init_test_logging();
    let etcd = capstan_testkit::shared::etcd().await?;
    let store = EtcdStore::connect(options(etcd).namespace("/leases")).await?;
    let ttl = Duration::from_secs(2);

    // Revoked: the key is gone as soon as `revoke` returns.
    let lease = store.grant_lease(ttl).await?;
    assert_eq!(lease.ttl(), ttl);
    assert!(lease.is_alive());
    lease
        .put(b"/revoked", b"v".to_vec(), Precondition::MustNotExist)
        .await?;
    let conflict = lease
        .put(b"/revoked", b"w".to_vec(), Precondition::MustNotExist)
        .await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict { .. })),
        "{conflict:?}"
    );
    lease.revoke().await?;
    assert!(store.get(b"/revoked").await?.is_none());

    // Kept alive: the key outlives several TTLs... until the keep-alives stop.
    let started = Instant::now();
    let lease = store.grant_lease(ttl).await?;
    lease
        .put(b"/kept", b"v".to_vec(), Precondition::None)
        .await?;
    let alive = lease.alive();
    tokio::time::sleep(ttl * 2).await;
    assert!(
        store.get(b"/kept").await?.is_some(),
        "kept alive past 2 TTLs"
    );
    assert!(*alive.borrow());
    lease.stop_keep_alive();
    let stopped = Instant::now();
    capstan_testkit::wait::wait_until(
        "the unrenewed key expires",
        ttl + Duration::from_secs(3),
        || async { Ok(store.get(b"/kept").await?.is_none().then_some(())) },
    )
    .await?;
    let expired_after = stopped.elapsed();
    assert!(
        expired_after <= ttl + Duration::from_secs(2),
        "{expired_after:?}"
    );
    // Writing with the expired lease says so.
    let error = lease
        .put(b"/late", b"v".to_vec(), Precondition::None)
        .await
        .expect_err("the lease has expired");
    assert!(
        chain(&error).contains("has expired or was revoked"),
        "{}",
        chain(&error)
    );
    eprintln!(
        "leased key expired {expired_after:?} after its keep-alives stopped ({:?} in all)",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_etcd_is_gone_is_reported_lost_within_its_ttl() -> Result<()> {
    capstan_testkit::init_test_logging();
    let mut etcd = Etcd::start().await?;
    let store = EtcdStore::connect(EtcdOptions {
        request_timeout: Duration::from_secs(1),
        ..options(&etcd)
    })
    .await?;
    let ttl = Duration::from_secs(2);
    let lease = store.grant_lease(ttl).await?;
    let mut alive = lease.alive();
    etcd.process().stop();
    let stopped = Instant::now();
    tokio::time::timeout(ttl + Duration::from_secs(2), alive.wait_for(|alive| !alive))
        .await
        .context("the lost lease was not reported")??;
    let reported_after = stopped.elapsed();
    // Reported no later than etcd would expire it: within the TTL of the last keep-alive.
    assert!(
        reported_after <= ttl + Duration::from_millis(500),
        "{reported_after:?}"
    );
    assert!(!lease.is_alive());
    Ok(())
}
