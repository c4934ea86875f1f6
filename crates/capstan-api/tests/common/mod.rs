//! The harness the end-to-end tests share (`api.rs`, `resources.rs`): an API server on
//! loopback over an embedded store in a temporary directory, and a [`Client`] that speaks
//! REST (reqwest) or gRPC (the generated clients) to it and reports a refusal as its gRPC
//! code — checking on the way, for REST, that the HTTP status is the one that code maps to.
//!
//! The [`Client`] keeps every answer it receives, so a test can check that a credential it
//! sent never came back in any of them. What only one test file needs (its policy, its
//! users, the methods of the services it tests) stays in that file, in its own
//! `impl Harness` and `impl Client` blocks.
//!
//! Each test file compiles this module on its own: an item only one of them uses is marked
//! `#[allow(dead_code)]`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig, Started};
use capstan_proto::api::v1 as pb;
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use pb::account_service_client::AccountServiceClient;
use pb::application_service_client::ApplicationServiceClient;
use pb::session_service_client::SessionServiceClient;
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

/// The control plane's namespace.
pub const NS: &str = "capstan";
/// How long any awaited condition may take.
#[allow(dead_code)]
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The password admin gives `user` when the harness starts.
pub fn password_of(user: &str) -> String {
    format!("{user}-password-1")
}

/// A fresh embedded store in a temporary directory (kept while the store is used).
pub async fn open_store() -> Result<(tempfile::TempDir, Arc<dyn Store>)> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"), EmbeddedOptions::default()).await?,
    );
    Ok((dir, store))
}

/// An API server on loopback over a fresh store (no repo-server), with the passwords of its
/// users set ([`password_of`]).
pub struct Harness {
    #[allow(dead_code)]
    pub store: Arc<dyn Store>,
    #[allow(dead_code)]
    pub config: ApiConfig,
    pub admin_password: String,
    pub base: String,
    pub http: reqwest::Client,
    pub channel: Channel,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Harness {
    /// Starts the API with `config` over `store` (from [`open_store`], kept in `dir`) and
    /// has admin set the password of each of `users`.
    pub async fn serve(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        config: ApiConfig,
        users: &[&str],
    ) -> Result<Self> {
        let Started {
            api,
            initial_admin_password,
        } = Api::start(store.clone(), None, config.clone()).await?;
        let admin_password =
            initial_admin_password.context("the first start generates admin's password")?;
        let router = capstan_api::server::router(api, Arc::new(ApiMetrics::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(capstan_api::server::serve(
            listener,
            router,
            std::future::pending(),
        ));
        let channel = tonic::transport::Endpoint::from_shared(base.clone())?.connect_lazy();
        let harness = Harness {
            store,
            config,
            admin_password,
            base,
            http: reqwest::Client::new(),
            channel,
            server,
            _dir: dir,
        };
        let admin = harness.login(Kind::Rest, "admin").await?;
        for user in users {
            admin
                .set_password(user, &harness.admin_password, &password_of(user))
                .await?;
        }
        Ok(harness)
    }

    /// A client without a token.
    pub fn client(&self, kind: Kind) -> Client {
        Client {
            kind,
            base: self.base.clone(),
            http: self.http.clone(),
            channel: self.channel.clone(),
            token: None,
            answers: Arc::default(),
        }
    }

    /// A client with a session of `user` (logged in over `kind`) with their initial password.
    pub async fn login(&self, kind: Kind, user: &str) -> Result<Client> {
        let password = if user == "admin" {
            self.admin_password.clone()
        } else {
            password_of(user)
        };
        self.login_with(kind, user, &password).await
    }

    pub async fn login_with(&self, kind: Kind, user: &str, password: &str) -> Result<Client> {
        let token = self.client(kind).login(user, password).await?;
        Ok(self.client(kind).with_token(&token))
    }
}

/// Which transport a [`Client`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rest,
    Grpc,
}

/// A refused call: its gRPC code (for REST, read from the error body).
#[derive(Debug)]
pub struct Refused {
    pub code: Code,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused with {:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refused {}

impl From<tonic::Status> for Refused {
    fn from(status: tonic::Status) -> Self {
        Refused {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// The HTTP status the API answers a refusal of `code` with.
fn http_status(code: Code) -> u16 {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Unavailable => 503,
        _ => 500,
    }
}

#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, Refused>, code: Code) {
    match result {
        Err(refused) if refused.code == code => {}
        other => panic!("expected a refusal with {code:?}, got {other:?}"),
    }
}

pub type Answer<T> = Result<T, Refused>;

/// The names (`metadata.name`) of listed objects.
#[allow(dead_code)]
pub fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// An API client over one transport, with or without a token, keeping every answer.
#[derive(Clone)]
pub struct Client {
    pub kind: Kind,
    pub base: String,
    pub http: reqwest::Client,
    pub channel: Channel,
    pub token: Option<String>,
    pub answers: Arc<Mutex<Vec<String>>>,
}

impl Client {
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    fn keep(&self, text: &str) {
        self.answers
            .lock()
            .expect("not poisoned")
            .push(text.to_owned());
    }

    /// `METHOD path` with the token and a JSON body; the JSON answer, or the refusal (its
    /// HTTP status checked against its code).
    pub async fn rest(&self, method: Method, path: &str, body: Option<&Value>) -> Answer<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("the answer is read");
        self.keep(&text);
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let code = json["code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .map_or(Code::Unknown, Code::from);
        assert_eq!(
            status,
            http_status(code),
            "HTTP {status} for {code:?}: {json}"
        );
        Err(Refused {
            code,
            message: json["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// A gRPC answer, kept.
    pub fn grpc<T: std::fmt::Debug>(
        &self,
        result: Result<tonic::Response<T>, tonic::Status>,
    ) -> Answer<T> {
        match result {
            Ok(response) => {
                let answer = response.into_inner();
                self.keep(&format!("{answer:?}"));
                Ok(answer)
            }
            Err(status) => {
                self.keep(status.message());
                Err(status.into())
            }
        }
    }

    /// A gRPC `Json` answer, decoded.
    pub fn grpc_json(
        &self,
        result: Result<tonic::Response<pb::Json>, tonic::Status>,
    ) -> Answer<Value> {
        let text = self.grpc(result)?.json;
        Ok(serde_json::from_str(&text).expect("the gRPC answer holds JSON"))
    }

    /// A gRPC request carrying the token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .expect("a token fits in metadata");
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    pub fn apps(&self) -> ApplicationServiceClient<Channel> {
        ApplicationServiceClient::new(self.channel.clone())
    }

    pub fn sessions(&self) -> SessionServiceClient<Channel> {
        SessionServiceClient::new(self.channel.clone())
    }

    pub fn accounts_client(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }

    pub async fn login(&self, username: &str, password: &str) -> Answer<String> {
        match self.kind {
            Kind::Rest => {
                let body = json!({"username": username, "password": password});
                let answer = self
                    .rest(Method::POST, "/api/v1/session", Some(&body))
                    .await?;
                Ok(answer["token"].as_str().expect("a token").to_owned())
            }
            Kind::Grpc => {
                let request = self.request(pb::LoginRequest {
                    username: username.to_owned(),
                    password: password.to_owned(),
                });
                Ok(self.grpc(self.sessions().create(request).await)?.token)
            }
        }
    }

    /// The user name the token stands for.
    #[allow(dead_code)]
    pub async fn user_info(&self) -> Answer<String> {
        match self.kind {
            Kind::Rest => {
                let info = self
                    .rest(Method::GET, "/api/v1/session/userinfo", None)
                    .await?;
                assert_eq!(info["loggedIn"], true, "{info}");
                Ok(info["username"].as_str().unwrap_or_default().to_owned())
            }
            Kind::Grpc => {
                let info = self.grpc(
                    self.sessions()
                        .get_user_info(self.request(pb::Empty {}))
                        .await,
                )?;
                assert!(info.logged_in, "{info:?}");
                Ok(info.username)
            }
        }
    }

    // Applications (what both test files use).

    pub fn app_ref(&self, name: &str) -> tonic::Request<pb::ApplicationRef> {
        self.request(pb::ApplicationRef {
            name: name.to_owned(),
            ..pb::ApplicationRef::default()
        })
    }

    /// Gets Application `name`; `refresh` (`normal`, `hard`) asks for a refresh.
    #[allow(dead_code)]
    pub async fn get(&self, name: &str, refresh: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest if refresh.is_empty() => {
                let path = format!("/api/v1/applications/{name}");
                self.rest(Method::GET, &path, None).await
            }
            Kind::Rest => {
                let path = format!("/api/v1/applications/{name}?refresh={refresh}");
                self.rest(Method::GET, &path, None).await
            }
            Kind::Grpc => {
                let mut request = self.app_ref(name);
                request.get_mut().refresh = refresh.to_owned();
                self.grpc_json(self.apps().get(request).await)
            }
        }
    }

    pub async fn create(&self, app: &Value, upsert: bool) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications?upsert={upsert}");
                self.rest(Method::POST, &path, Some(app)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ApplicationCreateRequest {
                    application: app.to_string(),
                    upsert,
                });
                self.grpc_json(self.apps().create(request).await)
            }
        }
    }

    /// Deletes Application `name`; `cascade` `None` leaves the API's default.
    #[allow(dead_code)]
    pub async fn delete(&self, name: &str, cascade: Option<bool>) -> Answer<()> {
        match self.kind {
            Kind::Rest => {
                let query = cascade.map(|c| format!("?cascade={c}")).unwrap_or_default();
                let path = format!("/api/v1/applications/{name}{query}");
                self.rest(Method::DELETE, &path, None).await.map(drop)
            }
            Kind::Grpc => {
                let request = self.request(pb::ApplicationDeleteRequest {
                    name: name.to_owned(),
                    cascade,
                    ..pb::ApplicationDeleteRequest::default()
                });
                self.grpc(self.apps().delete(request).await).map(drop)
            }
        }
    }

    // Accounts.

    /// Sets `name`'s password (empty: the caller's own).
    pub async fn set_password(&self, name: &str, current: &str, new: &str) -> Answer<()> {
        match self.kind {
            Kind::Rest => {
                let body = json!({"name": name, "currentPassword": current, "newPassword": new});
                self.rest(Method::PUT, "/api/v1/account/password", Some(&body))
                    .await
                    .map(drop)
            }
            Kind::Grpc => {
                let request = self.request(pb::PasswordChange {
                    name: name.to_owned(),
                    current_password: current.to_owned(),
                    new_password: new.to_owned(),
                });
                self.grpc(self.accounts_client().update_password(request).await)
                    .map(drop)
            }
        }
    }

    /// `yes` or `no`.
    #[allow(dead_code)]
    pub async fn can_i(&self, resource: &str, action: &str, object: &str) -> Answer<String> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/account/can-i/{resource}/{action}/{object}");
                let answer = self.rest(Method::GET, &path, None).await?;
                Ok(answer["value"].as_str().unwrap_or_default().to_owned())
            }
            Kind::Grpc => {
                let request = self.request(pb::CanIRequest {
                    resource: resource.to_owned(),
                    action: action.to_owned(),
                    subresource: object.to_owned(),
                });
                Ok(self
                    .grpc(self.accounts_client().can_i(request).await)?
                    .value)
            }
        }
    }
}

/// Runs each scenario (an `async fn(Kind) -> Result<()>` of the test file) as two tests,
/// `SCENARIO::rest` and `SCENARIO::grpc`.
macro_rules! over_rest_and_grpc {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn rest() -> anyhow::Result<()> {
                super::$scenario($crate::common::Kind::Rest).await
            }

            #[tokio::test]
            async fn grpc() -> anyhow::Result<()> {
                super::$scenario($crate::common::Kind::Grpc).await
            }
        }
    )*};
}

pub(crate) use over_rest_and_grpc;
