//! Helpers shared by capstand's integration tests.

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::Duration;

use capstan_testkit::net::{free_port, http_get};
use capstan_testkit::process::ManagedProcess;
use capstan_testkit::wait::wait_until;

/// A running `capstand repo-server` with the testkit's helm and kustomize.
pub struct RepoServerProcess {
    pub process: ManagedProcess,
    pub grpc_port: u16,
    pub metrics_port: u16,
}

impl RepoServerProcess {
    /// Starts it with its work directory and log in `tmp`, plus `extra` flags; waits until
    /// `/readyz` answers 200.
    pub async fn start(
        tmp: &tempfile::TempDir,
        extra: &[&std::ffi::OsStr],
    ) -> anyhow::Result<Self> {
        let (grpc_port, metrics_port) = (free_port()?, free_port()?);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstand"));
        cmd.args([
            "--log-format",
            "json",
            "repo-server",
            "--listen",
            &format!("127.0.0.1:{grpc_port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--work-dir",
        ])
        .arg(tmp.path().join("work"))
        .arg("--helm")
        .arg(capstan_testkit::tools::helm()?)
        .arg("--kustomize")
        .arg(capstan_testkit::tools::kustomize()?)
        .args(extra)
        .stdin(Stdio::null());
        let mut process =
            ManagedProcess::spawn_command("capstand", cmd, &tmp.path().join("repo-server.log"))?;
        wait_until("repo-server ready", Duration::from_secs(60), || {
            let ready = http_get(metrics_port, "/readyz");
            let alive = process.check_running();
            async move {
                alive?;
                match ready {
                    Ok((200, _)) => Ok(Some(())),
                    Ok((code, body)) => Err(anyhow::anyhow!("/readyz answered {code}: {body}")),
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
        Ok(Self {
            process,
            grpc_port,
            metrics_port,
        })
    }
}
