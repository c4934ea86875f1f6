//! `takeover`: how long a dead or departing controller member's clusters stay unowned.
//!
//! Three members ([`Sharding`], the same code `capstand controller` runs) share 300
//! registered clusters on a real etcd (started by the testkit). Each round waits until the
//! owner keys match the ring's assignment, then takes one member away and times how long it
//! takes until every cluster it owned has an owner key held by a survivor:
//!
//! - **kill**: the member stops keeping its lease alive, as a `kill -9` does (no revoke);
//! - **graceful**: the member leaves (drops its clusters, revokes its lease), as SIGTERM does.
//!
//! The baseline, measured in the same rounds, is etcd's own part: when a watcher sees the
//! member's key deleted (the lease expiring after a kill, the revoke after a leave). What is
//! above it is Capstan's: noticing the change, recomputing the ring, taking the keys.
//!
//! Figures: `takeover_kill_s_median`, `takeover_kill_s_max`, `takeover_graceful_s_median`,
//! `takeover_graceful_s_max`, `lease_expiry_seen_s_median` and `leave_seen_s_median` (the
//! baselines), and `lease_ttl_s`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use capstan_controller::sharding::membership::member_key;
use capstan_controller::sharding::shard::{OWNERS_PREFIX, owner_key, read_cluster_loads};
use capstan_controller::sharding::{Epsilon, MemberInfo, Ring, ShardConfig, Sharding};
use capstan_model::Cluster;
use capstan_store::kinds::Clusters;
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{EtcdOptions, EtcdStore, Store};
use futures::StreamExt as _;

use crate::{Unit, figure, machine, progress, stats};

const CLUSTERS: usize = 300;
const MEMBERS: [&str; 3] = ["member-a", "member-b", "member-c"];

/// Runs the scenario.
pub async fn run(quick: bool) -> Result<()> {
    let (rounds, ttl) = if quick {
        (3, Duration::from_secs(2))
    } else {
        (7, Duration::from_secs(10))
    };
    progress!(
        "takeover: {} clusters, {} members, lease TTL {ttl:?}, {rounds} rounds of each; {}",
        CLUSTERS,
        MEMBERS.len(),
        machine()
    );
    let etcd = capstan_testkit::etcd::Etcd::start().await?;
    let raw = EtcdStore::connect(EtcdOptions::new([etcd.endpoint()]).namespace("/bench")).await?;
    let store: Arc<dyn Store> = Arc::new(raw.clone());
    let clusters = TypedStore::<Clusters>::new(store.clone());
    for i in 0..CLUSTERS {
        let cluster: Cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "capstan.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": format!("cluster-{i}")},
            "spec": {"server": format!("https://cluster-{i}.example.com:6443")},
        }))?;
        clusters
            .create(&ObjectRef::new("capstan", format!("cluster-{i}")), &cluster)
            .await?;
    }

    let start = |name: &str| {
        let config = ShardConfig {
            ttl,
            rebalance: Duration::from_secs(60),
            ..ShardConfig::new(MemberInfo::new(name))
        };
        Sharding::start(raw.clone(), store.clone(), config)
    };
    let mut members: BTreeMap<&str, Sharding> = BTreeMap::new();
    for name in MEMBERS {
        members.insert(name, start(name).await?);
    }

    let mut kill = Vec::new();
    let mut kill_seen = Vec::new();
    let mut graceful = Vec::new();
    let mut graceful_seen = Vec::new();
    for round in 0..rounds * 2 {
        let killing = round % 2 == 0;
        let victim = MEMBERS[round % MEMBERS.len()];
        let expected = assignment(&store, &MEMBERS).await?;
        wait_for_owners(&raw, &expected, Duration::from_secs(60)).await?;
        let lost: BTreeSet<String> = expected
            .iter()
            .filter(|(_, owner)| owner.as_str() == victim)
            .map(|(cluster, _)| cluster.clone())
            .collect();
        let survivors: Vec<&str> = MEMBERS.iter().copied().filter(|m| *m != victim).collect();
        let after = assignment(&store, &survivors).await?;
        let revision = raw.current_revision().await?;
        let mut member_events = raw.watch(member_key(victim).as_bytes(), revision);
        let sharding = members.remove(victim).context("the victim runs")?;
        let started = Instant::now();
        if killing {
            sharding.abandon();
        } else {
            // Leave runs concurrently with the measurement, as the process would exit.
            tokio::spawn(sharding.leave());
        }
        let seen = tokio::spawn(async move {
            while let Some(event) = member_events.next().await {
                if matches!(event, Ok(capstan_store::WatchEvent::Delete { .. })) {
                    return Some(started.elapsed());
                }
            }
            None
        });
        wait_for_owners(&raw, &after, ttl + Duration::from_secs(30)).await?;
        let took = started.elapsed().as_secs_f64();
        let seen = seen
            .await?
            .context("the member's key was never deleted")?
            .as_secs_f64();
        progress!(
            "round {round}: {} {victim} ({} clusters): owned again after {took:.3} s; etcd showed its key gone after {seen:.3} s",
            if killing { "killed" } else { "stopped" },
            lost.len()
        );
        if killing {
            kill.push(took);
            kill_seen.push(seen);
        } else {
            graceful.push(took);
            graceful_seen.push(seen);
        }
        // Back to three for the next round (a killed member's name is free once it expired,
        // which the takeover implies).
        members.insert(victim, start(victim).await?);
    }
    for (_, sharding) in members {
        sharding.leave().await;
    }

    figure("lease_ttl_s", ttl.as_secs_f64(), Unit::S);
    figure("takeover_kill_s_median", stats::median(&kill), Unit::S);
    figure(
        "takeover_kill_s_max",
        kill.iter().copied().fold(0.0, f64::max),
        Unit::S,
    );
    figure(
        "lease_expiry_seen_s_median",
        stats::median(&kill_seen),
        Unit::S,
    );
    figure(
        "takeover_graceful_s_median",
        stats::median(&graceful),
        Unit::S,
    );
    figure(
        "takeover_graceful_s_max",
        graceful.iter().copied().fold(0.0, f64::max),
        Unit::S,
    );
    figure(
        "leave_seen_s_median",
        stats::median(&graceful_seen),
        Unit::S,
    );
    Ok(())
}

/// The ring's assignment of the stored clusters to `members`.
async fn assignment(store: &Arc<dyn Store>, members: &[&str]) -> Result<BTreeMap<String, String>> {
    let read = read_cluster_loads(store).await?;
    let ring = Ring::with_members(Epsilon::default(), members.iter().copied());
    Ok(ring
        .assign(&read.loads)?
        .iter()
        .map(|(cluster, owner)| (cluster.to_owned(), owner.to_owned()))
        .collect())
}

/// Polls the owner keys (every 10 ms) until they are exactly `expected`.
async fn wait_for_owners(
    raw: &EtcdStore,
    expected: &BTreeMap<String, String>,
    within: Duration,
) -> Result<()> {
    let wanted: BTreeMap<Vec<u8>, &str> = expected
        .iter()
        .map(|(cluster, owner)| (owner_key(cluster).into_bytes(), owner.as_str()))
        .collect();
    let deadline = Instant::now() + within;
    loop {
        let page = raw.list_all(OWNERS_PREFIX.as_bytes(), 1000).await?;
        let now: BTreeMap<Vec<u8>, &[u8]> = page
            .entries
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.as_slice()))
            .collect();
        let matches = now.len() == wanted.len()
            && wanted
                .iter()
                .all(|(key, owner)| now.get(key).is_some_and(|v| *v == owner.as_bytes()));
        if matches {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the owner keys did not reach the ring's assignment within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
