//! From a request (desired manifests, live objects, options) to the ordered tasks of a sync.
//!
//! Order, as in Argo CD: by phase (PreSync, Sync, PostSync), then wave, then kind (namespaces
//! and CRDs before what lives in them, workloads after their config), then name. Prunes run
//! in **reverse wave order**: the prune tasks' distinct waves are mapped onto themselves
//! backwards, so the object of the highest wave goes first; `PruneLast` prunes get a wave of
//! their own after every other task of the Sync phase. Planning never talks to the cluster:
//! the caller says which kinds are namespaced (`scope`), so the plan is a pure function and
//! unit-tested as one.

use std::collections::{BTreeSet, HashMap, HashSet};

use capstan_model::{
    HookType, ManagedNamespaceMetadata, OperationPhase, ResourceIgnoreDifferences, ResultCode,
    SyncOperationResource, SyncOptions, SyncPhase,
};
use serde_json::{Value, json};

use super::hooks::{HookSpec, wave_of};
use super::options::{OperationOptions, Removal, ResourceOptions};
use super::state::{Action, Mode, SyncState, Task, TaskOptions, TaskStatus};
use crate::resources::{ResourceKey, place_in_namespace, str_at};

/// A live object the sync may touch, with the Application that tracks it (if any).
#[derive(Clone, Debug, PartialEq)]
pub struct LiveObject {
    /// The object as the cluster (cache) has it.
    pub object: Value,
    /// The Application its tracking annotation or label names.
    pub app: Option<String>,
}

/// Everything a sync needs to know.
#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    /// The Application's name (prunes only touch objects tracked by it).
    pub app: String,
    /// The destination namespace, for namespaced objects that name none.
    pub namespace: String,
    /// The rendered manifests, tracking metadata already stamped by the caller.
    pub desired: Vec<Value>,
    /// Live objects: those tracked by the Application and those at the desired keys.
    pub live: Vec<LiveObject>,
    /// The Application's sync options with the operation's added.
    pub sync_options: SyncOptions,
    /// Delete live objects Git no longer has (otherwise they are reported `PruneSkipped`).
    pub prune: bool,
    /// Only ask the server (dry run) what would happen.
    pub dry_run: bool,
    /// Selective sync: only these resources (hooks do not run in a selective sync).
    pub resources: Vec<SyncOperationResource>,
    /// `ignoreDifferences` in force (for `ApplyOutOfSyncOnly`).
    pub ignore_differences: Vec<ResourceIgnoreDifferences>,
    /// Labels and annotations for a namespace created by `CreateNamespace=true`.
    pub managed_namespace_metadata: Option<ManagedNamespaceMetadata>,
    /// Sync, or delete the Application's objects.
    pub mode: Mode,
    /// When set, every manifest is stamped with the Application's tracking metadata once
    /// its namespace is final (`None`: the caller stamped them).
    pub tracking: Option<crate::cache::tracking::Tracking>,
}

/// The order kinds are applied in within a wave (Argo CD's, after kubectl's); other kinds
/// (custom resources) come last.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// Namespaces and CRDs are applied (and must be ready) before anything else of their wave:
/// the objects that live in them cannot be created earlier.
pub(crate) fn tier(key: &ResourceKey) -> u8 {
    let infrastructure = (key.group.is_empty() && key.kind == "Namespace")
        || (key.group == "apiextensions.k8s.io" && key.kind == "CustomResourceDefinition");
    u8::from(!infrastructure)
}

fn phase_rank(phase: SyncPhase) -> u8 {
    match phase {
        SyncPhase::PreSync | SyncPhase::PreDelete => 0,
        SyncPhase::Sync => 1,
        SyncPhase::PostSync | SyncPhase::PostDelete => 2,
        SyncPhase::SyncFail => 3,
    }
}

/// The position of a task in the run: tasks with equal group keys run together.
pub(crate) fn group_key(t: &Task) -> (u8, i64, u8) {
    (phase_rank(t.phase), t.wave, tier(&t.key))
}

fn sort_key(t: &Task) -> (u8, i64, u8, usize, bool, String, String) {
    (
        phase_rank(t.phase),
        t.wave,
        tier(&t.key),
        kind_rank(&t.key.kind),
        t.action == Action::Prune,
        t.key.namespace.clone(),
        t.key.name.clone(),
    )
}

fn hook_phase(t: HookType) -> Option<SyncPhase> {
    Some(match t {
        HookType::PreSync => SyncPhase::PreSync,
        HookType::Sync => SyncPhase::Sync,
        HookType::PostSync => SyncPhase::PostSync,
        HookType::SyncFail => SyncPhase::SyncFail,
        HookType::PreDelete => SyncPhase::PreDelete,
        HookType::PostDelete => SyncPhase::PostDelete,
        HookType::Skip => return None,
    })
}

fn selected(resources: &[SyncOperationResource], key: &ResourceKey) -> bool {
    let eq = |pattern: &str, value: &str| pattern == "*" || pattern == value;
    resources.iter().any(|r| {
        eq(&r.group, &key.group)
            && eq(&r.kind, &key.kind)
            && eq(&r.name, &key.name)
            && (r.namespace.is_empty() || eq(&r.namespace, &key.namespace))
    })
}

fn has_owner(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty())
}

/// Builds the sync's tasks. `scope` tells whether a manifest's kind is namespaced (`None`
/// when the cluster does not serve it yet; such objects are taken as namespaced, like Argo
/// CD does, and the validation pass decides whether they may go ahead).
///
/// A plan that cannot run (an unreadable wave, a resource shared with another Application
/// under `FailOnSharedResource=true`) comes back already `Failed`, with the reason.
pub fn plan(request: &SyncRequest, scope: &dyn Fn(&Value) -> Option<bool>) -> SyncState {
    let options = OperationOptions::of(&request.sync_options);
    let mut state = SyncState {
        app: request.app.clone(),
        mode: request.mode,
        dry_run: request.dry_run,
        options: options.clone(),
        tasks: Vec::new(),
        fail_tasks: Vec::new(),
        phase: OperationPhase::Running,
        message: String::new(),
        validated: false,
        failing: false,
        terminate_requested: false,
    };
    if let Err(message) = build(request, scope, &options, &mut state) {
        state.end(OperationPhase::Failed, message);
    }
    state
}

fn build(
    request: &SyncRequest,
    scope: &dyn Fn(&Value) -> Option<bool>,
    options: &OperationOptions,
    state: &mut SyncState,
) -> Result<(), String> {
    let live: HashMap<ResourceKey, &LiveObject> = request
        .live
        .iter()
        .map(|l| (ResourceKey::of(&l.object), l))
        .collect();
    let selective = !request.resources.is_empty();
    let mut desired_keys = HashSet::new();

    for manifest in &request.desired {
        let mut manifest = manifest.clone();
        let namespaced = scope(&manifest).unwrap_or(true);
        place_in_namespace(&mut manifest, namespaced, &request.namespace);
        if let Some(tracking) = &request.tracking {
            tracking.stamp(&mut manifest, &request.app);
        }
        let key = ResourceKey::of(&manifest);
        let hook = HookSpec::of(&manifest);
        if hook.is_skipped() {
            continue;
        }
        let wave = wave_of(&manifest).map_err(|e| format!("{key}: {e}"))?;
        let resource_options = ResourceOptions::of(&request.sync_options, &manifest);
        let mut task_options = TaskOptions::from(&resource_options);
        let new_task = |action, phase, manifest: Value, options: TaskOptions| Task {
            key: key.clone(),
            api_version: str_at(&manifest, &["apiVersion"]).to_owned(),
            action,
            phase,
            wave,
            manifest: Some(manifest),
            options,
            status: TaskStatus::Pending,
            result: None,
            message: String::new(),
            healthy: false,
            live_version: String::new(),
        };
        if hook.is_hook() {
            if selective {
                continue;
            }
            task_options
                .delete_policies
                .clone_from(&hook.delete_policies);
            for hook_type in &hook.types {
                let wanted = match request.mode {
                    Mode::Sync => !matches!(hook_type, HookType::PreDelete | HookType::PostDelete),
                    Mode::Delete => {
                        matches!(hook_type, HookType::PreDelete | HookType::PostDelete)
                    }
                };
                let Some(phase) = hook_phase(*hook_type).filter(|_| wanted) else {
                    continue;
                };
                let task = new_task(
                    Action::Hook(*hook_type),
                    phase,
                    manifest.clone(),
                    task_options.clone(),
                );
                if phase == SyncPhase::SyncFail {
                    state.fail_tasks.push(task);
                } else {
                    state.tasks.push(task);
                }
            }
            continue;
        }
        desired_keys.insert(key.clone());
        if request.mode == Mode::Delete || (selective && !selected(&request.resources, &key)) {
            continue;
        }
        let current = live.get(&key);
        if options.fail_on_shared_resource
            && let Some(other) = current
                .and_then(|l| l.app.as_deref())
                .filter(|a| *a != request.app)
        {
            return Err(format!(
                "{key} is part of application {other:?} (FailOnSharedResource=true): remove it from one of the two applications"
            ));
        }
        let mut task = new_task(Action::Apply, SyncPhase::Sync, manifest, task_options);
        if let Some(current) = current {
            str_at(&current.object, &["metadata", "resourceVersion"])
                .clone_into(&mut task.live_version);
        }
        if options.apply_out_of_sync_only
            && let Some(current) = current
            && crate::diff::diff(
                task.manifest.as_ref(),
                Some(&current.object),
                &request.ignore_differences,
            )
            .is_ok_and(|d| !d.modified)
        {
            task.result = Some(ResultCode::Synced);
            task.finish(TaskStatus::Succeeded, "unchanged (in sync, not applied)");
            task.healthy = true;
        }
        state.tasks.push(task);
    }

    prune_tasks(request, options, &desired_keys, selective, state)?;
    if request.mode == Mode::Sync && options.create_namespace && !request.namespace.is_empty() {
        namespace_task(request, &desired_keys, state);
    }
    state.tasks.sort_by_key(sort_key);
    state.fail_tasks.sort_by_key(sort_key);
    Ok(())
}

fn prune_tasks(
    request: &SyncRequest,
    options: &OperationOptions,
    desired_keys: &HashSet<ResourceKey>,
    selective: bool,
    state: &mut SyncState,
) -> Result<(), String> {
    let mut prunes = Vec::new();
    for l in &request.live {
        let obj = &l.object;
        let key = ResourceKey::of(obj);
        let managed = l.app.as_deref() == Some(request.app.as_str())
            && !has_owner(obj)
            && !HookSpec::of(obj).is_hook();
        if !managed || desired_keys.contains(&key) && request.mode == Mode::Sync {
            continue;
        }
        if selective && !selected(&request.resources, &key) {
            continue;
        }
        let resource_options = ResourceOptions::of(&request.sync_options, obj);
        let wave = wave_of(obj).map_err(|e| format!("{key}: {e}"))?;
        let mut task = Task {
            key: key.clone(),
            api_version: str_at(obj, &["apiVersion"]).to_owned(),
            action: Action::Prune,
            phase: SyncPhase::Sync,
            wave,
            manifest: None,
            options: TaskOptions::from(&resource_options),
            status: TaskStatus::Pending,
            result: None,
            message: String::new(),
            healthy: true,
            live_version: String::new(),
        };
        let (removal, switch) = match request.mode {
            Mode::Sync => (resource_options.prune, "Prune"),
            Mode::Delete => (resource_options.delete, "Delete"),
        };
        let skipped = match removal {
            Removal::Never => Some(format!("ignored ({switch}=false)")),
            Removal::NeedsConfirmation => Some(format!(
                "ignored ({switch}=confirm: needs a confirmation Capstan does not ask for yet)"
            )),
            Removal::Allowed if request.mode == Mode::Sync && !request.prune => {
                Some("ignored (requires pruning)".to_owned())
            }
            Removal::Allowed => None,
        };
        if let Some(message) = skipped {
            task.result = Some(ResultCode::PruneSkipped);
            task.finish(TaskStatus::Succeeded, message);
        }
        let last = resource_options.prune_last || options.prune_last;
        prunes.push((task, last));
    }

    // Reverse wave order: the distinct waves of the (non-last) prunes, mapped backwards.
    let waves: Vec<i64> = prunes
        .iter()
        .filter(|(_, last)| !last)
        .map(|(t, _)| t.wave)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let reversed: HashMap<i64, i64> = waves
        .iter()
        .copied()
        .zip(waves.iter().rev().copied())
        .collect();
    let after_all = state
        .tasks
        .iter()
        .filter(|t| t.phase == SyncPhase::Sync)
        .map(|t| t.wave)
        .chain(waves.iter().copied())
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    for (mut task, last) in prunes {
        task.wave = if last {
            after_all
        } else {
            reversed[&task.wave]
        };
        state.tasks.push(task);
    }
    Ok(())
}

fn namespace_task(
    request: &SyncRequest,
    desired_keys: &HashSet<ResourceKey>,
    state: &mut SyncState,
) {
    let key = ResourceKey {
        kind: "Namespace".into(),
        name: request.namespace.clone(),
        ..ResourceKey::default()
    };
    if desired_keys.contains(&key) {
        return;
    }
    let mut manifest = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": request.namespace}});
    if let Some(meta) = &request.managed_namespace_metadata {
        if !meta.labels.is_empty() {
            manifest["metadata"]["labels"] = json!(meta.labels);
        }
        if !meta.annotations.is_empty() {
            manifest["metadata"]["annotations"] = json!(meta.annotations);
        }
    }
    state.tasks.push(Task {
        key,
        api_version: "v1".into(),
        action: Action::Apply,
        phase: SyncPhase::PreSync,
        wave: i64::MIN,
        manifest: Some(manifest),
        options: TaskOptions::from(&ResourceOptions::default()),
        status: TaskStatus::Pending,
        result: None,
        message: String::new(),
        healthy: false,
        live_version: String::new(),
    });
}

#[cfg(test)]
mod tests;
