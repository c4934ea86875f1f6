//! A real `etcd` on loopback: the backing store of the test kube-apiservers and of Capstan's
//! own etcd store backend (`capstan_store::etcd`).

use std::path::PathBuf;
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
    /// What it was started with, to start it again on the same ports and data ([`Etcd::restart`]).
    binary: PathBuf,
    args: Vec<String>,
    dir: WorkDir,
}

impl Etcd {
    /// Starts etcd and waits until `/health` reports healthy.
    pub async fn start() -> Result<Self> {
        Self::start_with_args(&[]).await
    }

    /// Like [`Etcd::start`], with extra etcd flags (e.g. `--watch-progress-notify-interval=1s`).
    pub async fn start_with_args(extra_args: &[&str]) -> Result<Self> {
        let mut last_err = None;
        // A port picked by `free_port` can be taken before etcd binds it: retry with new ports.
        for _ in 0..3 {
            match Self::start_once(extra_args).await {
                Ok(etcd) => return Ok(etcd),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("etcd did not start")))
    }

    async fn start_once(extra_args: &[&str]) -> Result<Self> {
        let binary = tools::etcd()?;
        let dir = WorkDir::new("etcd")?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut args = vec![
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
            // Capstan's etcd store accepts values of 1.5 MiB and requests of 2 MiB
            // (`capstan_store::limits`); etcd's default limit (1.5 MiB) counts the key and
            // framing too. docs/store.md asks operators for the same setting.
            "--max-request-bytes=2621440".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        let mut process = ManagedProcess::spawn("etcd", &binary, &args, &dir.join("etcd.log"))?;
        wait_healthy(&mut process, client_port).await?;
        tracing::info!(endpoint = %client_url, "etcd ready");
        Ok(Self {
            process,
            client_port,
            binary,
            args,
            dir,
        })
    }

    /// Stops etcd (SIGTERM, then SIGKILL after a grace period) and starts it again on the same
    /// ports with the same data, waiting until it is healthy: what a client sees when its etcd
    /// restarts (broken connections and watch streams; data and revisions kept).
    pub async fn restart(&mut self) -> Result<()> {
        self.process.stop();
        let process =
            ManagedProcess::spawn("etcd", &self.binary, &self.args, &self.dir.join("etcd.log"))?;
        self.process = process;
        wait_healthy(&mut self.process, self.client_port).await?;
        tracing::info!(endpoint = %self.endpoint(), "etcd restarted");
        Ok(())
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

async fn wait_healthy(process: &mut ManagedProcess, client_port: u16) -> Result<()> {
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
    .with_context(|| format!("etcd log tail:\n{}", process.log_tail(30)))
}
