use super::expect;
use crate::health::HealthStatusCode::{Degraded, Healthy, Progressing, Suspended, Unknown};
use crate::health::{HealthAssessor, HealthStatusCode};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Deployment

fn deployment(generation: i64, spec_extra: Value, status: Value) -> Value {
    let mut spec = json!({
        "replicas": 3,
        "selector": {"matchLabels": {"app": "guestbook"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "progressDeadlineSeconds": 600,
        "template": {"metadata": {"labels": {"app": "guestbook"}}, "spec": {"containers": [{"name": "ui", "image": "guestbook:0.2"}]}}
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "guestbook-ui", "namespace": "default", "generation": generation},
        "spec": spec,
        "status": status
    })
}

fn progressing_condition(reason: &str, status: &str) -> Value {
    json!({
        "type": "Progressing", "status": status, "reason": reason,
        "message": "ReplicaSet \"guestbook-ui-5d8f\" has successfully progressed.",
        "lastUpdateTime": "2026-11-26T10:00:00Z", "lastTransitionTime": "2026-11-26T10:00:00Z"
    })
}

#[test]
fn deployment_healthy() {
    let d = deployment(
        2,
        json!({}),
        json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                progressing_condition("NewReplicaSetAvailable", "True")
            ]
        }),
    );
    expect(&d, Healthy, "");
}

#[test]
fn deployment_observed_generation_lagging() {
    let d = deployment(
        3,
        json!({}),
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    expect(
        &d,
        Progressing,
        "Waiting for rollout to finish: observed deployment generation less then desired generation",
    );
}

#[test]
fn deployment_rollout_in_progress() {
    let d = deployment(
        2,
        json!({}),
        json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3,
               "conditions": [progressing_condition("ReplicaSetUpdated", "True")]}),
    );
    expect(
        &d,
        Progressing,
        "Waiting for rollout to finish: 1 out of 3 new replicas have been updated...",
    );

    let d = deployment(
        2,
        json!({}),
        json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    expect(
        &d,
        Progressing,
        "Waiting for rollout to finish: 1 old replicas are pending termination...",
    );

    let d = deployment(
        2,
        json!({}),
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
    );
    expect(
        &d,
        Progressing,
        "Waiting for rollout to finish: 2 of 3 updated replicas are available...",
    );
}

#[test]
fn deployment_paused_is_suspended() {
    let d = deployment(
        5,
        json!({"paused": true}),
        json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 1}),
    );
    expect(&d, Suspended, "Deployment is paused");
}

#[test]
fn deployment_progress_deadline_exceeded() {
    let d = deployment(
        2,
        json!({}),
        json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
               "unavailableReplicas": 1,
               "conditions": [progressing_condition("ProgressDeadlineExceeded", "False")]}),
    );
    expect(
        &d,
        Degraded,
        "Deployment \"guestbook-ui\" exceeded its progress deadline",
    );
}

// ---------------------------------------------------------------------------------------
// StatefulSet

fn stateful_set(strategy: Value, status: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default", "generation": 2},
        "spec": {"replicas": 3, "serviceName": "db", "updateStrategy": strategy,
                 "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:1"}]}}},
        "status": status
    })
}

#[test]
fn stateful_set_generation_not_observed() {
    let s = stateful_set(
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3}),
    );
    expect(
        &s,
        Progressing,
        "Waiting for statefulset spec update to be observed...",
    );
    let s = stateful_set(json!({"type": "RollingUpdate"}), json!({"replicas": 0}));
    expect(
        &s,
        Progressing,
        "Waiting for statefulset spec update to be observed...",
    );
}

#[test]
fn stateful_set_waiting_for_ready_pods() {
    let s = stateful_set(
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 1, "currentReplicas": 3, "updatedReplicas": 3}),
    );
    expect(&s, Progressing, "Waiting for 2 pods to be ready...");
}

#[test]
fn stateful_set_partitioned_rollout() {
    // The apiserver defaults `rollingUpdate.partition: 0`, so live StatefulSets take this path.
    let s = stateful_set(
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
        json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "currentReplicas": 2,
               "updatedReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2"}),
    );
    expect(
        &s,
        Progressing,
        "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
    );
    let s = stateful_set(
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
        json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "currentReplicas": 1,
               "updatedReplicas": 2, "currentRevision": "db-1", "updateRevision": "db-2"}),
    );
    expect(
        &s,
        Healthy,
        "partitioned roll out complete: 2 new pods have been updated...",
    );
}

#[test]
fn stateful_set_on_delete() {
    let s = stateful_set(
        json!({"type": "OnDelete"}),
        json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1,
               "currentRevision": "db-1", "updateRevision": "db-2"}),
    );
    expect(&s, Healthy, "statefulset has 3 ready pods (1 updated)");
}

#[test]
fn stateful_set_rolling_update_without_partition() {
    let s = stateful_set(
        json!({"type": "RollingUpdate"}),
        json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "currentReplicas": 2,
               "updatedReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2"}),
    );
    expect(
        &s,
        Progressing,
        "waiting for statefulset rolling update to complete 1 pods at revision db-2...",
    );
    let s = stateful_set(
        json!({"type": "RollingUpdate"}),
        json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
               "updatedReplicas": 3, "currentRevision": "db-2", "updateRevision": "db-2"}),
    );
    expect(
        &s,
        Healthy,
        "statefulset rolling update complete 3 pods at revision db-2...",
    );
}

// ---------------------------------------------------------------------------------------
// DaemonSet, ReplicaSet

fn daemon_set(generation: i64, strategy: &str, status: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "fluentd", "namespace": "kube-system", "generation": generation},
        "spec": {"updateStrategy": {"type": strategy},
                 "selector": {"matchLabels": {"app": "fluentd"}},
                 "template": {"metadata": {"labels": {"app": "fluentd"}}, "spec": {"containers": [{"name": "f", "image": "fluentd:1"}]}}},
        "status": status
    })
}

#[test]
fn daemon_set_states() {
    let healthy = json!({"observedGeneration": 2, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
                         "updatedNumberScheduled": 4, "numberAvailable": 4, "numberReady": 4, "numberMisscheduled": 0});
    expect(&daemon_set(2, "RollingUpdate", healthy), Healthy, "");
    expect(
        &daemon_set(3, "RollingUpdate", json!({"observedGeneration": 2})),
        Progressing,
        "Waiting for rollout to finish: observed daemon set generation less then desired generation",
    );
    expect(
        &daemon_set(
            2,
            "RollingUpdate",
            json!({"observedGeneration": 2, "desiredNumberScheduled": 4, "updatedNumberScheduled": 1, "numberAvailable": 4}),
        ),
        Progressing,
        "Waiting for daemon set \"fluentd\" rollout to finish: 1 out of 4 new pods have been updated...",
    );
    expect(
        &daemon_set(
            2,
            "RollingUpdate",
            json!({"observedGeneration": 2, "desiredNumberScheduled": 4, "updatedNumberScheduled": 4, "numberAvailable": 3}),
        ),
        Progressing,
        "Waiting for daemon set \"fluentd\" rollout to finish: 3 of 4 updated pods are available...",
    );
    expect(
        &daemon_set(
            2,
            "OnDelete",
            json!({"observedGeneration": 2, "desiredNumberScheduled": 4, "updatedNumberScheduled": 1, "numberAvailable": 4}),
        ),
        Healthy,
        "daemon set 1 out of 4 new pods have been updated",
    );
}

#[test]
fn replica_set_states() {
    let rs = |generation: i64, status: Value| {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "guestbook-ui-5d8f", "generation": generation},
               "spec": {"replicas": 2}, "status": status})
    };
    expect(
        &rs(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "availableReplicas": 2, "readyReplicas": 2}),
        ),
        Healthy,
        "",
    );
    expect(
        &rs(2, json!({"observedGeneration": 1})),
        Progressing,
        "Waiting for rollout to finish: observed replica set generation less then desired generation",
    );
    expect(
        &rs(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "availableReplicas": 1}),
        ),
        Progressing,
        "Waiting for rollout to finish: 1 out of 2 new replicas are available...",
    );
    expect(
        &rs(
            1,
            json!({"observedGeneration": 1, "replicas": 0, "conditions": [{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "pods \"guestbook-ui-5d8f-\" is forbidden: exceeded quota: compute-resources"}]}),
        ),
        Degraded,
        "pods \"guestbook-ui-5d8f-\" is forbidden: exceeded quota: compute-resources",
    );
}

// ---------------------------------------------------------------------------------------
// Pod

fn pod(restart_policy: &str, status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "guestbook-ui-5d8f-x7k2p", "namespace": "default"},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "ui", "image": "guestbook:0.2"}]},
        "status": status
    })
}

#[test]
fn pod_pending_and_container_creating() {
    expect(
        &pod(
            "Always",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}),
        ),
        Progressing,
        "",
    );
    expect(
        &pod(
            "Always",
            json!({"phase": "Pending", "containerStatuses": [{"name": "ui", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        ),
        Progressing,
        "",
    );
}

#[test]
fn pod_crash_loop_back_off_is_degraded() {
    let p = pod(
        "Always",
        json!({"phase": "Running",
               "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
               "containerStatuses": [{"name": "ui", "ready": false, "restartCount": 5,
                   "state": {"waiting": {"reason": "CrashLoopBackOff",
                       "message": "back-off 2m40s restarting failed container=ui pod=guestbook-ui-5d8f-x7k2p_default(1234)"}},
                   "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
    );
    expect(
        &p,
        Degraded,
        "back-off 2m40s restarting failed container=ui pod=guestbook-ui-5d8f-x7k2p_default(1234)",
    );
    let p = pod(
        "Always",
        json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"a\""}}},
            {"name": "b", "state": {"waiting": {"reason": "ErrImagePull", "message": "rpc error"}}}]}),
    );
    expect(&p, Degraded, "Back-off pulling image \"a\", rpc error");
    // Hook-like pods are not judged on waiting errors (they would fail the hook early).
    let p = pod(
        "Never",
        json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}]}),
    );
    expect(&p, Progressing, "");
}

#[test]
fn pod_running() {
    let ready = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "ui", "ready": true, "state": {"running": {"startedAt": "2026-11-26T10:00:00Z"}}}]});
    expect(&pod("Always", ready.clone()), Healthy, "");
    // A finite pod (restart policy Never/OnFailure) is Progressing until it finishes ...
    expect(&pod("Never", ready.clone()), Progressing, "");
    expect(&pod("OnFailure", ready.clone()), Progressing, "");
    // ... unless annotated to be judged like a long-running pod.
    let mut annotated = pod("Never", ready);
    annotated["metadata"]["annotations"] =
        json!({"argocd.argoproj.io/ignore-restart-policy": "true"});
    expect(&annotated, Healthy, "");

    let not_ready = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                           "containerStatuses": [{"name": "ui", "ready": false, "state": {"running": {}}}]});
    expect(&pod("Always", not_ready), Progressing, "");
    let restarted = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                           "containerStatuses": [{"name": "ui", "ready": false, "state": {"running": {}},
                               "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]});
    expect(&pod("Always", restarted), Degraded, "");
}

#[test]
fn pod_succeeded_and_failed() {
    expect(&pod("Never", json!({"phase": "Succeeded"})), Healthy, "");
    expect(
        &pod(
            "Never",
            json!({"phase": "Failed", "message": "Pod was active on the node longer than the specified deadline",
                              "reason": "DeadlineExceeded"}),
        ),
        Degraded,
        "Pod was active on the node longer than the specified deadline",
    );
    expect(
        &pod(
            "Never",
            json!({"phase": "Failed", "containerStatuses": [{"name": "main",
            "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}),
        ),
        Degraded,
        "container \"main\" failed with exit code 2",
    );
    expect(
        &pod(
            "Never",
            json!({"phase": "Failed", "containerStatuses": [{"name": "main",
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        ),
        Degraded,
        "OOMKilled",
    );
    expect(
        &pod(
            "Never",
            json!({"phase": "Failed", "initContainerStatuses": [{"name": "init",
            "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "migration failed"}}}]}),
        ),
        Degraded,
        "migration failed",
    );
    expect(&pod("Never", json!({"phase": "Failed"})), Degraded, "");
    expect(&pod("Always", json!({"phase": "Unknown"})), Unknown, "");
}

// ---------------------------------------------------------------------------------------
// Service, Ingress, PVC, Namespace

#[test]
fn services() {
    let svc = |type_: &str, status: Value| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"type": type_, "ports": [{"port": 80}]}, "status": status})
    };
    expect(&svc("ClusterIP", json!({"loadBalancer": {}})), Healthy, "");
    expect(
        &svc("LoadBalancer", json!({"loadBalancer": {}})),
        Progressing,
        "",
    );
    expect(
        &svc(
            "LoadBalancer",
            json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}}),
        ),
        Healthy,
        "",
    );
}

#[test]
fn ingresses() {
    for api_version in ["networking.k8s.io/v1", "extensions/v1beta1"] {
        let ing = |status: Value| {
            json!({"apiVersion": api_version, "kind": "Ingress", "metadata": {"name": "web"},
                   "spec": {"rules": [{"host": "web.example.com"}]}, "status": status})
        };
        expect(&ing(json!({"loadBalancer": {}})), Progressing, "");
        expect(
            &ing(json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}})),
            Healthy,
            "",
        );
    }
}

#[test]
fn persistent_volume_claims() {
    let pvc = |phase: Option<&str>| {
        let mut obj = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        if let Some(phase) = phase {
            obj["status"] = json!({"phase": phase});
        }
        obj
    };
    expect(&pvc(Some("Pending")), Progressing, "");
    expect(&pvc(Some("Bound")), Healthy, "");
    expect(&pvc(Some("Lost")), Degraded, "");
    expect(&pvc(None), Unknown, "");
}

#[test]
fn namespaces() {
    let ns = |phase: &str| {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": phase}})
    };
    expect(&ns("Active"), Healthy, "");
    expect(&ns("Terminating"), Progressing, "Namespace is terminating");
    // A namespace being deleted has a deletionTimestamp: the generic rule answers first.
    let mut deleting = ns("Terminating");
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-26T10:00:00Z");
    expect(&deleting, Progressing, "Pending deletion");
}

// ---------------------------------------------------------------------------------------
// Job, CronJob

fn job(spec_extra: Value, status: Value) -> Value {
    let mut spec = json!({"backoffLimit": 6, "completions": 1, "parallelism": 1,
                          "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
           "spec": spec, "status": status})
}

#[test]
fn job_states() {
    expect(
        &job(
            json!({}),
            json!({"active": 1, "ready": 1, "startTime": "2026-11-26T10:00:00Z"}),
        ),
        Progressing,
        "",
    );
    expect(
        &job(
            json!({}),
            json!({"succeeded": 1, "completionTime": "2026-11-26T10:01:00Z", "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}]}),
        ),
        Healthy,
        "Reached expected number of succeeded pods",
    );
    expect(
        &job(
            json!({}),
            json!({"failed": 7, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        ),
        Degraded,
        "Job has reached the specified backoff limit",
    );
    expect(
        &job(
            json!({"suspend": true}),
            json!({"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": "Job suspended"}]}),
        ),
        Suspended,
        "Job suspended",
    );
    // Resumed: the Suspended condition stays, with status False. Argo CD reports Healthy
    // here; the Job is running again, so Capstan reports Progressing.
    expect(
        &job(
            json!({"suspend": false}),
            json!({"active": 1, "conditions": [{"type": "Suspended", "status": "False", "reason": "JobResumed", "message": "Job resumed"}]}),
        ),
        Progressing,
        "",
    );
}

fn cron_job(suspend: bool, status: Option<Value>) -> Value {
    let mut obj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup"},
                         "spec": {"schedule": "*/5 * * * *", "suspend": suspend,
                                  "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "b", "image": "b"}]}}}}}});
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

#[test]
fn cron_job_states() {
    expect(
        &cron_job(true, Some(json!({}))),
        Suspended,
        "CronJob is Suspended",
    );
    expect(&cron_job(false, None), Progressing, "Waiting for CronJob");
    expect(
        &cron_job(false, Some(json!({}))),
        Healthy,
        "CronJob has not been scheduled yet",
    );
    expect(
        &cron_job(
            false,
            Some(
                json!({"lastScheduleTime": "2026-11-26T10:00:00Z", "active": [{"kind": "Job", "name": "backup-1"}]}),
            ),
        ),
        Healthy,
        "The CronJob never completed successfully. It may not be healthy",
    );
    expect(
        &cron_job(
            false,
            Some(
                json!({"lastScheduleTime": "2026-11-26T10:05:00Z", "lastSuccessfulTime": "2026-11-26T10:01:00Z",
                                     "active": [{"kind": "Job", "name": "backup-2"}]}),
            ),
        ),
        Healthy,
        "The job is running. Its last execution may not have been successful",
    );
    expect(
        &cron_job(
            false,
            Some(
                json!({"lastScheduleTime": "2026-11-26T10:05:00Z", "lastSuccessfulTime": "2026-11-26T10:01:00Z"}),
            ),
        ),
        Degraded,
        "CronJob has not completed its last execution successfully",
    );
    expect(
        &cron_job(
            false,
            Some(
                json!({"lastScheduleTime": "2026-11-26T10:05:00Z", "lastSuccessfulTime": "2026-11-26T10:05:40Z"}),
            ),
        ),
        Healthy,
        "CronJob has completed its last execution successfully",
    );
}

// ---------------------------------------------------------------------------------------
// HPA, APIService

fn hpa_v2(conditions: Value) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
           "spec": {"minReplicas": 1, "maxReplicas": 5, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
           "status": {"currentReplicas": 1, "desiredReplicas": 1, "conditions": conditions}})
}

#[test]
fn hpa_conditions() {
    expect(
        &hpa_v2(json!([
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "recommended size matches current size"},
            {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"},
            {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange", "message": "the desired count is within the acceptable range"}
        ])),
        Progressing,
        "Waiting to Autoscale",
    );
    expect(
        &hpa_v2(json!([
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "recommended size matches current size"},
            {"type": "ScalingLimited", "status": "True", "reason": "TooFewReplicas", "message": "the desired replica count is less than the minimum replica count"}
        ])),
        Healthy,
        "recommended size matches current size,the desired replica count is less than the minimum replica count",
    );
    expect(
        &hpa_v2(json!([
            {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "the HPA controller was able to get the target's current scale"},
            {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": "the HPA was unable to compute the replica count: failed to get cpu utilization"}
        ])),
        Degraded,
        "the HPA was unable to compute the replica count: failed to get cpu utilization",
    );
    expect(
        &hpa_v2(json!([
            {"type": "AbleToScale", "status": "False", "reason": "FailedGetScale", "message": "deployments/scale.apps \"web\" not found"}
        ])),
        Degraded,
        "deployments/scale.apps \"web\" not found",
    );
}

#[test]
fn hpa_v1_annotation_conditions() {
    let hpa = |annotation: Option<&str>| {
        let mut obj = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
                             "spec": {"maxReplicas": 5}, "status": {"currentReplicas": 1, "desiredReplicas": 1}});
        if let Some(a) = annotation {
            obj["metadata"]["annotations"] =
                json!({"autoscaling.alpha.kubernetes.io/conditions": a});
        }
        obj
    };
    expect(&hpa(None), Progressing, "Waiting to Autoscale");
    expect(&hpa(Some("[]")), Progressing, "Waiting to Autoscale");
    expect(
        &hpa(Some(
            r#"[{"type":"AbleToScale","status":"True","reason":"SucceededRescale","message":"the HPA controller was able to update the target scale to 2"}]"#,
        )),
        Healthy,
        "the HPA controller was able to update the target scale to 2",
    );
    let (status, message) = super::builtin(&hpa(Some("{not json")));
    assert_eq!(status, Unknown);
    assert!(
        message.starts_with("failed to convert conditions annotation to typed"),
        "{message}"
    );
}

#[test]
fn api_service_states() {
    let api = |conditions: Value| {
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1beta1.metrics.k8s.io"},
               "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "service": {"name": "metrics-server", "namespace": "kube-system"}},
               "status": {"conditions": conditions}})
    };
    expect(
        &api(
            json!([{"type": "Available", "status": "True", "reason": "Passed", "message": "all checks passed"}]),
        ),
        Healthy,
        "Passed: all checks passed",
    );
    expect(
        &api(
            json!([{"type": "Available", "status": "False", "reason": "MissingEndpoints", "message": "endpoints for service/metrics-server in \"kube-system\" have no addresses"}]),
        ),
        Progressing,
        "MissingEndpoints: endpoints for service/metrics-server in \"kube-system\" have no addresses",
    );
    expect(&api(json!([])), Progressing, "Waiting to be processed");
}

// ---------------------------------------------------------------------------------------
// Generic rules

#[test]
fn pending_deletion_unless_hook_finalizer() {
    let mut d = deployment(
        1,
        json!({}),
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    d["metadata"]["deletionTimestamp"] = json!("2026-11-26T10:00:00Z");
    d["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    expect(&d, Progressing, "Pending deletion");
    d["metadata"]["finalizers"] = json!(["argocd.argoproj.io/hook-finalizer"]);
    expect(&d, Healthy, "");
}

#[test]
fn kinds_without_a_check_have_no_health() {
    let assessor = HealthAssessor::builtin_only();
    for (api_version, kind) in [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("apps/v1", "ControllerRevision"),
        ("example.com/v1", "Widget"),
    ] {
        let obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}});
        assert_eq!(assessor.assess(&obj), None, "{kind}");
    }
    // The group matters, not only the kind.
    let obj =
        json!({"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "x"}});
    assert_eq!(assessor.assess(&obj), None);
    assert!(assessor.has_check("apps", "Deployment"));
    assert!(!assessor.has_check("", "ConfigMap"));
}

#[test]
fn garbage_objects_never_panic() {
    let assessor = HealthAssessor::builtin_only();
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ReplicaSet"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "Namespace"),
        ("networking.k8s.io/v1", "Ingress"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("autoscaling/v1", "HorizontalPodAutoscaler"),
        ("apiregistration.k8s.io/v1", "APIService"),
    ] {
        for body in [
            json!({}),
            json!({"spec": 5, "status": "x", "metadata": []}),
            json!({"status": {"conditions": "nope", "containerStatuses": [1, null, {"state": 3}]}}),
        ] {
            let mut obj = body;
            obj["apiVersion"] = json!(api_version);
            obj["kind"] = json!(kind);
            let verdict = assessor.assess(&obj);
            assert!(verdict.is_some(), "{kind}");
        }
    }
    let _: HealthStatusCode = Healthy;
}

fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("True".to_owned()),
            Just("Running".to_owned()),
            Just("RollingUpdate".to_owned()),
            Just("LoadBalancer".to_owned()),
            Just("Available".to_owned()),
            Just("Failed".to_owned()),
            "[a-zA-Z]{0,8}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("status".to_owned()),
                    Just("spec".to_owned()),
                    Just("metadata".to_owned()),
                    Just("conditions".to_owned()),
                    Just("type".to_owned()),
                    Just("replicas".to_owned()),
                    Just("phase".to_owned()),
                    Just("containerStatuses".to_owned()),
                    Just("state".to_owned()),
                    Just("waiting".to_owned()),
                    Just("updateStrategy".to_owned()),
                    Just("loadBalancer".to_owned()),
                    Just("ingress".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    /// Whatever a cluster (or a broken object) holds, every built-in check answers.
    #[test]
    fn builtin_checks_are_total(body in arbitrary_json(), which in 0usize..14) {
        const KINDS: [(&str, &str); 14] = [
            ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
            ("apps/v1", "ReplicaSet"), ("v1", "Pod"), ("v1", "Service"),
            ("v1", "PersistentVolumeClaim"), ("v1", "Namespace"), ("networking.k8s.io/v1", "Ingress"),
            ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("autoscaling/v1", "HorizontalPodAutoscaler"), ("apiregistration.k8s.io/v1", "APIService"),
        ];
        let (api_version, kind) = KINDS[which];
        let mut obj = match body {
            Value::Object(map) => Value::Object(map),
            other => json!({"status": other}),
        };
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        proptest::prop_assert!(HealthAssessor::builtin_only().assess(&obj).is_some());
    }
}
