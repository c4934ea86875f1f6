//! Git fixtures against the real `git`: repositories built by code, cloned over `file://` and
//! over smart HTTP (`git http-backend` behind the testkit server) with credentials, push policy,
//! protocol v2, request counting, concurrency and path-traversal refusal.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Deadline for any single `git` client run or raw HTTP exchange in these tests.
const DEADLINE: Duration = Duration::from_secs(60);

/// A repository with `main` (two commits), `feature` (one more), lightweight tag `v1` on the
/// first commit, annotated tag `v2` on the second, and a hostile symlink.
struct Fixture {
    repo: GitRepo,
    v1: String,
    main: String,
    feature: String,
}

fn fixture() -> Result<Fixture> {
    let repo = GitRepo::init()?;
    repo.write_all(&[
        ("app/deployment.yaml", "replicas: 1\n"),
        ("README.md", "demo\n"),
    ])?;
    let v1 = repo.commit("first")?;
    repo.tag("v1")?;
    repo.write("app/deployment.yaml", "replicas: 2\n")?
        .symlink("app/escape", "../../../../etc/passwd")?;
    let main = repo.commit("second")?;
    repo.tag_annotated("v2", "release two")?;
    repo.branch("feature")?.checkout("feature")?;
    repo.write("app/feature.yaml", "feature: on\n")?
        .remove("README.md")?;
    let feature = repo.commit("feature work")?;
    repo.checkout("main")?;
    Ok(Fixture {
        repo,
        v1,
        main,
        feature,
    })
}

/// Runs a fixture command asynchronously with a deadline, killing it if the deadline passes.
async fn run_async(cmd: std::process::Command) -> Result<Output> {
    let described = format!("{cmd:?}");
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .with_context(|| format!("{described} did not finish within {DEADLINE:?}"))?
        .with_context(|| format!("running {described}"))
}

/// Deterministic bytes that do not compress (a xorshift sequence).
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A raw HTTP/1.1 GET; returns the status code and the response head.
async fn raw_get(server: &GitHttpServer, path: &str, extra_headers: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra_headers}\r\n",
            server.addr()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(DEADLINE, exchange)
        .await
        .context("raw HTTP exchange timed out")??;
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    Ok((status, head))
}

/// Checks a clone against the fixture: tags, branches, file contents per revision.
fn check_clone(clone: &GitRepo, fx: &Fixture) -> Result<()> {
    ensure!(clone.head()? == fx.main, "a fresh clone is on main");
    ensure!(clone.rev_parse("v1")? == fx.v1);
    ensure!(
        clone.rev_parse("v2")? == fx.main,
        "annotated tags peel to their commit"
    );
    ensure!(clone.rev_parse("origin/feature")? == fx.feature);
    ensure!(clone.read("app/deployment.yaml")? == "replicas: 2\n");

    clone.checkout("v1")?;
    ensure!(clone.head()? == fx.v1);
    ensure!(clone.read("app/deployment.yaml")? == "replicas: 1\n");
    ensure!(clone.read("README.md")? == "demo\n");
    ensure!(
        !clone.path().join("app/escape").exists(),
        "the symlink came with the second commit"
    );

    clone.checkout("origin/feature")?;
    ensure!(clone.read("app/feature.yaml")? == "feature: on\n");
    ensure!(
        !clone.path().join("README.md").exists(),
        "removed on feature"
    );
    let link = std::fs::read_link(clone.path().join("app/escape"))?;
    ensure!(
        link.to_str() == Some("../../../../etc/passwd"),
        "symlink kept verbatim: {link:?}"
    );
    Ok(())
}

#[test]
fn fixtures_are_deterministic_and_refuse_escaping_paths() -> Result<()> {
    let a = fixture()?;
    let b = fixture()?;
    assert_ne!(a.repo.path(), b.repo.path());
    assert_eq!(
        (&a.v1, &a.main, &a.feature),
        (&b.v1, &b.main, &b.feature),
        "same steps, same SHAs"
    );
    assert_eq!(a.repo.head()?, a.main);
    assert_eq!(a.repo.git(["symbolic-ref", "--short", "HEAD"])?, "main");
    assert_eq!(
        a.repo.git(["cat-file", "-t", "v2"])?,
        "tag",
        "v2 is annotated"
    );
    assert_eq!(
        a.repo.git(["cat-file", "-t", "v1"])?,
        "commit",
        "v1 is lightweight"
    );
    assert_eq!(
        a.repo
            .git(["log", "-1", "--format=%an <%ae> %at", "main"])?,
        "Capstan Test <test@capstan.invalid> 1700000120"
    );
    assert!(a.repo.file_url().starts_with("file:///"));

    for bad in [
        "../outside",
        "/etc/passwd",
        "app/../../x",
        ".git/config",
        "",
    ] {
        assert!(a.repo.write(bad, "x").is_err(), "{bad:?} must be refused");
    }
    a.repo.symlink("out", "/tmp")?;
    assert!(
        a.repo.write("out/x", "x").is_err(),
        "writing through a symlink must be refused"
    );

    let err = a
        .repo
        .rev_parse("no-such-ref")
        .expect_err("unknown revision");
    assert!(format!("{err:#}").contains("no-such-ref"), "{err:#}");
    let err = a
        .repo
        .checkout("no-such-branch")
        .expect_err("unknown branch");
    assert!(
        format!("{err:#}").contains("invalid reference"),
        "git's stderr is in the error: {err:#}"
    );
    Ok(())
}

#[test]
fn clones_over_file_url() -> Result<()> {
    let fx = fixture()?;
    let clone = GitRepo::clone_from(&fx.repo.file_url(), &[])?;
    check_clone(&clone, &fx)
}

#[tokio::test]
async fn clones_over_smart_http_with_basic_auth() -> Result<()> {
    let fx = fixture()?;
    let server =
        GitHttpServer::start_temp(GitHttpOptions::default().with_basic_auth("alice", "s3cret"))?;
    let url = server.url_for(&fx.repo)?;
    assert_eq!(
        url,
        format!("http://{}/{}.git", server.addr(), fx.repo.name())
    );

    let before = server.stats();
    let clone = GitRepo::clone_from(&server.url_with_credentials(fx.repo.name()), &[])?;
    check_clone(&clone, &fx)?;
    let after = server.stats();
    assert!(after.requests > before.requests);
    assert_eq!(
        after.info_refs,
        before.info_refs + 1,
        "one ref advertisement per clone: {after:?}"
    );
    assert!(after.upload_packs > before.upload_packs, "{after:?}");
    // curl sends URL credentials only after a 401 challenge, so one refusal is normal.
    assert!(after.unauthorized - before.unauthorized <= 1, "{after:?}");

    // Credentials as a header instead of in the URL.
    let basic = format!(
        "Authorization: Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:s3cret")
    );
    let clone = GitRepo::clone_from(&url, &[("http.extraHeader", &basic)])?;
    assert_eq!(clone.head()?, fx.main);
    clone.git(["fetch", "-q", "origin"])?;

    // A repository living under the server root, addressed by name.
    let in_root = GitRepo::init_at(server.root().join("platform.git"))?;
    let sha = in_root.write("values.yaml", "x: 1\n")?.commit("init")?;
    assert_eq!(in_root.name(), "platform");
    let clone = GitRepo::clone_from(&server.url_with_credentials("platform"), &[])?;
    assert_eq!(clone.head()?, sha);
    assert_eq!(clone.read("values.yaml")?, "x: 1\n");
    assert!(
        server.recent_errors().is_empty(),
        "{:?}",
        server.recent_errors()
    );
    Ok(())
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_401() -> Result<()> {
    let fx = fixture()?;
    let server =
        GitHttpServer::start_temp(GitHttpOptions::default().with_basic_auth("alice", "s3cret"))?;
    let url = server.url_for(&fx.repo)?;
    let wrong = url.replacen("http://", "http://alice:wrong@", 1);

    let mut cmd = fx.repo.command();
    cmd.args(["ls-remote", &wrong]);
    let output = run_async(cmd).await?;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("Authentication failed"),
        "git should report an authentication failure: {err}"
    );
    assert!(
        !err.contains("wrong"),
        "git does not echo the password: {err}"
    );
    assert!(server.stats().unauthorized >= 1);

    let (status, head) = raw_get(
        &server,
        &format!("/{}.git/info/refs?service=git-upload-pack", fx.repo.name()),
        "",
    )
    .await?;
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"capstan-test-git\""),
        "{head}"
    );
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:s3cret");
    let (status, head) = raw_get(
        &server,
        &format!("/{}.git/info/refs?service=git-upload-pack", fx.repo.name()),
        &format!("Authorization: Basic {basic}\r\n"),
    )
    .await?;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("application/x-git-upload-pack-advertisement"),
        "{head}"
    );
    Ok(())
}

#[tokio::test]
async fn bearer_token_via_extra_header() -> Result<()> {
    let fx = fixture()?;
    let server = GitHttpServer::start_temp(GitHttpOptions::default().with_bearer_token("t0ken"))?;
    let url = server.url_for(&fx.repo)?;
    let clone = GitRepo::clone_from(&url, &[("http.extraHeader", "Authorization: Bearer t0ken")])?;
    check_clone(&clone, &fx)?;

    let mut cmd = fx.repo.command();
    cmd.args([
        "-c",
        "http.extraHeader=Authorization: Bearer nope",
        "ls-remote",
        &url,
    ]);
    let output = run_async(cmd).await?;
    assert!(!output.status.success(), "a wrong token is refused");
    assert!(server.stats().unauthorized >= 1);
    let (status, head) =
        raw_get(&server, &format!("/{}.git/info/refs", fx.repo.name()), "").await?;
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    Ok(())
}

#[tokio::test]
async fn pushes_are_refused_unless_enabled() -> Result<()> {
    let fx = fixture()?;
    let read_only =
        GitHttpServer::start_temp(GitHttpOptions::default().with_basic_auth("alice", "s3cret"))?;
    read_only.url_for(&fx.repo)?;
    let clone = GitRepo::clone_from(&read_only.url_with_credentials(fx.repo.name()), &[])?;
    // Incompressible and larger than the 64 KiB post buffer set below, so the push body is
    // sent with chunked encoding and no Content-Length.
    clone
        .write("pushed.txt", "hello\n")?
        .write("noise.bin", noise(256 * 1024))?;
    let pushed = clone.commit("from the clone")?;

    let mut cmd = clone.command();
    cmd.args(["push", "origin", "HEAD:main"]);
    let output = run_async(cmd).await?;
    assert!(
        !output.status.success(),
        "read-only server must refuse pushes"
    );
    assert!(stderr(&output).contains("403"), "{}", stderr(&output));
    assert!(read_only.stats().rejected >= 1);
    assert_eq!(read_only.stats().receive_packs, 0);
    assert_eq!(fx.repo.rev_parse("main")?, fx.main);

    let writable = GitHttpServer::start_temp(
        GitHttpOptions::default()
            .with_basic_auth("alice", "s3cret")
            .with_push(true),
    )?;
    writable.url_for(&fx.repo)?;
    let mut cmd = clone.command();
    cmd.args([
        "-c",
        "http.postBuffer=65536",
        "push",
        &writable.url_with_credentials(fx.repo.name()),
        "HEAD:main",
    ]);
    let output = run_async(cmd).await?;
    assert!(output.status.success(), "push failed: {}", stderr(&output));
    assert_eq!(fx.repo.rev_parse("main")?, pushed);
    assert_eq!(
        fx.repo.read("pushed.txt")?,
        "hello\n",
        "updateInstead refreshed the work tree"
    );
    assert_eq!(
        std::fs::read(fx.repo.path().join("noise.bin"))?,
        noise(256 * 1024)
    );
    assert!(writable.stats().receive_packs >= 1);
    Ok(())
}

#[tokio::test]
async fn protocol_v2_is_passed_through() -> Result<()> {
    let fx = fixture()?;
    let server = GitHttpServer::start_temp(GitHttpOptions::anonymous())?;
    let url = server.url_for(&fx.repo)?;

    let mut cmd = fx.repo.command();
    cmd.args(["-c", "protocol.version=2", "ls-remote", &url]);
    let output = run_async(cmd).await?;
    assert!(output.status.success(), "{}", stderr(&output));
    let refs = String::from_utf8(output.stdout)?;
    for expected in [
        format!("{}\trefs/heads/main", fx.main),
        format!("{}\trefs/heads/feature", fx.feature),
        format!("{}\trefs/tags/v1", fx.v1),
        format!("{}\trefs/tags/v2^{{}}", fx.main),
    ] {
        assert!(
            refs.lines().any(|line| line == expected),
            "missing {expected:?} in\n{refs}"
        );
    }
    let v2 = server.stats();
    assert!(
        v2.protocol_v2 >= 2,
        "advertisement and ls-refs both carry Git-Protocol: {v2:?}"
    );
    assert_eq!(
        v2.upload_packs, 1,
        "v2 ls-remote sends one ls-refs command: {v2:?}"
    );

    let mut cmd = fx.repo.command();
    cmd.args(["-c", "protocol.version=0", "ls-remote", &url]);
    let output = run_async(cmd).await?;
    assert!(output.status.success(), "{}", stderr(&output));
    let v0 = server.stats();
    assert_eq!(
        v0.protocol_v2, v2.protocol_v2,
        "v0 sends no Git-Protocol header"
    );
    assert_eq!(
        v0.upload_packs, v2.upload_packs,
        "v0 ls-remote reads the advertisement only"
    );
    assert_eq!(v0.info_refs, v2.info_refs + 1);
    Ok(())
}

#[tokio::test]
async fn four_concurrent_clones_succeed() -> Result<()> {
    let fx = fixture()?;
    // Something big enough that packs take more than one read to stream.
    let blob: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
    fx.repo.write("big.txt", &blob)?;
    let head = fx.repo.commit("big")?;
    let server =
        GitHttpServer::start_temp(GitHttpOptions::default().with_basic_auth("alice", "s3cret"))?;
    server.url_for(&fx.repo)?;
    let url = server.url_with_credentials(fx.repo.name());

    let dests = tempfile::tempdir()?;
    let clones = (0..4).map(|i| {
        let mut cmd = fx.repo.command();
        cmd.args(["clone", "-q", &url])
            .arg(dests.path().join(format!("c{i}")));
        run_async(cmd)
    });
    for (i, output) in futures::future::join_all(clones)
        .await
        .into_iter()
        .enumerate()
    {
        let output = output?;
        assert!(output.status.success(), "clone {i}: {}", stderr(&output));
        let path = dests.path().join(format!("c{i}"));
        assert_eq!(std::fs::read_to_string(path.join("big.txt"))?, blob);
    }
    let stats = server.stats();
    assert!(stats.info_refs >= 4 && stats.upload_packs >= 4, "{stats:?}");
    assert!(
        server.recent_errors().is_empty(),
        "{:?}",
        server.recent_errors()
    );

    let mut cmd = fx.repo.command();
    cmd.current_dir(dests.path().join("c0"))
        .args(["rev-parse", "HEAD"]);
    let output = run_async(cmd).await?;
    assert_eq!(String::from_utf8(output.stdout)?.trim(), head);
    Ok(())
}

#[tokio::test]
async fn path_traversal_and_unknown_repos_are_refused() -> Result<()> {
    let fx = fixture()?;
    let server = GitHttpServer::start_temp(GitHttpOptions::anonymous())?;
    server.url_for(&fx.repo)?;
    for path in [
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/info/refs?service=git-upload-pack",
        &format!(
            "/{}.git/../../info/refs?service=git-upload-pack",
            fx.repo.name()
        ),
        "//etc/info/refs",
    ] {
        let (status, head) = raw_get(&server, path, "").await?;
        assert_eq!(status, 400, "{path}: {head}");
    }
    assert!(server.stats().rejected >= 4);
    assert!(
        server.recent_errors().iter().any(|e| e.contains("..")),
        "{:?}",
        server.recent_errors()
    );

    let (status, head) = raw_get(
        &server,
        "/missing.git/info/refs?service=git-upload-pack",
        "",
    )
    .await?;
    assert_eq!(status, 404, "{head}");
    assert!(server.mount("../x", fx.repo.path()).is_err());
    Ok(())
}

/// One server, several runtimes: what a `static` server shared by `#[tokio::test]`s sees.
#[test]
fn server_outlives_test_runtimes_and_stops_on_drop() -> Result<()> {
    let fx = fixture()?;
    let server = GitHttpServer::start_temp(GitHttpOptions::anonymous())?;
    let url = server.url_for(&fx.repo)?;
    for round in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let output = runtime.block_on(async {
            let mut cmd = fx.repo.command();
            cmd.args(["ls-remote", &url, "refs/heads/main"]);
            run_async(cmd).await
        })?;
        assert!(
            output.status.success(),
            "round {round}: {}",
            stderr(&output)
        );
        drop(runtime);
    }
    assert!(server.stats().info_refs >= 2);

    let addr = server.addr();
    drop(server);
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(_) => Ok(()),
        Ok(_) => bail!("the port is still accepting connections after drop"),
    }
}

#[tokio::test]
async fn incremental_fetch_with_many_haves_sends_gzip_bodies() -> Result<()> {
    let fx = fixture()?;
    let server = GitHttpServer::start_temp(GitHttpOptions::anonymous())?;
    let url = server.url_for(&fx.repo)?;
    let clone = GitRepo::clone_from(&url, &[])?;
    // Local history the server has never seen: negotiation lists it as "have" lines, which
    // makes the request bodies big enough for git to gzip them.
    for i in 0..100 {
        clone
            .write("local.txt", format!("{i}\n"))?
            .commit(&format!("local {i}"))?;
    }
    for version in ["0", "2"] {
        // A new upstream commit each round, so each fetch has something to negotiate for.
        let upstream = fx
            .repo
            .write("upstream.txt", version)?
            .commit(&format!("upstream v{version}"))?;
        let before = server.stats();
        let mut cmd = clone.command();
        cmd.args([
            "-c",
            &format!("protocol.version={version}"),
            "fetch",
            "-q",
            "origin",
        ]);
        let output = run_async(cmd).await?;
        assert!(output.status.success(), "v{version}: {}", stderr(&output));
        assert_eq!(clone.rev_parse("origin/main")?, upstream);
        let after = server.stats();
        assert!(
            after.gzip_bodies > before.gzip_bodies,
            "v{version}: {after:?}"
        );
    }
    assert!(
        server.recent_errors().is_empty(),
        "{:?}",
        server.recent_errors()
    );
    Ok(())
}

/// A server or fixture can live in a `static` shared by every test of a binary.
#[test]
fn fixtures_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<GitHttpServer>();
    shareable::<GitRepo>();
}
