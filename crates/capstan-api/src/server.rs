//! The API's listener: REST and gRPC on one port (gRPC requests are told apart by their
//! path, `/capstan.api.v1.<Service>/<Method>`, and spoken over HTTP/2; REST over HTTP/1.1 or
//! HTTP/2), over TLS ([`serve_tls`], ALPN `h2` and `http/1.1`) or plain TCP ([`serve`]), with
//! a request log line and per-route metrics for every request, `/healthz` for load
//! balancers, and a graceful shutdown that lets requests in flight finish.

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
use tokio_rustls::rustls;
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

/// The whole API as one router: REST, gRPC, `/healthz`, with logs and metrics; without
/// single sign-on.
pub fn router(api: Api, metrics: Arc<ApiMetrics>) -> Router {
    let sso = crate::sso::Sso::new(api.clone(), None, false);
    router_with_sso(api, sso, metrics)
}

/// [`router`] with single sign-on (`/auth/...`).
pub fn router_with_sso(api: Api, sso: crate::sso::Sso, metrics: Arc<ApiMetrics>) -> Router {
    crate::rest::router(api.clone())
        .merge(crate::sso::router(sso))
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

/// The listener's TLS configuration.
pub type TlsConfig = rustls::ServerConfig;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TLS configuration for the listener from PEM certificate chain and private key bytes:
/// TLS 1.2 and 1.3 with ring's ciphers, ALPN `h2` (gRPC) and `http/1.1`.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("the private key is not PEM: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on `listener` until `shutdown` completes; then accepts no more
/// connections and waits for the open ones (the caller bounds the wait by dropping this
/// future, which closes them).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(%error, "accepting a connection failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let served =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}
