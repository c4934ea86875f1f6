//! Running a planned sync against a cluster, one step at a time.
//!
//! [`SyncRunner::advance`] does one step and returns; the caller persists the
//! [`SyncState`] between steps (the controller writes it to the store), so a restart resumes
//! exactly where it was. A step is one of:
//! 1. the **validation** pass: a server-side dry run of every object first, so a typo or a
//!    refused object fails the sync before anything changed (skipped per kind by
//!    `SkipDryRunOnMissingResource=true`, and for custom resources whose CRD is in the same
//!    sync);
//! 2. the **health gate**: before a group of tasks starts, every object applied by earlier
//!    groups must be healthy (CRDs: established) — this is how waves wait for each other and
//!    PostSync hooks wait for the Sync phase;
//! 3. **starting** the group's pending tasks, concurrently (apply, prune, create hooks);
//! 4. **polling** its running hooks until their health says they finished.
//!
//! A failed task fails the operation: the remaining groups do not start, and the `SyncFail`
//! hooks run. Termination deletes running hooks and ends the operation.

use std::sync::Arc;
use std::time::Duration;

use capstan_model::{OperationPhase, ResultCode};
use futures::StreamExt as _;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;
use tracing::{debug, info, warn};

use super::SyncMetrics;
use super::hooks::DeletePolicy;
use super::options::Propagation;
use super::plan::{SyncRequest, group_key, plan};
use super::state::{Action, SyncState, Task, TaskStatus};
use crate::health::{HealthAssessor, HealthStatusCode};
use crate::resources::{ApiResolver, ResolveError, str_at};

/// The field manager Capstan applies with.
pub const FIELD_MANAGER: &str = "capstan";

/// How long an object deleted to be re-created (a named hook under `BeforeHookCreation`, an
/// object under `Replace=true,Force=true`) may take to disappear.
const DELETION_TIMEOUT: Duration = Duration::from_secs(60);

/// What one [`SyncRunner::advance`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Something changed; persist the state and call again.
    Advanced,
    /// Nothing changed: waiting for the cluster (the message says for what). Call again
    /// after a pause.
    Waiting(String),
    /// The operation has ended.
    Finished,
}

/// Runs syncs against one cluster.
#[derive(Clone, Debug)]
pub struct SyncRunner {
    resolver: ApiResolver,
    assessor: Arc<HealthAssessor>,
    concurrency: usize,
    metrics: Option<SyncMetrics>,
}

impl SyncRunner {
    /// A runner applying through `resolver`'s client, judging health with `assessor`.
    pub fn new(resolver: ApiResolver, assessor: Arc<HealthAssessor>) -> Self {
        Self {
            resolver,
            assessor,
            concurrency: 16,
            metrics: None,
        }
    }

    /// How many requests a step sends at once (default 16).
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Counts what the runner does in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: SyncMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Plans `request`, asking discovery which kinds are namespaced (a CRD in the request
    /// answers for its own kind).
    pub async fn plan(&self, request: &SyncRequest) -> SyncState {
        let scopes = self.resolver.scopes(&request.desired).await;
        plan(request, &|m: &Value| scopes.namespaced(m))
    }

    /// Runs the operation to its end, calling `persist` after every step and pausing `poll`
    /// while waiting for the cluster.
    pub async fn run(
        &self,
        state: &mut SyncState,
        poll: Duration,
        mut persist: impl FnMut(&SyncState),
    ) {
        loop {
            match self.advance(state).await {
                Progress::Advanced => persist(state),
                Progress::Waiting(why) => {
                    debug!(app = %state.app, waiting = %why, "sync waiting");
                    tokio::time::sleep(poll).await;
                }
                Progress::Finished => {
                    persist(state);
                    return;
                }
            }
        }
    }

    /// Does one step of the operation (see the [module docs](self)).
    pub async fn advance(&self, state: &mut SyncState) -> Progress {
        if state.is_finished() {
            return Progress::Finished;
        }
        if state.terminate_requested {
            self.terminate(state).await;
            return Progress::Finished;
        }
        if !state.validated {
            self.validate(state).await;
            return Progress::Advanced;
        }
        let failing = state.failing;
        let tasks = if failing {
            &state.fail_tasks
        } else {
            &state.tasks
        };
        let Some(group) = tasks
            .iter()
            .find(|t| !t.status.is_finished())
            .map(group_key)
        else {
            self.finish(state);
            return Progress::Finished;
        };
        if !failing && let Some(waiting) = self.health_gate(state, group).await {
            state.message.clone_from(&waiting);
            return Progress::Waiting(waiting);
        }
        let tasks = if failing {
            &mut state.fail_tasks
        } else {
            &mut state.tasks
        };
        let members: Vec<usize> = (0..tasks.len())
            .filter(|i| group_key(&tasks[*i]) == group && !tasks[*i].status.is_finished())
            .collect();
        let before: Vec<(TaskStatus, String)> = members
            .iter()
            .map(|i| (tasks[*i].status, tasks[*i].key.name.clone()))
            .collect();
        let crds_pending = crd_kinds(tasks);
        let propagation = state.options.propagation;
        let work: Vec<Task> = members.iter().map(|i| tasks[*i].clone()).collect();
        let done: Vec<Task> = futures::stream::iter(work)
            .map(|task| self.step_task(task, &crds_pending, propagation))
            .buffered(self.concurrency)
            .collect()
            .await;
        let mut changed = false;
        let mut waiting = String::new();
        for ((i, task), (status, name)) in members.iter().zip(done).zip(before) {
            changed |= task.status != status || task.key.name != name;
            if task.status == TaskStatus::Running || task.status == TaskStatus::Pending {
                waiting = format!("waiting for {} ({})", task.key, task.message);
            }
            tasks[*i] = task;
        }
        if let Some(failed) = tasks.iter().find(|t| t.status == TaskStatus::Failed) {
            let message = format!("{}: {}", failed.key, failed.message);
            if !failing {
                state.failing = true;
                state.message = format!("one or more tasks failed: {message}");
                info!(app = %state.app, %message, "sync failed; running SyncFail hooks if any");
            }
            if failing && !state.fail_tasks.iter().any(|t| !t.status.is_finished()) {
                self.finish(state);
                return Progress::Finished;
            }
            return Progress::Advanced;
        }
        if changed {
            Progress::Advanced
        } else {
            state.message.clone_from(&waiting);
            Progress::Waiting(waiting)
        }
    }

    fn finish(&self, state: &mut SyncState) {
        if state.failing {
            let message = std::mem::take(&mut state.message);
            state.end(OperationPhase::Failed, message);
        } else {
            state.end(
                OperationPhase::Succeeded,
                "successfully synced (all tasks run)",
            );
        }
        if let Some(m) = &self.metrics {
            m.operation(state.phase);
        }
        info!(app = %state.app, phase = %state.phase, message = %state.message, "sync finished");
    }

    /// The validation pass: a server-side dry run of every object to apply. In a dry-run
    /// operation this is the whole operation.
    async fn validate(&self, state: &mut SyncState) {
        let crds = crd_kinds(&state.tasks);
        let mut created_namespaces = Vec::new();
        for namespace in namespaces_created(&state.tasks) {
            if !self.namespace_exists(&namespace).await {
                created_namespaces.push(namespace);
            }
        }
        let work: Vec<(usize, Task)> = state
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.action == Action::Apply && t.status == TaskStatus::Pending)
            .map(|(i, t)| (i, t.clone()))
            .collect();
        let outcomes: Vec<(usize, Result<String, String>)> = futures::stream::iter(work)
            .map(|(i, task)| {
                let (crds, created_namespaces) = (&crds, &created_namespaces);
                async move {
                    if created_namespaces.contains(&task.key.namespace) {
                        // The server cannot dry-run into a namespace that does not exist
                        // yet; this sync creates it first.
                        return (
                            i,
                            Ok("dry run skipped: its namespace is created by this sync".to_owned()),
                        );
                    }
                    (i, self.dry_run(&task, crds).await)
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        let mut failures = Vec::new();
        for (i, outcome) in outcomes {
            let task = &mut state.tasks[i];
            match outcome {
                Err(message) => {
                    task.result = Some(ResultCode::SyncFailed);
                    failures.push(format!("{}: {message}", task.key));
                    task.finish(TaskStatus::Failed, message);
                }
                Ok(message) if state.dry_run => {
                    task.result = Some(ResultCode::Synced);
                    task.finish(TaskStatus::Succeeded, message);
                }
                Ok(_) => {}
            }
        }
        state.validated = true;
        if state.dry_run {
            for task in state
                .tasks
                .iter_mut()
                .filter(|t| t.status == TaskStatus::Pending)
            {
                if task.action == Action::Prune {
                    task.result = Some(ResultCode::Pruned);
                    task.finish(TaskStatus::Succeeded, "pruned (dry run)");
                }
            }
            let phase = if failures.is_empty() {
                OperationPhase::Succeeded
            } else {
                OperationPhase::Failed
            };
            let message = if failures.is_empty() {
                "dry run: every object would be accepted; nothing was changed".to_owned()
            } else {
                format!("dry run failed: {}", failures.join("; "))
            };
            state.end(phase, message);
            return;
        }
        if !failures.is_empty() {
            state.failing = true;
            state.message = format!(
                "the server refused {} object(s) in the dry run, nothing was applied: {}",
                failures.len(),
                failures.join("; ")
            );
        }
    }

    /// Whether `namespace` exists; an error counts as "no" (its objects then skip the dry
    /// run and meet the server at apply time).
    async fn namespace_exists(&self, namespace: &str) -> bool {
        let probe = serde_json::json!({"apiVersion": "v1", "kind": "Namespace"});
        let Ok(kind) = self.resolver.resolve(&probe).await else {
            return false;
        };
        matches!(
            self.resolver.api(&kind, "").get_opt(namespace).await,
            Ok(Some(_))
        )
    }

    async fn dry_run(&self, task: &Task, crds: &[(String, String)]) -> Result<String, String> {
        let manifest = task.manifest.as_ref().ok_or("no manifest")?;
        let kind = match self.resolver.resolve(manifest).await {
            Ok(kind) => kind,
            Err(ResolveError::UnknownKind { .. })
                if task.options.skip_dry_run_on_missing
                    || crds.contains(&(task.key.group.clone(), task.key.kind.clone())) =>
            {
                return Ok("dry run skipped: kind not served yet".to_owned());
            }
            Err(e) => return Err(e.to_string()),
        };
        let api = self.resolver.api(&kind, &task.key.namespace);
        // Replace=true objects are validated with an apply dry run too: it checks the
        // manifest the same way and, unlike a PUT, also works for an object not yet there.
        let outcome = if task.options.skip_validation {
            self.lenient_write(&api, task, manifest, true).await
        } else {
            let params = self.apply_params(task).dry_run();
            api.patch(&task.key.name, &params, &Patch::Apply(manifest))
                .await
                .map_err(api_message)
        };
        let outcome = match outcome {
            // Replace=true,Force=true re-creates what cannot be changed in place (an immutable
            // field): the manifest is then validated as a creation. The server validates a
            // dry-run create before it looks for an existing object, so "already exists"
            // means the manifest itself is acceptable.
            Err(_) if task.options.replace && task.options.force => {
                let obj: DynamicObject =
                    serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
                let post = PostParams {
                    dry_run: true,
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                };
                return match api.create(&post, &obj).await {
                    Ok(_) => Ok("created (dry run)".to_owned()),
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        Ok("to be re-created (Force=true, dry run)".to_owned())
                    }
                    Err(err) => Err(api_message(err)),
                };
            }
            other => other,
        };
        outcome.map(|_| {
            if task.live_version.is_empty() {
                "created (dry run)".to_owned()
            } else {
                "configured (dry run)".to_owned()
            }
        })
    }

    /// `Validate=false`: server-side apply refuses fields a schema does not declare whatever
    /// the validation directive, so such objects are written like a client-side apply
    /// without validation: a merge patch (or a create) with `fieldValidation=Ignore`, and
    /// the server drops what it does not know.
    async fn lenient_write(
        &self,
        api: &Api<DynamicObject>,
        task: &Task,
        manifest: &Value,
        dry_run: bool,
    ) -> Result<DynamicObject, String> {
        let mut patch = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        }
        .validation_ignore();
        patch.dry_run = dry_run;
        match api
            .patch(&task.key.name, &patch, &Patch::Merge(manifest))
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let obj: DynamicObject =
                    serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
                let post = PostParams {
                    dry_run,
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                };
                api.create(&post, &obj).await.map_err(api_message)
            }
            other => other.map_err(api_message),
        }
    }

    fn apply_params(&self, task: &Task) -> PatchParams {
        let params = PatchParams::apply(FIELD_MANAGER).validation_strict();
        if task.options.force_conflicts {
            params.force()
        } else {
            params
        }
    }

    /// Returns what the gate waits for, or `None` when every object applied by earlier
    /// groups is healthy.
    async fn health_gate(&self, state: &mut SyncState, group: (u8, i64, u8)) -> Option<String> {
        let pending: Vec<usize> = (0..state.tasks.len())
            .filter(|i| {
                let t = &state.tasks[*i];
                group_key(t) < group
                    && t.action == Action::Apply
                    && t.status == TaskStatus::Succeeded
                    && !t.healthy
            })
            .collect();
        if pending.is_empty() {
            return None;
        }
        let work: Vec<(usize, Task)> = pending
            .iter()
            .map(|i| (*i, state.tasks[*i].clone()))
            .collect();
        let checks: Vec<(usize, Result<(), String>)> = futures::stream::iter(work)
            .map(|(i, task)| async move { (i, self.ready(&task).await) })
            .buffered(self.concurrency)
            .collect()
            .await;
        let mut waiting = None;
        for (i, check) in checks {
            match check {
                Ok(()) => state.tasks[i].healthy = true,
                Err(why) => {
                    waiting.get_or_insert_with(|| {
                        format!("waiting for healthy state of {}: {why}", state.tasks[i].key)
                    });
                }
            }
        }
        waiting
    }

    /// Whether an applied object is ready for the next group: healthy or suspended (or
    /// without a health check); a CRD must be established.
    async fn ready(&self, task: &Task) -> Result<(), String> {
        let Some(manifest) = &task.manifest else {
            return Ok(());
        };
        let crd =
            task.key.group == "apiextensions.k8s.io" && task.key.kind == "CustomResourceDefinition";
        if !crd && !self.assessor.has_check(&task.key.group, &task.key.kind) {
            return Ok(());
        }
        let kind = self
            .resolver
            .resolve(manifest)
            .await
            .map_err(|e| e.to_string())?;
        let live = self
            .resolver
            .api(&kind, &task.key.namespace)
            .get_opt(&task.key.name)
            .await
            .map_err(api_message)?
            .ok_or("not found")?;
        let live = serde_json::to_value(live).map_err(|e| e.to_string())?;
        if crd {
            let established = live
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                });
            return if established {
                Ok(())
            } else {
                Err("not established yet".to_owned())
            };
        }
        match self.assessor.assess(&live) {
            None => Ok(()),
            Some(v)
                if matches!(
                    v.status,
                    HealthStatusCode::Healthy | HealthStatusCode::Suspended
                ) =>
            {
                Ok(())
            }
            Some(v) => Err(format!("{} {}", v.status, v.message).trim().to_owned()),
        }
    }

    /// Starts a pending task or polls a running one.
    async fn step_task(
        &self,
        mut task: Task,
        crds: &[(String, String)],
        propagation: Propagation,
    ) -> Task {
        let manifest_kind = match &task.manifest {
            Some(m) => self.resolver.resolve(m).await,
            None => {
                let probe =
                    serde_json::json!({"apiVersion": task.api_version, "kind": task.key.kind});
                self.resolver.resolve(&probe).await
            }
        };
        let kind = match manifest_kind {
            Ok(kind) => kind,
            Err(ResolveError::UnknownKind { .. })
                if crds.contains(&(task.key.group.clone(), task.key.kind.clone())) =>
            {
                // Its CRD was applied in this sync; discovery has not caught up yet.
                "waiting for the CRD to be served".clone_into(&mut task.message);
                return task;
            }
            Err(e) => {
                task.result = Some(ResultCode::SyncFailed);
                task.finish(TaskStatus::Failed, e.to_string());
                return task;
            }
        };
        let api = self.resolver.api(&kind, &task.key.namespace);
        match (task.action, task.status) {
            (Action::Apply, TaskStatus::Pending) => self.apply(&api, &mut task).await,
            (Action::Prune, TaskStatus::Pending) => self.prune(&api, &mut task, propagation).await,
            (Action::Hook(_), TaskStatus::Pending) => {
                self.start_hook(&api, &mut task).await;
                if task.status == TaskStatus::Running {
                    self.poll_hook(&api, &mut task).await;
                }
            }
            (Action::Hook(_), TaskStatus::Running) => self.poll_hook(&api, &mut task).await,
            _ => {}
        }
        if let Some(m) = &self.metrics
            && task.status.is_finished()
        {
            m.task(&task);
        }
        task
    }

    async fn apply(&self, api: &Api<DynamicObject>, task: &mut Task) {
        let manifest = task.manifest.clone().unwrap_or_default();
        let outcome = if task.options.replace {
            self.replace(api, task, &manifest).await
        } else if task.options.skip_validation {
            self.lenient_write(api, task, &manifest, false).await
        } else {
            api.patch(
                &task.key.name,
                &self.apply_params(task),
                &Patch::Apply(&manifest),
            )
            .await
            .map_err(api_message)
        };
        match outcome {
            Ok(applied) => {
                let version = applied.metadata.resource_version.unwrap_or_default();
                let message = if task.live_version.is_empty() {
                    "created"
                } else if task.live_version == version {
                    "unchanged"
                } else {
                    "configured"
                };
                task.result = Some(ResultCode::Synced);
                task.finish(TaskStatus::Succeeded, message);
                debug!(resource = %task.key, message, "applied");
            }
            Err(message) => {
                warn!(resource = %task.key, %message, "apply failed");
                task.result = Some(ResultCode::SyncFailed);
                task.finish(TaskStatus::Failed, message);
            }
        }
    }

    /// `Replace=true`: create, or PUT over the live object; with `Force=true`, delete and
    /// re-create when the server refuses the replacement (immutable fields).
    async fn replace(
        &self,
        api: &Api<DynamicObject>,
        task: &Task,
        manifest: &Value,
    ) -> Result<DynamicObject, String> {
        let mut obj: DynamicObject =
            serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
        let post = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let Some(live) = api.get_opt(&task.key.name).await.map_err(api_message)? else {
            return api.create(&post, &obj).await.map_err(api_message);
        };
        obj.metadata.resource_version = live.metadata.resource_version;
        match api.replace(&task.key.name, &post, &obj).await {
            Ok(done) => Ok(done),
            Err(err) if task.options.force => {
                debug!(resource = %task.key, error = %err, "replace refused; deleting and re-creating (Force=true)");
                // Background: the object goes at once (dependents follow), so the
                // re-creation does not wait for the garbage collector.
                api.delete(&task.key.name, &DeleteParams::background())
                    .await
                    .map_err(api_message)?;
                self.wait_gone(api, &task.key.name).await?;
                obj.metadata.resource_version = None;
                api.create(&post, &obj).await.map_err(api_message)
            }
            Err(err) => Err(api_message(err)),
        }
    }

    async fn prune(&self, api: &Api<DynamicObject>, task: &mut Task, propagation: Propagation) {
        let params = match propagation {
            Propagation::Foreground => DeleteParams::foreground(),
            Propagation::Background => DeleteParams::background(),
            Propagation::Orphan => DeleteParams::orphan(),
        };
        match api.delete(&task.key.name, &params).await {
            Ok(_) => {
                task.result = Some(ResultCode::Pruned);
                task.finish(TaskStatus::Succeeded, "pruned");
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                task.result = Some(ResultCode::Pruned);
                task.finish(TaskStatus::Succeeded, "pruned (already gone)");
            }
            Err(err) => {
                task.result = Some(ResultCode::SyncFailed);
                task.finish(TaskStatus::Failed, api_message(err));
            }
        }
    }

    async fn start_hook(&self, api: &Api<DynamicObject>, task: &mut Task) {
        let manifest = task.manifest.clone().unwrap_or_default();
        let post = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let named = !task.key.name.is_empty();
        if named {
            match api.get_opt(&task.key.name).await {
                Ok(Some(_))
                    if task
                        .options
                        .delete_policies
                        .contains(&DeletePolicy::BeforeHookCreation) =>
                {
                    let deleted = api
                        .delete(&task.key.name, &DeleteParams::background())
                        .await
                        .map_err(api_message);
                    if let Err(message) = match deleted {
                        Ok(_) => self.wait_gone(api, &task.key.name).await,
                        Err(m) => Err(m),
                    } {
                        task.result = Some(ResultCode::SyncFailed);
                        task.finish(TaskStatus::Failed, message);
                        return;
                    }
                }
                Ok(Some(_)) => {
                    // Named hooks without BeforeHookCreation run once: the existing one is
                    // the hook, and its state decides.
                    task.result = Some(ResultCode::Synced);
                    task.finish(TaskStatus::Running, "exists; not re-created");
                    return;
                }
                Ok(None) => {}
                Err(err) => {
                    task.result = Some(ResultCode::SyncFailed);
                    task.finish(TaskStatus::Failed, api_message(err));
                    return;
                }
            }
        }
        let obj: DynamicObject = match serde_json::from_value(manifest) {
            Ok(obj) => obj,
            Err(err) => {
                task.result = Some(ResultCode::SyncFailed);
                task.finish(TaskStatus::Failed, err.to_string());
                return;
            }
        };
        match api.create(&post, &obj).await {
            Ok(created) => {
                if let Some(name) = created.metadata.name {
                    task.key.name = name;
                }
                task.result = Some(ResultCode::Synced);
                task.finish(TaskStatus::Running, "created");
                info!(hook = %task.key, phase = %task.phase, "hook created");
            }
            Err(err) => {
                task.result = Some(ResultCode::SyncFailed);
                task.finish(TaskStatus::Failed, api_message(err));
            }
        }
    }

    async fn poll_hook(&self, api: &Api<DynamicObject>, task: &mut Task) {
        let live = match api.get_opt(&task.key.name).await {
            Ok(Some(live)) => live,
            Ok(None) => {
                task.finish(
                    TaskStatus::Failed,
                    "the hook object was deleted before it finished",
                );
                return;
            }
            Err(err) => {
                // A transient read error: try again at the next step.
                task.message = api_message(err);
                return;
            }
        };
        let live = serde_json::to_value(live).unwrap_or_default();
        let verdict = self.assessor.assess(&live);
        let (status, message) = match verdict {
            None => (TaskStatus::Succeeded, "finished".to_owned()),
            Some(v) if v.status == HealthStatusCode::Healthy => (
                TaskStatus::Succeeded,
                if v.message.is_empty() {
                    "finished".to_owned()
                } else {
                    v.message
                },
            ),
            Some(v) if v.status == HealthStatusCode::Degraded => (TaskStatus::Failed, v.message),
            Some(v) => {
                task.message = if v.message.is_empty() {
                    "running".to_owned()
                } else {
                    v.message
                };
                return;
            }
        };
        task.finish(status, message);
        let policy = if status == TaskStatus::Succeeded {
            DeletePolicy::HookSucceeded
        } else {
            DeletePolicy::HookFailed
        };
        if task.options.delete_policies.contains(&policy)
            && let Err(err) = api
                .delete(&task.key.name, &DeleteParams::background())
                .await
        {
            warn!(hook = %task.key, error = %err, "deleting a finished hook failed");
        }
    }

    async fn wait_gone(&self, api: &Api<DynamicObject>, name: &str) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + DELETION_TIMEOUT;
        loop {
            match api.get_opt(name).await.map_err(api_message)? {
                None => return Ok(()),
                Some(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!(
                        "{name} was still being deleted after {}s",
                        DELETION_TIMEOUT.as_secs()
                    ));
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Ends the operation on request: running hooks are deleted, nothing new starts.
    async fn terminate(&self, state: &mut SyncState) {
        for task in state.tasks.iter_mut().chain(state.fail_tasks.iter_mut()) {
            if task.status != TaskStatus::Running {
                continue;
            }
            if task.is_hook()
                && let Some(manifest) = &task.manifest
                && let Ok(kind) = self.resolver.resolve(manifest).await
            {
                let api = self.resolver.api(&kind, &task.key.namespace);
                if let Err(err) = api
                    .delete(&task.key.name, &DeleteParams::background())
                    .await
                {
                    warn!(hook = %task.key, error = %err, "deleting a running hook on termination failed");
                }
            }
            task.finish(TaskStatus::Failed, "terminated");
        }
        state.end(OperationPhase::Failed, "operation terminated");
        if let Some(m) = &self.metrics {
            m.operation(state.phase);
        }
        info!(app = %state.app, "sync terminated");
    }
}

/// The API server's own words for a refused request.
fn api_message(err: kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// The namespaces a Namespace task of the sync (CreateNamespace, or a Namespace manifest)
/// creates or applies.
fn namespaces_created(tasks: &[Task]) -> Vec<String> {
    tasks
        .iter()
        .filter(|t| {
            t.action == Action::Apply && t.key.group.is_empty() && t.key.kind == "Namespace"
        })
        .map(|t| t.key.name.clone())
        .collect()
}

/// The (group, kind) of every custom resource kind a CRD in `tasks` defines.
fn crd_kinds(tasks: &[Task]) -> Vec<(String, String)> {
    tasks
        .iter()
        .filter(|t| {
            t.key.group == "apiextensions.k8s.io" && t.key.kind == "CustomResourceDefinition"
        })
        .filter_map(|t| {
            let m = t.manifest.as_ref()?;
            Some((
                str_at(m, &["spec", "group"]).to_owned(),
                str_at(m, &["spec", "names", "kind"]).to_owned(),
            ))
        })
        .collect()
}
