//! The repo-server's gRPC service (`capstan.repo.v1.RepoService`, see `proto/`) over a
//! [`RepoServer`].
//!
//! Errors become gRPC statuses by kind ([`ErrorKind`]); their messages are the service's own,
//! which never contain credentials. A cancelled call drops the request's future, which stops
//! its work (see [`crate::service`]).

use capstan_model::ApplicationSource;
use capstan_proto::repo::v1 as pb;
use capstan_proto::repo::v1::repo_service_server::{RepoService, RepoServiceServer};
use tonic::{Request, Response, Status};

use crate::git::Credentials;
use crate::metrics::GrpcMetrics;
use crate::render::env::AppContext;
use crate::render::helm::HelmCredentials;
use crate::revision::RevisionKind;
use crate::service::{
    CacheOutcome, ErrorKind, GenerateError, ManifestRequest, RefSourceSpec, RepoServer,
};

/// Most bytes of a single gRPC message (rendered manifests of a large app can be tens of MiB).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The gRPC service over `server`, ready to add to a `tonic` router.
pub fn service(server: RepoServer) -> RepoServiceServer<RepoGrpc> {
    service_with_metrics(server, GrpcMetrics::default())
}

/// [`service`], recording each call's latency in `metrics` (see [`crate::metrics::register`]).
pub fn service_with_metrics(
    server: RepoServer,
    metrics: GrpcMetrics,
) -> RepoServiceServer<RepoGrpc> {
    RepoServiceServer::new(RepoGrpc { server, metrics })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Implements `RepoService` over a [`RepoServer`].
#[derive(Clone, Debug)]
pub struct RepoGrpc {
    server: RepoServer,
    metrics: GrpcMetrics,
}

impl RepoGrpc {
    /// Runs one call, recording its latency and logging failures.
    async fn call<T>(
        &self,
        method: &'static str,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = std::time::Instant::now();
        let result = work.await;
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.observe(method, seconds);
        match &result {
            Ok(_) => tracing::debug!(method, seconds, "served"),
            Err(status) => {
                tracing::info!(method, seconds, code = ?status.code(), message = status.message(), "call failed")
            }
        }
        result.map(Response::new)
    }
}

impl From<GenerateError> for Status {
    fn from(e: GenerateError) -> Self {
        let code = match e.kind {
            ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorKind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        };
        Status::new(code, e.message)
    }
}

/// Git credentials from the wire: a bearer token wins over a user name and password.
pub fn credentials(c: Option<&pb::RepoCredentials>) -> Credentials {
    match c {
        Some(c) if !c.bearer_token.is_empty() => Credentials::Bearer {
            token: c.bearer_token.clone(),
        },
        Some(c) if !c.username.is_empty() || !c.password.is_empty() => Credentials::Basic {
            username: c.username.clone(),
            password: c.password.clone(),
        },
        _ => Credentials::None,
    }
}

fn helm_credentials(c: Option<&pb::RepoCredentials>) -> HelmCredentials {
    c.map(|c| HelmCredentials {
        username: c.username.clone(),
        password: if c.bearer_token.is_empty() {
            c.password.clone()
        } else {
            c.bearer_token.clone()
        },
        pass_credentials: c.pass_credentials,
    })
    .unwrap_or_default()
}

fn app_context(app: Option<pb::AppContext>) -> AppContext {
    let app = app.unwrap_or_default();
    AppContext {
        name: app.name,
        namespace: app.namespace,
        project: app.project,
        kube_version: app.kube_version,
        api_versions: app.api_versions,
        ..AppContext::default()
    }
}

fn source(json: &str) -> Result<ApplicationSource, Status> {
    serde_json::from_str(json).map_err(|e| {
        Status::invalid_argument(format!(
            "source_json is not an ApplicationSource: {e}; send the source as Argo CD JSON (repoURL, path, targetRevision, ...)"
        ))
    })
}

fn manifest_request(
    source_json: &str,
    app: Option<pb::AppContext>,
    creds: Option<&pb::RepoCredentials>,
    ref_sources: Vec<pb::RefSource>,
    no_cache: bool,
) -> Result<ManifestRequest, Status> {
    Ok(ManifestRequest {
        source: source(source_json)?,
        app: app_context(app),
        credentials: credentials(creds),
        helm_credentials: helm_credentials(creds),
        ref_sources: ref_sources
            .into_iter()
            .map(|r| RefSourceSpec {
                credentials: credentials(r.credentials.as_ref()),
                name: r.name,
                repo_url: r.repo_url,
                target_revision: r.target_revision,
            })
            .collect(),
        no_cache,
    })
}

#[tonic::async_trait]
impl RepoService for RepoGrpc {
    async fn resolve_revision(
        &self,
        request: Request<pb::ResolveRevisionRequest>,
    ) -> Result<Response<pb::ResolveRevisionResponse>, Status> {
        self.call("ResolveRevision", async move {
            let r = request.into_inner();
            let resolved = self
                .server
                .resolve_revision(
                    &r.repo_url,
                    &credentials(r.credentials.as_ref()),
                    &r.revision,
                    r.no_cache,
                )
                .await?;
            let (kind, ref_name) = match resolved.kind {
                RevisionKind::Head(n) => ("head", n),
                RevisionKind::Branch(n) => ("branch", n),
                RevisionKind::Tag(n) => ("tag", n),
                RevisionKind::Semver(n) => ("semver", n),
                RevisionKind::Sha => ("commit", String::new()),
                RevisionKind::ShortSha => ("short-commit", String::new()),
            };
            Ok(pb::ResolveRevisionResponse {
                commit: resolved.commit.to_string(),
                kind: kind.to_owned(),
                ref_name,
            })
        })
        .await
    }

    async fn generate_manifests(
        &self,
        request: Request<pb::GenerateManifestsRequest>,
    ) -> Result<Response<pb::GenerateManifestsResponse>, Status> {
        self.call("GenerateManifests", async move {
            let r = request.into_inner();
            let req = manifest_request(
                &r.source_json,
                r.app,
                r.credentials.as_ref(),
                r.ref_sources,
                r.no_cache,
            )?;
            let generated = self.server.generate(req).await?;
            let m = &generated.manifests;
            Ok(pb::GenerateManifestsResponse {
                manifests: m.manifests.iter().map(|v| v.to_string()).collect(),
                revision: m.revision.clone(),
                source_type: m.source_type.as_str().to_owned(),
                skipped: m
                    .skipped
                    .iter()
                    .map(|s| pb::SkippedFile {
                        path: s.path.clone(),
                        reason: s.reason.clone(),
                    })
                    .collect(),
                cache: match generated.cache {
                    CacheOutcome::Memory => "memory",
                    CacheOutcome::Shared => "shared",
                    CacheOutcome::Rendered => "rendered",
                }
                .to_owned(),
            })
        })
        .await
    }

    async fn list_refs(
        &self,
        request: Request<pb::ListRefsRequest>,
    ) -> Result<Response<pb::ListRefsResponse>, Status> {
        self.call("ListRefs", async move {
            let r = request.into_inner();
            let listing = self
                .server
                .list_refs(
                    &r.repo_url,
                    &credentials(r.credentials.as_ref()),
                    r.no_cache,
                )
                .await?;
            let refs = |v: Vec<(String, String)>| {
                v.into_iter()
                    .map(|(name, commit)| pb::GitRef { name, commit })
                    .collect()
            };
            Ok(pb::ListRefsResponse {
                branches: refs(listing.branches),
                tags: refs(listing.tags),
                head_branch: listing.head_branch,
            })
        })
        .await
    }

    async fn list_apps(
        &self,
        request: Request<pb::ListAppsRequest>,
    ) -> Result<Response<pb::ListAppsResponse>, Status> {
        self.call("ListApps", async move {
            let r = request.into_inner();
            let (commit, apps) = self
                .server
                .list_apps(
                    &r.repo_url,
                    &credentials(r.credentials.as_ref()),
                    &r.revision,
                )
                .await?;
            Ok(pb::ListAppsResponse {
                apps: apps
                    .into_iter()
                    .map(|(path, kind)| pb::AppDirectory {
                        path,
                        source_type: kind.as_str().to_owned(),
                    })
                    .collect(),
                commit,
            })
        })
        .await
    }

    async fn get_app_details(
        &self,
        request: Request<pb::GetAppDetailsRequest>,
    ) -> Result<Response<pb::GetAppDetailsResponse>, Status> {
        self.call("GetAppDetails", async move {
            let r = request.into_inner();
            let req = manifest_request(
                &r.source_json,
                r.app,
                r.credentials.as_ref(),
                Vec::new(),
                false,
            )?;
            let d = self.server.app_details(req).await?;
            Ok(pb::GetAppDetailsResponse {
                source_type: d.source_type.as_str().to_owned(),
                commit: d.revision,
                helm: Some(pb::HelmDetails {
                    value_files: d.helm_value_files,
                    values: d.helm_values,
                    parameters: d
                        .helm_parameters
                        .into_iter()
                        .map(|(name, value)| pb::HelmParameter { name, value })
                        .collect(),
                }),
                kustomize: Some(pb::KustomizeDetails {
                    images: d.kustomize_images,
                }),
            })
        })
        .await
    }
}
