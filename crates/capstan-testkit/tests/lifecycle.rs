//! No leaked processes: components stop on drop, and die with the test process even when it
//! is SIGKILLed (no destructors run then).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_testkit::wait::wait_until_blocking;
use capstan_testkit::{Etcd, init_test_logging};

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes: it only waits to be reaped by its parent.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.split_whitespace()
                .nth(2)
                .is_none_or(|state| state != "Z")
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn dropping_a_component_stops_its_process_and_removes_its_dir() -> Result<()> {
    init_test_logging();
    let mut etcd = Etcd::start().await?;
    let pid = etcd.process().pid().context("etcd has a pid")?;
    let log = etcd.process().log_path().to_owned();
    let dir = log.parent().context("log has a dir")?.to_owned();
    assert!(alive(pid));
    drop(etcd);
    assert!(!alive(pid), "etcd {pid} still alive after drop");
    assert!(!dir.exists(), "{} not removed", dir.display());
    Ok(())
}

/// Runs only as the child of `components_die_with_a_killed_test_process`.
#[tokio::test]
#[ignore = "helper process for components_die_with_a_killed_test_process"]
async fn child_holds_etcd_until_killed() -> Result<()> {
    let mut etcd = Etcd::start().await?;
    println!("ETCD_PID={}", etcd.process().pid().context("pid")?);
    println!(
        "ETCD_DIR={}",
        etcd.process().log_path().parent().context("dir")?.display()
    );
    // Wait to be killed by the parent test.
    std::future::pending::<()>().await;
    Ok(())
}

#[test]
fn components_die_with_a_killed_test_process() -> Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_holds_etcd_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut pid = None;
    let mut dir = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        // The harness prints `test NAME ... ` before the test's first line of output.
        if let Some((_, p)) = line.split_once("ETCD_PID=") {
            pid = Some(p.trim().parse::<u32>()?);
        }
        if let Some((_, d)) = line.split_once("ETCD_DIR=") {
            dir = Some(d.trim().to_owned());
        }
        if pid.is_some() && dir.is_some() {
            break;
        }
    }
    let pid = pid.context("child never reported etcd's pid")?;
    assert!(alive(pid));
    child.kill()?; // SIGKILL: no destructor in the child runs.
    child.wait()?;
    wait_until_blocking(
        "etcd to die with its parent",
        Duration::from_secs(10),
        || Ok((!alive(pid)).then_some(())),
    )?;

    // The orphaned work dir is swept by the next process that uses the testkit (the sweep
    // runs once per process, so start a fresh one).
    let dir = dir.context("child never reported its dir")?;
    assert!(
        Path::new(&dir).exists(),
        "the killed child could not have removed {dir}"
    );
    let sweeper = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_sweeps_stale_dirs",
            "--ignored",
            "--test-threads=1",
        ])
        .output()?;
    assert!(
        sweeper.status.success(),
        "{}",
        String::from_utf8_lossy(&sweeper.stdout)
    );
    assert!(!Path::new(&dir).exists(), "stale dir {dir} was not swept");
    Ok(())
}

/// Runs only as a child of `components_die_with_a_killed_test_process`.
#[test]
#[ignore = "helper process for components_die_with_a_killed_test_process"]
fn child_sweeps_stale_dirs() -> Result<()> {
    let _dir = capstan_testkit::workdir::WorkDir::new("sweeper")?;
    Ok(())
}
