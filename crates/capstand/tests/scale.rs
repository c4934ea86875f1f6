//! The scaled-out control plane under faults, as real processes: 3 `capstand controller`
//! members, 2 `capstand repo-server`s registered in etcd and sharing a real Redis Cluster, 2
//! `capstand api` replicas, all on one real etcd; 3 real kube-apiservers registered as 30
//! clusters (10 entries each, each behind its own loopback port and limited to its own
//! namespace), 210 Applications.
//!
//! One test, in phases, because the set-up is the expensive part:
//! 1. everything reconciles: every Application Synced and Healthy, every cluster owned by
//!    exactly one member, every status written by its cluster's owner, and either API
//!    replica answers managed resources and resource trees from the owning member;
//! 2. `kill -9` of a member: its clusters are owned again within the lease TTL + 5 s, a sync
//!    it left running (waiting on a wave) is resumed — not restarted — by the cluster's new
//!    owner and finishes, and their Applications sync a new commit (refreshes sent through
//!    both API replicas);
//! 3. SIGSTOP of a member past its TTL, then SIGCONT: the status history shows no write of
//!    it under the ownership it had lost; it joins again and writes under new ownership;
//! 4. a member added: the clusters move exactly as the ring computes from the same inputs,
//!    and each member's "released" counter grows by exactly what moved away from it;
//! 5. `kill -9` of the repo-server the repository hashes to and of a Redis master, then a
//!    new commit: every Application syncs it, and no status in the meantime shows a failed
//!    comparison or sync.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use capstan_controller::sharding::shard::{OWNERS_PREFIX, read_cluster_loads};
use capstan_controller::sharding::{Epsilon, Ring};
use capstan_model::{Application, Cluster, HealthStatusCode, OperationPhase, SyncStatusCode};
use capstan_store::kinds::{Applications, Clusters};
use capstan_store::sealed::{CREDENTIAL_PREFIXES, Keyring, SealedStore};
use capstan_store::typed::{ObjectRef, TypedEvent, TypedStore};
use capstan_store::{EtcdOptions, EtcdStore, Revision, Store};
use capstan_testkit::apiserver::KubeApiServer;
use capstan_testkit::git::GitRepo;
use capstan_testkit::net::{free_port, http_get};
use capstan_testkit::process::ManagedProcess;
use capstan_testkit::redis_cluster::RedisCluster;
use capstan_testkit::shared;
use capstan_testkit::wait::wait_until;
use futures::StreamExt as _;
use serde_json::json;

const APISERVERS: usize = 3;
const CLUSTERS_PER_APISERVER: usize = 10;
const APPS_PER_CLUSTER: usize = 7;
const LEASE_TTL: Duration = Duration::from_secs(3);
/// What the issue allows for a takeover after a kill: the TTL plus a few seconds.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 5);
const SETTLE: Duration = Duration::from_secs(300);
const NAMESPACE: &str = "capstan";
const SLOW_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: slow
spec:
  replicas: 1
  selector:
    matchLabels: {app: slow}
  template:
    metadata:
      labels: {app: slow}
    spec:
      containers:
        - name: app
          image: registry.invalid/slow:1
";
const SLOW_DONE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: slow-done
  annotations:
    argocd.argoproj.io/sync-wave: \"1\"
data:
  done: \"yes\"
";
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A TCP forwarder on its own loopback port: several cluster entries, one apiserver.
struct Forwarder {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: u16) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self { port, task })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Member {
    name: String,
    process: ManagedProcess,
    metrics_port: u16,
    live_port: u16,
}

struct Plane {
    dir: tempfile::TempDir,
    etcd_endpoint: String,
    prefix: String,
    raw: EtcdStore,
    store: Arc<dyn Store>,
}

impl Plane {
    fn capstand(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_capstand"));
        command
            .args(["--log-format", "json"])
            .env("CAPSTAN_ETCD_ENDPOINTS", &self.etcd_endpoint)
            .env("CAPSTAN_ETCD_PREFIX", &self.prefix)
            .env(
                "CAPSTAN_ENCRYPTION_KEY_FILE",
                self.dir.path().join("encryption.key"),
            )
            .current_dir(self.dir.path());
        command
    }

    fn controller(&self, name: &str) -> Result<Member> {
        let metrics_port = free_port()?;
        let live_port = free_port()?;
        let mut command = self.capstand();
        command
            .args(["controller", "--name", name])
            .args(["--lease-ttl", &format!("{}s", LEASE_TTL.as_secs())])
            .args(["--rebalance-interval", "2s"])
            .args(["--resync", "5m", "--workers", "4"])
            .args(["--live-listen", &format!("127.0.0.1:{live_port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]);
        let process = ManagedProcess::spawn_command(
            name,
            command,
            &self.dir.path().join(format!("{name}.log")),
        )?;
        Ok(Member {
            name: name.to_owned(),
            process,
            metrics_port,
            live_port,
        })
    }

    fn api(&self, name: &str) -> Result<(ManagedProcess, String)> {
        let port = free_port()?;
        let mut command = self.capstand();
        command
            .args([
                "api",
                "--insecure",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port()?)])
            .arg("--initial-admin-password-file")
            .arg(self.dir.path().join("initial-admin-password"));
        let process = ManagedProcess::spawn_command(
            name,
            command,
            &self.dir.path().join(format!("{name}.log")),
        )?;
        Ok((process, format!("http://127.0.0.1:{port}")))
    }

    /// Cluster server → the member holding its ownership key.
    async fn owners(&self) -> Result<BTreeMap<String, String>> {
        let page = self.raw.list_all(OWNERS_PREFIX.as_bytes(), 500).await?;
        let clusters = TypedStore::<Clusters>::new(self.store.clone())
            .list(None)
            .await?;
        let mut by_key = BTreeMap::new();
        for kv in page.entries {
            by_key.insert(kv.key, String::from_utf8(kv.value)?);
        }
        let mut owners = BTreeMap::new();
        for cluster in clusters.items {
            let server = cluster.spec.value.spec.server.clone();
            let key = capstan_controller::sharding::shard::owner_key(&server).into_bytes();
            if let Some(owner) = by_key.get(&key) {
                owners.insert(server, owner.clone());
            }
        }
        Ok(owners)
    }

    /// What the ring assigns to `members` from the store's current clusters and apps.
    async fn expected(&self, members: &[&str]) -> Result<BTreeMap<String, String>> {
        let read = read_cluster_loads(&self.store).await?;
        let ring = Ring::with_members(Epsilon::default(), members.iter().copied());
        Ok(ring
            .assign(&read.loads)?
            .iter()
            .map(|(cluster, owner)| (cluster.to_owned(), owner.to_owned()))
            .collect())
    }

    async fn apps(&self) -> Result<Vec<capstan_store::typed::Object<Applications>>> {
        Ok(TypedStore::<Applications>::new(self.store.clone())
            .list(None)
            .await?
            .items)
    }

    /// Waits until every Application is Synced and Healthy at `revision`.
    async fn wait_all_synced(&self, revision: &str, within: Duration) -> Result<()> {
        let started = Instant::now();
        wait_until(
            &format!("every Application Synced and Healthy at {revision}"),
            within,
            || async {
                let apps = self.apps().await?;
                let behind: Vec<String> = apps
                    .iter()
                    .filter(|app| {
                        let status = app.status.as_ref().map(|s| &s.value);
                        !status.is_some_and(|s| {
                            s.sync.status == Some(SyncStatusCode::Synced)
                                && s.sync.revision == revision
                                && s.health.status == Some(HealthStatusCode::Healthy)
                        })
                    })
                    .map(|app| app.object.name.clone())
                    .collect();
                if behind.is_empty() {
                    return Ok(Some(()));
                }
                // What the first one says, for whoever reads a timeout.
                let first = apps
                    .iter()
                    .find(|app| app.object.name == behind[0])
                    .and_then(|app| app.status.as_ref())
                    .map(|status| {
                        let s = &status.value;
                        format!(
                            "sync {:?} at {:?}, health {:?}, by {:?}, conditions {:?}, operation {:?}",
                            s.sync.status,
                            s.sync.revision,
                            s.health.status,
                            s.controller.as_ref().map(|c| &c.member),
                            s.conditions.iter().map(|c| &c.message).collect::<Vec<_>>(),
                            s.operation_state.as_ref().map(|o| (&o.phase, &o.message)),
                        )
                    });
                eprintln!(
                    "{} apps not yet synced, e.g. {:?}; {} {first:?}",
                    behind.len(),
                    &behind[..behind.len().min(3)],
                    behind[0],
                );
                Ok(None)
            },
        )
        .await?;
        eprintln!("all apps synced at {revision} in {:?}", started.elapsed());
        Ok(())
    }
}

fn scrape(port: u16, metric: &str) -> Result<f64> {
    let (status, body) = http_get(port, "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}");
    body.lines()
        .find(|line| line.starts_with(metric) && line[metric.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no {metric} in /metrics"))
}

async fn wait_ready(port: u16, process: &mut ManagedProcess) -> Result<()> {
    wait_until(
        &format!("{} ready", process.name()),
        Duration::from_secs(60),
        || {
            let alive = process.check_running();
            let ready = http_get(port, "/readyz");
            async move {
                alive?;
                Ok(matches!(ready, Ok((200, _))).then_some(()))
            }
        },
    )
    .await
}

fn write_revision(repo: &GitRepo, revision: &str) -> Result<String> {
    for k in 0..APPS_PER_CLUSTER {
        repo.write(
            format!("apps/app-{k}/configmap.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{k}\ndata:\n  revision: \"{revision}\"\n"
            ),
        )?;
    }
    repo.commit(&format!("revision {revision}"))
}

/// GETs `url` from the API with `token`; the JSON of a 200.
async fn api_get(url: &str, token: &str) -> Result<serde_json::Value> {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "GET {url}: {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Asks for a hard refresh of every Application, alternating between the API replicas: hard,
/// so that a commit made a moment ago is seen (a normal refresh may reuse the repo-server's
/// branch listing for up to its `--ref-ttl`).
async fn refresh_all(plane: &Plane, apis: &[String], token: &str) -> Result<()> {
    let client = reqwest::Client::new();
    for (i, app) in plane.apps().await?.iter().enumerate() {
        let base = &apis[i % apis.len()];
        let response = client
            .get(format!(
                "{base}/api/v1/applications/{}?refresh=hard",
                app.object.name
            ))
            .bearer_auth(token)
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "refreshing {} through {base}: {}",
            app.object.name,
            response.status()
        );
    }
    Ok(())
}

/// Every status write to Applications from `from` (exclusive) up to now.
async fn status_history(
    plane: &Plane,
    from: Revision,
) -> Result<Vec<(Revision, String, capstan_model::ApplicationStatus)>> {
    // The last write to an Application: the watch has seen everything once it is there.
    let until = plane
        .apps()
        .await?
        .iter()
        .flat_map(|app| {
            std::iter::once(app.spec.mod_revision)
                .chain(app.status.as_ref().map(|status| status.mod_revision))
        })
        .max()
        .unwrap_or(0);
    if until <= from {
        return Ok(Vec::new());
    }
    let mut events = TypedStore::<Applications>::new(plane.store.clone()).watch(None, from);
    let mut writes = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .context("the history watch stalled")?
            .context("the history watch ended")??;
        let revision = match event {
            TypedEvent::StatusPut { object, status } => {
                let revision = status.mod_revision;
                writes.push((revision, object.name, status.value));
                revision
            }
            TypedEvent::SpecPut { spec, .. } => spec.mod_revision,
            TypedEvent::SpecDeleted { revision, .. }
            | TypedEvent::StatusDeleted { revision, .. } => revision,
        };
        if revision >= until {
            return Ok(writes);
        }
    }
}

/// Waits until the owner keys are exactly `expected`.
async fn wait_owners(
    plane: &Plane,
    what: &str,
    within: Duration,
    expected: &BTreeMap<String, String>,
) -> Result<()> {
    wait_until(what, within, || async {
        Ok((plane.owners().await? == *expected).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_control_plane_survives_faults() -> Result<()> {
    capstan_testkit::init_test_logging();
    let etcd = shared::etcd().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("encryption.key"), format!("{KEY}\n"))?;
    let prefix = format!("/scale-{}", std::process::id());
    let raw =
        EtcdStore::connect(EtcdOptions::new([etcd.endpoint()]).namespace(prefix.as_str())).await?;
    let keyring = Keyring::new(&base64_decode(KEY)?, &[]).map_err(anyhow::Error::msg)?;
    let store: Arc<dyn Store> = Arc::new(SealedStore::new(
        Arc::new(raw.clone()),
        keyring,
        CREDENTIAL_PREFIXES,
    ));
    let plane = Plane {
        dir,
        etcd_endpoint: etcd.endpoint(),
        prefix,
        raw,
        store,
    };

    // Three apiservers, ten cluster entries each (own port, own namespace).
    let third = KubeApiServer::start_on(etcd.clone(), "scale-third").await?;
    let apiservers: Vec<&KubeApiServer> = vec![
        shared::apiserver().await?,
        shared::second_apiserver().await?,
        &third,
    ];
    let repo = GitRepo::init()?;
    repo.write("slow/deployment.yaml", SLOW_DEPLOYMENT)?;
    repo.write("slow/done.yaml", SLOW_DONE)?;
    let commit1 = write_revision(&repo, "1")?;
    let mut forwarders = Vec::new();
    // Cluster server → (its apiserver, its namespace).
    let mut placement: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let clusters = TypedStore::<Clusters>::new(plane.store.clone());
    let apps = TypedStore::<Applications>::new(plane.store.clone());
    for (a, apiserver) in apiservers.iter().enumerate() {
        let kube = apiserver.client().await?;
        let target: u16 = apiserver
            .url()
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .context("the apiserver's port")?;
        for c in 0..CLUSTERS_PER_APISERVER {
            let index = a * CLUSTERS_PER_APISERVER + c;
            let namespace = format!("scale-{}-c{index}", std::process::id());
            let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                kube::Api::all(kube.clone());
            namespaces
                .create(
                    &kube::api::PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
                )
                .await?;
            let forwarder = Forwarder::start(target).await?;
            let server = format!("https://127.0.0.1:{}", forwarder.port);
            forwarders.push(forwarder);
            placement.insert(server.clone(), (a, namespace.clone()));
            let cluster: Cluster = serde_json::from_value(json!({
                "apiVersion": "capstan.dev/v1alpha1", "kind": "Cluster",
                "metadata": {"name": format!("c{index}")},
                "spec": {
                    "server": server,
                    "namespaces": [namespace],
                    "config": {
                        "bearerToken": apiserver.admin_token(),
                        "tlsClientConfig": {"caData": base64_encode(apiserver.ca_pem())},
                    },
                },
            }))?;
            clusters
                .create(&ObjectRef::new(NAMESPACE, format!("c{index}")), &cluster)
                .await?;
            for k in 0..APPS_PER_CLUSTER {
                let name = format!("c{index}-app{k}");
                let app: Application = serde_json::from_value(json!({
                    "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": {
                        "project": "default",
                        "source": {"repoURL": repo.file_url(), "path": format!("apps/app-{k}"), "targetRevision": "HEAD"},
                        "destination": {"server": server, "namespace": namespace},
                        "syncPolicy": {"automated": {}},
                    },
                }))?;
                apps.create(&ObjectRef::new(NAMESPACE, &name), &app).await?;
            }
        }
    }
    let total_apps = APISERVERS * CLUSTERS_PER_APISERVER * APPS_PER_CLUSTER;
    eprintln!(
        "registered {} clusters and {total_apps} apps",
        forwarders.len()
    );

    // Redis Cluster, two repo-servers registered in etcd, two API replicas.
    let mut redis = RedisCluster::start().await?;
    let redis_nodes = redis.urls().join(",");
    let mut repo_servers = Vec::new();
    for i in 0..2 {
        let tmp = tempfile::tempdir()?;
        let server = common::RepoServerProcess::start(
            &tmp,
            &[
                "--etcd-endpoints".as_ref(),
                plane.etcd_endpoint.as_ref(),
                "--etcd-prefix".as_ref(),
                plane.prefix.as_ref(),
                "--redis".as_ref(),
                redis_nodes.as_ref(),
                "--ref-ttl".as_ref(),
                "1s".as_ref(),
            ],
        )
        .await
        .with_context(|| format!("repo-server {i}"))?;
        repo_servers.push((server, tmp));
    }
    let mut apis = Vec::new();
    for name in ["api-a", "api-b"] {
        apis.push(plane.api(name)?);
    }
    let bases: Vec<String> = apis.iter().map(|(_, base)| base.clone()).collect();
    let token = {
        let base = bases[0].clone();
        let password_file = plane.dir.path().join("initial-admin-password");
        wait_until("the API's admin password", Duration::from_secs(60), || {
            let exists = password_file.exists();
            async move { Ok(exists.then_some(())) }
        })
        .await?;
        let password = std::fs::read_to_string(&password_file)?;
        let login: serde_json::Value = wait_until("an API login", Duration::from_secs(60), || {
            let base = base.clone();
            let password = password.clone();
            async move {
                let response = reqwest::Client::new()
                    .post(format!("{base}/api/v1/session"))
                    .body(json!({"username": "admin", "password": password.trim()}).to_string())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        Ok(Some(serde_json::from_str(&r.text().await?)?))
                    }
                    _ => Ok(None),
                }
            }
        })
        .await?;
        login["token"].as_str().context("a token")?.to_owned()
    };

    // Phase 1: three members; everything reconciles.
    let mut members = Vec::new();
    for name in ["m0", "m1", "m2"] {
        members.push(plane.controller(name)?);
    }
    for member in &mut members {
        wait_ready(member.metrics_port, &mut member.process).await?;
    }
    let expected = plane.expected(&["m0", "m1", "m2"]).await?;
    ensure!(
        expected.len() == forwarders.len(),
        "every cluster is assigned"
    );
    wait_owners(
        &plane,
        "the three members owning the ring's assignment",
        Duration::from_secs(60),
        &expected,
    )
    .await?;
    plane.wait_all_synced(&commit1, SETTLE).await?;
    let owners = plane.owners().await?;
    for app in plane.apps().await? {
        let server = &app.spec.value.spec.destination.server;
        let writer = app
            .status
            .as_ref()
            .and_then(|s| s.value.controller.clone())
            .with_context(|| format!("{} has no status.controller", app.object.name))?;
        ensure!(
            owners.get(server) == Some(&writer.member),
            "{}: status written by {} but {server} is owned by {:?}",
            app.object.name,
            writer.member,
            owners.get(server)
        );
    }
    for (member, count) in count_by_member(&owners) {
        eprintln!("{member} owns {count} clusters");
    }
    // The operator's view agrees: every cluster where the ring puts it.
    let shards = plane.capstand().args(["admin", "shards"]).output()?;
    let report = String::from_utf8_lossy(&shards.stdout);
    ensure!(
        shards.status.code() == Some(0)
            && report.contains("3 members, 30 clusters, 0 not where the ring puts them"),
        "capstand admin shards: {:?}\n{report}{}",
        shards.status,
        String::from_utf8_lossy(&shards.stderr)
    );
    for (member, count) in count_by_member(&owners) {
        ensure!(
            report.lines().any(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.first() == Some(&member.as_str())
                    && cells.get(2) == Some(&count.to_string().as_str())
            }),
            "{member} with {count} clusters is not in the report:\n{report}"
        );
    }
    // The members' live-state routes take only the control plane's internal token.
    let refused = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/live/v1/resource-tree",
            members[0].live_port
        ))
        .bearer_auth("not-the-token")
        .body("{}")
        .send()
        .await?;
    ensure!(
        refused.status() == 401,
        "a wrong token got {}",
        refused.status()
    );
    // Either API replica answers what runs in a cluster, from the member that owns it.
    for (i, app) in ["c0-app0", "c29-app6"].iter().enumerate() {
        let base = &bases[i % bases.len()];
        let managed = api_get(
            &format!("{base}/api/v1/applications/{app}/managed-resources"),
            &token,
        )
        .await?;
        let kinds: Vec<(&str, &str)> = managed["items"]
            .as_array()
            .context("managed resources")?
            .iter()
            .map(|item| {
                (
                    item["kind"].as_str().unwrap_or(""),
                    item["name"].as_str().unwrap_or(""),
                )
            })
            .collect();
        let k = &app[app.len() - 1..];
        ensure!(
            kinds == [("ConfigMap", format!("cm-{k}").as_str())],
            "{app}: {managed}"
        );
        let tree = api_get(
            &format!("{base}/api/v1/applications/{app}/resource-tree"),
            &token,
        )
        .await?;
        ensure!(
            tree["nodes"].as_array().is_some_and(|nodes| nodes
                .iter()
                .any(|n| n["name"] == format!("cm-{k}").as_str())),
            "{app}: {tree}"
        );
    }

    // Phase 2: kill -9 the member with the most clusters.
    let victim_name = count_by_member(&owners)
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map(|(member, _)| member)
        .context("some member owns clusters")?;
    let lost: BTreeSet<String> = owners
        .iter()
        .filter(|(_, owner)| **owner == victim_name)
        .map(|(cluster, _)| cluster.clone())
        .collect();
    let victim = members
        .iter()
        .position(|m| m.name == victim_name)
        .context("the victim")?;
    // A sync left running on the victim: a Deployment in wave 0 that nothing makes ready (no
    // controller-manager), so wave 1 waits.
    let slow_server = lost
        .iter()
        .next()
        .context("the victim owns a cluster")?
        .clone();
    let (slow_apiserver, slow_namespace) = placement[&slow_server].clone();
    let slow_kube = apiservers[slow_apiserver].client().await?;
    let slow_at = ObjectRef::new(NAMESPACE, "slow");
    let slow_app: Application = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "slow", "namespace": NAMESPACE},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo.file_url(), "path": "slow", "targetRevision": "HEAD"},
            "destination": {"server": slow_server, "namespace": slow_namespace},
            "syncPolicy": {"automated": {}},
        },
    }))?;
    apps.create(&slow_at, &slow_app).await?;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(slow_kube.clone(), &slow_namespace);
    let maps_of_slow: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(slow_kube, &slow_namespace);
    let started_at = wait_until("the slow sync running", Duration::from_secs(60), || async {
        let operation = apps
            .get(&slow_at)
            .await?
            .and_then(|app| app.status)
            .and_then(|status| status.value.operation_state);
        let deployed = deployments.get_opt("slow").await?.is_some();
        Ok(operation
            .filter(|op| op.phase == Some(OperationPhase::Running) && deployed)
            .map(|op| op.started_at))
    })
    .await?;
    ensure!(
        maps_of_slow.get_opt("slow-done").await?.is_none(),
        "wave 1 ran before wave 0 was healthy"
    );
    let killed = members.remove(victim);
    let killed_at = Instant::now();
    killed.process.signal(libc::SIGKILL)?;
    wait_until(
        "the killed member's clusters owned again",
        TAKEOVER_LIMIT,
        || async {
            let owners = plane.owners().await?;
            Ok(lost
                .iter()
                .all(|cluster| owners.get(cluster).is_some_and(|o| *o != victim_name))
                .then_some(()))
        },
    )
    .await?;
    let takeover = killed_at.elapsed();
    eprintln!(
        "takeover after kill -9 of {victim_name} ({} clusters): {takeover:?}",
        lost.len()
    );
    // The new owner resumes the sync from its saved state (not a new one: same start), and
    // it finishes once the Deployment is ready.
    wait_until(
        "the slow sync resumed by the new owner",
        Duration::from_secs(60),
        || async {
            let status = apps
                .get(&slow_at)
                .await?
                .and_then(|app| app.status)
                .map(|s| s.value);
            Ok(status
                .filter(|status| {
                    status
                        .controller
                        .as_ref()
                        .is_some_and(|writer| writer.member != victim_name)
                        && status
                            .operation_state
                            .as_ref()
                            .is_some_and(|op| op.phase == Some(OperationPhase::Running))
                })
                .map(|_| ()))
        },
    )
    .await?;
    deployments
        .patch_status(
            "slow",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {
                "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                "readyReplicas": 1, "availableReplicas": 1,
            }})),
        )
        .await?;
    let finished = wait_until(
        "the resumed sync to finish",
        Duration::from_secs(60),
        || async {
            let operation = apps
                .get(&slow_at)
                .await?
                .and_then(|app| app.status)
                .and_then(|status| status.value.operation_state);
            Ok(operation.filter(|op| op.phase == Some(OperationPhase::Succeeded)))
        },
    )
    .await?;
    if finished.started_at != started_at {
        for name in ["m0", "m1", "m2"] {
            let log = std::fs::read_to_string(plane.dir.path().join(format!("{name}.log")))?;
            for line in log.lines().filter(|l| l.contains("slow")) {
                eprintln!("{name}: {line}");
            }
        }
    }
    ensure!(
        finished.started_at == started_at,
        "the sync was started again ({:?}) instead of resumed ({started_at:?})",
        finished.started_at
    );
    ensure!(
        maps_of_slow.get_opt("slow-done").await?.is_some(),
        "wave 1 of the resumed sync was not applied"
    );
    eprintln!("the slow sync started by {victim_name} was finished by its cluster's new owner");
    let survivors: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let survivor_refs: Vec<&str> = survivors.iter().map(String::as_str).collect();
    let expected = plane.expected(&survivor_refs).await?;
    wait_owners(
        &plane,
        "the survivors owning the ring's assignment",
        Duration::from_secs(30),
        &expected,
    )
    .await?;
    let commit2 = write_revision(&repo, "2")?;
    refresh_all(&plane, &bases, &token).await?;
    plane.wait_all_synced(&commit2, SETTLE).await?;
    // And the clusters say so: every ConfigMap at revision 2.
    for (a, apiserver) in apiservers.iter().enumerate() {
        let kube = apiserver.client().await?;
        for c in 0..CLUSTERS_PER_APISERVER {
            let namespace = format!(
                "scale-{}-c{}",
                std::process::id(),
                a * CLUSTERS_PER_APISERVER + c
            );
            let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                kube::Api::namespaced(kube.clone(), &namespace);
            for k in 0..APPS_PER_CLUSTER {
                let map = maps.get(&format!("cm-{k}")).await?;
                let revision = map.data.as_ref().and_then(|d| d.get("revision")).cloned();
                ensure!(
                    revision.as_deref() == Some("2"),
                    "{namespace}/cm-{k} is at {revision:?}"
                );
            }
        }
    }

    // Phase 3: SIGSTOP a member past its TTL, then SIGCONT.
    let paused_name = members[0].name.clone();
    let owners = plane.owners().await?;
    let paused_clusters: BTreeSet<String> = owners
        .iter()
        .filter(|(_, owner)| **owner == paused_name)
        .map(|(cluster, _)| cluster.clone())
        .collect();
    ensure!(
        !paused_clusters.is_empty(),
        "{paused_name} owns clusters before the pause"
    );
    let before_pause = plane.raw.current_revision().await?;
    // Work in flight when it stops: a hard refresh of everything.
    refresh_all(&plane, &bases, &token).await?;
    members[0].process.signal(libc::SIGSTOP)?;
    wait_until(
        "the paused member's clusters owned by others",
        TAKEOVER_LIMIT,
        || async {
            let owners = plane.owners().await?;
            Ok(paused_clusters
                .iter()
                .all(|cluster| owners.get(cluster).is_some_and(|o| *o != paused_name))
                .then_some(()))
        },
    )
    .await?;
    let lost_at = plane.raw.current_revision().await?;
    members[0].process.signal(libc::SIGCONT)?;
    // It notices, joins again and takes its share back.
    let expected = plane.expected(&survivor_refs).await?;
    wait_owners(
        &plane,
        "the woken member back in the ring",
        Duration::from_secs(30),
        &expected,
    )
    .await?;
    ensure!(
        scrape(
            members[0].metrics_port,
            "capstan_controller_shard_lease_losses_total"
        )? >= 1.0,
        "the paused member counted its lost lease"
    );
    refresh_all(&plane, &bases, &token).await?;
    plane.wait_all_synced(&commit2, SETTLE).await?;
    let history = status_history(&plane, before_pause).await?;
    let mut rewritten = 0;
    for (revision, app, status) in &history {
        let Some(writer) = &status.controller else {
            continue;
        };
        if writer.member == paused_name && *revision > lost_at {
            ensure!(
                writer.ownership_revision > lost_at,
                "{app} at revision {revision}: {paused_name} wrote under ownership {} it had lost by {lost_at}",
                writer.ownership_revision
            );
            rewritten += 1;
        }
    }
    ensure!(
        rewritten > 0,
        "{paused_name} wrote nothing after waking: the check above is empty"
    );
    eprintln!("{paused_name}: {rewritten} status writes after waking, all under new ownership");

    // Phase 4: add a member; exactly what the ring moves, moves.
    let released_before: BTreeMap<String, f64> = members
        .iter()
        .map(|m| {
            Ok((
                m.name.clone(),
                scrape(
                    m.metrics_port,
                    "capstan_controller_shard_clusters_released_total",
                )?,
            ))
        })
        .collect::<Result<_>>()?;
    let before = plane.owners().await?;
    let mut added = plane.controller("m3")?;
    wait_ready(added.metrics_port, &mut added.process).await?;
    let mut grown: Vec<&str> = survivor_refs.clone();
    grown.push("m3");
    let after = plane.expected(&grown).await?;
    ensure!(
        plane.expected(&survivor_refs).await? == before,
        "the weights changed while adding a member; the comparison would be meaningless"
    );
    wait_owners(
        &plane,
        "the new member taking its share",
        Duration::from_secs(30),
        &after,
    )
    .await?;
    let moved: Vec<(&String, &String, &String)> = before
        .iter()
        .filter_map(|(cluster, from)| {
            let to = &after[cluster];
            (to != from).then_some((cluster, from, to))
        })
        .collect();
    ensure!(
        moved.iter().any(|(_, _, to)| to.as_str() == "m3"),
        "the new member took nothing"
    );
    for member in &members {
        let released = scrape(
            member.metrics_port,
            "capstan_controller_shard_clusters_released_total",
        )? - released_before[&member.name];
        let moved_away = moved
            .iter()
            .filter(|(_, from, _)| **from == member.name)
            .count();
        ensure!(
            released == moved_away as f64,
            "{} released {released} clusters; the ring moved {moved_away} away from it",
            member.name
        );
    }
    eprintln!(
        "adding m3 moved {} of {} clusters",
        moved.len(),
        before.len()
    );
    members.push(added);

    // Phase 5: kill the repo-server the repository hashes to, and a Redis master.
    let registered: Vec<String> = repo_servers
        .iter()
        .map(|(s, _)| format!("http://127.0.0.1:{}", s.grpc_port))
        .collect();
    let first = capstan_repo::pool::RepoPool::fixed(registered.clone(), Duration::from_secs(5))
        .order(&repo.file_url())[0]
        .clone();
    let before_faults = plane.raw.current_revision().await?;
    let commit3 = write_revision(&repo, "3")?;
    let index = registered
        .iter()
        .position(|r| *r == first)
        .context("first choice")?;
    repo_servers[index].0.process.signal(libc::SIGKILL)?;
    redis
        .node_mut(0)
        .context("a Redis node")?
        .process()
        .signal(libc::SIGKILL)?;
    refresh_all(&plane, &bases, &token).await?;
    plane.wait_all_synced(&commit3, SETTLE).await?;
    for (revision, app, status) in status_history(&plane, before_faults).await? {
        let failed_condition = status
            .conditions
            .iter()
            .find(|c| c.condition_type.ends_with("Error"));
        if let Some(condition) = failed_condition {
            bail!(
                "{app} at revision {revision} showed {}: {}",
                condition.condition_type,
                condition.message
            );
        }
        ensure!(
            status.sync.status != Some(SyncStatusCode::Unknown),
            "{app} at revision {revision} showed sync Unknown"
        );
        if let Some(operation) = &status.operation_state {
            ensure!(
                !matches!(
                    operation.phase,
                    Some(OperationPhase::Failed | OperationPhase::Error)
                ),
                "{app} at revision {revision}: operation {:?}: {}",
                operation.phase,
                operation.message
            );
        }
    }
    let failovers: f64 = members
        .iter()
        .map(|m| scrape(m.metrics_port, "capstan_repo_pool_failovers_total").unwrap_or(0.0))
        .sum();
    eprintln!("repo-server failovers across members: {failovers}");

    for member in &mut members {
        member.process.signal(libc::SIGTERM)?;
    }
    for member in &mut members {
        wait_until(
            &format!("{} to stop", member.name),
            Duration::from_secs(60),
            || {
                let exited = member.process.check_running().is_err();
                async move { Ok(exited.then_some(())) }
            },
        )
        .await?;
    }
    // Graceful leaves took every key with them.
    ensure!(
        plane.owners().await?.is_empty(),
        "ownership keys left behind after every member left"
    );
    drop(killed);
    Ok(())
}

fn count_by_member(owners: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for owner in owners.values() {
        *counts.entry(owner.clone()).or_default() += 1;
    }
    counts
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}
