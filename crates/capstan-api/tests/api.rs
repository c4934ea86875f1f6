//! End-to-end tests of the API over real HTTP on loopback: one server per test, over an
//! embedded store in a temporary directory, spoken to with REST (reqwest) and gRPC (the
//! generated clients).
//!
//! Most scenarios run twice, once per transport, through [`Client`], which speaks either and
//! reports a refusal as its gRPC code — checking on the way, for REST, that the HTTP status is
//! the one that code maps to (401, 403, 404, 409, 400, 429).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use capstan_api::accounts::{AccountConfig, Accounts};
use capstan_api::rbac::Policy;
use capstan_api::service::{Api, ApiConfig};
use capstan_api::webhook::WebhookSecrets;
use capstan_model::{Application, REFRESH_ANNOTATION, RESOURCES_FINALIZER, TERMINATE_ANNOTATION};
use capstan_proto::api::v1 as pb;
use capstan_store::kinds::{AppProjects, Applications};
use capstan_store::typed::{ObjectRef, TypedStore};
use common::{
    Answer, Client, DEADLINE, Harness, Kind, NS, Refused, assert_refused, names, open_store,
    over_rest_and_grpc, password_of,
};
use hmac::{KeyInit as _, Mac as _};
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

/// Team A runs its project's Applications, except deleting `protected`.
const POLICY: &str = "\
p, role:team-a, applications, *, team-a/*, allow
p, role:team-a, applications, delete, team-a/protected, deny
g, alice, role:team-a
";
const TEAM_A: &str = "\
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team-a}
spec: {}
";
const GITHUB_SECRET: &str = "the-github-webhook-secret";
const REPO_X: &str = "https://github.com/example/x";
const REPO_Y: &str = "https://github.com/example/y";

fn config() -> Result<ApiConfig> {
    let mut config = ApiConfig::new(Policy::parse(POLICY, None)?);
    config.accounts = ["alice=login", "bob=login", "ci-bot=apiKey"]
        .iter()
        .map(|a| a.parse::<AccountConfig>().map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    config.webhook = WebhookSecrets {
        github: GITHUB_SECRET.to_owned(),
        ..WebhookSecrets::default()
    };
    Ok(config)
}

impl Harness {
    /// An API server on loopback over a fresh store holding project team-a, with the
    /// passwords of alice and bob set.
    async fn start() -> Result<Self> {
        let (dir, store) = open_store().await?;
        TypedStore::<AppProjects>::new(store.clone())
            .create(
                &ObjectRef::new(NS, "team-a"),
                &capstan_model::parse_app_project_yaml(TEAM_A)?,
            )
            .await?;
        Harness::serve(dir, store, config()?, &["alice", "bob"]).await
    }

    /// Sessions of admin, alice and bob.
    async fn users(&self, kind: Kind) -> Result<(Client, Client, Client)> {
        Ok((
            self.login(kind, "admin").await?,
            self.login(kind, "alice").await?,
            self.login(kind, "bob").await?,
        ))
    }

    /// The Application `name` as stored for the controller, if it exists.
    async fn find(&self, name: &str) -> Result<Option<Application>> {
        Ok(TypedStore::<Applications>::new(self.store.clone())
            .get(&ObjectRef::new(NS, name))
            .await?
            .map(|o| o.spec.value))
    }

    async fn stored(&self, name: &str) -> Result<Application> {
        self.find(name)
            .await?
            .with_context(|| format!("application {name} is not in the store"))
    }

    /// The refresh annotation of stored Application `name`.
    async fn refresh_of(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .stored(name)
            .await?
            .metadata
            .annotations
            .get(REFRESH_ANNOTATION)
            .cloned())
    }

    /// When `user`'s password was last set, as stored.
    async fn password_mtime(&self, user: &str) -> Result<u64> {
        let account = TypedStore::<Accounts>::new(self.store.clone())
            .get(&ObjectRef::new(NS, user))
            .await?
            .with_context(|| format!("account {user} has no state"))?;
        Ok(account.spec.value.password_mtime)
    }

    /// Delivers a GitHub webhook `event`; the status and the JSON answer.
    async fn deliver(
        &self,
        event: &str,
        body: &str,
        signature: Option<String>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .http
            .post(format!("{}/api/webhook", self.base))
            .header("X-GitHub-Event", event)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, serde_json::from_str(&response.text().await?)?))
    }
}

/// `{"items": [...]}` → the items.
fn items_of(answer: Value) -> Value {
    answer
        .get("items")
        .cloned()
        .unwrap_or_else(|| panic!("no items in {answer}"))
}

/// What to list.
#[derive(Clone, Debug, Default)]
struct Query {
    projects: Vec<String>,
    selector: String,
    search: String,
    limit: u32,
    continue_token: String,
    fields: Vec<String>,
}

impl Query {
    fn rest(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for project in &self.projects {
            query.append_pair("projects", project);
        }
        for field in &self.fields {
            query.append_pair("fields", field);
        }
        let limit = if self.limit > 0 {
            self.limit.to_string()
        } else {
            String::new()
        };
        let optional = [
            ("selector", self.selector.as_str()),
            ("search", self.search.as_str()),
            ("continue", self.continue_token.as_str()),
            ("limit", limit.as_str()),
        ];
        for (key, value) in optional.iter().filter(|(_, v)| !v.is_empty()) {
            query.append_pair(key, value);
        }
        query.finish()
    }

    fn grpc(&self) -> pb::ApplicationQuery {
        pb::ApplicationQuery {
            projects: self.projects.clone(),
            selector: self.selector.clone(),
            search: self.search.clone(),
            limit: self.limit,
            r#continue: self.continue_token.clone(),
            fields: self.fields.clone(),
            ..pb::ApplicationQuery::default()
        }
    }
}

/// One page of a list.
#[derive(Debug)]
struct Page {
    items: Vec<Value>,
    continue_token: Option<String>,
    resource_version: u64,
}

/// A change a watch delivered.
#[derive(Debug)]
struct Event {
    kind: String,
    application: Value,
    resource_version: u64,
}

impl Event {
    fn name(&self) -> &str {
        self.application["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
    }
}

impl Client {
    fn token(&self) -> &str {
        self.token.as_deref().expect("a client with a token")
    }

    async fn logout(&self) -> Answer<()> {
        match self.kind {
            Kind::Rest => self
                .rest(Method::DELETE, "/api/v1/session", None)
                .await
                .map(drop),
            Kind::Grpc => self
                .grpc(self.sessions().delete(self.request(pb::Empty {})).await)
                .map(drop),
        }
    }

    async fn list(&self, query: &Query) -> Answer<Page> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications?{}", query.rest());
                let list = self.rest(Method::GET, &path, None).await?;
                Ok(Page {
                    items: items_of(list.clone())
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                    continue_token: list["metadata"]["continue"].as_str().map(str::to_owned),
                    resource_version: list["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .expect("the list's resourceVersion"),
                })
            }
            Kind::Grpc => {
                let list = self.grpc(self.apps().list(self.request(query.grpc())).await)?;
                Ok(Page {
                    items: list
                        .items
                        .iter()
                        .map(|i| serde_json::from_str(i).expect("an item is JSON"))
                        .collect(),
                    continue_token: Some(list.r#continue).filter(|c| !c.is_empty()),
                    resource_version: list.resource_version,
                })
            }
        }
    }

    async fn update(&self, app: &Value) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let name = app["metadata"]["name"].as_str().unwrap_or_default();
                let path = format!("/api/v1/applications/{name}");
                self.rest(Method::PUT, &path, Some(app)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ApplicationUpdateRequest {
                    application: app.to_string(),
                });
                self.grpc_json(self.apps().update(request).await)
            }
        }
    }

    async fn patch(&self, name: &str, patch: &str, patch_type: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let body = json!({"patch": patch, "patchType": patch_type});
                let path = format!("/api/v1/applications/{name}");
                self.rest(Method::PATCH, &path, Some(&body)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ApplicationPatchRequest {
                    name: name.to_owned(),
                    patch: patch.to_owned(),
                    patch_type: patch_type.to_owned(),
                    ..pb::ApplicationPatchRequest::default()
                });
                self.grpc_json(self.apps().patch(request).await)
            }
        }
    }

    /// Syncs `name` to `main` with prune, the hook strategy and `CreateNamespace=true` (over
    /// REST, in the JSON Argo CD's UI and CLI send).
    async fn sync(&self, name: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let body = json!({
                    "revision": "main",
                    "prune": true,
                    "dryRun": false,
                    "strategy": {"hook": {}},
                    "syncOptions": {"items": ["CreateNamespace=true"]},
                });
                let path = format!("/api/v1/applications/{name}/sync");
                self.rest(Method::POST, &path, Some(&body)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ApplicationSyncRequest {
                    name: name.to_owned(),
                    revision: "main".to_owned(),
                    prune: true,
                    strategy: "hook".to_owned(),
                    sync_options: vec!["CreateNamespace=true".to_owned()],
                    ..pb::ApplicationSyncRequest::default()
                });
                self.grpc_json(self.apps().sync(request).await)
            }
        }
    }

    async fn rollback(&self, name: &str, id: i64) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications/{name}/rollback");
                self.rest(Method::POST, &path, Some(&json!({"id": id})))
                    .await
            }
            Kind::Grpc => {
                let request = self.request(pb::ApplicationRollbackRequest {
                    name: name.to_owned(),
                    id,
                    ..pb::ApplicationRollbackRequest::default()
                });
                self.grpc_json(self.apps().rollback(request).await)
            }
        }
    }

    async fn terminate(&self, name: &str) -> Answer<()> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications/{name}/operation");
                self.rest(Method::DELETE, &path, None).await.map(drop)
            }
            Kind::Grpc => self
                .grpc(self.apps().terminate_operation(self.app_ref(name)).await)
                .map(drop),
        }
    }

    async fn history(&self, name: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications/{name}/history");
                self.rest(Method::GET, &path, None).await.map(items_of)
            }
            Kind::Grpc => self.grpc_json(self.apps().history(self.app_ref(name)).await),
        }
    }

    async fn managed_resources(&self, name: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications/{name}/managed-resources");
                self.rest(Method::GET, &path, None).await.map(items_of)
            }
            Kind::Grpc => self.grpc_json(self.apps().managed_resources(self.app_ref(name)).await),
        }
    }

    /// The names of the accounts the caller sees.
    async fn accounts(&self) -> Answer<Vec<String>> {
        let list = match self.kind {
            Kind::Rest => items_of(self.rest(Method::GET, "/api/v1/account", None).await?),
            Kind::Grpc => self.grpc_json(
                self.accounts_client()
                    .list(self.request(pb::Empty {}))
                    .await,
            )?,
        };
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["name"].as_str().map(str::to_owned))
            .collect())
    }

    async fn account(&self, name: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/account/{name}");
                self.rest(Method::GET, &path, None).await
            }
            Kind::Grpc => {
                let request = self.request(pb::AccountRef {
                    name: name.to_owned(),
                });
                self.grpc_json(self.accounts_client().get(request).await)
            }
        }
    }

    async fn create_token(&self, name: &str, id: &str) -> Answer<String> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/account/{name}/token");
                let answer = self
                    .rest(Method::POST, &path, Some(&json!({"id": id})))
                    .await?;
                Ok(answer["token"].as_str().expect("a token").to_owned())
            }
            Kind::Grpc => {
                let request = self.request(pb::TokenRequest {
                    name: name.to_owned(),
                    id: id.to_owned(),
                    ..pb::TokenRequest::default()
                });
                Ok(self
                    .grpc(self.accounts_client().create_token(request).await)?
                    .token)
            }
        }
    }

    async fn delete_token(&self, name: &str, id: &str) -> Answer<()> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/account/{name}/token/{id}");
                self.rest(Method::DELETE, &path, None).await.map(drop)
            }
            Kind::Grpc => {
                let request = self.request(pb::TokenRef {
                    name: name.to_owned(),
                    id: id.to_owned(),
                });
                self.grpc(self.accounts_client().delete_token(request).await)
                    .map(drop)
            }
        }
    }

    /// A gRPC watch of the Applications the caller sees (resuming after `resource_version`
    /// when not 0).
    async fn watch(&self, resource_version: u64) -> Answer<tonic::Streaming<pb::ApplicationEvent>> {
        let query = pb::ApplicationQuery {
            resource_version,
            ..pb::ApplicationQuery::default()
        };
        self.grpc(self.apps().watch(self.request(query)).await)
    }
}

/// The next event of a watch (within the deadline).
async fn next_event(events: &mut tonic::Streaming<pb::ApplicationEvent>) -> Result<Event> {
    let event = tokio::time::timeout(DEADLINE, events.message())
        .await
        .context("no watch event within the deadline")??
        .context("the watch ended")?;
    Ok(Event {
        kind: event.r#type,
        application: serde_json::from_str(&event.application)?,
        resource_version: event.resource_version,
    })
}

/// An Application in Argo CD's JSON.
fn application(name: &str, project: &str, repo: &str, revision: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "project": project,
            "source": {"repoURL": repo, "path": "deploy", "targetRevision": revision},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"},
        },
    })
}

fn team_app(name: &str) -> Value {
    application(name, "team-a", REPO_X, "HEAD")
}

fn default_app(name: &str) -> Value {
    application(name, "default", REPO_X, "HEAD")
}

fn label_patch(key: &str, value: &str) -> String {
    json!({"metadata": {"labels": {key: value}}}).to_string()
}

fn target_revision(app: &Application) -> &str {
    app.spec
        .source
        .as_ref()
        .map_or("", |s| s.target_revision.as_str())
}

/// The token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').expect("a JWT has three parts");
    let mut chars: Vec<char> = signature.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    format!("{signed}.{}", chars.into_iter().collect::<String>())
}

/// The `iat` claim of a JWT.
fn issued_at(token: &str) -> Result<u64> {
    let payload = token.split('.').nth(1).context("a JWT has a payload")?;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    claims["iat"].as_u64().context("the token has an iat")
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits (polling the clock, within the deadline) until the clock is past second `second`.
async fn until_after_second(second: u64) -> Result<()> {
    capstan_testkit::wait::wait_until(&format!("the clock past {second}"), DEADLINE, || {
        let past = now_seconds() > second;
        async move { Ok(past.then_some(())) }
    })
    .await
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`, as GitHub signs deliveries.
fn github_signature(secret: &str, body: &str) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

over_rest_and_grpc!(
    sessions,
    application_crud,
    application_operations,
    application_deletion,
    accounts,
    list_paging_and_fields,
    api_tokens,
);

async fn sessions(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    // A second start on the same store creates no admin password, and shares the secret.
    let again = Api::start(harness.store.clone(), None, harness.config.clone()).await?;
    assert_eq!(again.initial_admin_password, None);

    let anonymous = harness.client(kind);
    assert_refused(
        anonymous.login("alice", "wrong-password").await,
        Code::Unauthenticated,
    );
    let alice = harness.login(kind, "alice").await?;
    assert_eq!(alice.user_info().await?, "alice");
    assert_eq!(again.api.authenticate(alice.token())?.subject.user, "alice");

    for bad in [
        anonymous.clone(),
        anonymous.with_token("not-a-token"),
        anonymous.with_token(&tampered(alice.token())),
    ] {
        assert_refused(bad.user_info().await, Code::Unauthenticated);
    }

    let other_session = harness.login(kind, "alice").await?;
    alice.logout().await?;
    assert_refused(alice.user_info().await, Code::Unauthenticated);
    assert_eq!(other_session.user_info().await?, "alice");

    for _ in 0..5 {
        assert_refused(
            anonymous.login("alice", "wrong-password").await,
            Code::Unauthenticated,
        );
    }
    assert_refused(
        anonymous.login("alice", &password_of("alice")).await,
        Code::ResourceExhausted,
    );
    Ok(())
}

async fn application_crud(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let (admin, alice, bob) = harness.users(kind).await?;

    // create
    let created = alice.create(&team_app("web"), false).await?;
    assert_eq!(created["metadata"]["name"], "web");
    assert_eq!(created["metadata"]["namespace"], NS);
    assert_refused(
        bob.create(&team_app("bobs"), false).await,
        Code::PermissionDenied,
    );
    assert_refused(
        alice.create(&default_app("other"), false).await,
        Code::PermissionDenied,
    );
    admin.create(&default_app("other"), false).await?;
    alice.create(&team_app("api"), false).await?;
    let same = alice.create(&team_app("web"), false).await?;
    assert_eq!(
        same["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let different = application("web", "team-a", REPO_X, "v1");
    assert_refused(alice.create(&different, false).await, Code::AlreadyExists);
    alice.create(&different, true).await?;
    assert_eq!(target_revision(&harness.stored("web").await?), "v1");

    // get and list
    assert_eq!(
        alice.get("web", "").await?["spec"]["source"]["targetRevision"],
        "v1"
    );
    assert_refused(alice.get("other", "").await, Code::PermissionDenied);
    assert_refused(bob.get("web", "").await, Code::PermissionDenied);
    assert_refused(admin.get("missing", "").await, Code::NotFound);
    assert_eq!(
        names(&alice.list(&Query::default()).await?.items),
        ["api", "web"]
    );
    assert!(bob.list(&Query::default()).await?.items.is_empty());
    assert_eq!(
        names(&admin.list(&Query::default()).await?.items),
        ["api", "other", "web"]
    );

    // update
    let read = alice.get("web", "").await?;
    let mut newer = read.clone();
    newer["spec"]["source"]["targetRevision"] = json!("v2");
    let updated = alice.update(&newer).await?;
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        read["metadata"]["resourceVersion"]
    );
    let mut stale = read;
    stale["spec"]["source"]["targetRevision"] = json!("v3");
    assert_refused(alice.update(&stale).await, Code::Aborted);
    assert_refused(bob.update(&updated).await, Code::PermissionDenied);
    assert_eq!(target_revision(&harness.stored("web").await?), "v2");

    // patch
    let patched = alice
        .patch("web", &label_patch("env", "prod"), "merge")
        .await?;
    assert_eq!(patched["metadata"]["labels"]["env"], "prod");
    let replace = r#"[{"op": "replace", "path": "/spec/source/path", "value": "deploy/v2"}]"#;
    alice.patch("web", replace, "json").await?;
    let stored = harness.stored("web").await?;
    assert_eq!(
        stored.metadata.labels.get("env").map(String::as_str),
        Some("prod")
    );
    assert_eq!(
        stored.spec.source.as_ref().map(|s| s.path.as_str()),
        Some("deploy/v2")
    );
    let invalid = [
        ("{not json", "merge"),
        (r#"[{"op": "remove", "path": "/spec/nothing"}]"#, "json"),
        (r#"{"metadata": {"name": "renamed"}}"#, "merge"),
        ("{}", "strategic"),
    ];
    for (patch, patch_type) in invalid {
        assert_refused(
            alice.patch("web", patch, patch_type).await,
            Code::InvalidArgument,
        );
    }
    assert_refused(
        bob.patch("web", &label_patch("env", "dev"), "merge").await,
        Code::PermissionDenied,
    );
    Ok(())
}

async fn application_operations(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let (_, alice, bob) = harness.users(kind).await?;
    alice.create(&team_app("web"), false).await?;
    alice.create(&team_app("api"), false).await?;

    // sync
    assert_refused(bob.sync("web").await, Code::PermissionDenied);
    alice.sync("web").await?;
    let operation = harness
        .stored("web")
        .await?
        .operation
        .context("an operation")?;
    assert_eq!(operation.initiated_by.username, "alice");
    let sync = operation.sync.context("a sync operation")?;
    assert!(sync.prune && !sync.dry_run, "{sync:?}");
    assert_eq!(sync.revision, "main");
    assert!(sync.sync_options.has("CreateNamespace=true"), "{sync:?}");
    assert!(sync.sync_strategy.and_then(|s| s.hook).is_some());
    assert_refused(alice.sync("web").await, Code::FailedPrecondition);

    // terminate
    assert_refused(bob.terminate("web").await, Code::PermissionDenied);
    alice.terminate("web").await?;
    let web = harness.stored("web").await?;
    assert_eq!(
        web.metadata
            .annotations
            .get(TERMINATE_ANNOTATION)
            .map(String::as_str),
        Some("alice")
    );
    assert_refused(alice.terminate("api").await, Code::FailedPrecondition);

    // rollback without history
    assert_refused(alice.rollback("api", 1).await, Code::NotFound);

    // refresh
    let refreshed = alice.get("api", "hard").await?;
    assert_eq!(
        refreshed["metadata"]["annotations"][REFRESH_ANNOTATION],
        "hard"
    );
    assert_eq!(harness.refresh_of("api").await?.as_deref(), Some("hard"));
    assert_refused(alice.get("api", "sideways").await, Code::InvalidArgument);

    // history and resources: the live state needs a controller, which this API has not
    // (tests/live.rs and capstand's tests give it one); RBAC is checked first.
    assert_eq!(alice.history("api").await?, json!([]));
    assert_refused(alice.managed_resources("api").await, Code::Unavailable);
    assert_refused(bob.history("api").await, Code::PermissionDenied);
    assert_refused(bob.managed_resources("api").await, Code::PermissionDenied);
    Ok(())
}

async fn application_deletion(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let (admin, alice, bob) = harness.users(kind).await?;
    for name in ["protected", "api", "web"] {
        alice.create(&team_app(name), false).await?;
    }
    // Deny wins over team-a's allow.
    assert_refused(
        alice.delete("protected", None).await,
        Code::PermissionDenied,
    );
    assert_refused(bob.delete("web", None).await, Code::PermissionDenied);

    alice.delete("api", Some(false)).await?;
    assert!(harness.find("api").await?.is_none());

    alice.delete("web", None).await?;
    let web = harness.stored("web").await?;
    assert!(
        web.metadata
            .finalizers
            .iter()
            .any(|f| f == RESOURCES_FINALIZER),
        "{:?}",
        web.metadata.finalizers
    );
    assert!(web.metadata.deletion_timestamp.is_some());

    admin.delete("protected", Some(false)).await?;
    assert!(harness.find("protected").await?.is_none());
    assert_refused(admin.delete("protected", None).await, Code::NotFound);
    Ok(())
}

async fn accounts(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let (admin, alice, bob) = harness.users(kind).await?;
    assert_eq!(alice.accounts().await?, ["alice"]);
    assert_eq!(admin.accounts().await?, ["admin", "alice", "bob", "ci-bot"]);
    assert_eq!(
        alice.account("alice").await?["capabilities"],
        json!(["login"])
    );
    assert_refused(alice.account("bob").await, Code::PermissionDenied);
    assert_eq!(
        admin.account("ci-bot").await?["capabilities"],
        json!(["apiKey"])
    );
    assert_refused(admin.account("nobody").await, Code::NotFound);

    assert_eq!(
        alice.can_i("applications", "sync", "team-a/web").await?,
        "yes"
    );
    assert_eq!(bob.can_i("applications", "sync", "team-a/web").await?, "no");
    assert_eq!(
        alice
            .can_i("applications", "delete", "team-a/protected")
            .await?,
        "no"
    );
    assert_eq!(
        admin
            .can_i("applications", "delete", "team-a/protected")
            .await?,
        "yes"
    );
    Ok(())
}

/// Every page of a list (`limit` a page), following the continue tokens: the names per page.
async fn pages(client: &Client, limit: u32) -> Result<Vec<Vec<String>>> {
    let mut query = Query {
        limit,
        ..Query::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = client.list(&query).await?;
        pages.push(names(&page.items));
        ensure!(pages.len() <= 100, "the continue tokens do not end");
        match page.continue_token {
            Some(token) => query.continue_token = token,
            None => return Ok(pages),
        }
    }
}

async fn list_paging_and_fields(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let (admin, alice, _) = harness.users(kind).await?;
    let all: Vec<String> = (0..30).map(|i| format!("app-{i:02}")).collect();
    // Even ones are team A's, in production.
    let even: Vec<String> = all.iter().step_by(2).cloned().collect();
    for (i, name) in all.iter().enumerate() {
        let (project, env) = if i % 2 == 0 {
            ("team-a", "prod")
        } else {
            ("default", "dev")
        };
        let mut app = application(name, project, REPO_X, "HEAD");
        app["metadata"]["labels"] = json!({"env": env});
        admin.create(&app, false).await?;
    }

    let admin_pages = pages(&admin, 10).await?;
    assert_eq!(
        admin_pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10, 10]
    );
    assert_eq!(admin_pages.concat(), all);
    assert_eq!(pages(&alice, 10).await?.concat(), even);

    let trimmed = admin
        .list(&Query {
            fields: vec!["metadata.name".to_owned()],
            ..Query::default()
        })
        .await?;
    assert_eq!(trimmed.items.len(), 30);
    for (item, name) in trimmed.items.iter().zip(&all) {
        assert_eq!(*item, json!({"metadata": {"name": name}}));
    }

    let filtered = |query: Query| {
        let admin = admin.clone();
        async move { Ok::<_, Refused>(names(&admin.list(&query).await?.items)) }
    };
    let by_project = Query {
        projects: vec!["team-a".to_owned()],
        ..Query::default()
    };
    assert_eq!(filtered(by_project).await?, even);
    let by_label = Query {
        selector: "env=prod".to_owned(),
        ..Query::default()
    };
    assert_eq!(filtered(by_label).await?, even);
    let by_name = Query {
        search: "APP-1".to_owned(),
        ..Query::default()
    };
    assert_eq!(filtered(by_name).await?, &all[10..20]);
    Ok(())
}

async fn api_tokens(kind: Kind) -> Result<()> {
    let harness = Harness::start().await?;
    let (admin, alice, _) = harness.users(kind).await?;
    let token = admin.create_token("ci-bot", "ci").await?;
    let bot = harness.client(kind).with_token(&token);
    assert_eq!(bot.user_info().await?, "ci-bot");
    assert_refused(
        admin.create_token("ci-bot", "ci").await,
        Code::AlreadyExists,
    );
    assert_refused(
        alice.create_token("ci-bot", "mine").await,
        Code::PermissionDenied,
    );
    // alice may manage her own tokens, but her account has no apiKey capability.
    assert_refused(
        alice.create_token("alice", "laptop").await,
        Code::FailedPrecondition,
    );
    assert_refused(
        admin.create_token("alice", "laptop").await,
        Code::FailedPrecondition,
    );

    admin.delete_token("ci-bot", "ci").await?;
    assert_refused(bot.user_info().await, Code::Unauthenticated);
    assert_refused(admin.delete_token("ci-bot", "ci").await, Code::NotFound);

    // A password change ends the sessions begun before it (in an earlier second: see
    // `a_session_begun_in_the_second_of_a_password_change_is_refused_too`).
    until_after_second(issued_at(alice.token())?).await?;
    alice
        .set_password("", &password_of("alice"), "alice-password-2")
        .await?;
    assert_refused(alice.user_info().await, Code::Unauthenticated);
    let again = harness
        .login_with(kind, "alice", "alice-password-2")
        .await?;
    assert_eq!(again.user_info().await?, "alice");
    Ok(())
}

#[tokio::test]
async fn a_session_begun_in_the_second_of_a_password_change_is_refused_too() -> Result<()> {
    let harness = Harness::start().await?;
    let mut password = password_of("alice");
    // Sessions carry whole seconds: try until the change lands in the login's second.
    for attempt in 0..10 {
        let alice = harness.login_with(Kind::Rest, "alice", &password).await?;
        let next = format!("alice-password-{attempt}-next");
        alice.set_password("", &password, &next).await?;
        password = next;
        if harness.password_mtime("alice").await? == issued_at(alice.token())? {
            assert_refused(alice.user_info().await, Code::Unauthenticated);
            return Ok(());
        }
    }
    bail!("no password change landed in the second of the session before it")
}

#[tokio::test]
async fn a_caller_without_get_cannot_tell_missing_from_forbidden() -> Result<()> {
    let harness = Harness::start().await?;
    let (admin, _, bob) = harness.users(Kind::Rest).await?;
    admin.create(&team_app("web"), false).await?;
    assert_refused(bob.get("web", "").await, Code::PermissionDenied);
    assert_refused(bob.get("missing", "").await, Code::PermissionDenied);
    Ok(())
}

#[tokio::test]
async fn rest_sync_accepts_the_nulls_argo_cd_clients_send() -> Result<()> {
    let harness = Harness::start().await?;
    let alice = harness.login(Kind::Rest, "alice").await?;
    alice.create(&team_app("web"), false).await?;
    // Proto3 JSON treats null as the default; Argo CD's UI sends `resources: null` to sync all.
    let body = json!({
        "revision": "main",
        "prune": false,
        "resources": null,
        "revisions": null,
        "syncOptions": null,
        "retryStrategy": null,
    });
    alice
        .rest(Method::POST, "/api/v1/applications/web/sync", Some(&body))
        .await?;
    assert!(harness.stored("web").await?.operation.is_some());
    Ok(())
}

#[tokio::test]
async fn github_push_refreshes_only_the_apps_following_the_pushed_branch() -> Result<()> {
    let harness = Harness::start().await?;
    let admin = harness.login(Kind::Rest, "admin").await?;
    admin
        .create(&application("a", "default", REPO_X, "HEAD"), false)
        .await?;
    admin
        .create(&application("b", "default", REPO_X, "release"), false)
        .await?;
    admin
        .create(&application("c", "default", REPO_Y, "HEAD"), false)
        .await?;
    let push = json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": "1111111111111111111111111111111111111111",
        "repository": {
            "full_name": "example/x",
            "html_url": REPO_X,
            "clone_url": format!("{REPO_X}.git"),
            "default_branch": "main",
        },
        "commits": [{"added": ["deploy/new.yaml"], "modified": ["deploy/app.yaml"], "removed": []}],
    })
    .to_string();

    let forged = harness
        .deliver(
            "push",
            &push,
            Some(github_signature("not-the-secret", &push)),
        )
        .await?;
    assert_eq!(forged.0, 401, "{}", forged.1);
    let unsigned = harness.deliver("push", &push, None).await?;
    assert_eq!(unsigned.0, 401, "{}", unsigned.1);
    let ping = json!({"zen": "Keep it logically awesome.", "hook_id": 1}).to_string();
    let pinged = harness
        .deliver("ping", &ping, Some(github_signature(GITHUB_SECRET, &ping)))
        .await?;
    assert_eq!(pinged, (200, json!({"ignored": "ping"})));
    for name in ["a", "b", "c"] {
        assert_eq!(harness.refresh_of(name).await?, None, "{name}");
    }

    let pushed = harness
        .deliver("push", &push, Some(github_signature(GITHUB_SECRET, &push)))
        .await?;
    assert_eq!(pushed, (200, json!({"refreshed": ["capstan/a"]})));
    assert_eq!(harness.refresh_of("a").await?.as_deref(), Some("normal"));
    assert_eq!(harness.refresh_of("b").await?, None);
    assert_eq!(harness.refresh_of("c").await?, None);
    Ok(())
}

#[tokio::test]
async fn grpc_watch_sends_the_apps_a_caller_may_see_and_their_changes() -> Result<()> {
    let harness = Harness::start().await?;
    let admin = harness.login(Kind::Grpc, "admin").await?;
    let alice = harness.login(Kind::Grpc, "alice").await?;
    admin.create(&team_app("web"), false).await?;
    let mut events = alice.watch(0).await?;
    let first = next_event(&mut events).await?;
    assert_eq!((first.kind.as_str(), first.name()), ("ADDED", "web"));

    admin.create(&default_app("hidden"), false).await?;
    admin
        .patch("web", &label_patch("step", "1"), "merge")
        .await?;
    // Events come in store order: had `hidden` been sent, it would come first.
    let next = next_event(&mut events).await?;
    assert_eq!((next.kind.as_str(), next.name()), ("MODIFIED", "web"));
    assert_eq!(next.application["metadata"]["labels"]["step"], "1");
    assert!(next.resource_version > first.resource_version);
    Ok(())
}

/// Admin creates `api` and `web` in team A; alice lists them. Admin and alice (gRPC), and the
/// list's resource version.
async fn two_apps_listed(harness: &Harness) -> Result<(Client, Client, u64)> {
    let admin = harness.login(Kind::Grpc, "admin").await?;
    let alice = harness.login(Kind::Grpc, "alice").await?;
    admin.create(&team_app("api"), false).await?;
    admin.create(&team_app("web"), false).await?;
    let listed = alice.list(&Query::default()).await?;
    assert_eq!(names(&listed.items), ["api", "web"]);
    Ok((admin, alice, listed.resource_version))
}

/// After [`two_apps_listed`], admin labels `web`; the first event of alice's watch resumed
/// from the list, and the list's resource version.
async fn first_event_after_a_listed_app_changes(harness: &Harness) -> Result<(Event, u64)> {
    let (admin, alice, listed) = two_apps_listed(harness).await?;
    admin
        .patch("web", &label_patch("step", "2"), "merge")
        .await?;
    let mut events = alice.watch(listed).await?;
    Ok((next_event(&mut events).await?, listed))
}

#[tokio::test]
async fn grpc_watch_resumed_from_a_list_sends_only_later_changes() -> Result<()> {
    let harness = Harness::start().await?;
    let (event, listed) = first_event_after_a_listed_app_changes(&harness).await?;
    // A watch starting over would send `api` (first in order) as ADDED first.
    assert_eq!(event.name(), "web", "{event:?}");
    assert_eq!(event.application["metadata"]["labels"]["step"], "2");
    assert!(event.resource_version > listed, "{event:?} after {listed}");
    Ok(())
}

#[tokio::test]
async fn grpc_watch_resumed_from_a_list_reports_changes_as_modified() -> Result<()> {
    let harness = Harness::start().await?;
    let (event, _) = first_event_after_a_listed_app_changes(&harness).await?;
    assert_eq!((event.kind.as_str(), event.name()), ("MODIFIED", "web"));
    Ok(())
}

#[tokio::test]
async fn grpc_watch_resumed_from_a_list_reports_the_deletion_of_a_listed_app() -> Result<()> {
    let harness = Harness::start().await?;
    let (admin, alice, listed) = two_apps_listed(&harness).await?;
    admin.delete("web", Some(false)).await?;
    admin
        .patch("api", &label_patch("step", "2"), "merge")
        .await?;
    let mut events = alice.watch(listed).await?;
    // The deletion came first; the change to `api` after it shows the stream went past it.
    let event = next_event(&mut events).await?;
    assert_eq!(
        (event.kind.as_str(), event.name()),
        ("DELETED", "web"),
        "{event:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sse_stream_sends_the_apps_a_caller_may_see() -> Result<()> {
    let harness = Harness::start().await?;
    let admin = harness.login(Kind::Rest, "admin").await?;
    let alice = harness.login(Kind::Rest, "alice").await?;
    admin.create(&team_app("web"), false).await?;
    let mut response = harness
        .http
        .get(format!("{}/api/v1/stream/applications", harness.base))
        .bearer_auth(alice.token())
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut received = String::new();
    let line = loop {
        let complete = received.rsplit_once('\n').map_or("", |(lines, _)| lines);
        if let Some(line) = complete
            .lines()
            .find(|l| l.starts_with("data:") && l.contains("\"ADDED\""))
        {
            break line.to_owned();
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .with_context(|| format!("no ADDED event within the deadline; got {received:?}"))??
            .with_context(|| format!("the stream ended; got {received:?}"))?;
        received.push_str(&String::from_utf8_lossy(&chunk));
    };
    let data: Value = serde_json::from_str(line.trim_start_matches("data:").trim())?;
    assert_eq!(data["result"]["type"], "ADDED");
    assert_eq!(data["result"]["application"]["metadata"]["name"], "web");
    Ok(())
}
