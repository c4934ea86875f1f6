//! The `api` scenario: the API tier in front of a monorepo of 10,000 Applications (2,000
//! with `--quick`), each with a synthetic status of 5 resources, on the embedded store, served
//! over loopback HTTP exactly as `capstand` serves it.
//!
//! - **Webhook to refresh start**: a GitHub push that changes one Application's directory
//!   (every Application sets `argocd.argoproj.io/manifest-generate-paths: .`), timed from
//!   sending the delivery to the refresh request appearing in a store watch — the moment a
//!   controller's watch sees it. Baseline, same run: finding the affected Application the way
//!   Argo CD's handler does, by reading every Application and matching each (here from the
//!   store, decoded, with the same matching rules).
//! - **Listing**: the first page (the default 500), the same page trimmed to the fields a
//!   list view shows, and — the baseline an unpaginated API ships — every Application.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use capstan_api::rbac::Policy;
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig};
use capstan_api::webhook::{AppIndex, WebhookSecrets};
use capstan_model::{Application, ApplicationStatus};
use capstan_store::kinds::Applications;
use capstan_store::typed::{ObjectRef, TypedEvent, TypedStore, keys};
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store, Txn};
use futures::StreamExt as _;
use hmac::{KeyInit as _, Mac as _};

use crate::stats::{median, ms, percentile};
use crate::{Unit, figure, progress};

const NAMESPACE: &str = "capstan";
const REPO: &str = "https://git.example.com/platform/monorepo.git";
const SECRET: &str = "bench-webhook-secret";

pub(crate) async fn run(quick: bool) -> anyhow::Result<()> {
    let apps = if quick { 2_000 } else { 10_000 };
    let pushes = if quick { 30 } else { 100 };
    progress!(
        "api: {apps} applications, {pushes} pushes; {}",
        crate::machine()
    );
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"), EmbeddedOptions::default()).await?,
    );
    let started = Instant::now();
    populate(&store, apps).await?;
    progress!(
        "stored {apps} applications in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut config = ApiConfig::new(Policy::parse("", None).map_err(|e| anyhow::anyhow!("{e}"))?);
    config.webhook = WebhookSecrets {
        github: SECRET.to_owned(),
        ..WebhookSecrets::default()
    };
    let started = capstan_api::service::Api::start(store.clone(), None, config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the API: {e}"))?;
    let password = started
        .initial_admin_password
        .context("a fresh store gives an admin password")?;
    let api: Api = started.api;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let router = capstan_api::server::router(api.clone(), Arc::new(ApiMetrics::default()));
    let server = tokio::spawn(capstan_api::server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let token = login(&client, &base, &password).await?;

    webhooks(&client, &base, &store, apps, pushes).await?;
    scan_baseline(&store, apps, pushes.min(20)).await?;
    lists(&client, &base, &token, apps).await?;
    server.abort();
    Ok(())
}

fn app_name(i: usize) -> String {
    format!("app-{i:05}")
}

fn application(i: usize) -> anyhow::Result<Application> {
    let name = app_name(i);
    let team = i % 20;
    Ok(capstan_model::parse_application_yaml(&format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  namespace: {NAMESPACE}
  labels: {{team: team-{team}, env: prod}}
  annotations: {{argocd.argoproj.io/manifest-generate-paths: .}}
spec:
  project: default
  source: {{repoURL: '{REPO}', path: apps/{name}, targetRevision: HEAD}}
  destination: {{server: 'https://kubernetes.default.svc', namespace: {name}}}
  syncPolicy: {{automated: {{prune: true, selfHeal: true}}}}
"
    ))?)
}

/// What a controller would have written: synced, healthy, five resources.
fn status(i: usize) -> anyhow::Result<ApplicationStatus> {
    let name = app_name(i);
    let resources: Vec<serde_json::Value> = [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
    ]
    .iter()
    .map(|kind| {
        let group = if *kind == "Deployment" { "apps" } else { "" };
        serde_json::json!({"group": group, "version": "v1", "kind": kind, "namespace": name,
                "name": format!("{name}-{}", kind.to_ascii_lowercase()), "status": "Synced",
                "health": {"status": "Healthy"}})
    })
    .collect();
    Ok(serde_json::from_value(serde_json::json!({
        "sync": {"status": "Synced", "revision": "0123456789abcdef0123456789abcdef01234567",
                 "comparedTo": {"source": {"repoURL": REPO, "path": format!("apps/{name}"), "targetRevision": "HEAD"},
                                "destination": {"server": "https://kubernetes.default.svc", "namespace": name}}},
        "health": {"status": "Healthy"},
        "resources": resources,
        "reconciledAt": "2026-11-27T00:00:00Z",
        "sourceType": "Directory",
    }))?)
}

/// Writes the Applications and their statuses, many per transaction.
async fn populate(store: &Arc<dyn Store>, apps: usize) -> anyhow::Result<()> {
    let per_txn = capstan_store::limits::MAX_TXN_OPS / 2;
    for chunk in (0..apps).collect::<Vec<_>>().chunks(per_txn) {
        let mut txn = Txn::new();
        for &i in chunk {
            let at = ObjectRef::new(NAMESPACE, app_name(i));
            txn = txn
                .put(
                    keys::spec_key("applications", &at)?,
                    serde_json::to_vec(&application(i)?)?,
                )
                .put(
                    keys::status_key("applications", &at)?,
                    serde_json::to_vec(&status(i)?)?,
                );
        }
        anyhow::ensure!(store.txn(txn).await?.succeeded, "populating failed");
    }
    Ok(())
}

async fn login(client: &reqwest::Client, base: &str, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"username": "admin", "password": password}).to_string();
    let answer = client
        .post(format!("{base}/api/v1/session"))
        .body(body)
        .send()
        .await?;
    let answer: serde_json::Value = serde_json::from_str(&answer.text().await?)?;
    Ok(answer["token"].as_str().context("a token")?.to_owned())
}

/// A GitHub push to `main` changing one file of app `i`, with its signature header.
fn push_for(i: usize) -> (String, String) {
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "repository": {"html_url": REPO.trim_end_matches(".git"), "clone_url": REPO, "default_branch": "main"},
        "commits": [{"added": [], "removed": [], "modified": [format!("apps/{}/deployment.yaml", app_name(i))]}],
    })
    .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (body, format!("sha256={signature}"))
}

async fn webhooks(
    client: &reqwest::Client,
    base: &str,
    store: &Arc<dyn Store>,
    apps: usize,
    pushes: usize,
) -> anyhow::Result<()> {
    let typed = TypedStore::<Applications>::new(store.clone());
    let from = store
        .list(
            b"/capstan/applications/",
            capstan_store::ListOptions::new().limit(1),
        )
        .await?
        .revision;
    let mut changes = typed.watch(None, from);
    let mut latencies = Vec::new();
    for n in 0..pushes {
        let i = (n * 7_919) % apps;
        let (body, signature) = push_for(i);
        let sent = Instant::now();
        let answer = client
            .post(format!("{base}/api/webhook"))
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "webhook answered {}",
            answer.status()
        );
        let wanted = ObjectRef::new(NAMESPACE, app_name(i));
        // The refresh request as a controller's watch sees it.
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), changes.next())
                .await
                .context("no refresh within 30 s")?
                .context("the watch ended")??;
            if let TypedEvent::SpecPut { object, spec } = event
                && object == wanted
                && spec
                    .value
                    .metadata
                    .annotations
                    .contains_key(capstan_model::REFRESH_ANNOTATION)
            {
                break;
            }
        }
        latencies.push(ms(sent.elapsed()));
        let answer: serde_json::Value = serde_json::from_str(&answer.text().await?)?;
        let refreshed = answer["refreshed"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            refreshed == 1,
            "push {n} refreshed {refreshed} apps: {answer}"
        );
    }
    progress!(
        "webhook → refresh start: median {:.2} ms over {pushes} pushes",
        median(&latencies)
    );
    figure("webhook_refresh_p50_ms", median(&latencies), Unit::Ms);
    figure(
        "webhook_refresh_p99_ms",
        percentile(&latencies, 99.0),
        Unit::Ms,
    );
    figure("webhook_apps", apps as f64, Unit::Count);
    Ok(())
}

/// Finding the affected Applications by reading and matching all of them (Argo CD's way).
async fn scan_baseline(store: &Arc<dyn Store>, apps: usize, rounds: usize) -> anyhow::Result<()> {
    let typed = TypedStore::<Applications>::new(store.clone());
    let mut samples = Vec::new();
    for n in 0..rounds {
        let i = (n * 7_919) % apps;
        let (body, signature) = push_for(i);
        let secrets = WebhookSecrets {
            github: SECRET.to_owned(),
            ..WebhookSecrets::default()
        };
        let started = Instant::now();
        let header = |name: &str| match name {
            "X-GitHub-Event" => Some("push"),
            "X-Hub-Signature-256" => Some(signature.as_str()),
            _ => None,
        };
        let capstan_api::webhook::Delivery::Push(push) =
            capstan_api::webhook::parse_delivery(header, body.as_bytes(), &secrets)?
        else {
            anyhow::bail!("not a push");
        };
        let listed = typed.list(None).await?;
        let mut affected = 0;
        for object in &listed.items {
            // One-entry index per Application: the same matching rules, no lookup by repo.
            let mut one = AppIndex::default();
            one.put(&object.object, &object.spec.value);
            affected += one.affected(&push).len();
        }
        anyhow::ensure!(affected == 1, "the scan found {affected}");
        samples.push(ms(started.elapsed()));
    }
    figure("webhook_scan_baseline_p50_ms", median(&samples), Unit::Ms);
    Ok(())
}

async fn get_timed(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<(f64, usize, serde_json::Value)> {
    let started = Instant::now();
    let answer = client.get(url).bearer_auth(token).send().await?;
    anyhow::ensure!(
        answer.status().is_success(),
        "{url} answered {}",
        answer.status()
    );
    let body = answer.bytes().await?;
    let elapsed = ms(started.elapsed());
    Ok((elapsed, body.len(), serde_json::from_slice(&body)?))
}

async fn lists(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    apps: usize,
) -> anyhow::Result<()> {
    let rounds = 10;
    let mut first = Vec::new();
    let mut first_bytes = 0;
    let mut trimmed = Vec::new();
    let mut trimmed_bytes = 0;
    for _ in 0..rounds {
        let (t, bytes, page) =
            get_timed(client, &format!("{base}/api/v1/applications"), token).await?;
        anyhow::ensure!(
            page["items"].as_array().map_or(0, Vec::len)
                == capstan_api::query::DEFAULT_LIMIT.min(apps)
        );
        first.push(t);
        first_bytes = bytes;
        let (t, bytes, _) = get_timed(
            client,
            &format!("{base}/api/v1/applications?fields=metadata.name,status.sync.status,status.health.status"),
            token,
        )
        .await?;
        trimmed.push(t);
        trimmed_bytes = bytes;
    }
    figure("list_first_page_ms", median(&first), Unit::Ms);
    figure("list_first_page_bytes", first_bytes as f64, Unit::Bytes);
    figure("list_first_page_fields_ms", median(&trimmed), Unit::Ms);
    figure(
        "list_first_page_fields_bytes",
        trimmed_bytes as f64,
        Unit::Bytes,
    );

    // Baseline: everything, as an unpaginated list ships it (paged here, summed).
    let started = Instant::now();
    let mut total_bytes = 0;
    let mut seen = 0;
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(c) => format!("{base}/api/v1/applications?limit=5000&continue={c}"),
            None => format!("{base}/api/v1/applications?limit=5000"),
        };
        let (_, bytes, page) = get_timed(client, &url, token).await?;
        total_bytes += bytes;
        seen += page["items"].as_array().map_or(0, Vec::len);
        next = page["metadata"]["continue"].as_str().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    anyhow::ensure!(seen == apps, "listed {seen} of {apps}");
    figure("list_all_ms", ms(started.elapsed()), Unit::Ms);
    figure("list_all_bytes", total_bytes as f64, Unit::Bytes);
    Ok(())
}
