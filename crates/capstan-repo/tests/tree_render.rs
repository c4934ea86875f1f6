//! Reading trees from fetched repositories, rendering directory sources, and hostile repos.

use capstan_repo::git::{CacheConfig, Credentials, RepoCache, RepoHandle, RepoUrl};
use capstan_repo::render::RenderError;
use capstan_repo::render::directory::{DirectoryOptions, render};
use capstan_repo::tree::{TreeError, TreeLimits, read_dir};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: NAME\n";

fn cm(name: &str) -> String {
    CM.replace("NAME", name)
}

/// Fetches `repo` over file:// into a fresh cache; returns the handle and HEAD's commit.
async fn fetch(
    repo: &GitRepo,
    tmp: &tempfile::TempDir,
) -> anyhow::Result<(RepoHandle, gix::ObjectId)> {
    let cache = RepoCache::new(CacheConfig {
        root: tmp.path().join("cache"),
        max_bytes: u64::MAX,
    })?;
    let url = RepoUrl::parse(&repo.file_url())?;
    let (handle, _) = cache.fetch(&url, &Credentials::None).await?;
    let head = gix::ObjectId::from_hex(repo.head()?.as_bytes())?;
    Ok((handle, head))
}

fn names(manifests: &[serde_json::Value]) -> Vec<String> {
    manifests
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["kind"].as_str().unwrap_or("?"),
                m["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[tokio::test]
async fn renders_a_directory_fetched_over_http() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    repo.write("apps/guestbook/a.yaml", format!("{}---\n{}", cm("a1"), cm("a2")))?
        .write(
            "apps/guestbook/b.json",
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"b"}}"#,
        )?
        .write(
            "apps/guestbook/list.yaml",
            "apiVersion: v1\nkind: ServiceList\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: l1}}\n- {apiVersion: v1, kind: Service, metadata: {name: l2}}\n",
        )?
        .write("apps/guestbook/values.yaml", "replicas: 3\n")?
        .write("apps/guestbook/notes.txt", "hello")?
        .write("apps/guestbook/nested/c.yml", cm("c"))?
        .write("apps/guestbook/nested/c-test.yaml", cm("c-test"))?
        .write("apps/other/x.yaml", cm("x"))?;
    repo.commit("apps")?;
    let server = GitHttpServer::start_temp(GitHttpOptions::default().with_basic_auth("u", "p4ss"))?;
    let url = RepoUrl::parse(&server.url_for(&repo)?)?;
    let tmp = tempfile::tempdir()?;
    let cache = RepoCache::new(CacheConfig {
        root: tmp.path().join("cache"),
        max_bytes: u64::MAX,
    })?;
    let creds = Credentials::Basic {
        username: "u".into(),
        password: "p4ss".into(),
    };
    let (handle, _) = cache.fetch(&url, &creds).await?;
    let local = handle.open()?;
    let head = gix::ObjectId::from_hex(repo.head()?.as_bytes())?;

    // Not recursive: only the top-level files are read.
    let listing = read_dir(
        &local,
        head,
        "apps/guestbook",
        false,
        &TreeLimits::default(),
    )?;
    let paths: Vec<&str> = listing.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["a.yaml", "b.json", "list.yaml", "notes.txt", "values.yaml"]
    );
    assert_eq!(listing.files[0].repo_path, "apps/guestbook/a.yaml");
    let out = render(&listing.files, &DirectoryOptions::default())?;
    assert_eq!(
        names(&out.manifests),
        [
            "ConfigMap/a1",
            "ConfigMap/a2",
            "Service/b",
            "Service/l1",
            "Service/l2"
        ]
    );
    let reasons: Vec<(String, String)> = out
        .skipped
        .iter()
        .map(|s| (s.path.clone(), s.reason.clone()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(p, r)| p == "notes.txt" && r.contains(".yaml, .yml or .json")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(p, r)| p == "values.yaml" && r.contains("not a Kubernetes object")),
        "{reasons:?}"
    );

    // Recursive with include/exclude (braces; matched against the path under the source).
    let listing = read_dir(
        &local,
        head,
        "apps/guestbook/",
        true,
        &TreeLimits::default(),
    )?;
    let opts = DirectoryOptions {
        recurse: true,
        include: "{*.yml,nested/*}".into(),
        exclude: "*-test.yaml".into(),
    };
    let out = render(&listing.files, &opts)?;
    assert_eq!(names(&out.manifests), ["ConfigMap/c"]);
    let opts = DirectoryOptions {
        recurse: true,
        include: String::new(),
        exclude: "{nested/*,b.json}".into(),
    };
    let out = render(&listing.files, &opts)?;
    assert_eq!(
        names(&out.manifests),
        ["ConfigMap/a1", "ConfigMap/a2", "Service/l1", "Service/l2"]
    );

    // The repository root works too and sees everything recursively.
    let listing = read_dir(&local, head, "", true, &TreeLimits::default())?;
    assert_eq!(listing.files.len(), 8);
    Ok(())
}

#[tokio::test]
async fn malformed_yaml_is_reported_with_file_and_line() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    repo.write("app/ok.yaml", cm("ok"))?.write(
        "app/bad.yaml",
        format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
            cm("first")
        ),
    )?;
    repo.commit("bad")?;
    let tmp = tempfile::tempdir()?;
    let (handle, head) = fetch(&repo, &tmp).await?;
    let listing = read_dir(&handle.open()?, head, "app", false, &TreeLimits::default())?;
    let err = render(&listing.files, &DirectoryOptions::default()).expect_err("malformed");
    let RenderError::Yaml { file, line, .. } = &err else {
        panic!("unexpected error {err}");
    };
    assert_eq!(file, "bad.yaml");
    assert!(line.is_some_and(|l| (8..=10).contains(&l)), "{err}");
    assert!(err.to_string().starts_with("bad.yaml:"), "{err}");
    Ok(())
}

#[tokio::test]
async fn symlinks_inside_are_followed_and_outside_refused() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    repo.write("shared/base.yaml", cm("base"))?
        .write("app/own.yaml", cm("own"))?
        .symlink("app/base.yaml", "../shared/base.yaml")?
        .symlink("app/shared-dir", "../shared")?
        .symlink("app/dangling.yaml", "missing.yaml")?;
    repo.commit("links")?;
    let tmp = tempfile::tempdir()?;
    let (handle, head) = fetch(&repo, &tmp).await?;
    let local = handle.open()?;
    let listing = read_dir(&local, head, "app", true, &TreeLimits::default())?;
    let out = render(&listing.files, &DirectoryOptions::default())?;
    assert_eq!(names(&out.manifests), ["ConfigMap/base", "ConfigMap/own"]);
    let skipped: Vec<(&str, &str)> = listing
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("dangling.yaml", "dangling symlink"),
            ("shared-dir", "symlink to a directory is not followed"),
        ]
    );

    // A link that climbs out of the repository, and an absolute one.
    for (name, target) in [
        ("escape.yaml", "../../../etc/passwd"),
        ("abs.yaml", "/etc/passwd"),
    ] {
        let hostile = GitRepo::init()?;
        hostile
            .write("app/ok.yaml", cm("ok"))?
            .symlink(format!("app/{name}"), target)?;
        hostile.commit("hostile")?;
        let tmp = tempfile::tempdir()?;
        let (handle, head) = fetch(&hostile, &tmp).await?;
        let err = read_dir(&handle.open()?, head, "app", false, &TreeLimits::default())
            .expect_err("link out of the repo");
        assert!(matches!(err, TreeError::SymlinkOutsideRepo { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("app/{name}")) && text.contains(target),
            "{text}"
        );
    }

    // A source path that is itself a link out of the repository.
    let hostile = GitRepo::init()?;
    hostile.write("x.yaml", cm("x"))?.symlink("app", "..")?;
    hostile.commit("hostile")?;
    let tmp = tempfile::tempdir()?;
    let (handle, head) = fetch(&hostile, &tmp).await?;
    let err = read_dir(&handle.open()?, head, "app", false, &TreeLimits::default())
        .expect_err("link out of the repo");
    assert!(matches!(err, TreeError::SymlinkOutsideRepo { .. }), "{err}");

    // A loop.
    let looped = GitRepo::init()?;
    looped
        .symlink("app/a.yaml", "b.yaml")?
        .symlink("app/b.yaml", "a.yaml")?;
    looped.commit("loop")?;
    let tmp = tempfile::tempdir()?;
    let (handle, head) = fetch(&looped, &tmp).await?;
    let err =
        read_dir(&handle.open()?, head, "app", false, &TreeLimits::default()).expect_err("loop");
    assert!(matches!(err, TreeError::SymlinkLoop { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn hostile_paths_and_limits_are_refused() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    repo.write("app/a.yaml", cm("a"))?
        .write("app/b.yaml", cm("b"))?
        .write("app/c.yaml", cm("c"))?
        .write("big/huge.yaml", "x".repeat(64 * 1024))?;
    repo.commit("files")?;
    let tmp = tempfile::tempdir()?;
    let (handle, head) = fetch(&repo, &tmp).await?;
    let local = handle.open()?;
    let limits = TreeLimits::default();

    for bad in ["../app", "app/../../etc", "/etc", "/app"] {
        let err = read_dir(&local, head, bad, false, &limits).expect_err(bad);
        assert!(matches!(err, TreeError::InvalidPath { .. }), "{bad}: {err}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    let err = read_dir(&local, head, "nope", false, &limits).expect_err("missing");
    assert!(matches!(err, TreeError::PathNotFound { .. }), "{err}");
    let err = read_dir(&local, head, "app/a.yaml", false, &limits).expect_err("file");
    assert!(matches!(err, TreeError::NotADirectory { .. }), "{err}");

    let small = TreeLimits {
        max_file_bytes: 16 * 1024,
        ..TreeLimits::default()
    };
    let err = read_dir(&local, head, "big", false, &small).expect_err("huge file");
    let TreeError::FileTooLarge { path, size, limit } = &err else {
        panic!("unexpected error {err}");
    };
    assert_eq!(
        (path.as_str(), *size, *limit),
        ("big/huge.yaml", 64 * 1024, 16 * 1024)
    );
    assert!(err.to_string().contains("big/huge.yaml"), "{err}");

    let few = TreeLimits {
        max_files: 2,
        ..TreeLimits::default()
    };
    let err = read_dir(&local, head, "app", false, &few).expect_err("too many");
    assert!(
        matches!(err, TreeError::TooManyFiles { limit: 2, .. }),
        "{err}"
    );

    let total = TreeLimits {
        max_total_bytes: 100,
        ..TreeLimits::default()
    };
    let err = read_dir(&local, head, "app", false, &total).expect_err("total");
    assert!(matches!(err, TreeError::TotalTooLarge { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn submodules_are_skipped_with_a_reason() -> anyhow::Result<()> {
    let repo = GitRepo::init()?;
    repo.write("app/a.yaml", cm("a"))?;
    let first = repo.commit("first")?;
    // A gitlink entry pointing at some commit (here one of our own, as a submodule would).
    repo.git([
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{first},app/vendored"),
    ])?;
    repo.git(["commit", "-q", "-m", "submodule"])?;
    let tmp = tempfile::tempdir()?;
    let (handle, head) = fetch(&repo, &tmp).await?;
    let listing = read_dir(&handle.open()?, head, "app", true, &TreeLimits::default())?;
    assert_eq!(listing.files.len(), 1);
    assert_eq!(listing.skipped.len(), 1);
    assert_eq!(listing.skipped[0].path, "vendored");
    assert!(listing.skipped[0].reason.contains("submodule"));
    Ok(())
}
