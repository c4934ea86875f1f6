//! Fetching over smart HTTP and file://, coalescing, the ref-listing cache, disk budget.

use std::time::Duration;

use capstan_repo::git::{CacheConfig, Credentials, GitError, RepoCache, RepoUrl};
use capstan_repo::revision::{RefCache, RevisionError, RevisionKind};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw-123";

fn basic() -> Credentials {
    Credentials::Basic {
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
    }
}

fn cache(dir: &tempfile::TempDir, max_bytes: u64) -> anyhow::Result<RepoCache> {
    Ok(RepoCache::new(CacheConfig {
        root: dir.path().join("cache"),
        max_bytes,
    })?)
}

/// A repo with main (2 commits), a feature branch, lightweight and annotated semver tags.
struct Fixture {
    repo: GitRepo,
    first: String,
    second: String,
    feature: String,
}

fn fixture() -> anyhow::Result<Fixture> {
    let repo = GitRepo::init()?;
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )?;
    let first = repo.commit("first")?;
    repo.tag("v1.0.0")?;
    repo.tag_annotated("v1.2.0", "release 1.2.0")?;
    repo.write(
        "app/cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
    )?;
    let second = repo.commit("second")?;
    repo.tag_annotated("v1.2.7", "release 1.2.7")?;
    repo.tag("v2.0.0-rc.1")?;
    repo.branch("feature")?.checkout("feature")?;
    repo.write("feature.txt", "x")?;
    let feature = repo.commit("feature")?;
    repo.tag("1.3.0")?;
    repo.checkout("main")?;
    Ok(Fixture {
        repo,
        first,
        second,
        feature,
    })
}

fn server() -> anyhow::Result<GitHttpServer> {
    GitHttpServer::start_temp(GitHttpOptions::default().with_basic_auth(USER, PASSWORD))
}

/// The usual setup: the fixture repo served over HTTP with basic auth, and an unbounded
/// cache in a temp dir. Every field must stay alive for the test's duration.
struct Served {
    fx: Fixture,
    server: GitHttpServer,
    url: RepoUrl,
    tmp: tempfile::TempDir,
    repos: RepoCache,
}

fn served() -> anyhow::Result<Served> {
    let fx = fixture()?;
    let server = server()?;
    let url = RepoUrl::parse(&server.url_for(&fx.repo)?)?;
    let tmp = tempfile::tempdir()?;
    let repos = cache(&tmp, u64::MAX)?;
    Ok(Served {
        fx,
        server,
        url,
        tmp,
        repos,
    })
}

#[tokio::test]
async fn fetches_over_http_with_basic_auth_and_resolves_every_form() -> anyhow::Result<()> {
    let Served {
        fx,
        server: _server,
        url,
        tmp: _tmp,
        repos,
    } = served()?;

    let (handle, outcome) = repos.fetch(&url, &basic()).await?;
    assert!(outcome.received_pack);
    let local = handle.open()?;
    for (name, sha) in [
        ("refs/heads/main", &fx.second),
        ("refs/heads/feature", &fx.feature),
    ] {
        let id = local.find_reference(name)?.peel_to_id()?;
        assert_eq!(id.to_string(), *sha, "{name}");
    }
    assert!(local.find_reference("refs/tags/v1.2.7").is_ok());
    // Nothing secret on disk.
    let config = std::fs::read_to_string(handle.path().join("config"))?;
    assert!(!config.contains(PASSWORD));

    let refs = RefCache::new(repos.clone(), Duration::from_secs(600));
    let check = |rev: &'static str, want: &str| {
        let refs = refs.clone();
        let url = url.clone();
        let want = want.to_owned();
        async move {
            let got = refs.resolve(&url, &basic(), rev).await?;
            assert_eq!(got.commit.to_string(), want, "{rev} resolved to {got:?}");
            anyhow::Ok(got)
        }
    };
    assert!(
        matches!(check("", &fx.second).await?.kind, RevisionKind::Head(ref b) if b == "refs/heads/main")
    );
    check("HEAD", &fx.second).await?;
    check("main", &fx.second).await?;
    check("feature", &fx.feature).await?;
    check("v1.0.0", &fx.first).await?;
    check("v1.2.0", &fx.first).await?; // annotated, peeled
    check("1.2.*", &fx.second).await?;
    check(">=1.0.0 <2.0.0", &fx.feature).await?; // 1.3.0 without a v prefix
    check("~1.2", &fx.second).await?;
    check("^1", &fx.feature).await?;
    let rc = refs.resolve(&url, &basic(), ">=2.0.0-rc.0").await?;
    assert_eq!(rc.commit.to_string(), fx.second, "asked-for pre-release");
    let full: &'static str = Box::leak(fx.first.clone().into_boxed_str());
    check(full, &fx.first).await?;
    let short: &'static str = Box::leak(fx.first[..8].to_owned().into_boxed_str());
    assert_eq!(check(short, &fx.first).await?.kind, RevisionKind::ShortSha);
    let err = refs
        .resolve(&url, &basic(), "nope")
        .await
        .expect_err("unknown");
    assert!(matches!(err, RevisionError::NotFound { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn short_sha_resolves_from_the_object_database() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    // Commits that are no ref tip: only the object database knows them.
    let mut shas = Vec::new();
    for i in 0..40 {
        repo.write("f", format!("{i}"))?;
        shas.push(repo.commit(&format!("c{i}"))?);
    }
    let tmp = tempfile::tempdir()?;
    let repos = cache(&tmp, u64::MAX)?;
    let url = RepoUrl::parse(&repo.file_url())?;
    let (handle, _) = repos.fetch(&url, &Credentials::None).await?;
    let local = handle.open()?;
    let refs = capstan_repo::revision::RemoteRefs::default();
    let got = capstan_repo::revision::resolve(&url, &refs, Some(&local), &shas[3][..7])?;
    assert_eq!(got.commit.to_string(), shas[3]);
    Ok(())
}

#[tokio::test]
async fn failed_auth_error_names_no_secret() -> anyhow::Result<()> {
    let Served {
        fx: _fx,
        server: _server,
        url,
        tmp: _tmp,
        repos,
    } = served()?;
    let wrong = Credentials::Basic {
        username: USER.to_owned(),
        password: "wrong-password-987".to_owned(),
    };
    let err = repos.fetch(&url, &wrong).await.expect_err("bad password");
    assert!(matches!(err, GitError::Authentication { .. }), "{err}");
    let text = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
    assert!(!text.contains("wrong-password-987"), "{text}");
    assert!(text.contains(url.as_str()), "{text}");
    let err = repos
        .fetch(&url, &Credentials::None)
        .await
        .expect_err("anonymous");
    assert!(matches!(err, GitError::Authentication { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn fetches_with_a_bearer_token() -> anyhow::Result<()> {
    let fx = fixture()?;
    let server = GitHttpServer::start_temp(GitHttpOptions::default().with_bearer_token("tok-42"))?;
    let url = RepoUrl::parse(&server.url_for(&fx.repo)?)?;
    let tmp = tempfile::tempdir()?;
    let repos = cache(&tmp, u64::MAX)?;
    let token = Credentials::Bearer {
        token: "tok-42".to_owned(),
    };
    let (handle, _) = repos.fetch(&url, &token).await?;
    assert_eq!(
        handle
            .open()?
            .find_reference("refs/heads/main")?
            .peel_to_id()?
            .to_string(),
        fx.second
    );
    let config = std::fs::read_to_string(handle.path().join("config"))?;
    assert!(!config.contains("tok-42"));
    let bad = Credentials::Bearer {
        token: "nope-77".to_owned(),
    };
    let err = repos.fetch(&url, &bad).await.expect_err("bad token");
    assert!(!format!("{err:?}").contains("nope-77"));
    Ok(())
}

#[tokio::test]
async fn concurrent_fetches_of_one_repo_are_coalesced() -> anyhow::Result<()> {
    let Served {
        fx: _fx,
        server,
        url,
        tmp: _tmp,
        repos,
    } = served()?;
    let creds = basic();
    let fetches = (0..16).map(|_| repos.fetch(&url, &creds));
    let results = futures::future::join_all(fetches).await;
    for r in results {
        r?;
    }
    assert_eq!(repos.stats().fetches, 1);
    // One fetch: its ref advertisement is the only info/refs request the server answered.
    assert_eq!(server.stats().info_refs, 1, "{:?}", server.stats());
    // A later fetch does go to the network again.
    repos.fetch(&url, &creds).await?;
    assert_eq!(server.stats().info_refs, 2);
    Ok(())
}

#[tokio::test]
async fn ref_listings_are_cached_and_invalidated() -> anyhow::Result<()> {
    let Served {
        fx,
        server,
        url,
        tmp: _tmp,
        repos,
    } = served()?;
    let refs = RefCache::new(repos.clone(), Duration::from_secs(600));
    let creds = basic();
    // 200 applications on one repo, concurrently and then again.
    let calls = (0..200).map(|_| refs.resolve(&url, &creds, "main"));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r?.commit.to_string(), fx.second);
    }
    for _ in 0..50 {
        refs.resolve(&url, &creds, "v1.0.0").await?;
    }
    assert_eq!(repos.stats().listings, 1);
    assert_eq!(server.stats().info_refs, 1, "{:?}", server.stats());

    // A push followed by a webhook: invalidate, and the new commit is seen at once.
    fx.repo.write("app/new.yaml", "x: 1\n")?;
    let third = fx.repo.commit("third")?;
    assert_eq!(
        refs.resolve(&url, &creds, "main").await?.commit.to_string(),
        fx.second
    );
    refs.invalidate(&url);
    assert_eq!(
        refs.resolve(&url, &creds, "main").await?.commit.to_string(),
        third
    );
    assert_eq!(repos.stats().listings, 2);
    assert_eq!(server.stats().info_refs, 2);

    // A zero TTL lists every time.
    let uncached = RefCache::new(repos.clone(), Duration::ZERO);
    uncached.resolve(&url, &creds, "main").await?;
    uncached.resolve(&url, &creds, "main").await?;
    assert_eq!(repos.stats().listings, 4);
    Ok(())
}

#[tokio::test]
async fn disk_budget_evicts_least_recently_used_unused_repos() -> anyhow::Result<()> {
    let a = fixture()?;
    let b = fixture()?;
    let c = fixture()?;
    let tmp = tempfile::tempdir()?;
    // Measure one repository's size with an unlimited cache.
    let probe_dir = tempfile::tempdir()?;
    let probe = cache(&probe_dir, u64::MAX)?;
    let (h, _) = probe
        .fetch(&RepoUrl::parse(&a.repo.file_url())?, &Credentials::None)
        .await?;
    let one = probe.stats().bytes;
    drop(h);
    assert!(one > 0);

    // Room for two repositories, not three.
    let repos = cache(&tmp, one * 5 / 2)?;
    let ua = RepoUrl::parse(&a.repo.file_url())?;
    let ub = RepoUrl::parse(&b.repo.file_url())?;
    let uc = RepoUrl::parse(&c.repo.file_url())?;
    let (ha, _) = repos.fetch(&ua, &Credentials::None).await?;
    drop(ha);
    let (hb, _) = repos.fetch(&ub, &Credentials::None).await?;
    let (hc, _) = repos.fetch(&uc, &Credentials::None).await?;
    // `a` was the least recently used and unused: evicted. `b` is held: kept.
    assert_eq!(repos.stats().evictions, 1);
    assert!(!repos.dir_for(&ua).exists());
    assert!(hb.path().exists() && hc.path().exists());
    assert!(repos.stats().bytes <= one * 5 / 2);

    // Held repositories are never evicted, even over budget.
    let (ha, _) = repos.fetch(&ua, &Credentials::None).await?;
    assert!(ha.path().exists() && hb.path().exists() && hc.path().exists());
    assert_eq!(repos.stats().evictions, 1);
    drop((ha, hb, hc));
    repos.enforce_budget().await;
    assert!(repos.stats().bytes <= one * 5 / 2);
    assert_eq!(repos.stats().evictions, 2);

    // A restarted cache adopts what is on disk, so the budget still holds across restarts.
    let before = repos.stats();
    drop(repos);
    let restarted = cache(&tmp, one * 5 / 2)?;
    let after = restarted.stats();
    assert_eq!(
        (after.repositories, after.bytes),
        (before.repositories, before.bytes)
    );
    Ok(())
}

#[tokio::test]
async fn a_listing_and_a_fetch_racing_on_a_new_repo_share_its_creation() -> anyhow::Result<()> {
    let Served {
        fx,
        server: _server,
        url,
        tmp,
        repos,
    } = served()?;
    let creds = basic();
    let (fetched, listed) = tokio::join!(repos.fetch(&url, &creds), repos.list_refs(&url, &creds));
    let (handle, _) = fetched?;
    assert!(listed?.iter().any(|r| r.name == "refs/heads/main"));
    let local = handle.open()?;
    let main = local.find_reference("refs/heads/main")?.peel_to_id()?;
    assert_eq!(main.to_string(), fx.second);
    // Only the repository itself is left in the cache root, no staging directories.
    assert_eq!(std::fs::read_dir(tmp.path().join("cache"))?.count(), 1);
    Ok(())
}

#[tokio::test]
async fn ssh_is_not_supported() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let repos = cache(&tmp, u64::MAX)?;
    let url = RepoUrl::parse("git@github.com:org/repo.git")?;
    let err = repos
        .fetch(&url, &Credentials::None)
        .await
        .expect_err("ssh");
    assert!(matches!(err, GitError::UnsupportedScheme { .. }), "{err}");
    Ok(())
}

/// Incompressible bytes (a simple xorshift generator; no need for a crate).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[tokio::test]
async fn an_oversized_fetch_is_stopped_and_leaves_the_cache_usable() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    repo.write(
        "small.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: small\n",
    )?;
    let first = repo.commit("small")?;
    let tmp = tempfile::tempdir()?;
    let repos = cache(&tmp, u64::MAX)?;
    let url = RepoUrl::parse(&repo.file_url())?;
    repos.set_max_fetch_bytes(2 << 20);
    repos.fetch(&url, &Credentials::None).await?;

    // A push adds 16 MiB of incompressible data: the next fetch passes the 2 MiB limit.
    repo.write("blob.bin", noise(16 << 20, 42))?;
    let big = repo.commit("huge")?;
    let err = repos
        .fetch(&url, &Credentials::None)
        .await
        .expect_err("over the fetch limit");
    assert!(
        matches!(err, capstan_repo::git::GitError::TooLarge { limit, .. } if limit == 2 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("--max-fetch-size"), "{err}");

    // What was fetched before is intact and no partial pack was left behind.
    let handle = repos.handle(&url);
    let local = handle.open()?;
    let first_id = gix::ObjectId::from_hex(first.as_bytes())?;
    assert!(local.find_commit(first_id).is_ok());
    let pack_bytes: u64 = std::fs::read_dir(handle.path().join("objects/pack"))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(
        pack_bytes < 2 << 20,
        "partial pack left: {pack_bytes} bytes"
    );
    drop(handle);

    // With the limit raised the same cache fetches the commit.
    repos.set_max_fetch_bytes(u64::MAX);
    let (handle, _) = repos.fetch(&url, &Credentials::None).await?;
    let big_id = gix::ObjectId::from_hex(big.as_bytes())?;
    assert!(handle.open()?.find_commit(big_id).is_ok());
    Ok(())
}
