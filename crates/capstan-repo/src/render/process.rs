//! Running external tools (`helm`, `kustomize`, plugins) under limits.
//!
//! A tool process gets an empty environment except `PATH`, a private `HOME` and what the
//! caller passes; it runs in its own process group, so a timeout, an output flood or a
//! cancelled request (the future dropped) kills the tool and everything it started. At most
//! [`ToolLimits::max_concurrent`] tools run at once per [`ToolRunner`]; the rest wait.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;

use super::RenderError;

/// Limits on external tool runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolLimits {
    /// Longest a single run may take.
    pub timeout: Duration,
    /// Most bytes a run may write to standard output.
    pub max_output_bytes: u64,
    /// Most runs at once; more wait for a slot.
    pub max_concurrent: usize,
}

impl Default for ToolLimits {
    /// 90 s (Argo CD's default exec timeout), 100 MiB of output, 2 × the CPUs at once.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(90),
            max_output_bytes: 100 << 20,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
        }
    }
}

/// Counters of tool runs since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolStats {
    /// Runs started.
    pub started: u64,
    /// Runs that exited unsuccessfully or could not start.
    pub failed: u64,
    /// Runs killed for taking too long.
    pub timed_out: u64,
    /// Runs killed for writing too much.
    pub output_exceeded: u64,
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    output_exceeded: AtomicU64,
}

/// Runs tools within [`ToolLimits`]; cheap to clone (clones share the limit on concurrency).
#[derive(Clone, Debug)]
pub struct ToolRunner {
    limits: ToolLimits,
    permits: Arc<Semaphore>,
    home: PathBuf,
    counters: Arc<Counters>,
}

/// One run of a tool.
#[derive(Debug)]
pub struct Invocation<'a> {
    /// The tool's name in messages (`helm`).
    pub tool: &'a str,
    /// The program to start.
    pub program: &'a Path,
    /// The sub-command in messages (`template`); arguments are never shown, as they may
    /// hold credentials.
    pub command: &'a str,
    /// All arguments.
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: &'a Path,
    /// Environment variables besides `PATH` and `HOME`.
    pub env: Vec<(String, String)>,
}

/// The most of a failed tool's standard error kept for the error message.
const STDERR_TAIL: usize = 4096;

impl ToolRunner {
    /// A runner whose tools see `home` as `HOME` (Helm keeps its repository cache there).
    pub fn new(home: PathBuf, limits: ToolLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
            home,
            counters: Arc::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ToolLimits {
        &self.limits
    }

    /// The `HOME` tools see.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Counters of runs so far.
    pub fn stats(&self) -> ToolStats {
        let c = &self.counters;
        ToolStats {
            started: c.started.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            output_exceeded: c.output_exceeded.load(Ordering::Relaxed),
        }
    }

    /// Runs `inv` and returns its standard output; see the module docs for the limits.
    pub async fn run(&self, inv: Invocation<'_>) -> Result<Vec<u8>, RenderError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RenderError::io("tool runner")(std::io::Error::other("closed")))?;
        let c = &self.counters;
        c.started.fetch_add(1, Ordering::Relaxed);
        let result = self.run_now(&inv).await;
        match &result {
            Ok(_) => {}
            Err(RenderError::ToolTimedOut { .. }) => {
                c.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(RenderError::OutputTooLarge { .. }) => {
                c.output_exceeded.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Err(e) = &result {
            tracing::debug!(tool = inv.tool, command = inv.command, error = %e, "tool run failed");
        }
        result
    }

    async fn run_now(&self, inv: &Invocation<'_>) -> Result<Vec<u8>, RenderError> {
        let mut cmd = tokio::process::Command::new(inv.program);
        cmd.args(&inv.args)
            .current_dir(inv.cwd)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| RenderError::ToolMissing {
            tool: inv.tool.to_owned(),
            program: inv.program.display().to_string(),
            source,
        })?;
        // Dropping the guard (on every return and on cancellation) kills the whole group, so
        // nothing a tool started outlives its request.
        let _group = GroupKiller(child.id());
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let limit = self.limits.max_output_bytes;
        let work = async {
            let (out, err) = tokio::join!(read_limited(stdout, limit), read_tail(stderr));
            let status = child.wait().await;
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.limits.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                return Err(RenderError::ToolTimedOut {
                    tool: inv.tool.to_owned(),
                    command: inv.command.to_owned(),
                    timeout: self.limits.timeout,
                });
            }
        };
        let io = |what: &str| RenderError::io(format!("reading the {what} of {}", inv.tool));
        let Some(out) = out.map_err(io("output"))? else {
            return Err(RenderError::OutputTooLarge {
                tool: inv.tool.to_owned(),
                command: inv.command.to_owned(),
                limit,
            });
        };
        let err = err.map_err(io("error output"))?;
        let status = status.map_err(io("exit status"))?;
        if !status.success() {
            return Err(RenderError::ToolFailed {
                tool: inv.tool.to_owned(),
                command: inv.command.to_owned(),
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&err).trim().to_owned(),
            });
        }
        Ok(out)
    }
}

/// Reads all of `r`, or returns `None` as soon as it passes `limit` bytes.
async fn read_limited(
    mut r: impl AsyncRead + Unpin,
    limit: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(out));
        }
        if out.len() as u64 + n as u64 > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Reads all of `r`, keeping only the last [`STDERR_TAIL`] bytes (a flood of error output
/// costs no memory).
async fn read_tail(mut r: impl AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut tail = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(tail);
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
}

/// Kills a process group when dropped.
struct GroupKiller(Option<u32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.and_then(|id| i32::try_from(id).ok()) {
            kill_group(pgid);
        }
    }
}

#[allow(unsafe_code)]
fn kill_group(pgid: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. A group that has
    // already gone yields ESRCH, which is fine to ignore.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(limits: ToolLimits) -> (ToolRunner, tempfile::TempDir) {
        let home = tempfile::tempdir().expect("tempdir");
        (ToolRunner::new(home.path().to_owned(), limits), home)
    }

    fn sh(script: &str) -> Invocation<'static> {
        Invocation {
            tool: "sh",
            program: Path::new("/bin/sh"),
            command: "-c",
            args: vec!["-c".into(), script.to_owned().into()],
            cwd: Path::new("/"),
            env: vec![("GREETING".to_owned(), "hello".to_owned())],
        }
    }

    #[tokio::test]
    async fn output_environment_and_failure() {
        let (r, home) = runner(ToolLimits::default());
        let out = r
            .run(sh(
                "echo \"$GREETING $HOME\"; echo ${SECRET_FROM_PARENT:-unset}",
            ))
            .await
            .expect("runs");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            format!("hello {}\nunset\n", home.path().display()),
            "only PATH, HOME and the given variables are passed"
        );
        let err = r
            .run(sh("echo partial; echo 'no such chart' >&2; exit 3"))
            .await
            .expect_err("fails");
        let RenderError::ToolFailed { stderr, status, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(stderr, "no such chart");
        assert!(status.contains('3'), "{status}");
        assert_eq!(r.stats().failed, 1);
    }

    #[tokio::test]
    async fn a_hanging_tool_is_killed_with_its_children() {
        let (r, home) = runner(ToolLimits {
            timeout: Duration::from_millis(300),
            ..ToolLimits::default()
        });
        let marker = home.path().join("child-still-running");
        let pid_file = home.path().join("child.pid");
        // The child keeps stdout open and would touch the marker after the timeout.
        let script = format!(
            "(sleep 2; touch {}) & echo $! > {}; sleep 60",
            marker.display(),
            pid_file.display()
        );
        let err = r.run(sh(&script)).await.expect_err("times out");
        assert!(matches!(err, RenderError::ToolTimedOut { .. }), "{err}");
        assert_eq!(r.stats().timed_out, 1);
        // The background child was in the tool's process group and was killed with it: it is
        // gone (or a zombie awaiting its reaper) before it could write the marker.
        let pid = std::fs::read_to_string(&pid_file).expect("pid written");
        let stat = format!("/proc/{}/stat", pid.trim());
        capstan_testkit::wait::wait_until(
            "the tool's child to die",
            Duration::from_secs(5),
            || {
                let state = std::fs::read_to_string(&stat).ok();
                async move {
                    // Field 3 of /proc/PID/stat is the state; Z is a dead, unreaped process.
                    let dead = state.is_none_or(|s| {
                        s.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('Z'))
                    });
                    Ok(dead.then_some(()))
                }
            },
        )
        .await
        .expect("child killed");
        assert!(!marker.exists(), "a child of the tool survived the timeout");
    }

    #[tokio::test]
    async fn flooding_output_is_stopped_at_the_limit() {
        let (r, _home) = runner(ToolLimits {
            max_output_bytes: 1 << 20,
            ..ToolLimits::default()
        });
        let err = r
            .run(sh("yes 'apiVersion: v1' | head -c 100000000"))
            .await
            .expect_err("too much output");
        assert!(
            matches!(err, RenderError::OutputTooLarge { limit, .. } if limit == 1 << 20),
            "{err}"
        );
        // A flood on stderr is drained, keeping only the tail.
        let err = r
            .run(sh(
                "yes 'error line' | head -c 10000000 >&2; echo last-words >&2; exit 1",
            ))
            .await
            .expect_err("fails");
        let RenderError::ToolFailed { stderr, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            stderr.len() <= STDERR_TAIL && stderr.ends_with("last-words"),
            "{}",
            stderr.len()
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let (r, _home) = runner(ToolLimits::default());
        let err = r
            .run(Invocation {
                program: Path::new("/nonexistent/helm"),
                ..sh("")
            })
            .await
            .expect_err("missing");
        assert!(matches!(err, RenderError::ToolMissing { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/helm"), "{err}");
    }
}
