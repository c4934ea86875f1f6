//! OpenID Connect, as a relying party: discovery, the authorization code flow with PKCE
//! (S256), the code exchange, and ID token validation against the provider's published keys.
//!
//! Written on `jsonwebtoken` (already here for sessions; it verifies RS256/ES256/EdDSA from
//! a JWK) and `reqwest` rather than the `openidconnect` crate, which would bring a second
//! reqwest, sha2, hmac and rand into the build for the same four steps. What is checked on an
//! ID token: the signature with a key of the provider's JWKS (by `kid`; the set is fetched
//! again once when a `kid` is unknown, for key rotation), the algorithm is the key's and never
//! `none` or HMAC, `iss` is the configured issuer, `aud` contains the client id, `exp` is in
//! the future (`nbf`, when present, is past), and `nonce` equals the one sent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::Digest as _;

/// How long discovery and keys are reused before being fetched again.
const CACHE_TTL: Duration = Duration::from_secs(600);
/// How long one request to the provider may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach and trust the provider.
#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer URL (its `/.well-known/openid-configuration` is read).
    pub issuer: String,
    /// This API's client id.
    pub client_id: String,
    /// Its client secret (empty for a public client).
    pub client_secret: String,
    /// More audiences accepted in ID tokens (the CLI's client id, when it has its own).
    pub extra_audiences: Vec<String>,
    /// Scopes asked for (`openid` is always asked).
    pub scopes: Vec<String>,
    /// The claim holding the user's groups.
    pub groups_claim: String,
    /// Where the provider sends the browser back (this API's `/auth/callback`).
    pub redirect_url: String,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("redirect_url", &self.redirect_url)
            .finish()
    }
}

/// Why SSO failed (the message is for the user; never a token).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider is unreachable or answered something unusable.
    #[error("the identity provider: {0}")]
    Provider(String),
    /// The ID token is not acceptable.
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
}

/// Who an ID token says the user is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `email` when present, else `sub`.
    pub user: String,
    /// From the groups claim.
    pub groups: Vec<String>,
    /// The token's expiry (seconds since the epoch).
    pub expires_at: u64,
}

#[derive(Clone, Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// The relying party: one per API process, cheap to share behind an `Arc`.
pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    discovery: Mutex<Option<(Discovery, Instant)>>,
    keys: Mutex<Option<(JwkSet, Instant)>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("config", &self.config)
            .finish()
    }
}

/// A fresh PKCE pair: the verifier (kept by this side) and its S256 challenge (sent).
pub fn pkce_pair() -> (String, String) {
    let verifier = random_url_safe(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// `bytes` random bytes, base64url without padding (state, nonce, verifier).
pub fn random_url_safe(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system provides randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

impl Oidc {
    /// A relying party for `config` (nothing is fetched until needed).
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        Ok(Oidc {
            config,
            http,
            discovery: Mutex::new(None),
            keys: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, OidcError> {
        let answer = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("GET {url}: {e}")))?;
        let status = answer.status();
        let body = answer
            .bytes()
            .await
            .map_err(|e| OidcError::Provider(format!("GET {url}: {e}")))?;
        if !status.is_success() {
            return Err(OidcError::Provider(format!("GET {url} answered {status}")));
        }
        serde_json::from_slice(&body)
            .map_err(|e| OidcError::Provider(format!("GET {url}: unexpected answer: {e}")))
    }

    async fn discovery(&self) -> Result<Discovery, OidcError> {
        let cached = lock(&self.discovery).clone();
        if let Some((d, at)) = cached
            && at.elapsed() < CACHE_TTL
        {
            return Ok(d);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let found: Discovery = self.get_json(&url).await?;
        if found.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
            return Err(OidcError::Provider(format!(
                "the discovery document names issuer {:?}, not the configured {:?}",
                found.issuer, self.config.issuer
            )));
        }
        *lock(&self.discovery) = Some((found.clone(), Instant::now()));
        Ok(found)
    }

    async fn keys(&self, refresh: bool) -> Result<JwkSet, OidcError> {
        let cached = lock(&self.keys).clone();
        if !refresh
            && let Some((k, at)) = cached
            && at.elapsed() < CACHE_TTL
        {
            return Ok(k);
        }
        let discovery = self.discovery().await?;
        let keys: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        *lock(&self.keys) = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    /// Where to send the browser: the provider's authorization endpoint with this client,
    /// the scopes, `state`, `nonce` and the PKCE `challenge`.
    pub async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        challenge: &str,
    ) -> Result<String, OidcError> {
        let discovery = self.discovery().await?;
        let mut scopes = vec!["openid".to_owned()];
        scopes.extend(
            self.config
                .scopes
                .iter()
                .filter(|s| *s != "openid")
                .cloned(),
        );
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let separator = if discovery.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!(
            "{}{separator}{query}",
            discovery.authorization_endpoint
        ))
    }

    /// Exchanges an authorization code (with its PKCE verifier) for the ID token.
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<String, OidcError> {
        let discovery = self.discovery().await?;
        // Built in full before any await: the serializer is not `Send`.
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.config.redirect_url)
                .append_pair("client_id", &self.config.client_id)
                .append_pair("code_verifier", verifier);
            if !self.config.client_secret.is_empty() {
                form.append_pair("client_secret", &self.config.client_secret);
            }
            form.finish()
        };
        let answer = self
            .http
            .post(&discovery.token_endpoint)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("the token endpoint: {e}")))?;
        let status = answer.status();
        let body: Value = serde_json::from_slice(
            &answer
                .bytes()
                .await
                .map_err(|e| OidcError::Provider(format!("the token endpoint: {e}")))?,
        )
        .map_err(|e| OidcError::Provider(format!("the token endpoint answered no JSON: {e}")))?;
        if !status.is_success() {
            let reason = body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("no reason given");
            return Err(OidcError::Provider(format!(
                "the token endpoint refused the code ({status}): {reason}"
            )));
        }
        body["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| OidcError::Provider("the token endpoint answered no id_token".into()))
    }

    /// Validates an ID token (see the [module docs](self)); `nonce`, when given, must match.
    pub async fn verify(&self, token: &str, nonce: Option<&str>) -> Result<Identity, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| OidcError::InvalidToken(e.to_string()))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(OidcError::InvalidToken(
                "an ID token signed with a shared secret is not accepted".into(),
            ));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let mut keys = self.keys(false).await?;
        if keys.find(&kid).is_none() {
            // The provider may have rotated its keys since they were fetched.
            keys = self.keys(true).await?;
        }
        let jwk = if kid.is_empty() {
            keys.keys.first()
        } else {
            keys.find(&kid)
        }
        .ok_or_else(|| OidcError::InvalidToken(format!("no provider key with kid {kid:?}")))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| OidcError::InvalidToken(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[
            self.config.issuer.trim_end_matches('/'),
            &self.config.issuer,
        ]);
        let mut audiences = vec![self.config.client_id.clone()];
        audiences.extend(self.config.extra_audiences.iter().cloned());
        validation.set_audience(&audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| OidcError::InvalidToken(e.to_string()))?;
        let claims = data.claims;
        if let Some(nonce) = nonce
            && claims["nonce"].as_str() != Some(nonce)
        {
            return Err(OidcError::InvalidToken("the nonce does not match".into()));
        }
        let user = claims["email"]
            .as_str()
            .or(claims["sub"].as_str())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| OidcError::InvalidToken("no email or sub claim".into()))?
            .to_owned();
        let groups = match &claims[self.config.groups_claim.as_str()] {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Value::String(one) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            user,
            groups,
            expires_at: claims["exp"].as_u64().unwrap_or_default(),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_the_s256_of_the_verifier() {
        let (verifier, challenge) = pkce_pair();
        assert!((43..=128).contains(&verifier.len()), "{verifier}");
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        assert_eq!(challenge, expected);
        assert_ne!(pkce_pair().0, verifier, "fresh each time");
    }
}
