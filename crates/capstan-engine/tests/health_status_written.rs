//! States a simulated cluster cannot reach, written through the status subresource of a real
//! kube-apiserver. This test binary never starts controllers (it uses `shared::apiserver()`
//! only), so nothing overwrites the status we write.

use anyhow::{Context, Result};
use capstan_engine::{HealthAssessor, HealthConfig, HealthStatusCode, HealthVerdict};
use capstan_testkit::{init_test_logging, shared};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

async fn create<K>(api: &Api<K>, manifest: Value) -> Result<String>
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let obj: K = serde_json::from_value(manifest)?;
    let created = api.create(&PostParams::default(), &obj).await?;
    created
        .meta()
        .name
        .clone()
        .context("created object has a name")
}

async fn write_status<K>(api: &Api<K>, name: &str, status: Value) -> Result<()>
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .with_context(|| format!("writing the status of {name}"))?;
    Ok(())
}

async fn verdict<K>(assessor: &HealthAssessor, api: &Api<K>, name: &str) -> Result<HealthVerdict>
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let live = serde_json::to_value(api.get(name).await?)?;
    assessor.assess(&live).context("kind has a check")
}

fn pod_spec(app: &str, restart_policy: &str) -> Value {
    json!({"restartPolicy": restart_policy,
           "containers": [{"name": "main", "image": format!("example.invalid/{app}:1")}]})
}

#[tokio::test]
async fn stalled_deployment_is_degraded() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("health-stalled").await?;
    let api: Api<Deployment> = Api::namespaced(server.client().await?, &ns);
    let name = create(
        &api,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stalled"},
               "spec": {"replicas": 3, "progressDeadlineSeconds": 60,
                        "selector": {"matchLabels": {"app": "stalled"}},
                        "template": {"metadata": {"labels": {"app": "stalled"}}, "spec": pod_spec("stalled", "Always")}}}),
    )
    .await?;
    let assessor = HealthAssessor::builtin_only();

    // Nothing has observed it yet.
    assert_eq!(
        verdict(&assessor, &api, &name).await?,
        HealthVerdict::new(
            HealthStatusCode::Progressing,
            "Waiting for rollout to finish: observed deployment generation less then desired generation"
        )
    );

    write_status(
        &api,
        &name,
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2,
               "availableReplicas": 2, "unavailableReplicas": 1,
               "conditions": [
                 {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                  "message": "Deployment has minimum availability.",
                  "lastUpdateTime": "2026-11-26T10:00:00Z", "lastTransitionTime": "2026-11-26T10:00:00Z"},
                 {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                  "message": "ReplicaSet \"stalled-6b7f\" has timed out progressing.",
                  "lastUpdateTime": "2026-11-26T10:10:00Z", "lastTransitionTime": "2026-11-26T10:10:00Z"}]}),
    )
    .await?;
    assert_eq!(
        verdict(&assessor, &api, &name).await?,
        HealthVerdict::new(
            HealthStatusCode::Degraded,
            "Deployment \"stalled\" exceeded its progress deadline"
        )
    );
    Ok(())
}

#[tokio::test]
async fn failed_job_is_degraded_with_its_message() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("health-job").await?;
    let api: Api<Job> = Api::namespaced(server.client().await?, &ns);
    let name = create(
        &api,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
               "spec": {"backoffLimit": 0, "template": {"spec": pod_spec("migrate", "Never")}}}),
    )
    .await?;
    let assessor = HealthAssessor::builtin_only();
    assert_eq!(
        verdict(&assessor, &api, &name).await?.status,
        HealthStatusCode::Progressing
    );

    write_status(
        &api,
        &name,
        json!({"startTime": "2026-11-26T10:00:00Z", "failed": 1,
               "conditions": [
                 {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                  "message": "Job has reached the specified backoff limit",
                  "lastProbeTime": "2026-11-26T10:01:00Z", "lastTransitionTime": "2026-11-26T10:01:00Z"},
                 {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                  "message": "Job has reached the specified backoff limit",
                  "lastProbeTime": "2026-11-26T10:01:00Z", "lastTransitionTime": "2026-11-26T10:01:00Z"}]}),
    )
    .await?;
    assert_eq!(
        verdict(&assessor, &api, &name).await?,
        HealthVerdict::new(
            HealthStatusCode::Degraded,
            "Job has reached the specified backoff limit"
        )
    );
    Ok(())
}

#[tokio::test]
async fn load_balancer_service_waits_for_ingress() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("health-lb").await?;
    let api: Api<Service> = Api::namespaced(server.client().await?, &ns);
    let assessor = HealthAssessor::builtin_only();
    let cluster_ip = create(
        &api,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "internal"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await?;
    assert_eq!(
        verdict(&assessor, &api, &cluster_ip).await?.status,
        HealthStatusCode::Healthy
    );

    let lb = create(
        &api,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "public"},
               "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await?;
    assert_eq!(
        verdict(&assessor, &api, &lb).await?,
        HealthVerdict::new(HealthStatusCode::Progressing, "")
    );
    write_status(
        &api,
        &lb,
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}}),
    )
    .await?;
    assert_eq!(
        verdict(&assessor, &api, &lb).await?,
        HealthVerdict::new(HealthStatusCode::Healthy, "")
    );
    Ok(())
}

#[tokio::test]
async fn crash_looping_pod_is_degraded() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("health-pod").await?;
    let client = server.client().await?;
    // No controller-manager runs in this binary, so nothing creates the namespace's
    // `default` service account that Pod admission looks up.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    create(
        &accounts,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    )
    .await?;
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let name = create(
        &api,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
               "spec": pod_spec("crasher", "Always")}),
    )
    .await?;
    let assessor = HealthAssessor::builtin_only();
    assert_eq!(
        verdict(&assessor, &api, &name).await?.status,
        HealthStatusCode::Progressing,
        "a new pod is Pending"
    );

    let message = "back-off 40s restarting failed container=main pod=crasher_ns(uid)";
    write_status(
        &api,
        &name,
        json!({"phase": "Running", "startTime": "2026-11-26T10:00:00Z",
               "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                               "lastTransitionTime": "2026-11-26T10:00:00Z"}],
               "containerStatuses": [{
                   "name": "main", "image": "example.invalid/crasher:1", "imageID": "", "ready": false,
                   "restartCount": 3, "started": false,
                   "state": {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                   "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                "startedAt": "2026-11-26T10:00:30Z", "finishedAt": "2026-11-26T10:00:31Z"}}}]}),
    )
    .await?;
    assert_eq!(
        verdict(&assessor, &api, &name).await?,
        HealthVerdict::new(HealthStatusCode::Degraded, message)
    );
    Ok(())
}

#[tokio::test]
async fn custom_lua_check_on_a_live_object() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("health-lua").await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client().await?, &ns);
    let config = HealthConfig::from_yaml_str(
        r#"
resource.customizations.health.ConfigMap: |
  if obj.data ~= nil and obj.data.ready == "true" then
    return {status = "Healthy", message = "ready in " .. obj.metadata.namespace}
  end
  return {status = "Progressing", message = "not ready"}
"#,
    )?;
    let assessor = HealthAssessor::new(&config)?;
    let name = create(
        &api,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flag"}, "data": {"ready": "false"}}),
    )
    .await?;
    assert_eq!(
        verdict(&assessor, &api, &name).await?,
        HealthVerdict::new(HealthStatusCode::Progressing, "not ready")
    );
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"ready": "true"}})),
    )
    .await?;
    assert_eq!(
        verdict(&assessor, &api, &name).await?,
        HealthVerdict::new(HealthStatusCode::Healthy, format!("ready in {ns}"))
    );
    Ok(())
}
