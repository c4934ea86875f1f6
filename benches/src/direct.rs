//! The baselines' side: a tool (`helm`, `kustomize`) or `git` run directly, timed.
//!
//! The command is started with [`std::process::Command`] on a blocking thread and the clock
//! covers exactly spawn → all of standard output read → exit, which is the least any caller
//! of the tool can pay. Tools get the same environment Capstan's tool runner gives them
//! (nothing but `PATH`, a private `HOME` and the build environment passed in).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

/// A tool run as Capstan's runner would start it, minus Capstan.
#[derive(Clone, Debug)]
pub(crate) struct ToolRun {
    /// The binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
    /// `HOME` (an empty private directory).
    pub home: PathBuf,
    /// Extra environment (the build environment).
    pub env: Vec<(String, String)>,
}

impl ToolRun {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs the tool once on a blocking thread; returns the time it took and its output.
    pub(crate) async fn run(&self) -> anyhow::Result<(Duration, Vec<u8>)> {
        let cmd = self.command();
        tokio::task::spawn_blocking(move || timed(cmd))
            .await
            .context("the tool thread panicked")?
    }
}

/// Runs `cmd` to completion (stdin closed, stdout collected, stderr kept for the error) and
/// times it; fails on a non-zero exit.
pub(crate) fn timed(mut cmd: Command) -> anyhow::Result<(Duration, Vec<u8>)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("starting {program}"))?;
    let took = started.elapsed();
    ensure!(
        out.status.success(),
        "{program} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok((took, out.stdout))
}

/// `git clone --bare` of `url` into `dir` (which must not exist), timed, with the bearer
/// token as a pre-emptive header (as Capstan's gix transport sends it). `base` supplies the
/// hermetic environment (no system or user configuration, no prompts); it is the command of
/// a testkit fixture, whose working directory is replaced.
pub(crate) async fn git_clone_bare(
    mut base: Command,
    url: &str,
    token: &str,
    dir: &Path,
) -> anyhow::Result<Duration> {
    let parent = dir.parent().context("the clone directory has a parent")?;
    base.current_dir(parent)
        .arg("-c")
        .arg(format!("http.extraHeader=Authorization: Bearer {token}"))
        .args(["clone", "--bare", "--quiet", url])
        .arg(dir);
    let (took, _) = tokio::task::spawn_blocking(move || timed(base))
        .await
        .context("the git thread panicked")??;
    Ok(took)
}
