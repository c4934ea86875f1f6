//! `/api/webhook`: a Git host announces a push; the Applications it affects are found in the
//! index the Application copy keeps ([`crate::webhook::AppIndex`]), the repository's refs
//! are listed again (so the refresh sees the new commit instead of a cached listing), and
//! only those Applications are asked to refresh.
//!
//! Deliveries are not authenticated by a session but by the provider's signature or token
//! (see [`crate::webhook`]); nothing is refreshed for a delivery that fails it.

use std::collections::BTreeSet;
use std::time::Instant;

use capstan_model::Repository;
use capstan_store::kinds::Repositories;
use capstan_store::typed::{ObjectRef, TypedStore};
use tracing::{info, warn};

use super::Api;
use super::applications::Refresh;
use crate::error::{ApiError, ApiResult, Code};
use crate::webhook::{Delivery, WebhookError, parse_delivery};

/// What a delivery led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Not a push: acknowledged, nothing done.
    Ignored {
        /// The event.
        event: String,
    },
    /// A push: these Applications were asked to refresh.
    Refreshed {
        /// The Applications.
        apps: Vec<ObjectRef>,
    },
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        let code = match &error {
            WebhookError::Unauthorized { .. } => Code::Unauthenticated,
            WebhookError::TooLarge(_) => Code::ResourceExhausted,
            WebhookError::UnknownProvider | WebhookError::Malformed { .. } => Code::InvalidArgument,
        };
        ApiError::new(code, error.to_string())
    }
}

impl Api {
    /// Handles one delivery; `header` looks a request header up by name.
    pub async fn webhook<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
    ) -> ApiResult<WebhookOutcome> {
        let started = Instant::now();
        let delivery = parse_delivery(header, body, &self.config().webhook).inspect_err(|e| {
            warn!(error = %e, "webhook delivery refused");
        })?;
        let push = match delivery {
            Delivery::Ignored { event } => {
                info!(event, "webhook delivery ignored");
                return Ok(WebhookOutcome::Ignored { event });
            }
            Delivery::Push(push) => push,
        };
        let affected = self.apps().read().derived.affected(&push);
        if !affected.is_empty() {
            self.refresh_refs(&push).await;
        }
        // Each refresh is one store write; they run together.
        let results = futures::future::join_all(
            affected
                .iter()
                .map(|at| self.request_refresh(at, Refresh::Normal)),
        )
        .await;
        let mut refreshed = Vec::new();
        for (at, result) in affected.into_iter().zip(results) {
            match result {
                Ok(_) => refreshed.push(at),
                // Deleted since it was indexed: nothing to refresh.
                Err(e) if e.code == Code::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        info!(
            provider = ?push.provider,
            repos = ?push.repo_urls,
            refreshed = refreshed.len(),
            ms = started.elapsed().as_millis(),
            "webhook push handled"
        );
        Ok(WebhookOutcome::Refreshed { apps: refreshed })
    }

    /// Lists the pushed repository's refs again in the repo-server, so the refreshes resolve
    /// the pushed commit rather than a listing cached before the push. Best effort: a
    /// failure is logged, and the refresh then sees the new commit once the cached listing
    /// expires.
    async fn refresh_refs(&self, push: &crate::webhook::Push) {
        let (Some(manifests), Some(pushed)) = (self.manifest_source(), push.refs.first()) else {
            return;
        };
        let revision = if pushed.tag {
            format!("refs/tags/{}", pushed.name)
        } else {
            format!("refs/heads/{}", pushed.name)
        };
        let registered: Vec<Repository> =
            match TypedStore::<Repositories>::new(self.store().clone())
                .list(None)
                .await
            {
                Ok(list) => list.items.into_iter().map(|o| o.spec.value).collect(),
                Err(error) => {
                    warn!(%error, "webhook: reading registered repositories failed");
                    Vec::new()
                }
            };
        let urls: BTreeSet<&String> = push.repo_urls.iter().collect();
        for url in urls {
            let credentials =
                capstan_repo::registered::find(registered.iter().map(|r| &r.spec), url)
                    .map(capstan_repo::registered::git_credentials)
                    .unwrap_or_default();
            if let Err(error) = manifests
                .resolve_commit(url, &credentials, &revision, true)
                .await
            {
                // One URL form of several may be unreachable (an SSH URL without a key).
                warn!(url, error = %error.message, "webhook: listing refs again failed");
            }
        }
    }
}
