//! Discovery and the watch tasks: which kinds to watch, one task per kind (and namespace,
//! for namespace-restricted clusters), and the supervisor that re-runs discovery when CRDs
//! or APIServices change, periodically, and on request.
//!
//! Each task runs kube-runtime's [`watcher`], which lists, watches from the list's
//! resourceVersion, resumes after a watch timeout, and relists when the server says the
//! resourceVersion is too old (410 Gone). A (re)list arrives as `Init`, `InitApply`…,
//! `InitDone`; the task buffers it and hands the whole list to
//! [`super::store::Store::replace_scope`] at `InitDone`, so objects deleted while no watch
//! was running disappear, and readers never see a half-listed kind. Errors are retried
//! with kube-runtime's default backoff (0.8 s doubling to 30 s, jittered).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::Value;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::cluster;

use super::Shared;
use super::store::GroupKind;

/// Discovery runs at most this often, however many CRD events arrive.
const MIN_DISCOVERY_GAP: Duration = Duration::from_millis(500);
/// How often discovery is retried when an established CRD's kind is not served yet.
const MAX_PENDING_RETRIES: u32 = 10;

/// A kind discovery found worth watching.
#[derive(Debug, Clone)]
pub(crate) struct Watchable {
    pub resource: ApiResource,
    pub namespaced: bool,
}

fn crd_kind() -> GroupKind {
    GroupKind::new("apiextensions.k8s.io", "CustomResourceDefinition")
}

fn apiservice_kind() -> GroupKind {
    GroupKind::new("apiregistration.k8s.io", "APIService")
}

/// Discovers the served kinds and keeps those to watch: listable and watchable, not
/// excluded, included (when inclusions are set), and in scope for a namespace-restricted
/// cluster. CustomResourceDefinitions are always watched when in scope: their events are
/// what makes new kinds appear.
pub(crate) async fn discover(shared: &Shared) -> Result<Vec<Watchable>, kube::Error> {
    let discovery = match Discovery::new(shared.client.clone()).run_aggregated().await {
        Ok(d) => d,
        // Servers before 1.26 lack aggregated discovery; ask group by group.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 406 => {
            Discovery::new(shared.client.clone()).run().await?
        }
        Err(e) => return Err(e),
    };
    shared
        .discoveries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let settings = &shared.settings;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for group in discovery.groups() {
        for (resource, caps) in group.resources_by_stability() {
            if !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::WATCH) {
                continue;
            }
            let gk = GroupKind::new(&resource.group, &resource.kind);
            let namespaced = caps.scope == Scope::Namespaced;
            let wanted = gk == crd_kind() || settings.watches(&gk);
            if !wanted || settings.scopes(namespaced).is_empty() || !seen.insert(gk) {
                continue;
            }
            out.push(Watchable {
                resource,
                namespaced,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.resource.group, &a.resource.kind).cmp(&(&b.resource.group, &b.resource.kind))
    });
    Ok(out)
}

struct Running {
    version: String,
    tasks: Vec<AbortHandle>,
}

/// Owns the watch tasks; ends (aborting them all, as its [`JoinSet`] drops) when aborted.
pub(crate) async fn supervise(shared: Arc<Shared>, first: Vec<Watchable>) {
    let mut tasks = JoinSet::new();
    let mut running: HashMap<GroupKind, Running> = HashMap::new();
    let mut wanted = first;
    reconcile(&shared, &mut tasks, &mut running, &wanted);
    let mut last_discovery = Instant::now();
    let mut pending_retries = 0u32;
    loop {
        let missing = shared.missing_crd_kinds(&wanted);
        let wait = if !missing.is_empty() && pending_retries < MAX_PENDING_RETRIES {
            // A CRD is established but discovery does not list its kind yet: ask again
            // soon rather than at the next periodic run.
            pending_retries += 1;
            debug!(kinds = ?missing, attempt = pending_retries, "established CRD kinds not discovered yet");
            Duration::from_millis(250 * u64::from(pending_retries)).min(Duration::from_secs(5))
        } else {
            if missing.is_empty() {
                pending_retries = 0;
            }
            shared.settings.discovery_interval
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.rediscover.notified() => {}
            () = shared.invalidate.notified() => {
                info!("cache invalidated: relisting every kind");
                for (_, r) in running.drain() {
                    r.tasks.iter().for_each(AbortHandle::abort);
                }
            }
        }
        tokio::time::sleep_until(last_discovery + MIN_DISCOVERY_GAP).await;
        last_discovery = Instant::now();
        match discover(&shared).await {
            Ok(found) => wanted = found,
            Err(err) => {
                shared
                    .discovery_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (message, _) = cluster::explain(err);
                warn!(error = %message, "discovery failed; keeping the current watches");
            }
        }
        reconcile(&shared, &mut tasks, &mut running, &wanted);
        while tasks.try_join_next().is_some() {}
    }
}

/// Starts watches for new kinds (or kinds whose version changed) and stops those no longer
/// served, dropping their objects.
fn reconcile(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    running: &mut HashMap<GroupKind, Running>,
    wanted: &[Watchable],
) {
    let wanted_kinds: HashSet<GroupKind> = wanted
        .iter()
        .map(|w| GroupKind::new(&w.resource.group, &w.resource.kind))
        .collect();
    let gone: Vec<GroupKind> = running
        .keys()
        .filter(|k| !wanted_kinds.contains(k))
        .cloned()
        .collect();
    for kind in gone {
        if let Some(r) = running.remove(&kind) {
            r.tasks.iter().for_each(AbortHandle::abort);
        }
        let touched = shared.write().remove_kind(&kind);
        shared.subscribers.publish(&touched);
        info!(kind = %kind, apps = touched.len(), "kind no longer served; stopped watching it");
    }
    for w in wanted {
        let kind = GroupKind::new(&w.resource.group, &w.resource.kind);
        if running
            .get(&kind)
            .is_some_and(|r| r.version == w.resource.version)
        {
            continue;
        }
        if let Some(r) = running.remove(&kind) {
            r.tasks.iter().for_each(AbortHandle::abort);
        }
        let scopes = shared.settings.scopes(w.namespaced);
        shared.write().add_kind(&w.resource, w.namespaced, &scopes);
        let mut handles = Vec::new();
        for scope in scopes {
            let span = info_span!(
                "cluster_cache_watch",
                cluster = %shared.cluster,
                kind = %kind,
                version = %w.resource.version,
                namespace = %scope,
            );
            let task = watch_scope(shared.clone(), kind.clone(), w.resource.clone(), scope);
            handles.push(tasks.spawn(task.instrument(span)));
        }
        debug!(kind = %kind, version = %w.resource.version, "watching");
        running.insert(
            kind,
            Running {
                version: w.resource.version.clone(),
                tasks: handles,
            },
        );
    }
    shared.sync_changed();
}

/// The message of a watch error (credentials scrubbed) and the HTTP status, if any.
fn describe(err: watcher::Error) -> (String, Option<u16>) {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => {
            let status = cluster::status_of(&e);
            (cluster::explain(e).0, status)
        }
        watcher::Error::WatchError(status) => (
            format!(
                "watch error from the API server: {} ({})",
                status.message, status.code
            ),
            Some(status.code),
        ),
        watcher::Error::NoResourceVersion => (
            "the API server sent no resourceVersion: the kind cannot be watched".to_owned(),
            None,
        ),
    }
}

fn name_of(obj: &DynamicObject) -> (&str, &str) {
    (
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The group and kind a CustomResourceDefinition serves, and whether it is namespaced,
/// once it is established.
fn crd_serves(obj: &DynamicObject) -> Option<(GroupKind, bool)> {
    let spec = obj.data.get("spec")?;
    let group = spec.get("group")?.as_str()?;
    let kind = spec.get("names")?.get("kind")?.as_str()?;
    let established = obj
        .data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|conds| {
            conds.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    established.then(|| (GroupKind::new(group, kind), namespaced))
}

async fn watch_scope(shared: Arc<Shared>, kind: GroupKind, resource: ApiResource, scope: String) {
    let api: Api<DynamicObject> = if scope.is_empty() {
        Api::all_with(shared.client.clone(), &resource)
    } else {
        Api::namespaced_with(shared.client.clone(), &scope, &resource)
    };
    let triggers_discovery = kind == crd_kind() || kind == apiservice_kind();
    let is_crd = kind == crd_kind();
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listing: Option<Vec<super::object::CompactObject>> = None;
    let mut last_error: Option<String> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => {
                if shared.read().scope_synced(&kind, &scope) {
                    shared
                        .relists
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!("relisting");
                }
                listing = Some(Vec::new());
            }
            Ok(Event::InitApply(obj)) => {
                if is_crd {
                    shared.note_crd(name_of(&obj).1, crd_serves(&obj));
                }
                if let Some(c) = shared.compact(&resource, obj) {
                    listing.get_or_insert_with(Vec::new).push(c);
                }
            }
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                let count = listed.len();
                let relist = shared.read().scope_synced(&kind, &scope);
                let touched = shared.write().replace_scope(&kind, &scope, listed);
                shared.subscribers.publish(&touched);
                shared.sync_changed();
                if last_error.take().is_some() {
                    info!(objects = count, "watch recovered");
                } else {
                    debug!(objects = count, apps = touched.len(), "listed");
                }
                if triggers_discovery && relist {
                    shared.rediscover.notify_one();
                }
            }
            Ok(Event::Apply(obj)) => {
                if is_crd {
                    shared.note_crd(name_of(&obj).1, crd_serves(&obj));
                }
                if let Some(c) = shared.compact(&resource, obj) {
                    let touched = shared.write().apply(&kind, c);
                    shared.subscribers.publish(&touched);
                }
                if triggers_discovery {
                    shared.rediscover.notify_one();
                }
            }
            Ok(Event::Delete(obj)) => {
                let (ns, name) = name_of(&obj);
                if is_crd {
                    shared.note_crd(name, None);
                }
                let touched = shared.write().remove(&kind, ns, name);
                shared.subscribers.publish(&touched);
                if triggers_discovery {
                    shared.rediscover.notify_one();
                }
            }
            Err(err) => {
                shared
                    .watch_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (message, status) = describe(err);
                if last_error.as_deref() != Some(message.as_str()) {
                    warn!(error = %message, "watch failed; retrying with backoff");
                } else {
                    debug!(error = %message, "watch still failing");
                }
                shared.write().set_error(&kind, Some(message.clone()));
                shared.sync_changed();
                last_error = Some(message);
                if status == Some(404) {
                    // The kind went away (CRD deleted): discovery will stop this task.
                    shared.rediscover.notify_one();
                }
            }
        }
    }
}
