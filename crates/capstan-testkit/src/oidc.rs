//! A real OpenID Connect provider for SSO tests: the `oidc-provider` npm package (pinned in
//! `tools/versions`, installed by `scripts/tools.sh`) run by node with
//! `tools/oidc-provider.mjs`, on loopback. Its login page accepts any user name (the
//! package's development interactions); users' groups are given at start.

use std::process::Command;
use std::time::Duration;

use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};

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

/// A browser for tests: follows redirects itself, keeps cookies per host, fills in forms.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, HashMap<String, String>>,
}

impl Browser {
    /// A browser with no cookies.
    pub fn new() -> Result<Self> {
        Ok(Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            cookies: HashMap::new(),
        })
    }

    /// The cookie `name` this browser keeps for `url`'s host.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies.get(&Self::host(url))?.get(name).cloned()
    }

    fn host(url: &str) -> String {
        url.split('/').nth(2).unwrap_or_default().to_owned()
    }

    fn cookie_header(&self, url: &str) -> String {
        self.cookies
            .get(&Self::host(url))
            .map(|jar| {
                jar.iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    fn keep_cookies(&mut self, url: &str, response: &reqwest::Response) {
        let jar = self.cookies.entry(Self::host(url)).or_default();
        for value in response.headers().get_all("set-cookie") {
            let Ok(value) = value.to_str() else { continue };
            let pair = value.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// One request; the status, the Location resolved against `url`, and the body.
    pub async fn request(
        &mut self,
        method: reqwest::Method,
        url: &str,
        form: Option<String>,
    ) -> Result<(u16, Option<String>, String)> {
        let mut request = self
            .http
            .request(method, url)
            .header("cookie", self.cookie_header(url));
        if let Some(form) = form {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("requesting {url}"))?;
        self.keep_cookies(url, &response);
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                if l.starts_with("http") {
                    l.to_owned()
                } else {
                    format!("http://{}{l}", Self::host(url))
                }
            });
        Ok((status, location, response.text().await?))
    }

    /// Logs `user` in at the provider, starting from `start` (Capstan's `/auth/login`), until
    /// the provider sends the browser back to `callback_prefix`; that URL.
    pub async fn sign_in(
        &mut self,
        start: &str,
        user: &str,
        callback_prefix: &str,
    ) -> Result<String> {
        let mut url = start.to_owned();
        let mut form: Option<String> = None;
        for _ in 0..20 {
            let method = if form.is_some() {
                reqwest::Method::POST
            } else {
                reqwest::Method::GET
            };
            let (status, location, body) = self.request(method, &url, form.take()).await?;
            if let Some(next) = location {
                if next.starts_with(callback_prefix) {
                    return Ok(next);
                }
                url = next;
                continue;
            }
            if status != 200 {
                bail!("{url} answered {status}: {body}");
            }
            // A page with a form: the login form or the consent form.
            let action = attribute(&body, "action").context("a form on the page")?;
            let mut fields = form_urlencoded::Serializer::new(String::new());
            for input in body.split("<input").skip(1) {
                let input = input.split('>').next().unwrap_or_default();
                if input.contains("type=\"hidden\"")
                    && let (Some(name), Some(value)) =
                        (attribute(input, "name"), attribute(input, "value"))
                {
                    fields.append_pair(&name, &value);
                }
            }
            if body.contains("name=\"login\"") {
                fields
                    .append_pair("login", user)
                    .append_pair("password", "any");
            }
            url = if action.starts_with("http") {
                action
            } else {
                format!("http://{}{action}", Self::host(&url))
            };
            form = Some(fields.finish());
        }
        bail!("no redirect back to {callback_prefix} after 20 steps")
    }
}

/// The first `name="..."` attribute value in `html`.
fn attribute(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}
