//! The sync tests' fixture: a namespace on the shared apiserver, a runner, and requests for
//! app `shop` whose live objects are read the way the cluster cache reports them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use capstan_engine::HealthAssessor;
use capstan_engine::resources::ApiResolver;
use capstan_engine::sync::{LiveObject, Progress, SyncRequest, SyncRunner, SyncState};
use capstan_model::OperationPhase;
use capstan_testkit::KubeApiServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// The label the fixture tracks the app's objects by.
pub const APP_LABEL: &str = "app.kubernetes.io/instance";
/// How long any sync or wait may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The app's objects in `ns` as the cluster cache would report them (tracked by label).
pub async fn live_objects(client: &kube::Client, ns: &str) -> Result<Vec<LiveObject>> {
    let mut out = Vec::new();
    for (group, version, kind, plural) in [
        ("", "v1", "ConfigMap", "configmaps"),
        ("apps", "v1", "Deployment", "deployments"),
        ("batch", "v1", "Job", "jobs"),
    ] {
        let ar = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: if group.is_empty() {
                version.into()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        for obj in api.list(&ListParams::default()).await? {
            let mut value = serde_json::to_value(&obj)?;
            // List items come without their type; the cache fills it in the same way.
            value["apiVersion"] = json!(ar.api_version);
            value["kind"] = json!(kind);
            let owner = value["metadata"]["labels"][APP_LABEL]
                .as_str()
                .map(str::to_owned);
            out.push(LiveObject {
                object: value,
                app: owner,
            });
        }
    }
    Ok(out)
}

pub struct Fixture {
    pub client: kube::Client,
    pub ns: String,
    pub runner: SyncRunner,
}

impl Fixture {
    pub async fn new(server: &KubeApiServer, prefix: &str) -> Result<Self> {
        let client = server.client().await?;
        let ns = server.test_namespace(prefix).await?;
        let runner = SyncRunner::new(
            ApiResolver::new(client.clone()),
            Arc::new(HealthAssessor::builtin_only()),
        );
        Ok(Self { client, ns, runner })
    }

    /// A request for app `shop` in the fixture's namespace, manifests stamped with the label.
    pub async fn request(&self, desired: Vec<Value>) -> Result<SyncRequest> {
        let desired = desired
            .into_iter()
            .map(|mut m| {
                m["metadata"]["labels"][APP_LABEL] = json!("shop");
                m
            })
            .collect();
        Ok(SyncRequest {
            app: "shop".into(),
            namespace: self.ns.clone(),
            desired,
            live: live_objects(&self.client, &self.ns).await?,
            ..SyncRequest::default()
        })
    }

    /// Plans and runs `request` to its end.
    pub async fn sync(&self, request: &SyncRequest) -> Result<SyncState> {
        let mut state = self.runner.plan(request).await;
        tokio::time::timeout(
            DEADLINE,
            self.runner
                .run(&mut state, Duration::from_millis(100), |_| {}),
        )
        .await
        .with_context(|| format!("sync did not finish in time: {state:?}"))?;
        Ok(state)
    }

    /// Syncs `desired` and requires success (the starting point of most tests).
    pub async fn sync_ok(&self, desired: Vec<Value>) -> Result<SyncState> {
        let state = self.sync(&self.request(desired).await?).await?;
        ensure!(
            state.phase == OperationPhase::Succeeded,
            "setup sync failed: {}",
            state.message
        );
        Ok(state)
    }

    /// One step of the runner, bounded.
    pub async fn step(&self, state: &mut SyncState) -> Result<Progress> {
        tokio::time::timeout(DEADLINE, self.runner.advance(state))
            .await
            .with_context(|| format!("a step did not return in time: {state:?}"))
    }

    /// One step that must have changed something.
    pub async fn advanced(&self, state: &mut SyncState) -> Result<()> {
        match self.step(state).await? {
            Progress::Advanced => Ok(()),
            other => bail!("expected a step to advance, got {other:?}: {state:?}"),
        }
    }

    /// Steps until the runner waits for the cluster; returns what it waits for.
    pub async fn step_until_waiting(&self, state: &mut SyncState) -> Result<String> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match self.step(state).await? {
                Progress::Waiting(why) => return Ok(why),
                Progress::Finished => bail!("finished early: {state:?}"),
                Progress::Advanced if tokio::time::Instant::now() > deadline => bail!("no wait"),
                Progress::Advanced => {}
            }
        }
    }

    pub fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Writes a ConfigMap with server-side apply as another field manager (kubectl, a
    /// controller, another tool).
    pub async fn apply_as(&self, manager: &str, obj: &Value) -> Result<ConfigMap> {
        let name = obj["metadata"]["name"]
            .as_str()
            .context("manifest has a name")?;
        Ok(self
            .config_maps()
            .patch(
                name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(obj),
            )
            .await?)
    }

    /// The live ConfigMap `name`, which must exist.
    pub async fn live(&self, name: &str) -> Result<ConfigMap> {
        self.config_maps()
            .get_opt(name)
            .await?
            .with_context(|| format!("config map {name} does not exist"))
    }

    /// What a prune leaves in the API server: gone, or marked for deletion (foreground and
    /// orphan deletions wait for a garbage collector these tests do not run).
    pub async fn pruned(&self, name: &str) -> Result<bool> {
        Ok(self
            .config_maps()
            .get_opt(name)
            .await?
            .is_none_or(|c| c.metadata.deletion_timestamp.is_some()))
    }

    /// Whether ConfigMap `name` exists and is not being deleted.
    pub async fn alive(&self, name: &str) -> Result<bool> {
        Ok(self
            .config_maps()
            .get_opt(name)
            .await?
            .is_some_and(|c| c.metadata.deletion_timestamp.is_none()))
    }

    /// The `resourceVersion` of each config map, as a number (creation order).
    pub async fn versions(&self) -> Result<std::collections::HashMap<String, u64>> {
        let mut out = std::collections::HashMap::new();
        for cm in self.config_maps().list(&ListParams::default()).await? {
            let name = cm.metadata.name.clone().unwrap_or_default();
            let rv = cm.metadata.resource_version.unwrap_or_default().parse()?;
            out.insert(name, rv);
        }
        Ok(out)
    }
}
