//! Prometheus metrics of a repo-server.
//!
//! The counters live in the components ([`RepoServer::stats`], the Git cache, the tool runner,
//! the shared cache); [`register`] adds a collector that reads them at scrape time, so no code
//! path has to remember to update a metric. Names:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `capstan_repo_manifest_requests_total` | counter | `outcome` = `memory`, `shared`, `rendered`, `failed` |
//! | `capstan_repo_git_fetches_total` | counter | |
//! | `capstan_repo_git_ref_listings_total` | counter | |
//! | `capstan_repo_git_evictions_total` | counter | |
//! | `capstan_repo_git_cache_bytes` | gauge | |
//! | `capstan_repo_git_cache_repositories` | gauge | |
//! | `capstan_repo_tool_runs_total` | counter | `result` = `started`, `failed`, `timed_out`, `output_exceeded` |
//! | `capstan_repo_checkouts_total` | counter | |
//! | `capstan_repo_shared_cache_errors_total` | counter | |
//! | `capstan_repo_grpc_request_duration_seconds` | histogram | `method` |

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::service::RepoServer;

/// Registers the repo-server's metrics (see the [module docs](self)) in `registry` and
/// returns the gRPC latency histograms for [`crate::grpc::service_with_metrics`].
pub fn register(registry: &mut Registry, server: &RepoServer) -> GrpcMetrics {
    registry.register_collector(Box::new(StatsCollector {
        server: server.clone(),
    }));
    let latency = GrpcMetrics::default();
    registry.register(
        "capstan_repo_grpc_request_duration_seconds",
        "Time to answer a repo-server gRPC call, by method",
        latency.family.clone(),
    );
    latency
}

type LatencyFamily = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

/// Latency of gRPC calls by method.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    family: LatencyFamily,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            // 1 ms … ~33 s
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        }
        Self {
            family: Family::new_with_constructor(histogram),
        }
    }
}

impl GrpcMetrics {
    /// Records one call of `method` that took `seconds`.
    pub fn observe(&self, method: &str, seconds: f64) {
        self.family
            .get_or_create(&vec![("method".to_owned(), method.to_owned())])
            .observe(seconds);
    }
}

#[derive(Debug)]
struct StatsCollector {
    server: RepoServer,
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn labelled_counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (value_label, value) in values {
        let labels = [(label, *value_label)];
        ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.server.stats();
        let git = self.server.repos().stats();
        let tools = self.server.runner().stats();
        labelled_counter(
            &mut encoder,
            "capstan_repo_manifest_requests",
            "Manifest requests by where the answer came from",
            "outcome",
            &[
                ("memory", s.memory_hits),
                ("shared", s.shared_hits),
                ("rendered", s.renders),
                ("failed", s.failures),
            ],
        )?;
        counter(
            &mut encoder,
            "capstan_repo_git_fetches",
            "Git fetches started",
            git.fetches,
        )?;
        counter(
            &mut encoder,
            "capstan_repo_git_ref_listings",
            "Remote ref listings started",
            git.listings,
        )?;
        counter(
            &mut encoder,
            "capstan_repo_git_evictions",
            "Repositories evicted from the Git cache to stay within its byte budget",
            git.evictions,
        )?;
        gauge(
            &mut encoder,
            "capstan_repo_git_cache_bytes",
            "Bytes of all cached Git repositories",
            i64::try_from(git.bytes).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "capstan_repo_git_cache_repositories",
            "Repositories in the Git cache",
            i64::try_from(git.repositories).unwrap_or(i64::MAX),
        )?;
        labelled_counter(
            &mut encoder,
            "capstan_repo_tool_runs",
            "External tool runs (helm, kustomize) by result",
            "result",
            &[
                ("started", tools.started),
                ("failed", tools.failed),
                ("timed_out", tools.timed_out),
                ("output_exceeded", tools.output_exceeded),
            ],
        )?;
        counter(
            &mut encoder,
            "capstan_repo_checkouts",
            "Checkouts written for tools (renders of one commit by Helm or Kustomize share one)",
            s.checkouts,
        )?;
        counter(
            &mut encoder,
            "capstan_repo_shared_cache_errors",
            "Shared (Redis) cache operations that failed; rendering continued without the cache",
            s.shared_cache_errors,
        )?;
        Ok(())
    }
}
