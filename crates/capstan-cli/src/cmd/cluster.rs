//! `capstan cluster ...`: clusters Applications deploy to.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::Global;
use crate::client::Client;
use crate::cmd::app::confirm;
use crate::error::CliResult;
use crate::kube::{Kube, cluster_config, kubeconfig_path, load_context};
use crate::output::{self, Format, text};

/// `capstan cluster`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register the cluster of a kubeconfig context. By default a `capstan-manager` service
    /// account with a cluster-wide role is created in it and Capstan uses its token (as Argo
    /// CD's `argocd-manager`); --direct registers the context's own credentials instead.
    #[command(
        after_help = "Examples:\n  capstan cluster add kind-prod\n  capstan cluster add staging --name staging --namespace team-a --namespace team-b\n  capstan cluster add dev --direct --kubeconfig ./dev.kubeconfig"
    )]
    Add(AddArgs),
    /// List clusters with their connection state.
    #[command(after_help = "Examples:\n  capstan cluster list\n  capstan cluster list -o name")]
    List(ListArgs),
    /// Show a cluster (by server URL or name).
    #[command(
        after_help = "Examples:\n  capstan cluster get prod\n  capstan cluster get https://10.0.0.1:6443 -o json"
    )]
    Get(GetArgs),
    /// Remove a cluster (by server URL or name).
    #[command(after_help = "Examples:\n  capstan cluster rm prod --yes")]
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Give the cluster's manager account a new token and revoke the old ones.
    #[command(after_help = "Examples:\n  capstan cluster rotate-auth kind-prod")]
    RotateAuth(RotateArgs),
}

/// `cluster add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The kubeconfig context.
    #[arg(value_name = "CONTEXT")]
    pub kube_context: String,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's name in Capstan (default: the context's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Register the context's own credentials instead of creating a service account.
    #[arg(long)]
    pub direct: bool,
    /// Where the manager service account lives.
    #[arg(long, default_value = "kube-system")]
    pub system_namespace: String,
    /// Only manage these namespaces (repeatable; default: all).
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
    /// Manage cluster-scoped resources even with --namespace.
    #[arg(long)]
    pub cluster_resources: bool,
    /// Only this project's Applications may use the cluster.
    #[arg(long)]
    pub project: Option<String>,
    /// Replace a cluster registered for the same server.
    #[arg(long)]
    pub upsert: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

/// `cluster list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `cluster get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The cluster's server URL or name.
    pub cluster: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

/// `cluster rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The cluster's server URL or name.
    pub cluster: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

/// `cluster rotate-auth`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The kubeconfig context of the cluster (with rights to create Secrets there).
    #[arg(value_name = "CONTEXT")]
    pub kube_context: String,
    /// The kubeconfig file.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where the manager service account lives.
    #[arg(long, default_value = "kube-system")]
    pub system_namespace: String,
}

pub async fn run(global: &Global, command: ClusterCommand) -> CliResult<()> {
    let client = global.client()?;
    match command {
        ClusterCommand::Add(args) => add(&client, args).await,
        ClusterCommand::List(args) => list(&client, args).await,
        ClusterCommand::Get(args) => {
            let cluster = client.get_cluster(&args.cluster).await?;
            match args.output {
                Format::Json | Format::Yaml => output::print_document(&cluster, args.output),
                _ => {
                    print!(
                        "{}",
                        output::fields(&[
                            ("Name", name_of(&cluster)),
                            ("Server", text(&cluster, "/spec/server")),
                            ("Status", text(&cluster, "/status/connectionState/status")),
                            ("Message", text(&cluster, "/status/connectionState/message")),
                            ("Version", text(&cluster, "/status/serverVersion")),
                        ])
                    );
                    Ok(())
                }
            }
        }
        ClusterCommand::Rm(args) => {
            if !args.yes
                && !confirm(&format!(
                    "Remove cluster '{}'? Applications deploying there stop syncing. [y/n] ",
                    args.cluster
                ))?
            {
                println!("cluster '{}' kept", args.cluster);
                return Ok(());
            }
            client.delete_cluster(&args.cluster).await?;
            println!("cluster '{}' removed", args.cluster);
            Ok(())
        }
        ClusterCommand::RotateAuth(args) => rotate(&client, args).await,
    }
}

async fn add(client: &Client, args: AddArgs) -> CliResult<()> {
    let path = kubeconfig_path(args.kubeconfig.as_deref())?;
    let context = load_context(&path, &args.kube_context)?;
    let name = args.name.clone().unwrap_or_else(|| context.name.clone());
    let token = if args.direct {
        None
    } else {
        if !args.yes
            && !confirm(&format!(
                "This creates the service account {}/{} with full cluster-wide rights in '{}'. Continue? [y/n] ",
                args.system_namespace,
                crate::kube::MANAGER,
                context.name
            ))?
        {
            println!("nothing done");
            return Ok(());
        }
        let kube = Kube::new(&context)?;
        Some(kube.install_manager(&args.system_namespace).await?)
    };
    let mut spec = json!({
        "server": context.server,
        "name": name,
        "config": cluster_config(&context, token.as_deref()),
    });
    if !args.namespaces.is_empty() {
        spec["namespaces"] = json!(args.namespaces);
    }
    if args.cluster_resources {
        spec["clusterResources"] = json!(true);
    }
    if let Some(project) = &args.project {
        spec["project"] = json!(project);
    }
    let cluster = json!({
        "apiVersion": "capstan.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {},
        "spec": spec,
    });
    client.create_cluster(&cluster, args.upsert).await?;
    println!("cluster '{}' added ({name})", context.server);
    Ok(())
}

async fn rotate(client: &Client, args: RotateArgs) -> CliResult<()> {
    let path = kubeconfig_path(args.kubeconfig.as_deref())?;
    let context = load_context(&path, &args.kube_context)?;
    // The cluster must be registered already: rotation replaces its token.
    let mut cluster = client.get_cluster(&context.server).await?;
    let kube = Kube::new(&context)?;
    let (secret, token) = kube.new_token(&args.system_namespace).await?;
    cluster["spec"]["config"]["bearerToken"] = json!(token);
    if let Some(status) = cluster.as_object_mut() {
        status.remove("status");
    }
    client.update_cluster(&cluster).await?;
    let revoked = kube
        .delete_tokens_except(&args.system_namespace, &secret)
        .await?;
    println!(
        "cluster '{}': new token from {}/{secret}; {revoked} old token(s) revoked",
        context.server, args.system_namespace
    );
    Ok(())
}

fn name_of(cluster: &Value) -> String {
    let name = text(cluster, "/spec/name");
    if name.is_empty() {
        text(cluster, "/metadata/name")
    } else {
        name
    }
}

async fn list(client: &Client, args: ListArgs) -> CliResult<()> {
    let clusters = client.list_clusters().await?;
    output::print_list(
        &clusters,
        args.output,
        name_of,
        &["SERVER", "NAME", "VERSION", "STATUS", "MESSAGE", "PROJECT"],
        |c| {
            vec![
                text(c, "/spec/server"),
                name_of(c),
                text(c, "/status/serverVersion"),
                text(c, "/status/connectionState/status"),
                text(c, "/status/connectionState/message"),
                text(c, "/spec/project"),
            ]
        },
    )
}
