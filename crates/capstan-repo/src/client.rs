//! Asking a repo-server for manifests. [`ManifestSource`] is what the controller needs: the
//! in-process [`RepoServer`] answers it directly (all-in-one), and [`RepoClient`] answers it
//! through a `capstand repo-server` over gRPC — the same request, the same answer, the same
//! errors (a [`GenerateError`] of the same [`ErrorKind`] travels as its gRPC status code and
//! comes back as that kind).

use std::sync::Arc;
use std::time::Duration;

use capstan_proto::repo::v1 as pb;
use capstan_proto::repo::v1::repo_service_client::RepoServiceClient;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

use crate::git::Credentials;
use crate::grpc::MAX_MESSAGE_BYTES;
use crate::service::{
    CacheOutcome, ErrorKind, GenerateError, Generated, ManifestRequest, Manifests, RepoServer,
};
use crate::tree::SkippedFile;

/// Something that renders manifests for a [`ManifestRequest`].
#[tonic::async_trait]
pub trait ManifestSource: Send + Sync + std::fmt::Debug {
    /// The manifests of `req`, or why not.
    async fn generate(&self, req: ManifestRequest) -> Result<Generated, GenerateError>;

    /// The commit `revision` of the Git repository at `url` is now (a multi-source
    /// Application's `ref`-only source is not rendered, but its revision is reported).
    async fn resolve_commit(
        &self,
        url: &str,
        credentials: &Credentials,
        revision: &str,
        no_cache: bool,
    ) -> Result<String, GenerateError>;
}

#[tonic::async_trait]
impl ManifestSource for RepoServer {
    async fn generate(&self, req: ManifestRequest) -> Result<Generated, GenerateError> {
        RepoServer::generate(self, req).await
    }

    async fn resolve_commit(
        &self,
        url: &str,
        credentials: &Credentials,
        revision: &str,
        no_cache: bool,
    ) -> Result<String, GenerateError> {
        let resolved = self
            .resolve_revision(url, credentials, revision, no_cache)
            .await?;
        Ok(resolved.commit.to_string())
    }
}

/// A shared source is a source (so a caller choosing one at run time can pass it on).
#[tonic::async_trait]
impl<T: ManifestSource + ?Sized> ManifestSource for Arc<T> {
    async fn generate(&self, req: ManifestRequest) -> Result<Generated, GenerateError> {
        T::generate(self, req).await
    }

    async fn resolve_commit(
        &self,
        url: &str,
        credentials: &Credentials,
        revision: &str,
        no_cache: bool,
    ) -> Result<String, GenerateError> {
        T::resolve_commit(self, url, credentials, revision, no_cache).await
    }
}

/// A gRPC client of a `capstand repo-server`; cheap to clone (clones share the connection).
#[derive(Clone, Debug)]
pub struct RepoClient {
    url: String,
    client: RepoServiceClient<Channel>,
}

impl RepoClient {
    /// A client of the repo-server at `url` (`http://host:port`). It connects at the first
    /// request and reconnects after failures, so a repo-server that starts later or restarts
    /// is picked up; until then requests fail as `Unavailable`. Each request may take at most
    /// `timeout` (a large Helm chart or a cold clone takes a while; the repo-server has its
    /// own limits per tool run).
    pub fn connect_lazy(url: &str, timeout: Duration) -> Result<Self, GenerateError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| GenerateError {
                kind: ErrorKind::InvalidArgument,
                message: format!("{url:?} is not a repo-server address: {e}; use http://HOST:PORT"),
            })?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout);
        let client = RepoServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            url: url.to_owned(),
            client,
        })
    }

    /// The repo-server's address.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[tonic::async_trait]
impl ManifestSource for RepoClient {
    async fn generate(&self, req: ManifestRequest) -> Result<Generated, GenerateError> {
        let request = to_wire(&req)?;
        let response = self
            .client
            .clone()
            .generate_manifests(request)
            .await
            .map_err(|status| from_status(&self.url, &status))?
            .into_inner();
        from_wire(response).map_err(|message| GenerateError {
            kind: ErrorKind::Internal,
            message: format!("repo-server {}: {message}", self.url),
        })
    }

    async fn resolve_commit(
        &self,
        url: &str,
        credentials: &Credentials,
        revision: &str,
        no_cache: bool,
    ) -> Result<String, GenerateError> {
        let response = self
            .client
            .clone()
            .resolve_revision(pb::ResolveRevisionRequest {
                repo_url: url.to_owned(),
                revision: revision.to_owned(),
                credentials: git_credentials(credentials),
                no_cache,
            })
            .await
            .map_err(|status| from_status(&self.url, &status))?;
        Ok(response.into_inner().commit)
    }
}

/// The wire form of `req`: the source as Argo CD JSON, credentials by kind (a Helm
/// repository's for chart sources, the Git repository's otherwise).
fn to_wire(req: &ManifestRequest) -> Result<pb::GenerateManifestsRequest, GenerateError> {
    let source_json = serde_json::to_string(&req.source).map_err(|e| GenerateError {
        kind: ErrorKind::InvalidArgument,
        message: format!("the source cannot be encoded: {e}"),
    })?;
    let credentials = if req.source.is_helm_chart() {
        let h = &req.helm_credentials;
        (!h.username.is_empty() || !h.password.is_empty()).then(|| pb::RepoCredentials {
            username: h.username.clone(),
            password: h.password.clone(),
            bearer_token: String::new(),
            pass_credentials: h.pass_credentials,
        })
    } else {
        git_credentials(&req.credentials)
    };
    Ok(pb::GenerateManifestsRequest {
        source_json,
        app: Some(pb::AppContext {
            name: req.app.name.clone(),
            namespace: req.app.namespace.clone(),
            project: req.app.project.clone(),
            kube_version: req.app.kube_version.clone(),
            api_versions: req.app.api_versions.clone(),
        }),
        credentials,
        ref_sources: req
            .ref_sources
            .iter()
            .map(|r| pb::RefSource {
                name: r.name.clone(),
                repo_url: r.repo_url.clone(),
                target_revision: r.target_revision.clone(),
                credentials: git_credentials(&r.credentials),
            })
            .collect(),
        no_cache: req.no_cache,
    })
}

fn git_credentials(c: &Credentials) -> Option<pb::RepoCredentials> {
    match c {
        Credentials::None => None,
        Credentials::Basic { username, password } => Some(pb::RepoCredentials {
            username: username.clone(),
            password: password.clone(),
            ..pb::RepoCredentials::default()
        }),
        Credentials::Bearer { token } => Some(pb::RepoCredentials {
            bearer_token: token.clone(),
            ..pb::RepoCredentials::default()
        }),
    }
}

fn from_wire(r: pb::GenerateManifestsResponse) -> Result<Generated, String> {
    let manifests = r
        .manifests
        .iter()
        .map(|m| serde_json::from_str::<Value>(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a manifest in the answer is not JSON: {e}"))?;
    let source_type = r
        .source_type
        .parse()
        .map_err(|_| format!("unknown source type {:?} in the answer", r.source_type))?;
    let cache = match r.cache.as_str() {
        "memory" => CacheOutcome::Memory,
        "shared" => CacheOutcome::Shared,
        _ => CacheOutcome::Rendered,
    };
    Ok(Generated {
        manifests: Arc::new(Manifests {
            manifests,
            revision: r.revision,
            source_type,
            skipped: r
                .skipped
                .into_iter()
                .map(|s| SkippedFile {
                    path: s.path,
                    reason: s.reason,
                })
                .collect(),
        }),
        cache,
    })
}

/// The repo-server's status as the error it was (the inverse of the server's mapping);
/// transport failures are `Unavailable`, naming the repo-server.
fn from_status(url: &str, status: &tonic::Status) -> GenerateError {
    use tonic::Code;
    // A status made on this side (it has a source: the connection's error) is about reaching
    // the repo-server; the repo-server's own messages already say what failed.
    let local = std::error::Error::source(status).is_some();
    // The connection broke mid-request (the repo-server died): tonic reports it as Unknown,
    // Internal, or Cancelled ("operation was canceled", when the connection closed under
    // the request) — unlike our own timeout, also Cancelled but caused by `TimeoutExpired`.
    let broken = local
        && match status.code() {
            Code::Unknown | Code::Internal => true,
            Code::Cancelled => !caused_by_timeout(status),
            _ => false,
        };
    let kind = match status.code() {
        // As unreachable: requests only read, so another repo-server may answer them.
        _ if broken => ErrorKind::Unavailable,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            ErrorKind::InvalidArgument
        }
        Code::NotFound => ErrorKind::NotFound,
        Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Unauthenticated,
        Code::DeadlineExceeded | Code::Cancelled => ErrorKind::DeadlineExceeded,
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    let message = match status.code() {
        _ if broken => format!(
            "repo-server {url}: the connection broke during the request: {}",
            status.message()
        ),
        Code::Unavailable if local => format!(
            "repo-server {url} unreachable: {}; is `capstand repo-server` running there?",
            status.message()
        ),
        Code::DeadlineExceeded => {
            format!("repo-server {url}: no answer in time: {}", status.message())
        }
        _ => status.message().to_owned(),
    };
    GenerateError { kind, message }
}

/// Whether `status` comes from the request's own timeout (somewhere in its sources).
fn caused_by_timeout(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::helm::HelmCredentials;

    #[test]
    fn a_broken_connection_is_unavailable_and_our_timeout_is_not() {
        let io = || {
            std::sync::Arc::new(std::io::Error::other("connection closed"))
                as std::sync::Arc<dyn std::error::Error + Send + Sync>
        };
        let mut canceled = tonic::Status::cancelled("operation was canceled");
        canceled.set_source(io());
        assert_eq!(
            from_status("http://r:1", &canceled).kind,
            ErrorKind::Unavailable
        );
        let mut unknown = tonic::Status::unknown("transport error");
        unknown.set_source(io());
        assert_eq!(
            from_status("http://r:1", &unknown).kind,
            ErrorKind::Unavailable
        );
        let timeout = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(timeout.code(), tonic::Code::Cancelled);
        assert_eq!(
            from_status("http://r:1", &timeout).kind,
            ErrorKind::DeadlineExceeded
        );
        // The repo-server's own answers (no local source) keep their kind.
        let answered = tonic::Status::internal("render failed");
        assert_eq!(
            from_status("http://r:1", &answered).kind,
            ErrorKind::Internal
        );
    }

    #[test]
    fn credentials_travel_by_source_kind() {
        let mut req = ManifestRequest {
            source: serde_json::from_value(serde_json::json!({
                "repoURL": "https://git.example.com/r.git", "path": "app"
            }))
            .expect("source"),
            app: Default::default(),
            credentials: Credentials::Bearer {
                token: "t0k".into(),
            },
            helm_credentials: HelmCredentials {
                username: "helm".into(),
                password: "pw".into(),
                pass_credentials: true,
            },
            ref_sources: Vec::new(),
            no_cache: true,
        };
        let wire = to_wire(&req).expect("encodes");
        let creds = wire.credentials.expect("git credentials");
        assert_eq!(creds.bearer_token, "t0k");
        assert!(creds.username.is_empty() && !creds.pass_credentials);
        assert!(wire.no_cache);

        req.source = serde_json::from_value(serde_json::json!({
            "repoURL": "https://charts.example.com", "chart": "web", "targetRevision": "1.2.3"
        }))
        .expect("chart source");
        let creds = to_wire(&req)
            .expect("encodes")
            .credentials
            .expect("helm credentials");
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("helm", "pw")
        );
        assert!(creds.pass_credentials && creds.bearer_token.is_empty());
    }

    #[test]
    fn statuses_come_back_as_the_kind_they_were_sent_as() {
        for kind in [
            ErrorKind::InvalidArgument,
            ErrorKind::NotFound,
            ErrorKind::Unauthenticated,
            ErrorKind::DeadlineExceeded,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ] {
            let sent = GenerateError {
                kind,
                message: "path 'x' does not exist".into(),
            };
            let status: tonic::Status = sent.clone().into();
            let back = from_status("http://127.0.0.1:1", &status);
            assert_eq!(back.kind, kind);
            assert!(back.message.contains("path 'x' does not exist"));
        }
    }

    #[test]
    fn a_malformed_answer_is_an_error_not_a_panic() {
        let err = from_wire(pb::GenerateManifestsResponse {
            manifests: vec!["{not json".into()],
            source_type: "Directory".into(),
            ..Default::default()
        })
        .expect_err("not JSON");
        assert!(err.contains("not JSON"), "{err}");
        let err = from_wire(pb::GenerateManifestsResponse {
            source_type: "Cobol".into(),
            ..Default::default()
        })
        .expect_err("unknown type");
        assert!(err.contains("Cobol"), "{err}");
    }
}
