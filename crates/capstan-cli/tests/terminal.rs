//! `capstan` on a terminal: run inside a pseudo-terminal (util-linux `script`), typed at
//! like a person would — the password prompt does not echo, progress shows while syncing,
//! and a deletion asks first.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{ControlPlane, path};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// A `capstan` run on a pseudo-terminal, its screen read as it comes.
struct Terminal {
    child: Child,
    input: ChildStdin,
    output: ChildStdout,
    screen: String,
}

impl Terminal {
    fn start(plane: &ControlPlane, args: &[&str]) -> Result<Terminal> {
        Self::start_line(plane, &command_line(args))
    }

    /// Runs a shell command line on the terminal.
    fn start_line(plane: &ControlPlane, line: &str) -> Result<Terminal> {
        // -e: exit with the command's code; -f: flush as it comes; /dev/null: no typescript.
        let mut command = tokio::process::Command::new("script");
        command
            .args(["-qefc", line, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", plane.home())
            .env("TERM", "dumb")
            .env("NO_COLOR", "1")
            .current_dir(plane.tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting script(1)")?;
        let input = child.stdin.take().context("stdin")?;
        let output = child.stdout.take().context("stdout")?;
        Ok(Terminal {
            child,
            input,
            output,
            screen: String::new(),
        })
    }

    /// Reads the screen until it shows `text` (within the deadline).
    async fn expect(&mut self, text: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + common::DEADLINE;
        let mut buffer = [0u8; 4096];
        while !self.screen.contains(text) {
            let read = tokio::time::timeout_at(deadline, self.output.read(&mut buffer))
                .await
                .with_context(|| format!("waiting for {text:?}; the screen:\n{}", self.screen))??;
            if read == 0 {
                anyhow::bail!(
                    "the terminal closed before {text:?}; the screen:\n{}",
                    self.screen
                );
            }
            self.screen
                .push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
        Ok(())
    }

    async fn type_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.input.write_all(bytes).await?;
        self.input.flush().await?;
        Ok(())
    }

    async fn type_line(&mut self, line: &str) -> Result<()> {
        self.input.write_all(format!("{line}\r").as_bytes()).await?;
        self.input.flush().await?;
        Ok(())
    }

    /// Waits for the end; the exit code and the whole screen.
    async fn finish(mut self) -> Result<(i32, String)> {
        let mut rest = String::new();
        tokio::time::timeout(common::DEADLINE * 2, self.output.read_to_string(&mut rest))
            .await
            .context("the command did not finish")??;
        self.screen.push_str(&rest);
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await??;
        Ok((status.code().unwrap_or(-1), self.screen))
    }
}

/// `capstan ARGS` as a shell command line, each argument quoted.
fn command_line(args: &[&str]) -> String {
    std::iter::once(env!("CARGO_BIN_EXE_capstan"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn prompts_without_echo_shows_progress_and_asks_before_deleting() -> Result<()> {
    let plane = ControlPlane::start("cli-tty", &[]).await?;
    let outcome = async {
        let ca = plane.ca();
        let password = plane.admin_password()?;

        // The password is asked for on the terminal and not echoed.
        let mut login = Terminal::start(
            &plane,
            &["login", &plane.server(), "--server-ca", path(&ca)],
        )?;
        login.expect("Username: ").await?;
        login.type_line("admin").await?;
        login.expect("Password for admin: ").await?;
        login.type_line(&password).await?;
        let (code, screen) = login.finish().await?;
        assert_eq!(code, 0, "{screen}");
        assert!(screen.contains("'admin' logged in"), "{screen}");
        assert!(
            !screen.contains(&password),
            "the password was echoed:\n{screen}"
        );

        // Ctrl-C at the password prompt: exit 130, and the terminal echoes again.
        let line = format!(
            // The shell shares the terminal's process group: it must outlive the Ctrl-C.
            "trap true INT; {}; echo exit=$?; stty -a",
            command_line(&[
                "login",
                &plane.server(),
                "--server-ca",
                path(&ca),
                "--username",
                "admin",
                "--name",
                "other"
            ])
        );
        let mut interrupted = Terminal::start_line(&plane, &line)?;
        interrupted.expect("Password for admin: ").await?;
        interrupted.type_bytes(b"\x03").await?;
        let (_, screen) = interrupted.finish().await?;
        assert!(screen.contains("exit=130"), "{screen}");
        assert!(
            screen.contains(" echo ") && !screen.contains(" -echo "),
            "echo is still off:\n{screen}"
        );

        // Progress, resource by resource, while syncing.
        plane
            .run(&[
                "app",
                "create",
                "guestbook",
                "--repo",
                &plane.repo_url,
                "--path",
                "guestbook",
                "--dest-server",
                "https://kubernetes.default.svc",
                "--dest-namespace",
                &plane.ns,
            ])
            .await?
            .ok()?;
        let sync = Terminal::start(&plane, &["app", "sync", "guestbook", "--timeout", "120"])?;
        let (code, screen) = sync.finish().await?;
        assert_eq!(code, 0, "{screen}");
        assert!(screen.contains("guestbook: operation "), "{screen}");
        assert!(
            screen.contains(&format!("  ConfigMap/{}/guestbook  Synced", plane.ns)),
            "{screen}"
        );
        // Without a terminal the same command prints no progress.
        let quiet = plane
            .run(&["app", "sync", "guestbook", "--timeout", "120"])
            .await?
            .ok()?;
        assert!(
            !quiet.stderr.contains("guestbook: operation"),
            "{}",
            quiet.stderr
        );

        // Deleting asks; "n" keeps the app, "y" deletes it.
        let mut keep = Terminal::start(&plane, &["app", "delete", "guestbook"])?;
        keep.expect("Delete application 'guestbook' and its resources? [y/n] ")
            .await?;
        keep.type_line("n").await?;
        let (code, screen) = keep.finish().await?;
        assert_eq!(code, 0, "{screen}");
        plane.run(&["app", "get", "guestbook"]).await?.ok()?;
        let mut delete = Terminal::start(&plane, &["app", "delete", "guestbook", "--wait"])?;
        delete.expect("[y/n] ").await?;
        delete.type_line("y").await?;
        let (code, screen) = delete.finish().await?;
        assert_eq!(code, 0, "{screen}");
        plane.run(&["app", "get", "guestbook"]).await?.expect(5)?;
        Ok(())
    }
    .await;
    if outcome.is_err() {
        eprintln!("capstand log:\n{}", plane.log_tail());
    }
    outcome
}
