//! What the controller tells Prometheus beyond its work queue: reconciles by result, and
//! syncs by what started them and how they ended. Labels are low-cardinality on purpose (no
//! Application names): per-Application state belongs to the API, not to metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    trigger: &'static str,
    phase: &'static str,
}

/// The controller's counters (cheap to clone; clones share the counts).
#[derive(Clone, Debug, Default)]
pub struct ControllerMetrics {
    reconciles: Family<ResultLabels, Counter>,
    syncs: Family<SyncLabels, Counter>,
}

impl ControllerMetrics {
    /// Registers `reconciles_total{result}` (`synced`, `out_of_sync`, `unknown`, `gone`,
    /// `not_owned`, `error`) and `syncs_total{trigger, phase}` (trigger `automated`,
    /// `self_heal`, `retry`, `requested`, `delete`, `resumed`; phase `Succeeded`, `Failed`, `Error`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconciles",
            "Application reconciles by result",
            self.reconciles.clone(),
        );
        registry.register(
            "syncs",
            "Sync operations by what started them and how they ended",
            self.syncs.clone(),
        );
    }

    pub(crate) fn reconciled(&self, result: &'static str) {
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub(crate) fn synced(&self, trigger: &'static str, phase: capstan_model::OperationPhase) {
        let phase = match phase {
            capstan_model::OperationPhase::Succeeded => "Succeeded",
            capstan_model::OperationPhase::Failed => "Failed",
            capstan_model::OperationPhase::Error => "Error",
            capstan_model::OperationPhase::Running => "Running",
            capstan_model::OperationPhase::Terminating => "Terminating",
        };
        self.syncs
            .get_or_create(&SyncLabels { trigger, phase })
            .inc();
    }
}
