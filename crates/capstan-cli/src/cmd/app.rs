//! `capstan app ...`: Applications.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use capstan_proto::api::v1 as pb;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::Global;
use crate::client::{AppAt, Client};
use crate::error::{CliError, CliResult, Exit};
use crate::output::{self, Format, Table, or, text};
use crate::progress::{self, Want};
pub use crate::prompt::confirm;

/// `capstan app`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an Application from flags, or from a file (Capstan's or Argo CD's YAML).
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// Show an Application: summary, conditions, operation and resources.
    #[command(
        after_help = "Examples:\n  capstan app get guestbook\n  capstan app get guestbook --hard-refresh -o yaml"
    )]
    Get(GetArgs),
    /// List Applications.
    #[command(
        after_help = "Examples:\n  capstan app list\n  capstan app list -p team-a -l env=prod --sync OutOfSync -o wide\n  capstan app list -o name | xargs -n1 capstan app sync"
    )]
    List(ListArgs),
    /// Change an Application's spec with the same flags as create.
    #[command(
        after_help = "Examples:\n  capstan app set guestbook --revision v1.2.0\n  capstan app set guestbook --sync-policy automated --self-heal\n  capstan app set guestbook --helm-set replicaCount=3"
    )]
    Set(SetArgs),
    /// Remove settings from an Application's spec.
    #[command(
        after_help = "Examples:\n  capstan app unset guestbook --helm-set replicaCount\n  capstan app unset guestbook --values values-prod.yaml --nameprefix"
    )]
    Unset(UnsetArgs),
    /// Show what would change: the live state against Git (or a local directory).
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// Sync Applications to their target revision (or another), and wait for the result.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(SyncArgs),
    /// Wait until Applications are synced, healthy and idle (or what the flags name).
    #[command(
        after_help = "Examples:\n  capstan app wait guestbook --health --timeout 120\n  capstan app wait -l env=prod --sync"
    )]
    Wait(WaitArgs),
    /// Show the deployment history.
    #[command(
        after_help = "Examples:\n  capstan app history guestbook\n  capstan app history guestbook -o json"
    )]
    History(HistoryArgs),
    /// Roll back to a history entry (the previous one by default).
    #[command(
        after_help = "Examples:\n  capstan app history guestbook\n  capstan app rollback guestbook 3"
    )]
    Rollback(RollbackArgs),
    /// Stop the running operation (a sync).
    #[command(after_help = "Examples:\n  capstan app terminate-op guestbook")]
    TerminateOp(NameArgs),
    /// Print manifests: what Git renders (at a revision), or what runs.
    #[command(
        after_help = "Examples:\n  capstan app manifests guestbook\n  capstan app manifests guestbook --revision 4f2a9c1\n  capstan app manifests guestbook --source live"
    )]
    Manifests(ManifestsArgs),
    /// List an Application's resources with their sync and health (--tree: with the objects
    /// they own, such as ReplicaSets and Pods).
    #[command(
        after_help = "Examples:\n  capstan app resources guestbook\n  capstan app resources guestbook --tree"
    )]
    Resources(ResourcesArgs),
    /// Show the Kubernetes events about an Application's resources, oldest first.
    #[command(
        after_help = "Examples:\n  capstan app events guestbook\n  capstan app events guestbook -o json"
    )]
    Events(EventsArgs),
    /// Delete Applications (and, by default, their resources).
    #[command(
        after_help = "Examples:\n  capstan app delete guestbook\n  capstan app delete guestbook --cascade=false --yes"
    )]
    Delete(DeleteArgs),
}

const CREATE_EXAMPLES: &str = "\
Examples:
  # A directory of YAML in Git, synced automatically
  capstan app create guestbook --repo https://github.com/argoproj/argocd-example-apps.git \\
    --path guestbook --dest-server https://kubernetes.default.svc --dest-namespace default \\
    --sync-policy automated --self-heal --auto-prune
  # A Helm chart from a chart repository
  capstan app create redis --repo https://charts.example.com --helm-chart redis --revision 18.1.0 \\
    --dest-name prod --dest-namespace redis --helm-set replica.replicaCount=2
  # From a file, in Capstan's or Argo CD's format (several documents: several apps)
  capstan app create -f guestbook.yaml --upsert";

const DIFF_EXAMPLES: &str = "\
Examples:
  capstan app diff guestbook
  capstan app diff guestbook --refresh
  # Uncommitted changes: render a local checkout (plain YAML, kustomize, or helm with the
  # app's release name, namespace, value files and parameters) and compare with what runs
  capstan app diff guestbook --local ./guestbook
Exits 1 when there are differences, 0 when there are none.";

const SYNC_EXAMPLES: &str = "\
Examples:
  capstan app sync guestbook
  capstan app sync guestbook --prune --timeout 300
  capstan app sync guestbook --resource apps:Deployment:guestbook-ui --dry-run
  capstan app sync guestbook --revision v1.2.0 --async
  capstan app sync -l env=prod";

/// An Application by name (`NAME` or `NAMESPACE/NAME`).
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The Application (NAME, or NAMESPACE/NAME for one outside the control plane's namespace).
    pub name: String,
    /// The Application's namespace (default: the control plane's).
    #[arg(short = 'N', long, default_value = "")]
    pub app_namespace: String,
}

impl NameArgs {
    fn at(&self) -> AppAt {
        AppAt::parse(&self.name, &self.app_namespace)
    }
}

/// Everything about an Application's spec that create and set take.
#[derive(Debug, Default, Args)]
pub struct SpecFlags {
    /// The project.
    #[arg(long)]
    pub project: Option<String>,
    /// The Git (or Helm chart) repository URL.
    #[arg(long)]
    pub repo: Option<String>,
    /// The directory in the repository.
    #[arg(long)]
    pub path: Option<String>,
    /// The revision: branch, tag, commit, or chart version.
    #[arg(long)]
    pub revision: Option<String>,
    /// The cluster's API server URL.
    #[arg(long, conflicts_with = "dest_name")]
    pub dest_server: Option<String>,
    /// The cluster's name.
    #[arg(long)]
    pub dest_name: Option<String>,
    /// The namespace to deploy to.
    #[arg(long)]
    pub dest_namespace: Option<String>,
    /// `automated` (also `auto`) or `none`.
    #[arg(long, value_parser = ["automated", "auto", "none"])]
    pub sync_policy: Option<String>,
    /// Automated sync deletes resources no longer in Git.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub auto_prune: Option<bool>,
    /// Automated sync also undoes changes made in the cluster.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub self_heal: Option<bool>,
    /// Automated sync may leave the Application without resources.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub allow_empty: Option<bool>,
    /// A sync option, e.g. CreateNamespace=true (repeatable).
    #[arg(long = "sync-option", value_name = "OPTION")]
    pub sync_options: Vec<String>,
    /// Retry failed syncs this many times (-1: forever).
    #[arg(long, allow_hyphen_values = true)]
    pub sync_retry_limit: Option<i64>,
    /// The first retry's delay, e.g. 5s.
    #[arg(long)]
    pub sync_retry_backoff_duration: Option<String>,
    /// The Helm chart's name (a chart repository source).
    #[arg(long)]
    pub helm_chart: Option<String>,
    /// The Helm release name.
    #[arg(long)]
    pub release_name: Option<String>,
    /// A Helm value file in the repository (repeatable).
    #[arg(long = "values", value_name = "FILE")]
    pub values: Vec<String>,
    /// A local YAML file whose content becomes the Helm values.
    #[arg(long)]
    pub values_literal_file: Option<PathBuf>,
    /// A Helm parameter NAME=VALUE (repeatable).
    #[arg(long = "helm-set", value_name = "NAME=VALUE")]
    pub helm_set: Vec<String>,
    /// A Helm parameter NAME=VALUE kept as a string (repeatable).
    #[arg(long = "helm-set-string", value_name = "NAME=VALUE")]
    pub helm_set_string: Vec<String>,
    /// A Kustomize image override, e.g. nginx=nginx:1.27 (repeatable).
    #[arg(long = "kustomize-image", value_name = "IMAGE")]
    pub kustomize_images: Vec<String>,
    /// Kustomize name prefix.
    #[arg(long)]
    pub nameprefix: Option<String>,
    /// Kustomize name suffix.
    #[arg(long)]
    pub namesuffix: Option<String>,
    /// Kustomize common label NAME=VALUE (repeatable).
    #[arg(long = "kustomize-common-label", value_name = "NAME=VALUE")]
    pub kustomize_common_labels: Vec<String>,
    /// Read subdirectories of a plain directory source too.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub directory_recurse: Option<bool>,
    /// Glob of files to read in a directory source.
    #[arg(long)]
    pub directory_include: Option<String>,
    /// Glob of files to leave out of a directory source.
    #[arg(long)]
    pub directory_exclude: Option<String>,
    /// A Jsonnet top-level argument NAME=VALUE, as a string (repeatable).
    #[arg(long = "jsonnet-tla-str", value_name = "NAME=VALUE")]
    pub jsonnet_tlas: Vec<String>,
    /// A Jsonnet external variable NAME=VALUE, as a string (repeatable).
    #[arg(long = "jsonnet-ext-var-str", value_name = "NAME=VALUE")]
    pub jsonnet_ext_vars: Vec<String>,
    /// A Jsonnet library path in the repository (repeatable).
    #[arg(long = "jsonnet-libs", value_name = "PATH")]
    pub jsonnet_libs: Vec<String>,
    /// Render with this config management plugin.
    #[arg(long)]
    pub config_management_plugin: Option<String>,
    /// An environment variable NAME=VALUE for the plugin (repeatable).
    #[arg(long = "plugin-env", value_name = "NAME=VALUE")]
    pub plugin_env: Vec<String>,
    /// Which source of a multi-source Application the source flags change (1-based).
    #[arg(long)]
    pub source_position: Option<usize>,
    /// A label NAME=VALUE on the Application (repeatable).
    #[arg(short = 'l', long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// An annotation NAME=VALUE on the Application (repeatable).
    #[arg(long = "annotation", value_name = "NAME=VALUE")]
    pub annotations: Vec<String>,
}

/// `app create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The Application's name (not with -f).
    #[arg(required_unless_present = "file")]
    pub name: Option<String>,
    /// Create from this YAML file ("-": stdin).
    #[arg(short, long, conflicts_with = "name")]
    pub file: Option<PathBuf>,
    /// Replace an existing Application with the same name.
    #[arg(long)]
    pub upsert: bool,
    /// The Application's namespace (default: the control plane's).
    #[arg(short = 'N', long, default_value = "")]
    pub app_namespace: String,
    #[command(flatten)]
    pub spec: SpecFlags,
    /// Output format of the created Application.
    #[arg(short, long, value_enum)]
    pub output: Option<Format>,
}

/// `app get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub app: NameArgs,
    /// Compare with Git again first (cached manifests are reused).
    #[arg(long)]
    pub refresh: bool,
    /// Render again from Git first (no cache).
    #[arg(long, conflicts_with = "refresh")]
    pub hard_refresh: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `app list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these projects (repeatable).
    #[arg(short, long = "project")]
    pub projects: Vec<String>,
    /// Label selector, e.g. env=prod,tier!=web.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Only Applications deploying to this cluster (server URL or name; repeatable).
    #[arg(long = "cluster")]
    pub clusters: Vec<String>,
    /// Only Applications deploying to this namespace (repeatable).
    #[arg(long = "dest-namespace")]
    pub namespaces: Vec<String>,
    /// Only this health status, e.g. Degraded (repeatable).
    #[arg(long)]
    pub health: Vec<String>,
    /// Only this sync status, e.g. OutOfSync (repeatable).
    #[arg(long)]
    pub sync: Vec<String>,
    /// Only names containing this text.
    #[arg(long)]
    pub search: Option<String>,
    /// Only Applications with a source in this repository.
    #[arg(short, long)]
    pub repo: Option<String>,
    /// Only Applications in this namespace.
    #[arg(short = 'N', long, default_value = "")]
    pub app_namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `app set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub app: NameArgs,
    #[command(flatten)]
    pub spec: SpecFlags,
}

/// `app unset`.
#[derive(Debug, Args)]
pub struct UnsetArgs {
    #[command(flatten)]
    pub app: NameArgs,
    /// Remove this Helm value file (repeatable).
    #[arg(long = "values", value_name = "FILE")]
    pub values: Vec<String>,
    /// Remove the inline Helm values.
    #[arg(long)]
    pub values_literal: bool,
    /// Remove this Helm parameter (repeatable).
    #[arg(long = "helm-set", value_name = "NAME")]
    pub helm_set: Vec<String>,
    /// Remove the Kustomize name prefix.
    #[arg(long)]
    pub nameprefix: bool,
    /// Remove the Kustomize name suffix.
    #[arg(long)]
    pub namesuffix: bool,
    /// Remove this Kustomize image override (by image name; repeatable).
    #[arg(long = "kustomize-image", value_name = "NAME")]
    pub kustomize_images: Vec<String>,
    /// Remove this sync option (repeatable).
    #[arg(long = "sync-option", value_name = "OPTION")]
    pub sync_options: Vec<String>,
    /// Which source of a multi-source Application (1-based).
    #[arg(long)]
    pub source_position: Option<usize>,
}

/// `app diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub app: NameArgs,
    /// Compare against the manifests in this local directory instead of Git's.
    #[arg(long, value_name = "DIR")]
    pub local: Option<PathBuf>,
    /// Compare with Git again first.
    #[arg(long)]
    pub refresh: bool,
    /// Render again from Git first (no cache).
    #[arg(long, conflicts_with = "refresh")]
    pub hard_refresh: bool,
    /// Exit 1 when there are differences (the default); false: always 0.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub exit_code: bool,
}

/// `app sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The Applications (NAME or NAMESPACE/NAME).
    pub names: Vec<String>,
    /// Sync the Applications this label selector picks.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// The Applications' namespace (default: the control plane's).
    #[arg(short = 'N', long, default_value = "")]
    pub app_namespace: String,
    /// Delete resources no longer in Git.
    #[arg(long)]
    pub prune: bool,
    /// Show what would be done without doing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Sync only this resource: GROUP:KIND:NAME or GROUP:KIND:NAMESPACE/NAME (repeatable;
    /// the core group is empty, as in :Service:web).
    #[arg(long = "resource", value_name = "GROUP:KIND:NAME")]
    pub resources: Vec<String>,
    /// Sync to this revision instead of the target.
    #[arg(long)]
    pub revision: Option<String>,
    /// `apply` (no hooks) or `hook` (the default).
    #[arg(long, value_parser = ["apply", "hook"])]
    pub strategy: Option<String>,
    /// Replace resources that cannot be patched.
    #[arg(long)]
    pub force: bool,
    /// A sync option for this sync, e.g. ServerSideApply=true (repeatable).
    #[arg(long = "sync-option", value_name = "OPTION")]
    pub sync_options: Vec<String>,
    /// Retry a failed sync this many times (-1: forever).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub retry_limit: i64,
    /// Return once the sync started, without waiting.
    #[arg(long = "async")]
    pub no_wait: bool,
    /// Seconds to wait for the sync (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// Output format of the final state.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `app wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The Applications (NAME or NAMESPACE/NAME).
    pub names: Vec<String>,
    /// Wait for the Applications this label selector picks.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// The Applications' namespace (default: the control plane's).
    #[arg(short = 'N', long, default_value = "")]
    pub app_namespace: String,
    /// Until Synced.
    #[arg(long)]
    pub sync: bool,
    /// Until Healthy.
    #[arg(long)]
    pub health: bool,
    /// Until no operation runs.
    #[arg(long)]
    pub operation: bool,
    /// Until Suspended (or Healthy).
    #[arg(long)]
    pub suspended: bool,
    /// Until Degraded.
    #[arg(long)]
    pub degraded: bool,
    /// Seconds to wait (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
}

/// `app history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub app: NameArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `app rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub app: NameArgs,
    /// The history entry's ID (default: the one before the current).
    pub id: Option<i64>,
    /// Delete resources the older revision does not have.
    #[arg(long)]
    pub prune: bool,
    /// Show what would be done without doing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Return once the rollback started.
    #[arg(long = "async")]
    pub no_wait: bool,
    /// Seconds to wait (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
}

/// `app manifests`.
#[derive(Debug, Args)]
pub struct ManifestsArgs {
    #[command(flatten)]
    pub app: NameArgs,
    /// `git` (rendered from Git) or `live` (what runs).
    #[arg(long, default_value = "git", value_parser = ["git", "live"])]
    pub source: String,
    /// The revision to render (git only; default: the target).
    #[arg(long)]
    pub revision: Option<String>,
    /// Output format (yaml or json).
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

/// `app resources`.
#[derive(Debug, Args)]
pub struct ResourcesArgs {
    #[command(flatten)]
    pub app: NameArgs,
    /// Only resources that are not in sync.
    #[arg(long, conflicts_with = "tree")]
    pub out_of_sync: bool,
    /// The resource tree: managed resources and, under each, what it owns.
    #[arg(long)]
    pub tree: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `app events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub app: NameArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `app delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The Applications (NAME or NAMESPACE/NAME).
    #[arg(required = true)]
    pub names: Vec<String>,
    /// The Applications' namespace (default: the control plane's).
    #[arg(short = 'N', long, default_value = "")]
    pub app_namespace: String,
    /// Delete the Applications' resources too.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub cascade: bool,
    /// `foreground` or `background` deletion of the resources.
    #[arg(long, default_value = "foreground", value_parser = ["foreground", "background"])]
    pub propagation_policy: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Wait until the Applications are gone.
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(global: &Global, command: AppCommand) -> CliResult<()> {
    let client = global.client()?;
    match command {
        AppCommand::Create(args) => create(&client, args).await,
        AppCommand::Get(args) => get(&client, args).await,
        AppCommand::List(args) => list(&client, args).await,
        AppCommand::Set(args) => set(&client, args).await,
        AppCommand::Unset(args) => unset(&client, args).await,
        AppCommand::Diff(args) => diff(&client, args).await,
        AppCommand::Sync(args) => sync(&client, args).await,
        AppCommand::Wait(args) => wait(&client, args).await,
        AppCommand::History(args) => history(&client, args).await,
        AppCommand::Rollback(args) => rollback(&client, args).await,
        AppCommand::TerminateOp(args) => {
            client.terminate_op(&args.at()).await?;
            println!("operation of '{}' terminated", args.at());
            Ok(())
        }
        AppCommand::Manifests(args) => manifests(&client, args).await,
        AppCommand::Resources(args) if args.tree => tree(&client, args).await,
        AppCommand::Resources(args) => resources(&client, args).await,
        AppCommand::Events(args) => events(&client, args).await,
        AppCommand::Delete(args) => delete(&client, args).await,
    }
}

// --- create, set, unset --------------------------------------------------------------------

async fn create(client: &Client, args: CreateArgs) -> CliResult<()> {
    let apps = match &args.file {
        Some(file) => {
            if args.spec != SpecFlags::default() {
                return Err(CliError::usage(
                    "-f takes the whole Application from the file; leave out the spec flags",
                ));
            }
            apps_from_file(file)?
        }
        None => {
            let name = args.name.clone().unwrap_or_default();
            let mut app = json!({
                "apiVersion": "capstan.dev/v1alpha1",
                "kind": "Application",
                "metadata": { "name": name },
                "spec": { "source": {}, "destination": {}, "project": "default" },
            });
            if !args.app_namespace.is_empty() {
                app["metadata"]["namespace"] = json!(args.app_namespace);
            }
            args.spec.apply(&mut app)?;
            if text(&app, "/spec/source/repoURL").is_empty() {
                return Err(CliError::usage("--repo is required (or -f FILE)"));
            }
            if text(&app, "/spec/destination/server").is_empty()
                && text(&app, "/spec/destination/name").is_empty()
            {
                return Err(CliError::usage(
                    "--dest-server or --dest-name is required (or -f FILE)",
                ));
            }
            vec![app]
        }
    };
    for app in apps {
        let created = client.create_app(&app, args.upsert).await?;
        match args.output {
            Some(format @ (Format::Json | Format::Yaml)) => {
                output::print_document(&created, format)?
            }
            _ => println!(
                "application '{}' {}",
                text(&created, "/metadata/name"),
                if args.upsert {
                    "created or updated"
                } else {
                    "created"
                }
            ),
        }
    }
    Ok(())
}

/// The Applications in a YAML file, checked locally first (errors name the line) and sent
/// as JSON.
fn apps_from_file(file: &std::path::Path) -> CliResult<Vec<Value>> {
    let text = read_input(file)?;
    let objects = capstan_model::parse_objects_yaml(&text)
        .map_err(|e| CliError::usage(format!("{}: {e}", file.display())))?;
    if objects.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no Application in the file",
            file.display()
        )));
    }
    objects
        .into_iter()
        .map(|object| match object {
            capstan_model::Object::Application(app) => {
                let json = app
                    .to_json()
                    .map_err(|e| CliError::other(format!("{}: {e}", file.display())))?;
                let mut app: Value = serde_json::from_str(&json)?;
                argo_cd_namespace(&mut app);
                Ok(app)
            }
            other => Err(CliError::usage(format!(
                "{}: a {} is not an Application",
                file.display(),
                other.kind()
            ))),
        })
        .collect()
}

/// Argo CD's control-plane namespace, `argocd`, in an Argo CD file means Capstan's: the
/// namespace is left to the server (as the all-in-one's `--app` loader does).
pub fn argo_cd_namespace(object: &mut Value) {
    let argo_cd = object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("argoproj.io/"));
    if argo_cd && object["metadata"]["namespace"] == json!("argocd") {
        remove(&mut object["metadata"], "namespace");
    }
}

/// A file's text, or stdin's for "-"; at most 8 MiB.
pub fn read_input(file: &std::path::Path) -> CliResult<String> {
    const MAX: u64 = 8 << 20;
    let name = if file.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        file.display().to_string()
    };
    let reader: Box<dyn std::io::Read> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(file)
                .map_err(|e| CliError::usage(format!("cannot read {name}: {e}")))?,
        )
    };
    // One byte more than allowed tells a file at the limit from a larger one.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(reader, MAX + 1), &mut bytes)
        .map_err(|e| CliError::usage(format!("cannot read {name}: {e}")))?;
    if bytes.len() as u64 > MAX {
        return Err(CliError::usage(format!("{name} is larger than 8 MiB")));
    }
    String::from_utf8(bytes).map_err(|_| CliError::usage(format!("{name} is not UTF-8 text")))
}

impl PartialEq for SpecFlags {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

/// `NAME=VALUE`.
fn pair(text: &str, flag: &str) -> CliResult<(String, String)> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| CliError::usage(format!("{flag} {text:?}: expected NAME=VALUE")))
}

impl SpecFlags {
    /// Writes the flags that are set into `app` (JSON in the API's shape).
    fn apply(&self, app: &mut Value) -> CliResult<()> {
        for label in &self.labels {
            let (k, v) = pair(label, "--label")?;
            app["metadata"]["labels"][k] = json!(v);
        }
        for annotation in &self.annotations {
            let (k, v) = pair(annotation, "--annotation")?;
            app["metadata"]["annotations"][k] = json!(v);
        }
        let spec = &mut app["spec"];
        if let Some(project) = &self.project {
            spec["project"] = json!(project);
        }
        if let Some(server) = &self.dest_server {
            spec["destination"]["server"] = json!(server);
            remove(&mut spec["destination"], "name");
        }
        if let Some(name) = &self.dest_name {
            spec["destination"]["name"] = json!(name);
            remove(&mut spec["destination"], "server");
        }
        if let Some(namespace) = &self.dest_namespace {
            spec["destination"]["namespace"] = json!(namespace);
        }
        self.apply_sync_policy(spec)?;
        // Only source flags need to know which source (a multi-source app's policy, project
        // or destination changes without --source-position).
        if self.changes_a_source() {
            let source = source_at(spec, self.source_position)?;
            self.apply_source(source)?;
        }
        Ok(())
    }

    /// Whether any flag of the source is given.
    fn changes_a_source(&self) -> bool {
        let options = [
            &self.repo,
            &self.path,
            &self.revision,
            &self.helm_chart,
            &self.release_name,
            &self.nameprefix,
            &self.namesuffix,
            &self.directory_include,
            &self.directory_exclude,
            &self.config_management_plugin,
        ];
        let lists = [
            &self.values,
            &self.helm_set,
            &self.helm_set_string,
            &self.kustomize_images,
            &self.kustomize_common_labels,
            &self.jsonnet_tlas,
            &self.jsonnet_ext_vars,
            &self.jsonnet_libs,
            &self.plugin_env,
        ];
        options.iter().any(|o| o.is_some())
            || lists.iter().any(|l| !l.is_empty())
            || self.values_literal_file.is_some()
            || self.directory_recurse.is_some()
            || self.source_position.is_some()
    }

    fn apply_sync_policy(&self, spec: &mut Value) -> CliResult<()> {
        let policy = &mut spec["syncPolicy"];
        match self.sync_policy.as_deref() {
            Some("automated" | "auto") if !policy["automated"].is_object() => {
                policy["automated"] = json!({});
            }
            // Automated sync switched off with `enabled: false` is switched on again.
            Some("automated" | "auto") => remove(&mut policy["automated"], "enabled"),
            None => {}
            Some(_) => remove(policy, "automated"),
        }
        for (flag, field, value) in [
            ("--auto-prune", "prune", self.auto_prune),
            ("--self-heal", "selfHeal", self.self_heal),
            ("--allow-empty", "allowEmpty", self.allow_empty),
        ] {
            if let Some(value) = value {
                if !policy["automated"].is_object() {
                    return Err(CliError::usage(format!(
                        "{flag} applies to automated sync: add --sync-policy automated"
                    )));
                }
                policy["automated"][field] = json!(value);
            }
        }
        if !self.sync_options.is_empty() {
            let mut options: Vec<Value> = policy["syncOptions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for option in &self.sync_options {
                let (key, _) = pair(option, "--sync-option")?;
                options.retain(|o| {
                    o.as_str().and_then(|o| o.split_once('=')).map(|(k, _)| k) != Some(key.as_str())
                });
                options.push(json!(option));
            }
            policy["syncOptions"] = json!(options);
        }
        if let Some(limit) = self.sync_retry_limit {
            policy["retry"]["limit"] = json!(limit);
        }
        if let Some(duration) = &self.sync_retry_backoff_duration {
            policy["retry"]["backoff"]["duration"] = json!(duration);
        }
        if policy.as_object().is_some_and(|p| p.is_empty()) {
            remove(spec, "syncPolicy");
        }
        Ok(())
    }

    fn apply_source(&self, source: &mut Value) -> CliResult<()> {
        for (field, value) in [
            ("repoURL", &self.repo),
            ("path", &self.path),
            ("targetRevision", &self.revision),
            ("chart", &self.helm_chart),
        ] {
            if let Some(value) = value {
                source[field] = json!(value);
            }
        }
        if let Some(name) = &self.release_name {
            source["helm"]["releaseName"] = json!(name);
        }
        if !self.values.is_empty() {
            let mut files: Vec<Value> = source["helm"]["valueFiles"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for file in &self.values {
                if !files.iter().any(|f| f == file) {
                    files.push(json!(file));
                }
            }
            source["helm"]["valueFiles"] = json!(files);
        }
        if let Some(file) = &self.values_literal_file {
            source["helm"]["values"] = json!(read_input(file)?);
        }
        for (flags, flag, force_string) in [
            (&self.helm_set, "--helm-set", false),
            (&self.helm_set_string, "--helm-set-string", true),
        ] {
            for parameter in flags.iter() {
                let (name, value) = pair(parameter, flag)?;
                let mut entry = json!({ "name": name, "value": value });
                if force_string {
                    entry["forceString"] = json!(true);
                }
                set_named(&mut source["helm"]["parameters"], &name, entry);
            }
        }
        if !self.kustomize_images.is_empty() {
            let mut images: Vec<Value> = source["kustomize"]["images"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for image in &self.kustomize_images {
                let name = image_name(image);
                images.retain(|i| i.as_str().map(image_name) != Some(name));
                images.push(json!(image));
            }
            source["kustomize"]["images"] = json!(images);
        }
        if let Some(prefix) = &self.nameprefix {
            source["kustomize"]["namePrefix"] = json!(prefix);
        }
        if let Some(suffix) = &self.namesuffix {
            source["kustomize"]["nameSuffix"] = json!(suffix);
        }
        for label in &self.kustomize_common_labels {
            let (k, v) = pair(label, "--kustomize-common-label")?;
            source["kustomize"]["commonLabels"][k] = json!(v);
        }
        if let Some(recurse) = self.directory_recurse {
            source["directory"]["recurse"] = json!(recurse);
        }
        if let Some(include) = &self.directory_include {
            source["directory"]["include"] = json!(include);
        }
        if let Some(exclude) = &self.directory_exclude {
            source["directory"]["exclude"] = json!(exclude);
        }
        for (field, flag, values) in [
            ("tlas", "--jsonnet-tla-str", &self.jsonnet_tlas),
            ("extVars", "--jsonnet-ext-var-str", &self.jsonnet_ext_vars),
        ] {
            for value in values {
                let (name, value) = pair(value, flag)?;
                set_named(
                    &mut source["directory"]["jsonnet"][field],
                    &name,
                    json!({ "name": name, "value": value }),
                );
            }
        }
        for lib in &self.jsonnet_libs {
            let libs = &mut source["directory"]["jsonnet"]["libs"];
            if !libs.as_array().is_some_and(|l| l.iter().any(|l| l == lib)) {
                if !libs.is_array() {
                    *libs = json!([]);
                }
                libs.as_array_mut()
                    .expect("made an array above")
                    .push(json!(lib));
            }
        }
        if let Some(plugin) = &self.config_management_plugin {
            source["plugin"]["name"] = json!(plugin);
        }
        for entry in &self.plugin_env {
            let (name, value) = pair(entry, "--plugin-env")?;
            set_named(
                &mut source["plugin"]["env"],
                &name,
                json!({ "name": name, "value": value }),
            );
        }
        Ok(())
    }
}

/// Puts `entry` into the list `list` (made a list if it is not one), replacing the entry with
/// the same `name`.
fn set_named(list: &mut Value, name: &str, entry: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    let items = list.as_array_mut().expect("made an array above");
    items.retain(|item| item["name"] != json!(name));
    items.push(entry);
}

/// The image name of a Kustomize image override (`name=new:tag`, `name:tag`, `name@sha`).
fn image_name(image: &str) -> &str {
    let name = image.split('=').next().unwrap_or(image);
    let name = name.split('@').next().unwrap_or(name);
    // A colon after the last slash starts the tag (a colon before it is a registry port).
    match (name.rfind(':'), name.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &name[..colon],
        (Some(colon), None) => &name[..colon],
        _ => name,
    }
}

fn remove(value: &mut Value, field: &str) {
    if let Some(object) = value.as_object_mut() {
        object.remove(field);
    }
}

/// The source the flags change: `spec.source`, or `spec.sources[position-1]`.
fn source_at(spec: &mut Value, position: Option<usize>) -> CliResult<&mut Value> {
    let multi = spec["sources"].as_array().is_some_and(|s| !s.is_empty());
    match (multi, position) {
        (false, None | Some(1)) => {
            if !spec["source"].is_object() {
                spec["source"] = json!({});
            }
            Ok(&mut spec["source"])
        }
        (false, Some(_)) => Err(CliError::usage(
            "--source-position: the Application has a single source",
        )),
        (true, None) => Err(CliError::usage(
            "the Application has several sources: say which with --source-position N",
        )),
        (true, Some(n)) => {
            let sources = spec["sources"].as_array_mut().expect("checked above");
            let count = sources.len();
            sources.get_mut(n.wrapping_sub(1)).ok_or_else(|| {
                CliError::usage(format!(
                    "--source-position {n}: the Application has {count} sources"
                ))
            })
        }
    }
}

async fn set(client: &Client, args: SetArgs) -> CliResult<()> {
    let at = args.app.at();
    let mut app = client.get_app(&at, "").await?;
    args.spec.apply(&mut app)?;
    client.update_app(&at, &without_status(app)).await?;
    println!("application '{at}' updated");
    Ok(())
}

/// The object as the update method takes it (status and operation are the controller's).
fn without_status(mut app: Value) -> Value {
    remove(&mut app, "status");
    remove(&mut app, "operation");
    app
}

async fn unset(client: &Client, args: UnsetArgs) -> CliResult<()> {
    let at = args.app.at();
    let mut app = client.get_app(&at, "").await?;
    let spec = &mut app["spec"];
    if !args.sync_options.is_empty() {
        let policy = &mut spec["syncPolicy"];
        if let Some(options) = policy["syncOptions"].as_array_mut() {
            options.retain(|o| !args.sync_options.iter().any(|u| o == u));
            if options.is_empty() {
                remove(policy, "syncOptions");
            }
        }
        if policy.as_object().is_some_and(|p| p.is_empty()) {
            remove(spec, "syncPolicy");
        }
    }
    let source_flags = !args.values.is_empty()
        || args.values_literal
        || !args.helm_set.is_empty()
        || args.nameprefix
        || args.namesuffix
        || !args.kustomize_images.is_empty()
        || args.source_position.is_some();
    if source_flags {
        let source = source_at(spec, args.source_position)?;
        if let Some(files) = source["helm"]["valueFiles"].as_array_mut() {
            files.retain(|f| !args.values.iter().any(|v| f == v));
        }
        if args.values_literal {
            remove(&mut source["helm"], "values");
        }
        if let Some(parameters) = source["helm"]["parameters"].as_array_mut() {
            parameters.retain(|p| !args.helm_set.iter().any(|n| p["name"] == json!(n)));
        }
        if args.nameprefix {
            remove(&mut source["kustomize"], "namePrefix");
        }
        if args.namesuffix {
            remove(&mut source["kustomize"], "nameSuffix");
        }
        if let Some(images) = source["kustomize"]["images"].as_array_mut() {
            images.retain(|i| {
                let name = i.as_str().map(image_name).unwrap_or_default();
                !args.kustomize_images.iter().any(|u| image_name(u) == name)
            });
        }
        // Leave no empty helm/kustomize objects behind (they would change the source type).
        for field in ["helm", "kustomize"] {
            let empty = source[field].as_object().is_some_and(|o| {
                o.values()
                    .all(|v| v.as_array().is_some_and(Vec::is_empty) || v.is_null())
            });
            if empty {
                remove(source, field);
            }
        }
    }
    client.update_app(&at, &without_status(app)).await?;
    println!("application '{at}' updated");
    Ok(())
}

// --- get, list, resources, history, manifests -----------------------------------------------

async fn get(client: &Client, args: GetArgs) -> CliResult<()> {
    let at = args.app.at();
    let refresh = if args.hard_refresh {
        "hard"
    } else if args.refresh {
        "normal"
    } else {
        ""
    };
    let mut app = client.get_app(&at, refresh).await?;
    if !refresh.is_empty() {
        // The refresh is asked for; show the state after the controller did it.
        app = progress::wait_refreshed(client, &at, &app, Duration::from_secs(60)).await?;
    }
    match args.output {
        Format::Json | Format::Yaml => output::print_document(&app, args.output),
        Format::Name => {
            println!("{}", text(&app, "/metadata/name"));
            Ok(())
        }
        Format::Table | Format::Wide => {
            print!("{}", summary(client, &app));
            let resources = app["status"]["resources"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !resources.is_empty() {
                println!();
                resource_table(&resources, &app, args.output == Format::Wide).print();
            }
            Ok(())
        }
    }
}

/// The `get` summary: the Application's identity, source, policy, state, conditions and
/// operation.
pub fn summary(client: &Client, app: &Value) -> String {
    let spec = &app["spec"];
    let sources: Vec<&Value> = match spec["sources"].as_array() {
        Some(s) if !s.is_empty() => s.iter().collect(),
        _ => vec![&spec["source"]],
    };
    let name = text(app, "/metadata/name");
    let namespace = text(app, "/metadata/namespace");
    let mut rows: Vec<(&str, String)> = vec![
        (
            "Name",
            if namespace.is_empty() {
                name.clone()
            } else {
                format!("{namespace}/{name}")
            },
        ),
        ("Project", or(text(app, "/spec/project"), "default")),
        ("Server", destination(app)),
        ("Namespace", text(app, "/spec/destination/namespace")),
        ("URL", format!("{}/applications/{name}", client.base_url())),
    ];
    for source in sources {
        rows.push(("Repo", text(source, "/repoURL")));
        let revision = text(source, "/targetRevision");
        rows.push((
            "Target",
            if revision.is_empty() {
                "HEAD".into()
            } else {
                revision
            },
        ));
        let chart = text(source, "/chart");
        if chart.is_empty() {
            rows.push(("Path", text(source, "/path")));
        } else {
            rows.push(("Chart", chart));
        }
    }
    rows.push(("Sync Policy", sync_policy(app)));
    let revision = text(app, "/status/sync/revision");
    let short = revision.get(..7).unwrap_or(&revision).to_owned();
    let sync = text(app, "/status/sync/status");
    rows.push((
        "Sync Status",
        if short.is_empty() {
            or(sync, "Unknown")
        } else {
            format!("{} to {short}", or(sync, "Unknown"))
        },
    ));
    let health = text(app, "/status/health/status");
    let message = text(app, "/status/health/message");
    rows.push((
        "Health Status",
        if message.is_empty() {
            or(health, "Unknown")
        } else {
            format!("{} ({message})", or(health, "Unknown"))
        },
    ));
    let mut out = output::fields(&rows);
    if let Some(conditions) = app["status"]["conditions"]
        .as_array()
        .filter(|c| !c.is_empty())
    {
        out.push_str("\nCONDITION  MESSAGE\n");
        for condition in conditions {
            out.push_str(&format!(
                "{}  {}\n",
                text(condition, "/type"),
                text(condition, "/message")
            ));
        }
    }
    let operation = &app["status"]["operationState"];
    if operation.is_object() {
        let mut rows = vec![
            (
                "Operation",
                if operation["operation"]["rollback"].is_object() {
                    "Rollback".to_owned()
                } else {
                    "Sync".to_owned()
                },
            ),
            ("Phase", text(operation, "/phase")),
            ("Message", text(operation, "/message")),
            ("Started", text(operation, "/startedAt")),
        ];
        let finished = text(operation, "/finishedAt");
        if !finished.is_empty() {
            rows.push(("Finished", finished));
        }
        let revision = text(operation, "/syncResult/revision");
        if !revision.is_empty() {
            rows.push(("Sync Revision", revision));
        }
        out.push('\n');
        out.push_str(&output::fields(&rows));
    }
    out
}

fn destination(app: &Value) -> String {
    let server = text(app, "/spec/destination/server");
    if server.is_empty() {
        text(app, "/spec/destination/name")
    } else {
        server
    }
}

fn sync_policy(app: &Value) -> String {
    let automated = &app["spec"]["syncPolicy"]["automated"];
    if !automated.is_object() || automated["enabled"] == json!(false) {
        return "Manual".into();
    }
    let mut flags = Vec::new();
    if automated["prune"] == json!(true) {
        flags.push("Prune");
    }
    if automated["selfHeal"] == json!(true) {
        flags.push("SelfHeal");
    }
    if flags.is_empty() {
        "Automated".into()
    } else {
        format!("Automated ({})", flags.join(", "))
    }
}

/// The resources with their sync and health, and the last sync's result message for each.
fn resource_table(resources: &[Value], app: &Value, wide: bool) -> Table {
    let results: BTreeMap<(String, String, String, String), String> =
        app["status"]["operationState"]["syncResult"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    (
                        text(r, "/group"),
                        text(r, "/kind"),
                        text(r, "/namespace"),
                        text(r, "/name"),
                    ),
                    text(r, "/message"),
                )
            })
            .collect();
    let mut headers = vec![
        "GROUP",
        "KIND",
        "NAMESPACE",
        "NAME",
        "STATUS",
        "HEALTH",
        "HOOK",
        "MESSAGE",
    ];
    if wide {
        headers.insert(7, "WAVE");
    }
    let mut table = Table::new(&headers);
    for r in resources {
        let key = (
            text(r, "/group"),
            text(r, "/kind"),
            text(r, "/namespace"),
            text(r, "/name"),
        );
        let mut status = text(r, "/status");
        if r["requiresPruning"] == json!(true) {
            status.push_str(" (prune)");
        }
        let mut row = vec![
            key.0.clone(),
            key.1.clone(),
            key.2.clone(),
            key.3.clone(),
            status,
            text(r, "/health/status"),
            if r["hook"] == json!(true) {
                "hook".into()
            } else {
                String::new()
            },
            results.get(&key).cloned().unwrap_or_default(),
        ];
        if wide {
            row.insert(7, text(r, "/syncWave"));
        }
        table.row(row);
    }
    table
}

async fn list(client: &Client, args: ListArgs) -> CliResult<()> {
    let mut query = pb::ApplicationQuery {
        projects: args.projects.clone(),
        selector: args.selector.clone().unwrap_or_default(),
        clusters: args.clusters.clone(),
        namespaces: args.namespaces.clone(),
        health: args.health.clone(),
        sync: args.sync.clone(),
        search: args.search.clone().unwrap_or_default(),
        app_namespace: args.app_namespace.clone(),
        repo: args.repo.clone().unwrap_or_default(),
        ..Default::default()
    };
    if matches!(args.output, Format::Table | Format::Name) {
        // Only what the table shows crosses the network.
        query.fields = [
            "metadata.name",
            "metadata.namespace",
            "spec.project",
            "spec.destination",
            "spec.syncPolicy",
            "status.sync.status",
            "status.health.status",
            "status.conditions",
        ]
        .map(str::to_owned)
        .to_vec();
    }
    let apps = list_all(client, query).await?;
    // Names are qualified relative to the control plane's namespace (tables and -o name).
    let control_namespace = if matches!(args.output, Format::Json | Format::Yaml) {
        String::new()
    } else {
        client
            .settings()
            .await
            .map(|s| text(&s, "/controllerNamespace"))
            .unwrap_or_default()
    };
    match args.output {
        Format::Json | Format::Yaml => output::print_document(&json!(apps), args.output),
        Format::Name => {
            for app in &apps {
                println!("{}", qualified_name(app, &control_namespace));
            }
            Ok(())
        }
        Format::Table | Format::Wide => {
            let wide = args.output == Format::Wide;
            let mut headers = vec![
                "NAME",
                "CLUSTER",
                "NAMESPACE",
                "PROJECT",
                "STATUS",
                "HEALTH",
                "SYNCPOLICY",
                "CONDITIONS",
            ];
            if wide {
                headers.extend(["REPO", "PATH", "TARGET"]);
            }
            let mut table = Table::new(&headers);
            for app in &apps {
                let conditions: Vec<String> = app["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| text(c, "/type"))
                    .collect();
                let mut row = vec![
                    qualified_name(app, &control_namespace),
                    destination(app),
                    text(app, "/spec/destination/namespace"),
                    or(text(app, "/spec/project"), "default"),
                    or(text(app, "/status/sync/status"), "Unknown"),
                    or(text(app, "/status/health/status"), "Unknown"),
                    if sync_policy(app) == "Manual" {
                        "Manual".into()
                    } else {
                        "Auto".to_owned()
                            + if app["spec"]["syncPolicy"]["automated"]["prune"] == json!(true) {
                                "-Prune"
                            } else {
                                ""
                            }
                    },
                    if conditions.is_empty() {
                        "<none>".into()
                    } else {
                        conditions.join(",")
                    },
                ];
                if wide {
                    let source = if app["spec"]["source"].is_object() {
                        &app["spec"]["source"]
                    } else {
                        &app["spec"]["sources"][0]
                    };
                    row.push(text(source, "/repoURL"));
                    row.push(text(source, "/path"));
                    row.push(text(source, "/targetRevision"));
                }
                table.row(row);
            }
            table.print();
            Ok(())
        }
    }
}

/// Every page of a list.
pub async fn list_all(client: &Client, mut query: pb::ApplicationQuery) -> CliResult<Vec<Value>> {
    let mut apps = Vec::new();
    loop {
        let page = client.list_apps(query.clone()).await?;
        apps.extend(page["items"].as_array().cloned().unwrap_or_default());
        let next = text(&page, "/continue");
        if next.is_empty() {
            return Ok(apps);
        }
        query.r#continue = next;
    }
}

/// `NAME`, or `NAMESPACE/NAME` for an Application outside the control plane's namespace
/// (what the other commands take back).
fn qualified_name(app: &Value, control_namespace: &str) -> String {
    let namespace = text(app, "/metadata/namespace");
    let name = text(app, "/metadata/name");
    if namespace.is_empty() || namespace == control_namespace {
        name
    } else {
        format!("{namespace}/{name}")
    }
}

async fn resources(client: &Client, args: ResourcesArgs) -> CliResult<()> {
    let app = client.get_app(&args.app.at(), "").await?;
    let mut resources = app["status"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if args.out_of_sync {
        resources.retain(|r| r["status"] != json!("Synced"));
    }
    match args.output {
        Format::Json | Format::Yaml => output::print_document(&json!(resources), args.output),
        Format::Name => {
            for r in &resources {
                println!("{}", resource_name(r));
            }
            Ok(())
        }
        _ => {
            resource_table(&resources, &app, args.output == Format::Wide).print();
            Ok(())
        }
    }
}

/// The resource tree, each node under its owner.
async fn tree(client: &Client, args: ResourcesArgs) -> CliResult<()> {
    let tree = client.resource_tree(&args.app.at()).await?;
    let nodes = tree["nodes"].as_array().cloned().unwrap_or_default();
    match args.output {
        Format::Json | Format::Yaml => output::print_document(&tree, args.output),
        _ => {
            print!("{}", render_tree(&nodes));
            Ok(())
        }
    }
}

/// Nodes as an indented tree: roots (no owner among the nodes) first, each followed by what
/// it owns; owners are found by uid, else by kind, namespace and name.
pub fn render_tree(nodes: &[Value]) -> String {
    let key = |v: &Value| (text(v, "/kind"), text(v, "/namespace"), text(v, "/name"));
    let index_of = |reference: &Value| {
        let uid = text(reference, "/uid");
        nodes.iter().position(|n| {
            if uid.is_empty() {
                key(n) == key(reference)
            } else {
                text(n, "/uid") == uid
            }
        })
    };
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let parent = node["parentRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(index_of);
        match parent {
            Some(parent) if parent != i => children.entry(parent).or_default().push(i),
            _ => roots.push(i),
        }
    }
    fn walk(
        nodes: &[Value],
        children: &BTreeMap<usize, Vec<usize>>,
        i: usize,
        prefix: &str,
        last: bool,
        root: bool,
        out: &mut String,
    ) {
        let node = &nodes[i];
        let branch = if root {
            ""
        } else if last {
            "└─ "
        } else {
            "├─ "
        };
        let health = text(node, "/health/status");
        out.push_str(&format!("{prefix}{branch}{}", resource_name(node)));
        if !health.is_empty() {
            out.push_str(&format!("  {health}"));
        }
        out.push('\n');
        let below = if root {
            String::new()
        } else {
            format!("{prefix}{}", if last { "   " } else { "│  " })
        };
        let kids = children.get(&i).map(Vec::as_slice).unwrap_or_default();
        for (n, child) in kids.iter().enumerate() {
            walk(
                nodes,
                children,
                *child,
                &below,
                n + 1 == kids.len(),
                false,
                out,
            );
        }
    }
    let mut out = String::new();
    for root in roots {
        walk(nodes, &children, root, "", true, true, &mut out);
    }
    out
}

async fn events(client: &Client, args: EventsArgs) -> CliResult<()> {
    let events = client.events(&args.app.at()).await?;
    match args.output {
        Format::Json | Format::Yaml => output::print_document(&json!(events), args.output),
        _ => {
            let mut table =
                Table::new(&["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]);
            for e in &events {
                let seen = [
                    text(e, "/lastTimestamp"),
                    text(e, "/eventTime"),
                    text(e, "/metadata/creationTimestamp"),
                ]
                .into_iter()
                .find(|t| !t.is_empty())
                .unwrap_or_default();
                table.row(vec![
                    seen,
                    text(e, "/type"),
                    text(e, "/reason"),
                    format!(
                        "{}/{}",
                        text(e, "/involvedObject/kind"),
                        text(e, "/involvedObject/name")
                    ),
                    text(e, "/count"),
                    text(e, "/message"),
                ]);
            }
            table.print();
            Ok(())
        }
    }
}

/// `GROUP/KIND/NAMESPACE/NAME` as kubectl users know (`KIND/NAME` when core and cluster-wide).
fn resource_name(r: &Value) -> String {
    let group = text(r, "/group");
    let kind = text(r, "/kind");
    let namespace = text(r, "/namespace");
    let name = text(r, "/name");
    let kind = if group.is_empty() {
        kind
    } else {
        format!("{kind}.{group}")
    };
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

async fn history(client: &Client, args: HistoryArgs) -> CliResult<()> {
    let entries = client.history(&args.app.at()).await?;
    match args.output {
        Format::Json | Format::Yaml => output::print_document(&json!(entries), args.output),
        _ => {
            let mut table = Table::new(&["ID", "DATE", "REVISION", "INITIATED BY"]);
            for entry in &entries {
                let revision = entry["revisions"]
                    .as_array()
                    .filter(|r| !r.is_empty())
                    .map(|r| {
                        r.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| text(entry, "/revision"));
                let initiated = if entry["initiatedBy"]["automated"] == json!(true) {
                    "automated".to_owned()
                } else {
                    text(entry, "/initiatedBy/username")
                };
                table.row(vec![
                    text(entry, "/id"),
                    text(entry, "/deployedAt"),
                    revision,
                    initiated,
                ]);
            }
            table.print();
            Ok(())
        }
    }
}

async fn manifests(client: &Client, args: ManifestsArgs) -> CliResult<()> {
    let at = args.app.at();
    let manifests: Vec<Value> = if args.source == "live" {
        if args.revision.is_some() {
            return Err(CliError::usage("--revision applies to --source git only"));
        }
        client
            .managed_resources(&at)
            .await?
            .iter()
            .filter_map(|r| state(r, "liveState"))
            .collect()
    } else {
        let answer = client
            .manifests(&at, args.revision.as_deref().unwrap_or_default())
            .await?;
        answer["manifests"].as_array().cloned().unwrap_or_default()
    };
    print_manifests(&manifests, args.output)
}

/// A resource's state from a managed-resources item (JSON text, as Argo CD sends it; or an
/// object).
pub fn state(item: &Value, field: &str) -> Option<Value> {
    match &item[field] {
        Value::String(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(|v| !v.is_null()),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn print_manifests(manifests: &[Value], format: Format) -> CliResult<()> {
    match format {
        Format::Json => output::print_document(&json!(manifests), Format::Json),
        _ => {
            for (i, manifest) in manifests.iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                output::print_document(manifest, Format::Yaml)?;
            }
            Ok(())
        }
    }
}

// --- diff ----------------------------------------------------------------------------------

async fn diff(client: &Client, args: DiffArgs) -> CliResult<()> {
    let at = args.app.at();
    if args.refresh || args.hard_refresh {
        let refresh = if args.hard_refresh { "hard" } else { "normal" };
        let app = client.get_app(&at, refresh).await?;
        progress::wait_refreshed(client, &at, &app, Duration::from_secs(60)).await?;
    }
    let items = match &args.local {
        Some(dir) => {
            let app = client.get_app(&at, "").await?;
            let manifests = crate::local::render(dir, &crate::local::AppSettings::of(&app)).await?;
            client.diff(&at, &manifests).await?
        }
        None => client.managed_resources(&at).await?,
    };
    let colour = output::colour();
    let mut differences = 0;
    for item in &items {
        if item["modified"] != json!(true) {
            continue;
        }
        differences += 1;
        let title = format!(
            "===== {}/{} {}/{} ======",
            text(item, "/group"),
            text(item, "/kind"),
            text(item, "/namespace"),
            text(item, "/name")
        );
        println!("\n{}", output::clean(&title));
        let diff = output::clean_lines(&text(item, "/diff"));
        for line in diff.lines() {
            if !colour {
                println!("{line}");
            } else if line.starts_with('+') && !line.starts_with("+++") {
                println!("\x1b[32m{line}\x1b[0m");
            } else if line.starts_with('-') && !line.starts_with("---") {
                println!("\x1b[31m{line}\x1b[0m");
            } else if line.starts_with("@@") {
                println!("\x1b[36m{line}\x1b[0m");
            } else {
                println!("{line}");
            }
        }
    }
    if differences > 0 && args.exit_code {
        // Reported through the exit code only (see cmd::run).
        return Err(CliError::new(Exit::Differences, ""));
    }
    Ok(())
}

// --- sync, wait, rollback, delete ----------------------------------------------------------

/// The Applications named, or picked by a selector.
async fn targets(
    client: &Client,
    names: &[String],
    selector: Option<&str>,
    namespace: &str,
) -> CliResult<Vec<AppAt>> {
    let mut apps: Vec<AppAt> = names.iter().map(|n| AppAt::parse(n, namespace)).collect();
    if let Some(selector) = selector {
        let found = list_all(
            client,
            pb::ApplicationQuery {
                selector: selector.to_owned(),
                app_namespace: namespace.to_owned(),
                fields: vec!["metadata.name".into(), "metadata.namespace".into()],
                ..Default::default()
            },
        )
        .await?;
        if found.is_empty() {
            return Err(CliError::new(
                Exit::NotFound,
                format!("no Application matches {selector:?}"),
            ));
        }
        apps.extend(found.iter().map(|a| AppAt {
            name: text(a, "/metadata/name"),
            namespace: text(a, "/metadata/namespace"),
        }));
    }
    if apps.is_empty() {
        return Err(CliError::usage(
            "name at least one Application, or pick them with -l SELECTOR",
        ));
    }
    Ok(apps)
}

/// `GROUP:KIND:NAME` or `GROUP:KIND:NAMESPACE/NAME`.
fn sync_resource(text: &str) -> CliResult<pb::SyncResource> {
    let parts: Vec<&str> = text.splitn(3, ':').collect();
    let [group, kind, rest] = parts.as_slice() else {
        return Err(CliError::usage(format!(
            "--resource {text:?}: expected GROUP:KIND:NAME or GROUP:KIND:NAMESPACE/NAME (e.g. apps:Deployment:web, :Service:web)"
        )));
    };
    let (namespace, name) = rest.split_once('/').unwrap_or(("", rest));
    if kind.is_empty() || name.is_empty() {
        return Err(CliError::usage(format!(
            "--resource {text:?}: the kind and the name are required"
        )));
    }
    Ok(pb::SyncResource {
        group: (*group).to_owned(),
        kind: (*kind).to_owned(),
        name: name.to_owned(),
        namespace: namespace.to_owned(),
    })
}

fn timeout(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

async fn sync(client: &Client, args: SyncArgs) -> CliResult<()> {
    let resources = args
        .resources
        .iter()
        .map(|r| sync_resource(r))
        .collect::<CliResult<Vec<_>>>()?;
    let apps = targets(
        client,
        &args.names,
        args.selector.as_deref(),
        &args.app_namespace,
    )
    .await?;
    let mut failed = None;
    for at in apps {
        let started = client
            .sync_app(pb::ApplicationSyncRequest {
                name: at.name.clone(),
                app_namespace: at.namespace.clone(),
                revision: args.revision.clone().unwrap_or_default(),
                prune: args.prune,
                dry_run: args.dry_run,
                strategy: args.strategy.clone().unwrap_or_default(),
                force: args.force,
                resources: resources.clone(),
                sync_options: args.sync_options.clone(),
                retry_limit: args.retry_limit,
                revisions: Vec::new(),
            })
            .await?;
        if args.no_wait {
            println!("sync of '{at}' started");
            continue;
        }
        let outcome = follow_operation(client, &at, &started, args.timeout, args.output).await;
        if let Err(error) = outcome {
            if error.exit != Exit::OperationFailed {
                return Err(error);
            }
            eprintln!("capstan: {error}");
            failed = Some(error);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Waits for the operation `started` (the answer to sync or rollback) to finish, showing
/// progress; then prints the result and fails with [`Exit::OperationFailed`] unless it
/// succeeded.
async fn follow_operation(
    client: &Client,
    at: &AppAt,
    started: &Value,
    seconds: u64,
    format: Format,
) -> CliResult<()> {
    let want = Want {
        operation: true,
        ..Want::default()
    };
    let app = progress::wait(client, at, want, timeout(seconds), Some(started)).await?;
    let phase = text(&app, "/status/operationState/phase");
    match format {
        Format::Json | Format::Yaml => output::print_document(&app, format)?,
        _ => {
            print!("{}", summary(client, &app));
            if let Some(results) = app["status"]["operationState"]["syncResult"]["resources"]
                .as_array()
                .filter(|r| !r.is_empty())
            {
                println!();
                let mut table = Table::new(&[
                    "GROUP",
                    "KIND",
                    "NAMESPACE",
                    "NAME",
                    "STATUS",
                    "HEALTH",
                    "HOOK",
                    "MESSAGE",
                ]);
                let health: BTreeMap<(String, String, String), String> = app["status"]["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        (
                            (text(r, "/kind"), text(r, "/namespace"), text(r, "/name")),
                            text(r, "/health/status"),
                        )
                    })
                    .collect();
                for r in results {
                    let key = (text(r, "/kind"), text(r, "/namespace"), text(r, "/name"));
                    table.row(vec![
                        text(r, "/group"),
                        key.0.clone(),
                        key.1.clone(),
                        key.2.clone(),
                        text(r, "/status"),
                        health.get(&key).cloned().unwrap_or_default(),
                        text(r, "/hookType"),
                        text(r, "/message"),
                    ]);
                }
                table.print();
            }
        }
    }
    if phase == "Succeeded" {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::OperationFailed,
            format!(
                "the operation on '{at}' ended {phase}: {}",
                text(&app, "/status/operationState/message")
            ),
        ))
    }
}

async fn wait(client: &Client, args: WaitArgs) -> CliResult<()> {
    let apps = targets(
        client,
        &args.names,
        args.selector.as_deref(),
        &args.app_namespace,
    )
    .await?;
    let any = args.sync || args.health || args.operation || args.suspended || args.degraded;
    let want = Want {
        sync: args.sync || !any,
        health: args.health || !any,
        operation: args.operation || !any,
        suspended: args.suspended,
        degraded: args.degraded,
    };
    for at in apps {
        let app = progress::wait(client, &at, want, timeout(args.timeout), None).await?;
        println!(
            "'{at}': {} {}",
            or(text(&app, "/status/sync/status"), "Unknown"),
            or(text(&app, "/status/health/status"), "Unknown")
        );
    }
    Ok(())
}

async fn rollback(client: &Client, args: RollbackArgs) -> CliResult<()> {
    let at = args.app.at();
    let id = match args.id {
        Some(id) => id,
        None => {
            let entries = client.history(&at).await?;
            let ids: Vec<i64> = entries.iter().filter_map(|e| e["id"].as_i64()).collect();
            match ids.len() {
                0 | 1 => {
                    return Err(CliError::usage(format!(
                        "'{at}' has no earlier deployment to roll back to"
                    ))
                    .hint("see `capstan app history`"));
                }
                n => ids[n - 2],
            }
        }
    };
    let started = client
        .rollback_app(&at, id, args.prune, args.dry_run)
        .await?;
    if args.no_wait {
        println!("rollback of '{at}' to {id} started");
        return Ok(());
    }
    follow_operation(client, &at, &started, args.timeout, Format::Table).await
}

async fn delete(client: &Client, args: DeleteArgs) -> CliResult<()> {
    let apps: Vec<AppAt> = args
        .names
        .iter()
        .map(|n| AppAt::parse(n, &args.app_namespace))
        .collect();
    for at in apps {
        if !args.yes {
            let what = if args.cascade {
                " and its resources"
            } else {
                " (its resources stay)"
            };
            if !confirm(&format!("Delete application '{at}'{what}? [y/n] "))? {
                println!("'{at}' kept");
                continue;
            }
        }
        client
            .delete_app(&at, args.cascade, &args.propagation_policy)
            .await?;
        if args.wait {
            progress::wait_deleted(client, &at, None).await?;
            println!("application '{at}' deleted");
        } else {
            println!("application '{at}' is being deleted");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_the_spec_argo_cd_users_expect() -> CliResult<()> {
        let flags = SpecFlags {
            repo: Some("https://git.example/apps.git".into()),
            path: Some("guestbook".into()),
            dest_server: Some("https://kubernetes.default.svc".into()),
            dest_namespace: Some("web".into()),
            sync_policy: Some("automated".into()),
            self_heal: Some(true),
            sync_options: vec!["CreateNamespace=true".into()],
            helm_set: vec!["replicaCount=2".into(), "replicaCount=3".into()],
            labels: vec!["team=web".into()],
            ..SpecFlags::default()
        };
        let mut app = json!({"metadata": {"name": "g"}, "spec": {"source": {}, "destination": {}}});
        flags.apply(&mut app)?;
        assert_eq!(
            app,
            json!({
                "metadata": {"name": "g", "labels": {"team": "web"}},
                "spec": {
                    "source": {"repoURL": "https://git.example/apps.git", "path": "guestbook",
                        "helm": {"parameters": [{"name": "replicaCount", "value": "3"}]}},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"},
                    "syncPolicy": {"automated": {"selfHeal": true}, "syncOptions": ["CreateNamespace=true"]},
                }
            })
        );
        Ok(())
    }

    #[test]
    fn jsonnet_and_plugin_flags_fill_their_source_fields() -> CliResult<()> {
        let flags = SpecFlags {
            jsonnet_tlas: vec!["env=prod".into()],
            jsonnet_libs: vec!["vendor".into(), "vendor".into()],
            config_management_plugin: Some("cdk8s".into()),
            plugin_env: vec!["STAGE=prod".into()],
            ..SpecFlags::default()
        };
        let mut app = json!({"spec": {"source": {"repoURL": "r"}}});
        flags.apply(&mut app)?;
        assert_eq!(
            app["spec"]["source"],
            json!({
                "repoURL": "r",
                "directory": {"jsonnet": {"tlas": [{"name": "env", "value": "prod"}], "libs": ["vendor"]}},
                "plugin": {"name": "cdk8s", "env": [{"name": "STAGE", "value": "prod"}]},
            })
        );
        Ok(())
    }

    #[test]
    fn self_heal_without_automated_sync_is_refused() {
        let flags = SpecFlags {
            self_heal: Some(true),
            ..SpecFlags::default()
        };
        let mut app = json!({"spec": {}});
        let error = flags.apply(&mut app).expect_err("needs automated");
        assert!(error.message.contains("--sync-policy automated"), "{error}");
    }

    #[test]
    fn trees_hang_each_node_under_its_owner() {
        let nodes = vec![
            json!({"kind": "Pod", "namespace": "web", "name": "ui-1-a", "uid": "p", "health": {"status": "Healthy"},
                   "parentRefs": [{"kind": "ReplicaSet", "namespace": "web", "name": "ui-1", "uid": "r"}]}),
            json!({"group": "apps", "kind": "Deployment", "namespace": "web", "name": "ui", "uid": "d", "health": {"status": "Healthy"}}),
            json!({"group": "apps", "kind": "ReplicaSet", "namespace": "web", "name": "ui-1", "uid": "r",
                   "parentRefs": [{"group": "apps", "kind": "Deployment", "namespace": "web", "name": "ui"}]}),
            json!({"kind": "Service", "namespace": "web", "name": "ui", "uid": "s"}),
        ];
        assert_eq!(
            render_tree(&nodes),
            "Deployment.apps/web/ui  Healthy\n\
             └─ ReplicaSet.apps/web/ui-1\n   \
             └─ Pod/web/ui-1-a  Healthy\n\
             Service/web/ui\n"
        );
    }

    #[test]
    fn resources_and_images_parse() -> CliResult<()> {
        let r = sync_resource("apps:Deployment:web/guestbook")?;
        assert_eq!(
            (
                r.group.as_str(),
                r.kind.as_str(),
                r.namespace.as_str(),
                r.name.as_str()
            ),
            ("apps", "Deployment", "web", "guestbook")
        );
        let r = sync_resource(":Service:web")?;
        assert_eq!((r.group.as_str(), r.name.as_str()), ("", "web"));
        assert!(sync_resource("Deployment/web").is_err());
        assert_eq!(
            image_name("registry:5000/nginx:1.27"),
            "registry:5000/nginx"
        );
        assert_eq!(image_name("nginx=nginx:1.27"), "nginx");
        assert_eq!(image_name("nginx@sha256:abc"), "nginx");
        Ok(())
    }
}
