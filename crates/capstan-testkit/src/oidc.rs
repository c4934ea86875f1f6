//! A real OpenID Connect provider for SSO tests: the `oidc-provider` npm package (pinned in
//! `tools/versions`, installed by `scripts/tools.sh`) run by node with
//! `tools/oidc-provider.mjs`, on loopback. Its login page accepts any user name (the
//! package's development interactions); users' groups are given at start.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};

use crate::net::{free_port, http_get};
use crate::process::ManagedProcess;
use crate::tools::{tools_dir, version};
use crate::wait::wait_until;

/// One client the provider knows.
#[derive(Clone, Debug)]
pub struct OidcClient {
    /// Its id.
    pub id: String,
    /// Its secret (empty: a public client, as the CLI is).
    pub secret: String,
    /// Where it may be sent back to.
    pub redirect_uris: Vec<String>,
}

/// A running provider; stopped when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    issuer: String,
    process: ManagedProcess,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts a provider with `clients`; `groups` maps user names to their groups claim;
    /// the users in `no_email` get tokens without an `email` claim. ID tokens last
    /// `id_token_ttl`.
    pub async fn start(
        clients: &[OidcClient],
        groups: &[(&str, &[&str])],
        no_email: &[&str],
        id_token_ttl: Duration,
    ) -> Result<Self> {
        let version =
            version("OIDC_PROVIDER").ok_or_else(|| anyhow!("no OIDC_PROVIDER_VERSION"))?;
        let script = tools_dir()
            .join(format!("oidc-provider-{version}"))
            .join("provider.mjs");
        if !script.is_file() {
            return Err(anyhow!(
                "{} is missing; run `bash scripts/tools.sh` first",
                script.display()
            ));
        }
        let clients: Vec<serde_json::Value> = clients
            .iter()
            .map(|c| {
                let mut client = serde_json::json!({
                    "client_id": c.id,
                    "redirect_uris": c.redirect_uris,
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                });
                if c.secret.is_empty() {
                    client["token_endpoint_auth_method"] = "none".into();
                    client["application_type"] = "native".into();
                } else {
                    client["client_secret"] = c.secret.clone().into();
                    client["token_endpoint_auth_method"] = "client_secret_post".into();
                }
                client
            })
            .collect();
        let groups: serde_json::Map<String, serde_json::Value> = groups
            .iter()
            .map(|(user, groups)| ((*user).to_owned(), serde_json::json!(groups)))
            .collect();
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let mut command = Command::new("node");
        command
            .arg(&script)
            .env("PORT", port.to_string())
            .env("CLIENTS", serde_json::Value::Array(clients).to_string())
            .env("GROUPS", serde_json::Value::Object(groups).to_string())
            .env("NO_EMAIL_USERS", serde_json::json!(no_email).to_string())
            .env("ID_TOKEN_TTL", id_token_ttl.as_secs().max(1).to_string());
        let mut process =
            ManagedProcess::spawn_command("oidc-provider", command, &dir.path().join("oidc.log"))?;
        let issuer = format!("http://127.0.0.1:{port}");
        wait_until(
            "the OIDC provider's discovery document",
            Duration::from_secs(30),
            || {
                let alive = process.check_running();
                let answer = http_get(port, "/.well-known/openid-configuration");
                async move {
                    alive?;
                    Ok(matches!(answer, Ok((200, _))).then_some(()))
                }
            },
        )
        .await
        .with_context(|| format!("starting oidc-provider: {}", process.log_tail(20)))?;
        Ok(OidcProvider {
            issuer,
            process,
            _dir: dir,
        })
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider's log, for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
