//! A real `etcd` on loopback: the backing store of the test kube-apiservers, and (later) of
//! Capstan's own etcd store backend.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::net::{free_port, http_get};
use crate::process::ManagedProcess;
use crate::tools;
use crate::wait::wait_until;
use crate::workdir::WorkDir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A single-member etcd with its data in a temporary directory.
#[derive(Debug)]
pub struct Etcd {
    // Field order matters: the process stops before its data dir is removed.
    process: ManagedProcess,
    client_port: u16,
    _dir: WorkDir,
}

impl Etcd {
    /// Starts etcd and waits until `/health` reports healthy.
    pub async fn start() -> Result<Self> {
        let mut last_err = None;
        // A port picked by `free_port` can be taken before etcd binds it: retry with new ports.
        for _ in 0..3 {
            match Self::start_once().await {
                Ok(etcd) => return Ok(etcd),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("etcd did not start")))
    }

    async fn start_once() -> Result<Self> {
        let binary = tools::etcd()?;
        let dir = WorkDir::new("etcd")?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let args = vec![
            "--name=testkit".to_owned(),
            format!("--data-dir={}", dir.join("data").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testkit={peer_url}"),
            "--initial-cluster-state=new".to_owned(),
            // Tests never need durability across a machine crash; fsync dominates on slow disks.
            "--unsafe-no-fsync=true".to_owned(),
            "--quota-backend-bytes=4294967296".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let mut process = ManagedProcess::spawn("etcd", &binary, &args, &dir.join("etcd.log"))?;
        wait_until("etcd to become healthy", READY_TIMEOUT, || {
            let running = process.check_running();
            async move {
                running?;
                match http_get(client_port, "/health") {
                    Ok((200, body)) if body.contains("\"health\":\"true\"") => Ok(Some(())),
                    Ok((status, body)) => Err(anyhow!("/health answered {status}: {body}")),
                    Err(err) => Err(err),
                }
            }
        })
        .await
        .with_context(|| format!("etcd log tail:\n{}", process.log_tail(30)))?;
        tracing::info!(endpoint = %client_url, "etcd ready");
        Ok(Self {
            process,
            client_port,
            _dir: dir,
        })
    }

    /// The client URL, e.g. `http://127.0.0.1:2379`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// The etcd process (to read its log or signal it in fault tests).
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}
