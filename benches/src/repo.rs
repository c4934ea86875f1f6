//! The `repo` scenario: the repo-server against real Git over smart HTTP and the real tools.
//!
//! Phases, each printing its figures as it finishes, each with its baseline measured in the
//! same run on the same input, runs of the two sides interleaved (A B, B A, …) so that drift
//! in the machine's speed hits both, and the first round of each left out as a warm-up:
//!
//! 1. **directory** — [`render::directory::render`] over a generated YAML corpus vs parsing
//!    the same files with serde-saphyr alone, the way the renderer calls it, both on one
//!    thread, slice by slice in turn, timed by its on-CPU time (`dir_mib_per_s`,
//!    `yaml_crate_mib_per_s`, `dir_parse_ratio`);
//! 2. **fetch** — a cold fetch of a repository with a long history by [`RepoCache`] (gix)
//!    vs `git clone --bare` from the same smart-HTTP server (`gix_vs_git_fetch_ratio`);
//! 3. **warm** — `GenerateManifests` answered from the memory cache, through the real gRPC
//!    service on loopback (`warm_p50_ms`, `warm_p99_ms`);
//! 4. **helm / kustomize** — a real render by [`RepoServer::generate`] (a distinct
//!    Application name per run, so the manifest cache never answers; the ref listing is
//!    cached, as it is between refreshes) vs the tool run directly on the same chart or
//!    overlay with the same arguments (`helm_overhead_ratio`, `kustomize_overhead_ratio`);
//!    a breakdown of Capstan's time (checkout, tool run through the runner and parsing)
//!    goes to standard error;
//! 5. **coalescing** — 200 concurrent requests for 200 Applications on one commit, through
//!    gRPC, against a fresh repo-server: how many fetches and ref listings it made, and what
//!    the Git server saw (`fetches_for_200_apps`, `ref_listings_for_200_apps`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use capstan_model::ApplicationSource;
use capstan_repo::git::{CacheConfig, Credentials, RepoCache, RepoUrl};
use capstan_repo::render;
use capstan_repo::render::directory::DirectoryOptions;
use capstan_repo::render::env::AppContext;
use capstan_repo::render::helm::{HelmRequest, HelmTool};
use capstan_repo::render::kustomize::{KustomizeRequest, KustomizeTool};
use capstan_repo::service::{CacheOutcome, ManifestRequest, RepoServer, RepoServerConfig};
use capstan_repo::tree::{SourceFile, TreeLimits};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};

use crate::clock::{self, Spent};
use crate::direct::{self, ToolRun};
use crate::grpc::{self, GrpcServer};
use crate::stats::{median, ms, percentile};
use crate::{Unit, figure, fixtures, progress};

/// The bearer token the Git server requires.
const TOKEN: &str = "bench-token";
/// The destination namespace of every Application.
const NAMESPACE: &str = "bench";
/// Applications in the coalescing phase (the figure's name says 200).
const APPS: usize = 200;

/// How much work each phase does.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// Timed warm-cache requests.
    warm_requests: usize,
    /// Timed renders per side for Helm and for Kustomize.
    tool_runs: usize,
    /// Files of the YAML corpus, and bytes per file.
    dir_files: usize,
    dir_file_bytes: usize,
    /// Timed rounds per side over the corpus.
    dir_rounds: usize,
    /// Commits of the fetched repository, files added and changed per commit.
    history_commits: usize,
    history_added: usize,
    history_changed: usize,
    /// Timed cold fetches per side.
    fetch_runs: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                warm_requests: 500,
                tool_runs: 7,
                dir_files: 500,
                dir_file_bytes: 10 << 10,
                dir_rounds: 5,
                history_commits: 100,
                history_added: 10,
                history_changed: 5,
                fetch_runs: 3,
            }
        } else {
            Self {
                warm_requests: 5000,
                tool_runs: 21,
                dir_files: 2000,
                dir_file_bytes: 10 << 10,
                dir_rounds: 7,
                history_commits: 300,
                history_added: 10,
                history_changed: 5,
                fetch_runs: 9,
            }
        }
    }
}

/// Runs the scenario; see the [module docs](self).
pub(crate) async fn run(quick: bool) -> anyhow::Result<()> {
    let sizes = Sizes::new(quick);
    progress!(
        "repo scenario ({}) on {}: {sizes:?}",
        if quick { "quick" } else { "full" },
        crate::machine()
    );
    let started = Instant::now();

    tokio::task::spawn_blocking(move || directory_throughput(&sizes))
        .await
        .context("the directory phase panicked")??;

    progress!("building the Git fixtures");
    let fixtures = tokio::task::spawn_blocking(move || Fixtures::build(&sizes))
        .await
        .context("building the fixtures panicked")??;
    let git = GitHttpServer::start_temp(GitHttpOptions::default().with_bearer_token(TOKEN))?;
    let urls = Urls {
        tools: git.url_for(&fixtures.tools)?,
        apps: git.url_for(&fixtures.apps)?,
        history: git.url_for(&fixtures.history)?,
    };
    let scratch = tempfile::Builder::new()
        .prefix("capstan-bench-")
        .tempdir()?;
    // Checkouts are written and removed once per render: the file system under it matters.
    progress!(
        "scratch (Git caches, checkouts): {}; set TMPDIR to move it",
        scratch.path().display()
    );

    fetch_comparison(&git, &fixtures, &urls, scratch.path(), &sizes)
        .await
        .with_context(|| diagnostics(&git))?;

    let server = RepoServer::new(server_config(&scratch.path().join("server-a"))?).await?;
    progress!("repo-server ready: {}", server.tool_versions());
    warm_latency(&server, &urls, &sizes)
        .await
        .with_context(|| diagnostics(&git))?;
    tool_overheads(&server, &fixtures, &urls, scratch.path(), &sizes)
        .await
        .with_context(|| diagnostics(&git))?;
    drop(server);

    coalescing(&git, &urls, scratch.path())
        .await
        .with_context(|| diagnostics(&git))?;
    progress!(
        "repo scenario done in {:.1}s; {}",
        started.elapsed().as_secs_f64(),
        crate::machine()
    );
    Ok(())
}

/// The Git server's recent failures, for an error message.
fn diagnostics(git: &GitHttpServer) -> String {
    let errors = git.recent_errors();
    if errors.is_empty() {
        "the git server recorded no errors".to_owned()
    } else {
        format!("git server errors: {}", errors.join(" | "))
    }
}

/// The repositories the phases use, kept alive while the server mounts them.
struct Fixtures {
    /// A Helm chart (`chart`) and a Kustomize base and overlay (`kustomize/…`).
    tools: GitRepo,
    /// The overlay's path in `tools`.
    overlay: String,
    /// 200 small directory apps (`apps/app-NNN`).
    apps: GitRepo,
    /// A long history (`services/…`), for the fetch comparison.
    history: GitRepo,
}

impl Fixtures {
    fn build(sizes: &Sizes) -> anyhow::Result<Self> {
        let tools = GitRepo::init()?;
        let (kustomize, overlay) = fixtures::kustomize_app("kustomize");
        tools.write_all(&fixtures::helm_chart("chart"))?;
        tools.write_all(&kustomize)?;
        tools.write("README.md", "Charts and overlays for the benchmark.\n")?;
        tools.commit("chart and overlay")?;

        let apps = GitRepo::init()?;
        apps.write_all(&fixtures::directory_apps("apps", APPS))?;
        apps.commit("200 apps")?;

        let history = GitRepo::init()?;
        let started = Instant::now();
        let files = fixtures::history(
            &history,
            sizes.history_commits,
            sizes.history_added,
            sizes.history_changed,
        )?;
        let pack_bytes: u64 = std::fs::read_dir(history.git_dir().join("objects/pack"))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        progress!(
            "history fixture: {} commits, {files} files at the tip, pack {:.1} MiB, built in {:.1}s",
            sizes.history_commits,
            pack_bytes as f64 / (1 << 20) as f64,
            started.elapsed().as_secs_f64()
        );
        Ok(Self {
            tools,
            overlay,
            apps,
            history,
        })
    }
}

/// The fixtures' URLs on the Git server.
struct Urls {
    tools: String,
    apps: String,
    history: String,
}

fn credentials() -> Credentials {
    Credentials::Bearer {
        token: TOKEN.to_owned(),
    }
}

/// A repo-server under `work_dir` with the pinned Helm and Kustomize. The ref TTL is an hour
/// so that no ref listing falls inside a timed render or warm request: listings are what the
/// coalescing phase counts, and a render should not be charged for one by bad luck.
fn server_config(work_dir: &std::path::Path) -> anyhow::Result<RepoServerConfig> {
    let mut config = RepoServerConfig::new(work_dir);
    config.helm = HelmTool {
        program: capstan_testkit::tools::helm()?,
    };
    config.kustomize = KustomizeTool {
        program: capstan_testkit::tools::kustomize()?,
        ..KustomizeTool::default()
    };
    config.ref_ttl = Duration::from_secs(3600);
    Ok(config)
}

/// Files per slice of the directory phase.
const SLICE_FILES: usize = 20;

/// Phase 1: the directory renderer vs serde-saphyr alone over the same files, single
/// threaded, timed by the thread's on-CPU time (see [`crate::clock`]). Each round goes
/// through the corpus in slices of [`SLICE_FILES`] files, rendering and parsing each slice
/// in turn (alternating which goes first): on a shared machine both sides then see the same
/// neighbours, which a whole-corpus run per side (seconds apart) does not.
fn directory_throughput(sizes: &Sizes) -> anyhow::Result<()> {
    let files = fixtures::yaml_corpus(sizes.dir_files, sizes.dir_file_bytes);
    let bytes: usize = files.iter().map(|f| f.data.len()).sum();
    let mib = bytes as f64 / (1 << 20) as f64;
    progress!(
        "directory: {} files, {mib:.1} MiB, {} rounds per side in slices of {SLICE_FILES} files",
        files.len(),
        sizes.dir_rounds
    );
    let options = DirectoryOptions {
        recurse: true,
        ..DirectoryOptions::default()
    };
    // Both sides keep every parsed document until the clock stops and drop them afterwards.
    let ours = |slice: &[SourceFile]| -> anyhow::Result<(Spent, usize)> {
        let (rendered, spent) = clock::measure(|| render::directory::render(slice, &options));
        let rendered = rendered?;
        ensure!(rendered.skipped.is_empty(), "{:?}", rendered.skipped);
        Ok((spent, std::hint::black_box(rendered).manifests.len()))
    };
    let parser = |slice: &[SourceFile]| -> anyhow::Result<(Spent, usize)> {
        let (all, spent) = clock::measure(|| -> anyhow::Result<Vec<serde_json::Value>> {
            let mut all = Vec::new();
            for f in slice {
                let text = std::str::from_utf8(&f.data)?;
                let docs = serde_saphyr::from_multiple_with_options::<serde_json::Value>(
                    text,
                    serde_saphyr::Options::default(),
                )?;
                all.extend(docs);
            }
            Ok(all)
        });
        Ok((spent, std::hint::black_box(all?).len()))
    };
    /// One side's totals over a round.
    #[derive(Default)]
    struct Total {
        best: Duration,
        wall: Duration,
        documents: usize,
    }
    impl Total {
        fn add(&mut self, (spent, documents): (Spent, usize)) {
            self.best += spent.best();
            self.wall += spent.wall;
            self.documents += documents;
        }
    }
    let (mut ours_s, mut parser_s) = (Vec::new(), Vec::new());
    for round in 0..=sizes.dir_rounds {
        let (mut a, mut b) = (Total::default(), Total::default());
        for (k, slice) in files.chunks(SLICE_FILES).enumerate() {
            if (k + round) % 2 == 0 {
                a.add(ours(slice)?);
                b.add(parser(slice)?);
            } else {
                b.add(parser(slice)?);
                a.add(ours(slice)?);
            }
        }
        ensure!(
            a.documents == b.documents,
            "the renderer returned {} manifests, the parser {} documents",
            a.documents,
            b.documents
        );
        progress!(
            "directory round {round}{}: render {:.0} ms on CPU ({:.0} ms wall), parse {:.0} ms on CPU ({:.0} ms wall), {} manifests",
            if round == 0 { " (warm-up)" } else { "" },
            ms(a.best),
            ms(a.wall),
            ms(b.best),
            ms(b.wall),
            a.documents
        );
        if round > 0 {
            ours_s.push(a.best.as_secs_f64());
            parser_s.push(b.best.as_secs_f64());
        }
    }
    let ours_rate = mib / median(&ours_s);
    let parser_rate = mib / median(&parser_s);
    figure("dir_mib_per_s", ours_rate, Unit::MibPerS);
    figure("yaml_crate_mib_per_s", parser_rate, Unit::MibPerS);
    figure("dir_parse_ratio", ours_rate / parser_rate, Unit::Ratio);
    Ok(())
}

/// Phase 2: cold fetch by the repo-server's Git cache (gix) vs `git clone --bare`.
async fn fetch_comparison(
    git: &GitHttpServer,
    fixtures: &Fixtures,
    urls: &Urls,
    scratch: &std::path::Path,
    sizes: &Sizes,
) -> anyhow::Result<()> {
    let head = fixtures.history.head()?;
    let url = RepoUrl::parse(&urls.history)?;
    let (mut gix_ms, mut git_ms) = (Vec::new(), Vec::new());
    for round in 0..=sizes.fetch_runs {
        let dir = tempfile::tempdir_in(scratch)?;
        let gix_side = async {
            let cache = RepoCache::new(CacheConfig {
                root: dir.path().join("gix"),
                max_bytes: u64::MAX,
            })?;
            let started = Instant::now();
            let (handle, outcome) = cache.fetch(&url, &credentials()).await?;
            let took = started.elapsed();
            ensure!(outcome.received_pack, "gix received no pack");
            let fetched = handle
                .open()?
                .find_reference("refs/heads/main")?
                .target()
                .try_id()
                .map(|id| id.to_owned().to_string())
                .unwrap_or_default();
            ensure!(fetched == head, "gix fetched main at {fetched}, not {head}");
            Ok::<_, anyhow::Error>(took)
        };
        let git_side = async {
            let target = dir.path().join("git.git");
            let took =
                direct::git_clone_bare(fixtures.history.command(), &urls.history, TOKEN, &target)
                    .await?;
            let target = target.to_string_lossy().into_owned();
            let fetched = fixtures.history.git([
                "--git-dir",
                target.as_str(),
                "rev-parse",
                "refs/heads/main",
            ])?;
            ensure!(fetched == head, "git fetched main at {fetched}, not {head}");
            Ok::<_, anyhow::Error>(took)
        };
        let (a, b) = if round % 2 == 0 {
            let a = gix_side.await?;
            (a, git_side.await?)
        } else {
            let b = git_side.await?;
            (gix_side.await?, b)
        };
        progress!(
            "fetch round {round}{}: gix {:.0} ms, git {:.0} ms",
            if round == 0 { " (warm-up)" } else { "" },
            ms(a),
            ms(b)
        );
        if round > 0 {
            gix_ms.push(ms(a));
            git_ms.push(ms(b));
        }
    }
    let stats = git.stats();
    progress!(
        "git server so far: {} requests, {} ref advertisements, {} upload-packs, {} protocol v2",
        stats.requests,
        stats.info_refs,
        stats.upload_packs,
        stats.protocol_v2
    );
    let (gix, git) = (median(&gix_ms), median(&git_ms));
    figure("gix_fetch_ms", gix, Unit::Ms);
    figure("git_fetch_ms", git, Unit::Ms);
    figure("gix_vs_git_fetch_ratio", gix / git, Unit::Ratio);
    Ok(())
}

/// Phase 3: warm-cache `GenerateManifests` latency through gRPC.
async fn warm_latency(server: &RepoServer, urls: &Urls, sizes: &Sizes) -> anyhow::Result<()> {
    let grpc = GrpcServer::start(server.clone()).await?;
    let mut client = grpc.client().await?;
    let request = grpc::generate_request(&urls.tools, "chart", "warm", TOKEN)?;
    let first = client
        .generate_manifests(request.clone())
        .await?
        .into_inner();
    ensure!(
        first.cache == "rendered",
        "the warm-up was answered from {}",
        first.cache
    );
    progress!(
        "warm: {} manifests, {} bytes of JSON per response, {} requests",
        first.manifests.len(),
        first.manifests.iter().map(String::len).sum::<usize>(),
        sizes.warm_requests
    );
    let mut samples = Vec::with_capacity(sizes.warm_requests);
    for _ in 0..sizes.warm_requests {
        let request = tonic::Request::new(request.clone());
        let started = Instant::now();
        let response = client.generate_manifests(request).await?.into_inner();
        samples.push(ms(started.elapsed()));
        ensure!(
            response.cache == "memory" && response.manifests.len() == first.manifests.len(),
            "a warm request was answered from {} with {} manifests",
            response.cache,
            response.manifests.len()
        );
    }
    figure("warm_p50_ms", percentile(&samples, 50.0), Unit::Ms);
    figure("warm_p99_ms", percentile(&samples, 99.0), Unit::Ms);
    Ok(())
}

/// One Application of the render phases: a distinct name per run, so the cache never answers.
fn render_request(url: &str, path: &str, app: &str) -> ManifestRequest {
    ManifestRequest {
        source: ApplicationSource::git(url, path, "HEAD"),
        app: AppContext {
            name: app.to_owned(),
            namespace: NAMESPACE.to_owned(),
            ..AppContext::default()
        },
        credentials: credentials(),
        ..ManifestRequest::default()
    }
}

/// Counts the Kubernetes objects of a tool's output, as the renderer would keep them.
fn count_objects(output: &[u8]) -> anyhow::Result<usize> {
    let docs = serde_saphyr::from_multiple::<serde_json::Value>(std::str::from_utf8(output)?)?;
    Ok(docs.iter().filter(|d| d.is_object()).count())
}

/// Which tool a render phase measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Helm,
    Kustomize,
}

/// One render phase: a source of the tools fixture, rendered by Capstan and by the tool.
struct ToolCase<'a> {
    tool: Tool,
    /// The binary.
    program: std::path::PathBuf,
    /// The source path in the repository.
    path: &'a str,
    /// The same directory in the fixture's work tree, for the direct runs.
    work_tree_dir: std::path::PathBuf,
    /// The repository URL and the commit `HEAD` resolves to.
    url: &'a str,
    commit: String,
    /// `HOME` of the direct runs.
    home: tempfile::TempDir,
    /// Where the breakdown's checkouts go.
    checkouts: std::path::PathBuf,
}

impl ToolCase<'_> {
    fn name(&self) -> &'static str {
        match self.tool {
            Tool::Helm => "helm",
            Tool::Kustomize => "kustomize",
        }
    }

    fn app_context(&self, app: &str) -> AppContext {
        AppContext {
            name: app.to_owned(),
            namespace: NAMESPACE.to_owned(),
            revision: self.commit.clone(),
            repo_url: self.url.to_owned(),
            path: self.path.to_owned(),
            target_revision: "HEAD".to_owned(),
            ..AppContext::default()
        }
    }

    /// The tool run directly for `app`, with exactly the arguments and build environment
    /// Capstan uses for a source without tool options.
    fn direct(&self, app: &str) -> ToolRun {
        let dir = self.work_tree_dir.clone();
        let args = match self.tool {
            Tool::Helm => vec![
                "template".into(),
                app.into(),
                dir.clone().into(),
                "--namespace".into(),
                NAMESPACE.into(),
                "--include-crds".into(),
            ],
            Tool::Kustomize => vec!["build".into(), dir.clone().into()],
        };
        ToolRun {
            program: self.program.clone(),
            args,
            cwd: dir,
            home: self.home.path().to_owned(),
            env: self.app_context(app).build_env(),
        }
    }

    /// The breakdown of a Capstan render: the plumbing it is made of, run by hand on the
    /// server's own Git cache and tool runner — a checkout of the commit (written and
    /// removed), then the renderer (tool run through the bounded runner, output parsed).
    async fn plumbing(
        &self,
        server: &RepoServer,
        app: &str,
    ) -> anyhow::Result<(Duration, Duration)> {
        let handle = server.repos().handle(&RepoUrl::parse(self.url)?);
        let parent = self.checkouts.clone();
        let (co, checkout_took) = tokio::task::spawn_blocking(move || {
            let repo = handle.open()?;
            let commit = repo
                .find_reference("refs/heads/main")?
                .target()
                .try_id()
                .context("main is a direct reference")?
                .to_owned();
            let started = Instant::now();
            let co =
                capstan_repo::checkout::checkout(&repo, commit, &parent, &TreeLimits::default())?;
            Ok::<_, anyhow::Error>((co, started.elapsed()))
        })
        .await
        .context("the checkout thread panicked")??;
        let app = self.app_context(app);
        let started = Instant::now();
        let rendered = match self.tool {
            Tool::Helm => {
                render::helm::render(
                    server.runner(),
                    &HelmTool {
                        program: self.program.clone(),
                    },
                    HelmRequest {
                        root: co.root(),
                        chart_dir: &co.root().join(self.path),
                        options: None,
                        app: &app,
                        refs: &[],
                    },
                )
                .await?
            }
            Tool::Kustomize => {
                render::kustomize::render(
                    server.runner(),
                    &KustomizeTool {
                        program: self.program.clone(),
                        ..KustomizeTool::default()
                    },
                    KustomizeRequest {
                        root: co.root(),
                        path: self.path,
                        options: None,
                        app: &app,
                    },
                )
                .await?
            }
        };
        let tool_took = started.elapsed();
        std::hint::black_box(rendered);
        let started = Instant::now();
        tokio::task::spawn_blocking(move || drop(co))
            .await
            .context("the cleanup thread panicked")?;
        Ok((checkout_took + started.elapsed(), tool_took))
    }
}

/// Times `runs` renders by Capstan and by the tool directly (after one warm-up of each),
/// interleaved, and prints the medians as figures; then the breakdown of Capstan's time on
/// standard error.
async fn tool_overhead(
    case: &ToolCase<'_>,
    server: &RepoServer,
    runs: usize,
) -> anyhow::Result<()> {
    let name = case.name();
    let (mut ours_ms, mut direct_ms) = (Vec::new(), Vec::new());
    let (mut checkout_ms, mut runner_ms) = (Vec::new(), Vec::new());
    for round in 0..=runs {
        let app = format!("{name}-{round}");
        let ours = async {
            let started = Instant::now();
            let generated = server
                .generate(render_request(case.url, case.path, &app))
                .await?;
            let took = started.elapsed();
            ensure!(
                generated.cache == CacheOutcome::Rendered,
                "{app} was answered from {:?}",
                generated.cache
            );
            Ok::<_, anyhow::Error>((took, generated.manifests.manifests.len()))
        };
        let direct = async {
            let (took, output) = case.direct(&app).run().await?;
            Ok::<_, anyhow::Error>((took, count_objects(&output)?))
        };
        let (a, b) = if round % 2 == 0 {
            let a = ours.await?;
            (a, direct.await?)
        } else {
            let b = direct.await?;
            (ours.await?, b)
        };
        ensure!(
            a.1 == b.1,
            "{name}: Capstan returned {} manifests, the tool {}",
            a.1,
            b.1
        );
        let (checkout, runner) = case.plumbing(server, &app).await?;
        progress!(
            "{name} round {round}{}: capstan {:.1} ms, direct {:.1} ms, {} manifests; breakdown: checkout {:.1} ms, runner+parse {:.1} ms",
            if round == 0 { " (warm-up)" } else { "" },
            ms(a.0),
            ms(b.0),
            a.1,
            ms(checkout),
            ms(runner)
        );
        if round > 0 {
            ours_ms.push(ms(a.0));
            direct_ms.push(ms(b.0));
            checkout_ms.push(ms(checkout));
            runner_ms.push(ms(runner));
        }
    }
    let (ours, direct) = (median(&ours_ms), median(&direct_ms));
    progress!(
        "{name} medians: capstan {ours:.1} ms = checkout {:.1} ms + runner+parse {:.1} ms + the rest; direct {direct:.1} ms",
        median(&checkout_ms),
        median(&runner_ms)
    );
    figure(&format!("{name}_capstan_ms"), ours, Unit::Ms);
    figure(&format!("{name}_direct_ms"), direct, Unit::Ms);
    figure(
        &format!("{name}_overhead_ratio"),
        ours / direct,
        Unit::Ratio,
    );
    Ok(())
}

/// Phase 4: Helm and Kustomize render overhead.
async fn tool_overheads(
    server: &RepoServer,
    fixtures: &Fixtures,
    urls: &Urls,
    scratch: &std::path::Path,
    sizes: &Sizes,
) -> anyhow::Result<()> {
    let commit = fixtures.tools.head()?;
    let cases = [
        (Tool::Helm, capstan_testkit::tools::helm()?, "chart"),
        (
            Tool::Kustomize,
            capstan_testkit::tools::kustomize()?,
            fixtures.overlay.as_str(),
        ),
    ];
    for (tool, program, path) in cases {
        let case = ToolCase {
            tool,
            program,
            path,
            work_tree_dir: fixtures.tools.path().join(path),
            url: &urls.tools,
            commit: commit.clone(),
            home: tempfile::tempdir_in(scratch)?,
            checkouts: scratch.join("breakdown-checkouts"),
        };
        tool_overhead(&case, server, sizes.tool_runs).await?;
    }
    Ok(())
}

/// Phase 5: 200 concurrent requests for 200 Applications on one commit, against a fresh
/// repo-server, through gRPC.
async fn coalescing(
    git: &GitHttpServer,
    urls: &Urls,
    scratch: &std::path::Path,
) -> anyhow::Result<()> {
    let server = RepoServer::new(server_config(&scratch.join("server-b"))?).await?;
    let grpc = GrpcServer::start(server.clone()).await?;
    let client = grpc.client().await?;
    let before = git.stats();
    let barrier = Arc::new(tokio::sync::Barrier::new(APPS));
    let started = Instant::now();
    let tasks: Vec<_> = (0..APPS)
        .map(|i| {
            let mut client = client.clone();
            let barrier = Arc::clone(&barrier);
            let app = format!("app-{i:03}");
            let request = grpc::generate_request(&urls.apps, &format!("apps/{app}"), &app, TOKEN);
            tokio::spawn(async move {
                let request = request?;
                barrier.wait().await;
                let response = client.generate_manifests(request).await?.into_inner();
                ensure!(
                    response.manifests.len() == 2,
                    "{app}: {} manifests",
                    response.manifests.len()
                );
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a request task panicked")??;
    }
    let took = started.elapsed();
    let stats = server.stats();
    let served = git.stats();
    progress!(
        "coalescing: {stats:?}; the git server saw {} ref advertisements and {} upload-packs",
        served.info_refs - before.info_refs,
        served.upload_packs - before.upload_packs
    );
    ensure!(
        stats.renders + stats.memory_hits == APPS as u64 && stats.failures == 0,
        "{stats:?}"
    );
    figure("fetches_for_200_apps", stats.fetches as f64, Unit::Count);
    figure(
        "ref_listings_for_200_apps",
        stats.ref_listings as f64,
        Unit::Count,
    );
    figure(
        "http_info_refs_for_200_apps",
        (served.info_refs - before.info_refs) as f64,
        Unit::Count,
    );
    figure(
        "http_upload_packs_for_200_apps",
        (served.upload_packs - before.upload_packs) as f64,
        Unit::Count,
    );
    figure("generate_200_apps_ms", ms(took), Unit::Ms);
    Ok(())
}
