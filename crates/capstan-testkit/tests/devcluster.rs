//! `capstan-devcluster` (what `scripts/up.sh` runs) brings up a usable cluster, writes a
//! kubeconfig kubectl can use, and cleans up on Ctrl-C.

#![allow(unsafe_code)] // kill(2) to send SIGINT like a terminal would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use capstan_testkit::wait::wait_until_blocking;

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn devcluster_serves_kubectl_and_cleans_up_on_interrupt() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_capstan-devcluster"))
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .args(["--nodes", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().context("stdout")?;
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        if line?.contains("Press Ctrl-C to stop") {
            ready = true;
            break;
        }
    }
    if !ready {
        bail!("capstan-devcluster exited before it was ready");
    }

    let kubectl = capstan_testkit::tools::kubernetes("kubectl")?;
    let output = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "nodes", "-o", "name"])
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "node/kwok-node-0"
    );

    let pid = libc::pid_t::try_from(child.0.id())?;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = wait_until_blocking(
        "capstan-devcluster to exit after SIGINT",
        Duration::from_secs(30),
        || Ok(child.0.try_wait()?),
    )?;
    assert!(status.success(), "exit status {status}");
    assert!(!kubeconfig.exists(), "kubeconfig left behind");
    Ok(())
}
