//! Workloads really roll out on the simulated cluster (controller-manager, scheduler, kwok
//! nodes) and our built-in checks follow them to Healthy.

use std::time::Duration;

use anyhow::{Context, Result};
use capstan_engine::{HealthAssessor, HealthStatusCode, HealthVerdict};
use capstan_testkit::{init_test_logging, shared, wait_until};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);

/// Applies `manifest`, then polls the live object until our check says Healthy.
async fn apply_and_wait_healthy<K>(api: &Api<K>, manifest: Value) -> Result<HealthVerdict>
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
    <K as Resource>::DynamicType: Default,
{
    let name = manifest["metadata"]["name"]
        .as_str()
        .context("manifest has a name")?
        .to_owned();
    let obj: K = serde_json::from_value(manifest)?;
    api.patch(
        &name,
        &PatchParams::apply("capstan-test").force(),
        &Patch::Apply(&obj),
    )
    .await?;
    let assessor = HealthAssessor::builtin_only();
    let last = std::sync::Mutex::new(None::<HealthVerdict>);
    let result = wait_until(
        &format!("{name} to become Healthy per Capstan's check"),
        ROLLOUT_TIMEOUT,
        || {
            let api = api.clone();
            let name = name.clone();
            let assessor = &assessor;
            let last = &last;
            async move {
                let live = serde_json::to_value(api.get(&name).await?)?;
                let verdict = assessor.assess(&live).context("kind has a check")?;
                let healthy = verdict.status == HealthStatusCode::Healthy;
                *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(verdict.clone());
                Ok(healthy.then_some(verdict))
            }
        },
    )
    .await;
    result.with_context(|| {
        format!(
            "last verdict: {:?}",
            last.lock().unwrap_or_else(|e| e.into_inner())
        )
    })
}

fn pod_template(app: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": format!("example.invalid/{app}:1")}]}
    })
}

#[tokio::test]
async fn workloads_roll_out_to_healthy() -> Result<()> {
    init_test_logging();
    let (server, sim) = shared::simulated_cluster().await?;
    let ns = server.test_namespace("health-rollout").await?;
    let client = server.client().await?;

    let outcome: Result<()> = async {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let verdict = apply_and_wait_healthy(
            &deployments,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web")}
            }),
        )
        .await?;
        assert_eq!(verdict.message, "");

        let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let verdict = apply_and_wait_healthy(
            &stateful_sets,
            json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                         "template": pod_template("db")}
            }),
        )
        .await?;
        // The apiserver defaults `rollingUpdate.partition: 0`, so Argo CD's partitioned path
        // reports the finished rollout.
        assert_eq!(
            verdict.message,
            "partitioned roll out complete: 2 new pods have been updated..."
        );

        let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
        let verdict = apply_and_wait_healthy(
            &daemon_sets,
            json!({
                "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": pod_template("agent")}
            }),
        )
        .await?;
        assert_eq!(verdict.message, "");
        let live = daemon_sets.get("agent").await?;
        let desired = live.status.map(|s| s.desired_number_scheduled).unwrap_or(0);
        assert_eq!(desired as usize, sim.nodes().len(), "one pod per fake node");

        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let mut template = pod_template("batch");
        template["spec"]["restartPolicy"] = json!("Never");
        let verdict = apply_and_wait_healthy(
            &jobs,
            json!({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
                "spec": {"backoffLimit": 0, "template": template}
            }),
        )
        .await?;
        assert_eq!(verdict.status, HealthStatusCode::Healthy);
        Ok(())
    }
    .await;
    if let Err(err) = outcome {
        panic!("{err:#}\n{}", sim.diagnostics());
    }
    Ok(())
}
