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

/// The demo application: a guestbook-like web front end (kwok runs no containers, so the
/// image is a placeholder that is never pulled), its Service, and its settings.
const DEMO_FILES: [(&str, &str); 3] = [
    (
        "guestbook/deployment.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: guestbook-ui
spec:
  replicas: 2
  selector:
    matchLabels:
      app: guestbook-ui
  template:
    metadata:
      labels:
        app: guestbook-ui
    spec:
      containers:
      - name: guestbook-ui
        image: registry.k8s.io/pause:3.10
        ports:
        - containerPort: 80
        envFrom:
        - configMapRef:
            name: guestbook-settings
",
    ),
    (
        "guestbook/service.yaml",
        "apiVersion: v1
kind: Service
metadata:
  name: guestbook-ui
spec:
  selector:
    app: guestbook-ui
  ports:
  - port: 80
    targetPort: 80
",
    ),
    (
        "guestbook/configmap.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: guestbook-settings
data:
  GREETING: Hello from Git
",
    ),
];

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
    /// creating it (a guestbook app under `guestbook/`) if it does not exist yet. Commits
    /// you make in it are served at once.
    #[arg(long, value_name = "DIR")]
    demo_repo: Option<PathBuf>,
    /// Also write the demo repository's URL to this file (for scripts).
    #[arg(long, value_name = "FILE", requires = "demo_repo")]
    demo_url_out: Option<PathBuf>,
}

/// Creates the demo repository in `dir` unless it already is one (so edits survive restarts).
fn demo_repo(dir: &Path) -> Result<()> {
    if dir.join(".git").exists() {
        return Ok(());
    }
    let repo = GitRepo::init_at(dir)?;
    repo.write_all(&DEMO_FILES)?;
    repo.commit("guestbook: a web front end, its service and settings")?;
    // The fixture commits under its own hermetic identity; give people editing the demo one
    // too, so `git commit` works without a global git configuration.
    repo.git(["config", "user.name", "Capstan demo"])?;
    repo.git(["config", "user.email", "demo@capstan.invalid"])?;
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
            demo_repo(dir)?;
            let server = GitHttpServer::start_temp(GitHttpOptions::anonymous())?;
            let url = server.mount("guestbook", dir)?;
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
