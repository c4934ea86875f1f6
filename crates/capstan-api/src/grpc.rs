//! gRPC (tonic): the services of `proto/capstan/api/v1/api.proto`, each method a translation
//! to one [`Api`] method — the same ones REST calls. The token travels in the
//! `authorization: Bearer TOKEN` metadata.

use std::pin::Pin;
use std::time::Duration;

use capstan_model::SyncOperationResource;
use capstan_proto::api::v1 as pb;
use futures::Stream;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::live::ResourceSelector;
use crate::service::applications::{ListParams, Refresh, SyncParams};
use crate::service::clusters::{ClusterId, cluster_from_json};
use crate::service::live::MAX_DIFF_BYTES;
use crate::service::projects::project_from_json;
use crate::service::repositories::{RepoAccess, repository_from_json};
use crate::service::{Api, Caller};

/// The gRPC routes, ready to merge into the HTTP router.
pub fn routes(api: Api) -> tonic::service::Routes {
    tonic::service::Routes::new(
        pb::application_service_server::ApplicationServiceServer::new(Grpc(api.clone()))
            // A diff carries manifests: up to MAX_DIFF_BYTES, and what encodes them.
            .max_decoding_message_size(MAX_DIFF_BYTES + (1 << 20)),
    )
    .add_service(pb::session_service_server::SessionServiceServer::new(Grpc(
        api.clone(),
    )))
    .add_service(pb::account_service_server::AccountServiceServer::new(Grpc(
        api.clone(),
    )))
    .add_service(pb::project_service_server::ProjectServiceServer::new(Grpc(
        api.clone(),
    )))
    .add_service(pb::repository_service_server::RepositoryServiceServer::new(
        Grpc(api.clone()),
    ))
    .add_service(pb::cluster_service_server::ClusterServiceServer::new(Grpc(
        api.clone(),
    )))
    .add_service(pb::version_service_server::VersionServiceServer::new(Grpc(
        api.clone(),
    )))
    .add_service(pb::settings_service_server::SettingsServiceServer::new(
        Grpc(api),
    ))
}

/// The services over one [`Api`].
#[derive(Clone, Debug)]
pub struct Grpc(pub Api);

impl Grpc {
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::rest::strip_bearer)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "no token: log in (SessionService/Create) and send authorization: Bearer TOKEN",
                )
            })?;
        Ok(self.0.authenticate(token)?)
    }
}

impl Grpc {
    /// The caller and the request's message.
    fn authenticated<T>(&self, request: Request<T>) -> Result<(Caller, T), Status> {
        let caller = self.caller(&request)?;
        Ok((caller, request.into_inner()))
    }
}

fn json<T: serde::Serialize>(value: &T) -> ApiResult<Response<pb::Json>> {
    let json = serde_json::to_string(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Response::new(pb::Json { json }))
}

/// A JSON document from a request field.
fn parse_json(text: &str, what: &str) -> ApiResult<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::invalid(format!("the {what} is not the JSON expected: {e}")))
}

/// `{"items": [...]}`.
fn items<T: serde::Serialize>(items: &[T]) -> ApiResult<Response<pb::Json>> {
    json(&serde_json::json!({ "items": items }))
}

fn ttl(expires_in: i64) -> Option<Duration> {
    u64::try_from(expires_in)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

fn app_project(project: String) -> Option<String> {
    Some(project).filter(|p| !p.is_empty())
}

fn list_params(q: pb::ApplicationQuery) -> ApiResult<ListParams> {
    Ok(ListParams {
        query: crate::query::AppQuery {
            projects: q.projects,
            clusters: q.clusters,
            namespaces: q.namespaces,
            selector: crate::query::parse_selector(&q.selector)
                .map_err(|e| ApiError::invalid(e.0))?,
            health: q.health,
            sync: q.sync,
            search: q.search,
            limit: usize::try_from(q.limit).unwrap_or(usize::MAX),
            continue_token: Some(q.r#continue).filter(|c| !c.is_empty()),
        },
        app_namespace: Some(q.app_namespace).filter(|n| !n.is_empty()),
        repo: Some(q.repo).filter(|r| !r.is_empty()),
        fields: q.fields,
    })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ApplicationEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::application_service_server::ApplicationService for Grpc {
    async fn list(
        &self,
        request: Request<pb::ApplicationQuery>,
    ) -> Result<Response<pb::ApplicationList>, Status> {
        let caller = self.caller(&request)?;
        let page = self.0.list(&caller, &list_params(request.into_inner())?)?;
        Ok(Response::new(pb::ApplicationList {
            items: page.items.iter().map(ToString::to_string).collect(),
            r#continue: page.continue_token.unwrap_or_default(),
            resource_version: page.revision,
        }))
    }

    async fn get(
        &self,
        request: Request<pb::ApplicationRef>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let refresh = Some(r.refresh.as_str())
            .filter(|s| !s.is_empty())
            .map(str::parse::<Refresh>)
            .transpose()?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        Ok(json(&self.0.get(&caller, &at, refresh).await?)?)
    }

    async fn create(
        &self,
        request: Request<pb::ApplicationCreateRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let app = crate::rest::application_from(r.application.as_bytes())?;
        Ok(json(&self.0.create(&caller, app, r.upsert).await?)?)
    }

    async fn update(
        &self,
        request: Request<pb::ApplicationUpdateRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let caller = self.caller(&request)?;
        let app = crate::rest::application_from(request.into_inner().application.as_bytes())?;
        Ok(json(&self.0.update(&caller, app).await?)?)
    }

    async fn patch(
        &self,
        request: Request<pb::ApplicationPatchRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        Ok(json(
            &self.0.patch(&caller, &at, &r.patch, &r.patch_type).await?,
        )?)
    }

    async fn delete(
        &self,
        request: Request<pb::ApplicationDeleteRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        self.0
            .delete(
                &caller,
                &at,
                r.cascade.unwrap_or(true),
                &r.propagation_policy,
            )
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn sync(
        &self,
        request: Request<pb::ApplicationSyncRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        let params = SyncParams {
            revision: r.revision,
            revisions: r.revisions,
            prune: r.prune,
            dry_run: r.dry_run,
            strategy: r.strategy,
            force: r.force,
            resources: r
                .resources
                .into_iter()
                .map(|x| SyncOperationResource {
                    group: x.group,
                    kind: x.kind,
                    name: x.name,
                    namespace: x.namespace,
                })
                .collect(),
            sync_options: r.sync_options,
            retry_limit: r.retry_limit,
        };
        Ok(json(&self.0.sync(&caller, &at, params).await?)?)
    }

    async fn rollback(
        &self,
        request: Request<pb::ApplicationRollbackRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        Ok(json(
            &self
                .0
                .rollback(&caller, &at, r.id, r.prune, r.dry_run)
                .await?,
        )?)
    }

    async fn terminate_operation(
        &self,
        request: Request<pb::ApplicationRef>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        self.0.terminate(&caller, &at).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn history(
        &self,
        request: Request<pb::ApplicationRef>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        Ok(json(&self.0.history(&caller, &at).await?)?)
    }

    async fn managed_resources(
        &self,
        request: Request<pb::ApplicationRef>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        Ok(items(&self.0.managed_resources(&caller, &at).await?)?)
    }

    async fn diff(
        &self,
        request: Request<pb::ApplicationDiffRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        Ok(items(&self.0.diff(&caller, &at, &r.manifests).await?)?)
    }

    async fn resource_tree(
        &self,
        request: Request<pb::ApplicationRef>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        let nodes = self.0.resource_tree(&caller, &at).await?;
        Ok(json(&serde_json::json!({ "nodes": nodes }))?)
    }

    async fn events(
        &self,
        request: Request<pb::ApplicationEventsRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        let resource = ResourceSelector {
            namespace: r.resource_namespace,
            name: r.resource_name,
            uid: r.resource_uid,
        };
        Ok(items(&self.0.events(&caller, &at, &resource).await?)?)
    }

    async fn manifests(
        &self,
        request: Request<pb::ApplicationManifestsRequest>,
    ) -> Result<Response<pb::ManifestList>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let at = self.0.app_ref(&r.app_namespace, &r.name)?;
        let answer = self.0.manifests(&caller, &at, &r.revision).await?;
        Ok(Response::new(pb::ManifestList {
            manifests: answer.manifests.iter().map(ToString::to_string).collect(),
            revision: answer.revision,
            source_types: answer.source_types,
        }))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::ApplicationQuery>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = self.caller(&request)?;
        let q = request.into_inner();
        let from = Some(q.resource_version).filter(|r| *r > 0);
        let events = self.0.watch(caller, list_params(q)?, from);
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(|event| {
            event
                .map(|e| pb::ApplicationEvent {
                    r#type: e.kind.to_owned(),
                    application: e.application.to_string(),
                    resource_version: e.revision,
                })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl pb::session_service_server::SessionService for Grpc {
    async fn create(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::SessionToken>, Status> {
        let r = request.into_inner();
        let token = self.0.login(&r.username, &r.password).await?;
        Ok(Response::new(pb::SessionToken { token }))
    }

    async fn delete(&self, request: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        let caller = self.caller(&request)?;
        self.0.logout(&caller).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_user_info(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::UserInfo>, Status> {
        let caller = self.caller(&request)?;
        let info = self.0.user_info(&caller);
        Ok(Response::new(pb::UserInfo {
            logged_in: info.logged_in,
            username: info.username,
            iss: info.iss,
            groups: info.groups,
        }))
    }
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for Grpc {
    async fn list(&self, request: Request<pb::Empty>) -> Result<Response<pb::Json>, Status> {
        let caller = self.caller(&request)?;
        Ok(json(&self.0.list_accounts(&caller))?)
    }

    async fn get(&self, request: Request<pb::AccountRef>) -> Result<Response<pb::Json>, Status> {
        let caller = self.caller(&request)?;
        Ok(json(
            &self.0.get_account(&caller, &request.into_inner().name)?,
        )?)
    }

    async fn update_password(
        &self,
        request: Request<pb::PasswordChange>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (caller, r) = self.authenticated(request)?;
        self.0
            .update_password(&caller, &r.name, &r.current_password, &r.new_password)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn create_token(
        &self,
        request: Request<pb::TokenRequest>,
    ) -> Result<Response<pb::SessionToken>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let token = self
            .0
            .create_token(&caller, &r.name, ttl(r.expires_in), &r.id)
            .await?;
        Ok(Response::new(pb::SessionToken { token }))
    }

    async fn delete_token(
        &self,
        request: Request<pb::TokenRef>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (caller, r) = self.authenticated(request)?;
        self.0.delete_token(&caller, &r.name, &r.id).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn can_i(
        &self,
        request: Request<pb::CanIRequest>,
    ) -> Result<Response<pb::CanIAnswer>, Status> {
        let (caller, r) = self.authenticated(request)?;
        Ok(Response::new(pb::CanIAnswer {
            value: self
                .0
                .can_i(&caller, &r.resource, &r.action, &r.subresource)
                .to_owned(),
        }))
    }
}

#[tonic::async_trait]
impl pb::version_service_server::VersionService for Grpc {
    async fn version(&self, _: Request<pb::Empty>) -> Result<Response<pb::Json>, Status> {
        Ok(json(&crate::rest::version_info())?)
    }
}

#[tonic::async_trait]
impl pb::settings_service_server::SettingsService for Grpc {
    async fn get(&self, _: Request<pb::Empty>) -> Result<Response<pb::Json>, Status> {
        Ok(json(&self.0.settings())?)
    }
}

#[tonic::async_trait]
impl pb::project_service_server::ProjectService for Grpc {
    async fn list(&self, request: Request<pb::Empty>) -> Result<Response<pb::Json>, Status> {
        let caller = self.caller(&request)?;
        Ok(items(&self.0.list_projects(&caller))?)
    }

    async fn get(&self, request: Request<pb::ProjectRef>) -> Result<Response<pb::Json>, Status> {
        let caller = self.caller(&request)?;
        let name = request.into_inner().name;
        Ok(json(&self.0.get_project(&caller, &name).await?)?)
    }

    async fn create(
        &self,
        request: Request<pb::ProjectCreateRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let project = project_from_json(parse_json(&r.project, "project")?)?;
        Ok(json(
            &self.0.create_project(&caller, project, r.upsert).await?,
        )?)
    }

    async fn update(
        &self,
        request: Request<pb::ProjectUpdateRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let project = project_from_json(parse_json(&r.project, "project")?)?;
        Ok(json(&self.0.update_project(&caller, project).await?)?)
    }

    async fn delete(
        &self,
        request: Request<pb::ProjectRef>,
    ) -> Result<Response<pb::Empty>, Status> {
        let caller = self.caller(&request)?;
        let name = request.into_inner().name;
        self.0.delete_project(&caller, &name).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_sync_windows(
        &self,
        request: Request<pb::ProjectRef>,
    ) -> Result<Response<pb::Json>, Status> {
        let caller = self.caller(&request)?;
        let name = request.into_inner().name;
        let windows = self.0.project_sync_windows(&caller, &name).await?;
        Ok(json(&serde_json::json!({ "windows": windows }))?)
    }

    async fn create_token(
        &self,
        request: Request<pb::ProjectTokenCreateRequest>,
    ) -> Result<Response<pb::SessionToken>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let token = self
            .0
            .create_project_token(&caller, &r.project, &r.role, ttl(r.expires_in), &r.id)
            .await?;
        Ok(Response::new(pb::SessionToken { token }))
    }

    async fn delete_token(
        &self,
        request: Request<pb::ProjectTokenDeleteRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (caller, r) = self.authenticated(request)?;
        self.0
            .delete_project_token(&caller, &r.project, &r.role, r.iat, &r.id)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }
}

#[tonic::async_trait]
impl pb::repository_service_server::RepositoryService for Grpc {
    async fn list(
        &self,
        request: Request<pb::RepositoryQuery>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        Ok(items(
            &self.0.list_repositories(&caller, r.force_refresh).await?,
        )?)
    }

    async fn get(
        &self,
        request: Request<pb::RepositoryQuery>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let project = app_project(r.app_project);
        Ok(json(
            &self
                .0
                .get_repository(&caller, &r.repo, project.as_deref(), r.force_refresh)
                .await?,
        )?)
    }

    async fn create(
        &self,
        request: Request<pb::RepositoryCreateRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let repository = repository_from_json(parse_json(&r.repository, "repository")?)?;
        Ok(json(
            &self
                .0
                .create_repository(&caller, repository, r.upsert)
                .await?,
        )?)
    }

    async fn update(
        &self,
        request: Request<pb::RepositoryUpdateRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let repository = repository_from_json(parse_json(&r.repository, "repository")?)?;
        Ok(json(&self.0.update_repository(&caller, repository).await?)?)
    }

    async fn delete(
        &self,
        request: Request<pb::RepositoryQuery>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let project = app_project(r.app_project);
        self.0
            .delete_repository(&caller, &r.repo, project.as_deref())
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn validate_access(
        &self,
        request: Request<pb::RepositoryAccessRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let access = RepoAccess {
            project: r.project,
            username: r.username,
            password: r.password.into(),
            bearer_token: r.bearer_token.into(),
        };
        let state = self.0.validate_repository(&caller, &r.repo, access).await?;
        Ok(json(&serde_json::json!({ "connectionState": state }))?)
    }
}

fn cluster_id(q: pb::ClusterQuery) -> ApiResult<ClusterId> {
    if q.server.is_empty() && !q.name.is_empty() {
        ClusterId::parse(&q.name, "name")
    } else {
        ClusterId::parse(&q.server, "server")
    }
}

#[tonic::async_trait]
impl pb::cluster_service_server::ClusterService for Grpc {
    async fn list(&self, request: Request<pb::Empty>) -> Result<Response<pb::Json>, Status> {
        let caller = self.caller(&request)?;
        Ok(items(&self.0.list_clusters(&caller).await?)?)
    }

    async fn get(&self, request: Request<pb::ClusterQuery>) -> Result<Response<pb::Json>, Status> {
        let caller = self.caller(&request)?;
        let id = cluster_id(request.into_inner())?;
        Ok(json(&self.0.get_cluster(&caller, &id).await?)?)
    }

    async fn create(
        &self,
        request: Request<pb::ClusterCreateRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let cluster = cluster_from_json(parse_json(&r.cluster, "cluster")?)?;
        Ok(json(
            &self.0.create_cluster(&caller, cluster, r.upsert).await?,
        )?)
    }

    async fn update(
        &self,
        request: Request<pb::ClusterUpdateRequest>,
    ) -> Result<Response<pb::Json>, Status> {
        let (caller, r) = self.authenticated(request)?;
        let cluster = cluster_from_json(parse_json(&r.cluster, "cluster")?)?;
        let id = ClusterId::parse(&cluster.spec.server, "server")?;
        Ok(json(&self.0.update_cluster(&caller, &id, cluster).await?)?)
    }

    async fn delete(
        &self,
        request: Request<pb::ClusterQuery>,
    ) -> Result<Response<pb::Empty>, Status> {
        let caller = self.caller(&request)?;
        let id = cluster_id(request.into_inner())?;
        self.0.delete_cluster(&caller, &id).await?;
        Ok(Response::new(pb::Empty {}))
    }
}
