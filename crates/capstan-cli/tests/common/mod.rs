//! A running control plane for the CLI's tests: `capstand all-in-one` (the real binary) on a
//! simulated cluster (real apiserver, controller-manager, scheduler, kwok), with a Git
//! repository served over smart HTTP, and a way to run `capstan` against it as a user would,
//! with a home and config directory of its own.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use capstan_testkit::net::{free_port, port_open};
use capstan_testkit::process::{ManagedProcess, workspace_binary};
use capstan_testkit::wait::wait_until;
use capstan_testkit::{KubeApiServer, shared};
use tokio::io::AsyncWriteExt;

/// How long a step may take on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The `guestbook` ConfigMap with `color`.
pub fn guestbook(color: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guestbook\ndata:\n  color: {color}\n"
    )
}

/// A control plane and a user's machine.
pub struct ControlPlane {
    pub apiserver: &'static KubeApiServer,
    /// The namespace this test deploys to.
    pub ns: String,
    pub kubeconfig: PathBuf,
    pub port: u16,
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub repo: GitRepo,
    pub repo_url: String,
    _git: GitHttpServer,
    pub process: ManagedProcess,
}

/// What a `capstan` run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails with the run's output unless it exited `code`.
    pub fn expect(self, code: i32) -> Result<Run> {
        anyhow::ensure!(
            self.code == code,
            "exit {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// Fails unless it succeeded.
    pub fn ok(self) -> Result<Run> {
        self.expect(0)
    }
}

impl ControlPlane {
    /// Starts the all-in-one with `extra` flags against the shared apiserver; the repository
    /// holds `guestbook/` with the ConfigMap in blue.
    pub async fn start(prefix: &str, extra: &[&str]) -> Result<ControlPlane> {
        Self::start_on(shared::apiserver().await?, prefix, extra).await
    }

    /// [`ControlPlane::start`] on a simulated cluster (a controller-manager fills in service
    /// account tokens, `cluster add` needs one).
    pub async fn start_simulated(prefix: &str, extra: &[&str]) -> Result<ControlPlane> {
        let (apiserver, _) = shared::simulated_cluster().await?;
        Self::start_on(apiserver, prefix, extra).await
    }

    async fn start_on(
        apiserver: &'static KubeApiServer,
        prefix: &str,
        extra: &[&str],
    ) -> Result<ControlPlane> {
        let ns = apiserver.test_namespace(prefix).await?;
        let kubeconfig = apiserver.kubeconfig_file()?;
        let repo = GitRepo::init()?;
        repo.write_all(&[("guestbook/guestbook.yaml", guestbook("blue"))])?;
        repo.commit("blue")?;
        let git = GitHttpServer::start_temp(GitHttpOptions::default())?;
        let repo_url = git.url_for(&repo)?;
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let metrics = format!("127.0.0.1:{}", free_port()?);
        let mut command = std::process::Command::new(workspace_binary("capstand")?);
        command
            .args(["--log-format", "json", "all-in-one", "--listen", &listen])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(&data)
            .args(["--metrics-listen", &metrics])
            .arg("--helm")
            .arg(capstan_testkit::tools::helm()?)
            .arg("--kustomize")
            .arg(capstan_testkit::tools::kustomize()?)
            .args(extra)
            .current_dir(tmp.path())
            .env_remove("KUBECONFIG")
            .env("HOME", tmp.path());
        let mut process =
            ManagedProcess::spawn_command("capstand", command, &tmp.path().join("capstand.log"))?;
        let password_file = data.join("initial-admin-password");
        wait_until("the all-in-one's API", DEADLINE, || {
            let alive = process.check_running();
            let ready = port_open(port) && password_file.is_file();
            async move {
                alive?;
                Ok(ready.then_some(()))
            }
        })
        .await?;
        Ok(ControlPlane {
            apiserver,
            ns,
            kubeconfig,
            port,
            data,
            tmp,
            repo,
            repo_url,
            _git: git,
            process,
        })
    }

    /// `host:port` of the API.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The all-in-one's CA file.
    pub fn ca(&self) -> PathBuf {
        self.data.join("tls").join("ca.crt")
    }

    /// The generated admin password.
    pub fn admin_password(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.data.join("initial-admin-password"))?
                .trim()
                .to_owned(),
        )
    }

    /// The user's home (config in `home/.config/capstan/config`).
    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// A `capstan` command with this user's environment and nothing from the developer's.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_capstan"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("NO_COLOR", "1")
            .current_dir(self.tmp.path())
            .kill_on_drop(true);
        command
    }

    /// Runs `capstan args` with `stdin`.
    pub async fn run_with(&self, args: &[&str], stdin: &str) -> Result<Run> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting capstan")?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).await?;
        }
        let output = tokio::time::timeout(DEADLINE * 2, child.wait_with_output())
            .await
            .with_context(|| format!("capstan {args:?} did not finish"))??;
        Ok(Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs `capstan args` with empty stdin.
    pub async fn run(&self, args: &[&str]) -> Result<Run> {
        self.run_with(args, "").await
    }

    /// Logs in as admin (the context becomes current).
    pub async fn login_admin(&self) -> Result<Run> {
        let ca = self.ca();
        let password = self.admin_password()?;
        self.run_with(
            &[
                "login",
                &self.server(),
                "--server-ca",
                path(&ca),
                "--username",
                "admin",
                "--password-stdin",
            ],
            &format!("{password}\n"),
        )
        .await?
        .ok()
    }

    /// The capstand log's last lines (for failure messages).
    pub fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}
