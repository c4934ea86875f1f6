//! The live state of Applications across processes: the API tier asks the controller member
//! that owns an Application's cluster.
//!
//! In a sharded control plane only the owning member has the cluster's cache, so a
//! standalone API replica (`capstand api`) cannot answer the live-state methods itself.
//! [`router`] serves any [`LiveState`] over HTTP with JSON (each controller member serves its
//! reconciler on its `--live-listen` address); [`RemoteLiveState`] is a [`LiveState`] that
//! finds the owner with an [`OwnerLocator`] (who owns the cluster, at which address — the
//! sharding's business, given by the caller) and forwards the question there. Errors keep
//! their kind across the hop: the owner's `503` (cluster not listed yet) is the caller's
//! `503`; an owner that cannot be reached is `503` too, naming it.
//!
//! The routes are internal (between Capstan's own processes): they carry the Application the
//! API has already authorised the caller for, and answer with what that Application's
//! cluster holds. They take a bearer token that every component of the control plane can
//! derive from the key they already share (`capstan_store::sealed::Keyring::derive` with
//! [`TOKEN_PURPOSE`]); anything else gets 401.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use capstan_model::Application;
use capstan_store::typed::ObjectRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ApiResult, Code};
use crate::live::{LiveFuture, LiveState, ManagedResource, ResourceNode, ResourceSelector};

/// How long one forwarded question may take (a managed-resources diff renders manifests).
const TIMEOUT: Duration = Duration::from_secs(120);

/// One question about an Application, as it travels.
#[derive(Debug, Serialize, Deserialize)]
struct Question {
    namespace: String,
    name: String,
    app: Application,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifests: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<ResourceSelector>,
}

impl Question {
    fn at(&self) -> ObjectRef {
        ObjectRef::new(self.namespace.as_str(), self.name.as_str())
    }
}

/// What the bearer token of the live-state routes is derived for.
pub const TOKEN_PURPOSE: &str = "live-state";

/// The HTTP routes answering live-state questions with `live` (mount it on an internal
/// listener): `POST /live/v1/managed-resources`, `/live/v1/resource-tree`, `/live/v1/events`,
/// for requests bearing one of the `accepted` tokens.
pub fn router(live: Arc<dyn LiveState>, accepted: Vec<String>) -> axum::Router {
    let accepted = Arc::new(accepted);
    axum::Router::new()
        .route("/live/v1/managed-resources", post(managed_resources))
        .route("/live/v1/resource-tree", post(resource_tree))
        .route("/live/v1/events", post(events))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let accepted = accepted.clone();
                async move {
                    let presented = request
                        .headers()
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default();
                    if accepted.iter().any(|token| same(token, presented)) {
                        Ok(next.run(request).await)
                    } else {
                        Err(ApiError::unauthenticated(
                            "live-state routes take the control plane's internal token (do all components share the encryption key?)",
                        ))
                    }
                }
            },
        ))
        .with_state(live)
}

/// Equality that takes as long whatever the first difference (tokens are secrets).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

async fn managed_resources(
    State(live): State<Arc<dyn LiveState>>,
    axum::Json(question): axum::Json<Question>,
) -> ApiResult<axum::Json<Vec<ManagedResource>>> {
    let at = question.at();
    Ok(axum::Json(
        live.managed_resources(&at, &question.app, question.manifests)
            .await?,
    ))
}

async fn resource_tree(
    State(live): State<Arc<dyn LiveState>>,
    axum::Json(question): axum::Json<Question>,
) -> ApiResult<axum::Json<Vec<ResourceNode>>> {
    let at = question.at();
    Ok(axum::Json(live.resource_tree(&at, &question.app).await?))
}

async fn events(
    State(live): State<Arc<dyn LiveState>>,
    axum::Json(question): axum::Json<Question>,
) -> ApiResult<axum::Json<Vec<Value>>> {
    let at = question.at();
    Ok(axum::Json(
        live.events(&at, &question.app, question.resource.as_ref())
            .await?,
    ))
}

/// Finds the live-state address (`http://host:port`) of the member owning an Application's
/// destination cluster; `Ok(None)` when no member owns it right now.
pub trait OwnerLocator: Send + Sync + std::fmt::Debug {
    /// The owner's address for `app`.
    fn owner_of<'a>(&'a self, app: &'a Application) -> LiveFuture<'a, Option<String>>;
}

/// A [`LiveState`] that forwards to the owning controller member (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct RemoteLiveState {
    locator: Arc<dyn OwnerLocator>,
    client: reqwest::Client,
    token: String,
}

impl RemoteLiveState {
    /// Forwards to the members `locator` finds, with the internal `token`.
    pub fn new(locator: Arc<dyn OwnerLocator>, token: String) -> Self {
        Self {
            locator,
            token,
            client: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    async fn ask<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        question: Question,
    ) -> ApiResult<T> {
        let Some(base) = self.locator.owner_of(&question.app).await? else {
            return Err(ApiError::new(
                Code::Unavailable,
                format!(
                    "no controller member owns the cluster of application {}/{} right now; try again in a moment",
                    question.namespace, question.name
                ),
            ));
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let unreachable = |error: reqwest::Error| {
            ApiError::new(
                Code::Unavailable,
                format!(
                    "the controller member at {base} that owns the application's cluster did not answer: {error}"
                ),
            )
        };
        let body = serde_json::to_vec(&question).map_err(|error| {
            ApiError::internal(format!("encoding a live-state question: {error}"))
        })?;
        let response = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|error| {
                ApiError::internal(format!("the controller member at {base} answered {url} with something unreadable: {error}"))
            });
        }
        // The owner's error, with its kind.
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(ApiError::new(code_of(status), message))
    }
}

/// The [`Code`] an HTTP status stands for ([`Code::http_status`] read backwards).
fn code_of(status: reqwest::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        429 => Code::ResourceExhausted,
        502..=504 => Code::Unavailable,
        _ => Code::Internal,
    }
}

impl LiveState for RemoteLiveState {
    fn managed_resources<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
        manifests: Option<Vec<Value>>,
    ) -> LiveFuture<'a, Vec<ManagedResource>> {
        Box::pin(self.ask(
            "/live/v1/managed-resources",
            Question {
                namespace: at.namespace.clone(),
                name: at.name.clone(),
                app: app.clone(),
                manifests,
                resource: None,
            },
        ))
    }

    fn resource_tree<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
    ) -> LiveFuture<'a, Vec<ResourceNode>> {
        Box::pin(self.ask(
            "/live/v1/resource-tree",
            Question {
                namespace: at.namespace.clone(),
                name: at.name.clone(),
                app: app.clone(),
                manifests: None,
                resource: None,
            },
        ))
    }

    fn events<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
        resource: Option<&'a ResourceSelector>,
    ) -> LiveFuture<'a, Vec<Value>> {
        Box::pin(self.ask(
            "/live/v1/events",
            Question {
                namespace: at.namespace.clone(),
                name: at.name.clone(),
                app: app.clone(),
                manifests: None,
                resource: resource.cloned(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_back_to_the_codes_that_made_them() {
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::ResourceExhausted,
            Code::Unavailable,
            Code::Internal,
        ] {
            let status =
                reqwest::StatusCode::from_u16(code.http_status().as_u16()).expect("a status");
            assert_eq!(code_of(status), code);
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn managed_resources_survive_the_trip() {
        let item = ManagedResource {
            kind: "ConfigMap".into(),
            name: "a".into(),
            target_state: Some(serde_json::json!({"data": {"k": "v"}})),
            live_state: None,
            modified: true,
            diff: "-a\n+b\n".into(),
            ..ManagedResource::default()
        };
        let text = serde_json::to_string(&item).expect("serialises");
        let back: ManagedResource = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, item);
    }
}
