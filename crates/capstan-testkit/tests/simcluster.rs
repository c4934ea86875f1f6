//! The simulated cluster rolls a Deployment out for real: controller-manager makes the
//! ReplicaSet and Pods, the scheduler binds them to kwok nodes, kwok runs them.

use std::time::Duration;

use anyhow::Result;
use capstan_testkit::{init_test_logging, shared, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};

#[tokio::test]
async fn deployment_becomes_available_on_fake_nodes() -> Result<()> {
    init_test_logging();
    let (server, sim) = shared::simulated_cluster().await?;
    let ns = server.test_namespace("rollout").await?;
    let client = server.client().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "guestbook-ui" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "guestbook-ui" } },
            "template": {
                "metadata": { "labels": { "app": "guestbook-ui" } },
                "spec": { "containers": [{ "name": "ui", "image": "example.invalid/guestbook-ui:0.2" }] }
            }
        }
    }))?;
    deployments
        .patch(
            "guestbook-ui",
            &PatchParams::apply("capstan-test").force(),
            &Patch::Apply(&deployment),
        )
        .await?;

    let result = wait_until(
        "the Deployment to become Available with 2 ready replicas",
        Duration::from_secs(90),
        || {
            let deployments = deployments.clone();
            async move {
                let status = deployments
                    .get("guestbook-ui")
                    .await?
                    .status
                    .unwrap_or_default();
                let available = status.conditions.unwrap_or_default().iter().any(|c| {
                    c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")
                });
                Ok((available && status.ready_replicas == Some(2)).then_some(()))
            }
        },
    )
    .await;
    if let Err(err) = result {
        panic!("{err:#}\n{}", sim.diagnostics());
    }

    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pods = pods
        .list(&ListParams::default().labels("app=guestbook-ui"))
        .await?;
    assert_eq!(pods.items.len(), 2);
    for pod in pods.items {
        let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
        assert!(
            sim.nodes().contains(&node),
            "pod scheduled to unknown node {node:?}"
        );
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }
    Ok(())
}
