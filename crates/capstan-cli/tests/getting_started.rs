//! Argo CD's getting-started flow, done with `capstan` against a running all-in-one: log in,
//! add the repository, add the cluster (a service account created in it), create the
//! Application, sync, wait, diff after a change in Git, history, rollback, delete.

mod common;

use anyhow::Result;
use capstan_testkit::wait::wait_until;
use common::{ControlPlane, DEADLINE, guestbook, path};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::Api;
use serde_json::Value;

#[tokio::test]
async fn the_getting_started_flow() -> Result<()> {
    let plane = ControlPlane::start_simulated("cli-flow", &[]).await?;
    let outcome = flow(&plane).await;
    if outcome.is_err() {
        eprintln!("capstand log:\n{}", plane.log_tail());
    }
    outcome
}

async fn flow(plane: &ControlPlane) -> Result<()> {
    let client = plane.apiserver.client().await?;

    // Log in; the context (with its token) is saved privately.
    let login = plane.login_admin().await?;
    assert!(
        login.stdout.contains("'admin' logged in"),
        "{}",
        login.stdout
    );
    let config = plane.home().join(".config/capstan/config");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config)?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    let contexts = plane.run(&["context"]).await?.ok()?;
    assert!(
        contexts
            .stdout
            .contains(&format!("*        {}", plane.server())),
        "{}",
        contexts.stdout
    );

    // The repository, with its connection tested.
    plane.run(&["repo", "add", &plane.repo_url]).await?.ok()?;
    let repos: Value = serde_json::from_str(
        &plane
            .run(&["repo", "list", "-o", "json"])
            .await?
            .ok()?
            .stdout,
    )?;
    assert_eq!(
        repos[0]["spec"]["url"],
        Value::String(plane.repo_url.clone()),
        "{repos}"
    );

    // The cluster, from the kubeconfig context: Capstan gets a service account there.
    let context = "capstan-shared";
    plane
        .run(&[
            "cluster", "add", context, "--name", "sim", "--yes", "--upsert",
        ])
        .await?
        .ok()?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    assert!(accounts.get_opt("capstan-manager").await?.is_some());
    let clusters = plane.run(&["cluster", "list"]).await?.ok()?;
    assert!(
        clusters.stdout.contains(&plane.apiserver.url()),
        "{}",
        clusters.stdout
    );

    // The Application, deployed through the added cluster (so with the service account):
    // the ConfigMap, and a Deployment whose ReplicaSet and Pod (kwok's) show in the tree.
    plane
        .repo
        .write_all(&[("guestbook/deployment.yaml", DEPLOYMENT)])?;
    plane.repo.commit("a deployment")?;
    plane
        .run(&[
            "app",
            "create",
            "guestbook",
            "--repo",
            &plane.repo_url,
            "--path",
            "guestbook",
            "--dest-name",
            "sim",
            "--dest-namespace",
            &plane.ns,
        ])
        .await?
        .ok()?;
    let sync = plane
        .run(&["app", "sync", "guestbook", "--timeout", "120"])
        .await?
        .ok()?;
    assert!(sync.stdout.contains("Sync Status:"), "{}", sync.stdout);
    assert!(sync.stdout.contains("ConfigMap"), "{}", sync.stdout);
    plane
        .run(&[
            "app",
            "wait",
            "guestbook",
            "--sync",
            "--health",
            "--timeout",
            "120",
        ])
        .await?
        .ok()?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &plane.ns);
    assert_eq!(color(&maps).await?, "blue");
    let tree = plane
        .run(&["app", "resources", "guestbook", "--tree"])
        .await?
        .ok()?;
    for expected in [
        format!("Deployment.apps/{}/web  Healthy", plane.ns),
        "└─ ReplicaSet.apps/".to_owned(),
        "   └─ Pod/".to_owned(),
        format!("ConfigMap/{}/guestbook", plane.ns),
    ] {
        assert!(
            tree.stdout.contains(&expected),
            "{expected} in\n{}",
            tree.stdout
        );
    }
    let events = plane.run(&["app", "events", "guestbook"]).await?.ok()?;
    assert!(
        events.stdout.contains("ScalingReplicaSet"),
        "{}",
        events.stdout
    );
    let get = plane.run(&["app", "get", "guestbook"]).await?.ok()?;
    for expected in ["Name:", "guestbook", "Synced", "Healthy", &plane.repo_url] {
        assert!(
            get.stdout.contains(expected),
            "{expected} in\n{}",
            get.stdout
        );
    }

    // Nothing to diff; then a change in Git shows, and diff exits 1.
    plane.run(&["app", "diff", "guestbook"]).await?.ok()?;
    plane
        .repo
        .write_all(&[("guestbook/guestbook.yaml", guestbook("red"))])?;
    plane.repo.commit("red")?;
    let diff = plane
        .run(&["app", "diff", "guestbook", "--hard-refresh"])
        .await?
        .expect(1)?;
    assert!(diff.stdout.contains("===== /ConfigMap"), "{}", diff.stdout);
    assert!(diff.stdout.contains("red"), "{}", diff.stdout);
    // A local checkout with yet another colour: diffed against the live state.
    let local = plane.tmp.path().join("local");
    std::fs::create_dir_all(&local)?;
    std::fs::write(local.join("guestbook.yaml"), guestbook("green"))?;
    let local_diff = plane
        .run(&["app", "diff", "guestbook", "--local", path(&local)])
        .await?
        .expect(1)?;
    assert!(local_diff.stdout.contains("green"), "{}", local_diff.stdout);

    // Sync the change: two deployments in the history.
    plane
        .run(&["app", "sync", "guestbook", "--timeout", "120"])
        .await?
        .ok()?;
    assert_eq!(color(&maps).await?, "red");
    let history: Value = serde_json::from_str(
        &plane
            .run(&["app", "history", "guestbook", "-o", "json"])
            .await?
            .ok()?
            .stdout,
    )?;
    let entries = history.as_array().map(Vec::len).unwrap_or_default();
    assert_eq!(entries, 2, "{history}");
    let table = plane.run(&["app", "history", "guestbook"]).await?.ok()?;
    assert!(table.stdout.starts_with("ID  DATE"), "{}", table.stdout);

    // Roll back to the first deployment (the default: the one before the current).
    plane
        .run(&["app", "rollback", "guestbook", "--timeout", "120"])
        .await?
        .ok()?;
    assert_eq!(color(&maps).await?, "blue");

    // Delete, with the resources.
    plane
        .run(&["app", "delete", "guestbook", "--yes", "--wait"])
        .await?
        .ok()?;
    let maps_after = maps.clone();
    wait_until("the ConfigMap pruned with the app", DEADLINE, || {
        let maps = maps_after.clone();
        async move { Ok(maps.get_opt("guestbook").await?.is_none().then_some(())) }
    })
    .await?;
    plane.run(&["app", "get", "guestbook"]).await?.expect(5)?;

    // Rotate the cluster's token: a new Secret, the old one gone.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let before = manager_tokens(&secrets).await?;
    plane
        .run(&["cluster", "rotate-auth", context])
        .await?
        .ok()?;
    let after = manager_tokens(&secrets).await?;
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(!before.contains(&after[0]), "{before:?} → {after:?}");

    // Log out: the token is revoked on the server and forgotten here.
    plane.run(&["logout"]).await?.ok()?;
    plane.run(&["app", "list"]).await?.expect(3)?;
    Ok(())
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example/web:1
";

async fn color(maps: &Api<ConfigMap>) -> Result<String> {
    let map = maps.get("guestbook").await?;
    Ok(map
        .data
        .unwrap_or_default()
        .get("color")
        .cloned()
        .unwrap_or_default())
}

async fn manager_tokens(secrets: &Api<Secret>) -> Result<Vec<String>> {
    Ok(secrets
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                == Some(&"capstan-manager".to_owned())
        })
        .filter_map(|s| s.metadata.name)
        .collect())
}
