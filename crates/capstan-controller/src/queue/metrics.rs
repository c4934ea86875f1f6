//! What the work queue tells Prometheus: how much is waiting, what is asked for, how often
//! work fails, how long items wait and how long they take.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::Priority;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The work queue's metrics. Every [`WorkQueue`](super::WorkQueue) records into its own
/// set; [`register`](Self::register) exposes them.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    depth: Gauge,
    in_flight: Gauge,
    adds: Family<ReasonLabels, Counter>,
    retries: Counter,
    queue_duration: Histogram,
    work_duration: Histogram,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        // 5 ms … ~22 min: waits and reconciles both range from instant to minutes.
        let buckets = || Histogram::new(exponential_buckets(0.005, 2.0, 19));
        Self {
            depth: Gauge::default(),
            in_flight: Gauge::default(),
            adds: Family::default(),
            retries: Counter::default(),
            queue_duration: buckets(),
            work_duration: buckets(),
        }
    }
}

impl QueueMetrics {
    /// Registers, in `registry` (meant to be the controller's sub-registry, so the names gain
    /// its prefix):
    ///
    /// - `workqueue_depth`: entries waiting, due or delayed (one per key);
    /// - `workqueue_in_flight`: keys checked out by workers;
    /// - `workqueue_adds_total{reason}`: requests by reason (`hard_refresh`, `refresh`,
    ///   `periodic`), counted before de-duplication, so adds minus handed-out items is how
    ///   much merging saved;
    /// - `workqueue_retries_total`: failures re-queued with backoff;
    /// - `workqueue_queue_duration_seconds`: from an entry's due time to a worker taking it;
    /// - `workqueue_work_duration_seconds`: from a worker taking a key to its `done`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "workqueue_depth",
            "Entries waiting in the work queue, due or delayed",
            self.depth.clone(),
        );
        registry.register(
            "workqueue_in_flight",
            "Keys checked out of the work queue by workers",
            self.in_flight.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Requests added to the work queue, by reason, before de-duplication",
            self.adds.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Failed items re-queued with backoff",
            self.retries.clone(),
        );
        registry.register_with_unit(
            "workqueue_queue_duration",
            "Time from an entry being due to a worker taking it",
            Unit::Seconds,
            self.queue_duration.clone(),
        );
        registry.register_with_unit(
            "workqueue_work_duration",
            "Time from a worker taking a key to reporting it done",
            Unit::Seconds,
            self.work_duration.clone(),
        );
    }

    pub(super) fn added(&self, priority: Priority) {
        self.adds
            .get_or_create(&ReasonLabels {
                reason: priority.as_str(),
            })
            .inc();
    }

    pub(super) fn retried(&self) {
        self.retries.inc();
    }

    pub(super) fn sizes(&self, depth: usize, in_flight: usize) {
        self.depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    pub(super) fn waited(&self, seconds: f64) {
        self.queue_duration.observe(seconds);
    }

    pub(super) fn worked(&self, seconds: f64) {
        self.work_duration.observe(seconds);
    }
}
