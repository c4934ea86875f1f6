//! The testkit's Redis Cluster is a real three-master cluster that the `redis` crate's
//! cluster client can use, with keys spread over every master.

use anyhow::Result;
use capstan_testkit::{init_test_logging, shared};
use redis::AsyncCommands;

#[tokio::test]
async fn values_written_through_the_cluster_client_are_read_back() -> Result<()> {
    init_test_logging();
    let cluster = shared::redis_cluster().await?;
    let mut conn = cluster.client()?.get_async_connection().await?;
    for i in 0..64 {
        let _: () = conn
            .set(format!("capstan-test:{i}"), format!("value-{i}"))
            .await?;
    }
    for i in 0..64 {
        let value: String = conn.get(format!("capstan-test:{i}")).await?;
        assert_eq!(value, format!("value-{i}"));
    }
    // Keys hash to slots on different masters: every master holds some of them.
    for node in 0..3 {
        let keys = cluster.cli(node, &["dbsize"])?;
        let count: u64 = keys.trim().parse()?;
        assert!(
            count > 0,
            "master {node} holds no keys; the cluster did not shard"
        );
    }
    Ok(())
}

#[tokio::test]
async fn cluster_reports_three_masters_covering_all_slots() -> Result<()> {
    init_test_logging();
    let cluster = shared::redis_cluster().await?;
    let info = cluster.cli(0, &["cluster", "info"])?;
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_size:3"), "{info}");
    Ok(())
}
