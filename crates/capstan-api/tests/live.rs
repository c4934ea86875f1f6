//! The live-state methods (managed resources, diff, resource tree, events) at the API's edge,
//! over REST and gRPC: the caller and the request are checked by the API before the live
//! state is asked; the answers are Argo CD's documents, the same over both transports; an API
//! without a live state answers Unavailable. The live state here is a stand-in that echoes
//! what it was asked; the controller's real one is tested with a real cluster in capstand's
//! tests (`crates/capstand/tests/all_in_one.rs`).

mod common;

use std::sync::{Arc, Mutex};

use anyhow::Result;
use capstan_api::accounts::AccountConfig;
use capstan_api::live::{
    LiveFuture, LiveState, ManagedResource, NodeHealth, ResourceNode, ResourceRef, ResourceSelector,
};
use capstan_api::rbac::Policy;
use capstan_api::service::ApiConfig;
use capstan_model::Application;
use capstan_proto::api::v1 as pb;
use capstan_store::kinds::AppProjects;
use capstan_store::typed::{ObjectRef, TypedStore};
use common::{Answer, Client, Harness, Kind, NS, assert_refused, open_store, over_rest_and_grpc};
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

const POLICY: &str = "p, role:team-a, applications, get, team-a/*, allow\ng, alice, role:team-a\n";

/// Answers what it was asked, and remembers it.
#[derive(Debug, Default)]
struct Echo {
    asked: Mutex<Vec<String>>,
}

impl Echo {
    fn note(&self, what: String) {
        self.asked.lock().expect("not poisoned").push(what);
    }
}

impl LiveState for Echo {
    fn managed_resources<'a>(
        &'a self,
        at: &'a ObjectRef,
        app: &'a Application,
        manifests: Option<Vec<Value>>,
    ) -> LiveFuture<'a, Vec<ManagedResource>> {
        Box::pin(async move {
            let given = manifests.as_ref().map(Vec::len);
            self.note(format!("managed {at} given {given:?}"));
            Ok(vec![ManagedResource {
                kind: "ConfigMap".into(),
                namespace: app.spec.destination.namespace.clone(),
                name: "settings".into(),
                target_state: manifests
                    .and_then(|m| m.into_iter().next())
                    .or_else(|| Some(json!({"data": {"color": "blue"}}))),
                live_state: None,
                modified: true,
                diff: "+data:\n".into(),
                ..ManagedResource::default()
            }])
        })
    }

    fn resource_tree<'a>(
        &'a self,
        at: &'a ObjectRef,
        _app: &'a Application,
    ) -> LiveFuture<'a, Vec<ResourceNode>> {
        Box::pin(async move {
            self.note(format!("tree {at}"));
            let deployment = ResourceNode {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                namespace: "web".into(),
                name: "web".into(),
                uid: "u-1".into(),
                health: Some(NodeHealth {
                    status: "Healthy".into(),
                    message: String::new(),
                }),
                ..ResourceNode::default()
            };
            let replica_set = ResourceNode {
                kind: "ReplicaSet".into(),
                name: "web-1".into(),
                uid: "u-2".into(),
                parent_refs: vec![ResourceRef {
                    group: "apps".into(),
                    kind: "Deployment".into(),
                    namespace: "web".into(),
                    name: "web".into(),
                    uid: "u-1".into(),
                }],
                health: None,
                ..deployment.clone()
            };
            Ok(vec![deployment, replica_set])
        })
    }

    fn events<'a>(
        &'a self,
        at: &'a ObjectRef,
        _app: &'a Application,
        resource: Option<&'a ResourceSelector>,
    ) -> LiveFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.note(format!("events {at} about {resource:?}"));
            let name = resource.map_or("web", |r| r.name.as_str());
            Ok(vec![
                json!({"kind": "Event", "reason": "Scaled", "involvedObject": {"name": name}}),
            ])
        })
    }
}

/// An API (with `live`, when given) over a store holding project team-a and its
/// Application `web`; sessions of alice (who may get team-a's Applications) and bob (who
/// may not).
async fn start(live: Option<Arc<Echo>>, kind: Kind) -> Result<(Harness, Client, Client)> {
    let (dir, store) = open_store().await?;
    TypedStore::<AppProjects>::new(store.clone())
        .create(
            &ObjectRef::new(NS, "team-a"),
            &capstan_model::parse_app_project_yaml(
                "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: team-a}\nspec: {}\n",
            )?,
        )
        .await?;
    let mut config = ApiConfig::new(Policy::parse(POLICY, None)?);
    config.accounts = ["alice=login", "bob=login"]
        .iter()
        .map(|a| a.parse::<AccountConfig>().map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    config.live = live.map(|l| l as Arc<dyn LiveState>);
    let harness = Harness::serve(dir, store, config, &["alice", "bob"]).await?;
    let admin = harness.login(kind, "admin").await?;
    admin
        .create(
            &json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "web"},
                "spec": {"project": "team-a",
                    "source": {"repoURL": "https://git.example.com/x.git", "path": "web"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}},
            }),
            false,
        )
        .await?;
    let alice = harness.login(kind, "alice").await?;
    let bob = harness.login(kind, "bob").await?;
    Ok((harness, alice, bob))
}

/// The four methods as `Client` calls, each answering its whole JSON document.
trait LiveCalls {
    async fn managed(&self, name: &str) -> Answer<Value>;
    async fn diff(&self, name: &str, manifests: &[String]) -> Answer<Value>;
    async fn tree(&self, name: &str) -> Answer<Value>;
    async fn events(&self, name: &str, resource: Option<(&str, &str, &str)>) -> Answer<Value>;
}

impl LiveCalls for Client {
    async fn managed(&self, name: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications/{name}/managed-resources");
                self.rest(Method::GET, &path, None).await
            }
            Kind::Grpc => self.grpc_json(self.apps().managed_resources(self.app_ref(name)).await),
        }
    }

    async fn diff(&self, name: &str, manifests: &[String]) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications/{name}/diff");
                let body = json!({"manifests": manifests});
                self.rest(Method::POST, &path, Some(&body)).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ApplicationDiffRequest {
                    name: name.to_owned(),
                    manifests: manifests.to_vec(),
                    ..pb::ApplicationDiffRequest::default()
                });
                self.grpc_json(self.apps().diff(request).await)
            }
        }
    }

    async fn tree(&self, name: &str) -> Answer<Value> {
        match self.kind {
            Kind::Rest => {
                let path = format!("/api/v1/applications/{name}/resource-tree");
                self.rest(Method::GET, &path, None).await
            }
            Kind::Grpc => self.grpc_json(self.apps().resource_tree(self.app_ref(name)).await),
        }
    }

    async fn events(&self, name: &str, resource: Option<(&str, &str, &str)>) -> Answer<Value> {
        let (namespace, resource_name, uid) = resource.unwrap_or_default();
        match self.kind {
            Kind::Rest => {
                let path = format!(
                    "/api/v1/applications/{name}/events?resourceNamespace={namespace}&resourceName={resource_name}&resourceUID={uid}"
                );
                self.rest(Method::GET, &path, None).await
            }
            Kind::Grpc => {
                let request = self.request(pb::ApplicationEventsRequest {
                    name: name.to_owned(),
                    resource_namespace: namespace.to_owned(),
                    resource_name: resource_name.to_owned(),
                    resource_uid: uid.to_owned(),
                    ..pb::ApplicationEventsRequest::default()
                });
                self.grpc_json(self.apps().events(request).await)
            }
        }
    }
}

const CONFIG_MAP: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings"},"data":{"color":"red"}}"#;

async fn answers_in_argo_cds_shapes(kind: Kind) -> Result<()> {
    let echo = Arc::new(Echo::default());
    let (_harness, alice, _) = start(Some(echo.clone()), kind).await?;

    let managed = alice.managed("web").await?;
    let item = &managed["items"][0];
    assert_eq!(
        (&item["kind"], &item["namespace"], &item["name"]),
        (&json!("ConfigMap"), &json!("web"), &json!("settings"))
    );
    // The states are JSON text; a missing side is "null".
    assert_eq!(item["targetState"], r#"{"data":{"color":"blue"}}"#);
    assert_eq!(item["liveState"], "null");
    assert_eq!(item["modified"], true);
    assert_eq!(item["hook"], false);
    assert_eq!(item["diff"], "+data:\n");
    for field in ["group", "normalizedLiveState", "predictedLiveState"] {
        assert!(item[field].is_string(), "{field} in {item}");
    }

    let diffed = alice
        .diff(
            "web",
            &[
                CONFIG_MAP.to_owned(),
                CONFIG_MAP.replace("settings", "other"),
            ],
        )
        .await?;
    let target: Value = serde_json::from_str(
        diffed["items"][0]["targetState"]
            .as_str()
            .unwrap_or_default(),
    )?;
    assert_eq!(target["data"]["color"], "red", "{diffed}");

    let tree = alice.tree("web").await?;
    let nodes = tree["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 2, "{tree}");
    assert_eq!(
        nodes[0]["health"],
        json!({"status": "Healthy", "message": ""})
    );
    assert_eq!(nodes[1]["parentRefs"][0]["uid"], "u-1");
    assert_eq!(nodes[1]["resourceVersion"], "");

    let all = alice.events("web", None).await?;
    assert_eq!(all["items"][0]["involvedObject"]["name"], "web");
    let one = alice.events("web", Some(("web", "settings", ""))).await?;
    assert_eq!(one["items"][0]["involvedObject"]["name"], "settings");

    let asked = echo.asked.lock().expect("not poisoned").clone();
    assert_eq!(
        asked,
        [
            "managed capstan/web given None",
            "managed capstan/web given Some(2)",
            "tree capstan/web",
            "events capstan/web about None",
            "events capstan/web about Some(ResourceSelector { namespace: \"web\", name: \"settings\", uid: \"\" })",
        ]
    );
    Ok(())
}

async fn refusals_come_before_the_live_state_is_asked(kind: Kind) -> Result<()> {
    let echo = Arc::new(Echo::default());
    let (harness, alice, bob) = start(Some(echo.clone()), kind).await?;
    let manifests = [CONFIG_MAP.to_owned()];
    // Bob may not get team-a's Applications: refused alike whether the Application exists
    // or not, so he cannot tell which names do.
    for name in ["web", "ghost"] {
        assert_refused(bob.managed(name).await, Code::PermissionDenied);
        assert_refused(bob.diff(name, &manifests).await, Code::PermissionDenied);
        assert_refused(bob.tree(name).await, Code::PermissionDenied);
        assert_refused(bob.events(name, None).await, Code::PermissionDenied);
    }
    // To whom may get any Application, a missing one is not found.
    let admin = harness.login(kind, "admin").await?;
    assert_refused(admin.managed("ghost").await, Code::NotFound);
    // Manifests that are not named JSON objects, and a resource without a name.
    for bad in ["{", "[]", r#"{"kind":"ConfigMap","metadata":{"name":"x"}}"#] {
        assert_refused(
            alice.diff("web", &[bad.to_owned()]).await,
            Code::InvalidArgument,
        );
    }
    assert_refused(
        alice.events("web", Some(("web", "", "some-uid"))).await,
        Code::InvalidArgument,
    );
    // Too much to compare at once (the limit is on the manifests' text).
    let huge = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "x".repeat(capstan_api::service::live::MAX_DIFF_BYTES)
    );
    assert_refused(alice.diff("web", &[huge]).await, Code::InvalidArgument);
    assert!(
        echo.asked.lock().expect("not poisoned").is_empty(),
        "the live state was asked"
    );
    Ok(())
}

async fn without_a_live_state_the_methods_are_unavailable(kind: Kind) -> Result<()> {
    let (_harness, alice, bob) = start(None, kind).await?;
    assert_refused(alice.managed("web").await, Code::Unavailable);
    assert_refused(
        alice.diff("web", &[CONFIG_MAP.to_owned()]).await,
        Code::Unavailable,
    );
    assert_refused(alice.tree("web").await, Code::Unavailable);
    let refused = alice.events("web", None).await;
    match &refused {
        Err(r) => assert!(r.message.contains("controller"), "{r}"),
        Ok(answer) => panic!("answered {answer}"),
    }
    assert_refused(refused, Code::Unavailable);
    // Unavailable only to those who may ask.
    assert_refused(bob.tree("web").await, Code::PermissionDenied);
    Ok(())
}

over_rest_and_grpc!(
    answers_in_argo_cds_shapes,
    refusals_come_before_the_live_state_is_asked,
    without_a_live_state_the_methods_are_unavailable,
);

#[tokio::test]
async fn a_diff_body_over_the_limit_is_a_clear_client_error() -> Result<()> {
    let (harness, alice, _) = start(Some(Arc::default()), Kind::Rest).await?;
    let token = alice.token.clone().unwrap_or_default();
    let body = vec![b' '; 2 * capstan_api::service::live::MAX_DIFF_BYTES + 1];
    let response = harness
        .http
        .post(format!("{}/api/v1/applications/web/diff", harness.base))
        .bearer_auth(token)
        .body(body)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = serde_json::from_str(&response.text().await?)?;
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("diff fewer at a time")),
        "{answer}"
    );
    Ok(())
}
