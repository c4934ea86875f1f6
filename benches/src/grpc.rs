//! The repo-server's gRPC service on loopback, as capstand serves it, and a client for it.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use capstan_proto::repo::v1 as pb;
use capstan_proto::repo::v1::repo_service_client::RepoServiceClient;
use capstan_repo::service::RepoServer;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};

/// A running `RepoService` on `127.0.0.1`; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct GrpcServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl GrpcServer {
    /// Serves `server` on a port the kernel picks.
    pub(crate) async fn start(server: RepoServer) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding 127.0.0.1:0 for the gRPC server")?;
        let addr = listener.local_addr()?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(capstan_repo::grpc::service(server))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("[bench] gRPC server failed: {e}");
            }
        });
        Ok(Self {
            addr,
            stop: Some(stop),
        })
    }

    /// A client on a new HTTP/2 connection.
    pub(crate) async fn client(&self) -> anyhow::Result<RepoServiceClient<Channel>> {
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to the gRPC server at {}", self.addr))?;
        Ok(RepoServiceClient::new(channel)
            .max_decoding_message_size(capstan_repo::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(capstan_repo::grpc::MAX_MESSAGE_BYTES))
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A `GenerateManifests` request for a Git source at `HEAD`, for the Application `app`.
pub(crate) fn generate_request(
    url: &str,
    path: &str,
    app: &str,
    token: &str,
) -> anyhow::Result<pb::GenerateManifestsRequest> {
    let source = capstan_model::ApplicationSource::git(url, path, "HEAD");
    Ok(pb::GenerateManifestsRequest {
        source_json: serde_json::to_string(&source)?,
        app: Some(pb::AppContext {
            name: app.to_owned(),
            namespace: "bench".to_owned(),
            ..pb::AppContext::default()
        }),
        credentials: Some(pb::RepoCredentials {
            bearer_token: token.to_owned(),
            ..pb::RepoCredentials::default()
        }),
        ref_sources: Vec::new(),
        no_cache: false,
    })
}
