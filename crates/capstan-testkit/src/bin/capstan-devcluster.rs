//! `capstan-devcluster`: a local simulated cluster (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok fake nodes) for trying Capstan by hand.
//! Started by `scripts/up.sh`; stops everything on Ctrl-C.

use std::path::PathBuf;

use anyhow::{Context, Result};
use capstan_testkit::{KubeApiServer, SimulatedCluster};
use clap::Parser;

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

    if let Some(parent) = args.kubeconfig_out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.kubeconfig_out, apiserver.kubeconfig_yaml()?)
        .with_context(|| format!("writing {}", args.kubeconfig_out.display()))?;
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
    println!();
    println!("Coming next (see the issue tracker): `capstand all-in-one` syncing a demo Git repo");
    println!("into this cluster, with the web UI and the `capstan` CLI ready.");
    println!();
    println!("Press Ctrl-C to stop.");

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("stopping ...");
    drop(sim);
    drop(apiserver);
    let _ = std::fs::remove_file(&args.kubeconfig_out);
    Ok(())
}
