//! The repo-server service end to end: a repository served over smart HTTP, every source
//! type rendered with the real tools, caches (memory, Redis Cluster), coalescing, hard refresh.

use std::sync::Arc;
use std::time::Duration;

use capstan_model::{ApplicationSource, HelmSource, KustomizeSource, SourceType};
use capstan_repo::git::Credentials;
use capstan_repo::render::env::AppContext;
use capstan_repo::render::helm::HelmTool;
use capstan_repo::render::kustomize::KustomizeTool;
use capstan_repo::service::{
    CacheOutcome, ErrorKind, ManifestRequest, RefSourceSpec, RepoServer, RepoServerConfig,
};
use capstan_repo::shared_cache::SharedCacheConfig;
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use capstan_testkit::redis_cluster::RedisCluster;

const TOKEN: &str = "svc-token";

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

/// A repository with one app of each kind.
fn fixture() -> anyhow::Result<GitRepo> {
    let repo = GitRepo::init()?;
    repo.write_all(&[
        ("plain/a.yaml", cm("plain-a")),
        ("plain/b.json", r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"plain-b"}}"#.to_owned()),
        ("plain/notes.txt", "not a manifest".to_owned()),
        ("base/cm.yaml", cm("kbase")),
        ("base/kustomization.yaml", "resources:\n- cm.yaml\n".to_owned()),
        ("overlay/kustomization.yaml", "resources:\n- ../base\nnamePrefix: dev-\n".to_owned()),
        (
            "chart/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\n".to_owned(),
        ),
        ("chart/values.yaml", "color: blue\n".to_owned()),
        (
            "chart/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\n  namespace: {{ .Release.Namespace }}\ndata:\n  color: {{ .Values.color | quote }}\n".to_owned(),
        ),
    ])?;
    repo.commit("apps")?;
    Ok(repo)
}

struct Setup {
    server: GitHttpServer,
    repo: GitRepo,
    url: String,
    _tmp: tempfile::TempDir,
    config: RepoServerConfig,
}

fn setup() -> anyhow::Result<Setup> {
    let repo = fixture()?;
    let server = GitHttpServer::start_temp(GitHttpOptions::default().with_bearer_token(TOKEN))?;
    let url = server.url_for(&repo)?;
    let tmp = tempfile::tempdir()?;
    let mut config = RepoServerConfig::new(tmp.path().join("work"));
    config.helm = HelmTool {
        program: capstan_testkit::tools::helm()?,
    };
    config.kustomize = KustomizeTool {
        program: capstan_testkit::tools::kustomize()?,
        ..KustomizeTool::default()
    };
    Ok(Setup {
        server,
        repo,
        url,
        _tmp: tmp,
        config,
    })
}

fn request(url: &str, path: &str, app: &str) -> ManifestRequest {
    ManifestRequest {
        source: ApplicationSource::git(url, path, "HEAD"),
        app: AppContext {
            name: app.to_owned(),
            namespace: "team-a".to_owned(),
            ..AppContext::default()
        },
        credentials: Credentials::Bearer {
            token: TOKEN.to_owned(),
        },
        ..ManifestRequest::default()
    }
}

fn names(m: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = m
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["kind"].as_str().unwrap_or("?"),
                m["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_source_type_renders_over_http() -> anyhow::Result<()> {
    let s = setup()?;
    let server = RepoServer::new(s.config.clone()).await?;
    let head = s.repo.head()?;

    let plain = server.generate(request(&s.url, "plain", "a")).await?;
    assert_eq!(plain.manifests.source_type, SourceType::Directory);
    assert_eq!(plain.manifests.revision, head);
    assert_eq!(
        names(&plain.manifests.manifests),
        ["ConfigMap/plain-a", "Secret/plain-b"]
    );
    assert!(
        plain
            .manifests
            .skipped
            .iter()
            .any(|f| f.path == "notes.txt")
    );

    let mut req = request(&s.url, "overlay", "a");
    req.source.kustomize = Some(KustomizeSource {
        name_suffix: "-x".into(),
        ..KustomizeSource::default()
    });
    let kust = server.generate(req).await?;
    assert_eq!(kust.manifests.source_type, SourceType::Kustomize);
    assert_eq!(names(&kust.manifests.manifests), ["ConfigMap/dev-kbase-x"]);

    let helm = server.generate(request(&s.url, "chart", "shop")).await?;
    assert_eq!(helm.manifests.source_type, SourceType::Helm);
    let cfg = &helm.manifests.manifests[0];
    assert_eq!(
        cfg["metadata"]["name"], "shop-cfg",
        "release name defaults to the app name"
    );
    assert_eq!(cfg["metadata"]["namespace"], "team-a");
    assert_eq!(cfg["data"]["color"], "blue");
    assert_eq!(helm.cache, CacheOutcome::Rendered);
    Ok(())
}

#[tokio::test]
async fn multi_source_ref_values_file() -> anyhow::Result<()> {
    let s = setup()?;
    let values = GitRepo::init()?;
    values.write("envs/prod.yaml", "color: red\n")?;
    values.commit("values")?;
    let values_url = s.server.url_for(&values)?;
    let server = RepoServer::new(s.config.clone()).await?;
    let mut req = request(&s.url, "chart", "shop");
    req.source.helm = Some(HelmSource {
        value_files: vec!["$values/envs/prod.yaml".into()],
        ..HelmSource::default()
    });
    req.ref_sources = vec![RefSourceSpec {
        name: "values".into(),
        repo_url: values_url,
        target_revision: "HEAD".into(),
        credentials: Credentials::Bearer {
            token: TOKEN.to_owned(),
        },
    }];
    let out = server.generate(req.clone()).await?;
    assert_eq!(out.manifests.manifests[0]["data"]["color"], "red");

    // A change in the values repository is a different cache entry (after a hard refresh).
    values.write("envs/prod.yaml", "color: green\n")?;
    values.commit("greener")?;
    req.no_cache = true;
    let out = server.generate(req).await?;
    assert_eq!(out.manifests.manifests[0]["data"]["color"], "green");
    Ok(())
}

#[tokio::test]
async fn two_hundred_apps_on_one_commit_fetch_and_list_once() -> anyhow::Result<()> {
    let s = setup()?;
    let server = RepoServer::new(s.config.clone()).await?;
    let before = s.server.stats();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let server = server.clone();
        let path = ["plain", "overlay", "chart"][i % 3];
        let req = request(&s.url, path, &format!("app-{i}"));
        tasks.push(tokio::spawn(async move { server.generate(req).await }));
    }
    for t in tasks {
        let out = t.await??;
        assert!(!out.manifests.manifests.is_empty());
    }
    let stats = server.stats();
    assert_eq!(stats.fetches, 1, "{stats:?}");
    assert_eq!(stats.ref_listings, 1, "{stats:?}");
    let served = s.server.stats();
    // One ref advertisement for the listing and one for the fetch, as the server saw them.
    assert_eq!(served.info_refs - before.info_refs, 2, "{served:?}");
    assert_eq!(stats.renders + stats.memory_hits, 200, "{stats:?}");
    Ok(())
}

#[tokio::test]
async fn identical_requests_share_one_render_and_later_ones_hit_memory() -> anyhow::Result<()> {
    let s = setup()?;
    let server = RepoServer::new(s.config.clone()).await?;
    let req = request(&s.url, "chart", "same");
    let results = futures::future::join_all((0..20).map(|_| server.generate(req.clone()))).await;
    let rendered = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|g| g.cache == CacheOutcome::Rendered))
        .count();
    assert_eq!(rendered, 1, "{:?}", server.stats());
    assert_eq!(
        server.runner().stats().started,
        3,
        "two version probes and one helm template"
    );
    let again = server.generate(req).await?;
    assert_eq!(again.cache, CacheOutcome::Memory);
    assert!(Arc::ptr_eq(
        &again.manifests,
        &results[0].as_ref().expect("ok").manifests
    ));
    Ok(())
}

#[tokio::test]
async fn hard_refresh_sees_a_new_commit_a_normal_one_waits_for_the_ttl() -> anyhow::Result<()> {
    let s = setup()?;
    let server = RepoServer::new(s.config.clone()).await?;
    let first = server.generate(request(&s.url, "plain", "a")).await?;
    s.repo.write("plain/c.yaml", cm("plain-c"))?;
    let new_head = s.repo.commit("more")?;
    let normal = server.generate(request(&s.url, "plain", "a")).await?;
    assert_eq!(
        normal.manifests.revision, first.manifests.revision,
        "within the ref TTL"
    );
    assert_eq!(normal.cache, CacheOutcome::Memory);
    let mut hard = request(&s.url, "plain", "a");
    hard.no_cache = true;
    let hard = server.generate(hard).await?;
    assert_eq!(hard.manifests.revision, new_head);
    assert_eq!(hard.cache, CacheOutcome::Rendered);
    assert!(names(&hard.manifests.manifests).contains(&"ConfigMap/plain-c".to_owned()));
    Ok(())
}

#[tokio::test]
async fn errors_have_kinds_and_clear_messages() -> anyhow::Result<()> {
    let s = setup()?;
    let server = RepoServer::new(s.config.clone()).await?;
    let mut req = request(&s.url, "plain", "a");
    req.source.target_revision = "no-such-branch".into();
    let err = server.generate(req).await.expect_err("unknown revision");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains("no-such-branch"), "{err}");

    let err = server
        .generate(request(&s.url, "../outside", "a"))
        .await
        .expect_err("path traversal");
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err}");

    let mut req = request(&s.url, "plain", "a");
    req.credentials = Credentials::Bearer {
        token: "wrong-token".into(),
    };
    let err = server.generate(req).await.expect_err("bad token");
    assert_eq!(err.kind, ErrorKind::Unauthenticated, "{err}");
    assert!(
        !err.message.contains("wrong-token"),
        "credentials never appear: {err}"
    );

    let mut req = request(&s.url, "plain", "a");
    req.source.helm = Some(HelmSource::default());
    req.source.kustomize = Some(KustomizeSource::default());
    let err = server.generate(req).await.expect_err("two tools");
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err}");
    assert_eq!(server.stats().failures, 4);
    Ok(())
}

#[tokio::test]
async fn redis_cluster_shares_renders_between_servers_and_its_loss_is_not_fatal()
-> anyhow::Result<()> {
    let s = setup()?;
    let redis = RedisCluster::start().await?;
    let mut shared = SharedCacheConfig::new(redis.urls());
    shared.key_prefix = format!("test-{}:", std::process::id());
    shared.retry_after = Duration::ZERO;
    let mut config_a = s.config.clone();
    config_a.shared_cache = Some(shared.clone());
    let mut config_b = config_a.clone();
    config_b.work_dir = s.config.work_dir.with_file_name("work-b");

    let a = RepoServer::new(config_a).await?;
    let b = RepoServer::new(config_b.clone()).await?;
    let from_a = a.generate(request(&s.url, "chart", "shop")).await?;
    assert_eq!(from_a.cache, CacheOutcome::Rendered);
    let from_b = b.generate(request(&s.url, "chart", "shop")).await?;
    assert_eq!(from_b.cache, CacheOutcome::Shared, "{:?}", b.stats());
    assert_eq!(from_b.manifests, from_a.manifests);
    assert_eq!(
        b.runner().stats().started,
        2,
        "b ran no helm template, only version probes"
    );

    // The whole cluster goes away: requests still succeed, errors are counted.
    drop(redis);
    let c = RepoServer::new(config_b).await?;
    let out = c.generate(request(&s.url, "plain", "x")).await?;
    assert_eq!(out.cache, CacheOutcome::Rendered);
    assert!(c.stats().shared_cache_errors >= 1, "{:?}", c.stats());
    Ok(())
}

#[tokio::test]
async fn helm_and_plain_kustomize_renders_of_a_commit_share_one_checkout() -> anyhow::Result<()> {
    let s = setup()?;
    let server = RepoServer::new(s.config.clone()).await?;
    for app in ["one", "two", "three"] {
        let out = server.generate(request(&s.url, "chart", app)).await?;
        assert_eq!(
            out.manifests.manifests[0]["metadata"]["name"],
            format!("{app}-cfg")
        );
    }
    // Concurrent renders share it too.
    let concurrent = futures::future::join_all(
        ["four", "five", "six"].map(|app| server.generate(request(&s.url, "chart", app))),
    )
    .await;
    assert!(concurrent.iter().all(Result::is_ok));
    let plain = server.generate(request(&s.url, "overlay", "k")).await?;
    assert_eq!(names(&plain.manifests.manifests), ["ConfigMap/dev-kbase"]);
    assert_eq!(server.stats().checkouts, 1, "{:?}", server.stats());

    // Options that edit the kustomization need a private checkout, every time, and the shared
    // one is left untouched by them.
    for suffix in ["-a", "-b"] {
        let mut req = request(&s.url, "overlay", "k");
        req.source.kustomize = Some(KustomizeSource {
            name_suffix: suffix.into(),
            ..KustomizeSource::default()
        });
        let out = server.generate(req).await?;
        assert_eq!(
            names(&out.manifests.manifests),
            [format!("ConfigMap/dev-kbase{suffix}")]
        );
    }
    assert_eq!(server.stats().checkouts, 3);
    let mut again = request(&s.url, "overlay", "k2");
    again.no_cache = true;
    let again = server.generate(again).await?;
    assert_eq!(names(&again.manifests.manifests), ["ConfigMap/dev-kbase"]);
    Ok(())
}
