//! The API's listener: REST and gRPC on one port (gRPC requests are told apart by their
//! path, `/capstan.api.v1.<Service>/<Method>`, and spoken over HTTP/2; REST over HTTP/1.1 or
//! HTTP/2), with a request log line and per-route metrics for every request, `/healthz` for
//! load balancers, and a graceful shutdown that lets requests in flight finish.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::info;

use crate::service::Api;

/// Labels of a request metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template (`/api/v1/applications/{name}`) or gRPC method path.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The HTTP status code (gRPC answers are 200; their status is in the trailers).
    pub code: String,
}

/// Per-route request metrics.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<RouteLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 0.5 ms to about 33 s.
                Histogram::new(exponential_buckets(0.0005, 2.0, 17))
            }),
        }
    }
}

impl ApiMetrics {
    /// Registers `capstan_api_requests_total` and `capstan_api_request_duration_seconds`
    /// (give a registry prefixed `capstan_api`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "API requests answered, by route, method and status code",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer an API request (for streams: to start answering)",
            self.duration.clone(),
        );
    }
}

async fn observe(State(metrics): State<Arc<ApiMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = match request.extensions().get::<MatchedPath>() {
        // gRPC routes match `/{service}/{*rest}`: the path itself names the method.
        Some(matched) if !matched.as_str().contains("{*") => matched.as_str().to_owned(),
        Some(_) => request.uri().path().to_owned(),
        None => "unmatched".to_owned(),
    };
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let labels = RouteLabels {
        route,
        method,
        code: response.status().as_u16().to_string(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    info!(
        method = %labels.method,
        route = %labels.route,
        code = %labels.code,
        ms = elapsed.as_millis(),
        "request"
    );
    response
}

/// The whole API as one router: REST, gRPC, `/healthz`, with logs and metrics.
pub fn router(api: Api, metrics: Arc<ApiMetrics>) -> Router {
    crate::rest::router(api.clone())
        .merge(crate::grpc::routes(api).into_axum_router())
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::middleware::from_fn_with_state(metrics, observe))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish (streams end when their clients go).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
