//! Real components for Capstan's tests, demo and load tests, on loopback.
//!
//! Everything here starts the real binary a user runs — `etcd`, `kube-apiserver`,
//! `kube-controller-manager`, `kube-scheduler`, `kwok`, `redis-server`, `git` — built or
//! installed at pinned versions by `scripts/tools.sh` (see `tools/versions`). Each start
//! waits for readiness with a deadline and fails with the component's log tail; every
//! process is stopped on drop and killed by the kernel if the test process dies.
//!
//! Start reading at [`shared`] (what most tests use), then [`apiserver::KubeApiServer`].

pub mod apiserver;
pub mod etcd;
pub mod git;
pub mod git_http;
pub mod net;
pub mod oidc;
pub mod pki;
pub mod process;
pub mod redis_cluster;
pub mod shared;
pub mod simcluster;
pub mod tools;
pub mod wait;
pub mod workdir;
pub mod workloads;

pub use apiserver::KubeApiServer;
pub use etcd::Etcd;
pub use redis_cluster::RedisCluster;
pub use simcluster::SimulatedCluster;
pub use wait::wait_until;

/// Installs a `tracing` subscriber that writes to the test harness's captured output.
/// Safe to call from every test; only the first call installs.
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}
