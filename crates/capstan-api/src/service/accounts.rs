//! Accounts: listing them, changing a password, API tokens, and `can-i`.
//!
//! RBAC as in Argo CD: `accounts, get` to read accounts, `accounts, update` to act on another
//! account; everyone may change their own password and manage their own tokens.

use std::time::{Duration, SystemTime};

use capstan_store::Precondition;
use capstan_store::typed::{ObjectRef, TypedStore};
use serde::Serialize;
use tracing::info;

use super::session::now_seconds;
use super::{Api, Caller};
use crate::accounts::{AccountState, Accounts, Capability, TokenRecord};
use crate::error::{ApiError, ApiResult, Code};

/// What `user_info` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// Always true for an authenticated caller.
    pub logged_in: bool,
    /// The user.
    pub username: String,
    /// The token's issuer.
    pub iss: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// An account as the API shows it (never a password hash or a token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// Its name.
    pub name: String,
    /// Whether it may be used.
    pub enabled: bool,
    /// `login`, `apiKey`.
    pub capabilities: Vec<Capability>,
    /// Its API tokens: ids and times.
    pub tokens: Vec<TokenRecord>,
}

/// The largest number of API tokens one account may hold.
pub const MAX_TOKENS: usize = 100;

impl Api {
    fn account_view(&self, name: &str) -> Option<AccountView> {
        let config = self.config().account(name)?;
        let at = ObjectRef::new(self.config().namespace.as_str(), name);
        let tokens = self
            .account_mirror()
            .get(&at)
            .map(|e| e.spec.tokens.clone())
            .unwrap_or_default();
        Some(AccountView {
            name: config.name,
            enabled: config.enabled,
            capabilities: config.capabilities,
            tokens,
        })
    }

    /// Every account the caller may see.
    pub fn list_accounts(&self, caller: &Caller) -> Vec<AccountView> {
        self.config()
            .all_accounts()
            .iter()
            .filter(|a| {
                a.name == caller.subject.user || self.can(caller, "accounts", "get", &a.name)
            })
            .filter_map(|a| self.account_view(&a.name))
            .collect()
    }

    /// One account.
    pub fn get_account(&self, caller: &Caller, name: &str) -> ApiResult<AccountView> {
        if name != caller.subject.user {
            self.enforce(caller, "accounts", "get", name)?;
        }
        self.account_view(name)
            .ok_or_else(|| ApiError::not_found(format!("account {name:?}")))
    }

    /// Acting on `name`'s account: yourself, or with `accounts, update`.
    fn may_manage(&self, caller: &Caller, name: &str) -> ApiResult<()> {
        if name == caller.subject.user {
            Ok(())
        } else {
            self.enforce(caller, "accounts", "update", name)
        }
    }

    /// Reads, changes and writes back an account's state (retrying a concurrent change).
    async fn update_account<T>(
        &self,
        name: &str,
        change: impl Fn(&mut AccountState) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let accounts = TypedStore::<Accounts>::new(self.store().clone());
        let at = ObjectRef::new(self.config().namespace.as_str(), name);
        for _ in 0..5 {
            let (mut state, precondition) = match accounts.get(&at).await? {
                Some(o) => (o.spec.value, Precondition::ModRevision(o.spec.mod_revision)),
                None => (AccountState::default(), Precondition::MustNotExist),
            };
            let out = change(&mut state)?;
            let written = if precondition == Precondition::MustNotExist {
                accounts.create(&at, &state).await
            } else {
                accounts.update_spec(&at, &state, precondition).await
            };
            match written {
                Ok(revision) => {
                    self.account_mirror()
                        .wait_for_revision(revision, Duration::from_secs(5))
                        .await;
                    return Ok(out);
                }
                Err(capstan_store::StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::new(
            Code::Aborted,
            format!("account {name:?} kept changing; try again"),
        ))
    }

    /// Changes a password. Changing your own needs the current one; an administrator
    /// (`accounts, update`) changing another's needs their own current password, as in
    /// Argo CD. Sessions begun before the change stop working.
    pub async fn update_password(
        &self,
        caller: &Caller,
        name: &str,
        current_password: &str,
        new_password: &str,
    ) -> ApiResult<()> {
        let name = if name.is_empty() {
            caller.subject.user.as_str()
        } else {
            name
        };
        self.may_manage(caller, name)?;
        let config = self
            .config()
            .account(name)
            .ok_or_else(|| ApiError::not_found(format!("account {name:?}")))?;
        if !config.can(Capability::Login) {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!("account {name:?} cannot log in, so it has no password"),
            ));
        }
        // The caller proves who they are with their own current password.
        let accounts = TypedStore::<Accounts>::new(self.store().clone());
        let own = ObjectRef::new(
            self.config().namespace.as_str(),
            caller.subject.user.as_str(),
        );
        let own_hash = accounts
            .get(&own)
            .await?
            .map(|o| o.spec.value.password_hash)
            .unwrap_or_default();
        if !super::session::verify_password(current_password, own_hash).await {
            return Err(ApiError::unauthenticated("the current password is wrong"));
        }
        let hash = super::session::hash_password(new_password).await?;
        let mtime = now_seconds();
        self.update_account(name, |state| {
            state.password_hash = hash.clone();
            state.password_mtime = mtime;
            state.password_generation += 1;
            Ok(())
        })
        .await?;
        info!(user = %caller.subject.user, account = name, "password changed");
        Ok(())
    }

    /// Creates an API token for `name` (the token is shown only in this answer).
    pub async fn create_token(
        &self,
        caller: &Caller,
        name: &str,
        expires_in: Option<Duration>,
        id: &str,
    ) -> ApiResult<String> {
        self.may_manage(caller, name)?;
        let config = self
            .config()
            .account(name)
            .ok_or_else(|| ApiError::not_found(format!("account {name:?}")))?;
        if !config.can(Capability::ApiKey) {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!("account {name:?} does not have the apiKey capability"),
            ));
        }
        let (token, claims) = self
            .keys()
            .issue(name, &[], expires_in, SystemTime::now())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        // The id names the token for its owner; the token's own id (`jti`, random) is what
        // revocation records, so a new token may reuse the id of a deleted one.
        let id = if id.is_empty() {
            claims.jti.clone()
        } else {
            id.to_owned()
        };
        if id.len() > 128 || id.chars().any(|c| c.is_control()) {
            return Err(ApiError::invalid(
                "a token id has at most 128 characters and no control characters",
            ));
        }
        let record = TokenRecord {
            id: id.clone(),
            jti: claims.jti.clone(),
            issued_at: claims.iat,
            expires_at: claims.exp,
        };
        self.update_account(name, |state| {
            if state.tokens.len() >= MAX_TOKENS {
                return Err(ApiError::new(
                    Code::ResourceExhausted,
                    format!("account {name:?} has {MAX_TOKENS} tokens; delete some first"),
                ));
            }
            if state.tokens.iter().any(|t| t.id == id) {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    format!("account {name:?} already has a token {id:?}"),
                ));
            }
            state.tokens.push(record.clone());
            Ok(())
        })
        .await?;
        info!(user = %caller.subject.user, account = name, token_id = %record.id, "API token created");
        Ok(token)
    }

    /// Deletes (and revokes) an API token.
    pub async fn delete_token(&self, caller: &Caller, name: &str, id: &str) -> ApiResult<()> {
        self.may_manage(caller, name)?;
        let at = ObjectRef::new(self.config().namespace.as_str(), name);
        let record = TypedStore::<Accounts>::new(self.store().clone())
            .get(&at)
            .await?
            .and_then(|o| o.spec.value.tokens.into_iter().find(|t| t.id == id))
            .ok_or_else(|| ApiError::not_found(format!("token {id:?} of account {name:?}")))?;
        // Revoked first: should removing the record fail, the token is refused all the same.
        self.revoke(&record.jti, record.expires_at).await?;
        self.update_account(name, |state| {
            state.tokens.retain(|t| t.jti != record.jti);
            Ok(())
        })
        .await?;
        info!(user = %caller.subject.user, account = name, token_id = id, "API token deleted");
        Ok(())
    }

    /// Whether the caller may do `action` on `resource` `object` (`yes` or `no`).
    pub fn can_i(
        &self,
        caller: &Caller,
        resource: &str,
        action: &str,
        object: &str,
    ) -> &'static str {
        if self.can(caller, resource, action, object) {
            "yes"
        } else {
            "no"
        }
    }
}
