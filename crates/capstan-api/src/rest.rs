//! REST/JSON over HTTP: Argo CD's paths and JSON shapes (so tools written for Argo CD's API
//! mostly work), each handler a translation to one [`Api`] method.
//!
//! Tokens are read from `Authorization: Bearer TOKEN` or the `argocd.token` /
//! `capstan.token` cookie (what browsers send). Request bodies are read as bytes and decoded
//! here, so a malformed body is a 400 in the API's error shape, not a framework's text.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use capstan_model::{Application, Object, SyncOperationResource};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

use crate::error::{ApiError, ApiResult};
use crate::live::ResourceSelector;
use crate::service::applications::{ListParams, Refresh, SyncParams};
use crate::service::clusters::{ClusterId, cluster_from_json};
use crate::service::live::MAX_DIFF_BYTES;
use crate::service::projects::project_from_json;
use crate::service::repositories::{RepoAccess, normalized_url, repository_from_json};
use crate::service::webhooks::WebhookOutcome;
use crate::service::{Api, Caller};
use crate::webhook::MAX_BODY_BYTES;

/// The largest diff request body: the manifests' text (at most [`MAX_DIFF_BYTES`]) escaped
/// in JSON strings.
const MAX_DIFF_BODY_BYTES: usize = 2 * MAX_DIFF_BYTES;

/// The REST routes, over `api`.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/version", get(version))
        .route(
            "/api/v1/settings",
            get(|State(api): State<Api>| async move { axum::Json(api.settings()) }),
        )
        .route(
            "/api/openapi.json",
            get(|| async { axum::Json(crate::openapi::document()) }),
        )
        .route("/api/v1/session", post(login).delete(logout))
        .route("/api/v1/session/userinfo", get(user_info))
        .route("/api/v1/account", get(list_accounts))
        .route("/api/v1/account/password", put(update_password))
        .route(
            "/api/v1/account/can-i/{resource}/{action}/{*object}",
            get(can_i),
        )
        .route("/api/v1/account/{name}", get(get_account))
        .route("/api/v1/account/{name}/token", post(create_token))
        .route("/api/v1/account/{name}/token/{id}", delete(delete_token))
        .route(
            "/api/v1/applications",
            get(list_applications).post(create_application),
        )
        .route(
            "/api/v1/applications/{name}",
            get(get_application)
                .put(update_application)
                .patch(patch_application)
                .delete(delete_application),
        )
        .route("/api/v1/applications/{name}/sync", post(sync_application))
        .route(
            "/api/v1/applications/{name}/rollback",
            post(rollback_application),
        )
        .route(
            "/api/v1/applications/{name}/operation",
            delete(terminate_operation),
        )
        .route("/api/v1/applications/{name}/history", get(history))
        .route("/api/v1/applications/{name}/manifests", get(manifests))
        .route(
            "/api/v1/applications/{name}/managed-resources",
            get(managed_resources),
        )
        .route(
            "/api/v1/applications/{name}/diff",
            post(diff).layer(DefaultBodyLimit::max(MAX_DIFF_BODY_BYTES)),
        )
        .route(
            "/api/v1/applications/{name}/resource-tree",
            get(resource_tree),
        )
        .route("/api/v1/applications/{name}/events", get(events))
        .route("/api/v1/stream/applications", get(watch_applications))
        .route("/api/v1/projects", get(list_projects).post(create_project))
        .route(
            "/api/v1/projects/{name}",
            get(get_project).put(update_project).delete(delete_project),
        )
        .route(
            "/api/v1/projects/{name}/syncwindows",
            get(project_sync_windows),
        )
        .route(
            "/api/v1/projects/{name}/roles/{role}/token",
            post(create_project_token),
        )
        .route(
            "/api/v1/projects/{name}/roles/{role}/token/{iat}",
            delete(delete_project_token),
        )
        .route(
            "/api/v1/repositories",
            get(list_repositories).post(create_repository),
        )
        .route(
            "/api/v1/repositories/{repo}",
            get(get_repository)
                .put(update_repository)
                .delete(delete_repository),
        )
        .route(
            "/api/v1/repositories/{repo}/validate",
            post(validate_repository),
        )
        .route("/api/v1/clusters", get(list_clusters).post(create_cluster))
        .route(
            "/api/v1/clusters/{server}",
            get(get_cluster).put(update_cluster).delete(delete_cluster),
        )
        .route(
            "/api/webhook",
            post(webhook).layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1)),
        )
        .with_state(api)
}

/// The caller, from the request's token.
#[derive(Debug)]
pub struct Authed(pub Caller);

/// The bearer token of a request: the Authorization header, else a session cookie.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(strip_bearer)
        .or_else(|| cookie(headers, "argocd.token"))
        .or_else(|| cookie(headers, "capstan.token"))
        .map(str::to_owned)
}

/// The token of an `Authorization: Bearer TOKEN` value (REST header or gRPC metadata).
pub(crate) fn strip_bearer(value: &str) -> Option<&str> {
    let value = value.trim();
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Api> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or_else(|| {
            ApiError::unauthenticated(
                "no token: log in (POST /api/v1/session) and send Authorization: Bearer TOKEN",
            )
        })?;
        api.authenticate(&token).map(Authed)
    }
}

/// Query parameters, repeated keys kept (`?projects=a&projects=b`).
#[derive(Debug, Default)]
struct QueryParams(HashMap<String, Vec<String>>);

impl QueryParams {
    fn parse(raw: Option<&str>) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        QueryParams(map)
    }

    /// Every value of `key` (comma-separated values split too).
    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .get(key)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.last()).map(String::as_str)
    }

    fn flag(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.one(key) {
            None => Ok(None),
            Some("true" | "1" | "") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(format!(
                "{key}={other:?}: use true or false"
            ))),
        }
    }
}

/// `null` reads as the field's default, as in proto3 JSON (Argo CD's UI sends
/// `"resources": null` to sync everything).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not the JSON expected: {e}")))
}

fn json_of<T: serde::Serialize>(value: &T) -> ApiResult<Response> {
    let value = serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(value).into_response())
}

/// An Application from a request body (Capstan's or Argo CD's JSON; YAML is accepted too).
pub fn application_from(body: &[u8]) -> ApiResult<Application> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::invalid("the body is not UTF-8 text"))?;
    match capstan_model::parse_object_yaml(text) {
        Ok(Object::Application(app)) => Ok(*app),
        Ok(other) => Err(ApiError::invalid(format!(
            "the body is a {}, not an Application",
            other.kind()
        ))),
        Err(e) => Err(ApiError::invalid(format!(
            "the Application does not parse: {e}"
        ))),
    }
}

/// What the version method answers (Argo CD's field names).
pub fn version_info() -> Value {
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

async fn version() -> Response {
    axum::Json(version_info()).into_response()
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(State(api): State<Api>, body: Bytes) -> ApiResult<Response> {
    let body: LoginBody = decode(&body)?;
    let token = api.login(&body.username, &body.password).await?;
    Ok(axum::Json(json!({ "token": token })).into_response())
}

async fn logout(State(api): State<Api>, Authed(caller): Authed) -> ApiResult<Response> {
    api.logout(&caller).await?;
    Ok(axum::Json(json!({})).into_response())
}

async fn user_info(State(api): State<Api>, Authed(caller): Authed) -> ApiResult<Response> {
    json_of(&api.user_info(&caller))
}

async fn list_accounts(State(api): State<Api>, Authed(caller): Authed) -> ApiResult<Response> {
    Ok(axum::Json(json!({ "items": api.list_accounts(&caller) })).into_response())
}

async fn get_account(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    json_of(&api.get_account(&caller, &name)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordBody {
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    current_password: String,
    new_password: String,
}

async fn update_password(
    State(api): State<Api>,
    Authed(caller): Authed,
    body: Bytes,
) -> ApiResult<Response> {
    let body: PasswordBody = decode(&body)?;
    api.update_password(
        &caller,
        &body.name,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(axum::Json(json!({})).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    #[serde(default, deserialize_with = "null_as_default")]
    expires_in: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    id: String,
}

async fn create_token(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: TokenBody = if body.is_empty() {
        TokenBody::default()
    } else {
        decode(&body)?
    };
    let token = api
        .create_token(&caller, &name, ttl(body.expires_in), &body.id)
        .await?;
    Ok(axum::Json(json!({ "token": token })).into_response())
}

/// Seconds from now, as asked for (0 or less: none).
fn ttl(expires_in: i64) -> Option<Duration> {
    u64::try_from(expires_in)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

async fn delete_token(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    api.delete_token(&caller, &name, &id).await?;
    Ok(axum::Json(json!({})).into_response())
}

async fn can_i(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path((resource, action, object)): Path<(String, String, String)>,
) -> Response {
    axum::Json(json!({ "value": api.can_i(&caller, &resource, &action, &object) })).into_response()
}

fn list_params(query: &QueryParams) -> ApiResult<ListParams> {
    let selector = query.one("selector").unwrap_or_default();
    let limit = match query.one("limit") {
        None | Some("") => 0,
        Some(n) => n
            .parse()
            .map_err(|_| ApiError::invalid(format!("limit={n:?} is not a number")))?,
    };
    Ok(ListParams {
        query: crate::query::AppQuery {
            projects: query.all("projects"),
            clusters: query.all("clusters"),
            namespaces: query.all("namespaces"),
            selector: crate::query::parse_selector(selector).map_err(|e| ApiError::invalid(e.0))?,
            health: query.all("health"),
            sync: query.all("sync"),
            search: query.one("search").unwrap_or_default().to_owned(),
            limit,
            continue_token: query
                .one("continue")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
        },
        app_namespace: query.one("appNamespace").map(str::to_owned),
        repo: query.one("repo").map(str::to_owned),
        fields: query.all("fields"),
    })
}

async fn list_applications(
    State(api): State<Api>,
    Authed(caller): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let page = api.list(&caller, &list_params(&query)?)?;
    let mut metadata = json!({ "resourceVersion": page.revision.to_string() });
    if let Some(token) = page.continue_token {
        metadata["continue"] = Value::String(token);
    }
    Ok(axum::Json(json!({ "metadata": metadata, "items": page.items })).into_response())
}

async fn create_application(
    State(api): State<Api>,
    Authed(caller): Authed,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let app = application_from(&body)?;
    let upsert = query.flag("upsert")?.unwrap_or(false);
    json_of(&api.create(&caller, app, upsert).await?)
}

fn at(api: &Api, query: &QueryParams, name: &str) -> ApiResult<capstan_store::typed::ObjectRef> {
    api.app_ref(query.one("appNamespace").unwrap_or_default(), name)
}

async fn get_application(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let refresh = query
        .one("refresh")
        .filter(|r| !r.is_empty())
        .map(str::parse::<Refresh>)
        .transpose()?;
    json_of(&api.get(&caller, &at(&api, &query, &name)?, refresh).await?)
}

async fn update_application(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = application_from(&body)?;
    if app.metadata.name != name {
        return Err(ApiError::invalid(format!(
            "the body names {:?}, the path {name:?}",
            app.metadata.name
        )));
    }
    json_of(&api.update(&caller, app).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchBody {
    patch: String,
    #[serde(default, deserialize_with = "null_as_default")]
    patch_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    app_namespace: String,
}

async fn patch_application(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: PatchBody = decode(&body)?;
    let at = api.app_ref(&body.app_namespace, &name)?;
    json_of(
        &api.patch(&caller, &at, &body.patch, &body.patch_type)
            .await?,
    )
}

async fn delete_application(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let cascade = query.flag("cascade")?.unwrap_or(true);
    let policy = query.one("propagationPolicy").unwrap_or_default();
    api.delete(&caller, &at(&api, &query, &name)?, cascade, policy)
        .await?;
    Ok(axum::Json(json!({})).into_response())
}

/// Argo CD's `ApplicationSyncRequest` as JSON.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SyncBody {
    #[serde(default, deserialize_with = "null_as_default")]
    app_namespace: String,
    #[serde(default, deserialize_with = "null_as_default")]
    revision: String,
    #[serde(default, deserialize_with = "null_as_default")]
    revisions: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    prune: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    dry_run: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    strategy: Option<capstan_model::SyncStrategy>,
    #[serde(default, deserialize_with = "null_as_default")]
    resources: Vec<SyncOperationResource>,
    #[serde(default, deserialize_with = "null_as_default")]
    sync_options: Option<SyncOptionsBody>,
    #[serde(default, deserialize_with = "null_as_default")]
    retry_strategy: Option<capstan_model::RetryStrategy>,
}

#[derive(Deserialize, Default)]
struct SyncOptionsBody {
    #[serde(default, deserialize_with = "null_as_default")]
    items: Vec<String>,
}

async fn sync_application(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: SyncBody = if body.is_empty() {
        SyncBody::default()
    } else {
        decode(&body)?
    };
    let at = api.app_ref(&body.app_namespace, &name)?;
    let (strategy, force) = match &body.strategy {
        Some(s) if s.apply.is_some() => ("apply", s.apply.as_ref().is_some_and(|a| a.force)),
        Some(s) if s.hook.is_some() => ("hook", s.hook.as_ref().is_some_and(|h| h.force)),
        _ => ("", false),
    };
    let params = SyncParams {
        revision: body.revision,
        revisions: body.revisions,
        prune: body.prune,
        dry_run: body.dry_run,
        strategy: strategy.to_owned(),
        force,
        resources: body.resources,
        sync_options: body.sync_options.map(|o| o.items).unwrap_or_default(),
        retry_limit: body.retry_strategy.map_or(0, |r| r.limit),
    };
    json_of(&api.sync(&caller, &at, params).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RollbackBody {
    id: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    prune: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    dry_run: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    app_namespace: String,
}

async fn rollback_application(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: RollbackBody = decode(&body)?;
    let at = api.app_ref(&body.app_namespace, &name)?;
    json_of(
        &api.rollback(&caller, &at, body.id, body.prune, body.dry_run)
            .await?,
    )
}

async fn terminate_operation(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    api.terminate(&caller, &at(&api, &query, &name)?).await?;
    Ok(axum::Json(json!({})).into_response())
}

async fn history(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let items = api.history(&caller, &at(&api, &query, &name)?).await?;
    Ok(axum::Json(json!({ "items": items })).into_response())
}

/// Argo CD's answer: each manifest as a JSON string.
async fn manifests(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let answer = api
        .manifests(
            &caller,
            &at(&api, &query, &name)?,
            query.one("revision").unwrap_or_default(),
        )
        .await?;
    let manifests: Vec<String> = answer.manifests.iter().map(ToString::to_string).collect();
    Ok(axum::Json(json!({
        "manifests": manifests,
        "revision": answer.revision,
        "sourceType": answer.source_types.first().cloned().unwrap_or_default(),
        "sourceTypes": answer.source_types,
    }))
    .into_response())
}

/// Argo CD's answer: `{"items": [ResourceDiff, ...]}`.
async fn managed_resources(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let items = api
        .managed_resources(&caller, &at(&api, &query, &name)?)
        .await?;
    Ok(items_of(&items))
}

/// `{"appNamespace": "...", "manifests": ["{...}", ...]}`: each manifest one JSON object's
/// text, as Argo CD's manifests answer carries them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiffBody {
    #[serde(default, deserialize_with = "null_as_default")]
    app_namespace: String,
    #[serde(default, deserialize_with = "null_as_default")]
    manifests: Vec<String>,
}

async fn diff(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::invalid(format!(
                "the body is over {MAX_DIFF_BODY_BYTES} bytes; at most {MAX_DIFF_BYTES} bytes of \
                 manifests are compared at once: diff fewer at a time"
            ))
        } else {
            ApiError::invalid(format!(
                "the body could not be read: {}",
                rejection.body_text()
            ))
        }
    })?;
    let body: DiffBody = decode(&body)?;
    let query = QueryParams::parse(raw.as_deref());
    let namespace = match body.app_namespace.as_str() {
        "" => query.one("appNamespace").unwrap_or_default(),
        ns => ns,
    };
    let at = api.app_ref(namespace, &name)?;
    Ok(items_of(&api.diff(&caller, &at, &body.manifests).await?))
}

/// Argo CD's `ApplicationTree`: `{"nodes": [ResourceNode, ...]}`.
async fn resource_tree(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let nodes = api
        .resource_tree(&caller, &at(&api, &query, &name)?)
        .await?;
    Ok(axum::Json(json!({ "nodes": nodes })).into_response())
}

/// `{"items": [Event, ...]}` (Kubernetes Events), as Argo CD's `EventList`.
async fn events(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let param = |key: &str| query.one(key).unwrap_or_default().to_owned();
    let resource = ResourceSelector {
        namespace: param("resourceNamespace"),
        name: param("resourceName"),
        uid: param("resourceUID"),
    };
    let items = api
        .events(&caller, &at(&api, &query, &name)?, &resource)
        .await?;
    Ok(items_of(&items))
}

/// Server-Sent Events, one `data:` line per change, as Argo CD's stream:
/// `{"result": {"type": "MODIFIED", "application": {...}}}`; the event id is the store
/// revision, so a reconnecting browser resumes with `Last-Event-ID`.
async fn watch_applications(
    State(api): State<Api>,
    Authed(caller): Authed,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let params = list_params(&query)?;
    let from = query
        .one("resourceVersion")
        .or_else(|| headers.get("last-event-id").and_then(|v| v.to_str().ok()))
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::invalid(format!("resourceVersion {v:?} is not a revision")))
        })
        .transpose()?;
    let events = api.watch(caller, params, from);
    let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(|event| {
        Ok::<_, Infallible>(match event {
            Ok(event) => Event::default()
                .id(event.revision.to_string())
                .json_data(json!({
                    "result": {"type": event.kind, "application": event.application}
                }))
                .unwrap_or_else(|_| Event::default().event("error").data("encoding failed")),
            Err(error) => Event::default().event("error").data(
                json!({"error": error.message, "code": error.code.grpc() as i32}).to_string(),
            ),
        })
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn webhook(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match api.webhook(header, &body).await? {
        WebhookOutcome::Ignored { event } => {
            Ok((StatusCode::OK, axum::Json(json!({ "ignored": event }))).into_response())
        }
        WebhookOutcome::Refreshed { apps } => {
            let names: Vec<String> = apps.iter().map(ToString::to_string).collect();
            Ok(axum::Json(json!({ "refreshed": names })).into_response())
        }
    }
}

/// `{"items": [...]}`, as Argo CD's lists answer.
fn items_of<T: serde::Serialize>(items: &[T]) -> Response {
    axum::Json(json!({ "items": items })).into_response()
}

async fn list_projects(State(api): State<Api>, Authed(caller): Authed) -> Response {
    items_of(&api.list_projects(&caller))
}

/// Argo CD's `ProjectCreateRequest` (and, without `upsert`, `ProjectUpdateRequest`).
#[derive(Deserialize)]
struct ProjectBody {
    project: Value,
    #[serde(default, deserialize_with = "null_as_default")]
    upsert: bool,
}

async fn create_project(
    State(api): State<Api>,
    Authed(caller): Authed,
    body: Bytes,
) -> ApiResult<Response> {
    let body: ProjectBody = decode(&body)?;
    let project = project_from_json(body.project)?;
    json_of(&api.create_project(&caller, project, body.upsert).await?)
}

async fn get_project(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    json_of(&api.get_project(&caller, &name).await?)
}

async fn update_project(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: ProjectBody = decode(&body)?;
    let mut project = project_from_json(body.project)?;
    if project.metadata.name.is_empty() {
        project.metadata.name.clone_from(&name);
    }
    if project.metadata.name != name {
        return Err(ApiError::invalid(format!(
            "the body names {:?}, the path {name:?}",
            project.metadata.name
        )));
    }
    json_of(&api.update_project(&caller, project).await?)
}

async fn delete_project(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    api.delete_project(&caller, &name).await?;
    Ok(axum::Json(json!({})).into_response())
}

async fn project_sync_windows(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let windows = api.project_sync_windows(&caller, &name).await?;
    Ok(axum::Json(json!({ "windows": windows })).into_response())
}

async fn create_project_token(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path((project, role)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: TokenBody = if body.is_empty() {
        TokenBody::default()
    } else {
        decode(&body)?
    };
    let token = api
        .create_project_token(&caller, &project, &role, ttl(body.expires_in), &body.id)
        .await?;
    Ok(axum::Json(json!({ "token": token })).into_response())
}

async fn delete_project_token(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path((project, role, iat)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let iat: i64 = iat.parse().map_err(|_| {
        ApiError::invalid(format!(
            "{iat:?} is not a token's issue time (seconds since 1970)"
        ))
    })?;
    let id = query.one("id").unwrap_or_default();
    api.delete_project_token(&caller, &project, &role, iat, id)
        .await?;
    Ok(axum::Json(json!({})).into_response())
}

/// A JSON object from a request body.
fn json_body(body: &[u8]) -> ApiResult<Value> {
    decode(body)
}

fn app_project(query: &QueryParams) -> Option<&str> {
    query.one("appProject").filter(|p| !p.is_empty())
}

async fn list_repositories(
    State(api): State<Api>,
    Authed(caller): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let force_refresh = query.flag("forceRefresh")?.unwrap_or(false);
    Ok(items_of(
        &api.list_repositories(&caller, force_refresh).await?,
    ))
}

async fn create_repository(
    State(api): State<Api>,
    Authed(caller): Authed,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let upsert = query.flag("upsert")?.unwrap_or(false);
    let repository = repository_from_json(json_body(&body)?)?;
    json_of(&api.create_repository(&caller, repository, upsert).await?)
}

async fn get_repository(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(repo): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let force_refresh = query.flag("forceRefresh")?.unwrap_or(false);
    json_of(
        &api.get_repository(&caller, &repo, app_project(&query), force_refresh)
            .await?,
    )
}

async fn update_repository(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(repo): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut repository = repository_from_json(json_body(&body)?)?;
    if repository.spec.url.is_empty() {
        repository.spec.url.clone_from(&repo);
    }
    if normalized_url(&repository.spec.url) != normalized_url(&repo) {
        return Err(ApiError::invalid(format!(
            "the body is for {:?}, the path for {repo:?}",
            repository.spec.url
        )));
    }
    json_of(&api.update_repository(&caller, repository).await?)
}

async fn delete_repository(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(repo): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    api.delete_repository(&caller, &repo, app_project(&query))
        .await?;
    Ok(axum::Json(json!({})).into_response())
}

/// Argo CD's `RepoAccessQuery`, the fields used (others are ignored).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RepoAccessBody {
    #[serde(default, deserialize_with = "null_as_default")]
    username: String,
    #[serde(default, deserialize_with = "null_as_default")]
    password: String,
    #[serde(default, deserialize_with = "null_as_default")]
    bearer_token: String,
    #[serde(default, deserialize_with = "null_as_default")]
    project: String,
}

async fn validate_repository(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(repo): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let body: RepoAccessBody = if body.iter().all(u8::is_ascii_whitespace) {
        RepoAccessBody::default()
    } else {
        decode(&body)?
    };
    let project = if body.project.is_empty() {
        app_project(&query).unwrap_or_default().to_owned()
    } else {
        body.project
    };
    let access = RepoAccess {
        project,
        username: body.username,
        password: body.password.into(),
        bearer_token: body.bearer_token.into(),
    };
    let state = api.validate_repository(&caller, &repo, access).await?;
    Ok(axum::Json(json!({ "connectionState": state })).into_response())
}

async fn list_clusters(State(api): State<Api>, Authed(caller): Authed) -> ApiResult<Response> {
    Ok(items_of(&api.list_clusters(&caller).await?))
}

async fn create_cluster(
    State(api): State<Api>,
    Authed(caller): Authed,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let upsert = query.flag("upsert")?.unwrap_or(false);
    let cluster = cluster_from_json(json_body(&body)?)?;
    json_of(&api.create_cluster(&caller, cluster, upsert).await?)
}

/// The cluster a path names: its server, or with `id.type=name` its name.
fn cluster_id(query: &QueryParams, value: &str) -> ApiResult<ClusterId> {
    ClusterId::parse(value, query.one("id.type").unwrap_or_default())
}

async fn get_cluster(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(server): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    json_of(
        &api.get_cluster(&caller, &cluster_id(&query, &server)?)
            .await?,
    )
}

async fn update_cluster(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(server): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    let id = cluster_id(&query, &server)?;
    let mut cluster = cluster_from_json(json_body(&body)?)?;
    if cluster.spec.server.is_empty()
        && let ClusterId::Server(server) = &id
    {
        cluster.spec.server.clone_from(server);
    }
    json_of(&api.update_cluster(&caller, &id, cluster).await?)
}

async fn delete_cluster(
    State(api): State<Api>,
    Authed(caller): Authed,
    Path(server): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(raw.as_deref());
    api.delete_cluster(&caller, &cluster_id(&query, &server)?)
        .await?;
    Ok(axum::Json(json!({})).into_response())
}
