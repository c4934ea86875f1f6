//! `login --sso`: the OpenID Connect authorization code flow with PKCE, as a native app does
//! it (RFC 8252): the browser signs in at the provider and comes back to a listener on
//! loopback; the CLI trades the code for an ID token, which the server then trades for a
//! Capstan session (`POST /auth/token`). The CLI is a public client: no secret.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{CliError, CliResult, Exit};
use crate::http::{Connector, Http};
use crate::tls::{TlsOptions, client_config};

/// How long the user has to sign in.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

/// Signs in at the provider the server's `settings` name; the ID token.
pub async fn sign_in(settings: &Value, port: u16, tls: &TlsOptions) -> CliResult<String> {
    let oidc = settings
        .get("oidcConfig")
        .filter(|o| o.is_object())
        .ok_or_else(|| {
            CliError::usage("the server has no single sign-on configured").hint(
                "log in with a username and password, or ask the operator to set --oidc-issuer",
            )
        })?;
    let issuer = oidc["issuer"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    let client_id = oidc["cliClientID"]
        .as_str()
        .filter(|c| !c.is_empty())
        .or_else(|| oidc["clientID"].as_str())
        .unwrap_or_default();
    let mut scopes = vec!["openid".to_owned()];
    for scope in oidc["scopes"].as_array().into_iter().flatten() {
        if let Some(scope) = scope.as_str().filter(|s| *s != "openid") {
            scopes.push(scope.to_owned());
        }
    }
    let config = client_config(
        &TlsOptions {
            ca_pem: None,
            insecure: tls.insecure,
            identity: None,
        },
        &[b"h2", b"http/1.1"],
    )?;
    let http = Http::new(
        Connector::new(Some(Arc::new(config))),
        Duration::from_secs(30),
        1 << 20,
    );
    let discovery: Value =
        get_json(&http, &format!("{issuer}/.well-known/openid-configuration")).await?;
    let authorization = discovery["authorization_endpoint"]
        .as_str()
        .unwrap_or_default();
    let token_endpoint = discovery["token_endpoint"].as_str().unwrap_or_default();
    if authorization.is_empty() || token_endpoint.is_empty() {
        return Err(CliError::other(format!(
            "the provider {issuer} publishes no authorization or token endpoint"
        )));
    }

    let verifier = random()?;
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random()?;
    let nonce = random()?;
    let redirect_uri = format!("http://localhost:{port}/auth/callback");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            CliError::usage(format!(
                "cannot listen on localhost:{port} for the browser: {e}"
            ))
            .hint("choose another port with --sso-port (the provider must allow it)")
        })?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let separator = if authorization.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{authorization}{separator}{}", query.finish());
    eprintln!("Sign in with your browser at:\n  {url}");
    open_browser(&url);

    let code = tokio::time::timeout(SIGN_IN_TIMEOUT, callback(&listener, &state))
        .await
        .map_err(|_| CliError::new(Exit::Timeout, "no sign-in within 5 minutes"))??;
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("client_id", client_id)
        .append_pair("code_verifier", &verifier);
    let form = Bytes::from(form.finish());
    let content_type = [(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let response = http
        .send(Method::POST, token_endpoint, &content_type, Some(form))
        .await
        .map_err(|e| {
            CliError::new(
                Exit::Unavailable,
                format!("the provider's token endpoint: {e}"),
            )
        })?;
    let answer = json_or_text(&response.body);
    if !(200..300).contains(&response.status) {
        return Err(CliError::new(
            Exit::Unauthenticated,
            format!(
                "the provider refused the code ({}): {answer}",
                response.status
            ),
        ));
    }
    let id_token = answer["id_token"]
        .as_str()
        .ok_or_else(|| CliError::other("the provider answered no id_token"))?;
    // The server checks the signature; the nonce ties the token to this sign-in.
    let payload = id_token.split('.').nth(1).unwrap_or_default();
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if claims["nonce"].as_str() != Some(nonce.as_str()) {
        return Err(CliError::new(
            Exit::Unauthenticated,
            "the ID token is not for this sign-in (its nonce differs)",
        ));
    }
    Ok(id_token.to_owned())
}

/// Waits for the browser's `GET /auth/callback?code=...&state=...`; the code. Other
/// requests (a favicon) get a 404 and the wait goes on.
async fn callback(listener: &tokio::net::TcpListener, state: &str) -> CliResult<String> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        // A connection that sends nothing (a browser's preconnect, another local process)
        // must not hold up the one that brings the code.
        let Ok(Ok((buffer, read))) =
            tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream)).await
        else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_default()
            .to_owned();
        let Some(query) = target.strip_prefix("/auth/callback?") else {
            respond(&mut stream, "404 Not Found", "Not found.").await;
            continue;
        };
        let params: std::collections::HashMap<String, String> =
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        let outcome = if let Some(error) = params.get("error") {
            Err(CliError::new(
                Exit::Unauthenticated,
                format!(
                    "the provider refused the sign-in: {error} {}",
                    params
                        .get("error_description")
                        .map(String::as_str)
                        .unwrap_or_default()
                ),
            ))
        } else if params.get("state").map(String::as_str) != Some(state) {
            Err(CliError::new(
                Exit::Unauthenticated,
                "the browser came back with another sign-in's state; start again",
            ))
        } else {
            params
                .get("code")
                .cloned()
                .ok_or_else(|| CliError::new(Exit::Unauthenticated, "the provider sent no code"))
        };
        let page = if outcome.is_ok() {
            "Signed in to Capstan. You may close this window."
        } else {
            "Sign-in failed; see the terminal."
        };
        respond(&mut stream, "200 OK", page).await;
        return outcome;
    }
}

/// Reads a request head (the query is all that is needed), at most 16 KiB.
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<(Vec<u8>, usize)> {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut read = 0;
    while read < buffer.len() {
        let n = stream.read(&mut buffer[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
        if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok((buffer, read))
}

async fn respond(stream: &mut tokio::net::TcpStream, status: &str, text: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Opens `url` with `$BROWSER`, else the desktop's opener; printing it is the fallback.
fn open_browser(url: &str) {
    let candidates: Vec<String> = match std::env::var("BROWSER") {
        Ok(browser) if !browser.is_empty() => vec![browser],
        _ if cfg!(target_os = "macos") => vec!["open".into()],
        _ => vec!["xdg-open".into()],
    };
    for program in candidates {
        let spawned = std::process::Command::new(&program)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if spawned.is_ok() {
            return;
        }
    }
}

fn random() -> CliResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| CliError::other(format!("no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

async fn get_json(http: &Http, url: &str) -> CliResult<Value> {
    let response = http.send(Method::GET, url, &[], None).await.map_err(|e| {
        CliError::new(
            Exit::Unavailable,
            format!("cannot reach the SSO provider at {url}: {e}"),
        )
    })?;
    if !(200..300).contains(&response.status) {
        return Err(CliError::other(format!(
            "{url} answered {}",
            response.status
        )));
    }
    Ok(json_or_text(&response.body))
}

/// A JSON body, or its text as a JSON string when it is not JSON.
fn json_or_text(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}
