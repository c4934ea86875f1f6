//! Syncs on the simulated full cluster (controller-manager, scheduler, kwok): hooks really
//! run to completion and waves really wait for a rollout.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_engine::HealthAssessor;
use capstan_engine::resources::ApiResolver;
use capstan_engine::sync::{SyncRequest, SyncRunner, TaskStatus};
use capstan_model::OperationPhase;
use capstan_testkit::{init_test_logging, shared};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::json;

#[tokio::test]
async fn a_presync_job_runs_to_completion_and_waves_wait_for_the_rollout() -> Result<()> {
    init_test_logging();
    let (server, sim) = shared::simulated_cluster().await?;
    let client = server.client().await?;
    let ns = server.test_namespace("sync-sim").await?;
    let container = json!([{"name": "main", "image": "example.invalid/app:1"}]);
    let desired = vec![
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"generateName": "migrate-", "annotations": {
                "argocd.argoproj.io/hook": "PreSync",
                "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": container}}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": container}}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-web",
            "annotations": {"argocd.argoproj.io/sync-wave": "1"}}, "data": {"k": "v"}}),
    ];
    let runner = SyncRunner::new(
        ApiResolver::new(client.clone()),
        Arc::new(HealthAssessor::builtin_only()),
    );
    let request = SyncRequest {
        app: "sim".into(),
        namespace: ns.clone(),
        desired,
        ..SyncRequest::default()
    };
    let mut state = runner.plan(&request).await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        runner.run(&mut state, Duration::from_millis(250), |_| {}),
    )
    .await;
    if outcome.is_err() || state.phase != OperationPhase::Succeeded {
        panic!("sync did not succeed: {state:#?}\n{}", sim.diagnostics());
    }
    let hook = &state.tasks[0];
    assert!(
        hook.is_hook() && hook.key.name.starts_with("migrate-"),
        "{hook:?}"
    );
    assert_eq!(hook.status, TaskStatus::Succeeded);

    // The wave-1 config map was created only after the Deployment became available.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let status = deployments
        .get("web")
        .await?
        .status
        .context("has a status")?;
    assert_eq!(status.available_replicas, Some(2));
    let available_since = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"))
        .and_then(|c| c.last_transition_time)
        .context("the Deployment is Available")?;
    let config: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let created = config
        .get("after-web")
        .await?
        .metadata
        .creation_timestamp
        .context("has a creation time")?;
    assert!(
        created.0 >= available_since.0,
        "wave 1 created at {created:?}, before the rollout finished at {available_since:?}"
    );
    assert!(
        state.tasks[1].healthy,
        "the gate saw the Deployment healthy"
    );

    // HookSucceeded: the completed Job is gone (or going).
    let jobs: Api<Job> = Api::namespaced(client, &ns);
    let left: Vec<_> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}
