//! Components shared by all tests of one test binary.
//!
//! Starting an apiserver takes seconds; a test binary with twenty tests should pay for it
//! once. The shared instances live in statics: they are never dropped, and their processes
//! die with the test process through `PR_SET_PDEATHSIG` (see [`crate::process`]). Their work
//! dirs are swept by the next run. Tests isolate themselves with a namespace (apiserver) or
//! a key prefix (etcd, Redis) of their own.
//!
//! A failed start is remembered, so the other tests fail at once with the same error instead
//! of each waiting for its own timeout.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use tokio::sync::OnceCell;

use crate::apiserver::KubeApiServer;
use crate::etcd::Etcd;
use crate::redis_cluster::RedisCluster;
use crate::simcluster::SimulatedCluster;

type Shared<T> = OnceCell<std::result::Result<T, String>>;

async fn get<T>(
    cell: &'static Shared<T>,
    start: impl Future<Output = Result<T>>,
) -> Result<&'static T> {
    cell.get_or_init(|| async { start.await.map_err(|err| format!("{err:#}")) })
        .await
        .as_ref()
        .map_err(|err| anyhow!("shared component failed to start: {err}"))
}

/// The test binary's etcd.
pub async fn etcd() -> Result<&'static Arc<Etcd>> {
    static CELL: Shared<Arc<Etcd>> = OnceCell::const_new();
    get(&CELL, async { Ok(Arc::new(Etcd::start().await?)) }).await
}

/// The test binary's kube-apiserver (on the shared etcd).
pub async fn apiserver() -> Result<&'static KubeApiServer> {
    static CELL: Shared<KubeApiServer> = OnceCell::const_new();
    get(&CELL, async {
        KubeApiServer::start_on(etcd().await?.clone(), "shared").await
    })
    .await
}

/// A second kube-apiserver (another "cluster") on the shared etcd.
pub async fn second_apiserver() -> Result<&'static KubeApiServer> {
    static CELL: Shared<KubeApiServer> = OnceCell::const_new();
    get(&CELL, async {
        KubeApiServer::start_on(etcd().await?.clone(), "second").await
    })
    .await
}

/// The shared apiserver with a controller-manager, scheduler and kwok (two fake nodes).
pub async fn simulated_cluster() -> Result<(&'static KubeApiServer, &'static SimulatedCluster)> {
    static CELL: Shared<SimulatedCluster> = OnceCell::const_new();
    let apiserver = apiserver().await?;
    let sim = get(&CELL, async { SimulatedCluster::start(apiserver, 2).await }).await?;
    Ok((apiserver, sim))
}

/// The test binary's Redis Cluster (three masters).
pub async fn redis_cluster() -> Result<&'static RedisCluster> {
    static CELL: Shared<RedisCluster> = OnceCell::const_new();
    get(&CELL, RedisCluster::start()).await
}
