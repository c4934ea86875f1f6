//! Child processes that cannot outlive the test process.
//!
//! Every component the testkit starts is a real binary. Three things make sure none of them
//! leaks, whatever happens to the test:
//! - `Drop` sends SIGTERM, waits a short grace period, then SIGKILLs and reaps;
//! - each child is started with `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it when the
//!   test process dies (even by SIGKILL). The signal fires when the *thread* that forked the
//!   child exits, so all children are forked from one spawner thread that lives as long as
//!   the process — not from a test's thread, which ends with the test;
//! - output goes to a log file in the component's work dir (no pipe that a dead reader could
//!   block), whose tail is put into every readiness error.

#![allow(unsafe_code)] // pre_exec + prctl: the only way to tie a child's life to ours.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// Time a component gets between SIGTERM and SIGKILL when it is dropped.
const STOP_GRACE: Duration = Duration::from_secs(5);

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The long-lived thread all children are forked from (see the module docs).
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        Mutex::new(tx)
    })
}

/// A component exited while it was expected to run. Waits end at once on this error
/// (see [`crate::wait::wait_until`]) instead of polling a dead process until the deadline.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProcessExited {
    message: String,
}

/// A running component process; stopped and reaped on drop.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ManagedProcess {
    /// Starts `program` with `args`, output appended to `log_path`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log_path: &Path) -> Result<Self> {
        let mut command = Command::new(program);
        command.args(args);
        Self::spawn_command(name, command, log_path)
    }

    /// Starts a prepared command (env, cwd already set), output appended to `log_path`.
    pub fn spawn_command(name: &str, mut command: Command, log_path: &Path) -> Result<Self> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening log file {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating log file handle")?;
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other(
                        "parent exited before the child started",
                    ));
                }
                Ok(())
            });
        }
        let program = command.get_program().to_string_lossy().into_owned();
        let (reply_tx, reply_rx) = mpsc::channel();
        spawner()
            .lock()
            .map_err(|_| anyhow!("testkit spawner lock poisoned"))?
            .send((command, reply_tx))
            .map_err(|_| anyhow!("testkit spawner thread is gone"))?;
        let child = reply_rx
            .recv()
            .map_err(|_| anyhow!("testkit spawner thread is gone"))?
            .with_context(|| format!("starting {name} ({program})"))?;
        tracing::debug!(component = name, pid = child.id(), log = %log_path.display(), "started");
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log_path: log_path.to_owned(),
        })
    }

    /// The component's name, as used in logs and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Operating-system process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where the component's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Fails if the process has exited, with its exit status and log tail.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(anyhow!("{} was stopped", self.name));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(ProcessExited {
                message: format!(
                    "{} exited ({status}); last lines of {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    log_tail(&self.log_path, 40)
                ),
            }
            .into()),
            Err(err) => Err(anyhow!("checking {}: {err}", self.name)),
        }
    }

    /// The last `lines` lines of the component's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// Sends a signal without waiting (e.g. SIGSTOP to simulate a paused member).
    pub fn signal(&self, signal: i32) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("{} was stopped", self.name))?;
        let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
        // SAFETY: kill(2) with a pid we own; no memory is shared.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    /// SIGTERM, a grace period, then SIGKILL; always reaps.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        tracing::debug!(component = %self.name, "stopped");
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a log file (reads at most the last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A binary of another workspace package, from the target directory this test runs from
/// (`target/<profile>/NAME`). `cargo test --workspace` builds every package's binaries before
/// any test runs; with `cargo test -p PACKAGE`, build it first (`cargo build -p capstand`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("the test's own path")?;
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("{} is not in a target directory", exe.display()))?;
    let binary = profile_dir.join(name);
    if !binary.is_file() {
        anyhow::bail!(
            "{} is not built: run `cargo build -p {name}` (or `cargo test --workspace`)",
            binary.display()
        );
    }
    Ok(binary)
}
