//! Sessions: logging in with a local account's password, logging out, and turning a token
//! into a [`Caller`] on every request.
//!
//! A token is accepted when this API signed it (any replica: the secret is in the store), it
//! has not expired, it is not revoked, and — for a local account — the account is still
//! configured and enabled, and the token is an API token the account still lists or a
//! session begun with the account's current password; — for a project role
//! (`proj:PROJECT:ROLE`) — the project still has the role and the role still lists the token.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use capstan_model::JwtToken;
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{Store, StoreError};
use tracing::{info, warn};

use super::{Api, Caller};
use crate::accounts::{ADMIN, AccountState, Accounts, ApiSettings, ApiSettingsKind, Capability};
use crate::auth::passwords;
use crate::auth::sessions::{Claims, SessionKeys};
use crate::error::{ApiError, ApiResult, Code};
use crate::rbac::{RolePolicy, Subject, parse_project_role_subject};

/// The settings object holding the session secret.
const SESSION_SETTINGS: &str = "session";

pub(crate) fn now_seconds() -> u64 {
    crate::auth::sessions::seconds(SystemTime::now())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The session keys from the store; the first replica to start creates the secret, the
/// others (racing or later) read what it wrote.
pub(crate) async fn load_or_create_keys(
    store: &Arc<dyn Store>,
    namespace: &str,
) -> ApiResult<SessionKeys> {
    let settings = TypedStore::<ApiSettingsKind>::new(store.clone());
    let at = ObjectRef::new(namespace, SESSION_SETTINGS);
    for _ in 0..3 {
        if let Some(existing) = settings.get(&at).await? {
            let secret = unhex(&existing.spec.value.session_secret).ok_or_else(|| {
                ApiError::internal("the stored session secret is not hex; delete it to regenerate")
            })?;
            return SessionKeys::from_secret(&secret)
                .map_err(|e| ApiError::internal(format!("the stored session secret: {e}")));
        }
        let secret = SessionKeys::generate_secret();
        let created = settings
            .create(
                &at,
                &ApiSettings {
                    session_secret: hex(&secret),
                },
            )
            .await;
        match created {
            Ok(_) => {
                info!("generated the session signing secret");
                return SessionKeys::from_secret(&secret)
                    .map_err(|e| ApiError::internal(e.to_string()));
            }
            // Another replica created it meanwhile: read theirs.
            Err(StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::internal(
        "the session secret kept changing while starting",
    ))
}

/// Creates the `admin` account with a random password when it has none; that password.
pub(crate) async fn create_admin_if_missing(
    store: &Arc<dyn Store>,
    namespace: &str,
) -> ApiResult<Option<String>> {
    let accounts = TypedStore::<Accounts>::new(store.clone());
    let at = ObjectRef::new(namespace, ADMIN);
    if accounts.get(&at).await?.is_some() {
        return Ok(None);
    }
    let password = passwords::generate();
    let state = AccountState {
        password_hash: passwords::hash(&password).map_err(|e| ApiError::internal(e.to_string()))?,
        password_mtime: now_seconds(),
        password_generation: 1,
        tokens: Vec::new(),
    };
    match accounts.create(&at, &state).await {
        Ok(_) => {
            info!("created the admin account with a generated password");
            Ok(Some(password))
        }
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// Verifies off the async workers: argon2 takes tens of milliseconds of CPU by design.
pub(crate) async fn verify_password(password: &str, hash: String) -> bool {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || passwords::verify(&password, &hash))
        .await
        .unwrap_or(false)
}

/// Hashes off the async workers.
pub(crate) async fn hash_password(password: &str) -> ApiResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::invalid(e.to_string()))
}

impl Api {
    /// The caller a bearer token stands for.
    pub fn authenticate(&self, token: &str) -> ApiResult<Caller> {
        let revoked = &self.inner.revoked;
        let namespace = &self.inner.config.namespace;
        let claims = self
            .inner
            .keys
            .verify(token, |jti| {
                revoked
                    .read()
                    .objects
                    .contains_key(&ObjectRef::new(namespace.as_str(), jti))
            })
            .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
        let role = self.check_project_role(&claims)?;
        let mut groups = claims.groups.clone();
        let roles = match role {
            Some(role) => vec![role],
            None => {
                self.check_account(&claims)?;
                // SSO groups bound to project roles: the user acts in those roles too.
                let bound = self.roles_of_groups(&groups);
                groups.extend(bound.iter().map(|r| r.subject()));
                bound
            }
        };
        Ok(Caller {
            subject: Subject {
                user: claims.sub,
                groups,
            },
            token_id: claims.jti,
            expires_at: claims.exp,
            roles,
        })
    }

    /// The project roles whose `groups` name one of `groups` (Argo CD's `roles[].groups`).
    fn roles_of_groups(&self, groups: &[String]) -> Vec<Arc<RolePolicy>> {
        if groups.is_empty() {
            return Vec::new();
        }
        let projects = self.inner.projects.read();
        let mut roles = Vec::new();
        for (at, entry) in &projects.objects {
            for role in &entry.spec.spec.roles {
                if role.groups.iter().any(|g| groups.contains(g)) {
                    roles.push(Arc::new(RolePolicy::new(
                        &at.name,
                        &role.name,
                        &role.policies,
                    )));
                }
            }
        }
        roles
    }

    /// For tokens of project roles (`proj:PROJECT:ROLE`): the project (in this replica's
    /// copy) still has the role, and the role lists the token — by its id (the token's
    /// `jti`), or by its issue time for a record without id (Argo CD's older records). The
    /// role's policy lines that count, for RBAC; `None` for other subjects.
    fn check_project_role(&self, claims: &Claims) -> ApiResult<Option<Arc<RolePolicy>>> {
        let Some((project, role)) = parse_project_role_subject(&claims.sub) else {
            return Ok(None);
        };
        let refused = |why: &str| {
            Err(ApiError::unauthenticated(format!(
                "the token of project role {role:?} of project {project:?} is no longer valid: {why}"
            )))
        };
        let at = ObjectRef::new(self.inner.config.namespace.as_str(), project);
        let Some(entry) = self.inner.projects.get(&at) else {
            return refused("the project does not exist");
        };
        let Some(found) = entry.spec.spec.roles.iter().find(|r| r.name == role) else {
            return refused("the project has no such role");
        };
        let iat = i64::try_from(claims.iat).unwrap_or(i64::MAX);
        let listed = |t: &JwtToken| {
            if t.id.is_empty() {
                t.issued_at == iat
            } else {
                t.id == claims.jti
            }
        };
        let in_status = entry
            .spec
            .status
            .as_ref()
            .and_then(|s| s.jwt_tokens_by_role.get(role))
            .is_some_and(|tokens| tokens.items.iter().any(listed));
        if !found.jwt_tokens.iter().any(listed) && !in_status {
            return refused("the role does not list it (it was deleted)");
        }
        Ok(Some(Arc::new(RolePolicy::new(
            project,
            role,
            &found.policies,
        ))))
    }

    /// For tokens of local accounts: still configured, enabled, and the token still good.
    fn check_account(&self, claims: &Claims) -> ApiResult<()> {
        let Some(config) = self.inner.config.account(&claims.sub) else {
            // Not a local account (an SSO user or a project role): nothing to check here.
            return Ok(());
        };
        if !config.enabled {
            return Err(ApiError::unauthenticated(format!(
                "account {:?} is disabled",
                claims.sub
            )));
        }
        let at = ObjectRef::new(self.inner.config.namespace.as_str(), claims.sub.as_str());
        let Some(entry) = self.inner.accounts.get(&at) else {
            return Err(ApiError::unauthenticated(
                "the account has no state; log in again",
            ));
        };
        let api_token = entry.spec.tokens.iter().any(|t| t.jti == claims.jti);
        if !api_token && claims.pwd != Some(entry.spec.password_generation) {
            return Err(ApiError::unauthenticated(
                "the password was changed since this session began; log in again",
            ));
        }
        Ok(())
    }

    /// Logs in with a password: a session token.
    pub async fn login(&self, username: &str, password: &str) -> ApiResult<String> {
        let refused = || ApiError::unauthenticated("invalid username or password");
        if let Err(wait) = self
            .inner
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .check(username, Instant::now())
        {
            return Err(ApiError::new(
                Code::ResourceExhausted,
                format!(
                    "too many failed logins for {username:?}; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let config = self
            .inner
            .config
            .account(username)
            .filter(|a| a.enabled && a.can(Capability::Login));
        let at = ObjectRef::new(self.inner.config.namespace.as_str(), username);
        // Read the store, not the mirror: a password just changed on another replica counts.
        let state = match config {
            Some(_) => TypedStore::<Accounts>::new(self.inner.store.clone())
                .get(&at)
                .await?
                .map(|o| o.spec.value),
            None => None,
        };
        let generation = state.as_ref().map(|s| s.password_generation);
        let hash = state
            .as_ref()
            .map(|s| s.password_hash.clone())
            .unwrap_or_default();
        let good = verify_password(password, hash).await && state.is_some();
        let mut limiter = self
            .inner
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !good {
            limiter.failed(username, Instant::now());
            warn!(user = username, "login refused");
            return Err(refused());
        }
        limiter.succeeded(username);
        drop(limiter);
        let (token, _) = self
            .inner
            .keys
            .issue_session(
                username,
                &[],
                Some(self.inner.config.session_ttl),
                SystemTime::now(),
                generation,
            )
            .map_err(|e| ApiError::internal(e.to_string()))?;
        info!(user = username, "logged in");
        Ok(token)
    }

    /// Logs out: the caller's token is revoked everywhere.
    pub async fn logout(&self, caller: &Caller) -> ApiResult<()> {
        self.revoke(&caller.token_id, caller.expires_at).await?;
        info!(user = %caller.subject.user, "logged out");
        Ok(())
    }

    pub(crate) async fn revoke(&self, jti: &str, expires_at: Option<u64>) -> ApiResult<()> {
        let revocations = TypedStore::<crate::accounts::Revocations>::new(self.inner.store.clone());
        let at = ObjectRef::new(self.inner.config.namespace.as_str(), jti);
        let revision = match revocations
            .create(&at, &crate::accounts::Revoked { expires_at })
            .await
        {
            Ok(revision) => revision,
            Err(StoreError::Conflict { .. }) => return Ok(()),
            Err(other) => return Err(other.into()),
        };
        // This replica refuses the token from the moment the call returns.
        self.inner
            .revoked
            .wait_for_revision(revision, std::time::Duration::from_secs(5))
            .await;
        Ok(())
    }

    /// Who the caller is.
    pub fn user_info(&self, caller: &Caller) -> crate::service::accounts::UserInfo {
        crate::service::accounts::UserInfo {
            logged_in: true,
            username: caller.subject.user.clone(),
            iss: crate::auth::sessions::ISSUER.to_owned(),
            groups: caller.subject.groups.clone(),
        }
    }

    pub(crate) fn keys(&self) -> &SessionKeys {
        &self.inner.keys
    }

    pub(crate) fn account_mirror(&self) -> &crate::mirror::Mirror<Accounts> {
        &self.inner.accounts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_through_hex() {
        let secret = SessionKeys::generate_secret();
        assert_eq!(unhex(&hex(&secret)).expect("hex"), secret);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
