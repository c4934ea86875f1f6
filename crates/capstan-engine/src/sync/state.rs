//! The state of a sync operation: every task with its progress, serialisable after each step
//! so that another process can resume it ([`SyncState`]), and its translation into the
//! Application's `status.operationState` ([`SyncState::resource_results`]).

use capstan_model::{HookType, OperationPhase, ResourceResult, ResultCode, SyncPhase};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hooks::DeletePolicy;
use super::options::{OperationOptions, ResourceOptions};
use crate::resources::ResourceKey;

/// What a task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Apply the desired manifest (server-side apply, or replace).
    Apply,
    /// Delete a live object Git no longer has (or, when deleting the app, every object).
    Prune,
    /// Create and wait for a hook object.
    Hook(HookType),
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Not started.
    #[default]
    Pending,
    /// Started; waiting for it (a hook to finish, an object to be gone).
    Running,
    /// Done.
    Succeeded,
    /// Failed; `message` says why.
    Failed,
}

impl TaskStatus {
    /// Whether nothing more will happen to the task.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One step of a sync: a resource to apply or prune, or a hook to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The object (for a hook with `generateName`, the name is filled in once created).
    pub key: ResourceKey,
    /// `apiVersion` of the manifest or live object.
    pub api_version: String,
    /// What to do.
    pub action: Action,
    /// The phase it belongs to.
    pub phase: SyncPhase,
    /// Its wave (prune tasks carry their remapped wave; see `plan`).
    pub wave: i64,
    /// The manifest to apply or create (none for prunes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Value>,
    /// The resource's own options.
    pub options: TaskOptions,
    /// Progress.
    #[serde(default)]
    pub status: TaskStatus,
    /// The per-resource result reported to users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultCode>,
    /// What happened, in the API server's words when it refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// For applied resources: whether it was seen healthy (so the next wave may start).
    #[serde(default)]
    pub healthy: bool,
    /// The live object's `resourceVersion` when planned (empty: it did not exist), to tell
    /// "created", "configured" and "unchanged" apart.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub live_version: String,
}

/// The parts of [`ResourceOptions`] a task needs while it runs, plus hook policies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOptions {
    /// Replace instead of apply.
    pub replace: bool,
    /// Delete and re-create when replacing fails.
    pub force: bool,
    /// Let the server ignore unknown fields.
    pub skip_validation: bool,
    /// Take fields other managers own.
    pub force_conflicts: bool,
    /// No dry run when the kind is not served yet.
    #[serde(default)]
    pub skip_dry_run_on_missing: bool,
    /// Hook delete policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_policies: Vec<DeletePolicy>,
}

impl From<&ResourceOptions> for TaskOptions {
    fn from(o: &ResourceOptions) -> Self {
        Self {
            replace: o.replace,
            force: o.force,
            skip_validation: o.skip_validation,
            force_conflicts: o.force_conflicts,
            skip_dry_run_on_missing: o.skip_dry_run_on_missing,
            delete_policies: Vec::new(),
        }
    }
}

impl Task {
    /// Whether the task is a hook.
    pub fn is_hook(&self) -> bool {
        matches!(self.action, Action::Hook(_))
    }

    pub(crate) fn finish(&mut self, status: TaskStatus, message: impl Into<String>) {
        self.status = status;
        self.message = message.into();
    }

    /// The task as a user sees it in `operationState.syncResult.resources`.
    pub fn resource_result(&self) -> ResourceResult {
        let (_, version) = self
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &self.api_version));
        let hook_phase = match (self.action, self.status) {
            (Action::Hook(_), TaskStatus::Pending | TaskStatus::Running) => {
                Some(OperationPhase::Running)
            }
            (Action::Hook(_), TaskStatus::Succeeded) => Some(OperationPhase::Succeeded),
            (Action::Hook(_), TaskStatus::Failed) => Some(OperationPhase::Failed),
            _ => None,
        };
        ResourceResult {
            group: self.key.group.clone(),
            version: version.to_owned(),
            kind: self.key.kind.clone(),
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
            status: self.result,
            message: self.message.clone(),
            hook_type: match self.action {
                Action::Hook(t) => Some(t),
                _ => None,
            },
            hook_phase,
            sync_phase: Some(self.phase),
        }
    }
}

/// Whether the operation syncs the Application or deletes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// PreSync hooks, apply (and prune), PostSync hooks; SyncFail hooks on failure.
    #[default]
    Sync,
    /// PreDelete hooks, delete every managed object (reverse waves), PostDelete hooks.
    Delete,
}

/// A sync operation in progress or finished. Serialise it after each
/// [`advance`](super::SyncRunner::advance) and a new runner resumes it where it stopped:
/// finished hooks are not run again and running ones are waited for, not re-created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// The Application the operation belongs to.
    pub app: String,
    /// Sync or delete.
    pub mode: Mode,
    /// Only ask the server what would happen.
    pub dry_run: bool,
    /// Operation-wide options.
    pub options: OperationOptions,
    /// The main tasks, in execution order.
    pub tasks: Vec<Task>,
    /// `SyncFail` hooks, run only when the main tasks fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_tasks: Vec<Task>,
    /// `Running` until it ends `Succeeded`, `Failed` or `Error`.
    pub phase: OperationPhase,
    /// Why it ended (or what it waits for).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The dry-run validation pass is done.
    #[serde(default)]
    pub validated: bool,
    /// The main tasks failed; the `SyncFail` hooks are running.
    #[serde(default)]
    pub failing: bool,
    /// Someone asked to stop.
    #[serde(default)]
    pub terminate_requested: bool,
}

impl SyncState {
    /// Whether the operation has ended.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.phase,
            OperationPhase::Succeeded | OperationPhase::Failed | OperationPhase::Error
        )
    }

    /// Asks the runner to stop at its next step: nothing new starts, running hooks are
    /// deleted, and the operation ends `Failed` with "operation terminated".
    pub fn request_termination(&mut self) {
        if !self.is_finished() {
            self.terminate_requested = true;
            self.phase = OperationPhase::Terminating;
        }
    }

    /// The per-resource results, hooks included, in execution order.
    pub fn resource_results(&self) -> Vec<ResourceResult> {
        self.tasks
            .iter()
            .chain(&self.fail_tasks)
            .filter(|t| t.status != TaskStatus::Pending || t.result.is_some())
            .map(Task::resource_result)
            .collect()
    }

    /// The task for `key`, if any (the first, for a hook in several phases).
    pub fn task(&self, key: &ResourceKey) -> Option<&Task> {
        self.tasks
            .iter()
            .chain(&self.fail_tasks)
            .find(|t| &t.key == key)
    }

    pub(crate) fn end(&mut self, phase: OperationPhase, message: impl Into<String>) {
        self.phase = phase;
        self.message = message.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(action: Action, status: TaskStatus) -> Task {
        Task {
            key: ResourceKey {
                group: "batch".into(),
                kind: "Job".into(),
                namespace: "ns".into(),
                name: "migrate".into(),
            },
            api_version: "batch/v1".into(),
            action,
            phase: SyncPhase::PreSync,
            wave: 0,
            manifest: None,
            options: TaskOptions::default(),
            status,
            result: Some(ResultCode::Synced),
            message: String::new(),
            healthy: false,
            live_version: String::new(),
        }
    }

    #[test]
    fn hooks_report_their_phase_and_type() {
        let r = task(Action::Hook(HookType::PreSync), TaskStatus::Running).resource_result();
        assert_eq!(r.hook_type, Some(HookType::PreSync));
        assert_eq!(r.hook_phase, Some(OperationPhase::Running));
        assert_eq!(r.version, "v1");
        assert_eq!(r.sync_phase, Some(SyncPhase::PreSync));
        let applied = task(Action::Apply, TaskStatus::Succeeded).resource_result();
        assert_eq!(applied.hook_type, None);
        assert_eq!(applied.hook_phase, None);
    }

    #[test]
    fn state_round_trips_through_json() {
        let state = SyncState {
            app: "shop".into(),
            mode: Mode::Sync,
            dry_run: false,
            options: OperationOptions::default(),
            tasks: vec![task(Action::Prune, TaskStatus::Pending)],
            fail_tasks: vec![],
            phase: OperationPhase::Running,
            message: String::new(),
            validated: true,
            failing: false,
            terminate_requested: false,
        };
        let json = serde_json::to_string(&state).expect("serialises");
        let back: SyncState = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, state);
    }
}
