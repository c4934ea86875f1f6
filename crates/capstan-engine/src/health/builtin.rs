//! Built-in health checks for core Kubernetes kinds, on objects as [`serde_json::Value`].
//!
//! Each check follows Argo CD's (gitops-engine `pkg/health`, and Argo CD's bundled
//! `batch/CronJob/health.lua`) statuses and message texts, so that users moving from Argo CD
//! see the same verdicts. Fields are read leniently: a missing or mistyped field counts as
//! its zero value, as Go's typed structs would after decoding a live object.
//!
//! Start at [`builtin_check`], which maps a group and kind to its check.

use super::{HealthStatusCode, HealthVerdict};
use serde_json::Value;

/// A built-in check: the object in, the verdict out.
pub type BuiltinCheck = fn(&Value) -> HealthVerdict;

/// The built-in check for a group and kind, if there is one.
///
/// The group is the part of `apiVersion` before the `/` (empty for the core group). Versions
/// are not distinguished: every served version of these kinds has the fields read here.
pub fn builtin_check(group: &str, kind: &str) -> Option<BuiltinCheck> {
    let check: BuiltinCheck = match (group, kind) {
        ("apps", "Deployment") => deployment,
        ("apps", "StatefulSet") => stateful_set,
        ("apps", "ReplicaSet") => replica_set,
        ("apps", "DaemonSet") => daemon_set,
        ("extensions" | "networking.k8s.io", "Ingress") => ingress,
        ("", "Service") => service,
        ("", "PersistentVolumeClaim") => persistent_volume_claim,
        ("", "Pod") => pod,
        ("", "Namespace") => namespace,
        ("batch", "Job") => job,
        ("batch", "CronJob") => cron_job,
        ("autoscaling", "HorizontalPodAutoscaler") => horizontal_pod_autoscaler,
        ("apiregistration.k8s.io", "APIService") => api_service,
        _ => return None,
    };
    Some(check)
}

// ---------------------------------------------------------------------------------------
// Field access: absent or mistyped fields read as Go's zero values.

fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, key| v.get(key))
}

fn int(obj: &Value, path: &[&str]) -> i64 {
    opt_int(obj, path).unwrap_or(0)
}

fn opt_int(obj: &Value, path: &[&str]) -> Option<i64> {
    at(obj, path).and_then(Value::as_i64)
}

fn text<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    at(obj, path).and_then(Value::as_str).unwrap_or("")
}

fn flag(obj: &Value, path: &[&str]) -> bool {
    at(obj, path).and_then(Value::as_bool).unwrap_or(false)
}

fn items<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    at(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The first condition of a type in `status.conditions`.
fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    items(obj, &["status", "conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == type_)
}

fn verdict(status: HealthStatusCode, message: impl Into<String>) -> HealthVerdict {
    HealthVerdict {
        status,
        message: message.into(),
    }
}

use HealthStatusCode::{Degraded, Healthy, Progressing, Suspended, Unknown};

// ---------------------------------------------------------------------------------------
// apps

/// Deployment: paused → Suspended; once the controller has observed the latest generation,
/// a `ProgressDeadlineExceeded` Progressing condition → Degraded, otherwise the rollout
/// counters decide (kubectl's `rollout status` logic).
pub(crate) fn deployment(obj: &Value) -> HealthVerdict {
    if flag(obj, &["spec", "paused"]) {
        return verdict(Suspended, "Deployment is paused");
    }
    let generation = int(obj, &["metadata", "generation"]);
    let observed = int(obj, &["status", "observedGeneration"]);
    if generation > observed {
        return verdict(
            Progressing,
            "Waiting for rollout to finish: observed deployment generation less then desired generation",
        );
    }
    let progressing = condition(obj, "Progressing");
    if progressing.is_some_and(|c| text(c, &["reason"]) == "ProgressDeadlineExceeded") {
        let name = text(obj, &["metadata", "name"]);
        return verdict(
            Degraded,
            format!("Deployment {name:?} exceeded its progress deadline"),
        );
    }
    let updated = int(obj, &["status", "updatedReplicas"]);
    let replicas = int(obj, &["status", "replicas"]);
    let available = int(obj, &["status", "availableReplicas"]);
    if let Some(desired) = opt_int(obj, &["spec", "replicas"])
        && updated < desired
    {
        return verdict(
            Progressing,
            format!(
                "Waiting for rollout to finish: {updated} out of {desired} new replicas have been updated..."
            ),
        );
    }
    if replicas > updated {
        return verdict(
            Progressing,
            format!(
                "Waiting for rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
        );
    }
    if available < updated {
        return verdict(
            Progressing,
            format!(
                "Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        );
    }
    verdict(Healthy, "")
}

/// StatefulSet: generation observed, all replicas ready, then the update strategy decides
/// (a partitioned rolling update, OnDelete, or a full rolling update by revision).
pub(crate) fn stateful_set(obj: &Value) -> HealthVerdict {
    let generation = int(obj, &["metadata", "generation"]);
    let observed = int(obj, &["status", "observedGeneration"]);
    if observed == 0 || generation > observed {
        return verdict(
            Progressing,
            "Waiting for statefulset spec update to be observed...",
        );
    }
    let desired = opt_int(obj, &["spec", "replicas"]);
    let ready = int(obj, &["status", "readyReplicas"]);
    if let Some(desired) = desired
        && ready < desired
    {
        return verdict(
            Progressing,
            format!("Waiting for {} pods to be ready...", desired - ready),
        );
    }
    let updated = int(obj, &["status", "updatedReplicas"]);
    let strategy = text(obj, &["spec", "updateStrategy", "type"]);
    let rolling_update = at(obj, &["spec", "updateStrategy", "rollingUpdate"]);
    if strategy == "RollingUpdate" && rolling_update.is_some_and(|r| !r.is_null()) {
        let partition = opt_int(
            obj,
            &["spec", "updateStrategy", "rollingUpdate", "partition"],
        );
        if let (Some(desired), Some(partition)) = (desired, partition)
            && updated < desired - partition
        {
            return verdict(
                Progressing,
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                    desired - partition
                ),
            );
        }
        return verdict(
            Healthy,
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
        );
    }
    if strategy == "OnDelete" {
        return verdict(
            Healthy,
            format!("statefulset has {ready} ready pods ({updated} updated)"),
        );
    }
    let update_revision = text(obj, &["status", "updateRevision"]);
    let current_revision = text(obj, &["status", "currentRevision"]);
    if update_revision != current_revision {
        return verdict(
            Progressing,
            format!(
                "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
            ),
        );
    }
    let current = int(obj, &["status", "currentReplicas"]);
    verdict(
        Healthy,
        format!(
            "statefulset rolling update complete {current} pods at revision {current_revision}..."
        ),
    )
}

/// ReplicaSet: a true `ReplicaFailure` condition → Degraded; fewer available replicas than
/// desired → Progressing.
pub(crate) fn replica_set(obj: &Value) -> HealthVerdict {
    let generation = int(obj, &["metadata", "generation"]);
    let observed = int(obj, &["status", "observedGeneration"]);
    if generation > observed {
        return verdict(
            Progressing,
            "Waiting for rollout to finish: observed replica set generation less then desired generation",
        );
    }
    if let Some(failure) = condition(obj, "ReplicaFailure")
        && text(failure, &["status"]) == "True"
    {
        return verdict(Degraded, text(failure, &["message"]));
    }
    let available = int(obj, &["status", "availableReplicas"]);
    if let Some(desired) = opt_int(obj, &["spec", "replicas"])
        && available < desired
    {
        return verdict(
            Progressing,
            format!(
                "Waiting for rollout to finish: {available} out of {desired} new replicas are available..."
            ),
        );
    }
    verdict(Healthy, "")
}

/// DaemonSet: OnDelete → Healthy with the update count; otherwise every scheduled pod must be
/// updated and available.
pub(crate) fn daemon_set(obj: &Value) -> HealthVerdict {
    let generation = int(obj, &["metadata", "generation"]);
    let observed = int(obj, &["status", "observedGeneration"]);
    if generation > observed {
        return verdict(
            Progressing,
            "Waiting for rollout to finish: observed daemon set generation less then desired generation",
        );
    }
    let name = text(obj, &["metadata", "name"]);
    let updated = int(obj, &["status", "updatedNumberScheduled"]);
    let desired = int(obj, &["status", "desiredNumberScheduled"]);
    let available = int(obj, &["status", "numberAvailable"]);
    if text(obj, &["spec", "updateStrategy", "type"]) == "OnDelete" {
        return verdict(
            Healthy,
            format!("daemon set {updated} out of {desired} new pods have been updated"),
        );
    }
    if updated < desired {
        return verdict(
            Progressing,
            format!(
                "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
            ),
        );
    }
    if available < desired {
        return verdict(
            Progressing,
            format!(
                "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
            ),
        );
    }
    verdict(Healthy, "")
}

// ---------------------------------------------------------------------------------------
// core

/// Service: only a LoadBalancer waits, until the cloud controller reports an ingress point.
pub(crate) fn service(obj: &Value) -> HealthVerdict {
    if text(obj, &["spec", "type"]) == "LoadBalancer"
        && items(obj, &["status", "loadBalancer", "ingress"]).is_empty()
    {
        return verdict(Progressing, "");
    }
    verdict(Healthy, "")
}

/// Ingress: Healthy once a load balancer reports an ingress point, Progressing before.
pub(crate) fn ingress(obj: &Value) -> HealthVerdict {
    if items(obj, &["status", "loadBalancer", "ingress"]).is_empty() {
        return verdict(Progressing, "");
    }
    verdict(Healthy, "")
}

/// PersistentVolumeClaim: by phase.
pub(crate) fn persistent_volume_claim(obj: &Value) -> HealthVerdict {
    let status = match text(obj, &["status", "phase"]) {
        "Lost" => Degraded,
        "Pending" => Progressing,
        "Bound" => Healthy,
        _ => Unknown,
    };
    verdict(status, "")
}

/// The annotation that makes a Pod with restart policy OnFailure/Never judged like a
/// long-running one (Healthy when ready) instead of Progressing while running.
pub const ANNOTATION_IGNORE_RESTART_POLICY: &str = "argocd.argoproj.io/ignore-restart-policy";

/// Pod: for restart policy Always, a container waiting with an error (`Err*`, `*Error`,
/// `*BackOff`, e.g. CrashLoopBackOff, ImagePullBackOff) → Degraded; otherwise by phase.
pub(crate) fn pod(obj: &Value) -> HealthVerdict {
    let restart_policy = text(obj, &["spec", "restartPolicy"]);
    let pod_message = text(obj, &["status", "message"]);
    let container_statuses = items(obj, &["status", "containerStatuses"]);

    if restart_policy == "Always" {
        let mut messages = Vec::new();
        for cs in container_statuses {
            if let Some(waiting) = at(cs, &["state", "waiting"]).filter(|w| w.is_object()) {
                let reason = text(waiting, &["reason"]);
                if reason.starts_with("Err")
                    || reason.ends_with("Error")
                    || reason.ends_with("BackOff")
                {
                    messages.push(text(waiting, &["message"]));
                }
            }
        }
        if !messages.is_empty() {
            return verdict(Degraded, messages.join(", "));
        }
    }

    match text(obj, &["status", "phase"]) {
        "Pending" => verdict(Progressing, pod_message),
        "Succeeded" => verdict(Healthy, pod_message),
        "Failed" => {
            if !pod_message.is_empty() {
                return verdict(Degraded, pod_message);
            }
            let init_statuses = items(obj, &["status", "initContainerStatuses"]);
            let message = init_statuses
                .iter()
                .chain(container_statuses)
                .map(container_failure_message)
                .find(|m| !m.is_empty())
                .unwrap_or_default();
            verdict(Degraded, message)
        }
        "Running" => {
            let ignore_restart_policy = at(
                obj,
                &["metadata", "annotations", ANNOTATION_IGNORE_RESTART_POLICY],
            )
            .is_some();
            if ignore_restart_policy || restart_policy == "Always" {
                running_pod(obj, container_statuses, pod_message)
            } else if matches!(restart_policy, "OnFailure" | "Never") {
                // Pods that are meant to finish (usually hooks) are Progressing until they do.
                verdict(Progressing, pod_message)
            } else {
                verdict(Unknown, pod_message)
            }
        }
        _ => verdict(Unknown, pod_message),
    }
}

fn running_pod(obj: &Value, container_statuses: &[Value], message: &str) -> HealthVerdict {
    let ready = condition(obj, "Ready").is_some_and(|c| text(c, &["status"]) == "True");
    if ready {
        return verdict(Healthy, message);
    }
    let restarted = container_statuses
        .iter()
        .any(|cs| at(cs, &["lastState", "terminated"]).is_some_and(|t| t.is_object()));
    if restarted {
        return verdict(Degraded, message);
    }
    verdict(Progressing, message)
}

fn container_failure_message(cs: &Value) -> String {
    let Some(terminated) = at(cs, &["state", "terminated"]).filter(|t| t.is_object()) else {
        return String::new();
    };
    let message = text(terminated, &["message"]);
    if !message.is_empty() {
        return message.to_owned();
    }
    let reason = text(terminated, &["reason"]);
    if reason == "OOMKilled" {
        return reason.to_owned();
    }
    let exit_code = int(terminated, &["exitCode"]);
    if exit_code != 0 {
        return format!(
            "container {:?} failed with exit code {exit_code}",
            text(cs, &["name"])
        );
    }
    String::new()
}

/// Namespace (Capstan's own; Argo CD has no built-in check): Active → Healthy,
/// Terminating → Progressing.
pub(crate) fn namespace(obj: &Value) -> HealthVerdict {
    match text(obj, &["status", "phase"]) {
        "Active" => verdict(Healthy, ""),
        "Terminating" => verdict(Progressing, "Namespace is terminating"),
        "" => verdict(Progressing, "Waiting for namespace to become active"),
        other => verdict(Unknown, format!("Namespace is in unknown phase {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// batch

/// Job: Failed → Degraded with the condition's message, Complete → Healthy, suspended →
/// Suspended, otherwise Progressing.
pub(crate) fn job(obj: &Value) -> HealthVerdict {
    let mut failed = None;
    let mut complete = false;
    let mut suspended = false;
    let mut message = "";
    for c in items(obj, &["status", "conditions"]) {
        match text(c, &["type"]) {
            "Failed" => failed = Some(text(c, &["message"])),
            "Complete" => {
                complete = true;
                message = text(c, &["message"]);
            }
            // A resumed Job keeps its Suspended condition with status False; it is running
            // again, so (unlike Argo CD, which then reports Healthy) it is Progressing.
            "Suspended" if text(c, &["status"]) == "True" => {
                suspended = true;
                message = text(c, &["message"]);
            }
            _ => {}
        }
    }
    if let Some(fail_message) = failed {
        return verdict(Degraded, fail_message);
    }
    if suspended {
        return verdict(Suspended, message);
    }
    if complete {
        return verdict(Healthy, message);
    }
    verdict(Progressing, message)
}

/// CronJob: suspended → Suspended; otherwise judged by its last schedule and last success.
pub(crate) fn cron_job(obj: &Value) -> HealthVerdict {
    if flag(obj, &["spec", "suspend"]) {
        return verdict(Suspended, "CronJob is Suspended");
    }
    let Some(status) = at(obj, &["status"]).filter(|s| s.is_object()) else {
        return verdict(Progressing, "Waiting for CronJob");
    };
    let last_schedule = at(status, &["lastScheduleTime"]).and_then(Value::as_str);
    let last_success = at(status, &["lastSuccessfulTime"]).and_then(Value::as_str);
    let Some(last_schedule) = last_schedule else {
        return verdict(Healthy, "CronJob has not been scheduled yet");
    };
    let Some(last_success) = last_success else {
        return verdict(
            Healthy,
            "The CronJob never completed successfully. It may not be healthy",
        );
    };
    if !items(status, &["active"]).is_empty() {
        return verdict(
            Healthy,
            "The job is running. Its last execution may not have been successful",
        );
    }
    // RFC 3339 timestamps in UTC compare correctly as text.
    if last_success < last_schedule {
        return verdict(
            Degraded,
            "CronJob has not completed its last execution successfully",
        );
    }
    verdict(
        Healthy,
        "CronJob has completed its last execution successfully",
    )
}

// ---------------------------------------------------------------------------------------
// autoscaling, apiregistration

const HPA_WAITING: &str = "Waiting to Autoscale";
const HPA_CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// HorizontalPodAutoscaler: a failing AbleToScale/ScalingActive reason → Degraded with the
/// condition's message; all conditions healthy (AbleToScale or ScalingLimited true) →
/// Healthy; otherwise Progressing. `autoscaling/v1` carries its conditions in an annotation.
pub(crate) fn horizontal_pod_autoscaler(obj: &Value) -> HealthVerdict {
    let parsed;
    let conditions: &[Value] = if text(obj, &["apiVersion"]) == "autoscaling/v1" {
        let Some(annotation) = at(obj, &["metadata", "annotations", HPA_CONDITIONS_ANNOTATION])
            .and_then(Value::as_str)
        else {
            return verdict(Progressing, HPA_WAITING);
        };
        parsed = match serde_json::from_str::<Vec<Value>>(annotation) {
            Ok(parsed) => parsed,
            Err(err) => {
                return verdict(
                    Unknown,
                    format!("failed to convert conditions annotation to typed: {err}"),
                );
            }
        };
        if parsed.is_empty() {
            return verdict(Progressing, HPA_WAITING);
        }
        &parsed
    } else {
        items(obj, &["status", "conditions"])
    };

    const DEGRADED: [(&str, &str); 4] = [
        ("AbleToScale", "FailedGetScale"),
        ("AbleToScale", "FailedUpdateScale"),
        ("ScalingActive", "FailedGetResourceMetric"),
        ("ScalingActive", "InvalidSelector"),
    ];
    let mut healthy_messages = Vec::new();
    for c in conditions {
        let type_ = text(c, &["type"]);
        let reason = text(c, &["reason"]);
        if DEGRADED.contains(&(type_, reason)) {
            return verdict(Degraded, text(c, &["message"]));
        }
        if matches!(type_, "AbleToScale" | "ScalingLimited") && text(c, &["status"]) == "True" {
            healthy_messages.push(text(c, &["message"]));
        }
    }
    if healthy_messages.len() == conditions.len() {
        return verdict(Healthy, healthy_messages.join(","));
    }
    verdict(Progressing, HPA_WAITING)
}

/// APIService: the `Available` condition decides; `reason: message` is reported.
pub(crate) fn api_service(obj: &Value) -> HealthVerdict {
    if let Some(c) = condition(obj, "Available") {
        let message = format!("{}: {}", text(c, &["reason"]), text(c, &["message"]));
        let status = if text(c, &["status"]) == "True" {
            Healthy
        } else {
            Progressing
        };
        return verdict(status, message);
    }
    verdict(Progressing, "Waiting to be processed")
}
