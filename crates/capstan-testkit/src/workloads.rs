//! Standing in for the controllers a bare kube-apiserver lacks.

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};

/// Acts as the deployment controller for Deployment `name` (the test apiservers without a
/// simulated cluster run none): writes a rolled-out status for its current generation, one
/// replica available, so health checks see it Healthy.
pub async fn mark_deployment_available(api: &Api<Deployment>, name: &str) -> Result<()> {
    let generation = api.get(name).await?.metadata.generation.unwrap_or(1);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {
            "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1}})),
    )
    .await?;
    Ok(())
}
