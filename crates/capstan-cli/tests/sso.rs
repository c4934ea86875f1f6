//! `capstan login --sso` against a real OpenID Connect provider: the CLI sends the browser to
//! the provider, takes the code on its loopback listener, trades it (PKCE) for an ID token
//! and that for a Capstan session; the user's groups reach RBAC.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_testkit::oidc::{Browser, OidcClient, OidcProvider};
use common::{ControlPlane, path};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn signs_in_through_the_provider_and_gets_the_groups_roles() -> Result<()> {
    let sso_port = capstan_testkit::net::free_port()?;
    let callback = format!("http://localhost:{sso_port}/auth/callback");
    let provider = OidcProvider::start(
        &[
            OidcClient {
                id: "capstan".into(),
                secret: "sso-secret".into(),
                redirect_uris: vec!["https://127.0.0.1/auth/callback".into()],
            },
            // The CLI: a public client (no secret) sent back to loopback.
            OidcClient {
                id: "capstan-cli".into(),
                secret: String::new(),
                redirect_uris: vec![callback.clone()],
            },
        ],
        &[("alice", &["platform-team"])],
        &[],
        Duration::from_secs(600),
    )
    .await?;
    let policy = tempfile::NamedTempFile::new()?;
    std::fs::write(policy.path(), "g, platform-team, role:admin\n")?;
    let plane = ControlPlane::start(
        "cli-sso",
        &[
            "--oidc-issuer",
            provider.issuer(),
            "--oidc-client-secret",
            "sso-secret",
            "--oidc-cli-client-id",
            "capstan-cli",
            "--rbac-policy",
            path(policy.path()),
        ],
    )
    .await?;
    let outcome = async {
        let ca = plane.ca();
        let port = sso_port.to_string();
        let mut login = plane
            .command(&[
                "login",
                &plane.server(),
                "--server-ca",
                path(&ca),
                "--sso",
                "--sso-port",
                &port,
            ])
            // No real browser here: the test is the browser.
            .env("BROWSER", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stderr = BufReader::new(login.stderr.take().context("stderr")?).lines();
        let url = tokio::time::timeout(common::DEADLINE, async {
            while let Some(line) = stderr.next_line().await? {
                if let Some(url) = line.trim().strip_prefix(provider.issuer()) {
                    return Ok(format!("{}{url}", provider.issuer()));
                }
            }
            anyhow::bail!("capstan printed no sign-in URL")
        })
        .await??;
        assert!(url.contains("code_challenge_method=S256"), "{url}");
        assert!(url.contains("client_id=capstan-cli"), "{url}");

        let mut browser = Browser::new()?;
        let back = browser.sign_in(&url, "alice", &callback).await?;
        // The browser arrives at the CLI's listener.
        let page = reqwest::get(&back).await?.text().await?;
        assert!(page.contains("Signed in"), "{page}");
        let output = tokio::time::timeout(common::DEADLINE, login.wait_with_output()).await??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.contains("logged in by SSO"), "{stdout}");

        // The session is Capstan's; the group's role applies.
        let info = plane
            .run(&["account", "can-i", "create", "applications", "default/x"])
            .await?
            .ok()?;
        assert_eq!(info.stdout.trim(), "yes");
        plane.run(&["app", "list"]).await?.ok()?;

        // A replayed callback (the same code again) does not log anyone in.
        let mut replay = plane
            .command(&[
                "login",
                &plane.server(),
                "--server-ca",
                path(&ca),
                "--sso",
                "--sso-port",
                &port,
            ])
            .env("BROWSER", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stderr = BufReader::new(replay.stderr.take().context("stderr")?).lines();
        tokio::time::timeout(common::DEADLINE, async {
            while let Some(line) = stderr.next_line().await? {
                if line.trim().starts_with(provider.issuer()) {
                    return Ok(());
                }
            }
            anyhow::bail!("no sign-in URL")
        })
        .await??;
        // Another sign-in's state: refused.
        reqwest::get(&back).await?;
        let output = tokio::time::timeout(common::DEADLINE, replay.wait_with_output()).await??;
        assert_eq!(output.status.code(), Some(3));
        Ok(())
    }
    .await;
    if outcome.is_err() {
        eprintln!(
            "capstand log:\n{}\nprovider log:\n{}",
            plane.log_tail(),
            provider.log_tail(30)
        );
    }
    outcome
}
