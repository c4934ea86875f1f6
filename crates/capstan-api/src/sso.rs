//! Single sign-on with an OpenID Connect provider (`--oidc-issuer`), for browsers and the CLI:
//!
//! - `GET /auth/login?return_url=/applications` sends the browser to the provider (code flow
//!   with PKCE). The state, nonce and PKCE verifier travel in a signed, short-lived,
//!   HttpOnly cookie rather than in server memory, so any API replica can take the callback.
//! - `GET /auth/callback` checks the state, exchanges the code, validates the ID token,
//!   and answers with a Capstan session in the `argocd.token` cookie, redirecting back to
//!   `return_url` (a path on this server only: never an open redirect).
//! - `POST /auth/token` with `{"idToken": ...}` exchanges an ID token the caller obtained
//!   itself (the CLI, through its own loopback redirect) for a Capstan session token.
//!
//! A session's user is the token's `email` (else `sub`); its groups come from the groups
//! claim and are what RBAC `g` lines map to roles. An identity named like a local account is
//! refused, so an SSO user can never act as `admin`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::auth::oidc::{Identity, Oidc, pkce_pair, random_url_safe};
use crate::error::{ApiError, ApiResult, Code};
use crate::service::Api;

/// The cookie carrying the login state between redirect and callback.
const STATE_COOKIE: &str = "capstan.oidc";
/// How long a login at the provider may take.
const LOGIN_TTL: Duration = Duration::from_secs(300);

/// The SSO routes' state.
#[derive(Clone, Debug)]
pub struct Sso {
    api: Api,
    oidc: Option<Arc<Oidc>>,
    /// Whether cookies are marked `Secure` (the API is served over TLS).
    secure_cookies: bool,
}

impl Sso {
    /// SSO for `api` with `oidc` (none: the routes answer that SSO is not configured).
    pub fn new(api: Api, oidc: Option<Arc<Oidc>>, secure_cookies: bool) -> Self {
        Sso {
            api,
            oidc,
            secure_cookies,
        }
    }

    fn oidc(&self) -> ApiResult<&Oidc> {
        self.oidc.as_deref().ok_or_else(|| {
            ApiError::new(
                Code::FailedPrecondition,
                "single sign-on is not configured (--oidc-issuer)",
            )
        })
    }

    fn cookie(&self, name: &str, value: &str, path: &str, max_age: u64) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }

    /// A Capstan session for a verified identity.
    fn session(&self, identity: &Identity) -> ApiResult<String> {
        if self.api.config().account(&identity.user).is_some() {
            warn!(user = %identity.user, "SSO identity named like a local account refused");
            return Err(ApiError::unauthenticated(format!(
                "the identity {:?} has the name of a local account; it cannot sign in by SSO",
                identity.user
            )));
        }
        let (token, _) = self
            .api
            .keys()
            .issue(
                &identity.user,
                &identity.groups,
                Some(self.api.config().session_ttl),
                SystemTime::now(),
            )
            .map_err(|e| ApiError::internal(e.to_string()))?;
        info!(user = %identity.user, groups = ?identity.groups, "signed in by SSO");
        Ok(token)
    }
}

/// The SSO routes.
pub fn router(sso: Sso) -> Router {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/token", post(token))
        .with_state(sso)
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    return_url: String,
}

/// Only a path of this server (`/x`, not `//host` or `https://...`).
fn local_path(url: &str) -> String {
    if url.starts_with('/') && !url.starts_with("//") && !url.contains('\\') {
        url.to_owned()
    } else {
        "/".to_owned()
    }
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response();
    for cookie in cookies {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

async fn login(State(sso): State<Sso>, Query(query): Query<LoginQuery>) -> ApiResult<Response> {
    let oidc = sso.oidc()?;
    let (verifier, challenge) = pkce_pair();
    let state = random_url_safe(16);
    let nonce = random_url_safe(16);
    let url = oidc
        .authorization_url(&state, &nonce, &challenge)
        .await
        .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))?;
    let carried = sso
        .api
        .keys()
        .sign_value(
            &json!({"state": state, "nonce": nonce, "verifier": verifier,
                    "return_url": local_path(&query.return_url)}),
            LOGIN_TTL,
            SystemTime::now(),
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let cookie = sso.cookie(STATE_COOKIE, &carried, "/auth", LOGIN_TTL.as_secs());
    Ok(redirect(&url, &[cookie]))
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

async fn callback(
    State(sso): State<Sso>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> ApiResult<Response> {
    let oidc = sso.oidc()?;
    if !query.error.is_empty() {
        return Err(ApiError::unauthenticated(format!(
            "the identity provider refused the sign-in: {} {}",
            query.error, query.error_description
        )));
    }
    let carried = crate::rest::cookie(&headers, STATE_COOKIE)
        .ok_or_else(|| ApiError::unauthenticated("no sign-in in progress: start at /auth/login"))?;
    let carried =
        sso.api.keys().verify_value(carried).map_err(|e| {
            ApiError::unauthenticated(format!("the sign-in state: {e}; start again"))
        })?;
    if query.state.is_empty() || carried["state"].as_str() != Some(query.state.as_str()) {
        return Err(ApiError::unauthenticated(
            "the sign-in state does not match; start again at /auth/login",
        ));
    }
    if query.code.is_empty() {
        return Err(ApiError::invalid("the callback carries no code"));
    }
    let verifier = carried["verifier"].as_str().unwrap_or_default();
    let id_token = oidc
        .exchange(&query.code, verifier)
        .await
        .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
    let identity = oidc
        .verify(&id_token, carried["nonce"].as_str())
        .await
        .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
    let session = sso.session(&identity)?;
    let ttl = sso.api.config().session_ttl.as_secs();
    let return_url = local_path(carried["return_url"].as_str().unwrap_or("/"));
    Ok(redirect(
        &return_url,
        &[
            sso.cookie("argocd.token", &session, "/", ttl),
            sso.cookie(STATE_COOKIE, "", "/auth", 0),
        ],
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    id_token: String,
}

async fn token(State(sso): State<Sso>, body: Bytes) -> ApiResult<Response> {
    let oidc = sso.oidc()?;
    let body: TokenBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not {{\"idToken\": ...}}: {e}")))?;
    let identity = oidc
        .verify(&body.id_token, None)
        .await
        .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
    let session = sso.session(&identity)?;
    Ok(axum::Json(json!({ "token": session })).into_response())
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_redirected_to() {
        assert_eq!(local_path("/applications?x=1"), "/applications?x=1");
        for hostile in [
            "//evil.example",
            "https://evil.example/",
            "",
            "evil",
            "/\\evil.example",
        ] {
            assert_eq!(local_path(hostile), "/", "{hostile}");
        }
    }
}
