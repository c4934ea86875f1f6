//! Sync: making the cluster match the desired manifests, the way Argo CD's sync does it.
//!
//! - [`plan`] turns a [`SyncRequest`] into ordered tasks: phases (PreSync, Sync, PostSync,
//!   SyncFail; PreDelete and PostDelete when deleting), waves (`argocd.argoproj.io/sync-wave`),
//!   hooks ([`hooks`]: Argo CD's and Helm's annotations, delete policies), prunes in reverse
//!   wave order, `PruneLast`, `CreateNamespace`, selective sync, `ApplyOutOfSyncOnly`,
//!   `FailOnSharedResource` ([`options`]).
//! - [`SyncRunner`] runs the plan step by step against the cluster: a dry-run validation
//!   pass, server-side apply with field manager `capstan` (or replace), health gates between
//!   groups, hooks created and watched to completion, prunes with a propagation policy.
//! - [`SyncState`] is the whole operation, serialisable after every step: the controller
//!   stores it and any process can resume it ([`SyncRunner::advance`]).
//!
//! Start with [`SyncRunner::plan`] and [`SyncRunner::run`]; the user guide is `docs/sync.md`.

pub mod hooks;
pub mod options;
pub mod plan;
pub mod run;
pub mod state;

use capstan_model::OperationPhase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use plan::{LiveObject, SyncRequest};
pub use run::{FIELD_MANAGER, Progress, SyncRunner};
pub use state::{Action, Mode, SyncState, Task, TaskStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    phase: &'static str,
}

/// Counters of what syncs did: tasks by action and outcome, operations by final phase.
#[derive(Clone, Debug, Default)]
pub struct SyncMetrics {
    tasks: Family<TaskLabels, Counter>,
    operations: Family<OperationLabels, Counter>,
}

impl SyncMetrics {
    /// Registers `sync_tasks_total` and `sync_operations_total` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sync_tasks",
            "Sync tasks finished, by action (apply, prune, hook) and outcome",
            self.tasks.clone(),
        );
        registry.register(
            "sync_operations",
            "Sync operations ended, by final phase",
            self.operations.clone(),
        );
    }

    fn task(&self, task: &Task) {
        let action = match task.action {
            Action::Apply => "apply",
            Action::Prune => "prune",
            Action::Hook(_) => "hook",
        };
        let outcome = if task.status == TaskStatus::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        self.tasks
            .get_or_create(&TaskLabels { action, outcome })
            .inc();
    }

    fn operation(&self, phase: OperationPhase) {
        let phase = match phase {
            OperationPhase::Succeeded => "succeeded",
            OperationPhase::Failed => "failed",
            OperationPhase::Error => "error",
            OperationPhase::Running => "running",
            OperationPhase::Terminating => "terminating",
        };
        self.operations
            .get_or_create(&OperationLabels { phase })
            .inc();
    }
}
