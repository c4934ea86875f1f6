//! A simulated full cluster: a real apiserver plus the real `kube-controller-manager` and
//! `kube-scheduler`, and `kwok` standing in for kubelets (fake nodes, simulated pod
//! lifecycle). A Deployment really rolls out and becomes Available, without containers.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};

use crate::apiserver::KubeApiServer;
use crate::process::ManagedProcess;
use crate::tools;
use crate::wait::wait_until;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The annotation kwok selects the nodes it manages by.
const KWOK_NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// Controller-manager, scheduler and kwok running against an apiserver.
#[derive(Debug)]
pub struct SimulatedCluster {
    // Stopped in reverse start order when dropped.
    kwok: ManagedProcess,
    scheduler: ManagedProcess,
    controller_manager: ManagedProcess,
    nodes: Vec<String>,
}

impl SimulatedCluster {
    /// Starts the components against `apiserver` and registers `node_count` fake nodes,
    /// returning once every node is Ready and the `default` service account exists.
    pub async fn start(apiserver: &KubeApiServer, node_count: usize) -> Result<Self> {
        let dir = apiserver.dir();
        let kcm_kubeconfig = apiserver.kubeconfig_file_for("system:kube-controller-manager")?;
        let controller_manager = ManagedProcess::spawn(
            "kube-controller-manager",
            &tools::kubernetes("kube-controller-manager")?,
            &[
                format!("--kubeconfig={}", kcm_kubeconfig.display()),
                format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
                format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
                "--leader-elect=false".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                "--secure-port=0".to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    apiserver.service_account_key_path().display()
                ),
                format!("--root-ca-file={}", apiserver.ca_path().display()),
                "--use-service-account-credentials=true".to_owned(),
                "--controllers=*".to_owned(),
                "--concurrent-deployment-syncs=10".to_owned(),
                "--concurrent-replicaset-syncs=10".to_owned(),
                "--v=1".to_owned(),
            ],
            &dir.join("kube-controller-manager.log"),
        )?;
        let scheduler_kubeconfig = apiserver.kubeconfig_file_for("system:kube-scheduler")?;
        let scheduler = ManagedProcess::spawn(
            "kube-scheduler",
            &tools::kubernetes("kube-scheduler")?,
            &[
                format!("--kubeconfig={}", scheduler_kubeconfig.display()),
                format!(
                    "--authentication-kubeconfig={}",
                    scheduler_kubeconfig.display()
                ),
                format!(
                    "--authorization-kubeconfig={}",
                    scheduler_kubeconfig.display()
                ),
                "--leader-elect=false".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                "--secure-port=0".to_owned(),
                "--v=1".to_owned(),
            ],
            &dir.join("kube-scheduler.log"),
        )?;
        let kwok_kubeconfig = apiserver.kubeconfig_file_for("kwok")?;
        let kwok = ManagedProcess::spawn(
            "kwok",
            &tools::kwok()?,
            &[
                format!("--kubeconfig={}", kwok_kubeconfig.display()),
                format!("--config={}", tools::kwok_stages()?.display()),
                "--manage-all-nodes=false".to_owned(),
                format!(
                    "--manage-nodes-with-annotation-selector={}={}",
                    KWOK_NODE_ANNOTATION.0, KWOK_NODE_ANNOTATION.1
                ),
                "--node-lease-duration-seconds=40".to_owned(),
                "--cidr=10.244.0.1/16".to_owned(),
                "--node-ip=10.0.0.1".to_owned(),
            ],
            &dir.join("kwok.log"),
        )?;
        let mut cluster = Self {
            kwok,
            scheduler,
            controller_manager,
            nodes: Vec::new(),
        };

        let client = apiserver.client().await?;
        let nodes: Api<Node> = Api::all(client.clone());
        for i in 0..node_count {
            let name = format!("kwok-node-{i}");
            nodes
                .create(&PostParams::default(), &fake_node(&name)?)
                .await
                .with_context(|| format!("creating fake node {name}"))?;
            cluster.nodes.push(name);
        }
        cluster.wait_ready(&client).await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self, client: &kube::Client) -> Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        let names = self.nodes.clone();
        let result = wait_until("fake nodes to become Ready", READY_TIMEOUT, || {
            let running = self.check_running();
            let nodes = nodes.clone();
            let names = names.clone();
            async move {
                running?;
                for name in &names {
                    let node = nodes.get(name).await?;
                    let ready = node
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if !ready {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            }
        })
        .await;
        result.with_context(|| self.diagnostics())?;
        // Pods cannot be created in a namespace before the controller-manager made its
        // `default` service account; wait for the one in `default` as a sign it runs.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), "default");
        let result = wait_until("the default service account", READY_TIMEOUT, || {
            let running = self.check_running();
            let accounts = accounts.clone();
            async move {
                running?;
                Ok(accounts.get_opt("default").await?.map(|_| ()))
            }
        })
        .await;
        result.with_context(|| self.diagnostics())?;
        tracing::info!(nodes = self.nodes.len(), "simulated cluster ready");
        Ok(())
    }

    /// Fails if any component exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.controller_manager.check_running()?;
        self.scheduler.check_running()?;
        self.kwok.check_running()
    }

    /// Log tails of every component, for failure messages.
    pub fn diagnostics(&self) -> String {
        [&self.controller_manager, &self.scheduler, &self.kwok]
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.name(), p.log_tail(20)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Names of the fake nodes.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }
}

fn fake_node(name: &str) -> Result<Node> {
    let node = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_NODE_ANNOTATION.0: KWOK_NODE_ANNOTATION.1,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": { "cpu": "32", "memory": "256Gi", "pods": "110" },
            "capacity": { "cpu": "32", "memory": "256Gi", "pods": "110" },
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    });
    serde_json::from_value(node).context("building fake node")
}
