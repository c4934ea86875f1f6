//! The manifest cache shared by all repo-servers: Redis Cluster.
//!
//! Every operation is best effort. A failed or slow Redis (a master lost, the whole cluster
//! down, a network partition) makes an operation return "not cached" or skip the write; the
//! error is counted and logged, and rendering goes on. While Redis is unreachable, connection
//! attempts are spaced out ([`SharedCacheConfig::retry_after`]), so requests do not each pay
//! for a connection timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

/// Settings of the shared cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedCacheConfig {
    /// Seed nodes, e.g. `redis://10.0.0.5:6379`.
    pub nodes: Vec<String>,
    /// How long an entry lives.
    pub ttl: Duration,
    /// Longest a single Redis operation may take before it counts as failed.
    pub op_timeout: Duration,
    /// How long to wait after a failed connection before trying again.
    pub retry_after: Duration,
    /// Prefix of every key (lets several installations share a cluster).
    pub key_prefix: String,
}

impl SharedCacheConfig {
    /// Defaults for `nodes`: entries live 24 h, operations time out after 500 ms, reconnection
    /// is tried every 5 s, keys start with `capstan:manifests:`.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            ttl: Duration::from_secs(24 * 3600),
            op_timeout: Duration::from_millis(500),
            retry_after: Duration::from_secs(5),
            key_prefix: "capstan:manifests:".to_owned(),
        }
    }
}

#[derive(Default)]
struct Connection {
    conn: Option<ClusterConnection>,
    last_attempt: Option<Instant>,
}

/// A Redis Cluster cache of byte values; see the [module docs](self).
pub struct SharedCache {
    config: SharedCacheConfig,
    client: ClusterClient,
    state: tokio::sync::Mutex<Connection>,
    errors: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("nodes", &self.config.nodes)
            .field("errors", &self.errors.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Counters of a [`SharedCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedCacheStats {
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Operations that failed or timed out (Redis unavailable).
    pub errors: u64,
}

impl SharedCache {
    /// A cache over the cluster at `config.nodes`; connects on first use.
    pub fn new(config: SharedCacheConfig) -> Result<Self, redis::RedisError> {
        let client = ClusterClient::builder(config.nodes.clone())
            .connection_timeout(config.op_timeout)
            .response_timeout(config.op_timeout)
            .retries(1)
            .build()?;
        Ok(Self {
            config,
            client,
            state: tokio::sync::Mutex::default(),
            errors: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> SharedCacheStats {
        SharedCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn failed(&self, operation: &str, error: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(operation, %error, "shared manifest cache unavailable; continuing without it");
    }

    async fn connection(&self) -> Option<ClusterConnection> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.conn {
            return Some(conn.clone());
        }
        if state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.config.retry_after)
        {
            return None;
        }
        state.last_attempt = Some(Instant::now());
        let connect = self.client.get_async_connection();
        match tokio::time::timeout(self.config.op_timeout * 4, connect).await {
            Ok(Ok(conn)) => {
                state.conn = Some(conn.clone());
                Some(conn)
            }
            Ok(Err(e)) => {
                self.failed("connect", &e);
                None
            }
            Err(_) => {
                self.failed("connect", &"timed out");
                None
            }
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.config.key_prefix)
    }

    /// The value under `key`, or `None` when absent or Redis is unavailable.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut conn = self.connection().await?;
        let op = conn.get::<_, Option<Vec<u8>>>(self.key(key));
        match tokio::time::timeout(self.config.op_timeout, op).await {
            Ok(Ok(Some(v))) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Ok(Ok(None)) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Err(e)) => {
                self.failed("get", &e);
                None
            }
            Err(_) => {
                self.failed("get", &"timed out");
                None
            }
        }
    }

    /// Stores `value` under `key` with the configured TTL; failures are counted, not returned.
    pub async fn put(&self, key: &str, value: &[u8]) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let ttl = self.config.ttl.as_secs().max(1);
        let op = conn.set_ex::<_, _, ()>(self.key(key), value, ttl);
        match tokio::time::timeout(self.config.op_timeout, op).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.failed("set", &e),
            Err(_) => self.failed("set", &"timed out"),
        }
    }
}
