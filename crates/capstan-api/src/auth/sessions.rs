//! Signed tokens for sessions (after a login) and API tokens (per account, per project role):
//! JWTs signed with HS256 under a server secret every API replica shares (kept, encrypted,
//! in the store), so any replica verifies what another issued. A token carries its subject,
//! groups, issue time, an optional expiry and an id (`jti`); logging out or deleting an API
//! token revokes that id. Only HS256 is accepted — a token claiming another algorithm
//! (`none`, or RS256 to confuse key types) is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The issuer every Capstan token names.
pub const ISSUER: &str = "capstan";

/// The shortest signing secret accepted (HS256 wants at least the hash's 32 bytes).
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// The account, SSO user or `proj:PROJECT:ROLE`.
    pub sub: String,
    /// The subject's groups (SSO), for RBAC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Not valid before (seconds since the epoch).
    pub nbf: u64,
    /// Expires at (seconds since the epoch); API tokens may have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The token's id, for revocation.
    pub jti: String,
    /// For a local account's session: the account's password generation when it began
    /// (a password change makes every older session invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<u64>,
}

/// Why a token is refused (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The signing secret is too short.
    #[error("the session signing secret needs at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    /// Past its expiry.
    #[error("the token has expired; log in again")]
    Expired,
    /// Revoked (logged out, or the API token was deleted).
    #[error("the token has been revoked; log in again")]
    Revoked,
    /// Not signed by this server, tampered with, not a JWT, or another algorithm.
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// The signing secret, as keys (`Debug` shows nothing of it).
#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// `bytes` random bytes, hex-encoded.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system provides randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the epoch of `t` (what tokens and account records count in).
pub(crate) fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SessionKeys {
    /// A new random secret (what the all-in-one generates on first start).
    pub fn generate_secret() -> Vec<u8> {
        let mut buf = vec![0u8; MIN_SECRET_BYTES];
        getrandom::fill(&mut buf).expect("the operating system provides randomness");
        buf
    }

    /// Keys for `secret`.
    pub fn from_secret(secret: &[u8]) -> Result<Self, SessionError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SessionError::WeakSecret);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// A token for `subject` with `groups`, valid from `now` for `ttl` (`None`: no expiry,
    /// for API tokens).
    pub fn issue(
        &self,
        subject: &str,
        groups: &[String],
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<(String, Claims), SessionError> {
        self.issue_session(subject, groups, ttl, now, None)
    }

    /// As [`SessionKeys::issue`], for a session of a local account whose password is at
    /// `password_generation` ([`Claims::pwd`]).
    pub fn issue_session(
        &self,
        subject: &str,
        groups: &[String],
        ttl: Option<Duration>,
        now: SystemTime,
        password_generation: Option<u64>,
    ) -> Result<(String, Claims), SessionError> {
        let iat = seconds(now);
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: subject.to_owned(),
            groups: groups.to_vec(),
            iat,
            nbf: iat,
            exp: ttl.map(|t| iat.saturating_add(t.as_secs())),
            jti: random_hex(16),
            pwd: password_generation,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| SessionError::Invalid(e.to_string()))?;
        Ok((token, claims))
    }

    /// The claims of `token` if this server signed it, it has not expired, and
    /// `is_revoked(jti)` says it is not revoked.
    pub fn verify(
        &self,
        token: &str,
        is_revoked: impl Fn(&str) -> bool,
    ) -> Result<Claims, SessionError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["iss", "sub"]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => SessionError::Expired,
                _ => SessionError::Invalid(e.to_string()),
            },
        )?;
        if is_revoked(&data.claims.jti) {
            return Err(SessionError::Revoked);
        }
        Ok(data.claims)
    }
}

impl SessionKeys {
    /// Signs a short-lived value of this server's own (the SSO login state a browser carries
    /// in a cookie between the redirect and the callback), expiring after `ttl`.
    pub fn sign_value(
        &self,
        value: &serde_json::Value,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, SessionError> {
        let mut claims = value.clone();
        claims["iss"] = serde_json::Value::String(ISSUER.to_owned());
        claims["exp"] = serde_json::Value::from(seconds(now).saturating_add(ttl.as_secs()));
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| SessionError::Invalid(e.to_string()))
    }

    /// The value [`SessionKeys::sign_value`] signed, if unexpired and untouched.
    pub fn verify_value(&self, token: &str) -> Result<serde_json::Value, SessionError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["iss", "exp"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => SessionError::Expired,
                _ => SessionError::Invalid(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys::from_secret(&SessionKeys::generate_secret()).expect("strong")
    }

    const NOTHING_REVOKED: fn(&str) -> bool = |_| false;

    #[test]
    fn a_token_verifies_with_its_claims() {
        let keys = keys();
        let groups = vec!["team-a".to_owned()];
        let (token, issued) = keys
            .issue(
                "alice",
                &groups,
                Some(Duration::from_secs(3600)),
                SystemTime::now(),
            )
            .expect("issues");
        let claims = keys.verify(&token, NOTHING_REVOKED).expect("valid");
        assert_eq!(claims, issued);
        assert_eq!(claims.groups, groups);
        assert_eq!(claims.exp, Some(claims.iat + 3600));
        // API tokens without expiry verify too.
        let (api, _) = keys
            .issue("ci-bot", &[], None, SystemTime::now())
            .expect("issues");
        assert_eq!(keys.verify(&api, NOTHING_REVOKED).expect("valid").exp, None);
    }

    #[test]
    fn expired_revoked_tampered_and_foreign_tokens_are_refused() {
        let keys = keys();
        let (expired, _) = keys
            .issue(
                "alice",
                &[],
                Some(Duration::from_secs(60)),
                SystemTime::now() - Duration::from_secs(3600),
            )
            .expect("issues");
        assert_eq!(
            keys.verify(&expired, NOTHING_REVOKED),
            Err(SessionError::Expired)
        );

        let (token, claims) = keys
            .issue(
                "alice",
                &[],
                Some(Duration::from_secs(60)),
                SystemTime::now(),
            )
            .expect("issues");
        assert_eq!(
            keys.verify(&token, |jti| jti == claims.jti),
            Err(SessionError::Revoked)
        );

        // Another subject written into the payload: the signature no longer matches.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = {
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut payload: serde_json::Value =
                serde_json::from_slice(&engine.decode(parts[1]).expect("base64")).expect("json");
            payload["sub"] = "admin".into();
            engine.encode(payload.to_string())
        };
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert!(matches!(
            keys.verify(&forged, NOTHING_REVOKED),
            Err(SessionError::Invalid(_))
        ));

        // Signed by another server.
        assert!(matches!(
            super::SessionKeys::from_secret(&SessionKeys::generate_secret())
                .expect("strong")
                .verify(&token, NOTHING_REVOKED),
            Err(SessionError::Invalid(_))
        ));

        // `alg: none` with the signature dropped.
        let none_header = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        };
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(matches!(
            keys.verify(&unsigned, NOTHING_REVOKED),
            Err(SessionError::Invalid(_))
        ));
        assert!(matches!(
            keys.verify("not a token", NOTHING_REVOKED),
            Err(SessionError::Invalid(_))
        ));
    }

    #[test]
    fn weak_secrets_are_refused_and_keys_do_not_print() {
        assert_eq!(
            SessionKeys::from_secret(b"short").map(|_| ()),
            Err(SessionError::WeakSecret)
        );
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let keys = SessionKeys::from_secret(&secret).expect("strong");
        assert_eq!(format!("{keys:?}"), "SessionKeys(<redacted>)");
    }
}
