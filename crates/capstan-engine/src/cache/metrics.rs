//! Prometheus metrics of the cluster caches of one process.
//!
//! One [`CacheMetrics`] is registered per process; every cache started with it in its
//! settings reports through it, labelled with its cluster. Values are read from the caches
//! at scrape time, so no code path has to remember to update a metric.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `capstan_cluster_cache_objects` | gauge | `cluster` |
//! | `capstan_cluster_cache_bytes` | gauge | `cluster` |
//! | `capstan_cluster_cache_body_bytes` | gauge | `cluster` |
//! | `capstan_cluster_cache_kinds` | gauge | `cluster` |
//! | `capstan_cluster_cache_apps` | gauge | `cluster` |
//! | `capstan_cluster_cache_synced` | gauge (0/1) | `cluster` |
//! | `capstan_cluster_cache_events_total` | counter | `cluster`, `kind` (`group/Kind`) |
//! | `capstan_cluster_cache_relists_total` | counter | `cluster` |
//! | `capstan_cluster_cache_watch_errors_total` | counter | `cluster` |
//! | `capstan_cluster_cache_discoveries_total` | counter | `cluster` |

use std::sync::{Arc, Mutex, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Shared;
use super::store::{CacheStats, KindStatus};

/// The caches reporting to one registry. Cheap to clone; put it in
/// [`super::CacheSettings::metrics`].
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    caches: Arc<Mutex<Vec<Weak<Shared>>>>,
}

impl CacheMetrics {
    /// Registers the cache metrics (see the [module docs](self)) in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Reports `cache` from now on, until it is dropped.
    pub(crate) fn add(&self, cache: &Arc<Shared>) {
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        caches.retain(|c| c.strong_count() > 0);
        caches.push(Arc::downgrade(cache));
    }

    fn snapshot(&self) -> Vec<(String, CacheStats, Vec<KindStatus>)> {
        let caches: Vec<Arc<Shared>> = self
            .caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        caches
            .iter()
            .map(|c| (c.cluster.clone(), c.stats(), c.kinds()))
            .collect()
    }
}

fn clamp(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn gauges(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(&str, i64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (cluster, value) in values {
        ConstGauge::new(*value).encode(family.encode_family(&[("cluster", *cluster)])?)?;
    }
    Ok(())
}

fn counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (cluster, value) in values {
        ConstCounter::new(*value).encode(family.encode_family(&[("cluster", *cluster)])?)?;
    }
    Ok(())
}

impl Collector for CacheMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        let gauge_of = |f: &dyn Fn(&CacheStats) -> i64| -> Vec<(&str, i64)> {
            snapshot
                .iter()
                .map(|(c, s, _)| (c.as_str(), f(s)))
                .collect()
        };
        let counter_of = |f: &dyn Fn(&CacheStats) -> u64| -> Vec<(&str, u64)> {
            snapshot
                .iter()
                .map(|(c, s, _)| (c.as_str(), f(s)))
                .collect()
        };
        gauges(
            &mut encoder,
            "capstan_cluster_cache_objects",
            "Objects held by the cluster cache",
            &gauge_of(&|s| clamp(s.objects)),
        )?;
        gauges(
            &mut encoder,
            "capstan_cluster_cache_bytes",
            "Bytes held by the cluster cache, by its own accounting (entries, bodies, index tables)",
            &gauge_of(&|s| clamp(s.bytes)),
        )?;
        gauges(
            &mut encoder,
            "capstan_cluster_cache_body_bytes",
            "Bytes of object bodies kept (tracked objects only, unless configured otherwise)",
            &gauge_of(&|s| clamp(s.body_bytes)),
        )?;
        gauges(
            &mut encoder,
            "capstan_cluster_cache_kinds",
            "Kinds the cluster cache watches",
            &gauge_of(&|s| clamp(s.kinds)),
        )?;
        gauges(
            &mut encoder,
            "capstan_cluster_cache_apps",
            "Apps with at least one tracked object in the cluster",
            &gauge_of(&|s| clamp(s.apps)),
        )?;
        gauges(
            &mut encoder,
            "capstan_cluster_cache_synced",
            "1 when every watched kind has completed its initial list",
            &gauge_of(&|s| i64::from(s.synced_kinds == s.kinds)),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "capstan_cluster_cache_events",
                "Watch events applied, by kind",
                None,
                MetricType::Counter,
            )?;
            for (cluster, _, kinds) in &snapshot {
                for kind in kinds {
                    let name = kind.group_kind.to_string();
                    ConstCounter::new(kind.events).encode(family.encode_family(&[
                        ("cluster", cluster.as_str()),
                        ("kind", name.as_str()),
                    ])?)?;
                }
            }
        }
        counters(
            &mut encoder,
            "capstan_cluster_cache_relists",
            "Relists after the first list (watch expired with 410 Gone, restarts, invalidation)",
            &counter_of(&|s| s.relists),
        )?;
        counters(
            &mut encoder,
            "capstan_cluster_cache_watch_errors",
            "Watch errors; each is retried with backoff",
            &counter_of(&|s| s.watch_errors),
        )?;
        counters(
            &mut encoder,
            "capstan_cluster_cache_discoveries",
            "API discovery runs",
            &counter_of(&|s| s.discoveries),
        )?;
        Ok(())
    }
}
