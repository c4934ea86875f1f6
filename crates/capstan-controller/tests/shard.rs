//! Per-cluster ownership against the test binary's real etcd: two members split the
//! registered clusters as the ring says, a write fenced on a lost ownership fails in the store,
//! a member that stops keeping its lease alive loses its clusters to the other within the TTL
//! (plus a few seconds), one that leaves revokes its keys before `leave` returns, and exactly one member reports an Application
//! whose destination is not registered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use capstan_controller::ownership::Ownership as _;
use capstan_controller::sharding::shard::{OWNERS_PREFIX, owner_key, read_cluster_loads};
use capstan_controller::sharding::{Epsilon, MemberInfo, Ring, ShardConfig, Sharding};
use capstan_model::{ApplicationDestination, Cluster};
use capstan_store::kinds::Clusters;
use capstan_store::typed::{ObjectRef, StatusWrite, TypedStore};
use capstan_store::{EtcdOptions, EtcdStore, Store, StoreError};
use capstan_testkit::wait::wait_until;

const TTL: Duration = Duration::from_secs(2);
const CLUSTERS: usize = 12;

async fn setup(namespace: &str) -> Result<(EtcdStore, Arc<dyn Store>)> {
    capstan_testkit::init_test_logging();
    let etcd = capstan_testkit::shared::etcd().await?;
    let raw = EtcdStore::connect(EtcdOptions::new([etcd.endpoint()]).namespace(namespace)).await?;
    let store: Arc<dyn Store> = Arc::new(raw.clone());
    let clusters = TypedStore::<Clusters>::new(store.clone());
    for i in 0..CLUSTERS {
        let cluster: Cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "capstan.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": format!("c{i}")},
            "spec": {"server": format!("https://c{i}.example.com:6443")},
        }))?;
        clusters
            .create(&ObjectRef::new("capstan", format!("c{i}")), &cluster)
            .await?;
    }
    Ok((raw, store))
}

async fn member(raw: &EtcdStore, store: &Arc<dyn Store>, name: &str) -> Result<Sharding> {
    let config = ShardConfig {
        ttl: TTL,
        rebalance: Duration::from_secs(60),
        ..ShardConfig::new(MemberInfo::new(name))
    };
    Ok(Sharding::start(raw.clone(), store.clone(), config).await?)
}

async fn expected(store: &Arc<dyn Store>, members: &[&str]) -> Result<BTreeMap<String, String>> {
    let read = read_cluster_loads(store).await?;
    let ring = Ring::with_members(Epsilon::default(), members.iter().copied());
    Ok(ring
        .assign(&read.loads)?
        .iter()
        .map(|(c, m)| (c.to_owned(), m.to_owned()))
        .collect())
}

/// Cluster server → holder, from the keys in etcd.
async fn owners(raw: &EtcdStore) -> Result<BTreeMap<String, String>> {
    let page = raw.list_all(OWNERS_PREFIX.as_bytes(), 100).await?;
    let mut owners = BTreeMap::new();
    for i in 0..CLUSTERS {
        let server = format!("https://c{i}.example.com:6443");
        if let Some(kv) = page
            .entries
            .iter()
            .find(|kv| kv.key == owner_key(&server).as_bytes())
        {
            owners.insert(server, String::from_utf8(kv.value.clone())?);
        }
    }
    Ok(owners)
}

async fn wait_for(
    raw: &EtcdStore,
    want: &BTreeMap<String, String>,
    within: Duration,
) -> Result<()> {
    wait_until("the owner keys to match the ring", within, || async {
        Ok((owners(raw).await? == *want).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_the_clusters_and_fence_what_they_lose() -> Result<()> {
    let (raw, store) = setup("/shard-split").await?;
    let a = member(&raw, &store, "a").await?;
    let b = member(&raw, &store, "b").await?;
    let both = expected(&store, &["a", "b"]).await?;
    wait_for(&raw, &both, Duration::from_secs(20)).await?;

    // Each member owns exactly what the keys say, and its fences hold.
    let (oa, ob) = (a.ownership(), b.ownership());
    let clusters = TypedStore::<Clusters>::new(store.clone());
    for (server, owner) in &both {
        let (mine, theirs) = if owner == "a" { (&oa, &ob) } else { (&ob, &oa) };
        assert!(mine.owns(server) && !theirs.owns(server), "{server}");
        let stamp = mine.stamp(server).expect("a stamp for an owned cluster");
        assert_eq!(stamp.member, *owner);
        assert!(theirs.stamp(server).is_none());
    }
    let c0_server = "https://c0.example.com:6443";
    let owner = &both[c0_server];
    let at = ObjectRef::new("capstan", "c0");
    let fenced = |fences| StatusWrite {
        fences,
        ..StatusWrite::new()
    };
    let mine = if owner == "a" { &oa } else { &ob };
    let theirs = if owner == "a" { &ob } else { &oa };
    let status = capstan_model::ClusterStatus::default();
    clusters
        .put_status(&at, &status, fenced(mine.fences(c0_server)))
        .await?;
    let refused = clusters
        .put_status(&at, &status, fenced(theirs.fences(c0_server)))
        .await;
    assert!(
        matches!(refused, Err(StoreError::FenceLost { .. })),
        "a non-owner's write went through: {refused:?}"
    );

    // `a` stops keeping its lease alive (a kill): `b` owns everything within the TTL + 1 s,
    // and a write under `a`'s old ownership fails although `a` never noticed.
    let old_fences: Vec<_> = both
        .iter()
        .filter(|(_, owner)| owner.as_str() == "a")
        .map(|(server, _)| (server.clone(), oa.fences(server)))
        .collect();
    assert!(!old_fences.is_empty(), "a owned nothing");
    a.abandon();
    let only_b = expected(&store, &["b"]).await?;
    // The bound: owned again within the TTL plus a few seconds.
    wait_for(&raw, &only_b, TTL + Duration::from_secs(5)).await?;
    for (server, fences) in old_fences {
        if server == c0_server {
            let refused = clusters.put_status(&at, &status, fenced(fences)).await;
            assert!(
                matches!(refused, Err(StoreError::FenceLost { .. })),
                "a write under a lost ownership went through: {refused:?}"
            );
        }
        assert!(ob.owns(&server));
    }

    // A member that leaves hands over at once: well before any TTL.
    let c = member(&raw, &store, "c").await?;
    let bc = expected(&store, &["b", "c"]).await?;
    wait_for(&raw, &bc, Duration::from_secs(20)).await?;
    c.leave().await;
    // Its keys are gone the moment it has left (revoked, not left to expire)...
    assert!(
        owners(&raw).await?.values().all(|owner| owner != "c"),
        "keys of a member that left are still there"
    );
    // ...so the other takes them without waiting for a TTL.
    wait_for(&raw, &only_b, TTL).await?;
    b.leave().await;
    assert!(owners(&raw).await?.is_empty(), "keys left after leaving");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_member_reports_an_unregistered_destination() -> Result<()> {
    let (raw, store) = setup("/shard-unregistered").await?;
    let members = [
        member(&raw, &store, "x").await?,
        member(&raw, &store, "y").await?,
        member(&raw, &store, "z").await?,
    ];
    let want = expected(&store, &["x", "y", "z"]).await?;
    wait_for(&raw, &want, Duration::from_secs(20)).await?;
    for i in 0..20 {
        let destination = ApplicationDestination {
            server: format!("https://nowhere-{i}.example.com"),
            ..ApplicationDestination::default()
        };
        let reporters = members
            .iter()
            .filter(|m| m.ownership().owns_destination(&destination))
            .count();
        assert_eq!(reporters, 1, "{}", destination.server);
    }
    // A registered destination, by name, is reported by its cluster's owner only.
    let by_name = ApplicationDestination {
        name: "c3".into(),
        ..ApplicationDestination::default()
    };
    let owner = &want["https://c3.example.com:6443"];
    for m in &members {
        assert_eq!(
            m.ownership().owns_destination(&by_name),
            m.ownership().member() == owner,
            "{}",
            m.ownership().member()
        );
    }
    for m in members {
        m.leave().await;
    }
    Ok(())
}
