//! A real Redis Cluster on loopback: `redis-server --cluster-enabled yes` nodes joined by
//! `redis-cli --cluster create`, as Capstan's shared manifest cache runs in production.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::net::{free_port, port_open};
use crate::process::ManagedProcess;
use crate::wait::wait_until;
use crate::workdir::WorkDir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One node of the cluster.
#[derive(Debug)]
pub struct RedisNode {
    process: ManagedProcess,
    port: u16,
}

impl RedisNode {
    /// Client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The node's process (kill it to test failover).
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// A running Redis Cluster.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisNode>,
    masters: usize,
    _dir: WorkDir,
}

impl RedisCluster {
    /// Three masters, no replicas.
    pub async fn start() -> Result<Self> {
        Self::start_with(3, 0).await
    }

    /// `masters` masters (at least 3, Redis's minimum) with `replicas` replicas each.
    pub async fn start_with(masters: usize, replicas: usize) -> Result<Self> {
        if masters < 3 {
            bail!("a Redis Cluster needs at least 3 masters, got {masters}");
        }
        let server = which("redis-server")?;
        let dir = WorkDir::new("redis-cluster")?;
        let mut nodes = Vec::new();
        for i in 0..masters * (1 + replicas) {
            let port = free_port()?;
            let cluster_port = free_port()?;
            let node_dir = dir.join(&format!("node-{i}"));
            std::fs::create_dir_all(&node_dir)?;
            let args: Vec<String> = [
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--cluster-port",
                &cluster_port.to_string(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--dir",
                &node_dir.display().to_string(),
                "--appendonly",
                "no",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let process = ManagedProcess::spawn(
                &format!("redis-{port}"),
                &server,
                &args,
                &node_dir.join("redis.log"),
            )?;
            nodes.push(RedisNode { process, port });
        }
        let mut cluster = Self {
            nodes,
            masters,
            _dir: dir,
        };
        cluster.create(replicas).await?;
        Ok(cluster)
    }

    async fn create(&mut self, replicas: usize) -> Result<()> {
        for node in &mut self.nodes {
            let port = node.port;
            let process = &mut node.process;
            wait_until(
                &format!("redis node {port} to listen"),
                READY_TIMEOUT,
                || {
                    let running = process.check_running();
                    async move {
                        running?;
                        Ok(port_open(port).then_some(()))
                    }
                },
            )
            .await?;
        }
        let mut create = Command::new(which("redis-cli")?);
        create.arg("--cluster").arg("create");
        for node in &self.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let output = create
            .output()
            .context("running redis-cli --cluster create")?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        wait_until(
            "every redis node to report cluster_state:ok",
            READY_TIMEOUT,
            || {
                let ports = ports.clone();
                async move {
                    for port in ports {
                        let info = cli(port, &["cluster", "info"])?;
                        if !info.contains("cluster_state:ok") {
                            return Ok(None);
                        }
                    }
                    Ok(Some(()))
                }
            },
        )
        .await?;
        tracing::info!(
            nodes = self.nodes.len(),
            masters = self.masters,
            "redis cluster ready"
        );
        Ok(())
    }

    /// Every node, masters first as created.
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// Mutable access to a node (to kill it in failover tests).
    pub fn node_mut(&mut self, index: usize) -> Option<&mut RedisNode> {
        self.nodes.get_mut(index)
    }

    /// Seed URLs for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::url).collect()
    }

    /// A cluster client over the seed URLs.
    pub fn client(&self) -> Result<redis::cluster::ClusterClient> {
        redis::cluster::ClusterClient::new(self.urls()).context("building redis cluster client")
    }

    /// Runs `redis-cli -p PORT ARGS...` against one node and returns its output.
    pub fn cli(&self, node: usize, args: &[&str]) -> Result<String> {
        let port = self
            .nodes
            .get(node)
            .ok_or_else(|| anyhow!("no redis node {node}"))?
            .port;
        cli(port, args)
    }
}

fn cli(port: u16, args: &[&str]) -> Result<String> {
    let output = Command::new(which("redis-cli")?)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .context("running redis-cli")?;
    if !output.status.success() {
        bail!(
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn which(program: &str) -> Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or_else(|| anyhow!("{program} not found on PATH; run `bash scripts/tools.sh` (installs Debian's redis-server)"))
}
