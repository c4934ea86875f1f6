//! Comparing an Application's desired manifests with what runs: the sync status of every
//! resource and of the Application, and its health — Argo CD's "compare app state".
//!
//! [`compare`] is a pure function over what the reconciler gathered (rendered manifests,
//! already placed in their namespace and stamped with tracking metadata; the live objects
//! the Application tracks; the live objects at the desired keys), so every rule is
//! unit-tested without a cluster:
//!
//! - a desired resource that is live and equal after normalisation is `Synced`; different or
//!   missing, `OutOfSync`;
//! - a tracked live object Git no longer has is `OutOfSync` with `requiresPruning`, unless it
//!   carries `compare-options: IgnoreExtraneous` (then it does not count);
//! - hooks are listed with `hook: true` and never count towards the sync status; `Skip`
//!   hooks are left out;
//! - the Application is `OutOfSync` when any counted resource is, else `Synced`;
//! - health is the engine's roll-up ([`HealthAssessor::app_health`]).
//!
//! With [`CompareInput::detail`] the comparison also keeps, per resource, both sides and the
//! engine's diff ([`ResourceDetail`]): what the API shows as managed resources and diffs. The
//! reconciler leaves it off (nothing would read it).

use std::collections::{BTreeMap, HashMap};

use capstan_engine::diff::{self, CompareOptions, ResourceDiff};
use capstan_engine::health::{AppResource, HealthAssessor};
use capstan_engine::resources::{ResourceKey, str_at};
use capstan_engine::sync::hooks::{HookSpec, wave_of};
use capstan_model::{HealthStatus, ResourceIgnoreDifferences, ResourceStatus, SyncStatusCode};
use serde_json::Value;

/// What [`compare`] needs.
#[derive(Clone, Debug, Default)]
pub struct CompareInput {
    /// The rendered manifests, placed in their namespace and stamped with tracking.
    pub desired: Vec<Value>,
    /// Live objects the Application tracks (by tracking annotation or label).
    pub tracked: Vec<Value>,
    /// Live objects at the desired keys that are not tracked by the Application (adopted on
    /// the next sync, or shared with another Application).
    pub untracked: Vec<Value>,
    /// `ignoreDifferences` in force: the Application's and the system-wide ones.
    pub ignore: Vec<ResourceIgnoreDifferences>,
    /// Keep each resource's sides and diff in [`Comparison::details`].
    pub detail: bool,
}

/// One resource as compared (kept with [`CompareInput::detail`]): both sides as they were
/// given, and the engine's diff of them.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceDetail {
    /// The resource.
    pub key: ResourceKey,
    /// Whether it is a hook (hooks are not diffed).
    pub hook: bool,
    /// The desired manifest (placed and stamped); `None` when Git no longer has it.
    pub desired: Option<Value>,
    /// The live object; `None` when it does not exist.
    pub live: Option<Value>,
    /// The engine's comparison (normalised sides, Secret values masked, unified diff);
    /// `None` for hooks and when an `ignoreDifferences` rule is unusable (see
    /// [`Comparison::errors`]).
    pub diff: Option<ResourceDiff>,
}

/// The outcome of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Every resource: desired, live-only and hooks, in a stable order (group, kind,
    /// namespace, name).
    pub resources: Vec<ResourceStatus>,
    /// The Application's sync status.
    pub sync: SyncStatusCode,
    /// The Application's health.
    pub health: HealthStatus,
    /// Resources whose diff could not be computed (an unusable `ignoreDifferences` rule),
    /// with the reason; they count as `Unknown`.
    pub errors: Vec<(ResourceKey, String)>,
    /// With [`CompareInput::detail`]: every resource of [`Self::resources`] with its sides
    /// and diff, in the same order.
    pub details: Vec<ResourceDetail>,
}

/// Compares (see the [module docs](self)).
pub fn compare(input: &CompareInput, assessor: &HealthAssessor) -> Comparison {
    struct Entry<'a> {
        desired: Option<&'a Value>,
        live: Option<&'a Value>,
        hook: bool,
    }
    let mut entries: BTreeMap<ResourceKey, Entry<'_>> = BTreeMap::new();
    for manifest in &input.desired {
        let spec = HookSpec::of(manifest);
        if spec.is_skipped() {
            continue;
        }
        entries.insert(
            ResourceKey::of(manifest),
            Entry {
                desired: Some(manifest),
                live: None,
                hook: spec.is_hook(),
            },
        );
    }
    let live_by_key: HashMap<ResourceKey, &Value> = input
        .untracked
        .iter()
        .chain(&input.tracked)
        .map(|l| (ResourceKey::of(l), l))
        .collect();
    for (key, entry) in &mut entries {
        entry.live = live_by_key.get(key).copied();
    }
    for live in &input.tracked {
        let key = ResourceKey::of(live);
        let is_hook = HookSpec::of(live).is_hook();
        entries.entry(key).or_insert(Entry {
            desired: None,
            live: Some(live),
            hook: is_hook,
        });
    }

    let mut resources = Vec::with_capacity(entries.len());
    let mut details = Vec::new();
    let mut errors = Vec::new();
    let mut out_of_sync = false;
    let mut health_inputs = Vec::with_capacity(entries.len());
    for (key, entry) in &entries {
        let reference = entry.desired.or(entry.live);
        let version = reference
            .map(|r| str_at(r, &["apiVersion"]))
            .map(|v| v.rsplit_once('/').map_or(v, |(_, v)| v))
            .unwrap_or_default()
            .to_owned();
        let mut status = ResourceStatus {
            group: key.group.clone(),
            version,
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            hook: entry.hook,
            sync_wave: reference.and_then(|r| wave_of(r).ok()).unwrap_or(0),
            ..ResourceStatus::default()
        };
        let mut keep = |diff: Option<ResourceDiff>| {
            if input.detail {
                details.push(ResourceDetail {
                    key: key.clone(),
                    hook: entry.hook,
                    desired: entry.desired.cloned(),
                    live: entry.live.cloned(),
                    diff,
                });
            }
        };
        if entry.hook {
            // Hooks run during syncs; whether they exist says nothing about being in sync.
            keep(None);
            resources.push(status);
            health_inputs.push(None);
            continue;
        }
        if entry.desired.is_none() && entry.live.is_none() {
            continue;
        }
        // One side only is "different" whatever the diff says; it is computed for the
        // details only.
        let both = entry.desired.is_some() && entry.live.is_some();
        let diff =
            (both || input.detail).then(|| diff::diff(entry.desired, entry.live, &input.ignore));
        let code = match (diff, both) {
            (Some(Ok(d)), true) => {
                let code = if d.modified {
                    SyncStatusCode::OutOfSync
                } else {
                    SyncStatusCode::Synced
                };
                keep(Some(d));
                code
            }
            (Some(Err(e)), true) => {
                errors.push((key.clone(), e));
                keep(None);
                SyncStatusCode::Unknown
            }
            (diff, _) => {
                keep(diff.and_then(Result::ok));
                SyncStatusCode::OutOfSync
            }
        };
        if let (None, Some(live)) = (entry.desired, entry.live) {
            status.requires_pruning = true;
            if CompareOptions::of(live).ignore_extraneous {
                status.status = Some(SyncStatusCode::OutOfSync);
                resources.push(status);
                health_inputs.push(Some((key, entry.desired, entry.live)));
                continue;
            }
        }
        out_of_sync |= code != SyncStatusCode::Synced;
        status.status = Some(code);
        resources.push(status);
        health_inputs.push(Some((key, entry.desired, entry.live)));
    }

    let app_resources: Vec<AppResource<'_>> = health_inputs
        .iter()
        .flatten()
        .map(|(key, desired, live)| AppResource {
            group: &key.group,
            kind: &key.kind,
            target: *desired,
            live: *live,
        })
        .collect();
    let health = assessor.app_health(&app_resources);
    let mut verdicts = health.resources.into_iter();
    for (status, input) in resources.iter_mut().zip(&health_inputs) {
        if input.is_some()
            && let Some(verdict) = verdicts.next().flatten()
        {
            status.health = Some(HealthStatus {
                status: Some(verdict.status),
                message: verdict.message,
                last_transition_time: None,
            });
        }
    }
    Comparison {
        resources,
        sync: if out_of_sync {
            SyncStatusCode::OutOfSync
        } else {
            SyncStatusCode::Synced
        },
        health: HealthStatus {
            status: Some(health.status),
            message: String::new(),
            last_transition_time: None,
        },
        errors,
        details,
    }
}

#[cfg(test)]
mod tests;
