//! The testkit's kube-apiserver is real: server-side apply, CRDs, watches, RBAC, and several
//! apiservers side by side on one etcd.

use std::time::Duration;

use anyhow::Result;
use capstan_testkit::{init_test_logging, shared, wait_until};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn configmap_server_side_applied_and_read_back() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("ssa").await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client().await?, &ns);

    let desired: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "guestbook", "labels": { "app": "guestbook" } },
        "data": { "greeting": "hello", "color": "blue" },
    }))?;
    api.patch(
        "guestbook",
        &PatchParams::apply("capstan-test").force(),
        &Patch::Apply(&desired),
    )
    .await?;

    let live = api.get("guestbook").await?;
    let data = live.data.unwrap_or_default();
    assert_eq!(data.get("greeting").map(String::as_str), Some("hello"));
    assert_eq!(data.get("color").map(String::as_str), Some("blue"));
    let managers: Vec<String> = live
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"capstan-test".to_owned()),
        "field managers: {managers:?}"
    );

    // Re-applying without a field removes it: that is what server-side apply owns.
    let reduced: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "guestbook" },
        "data": { "greeting": "hello" },
    }))?;
    api.patch(
        "guestbook",
        &PatchParams::apply("capstan-test").force(),
        &Patch::Apply(&reduced),
    )
    .await?;
    let live = api.get("guestbook").await?;
    assert_eq!(live.data.unwrap_or_default().get("color"), None);
    Ok(())
}

#[tokio::test]
async fn crd_registered_and_watched() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let client = server.client().await?;
    let ns = server.test_namespace("crd").await?;

    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.testkit.capstan.dev" },
        "spec": {
            "group": "testkit.capstan.dev",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": { "type": "object", "properties": { "size": { "type": "integer" } } } }
                }}
            }]
        }
    }))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        // Another test binary run against the same shared server may have made it already.
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(err.into()),
    }
    wait_until("the CRD to be Established", DEADLINE, || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("widgets.testkit.capstan.dev").await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()))
        }
    })
    .await?;

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "testkit.capstan.dev",
        "v1",
        "Widget",
    ));
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    // The new kind may take a moment to be served after Established; watch once it is.
    wait_until("widgets to be served", DEADLINE, || {
        let widgets = widgets.clone();
        async move { Ok(widgets.list(&Default::default()).await.ok().map(|_| ())) }
    })
    .await?;

    let mut events = watcher(widgets.clone(), watcher::Config::default()).boxed();
    // Drain the initial (empty) list before creating, so the create is seen as an event.
    loop {
        match tokio::time::timeout(DEADLINE, events.try_next()).await?? {
            Some(watcher::Event::InitDone) => break,
            Some(_) => continue,
            None => anyhow::bail!("watch ended before the initial list"),
        }
    }
    let mut widget = DynamicObject::new("sprocket", &resource).within(&ns);
    widget.data = serde_json::json!({ "spec": { "size": 3 } });
    widgets.create(&PostParams::default(), &widget).await?;

    let seen = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.try_next().await? {
            if let watcher::Event::Apply(obj) = event
                && obj.metadata.name.as_deref() == Some("sprocket")
            {
                return anyhow::Ok(obj);
            }
        }
        anyhow::bail!("watch ended without the widget")
    })
    .await??;
    assert_eq!(seen.data["spec"]["size"], 3);
    Ok(())
}

#[tokio::test]
async fn rbac_is_enforced_for_non_admin_users() -> Result<()> {
    init_test_logging();
    let server = shared::apiserver().await?;
    let ns = server.test_namespace("rbac").await?;
    // The scheduler identity may read pods but not write configmaps.
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml_for("system:kube-scheduler")?)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "denied" }
    }))?;
    match api.create(&PostParams::default(), &cm).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn two_apiservers_on_one_etcd_are_separate_clusters() -> Result<()> {
    init_test_logging();
    let first = shared::apiserver().await?;
    let second = shared::second_apiserver().await?;
    assert_ne!(first.url(), second.url());
    let ns = first.test_namespace("only-in-first").await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(second.client().await?);
    assert!(
        namespaces.get_opt(&ns).await?.is_none(),
        "namespace {ns} leaked into the second cluster"
    );
    Ok(())
}
