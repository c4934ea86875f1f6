//! The OpenAPI document and the router agree: every documented operation is routed (and
//! asks for a token when documented so), every method a documented path does not list is
//! refused, and every path the REST router declares is documented.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use capstan_api::openapi::{OPERATIONS, document};
use capstan_api::rbac::Policy;
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use tower::ServiceExt as _;

async fn router() -> anyhow::Result<(axum::Router, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("s.redb"), EmbeddedOptions::default()).await?);
    let api = Api::start(store, None, ApiConfig::new(Policy::parse("", None)?))
        .await?
        .api;
    Ok((
        capstan_api::server::router(api, Arc::new(ApiMetrics::default())),
        dir,
    ))
}

/// A concrete path for a template: every `{param}` becomes `x`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|part| if part.starts_with('{') { "x" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

async fn status(router: &axum::Router, method: Method, path: &str) -> anyhow::Result<u16> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from("{}"))?;
    Ok(router.clone().oneshot(request).await?.status().as_u16())
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_guarded_as_documented() -> anyhow::Result<()> {
    let (router, _dir) = router().await?;
    for op in OPERATIONS {
        let method = Method::from_bytes(op.method.to_ascii_uppercase().as_bytes())?;
        let code = status(&router, method, &concrete(op.path)).await?;
        assert!(
            code != 404 && code != 405,
            "{} {} is documented but answers {code}",
            op.method,
            op.path
        );
        if op.auth {
            assert_eq!(code, 401, "{} {} without a token", op.method, op.path);
        }
    }
    // Methods a documented path does not list are refused.
    let all = ["get", "post", "put", "patch", "delete"];
    let paths: BTreeSet<&str> = OPERATIONS.iter().map(|o| o.path).collect();
    for path in paths {
        for method in all {
            if OPERATIONS
                .iter()
                .any(|o| o.path == path && o.method == method)
            {
                continue;
            }
            let code = status(
                &router,
                Method::from_bytes(method.to_ascii_uppercase().as_bytes())?,
                &concrete(path),
            )
            .await?;
            assert_eq!(
                code, 405,
                "{method} {path} is not documented but answers {code}"
            );
        }
    }
    Ok(())
}

#[test]
fn every_routed_path_is_documented() {
    let documented: BTreeSet<&str> = OPERATIONS.iter().map(|o| o.path).collect();
    // The path literals of the REST and SSO routers' `.route(` calls.
    let source = [
        include_str!("../src/rest.rs"),
        include_str!("../src/sso.rs"),
    ]
    .concat();
    let mut routed = BTreeSet::new();
    for piece in source.split(".route(").skip(1) {
        let literal = piece
            .trim_start()
            .strip_prefix('"')
            .and_then(|rest| rest.split('"').next())
            .expect("a route starts with its path literal");
        // A wildcard segment (`{*object}`) is an ordinary parameter in OpenAPI.
        routed.insert(literal.replace("{*", "{"));
    }
    assert!(routed.len() > 10, "found {routed:?}");
    let documented: BTreeSet<String> = documented.into_iter().map(str::to_owned).collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routed, not documented: {undocumented:?}"
    );
}

#[tokio::test]
async fn the_document_is_served_and_names_every_operation() -> anyhow::Result<()> {
    let (router, _dir) = router().await?;
    let request = Request::builder()
        .uri("/api/openapi.json")
        .body(Body::empty())?;
    let response = router.oneshot(request).await?;
    assert_eq!(response.status().as_u16(), 200);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let served: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(served, document());
    assert_eq!(served["openapi"], "3.0.3");
    for op in OPERATIONS {
        assert_eq!(
            served["paths"][op.path][op.method]["operationId"], op.id,
            "{} {}",
            op.method, op.path
        );
    }
    Ok(())
}
