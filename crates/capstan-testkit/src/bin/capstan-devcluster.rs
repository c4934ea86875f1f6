//! `capstan-devcluster`: a local simulated cluster (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok fake nodes) for trying Capstan by hand, and
//! optionally a demo Git repository served over smart HTTP for it to deploy from.
//! Started by `scripts/up.sh`; stops everything on Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};
use capstan_testkit::{KubeApiServer, SimulatedCluster};
use clap::Parser;

/// Where the demo repository's files say their own URL (in `apps/`, the app of apps' children):
/// replaced by the served URL when the repository is created, and on later starts the
/// previous URL is replaced by the new one (the Git server's port changes with every start).
const URL_PLACEHOLDER: &str = "${DEMO_REPO_URL}";

/// The URL the demo repository was last served at, kept inside its `.git` directory.
const URL_MARKER: &str = ".git/capstan-demo-url";

/// Run a local simulated Kubernetes cluster on loopback until interrupted.
///
/// Everything is real Kubernetes (apiserver, controller-manager, scheduler) except the
/// kubelets: kwok simulates nodes and pod lifecycles, so Deployments roll out without
/// containers. State lives in a temporary directory and is removed on exit.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Where to write the cluster-admin kubeconfig.
    #[arg(
        long,
        env = "CAPSTAN_DEV_KUBECONFIG",
        default_value = ".capstan/kubeconfig"
    )]
    kubeconfig_out: PathBuf,
    /// Number of fake nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Serve a demo Git repository from this directory over smart HTTP on loopback,
    /// creating it from --demo-from if it does not exist yet. Commits you make in it are
    /// served at once.
    #[arg(long, value_name = "DIR", requires = "demo_from")]
    demo_repo: Option<PathBuf>,
    /// The files the demo repository starts with (the project's `demo/repo`); every
    /// `${DEMO_REPO_URL}` in them becomes the repository's URL.
    #[arg(long, value_name = "DIR", requires = "demo_repo")]
    demo_from: Option<PathBuf>,
    /// Also write the demo repository's URL to this file (for scripts).
    #[arg(long, value_name = "FILE", requires = "demo_repo")]
    demo_url_out: Option<PathBuf>,
}

/// Creates the demo repository in `dir` from the files in `from` unless it already is one (so
/// edits survive restarts), and points its Applications at `url`.
fn demo_repo(from: &Path, dir: &Path, url: &str) -> Result<()> {
    if !dir.join(".git").exists() {
        let repo = GitRepo::init_at(dir)?;
        let mut files = Vec::new();
        collect_files(from, Path::new(""), &mut files)?;
        let files: Vec<(PathBuf, String)> = files
            .into_iter()
            .map(|(path, text)| (path, text.replace(URL_PLACEHOLDER, url)))
            .collect();
        repo.write_all(&files)?;
        repo.commit("Capstan demo: plain YAML, Kustomize, Helm, Jsonnet, sync waves, app of apps")?;
        // The fixture commits under its own hermetic identity; give people editing the demo
        // one too, so `git commit` works without a global git configuration.
        repo.git(["config", "user.name", "Capstan demo"])?;
        repo.git(["config", "user.email", "demo@capstan.invalid"])?;
    } else {
        let previous = std::fs::read_to_string(dir.join(URL_MARKER)).unwrap_or_default();
        let previous = previous.trim();
        if !previous.is_empty() && previous != url {
            repoint(dir, previous, url)?;
        }
    }
    write_atomically(&dir.join(URL_MARKER), &format!("{url}\n"))
}

/// Every file under `dir` with its text, named by its path below `relative`, in a stable order.
fn collect_files(dir: &Path, relative: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let relative = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect_files(&path, &relative, out)?;
        } else {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            out.push((relative, text));
        }
    }
    Ok(())
}

/// Replaces the `previous` URL with `url` in the demo's Application files and commits, so the
/// app of apps deploys children that fetch from where the repository is served now.
fn repoint(dir: &Path, previous: &str, url: &str) -> Result<()> {
    let apps = dir.join("apps");
    let mut files = Vec::new();
    if apps.is_dir() {
        collect_files(&apps, Path::new("apps"), &mut files)?;
    }
    let mut changed = false;
    for (relative, text) in files {
        if text.contains(previous) {
            std::fs::write(dir.join(&relative), text.replace(previous, url))
                .with_context(|| format!("writing {}", relative.display()))?;
            changed = true;
        }
    }
    if changed {
        let git = |args: &[&str]| -> Result<()> {
            let status = std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["-c", "commit.gpgsign=false"])
                .args(args)
                .status()
                .context("running git")?;
            anyhow::ensure!(
                status.success(),
                "git {} failed in {}",
                args.join(" "),
                dir.display()
            );
            Ok(())
        };
        git(&["add", "apps"])?;
        git(&[
            "commit",
            "-q",
            "-m",
            &format!("demo: the Git server moved to {url}"),
        ])?;
    }
    Ok(())
}

/// Writes `contents` to `path` through a temporary file, so a script waiting for the file
/// never reads half of it.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Completes on Ctrl-C or SIGTERM (scripts stop a background devcluster with SIGTERM).
async fn stop_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    eprintln!("starting etcd and kube-apiserver ...");
    let apiserver = KubeApiServer::start().await?;
    eprintln!(
        "starting kube-controller-manager, kube-scheduler and kwok ({} fake nodes) ...",
        args.nodes
    );
    let sim = SimulatedCluster::start(&apiserver, args.nodes).await?;

    let git = match &args.demo_repo {
        Some(dir) => {
            let server = GitHttpServer::start_temp(GitHttpOptions::anonymous())?;
            let url = server.url("demo");
            let from = args
                .demo_from
                .as_deref()
                .context("--demo-repo needs --demo-from")?;
            demo_repo(from, dir, &url)?;
            server.mount("demo", dir)?;
            if let Some(out) = &args.demo_url_out {
                write_atomically(out, &format!("{url}\n"))?;
            }
            Some((server, url))
        }
        None => None,
    };
    // Written last: scripts take the kubeconfig's appearance to mean everything is ready.
    write_atomically(&args.kubeconfig_out, &apiserver.kubeconfig_yaml()?)?;
    let kubectl = capstan_testkit::tools::kubernetes("kubectl")?;
    println!();
    println!(
        "Local cluster ready: {} ({} nodes: {})",
        apiserver.url(),
        sim.nodes().len(),
        sim.nodes().join(", ")
    );
    println!("  kubeconfig: {}", args.kubeconfig_out.display());
    println!(
        "  try:        {} --kubeconfig {} get nodes",
        kubectl.display(),
        args.kubeconfig_out.display()
    );
    if let (Some((_, url)), Some(dir)) = (&git, &args.demo_repo) {
        println!("  demo repo:  {url} (served from {})", dir.display());
    }
    println!();
    println!("Press Ctrl-C to stop.");

    stop_signal().await?;
    eprintln!("stopping ...");
    drop(git);
    drop(sim);
    drop(apiserver);
    let _ = std::fs::remove_file(&args.kubeconfig_out);
    if let Some(out) = &args.demo_url_out {
        let _ = std::fs::remove_file(out);
    }
    Ok(())
}
