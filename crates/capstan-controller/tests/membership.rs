//! Controller membership under etcd leases, against the test binary's real etcd: members see
//! each other, a graceful leave is seen at once, a member that stops keeping its lease alive
//! (a kill) disappears within the TTL, names are unique among live members, and `changes()`
//! reports every change. Each test uses its own etcd namespace; TTLs are 2 s to stay fast.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use capstan_controller::sharding::membership::{MEMBERS_PREFIX, member_key};
use capstan_controller::sharding::{
    ClusterLoad, Epsilon, MemberInfo, Membership, MembershipError, Ring,
};
use capstan_store::{EtcdOptions, EtcdStore, Store};
use capstan_testkit::wait::wait_until;
use futures::StreamExt;
use futures::stream::BoxStream;

const TTL: Duration = Duration::from_secs(2);

async fn store(namespace: &str) -> Result<EtcdStore> {
    capstan_testkit::init_test_logging();
    let etcd = capstan_testkit::shared::etcd().await?;
    Ok(EtcdStore::connect(EtcdOptions::new([etcd.endpoint()]).namespace(namespace)).await?)
}

fn names(members: &[MemberInfo]) -> Vec<&str> {
    members.iter().map(|member| member.name.as_str()).collect()
}

async fn join(store: &EtcdStore, name: &str) -> Result<Membership> {
    Membership::join(store, MemberInfo::new(name), TTL)
        .await
        .with_context(|| format!("join {name}"))
}

/// Waits until the view from `member` is exactly `expected`.
async fn wait_for_members(member: &Membership, expected: &[&str], timeout: Duration) -> Result<()> {
    wait_until(&format!("members {expected:?}"), timeout, || async {
        let members = member.members().await?;
        Ok((names(&members) == expected).then_some(()))
    })
    .await
}

async fn next_change(
    changes: &mut BoxStream<'static, Result<Vec<MemberInfo>, MembershipError>>,
    within: Duration,
) -> Result<Vec<String>> {
    let members = tokio::time::timeout(within, changes.next())
        .await
        .context("no membership change reported in time")?
        .context("the change stream ended")??;
    Ok(members.into_iter().map(|member| member.name).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_see_each_other_and_feed_the_ring() -> Result<()> {
    let store = store("/membership-see").await?;
    let a = Membership::join(&store, MemberInfo::new("a").with_capacity(2), TTL).await?;
    let b = join(&store, "b").await?;
    assert_eq!(a.ttl(), TTL);

    for member in [&a, &b] {
        let members = member.members().await?;
        assert_eq!(
            members,
            vec![MemberInfo::new("a").with_capacity(2), MemberInfo::new("b")]
        );
    }
    // The key layout, as an operator reads it.
    let key = store
        .get(member_key("a").as_bytes())
        .await?
        .context("a's key")?;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&key.value)?,
        serde_json::json!({"name": "a", "capacity": 2})
    );
    assert!(member_key("a").starts_with(MEMBERS_PREFIX));

    // The view feeds the ring, and every cluster lands on a live member.
    let members = a.members().await?;
    let ring = Ring::with_members(Epsilon::DEFAULT, names(&members));
    let clusters: Vec<ClusterLoad> = (0..20)
        .map(|i| ClusterLoad::new(format!("https://cluster-{i}"), 1))
        .collect();
    let assignment = ring.assign(&clusters)?;
    assert!(
        assignment
            .iter()
            .all(|(_, owner)| owner == "a" || owner == "b")
    );
    assert_eq!(
        assignment.clusters_of("a").count() + assignment.clusters_of("b").count(),
        20
    );

    a.leave().await?;
    b.leave().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_leaves_is_gone_at_once_for_the_others() -> Result<()> {
    let store = store("/membership-leave").await?;
    let a = join(&store, "a").await?;
    let b = join(&store, "b").await?;
    assert_eq!(names(&a.members().await?), ["a", "b"]);
    b.leave().await?;
    // No wait: the revoke deleted the key before `leave` returned.
    assert_eq!(names(&a.members().await?), ["a"]);
    a.leave().await?;
    assert!(live(&store).await?.is_empty());
    Ok(())
}

async fn live(store: &EtcdStore) -> Result<Vec<String>> {
    Ok(
        capstan_controller::sharding::membership::live_members(store)
            .await?
            .0
            .into_iter()
            .map(|member| member.name)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_disappears_within_the_ttl_while_the_live_one_stays() -> Result<()> {
    let store = store("/membership-kill").await?;
    let a = join(&store, "a").await?;
    let b = join(&store, "b").await?;
    let joined = Instant::now();
    // A kill: the keep-alives stop and nothing is revoked.
    drop(b);
    let killed = Instant::now();
    wait_for_members(&a, &["a"], TTL + Duration::from_secs(3)).await?;
    let gone_after = killed.elapsed();
    assert!(gone_after <= TTL + Duration::from_secs(2), "{gone_after:?}");
    // a's keep-alives hold its key well past its TTL.
    tokio::time::sleep((TTL * 2).saturating_sub(joined.elapsed())).await;
    assert_eq!(names(&a.members().await?), ["a"]);
    assert!(*a.alive().borrow());
    eprintln!("killed member gone after {gone_after:?}");
    a.leave().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_held_by_a_live_member_is_refused() -> Result<()> {
    let store = store("/membership-dup").await?;
    let first = join(&store, "same").await?;
    let error = Membership::join(&store, MemberInfo::new("same"), TTL)
        .await
        .expect_err("the name is held");
    assert!(
        matches!(error, MembershipError::NameTaken { ref name, .. } if name == "same"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("already held by a live member"),
        "{error}"
    );
    // The refused join left nothing behind, and the holder is untouched.
    assert_eq!(names(&first.members().await?), ["same"]);
    let invalid = Membership::join(&store, MemberInfo::new("a/b"), TTL).await;
    assert!(
        matches!(invalid, Err(MembershipError::InvalidName { .. })),
        "{invalid:?}"
    );

    // Once the holder leaves, the name is free again.
    first.leave().await?;
    let second = join(&store, "same").await?;
    second.leave().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reports_every_membership_change() -> Result<()> {
    let store = store("/membership-changes").await?;
    let a = join(&store, "a").await?;
    let mut changes = a.changes();
    let quick = Duration::from_secs(2);
    assert_eq!(next_change(&mut changes, quick).await?, ["a"]);

    let c = join(&store, "c").await?;
    assert_eq!(next_change(&mut changes, quick).await?, ["a", "c"]);
    let b = join(&store, "b").await?;
    assert_eq!(next_change(&mut changes, quick).await?, ["a", "b", "c"]);
    b.leave().await?;
    assert_eq!(next_change(&mut changes, quick).await?, ["a", "c"]);
    c.stop_keep_alive();
    assert_eq!(
        next_change(&mut changes, TTL + Duration::from_secs(3)).await?,
        ["a"]
    );
    drop(c);
    // Nothing else changed: no report.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), changes.next())
            .await
            .is_err()
    );
    a.leave().await?;
    assert_eq!(
        next_change(&mut changes, quick).await?,
        Vec::<String>::new()
    );
    Ok(())
}
