//! `capstan proj ...`: projects — where their Applications may come from and deploy to, what
//! they may create, their roles and tokens, and their sync windows. Every change reads the
//! project, changes it and writes it back with its resourceVersion, so two changes at once
//! cannot silently undo each other (the second fails and says so).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::Global;
use crate::client::Client;
use crate::cmd::app::{confirm, read_input};
use crate::error::{CliError, CliResult, Exit};
use crate::output::{self, Format, Table, text};

/// `capstan proj`.
#[derive(Debug, Subcommand)]
pub enum ProjCommand {
    /// Create a project from flags or a file (Capstan's or Argo CD's AppProject YAML).
    #[command(
        after_help = "Examples:\n  capstan proj create team-a --description 'Team A' \\\n    --src https://git.example.com/team-a/* --dest https://kubernetes.default.svc,team-a-*\n  capstan proj create -f project.yaml --upsert"
    )]
    Create(CreateArgs),
    /// Show a project.
    #[command(
        after_help = "Examples:\n  capstan proj get team-a\n  capstan proj get team-a -o yaml"
    )]
    Get(GetArgs),
    /// List projects.
    #[command(after_help = "Examples:\n  capstan proj list\n  capstan proj list -o name")]
    List(ListArgs),
    /// Replace a project's description, sources or destinations.
    #[command(
        after_help = "Examples:\n  capstan proj set team-a --description 'Team A'\n  capstan proj set team-a --src 'https://git.example.com/team-a/*' --dest 'https://kubernetes.default.svc,team-a-*'"
    )]
    Set(SetArgs),
    /// Delete a project (refused while Applications use it).
    #[command(
        after_help = "Examples:\n  capstan proj delete team-a\n  capstan proj delete team-a --yes"
    )]
    Delete(DeleteArgs),
    /// Allow a source repository (glob).
    #[command(
        after_help = "Examples:\n  capstan proj add-source team-a 'https://git.example.com/team-a/*'"
    )]
    AddSource(RepoArgs),
    /// Remove a source repository.
    #[command(
        after_help = "Examples:\n  capstan proj remove-source team-a https://git.example.com/old.git"
    )]
    RemoveSource(RepoArgs),
    /// Allow a destination: SERVER NAMESPACE (globs; --name for a cluster name).
    #[command(
        after_help = "Examples:\n  capstan proj add-destination team-a https://kubernetes.default.svc 'team-a-*'\n  capstan proj add-destination team-a prod team-a --name"
    )]
    AddDestination(DestinationArgs),
    /// Remove a destination.
    #[command(
        after_help = "Examples:\n  capstan proj remove-destination team-a https://kubernetes.default.svc 'team-a-*'"
    )]
    RemoveDestination(DestinationArgs),
    /// Allow a cluster-scoped resource kind: GROUP KIND ("" for the core group).
    #[command(
        after_help = "Examples:\n  capstan proj allow-cluster-resource team-a \"\" Namespace\n  capstan proj allow-cluster-resource team-a rbac.authorization.k8s.io ClusterRole"
    )]
    AllowClusterResource(GroupKindArgs),
    /// Deny a cluster-scoped resource kind.
    #[command(
        after_help = "Examples:\n  capstan proj deny-cluster-resource team-a rbac.authorization.k8s.io ClusterRoleBinding"
    )]
    DenyClusterResource(GroupKindArgs),
    /// Allow a namespaced resource kind (takes it off the deny list).
    #[command(
        after_help = "Examples:\n  capstan proj allow-namespace-resource team-a \"\" ResourceQuota"
    )]
    AllowNamespaceResource(GroupKindArgs),
    /// Deny a namespaced resource kind.
    #[command(
        after_help = "Examples:\n  capstan proj deny-namespace-resource team-a \"\" ResourceQuota\n  capstan proj deny-namespace-resource team-a networking.k8s.io NetworkPolicy"
    )]
    DenyNamespaceResource(GroupKindArgs),
    /// Project roles, their policies, groups and tokens.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Sync windows.
    #[command(subcommand)]
    Windows(WindowsCommand),
}

/// `proj create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The project's name (not with -f).
    #[arg(required_unless_present = "file")]
    pub name: Option<String>,
    /// Create from this YAML file ("-": stdin).
    #[arg(short, long, conflicts_with = "name")]
    pub file: Option<PathBuf>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Allowed source repository (glob; repeatable).
    #[arg(short, long = "src", value_name = "REPO")]
    pub sources: Vec<String>,
    /// Allowed destination SERVER,NAMESPACE (globs; repeatable).
    #[arg(short, long = "dest", value_name = "SERVER,NAMESPACE")]
    pub destinations: Vec<String>,
    /// Replace an existing project with the same name.
    #[arg(long)]
    pub upsert: bool,
}

/// `proj get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The project.
    pub name: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `proj list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `proj set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The project.
    pub name: String,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// The allowed source repositories (replaces the list; repeatable).
    #[arg(short, long = "src", value_name = "REPO")]
    pub sources: Vec<String>,
    /// The allowed destinations SERVER,NAMESPACE (replaces the list; repeatable).
    #[arg(short, long = "dest", value_name = "SERVER,NAMESPACE")]
    pub destinations: Vec<String>,
}

/// `proj delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The project.
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

/// A project and a repository.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The project.
    pub project: String,
    /// The repository URL (glob).
    pub repo: String,
}

/// A project and a destination.
#[derive(Debug, Args)]
pub struct DestinationArgs {
    /// The project.
    pub project: String,
    /// The cluster's server URL (or its name with --name).
    #[arg(value_name = "SERVER")]
    pub dest_server: String,
    /// The namespace (glob).
    pub namespace: String,
    /// SERVER is a cluster name.
    #[arg(long)]
    pub name: bool,
}

/// A project and a resource kind.
#[derive(Debug, Args)]
pub struct GroupKindArgs {
    /// The project.
    pub project: String,
    /// The API group ("" for the core group, * for all).
    pub group: String,
    /// The kind (* for all).
    pub kind: String,
}

/// `proj role`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create a role.
    #[command(
        after_help = "Examples:\n  capstan proj role create team-a deployer --description 'syncs the apps'"
    )]
    Create(RoleArgs),
    /// Delete a role.
    #[command(after_help = "Examples:\n  capstan proj role delete team-a deployer")]
    Delete(RoleArgs),
    /// List a project's roles.
    #[command(after_help = "Examples:\n  capstan proj role list team-a")]
    List(ProjectArg),
    /// Add a policy: the role may (or may not) do ACTION on the project's applications
    /// matching OBJECT.
    #[command(
        after_help = "Examples:\n  capstan proj role add-policy team-a deployer -a sync -o '*'\n  capstan proj role add-policy team-a viewer -a get -o 'web-*' -p allow"
    )]
    AddPolicy(PolicyArgs),
    /// Remove a policy.
    #[command(
        after_help = "Examples:\n  capstan proj role remove-policy team-a deployer -a sync -o '*'"
    )]
    RemovePolicy(PolicyArgs),
    /// Let members of an SSO group act in the role.
    #[command(
        after_help = "Examples:\n  capstan proj role add-group team-a deployer platform-team"
    )]
    AddGroup(GroupArgs),
    /// Stop letting a group act in the role.
    #[command(
        after_help = "Examples:\n  capstan proj role remove-group team-a deployer platform-team"
    )]
    RemoveGroup(GroupArgs),
    /// Create a token for the role (printed once: keep it).
    #[command(
        after_help = "Examples:\n  capstan proj role create-token team-a deployer --expires-in 720h"
    )]
    CreateToken(RoleTokenArgs),
    /// Revoke a role's token by its issue time (ISSUED-AT in `proj role list-tokens`).
    #[command(
        after_help = "Examples:\n  capstan proj role list-tokens team-a deployer\n  capstan proj role delete-token team-a deployer 1767225600"
    )]
    DeleteToken(DeleteRoleTokenArgs),
    /// List a role's tokens.
    #[command(after_help = "Examples:\n  capstan proj role list-tokens team-a deployer")]
    ListTokens(RoleListArgs),
}

/// A project whose list (roles, windows) to show.
#[derive(Debug, Args)]
pub struct ProjectArg {
    /// The project.
    pub project: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// A project role whose tokens to list.
#[derive(Debug, Args)]
pub struct RoleListArgs {
    /// The project.
    pub project: String,
    /// The role.
    pub role: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// A project role.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// The project.
    pub project: String,
    /// The role.
    pub role: String,
    /// Description (create only).
    #[arg(long)]
    pub description: Option<String>,
}

/// A role policy.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The project.
    pub project: String,
    /// The role.
    pub role: String,
    /// The action: get, create, update, delete, sync, override, action/...
    #[arg(short, long)]
    pub action: String,
    /// The application (glob) within the project.
    #[arg(short, long, default_value = "*")]
    pub object: String,
    /// allow or deny.
    #[arg(short, long, default_value = "allow", value_parser = ["allow", "deny"])]
    pub permission: String,
}

/// A role group.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// The project.
    pub project: String,
    /// The role.
    pub role: String,
    /// The SSO group.
    pub group: String,
}

/// `proj role create-token`.
#[derive(Debug, Args)]
pub struct RoleTokenArgs {
    /// The project.
    pub project: String,
    /// The role.
    pub role: String,
    /// How long the token lasts, e.g. 24h (default: forever).
    #[arg(short, long)]
    pub expires_in: Option<humantime::Duration>,
}

/// `proj role delete-token`.
#[derive(Debug, Args)]
pub struct DeleteRoleTokenArgs {
    /// The project.
    pub project: String,
    /// The role.
    pub role: String,
    /// The token's issue time (seconds since 1970).
    pub issued_at: i64,
}

/// `proj windows`.
#[derive(Debug, Subcommand)]
pub enum WindowsCommand {
    /// List a project's sync windows.
    #[command(after_help = "Examples:\n  capstan proj windows list team-a")]
    List(ProjectArg),
    /// Add a sync window.
    #[command(
        after_help = "Examples:\n  capstan proj windows add team-a --kind deny --schedule '0 22 * * *' --duration 8h --applications '*'\n  capstan proj windows add team-a --kind allow --schedule '0 9 * * 1-5' --duration 8h --namespaces 'prod-*' --manual-sync"
    )]
    Add(WindowArgs),
    /// Delete a sync window by its ID (its position in `proj windows list`).
    #[command(
        after_help = "Examples:\n  capstan proj windows list team-a\n  capstan proj windows delete team-a 0"
    )]
    Delete(WindowIdArgs),
}

/// `proj windows add`.
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// The project.
    pub project: String,
    /// allow or deny.
    #[arg(long, value_parser = ["allow", "deny"])]
    pub kind: String,
    /// When the window opens (cron).
    #[arg(long)]
    pub schedule: String,
    /// How long it stays open, e.g. 1h.
    #[arg(long)]
    pub duration: String,
    /// Applications it applies to (globs; repeatable).
    #[arg(long)]
    pub applications: Vec<String>,
    /// Namespaces it applies to (globs; repeatable).
    #[arg(long)]
    pub namespaces: Vec<String>,
    /// Clusters it applies to (globs; repeatable).
    #[arg(long)]
    pub clusters: Vec<String>,
    /// Manual syncs are allowed even while it denies.
    #[arg(long)]
    pub manual_sync: bool,
    /// The schedule's time zone, e.g. Europe/Paris (default UTC).
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
}

/// `proj windows delete`.
#[derive(Debug, Args)]
pub struct WindowIdArgs {
    /// The project.
    pub project: String,
    /// The window's ID.
    pub id: usize,
}

pub async fn run(global: &Global, command: ProjCommand) -> CliResult<()> {
    let client = global.client()?;
    match command {
        ProjCommand::Create(args) => create(&client, args).await,
        ProjCommand::Get(args) => {
            let project = client.get_project(&args.name).await?;
            match args.output {
                Format::Json | Format::Yaml => output::print_document(&project, args.output),
                _ => {
                    print!("{}", describe(&project));
                    Ok(())
                }
            }
        }
        ProjCommand::List(args) => list(&client, args).await,
        ProjCommand::Set(args) => {
            edit(&client, &args.name, |spec| {
                if let Some(description) = &args.description {
                    spec["description"] = json!(description);
                }
                if !args.sources.is_empty() {
                    spec["sourceRepos"] = json!(args.sources);
                }
                if !args.destinations.is_empty() {
                    spec["destinations"] = json!(destinations(&args.destinations)?);
                }
                Ok(())
            })
            .await
        }
        ProjCommand::Delete(args) => {
            if !args.yes && !confirm(&format!("Delete project '{}'? [y/n] ", args.name))? {
                println!("project '{}' kept", args.name);
                return Ok(());
            }
            client.delete_project(&args.name).await?;
            println!("project '{}' deleted", args.name);
            Ok(())
        }
        ProjCommand::AddSource(args) => {
            edit(&client, &args.project, |spec| {
                add_unique(&mut spec["sourceRepos"], json!(args.repo));
                Ok(())
            })
            .await
        }
        ProjCommand::RemoveSource(args) => {
            edit(&client, &args.project, |spec| {
                remove_one(&mut spec["sourceRepos"], &json!(args.repo), "source")
            })
            .await
        }
        ProjCommand::AddDestination(args) => {
            let destination = destination_of(&args);
            edit(&client, &args.project, |spec| {
                add_unique(&mut spec["destinations"], destination.clone());
                Ok(())
            })
            .await
        }
        ProjCommand::RemoveDestination(args) => {
            let destination = destination_of(&args);
            edit(&client, &args.project, |spec| {
                remove_one(&mut spec["destinations"], &destination, "destination")
            })
            .await
        }
        ProjCommand::AllowClusterResource(args) => {
            group_kind(
                &client,
                &args,
                "clusterResourceWhitelist",
                "clusterResourceBlacklist",
            )
            .await
        }
        ProjCommand::DenyClusterResource(args) => {
            group_kind(
                &client,
                &args,
                "clusterResourceBlacklist",
                "clusterResourceWhitelist",
            )
            .await
        }
        ProjCommand::AllowNamespaceResource(args) => {
            let entry = json!({ "group": args.group, "kind": args.kind });
            edit(&client, &args.project, |spec| {
                remove_if_present(&mut spec["namespaceResourceBlacklist"], &entry);
                if spec["namespaceResourceWhitelist"].is_array() {
                    add_unique(&mut spec["namespaceResourceWhitelist"], entry.clone());
                }
                Ok(())
            })
            .await
        }
        ProjCommand::DenyNamespaceResource(args) => {
            group_kind(
                &client,
                &args,
                "namespaceResourceBlacklist",
                "namespaceResourceWhitelist",
            )
            .await
        }
        ProjCommand::Role(command) => role(&client, command).await,
        ProjCommand::Windows(command) => windows(&client, command).await,
    }
}

async fn create(client: &Client, args: CreateArgs) -> CliResult<()> {
    let project = match &args.file {
        Some(file) => {
            let text = read_input(file)?;
            let project = capstan_model::parse_app_project_yaml(&text)
                .map_err(|e| CliError::usage(format!("{}: {e}", file.display())))?;
            let json = project
                .to_json()
                .map_err(|e| CliError::other(e.to_string()))?;
            let mut project: Value = serde_json::from_str(&json)?;
            crate::cmd::app::argo_cd_namespace(&mut project);
            project
        }
        None => {
            let mut spec = json!({
                "sourceRepos": args.sources,
                "destinations": destinations(&args.destinations)?,
            });
            if let Some(description) = &args.description {
                spec["description"] = json!(description);
            }
            json!({
                "apiVersion": "capstan.dev/v1alpha1",
                "kind": "AppProject",
                "metadata": { "name": args.name },
                "spec": spec,
            })
        }
    };
    let created = client.create_project(&project, args.upsert).await?;
    println!("project '{}' created", text(&created, "/metadata/name"));
    Ok(())
}

/// `SERVER,NAMESPACE` pairs.
fn destinations(pairs: &[String]) -> CliResult<Vec<Value>> {
    pairs
        .iter()
        .map(|pair| {
            let (server, namespace) = pair.split_once(',').ok_or_else(|| {
                CliError::usage(format!("--dest {pair:?}: expected SERVER,NAMESPACE"))
            })?;
            Ok(json!({ "server": server, "namespace": namespace }))
        })
        .collect()
}

fn destination_of(args: &DestinationArgs) -> Value {
    if args.name {
        json!({ "name": args.dest_server, "namespace": args.namespace })
    } else {
        json!({ "server": args.dest_server, "namespace": args.namespace })
    }
}

fn add_unique(list: &mut Value, entry: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    let items = list.as_array_mut().expect("made an array above");
    if !items.contains(&entry) {
        items.push(entry);
    }
}

fn remove_if_present(list: &mut Value, entry: &Value) -> bool {
    match list.as_array_mut() {
        Some(items) => {
            let before = items.len();
            items.retain(|i| i != entry);
            items.len() != before
        }
        None => false,
    }
}

fn remove_one(list: &mut Value, entry: &Value, what: &str) -> CliResult<()> {
    if remove_if_present(list, entry) {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::NotFound,
            format!("the project has no such {what}: {entry}"),
        ))
    }
}

async fn group_kind(
    client: &Client,
    args: &GroupKindArgs,
    add_to: &str,
    remove_from: &str,
) -> CliResult<()> {
    let entry = json!({ "group": args.group, "kind": args.kind });
    edit(client, &args.project, |spec| {
        remove_if_present(&mut spec[remove_from], &entry);
        add_unique(&mut spec[add_to], entry.clone());
        Ok(())
    })
    .await
}

/// Reads project `name`, lets `change` edit its spec, and writes it back.
async fn edit(
    client: &Client,
    name: &str,
    change: impl FnOnce(&mut Value) -> CliResult<()>,
) -> CliResult<()> {
    let mut project = client.get_project(name).await?;
    change(&mut project["spec"])?;
    if let Some(object) = project.as_object_mut() {
        object.remove("status");
    }
    client.update_project(name, &project).await?;
    println!("project '{name}' updated");
    Ok(())
}

fn describe(project: &Value) -> String {
    let list = |pointer: &str, show: &dyn Fn(&Value) -> String| -> String {
        let items: Vec<String> = project
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(show)
            .collect();
        if items.is_empty() {
            "<none>".into()
        } else {
            items.join(", ")
        }
    };
    let group_kind = |v: &Value| {
        let group = text(v, "/group");
        format!(
            "{}/{}",
            if group.is_empty() { "\"\"" } else { &group },
            text(v, "/kind")
        )
    };
    output::fields(&[
        ("Name", text(project, "/metadata/name")),
        ("Description", text(project, "/spec/description")),
        (
            "Sources",
            list("/spec/sourceRepos", &|v| {
                v.as_str().unwrap_or_default().to_owned()
            }),
        ),
        (
            "Destinations",
            list("/spec/destinations", &|v| {
                let server = text(v, "/server");
                format!(
                    "{},{}",
                    if server.is_empty() {
                        text(v, "/name")
                    } else {
                        server
                    },
                    text(v, "/namespace")
                )
            }),
        ),
        (
            "Allowed Cluster Resources",
            list("/spec/clusterResourceWhitelist", &group_kind),
        ),
        (
            "Denied Cluster Resources",
            list("/spec/clusterResourceBlacklist", &group_kind),
        ),
        (
            "Denied Namespaced Resources",
            list("/spec/namespaceResourceBlacklist", &group_kind),
        ),
        ("Roles", list("/spec/roles", &|v| text(v, "/name"))),
        (
            "Sync Windows",
            list("/spec/syncWindows", &|v| {
                format!(
                    "{} {} {}",
                    text(v, "/kind"),
                    text(v, "/schedule"),
                    text(v, "/duration")
                )
            }),
        ),
    ])
}

async fn list(client: &Client, args: ListArgs) -> CliResult<()> {
    let projects = client.list_projects().await?;
    let count = |p: &Value, pointer: &str| {
        p.pointer(pointer)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
            .to_string()
    };
    output::print_list(
        &projects,
        args.output,
        |p| text(p, "/metadata/name"),
        &[
            "NAME",
            "DESCRIPTION",
            "DESTINATIONS",
            "SOURCES",
            "ROLES",
            "WINDOWS",
        ],
        |p| {
            vec![
                text(p, "/metadata/name"),
                text(p, "/spec/description"),
                count(p, "/spec/destinations"),
                count(p, "/spec/sourceRepos"),
                count(p, "/spec/roles"),
                count(p, "/spec/syncWindows"),
            ]
        },
    )
}

/// The role named `role` in a project's spec (created when `create`).
fn role_in<'a>(spec: &'a mut Value, role: &str, create: bool) -> CliResult<&'a mut Value> {
    if !spec["roles"].is_array() {
        spec["roles"] = json!([]);
    }
    let roles = spec["roles"].as_array_mut().expect("made an array above");
    let index = match roles.iter().position(|r| r["name"] == json!(role)) {
        Some(index) => index,
        None if create => {
            roles.push(json!({ "name": role }));
            roles.len() - 1
        }
        None => {
            return Err(
                CliError::new(Exit::NotFound, format!("the project has no role {role:?}"))
                    .hint("create it with `capstan proj role create PROJECT ROLE`"),
            );
        }
    };
    Ok(&mut roles[index])
}

async fn role(client: &Client, command: RoleCommand) -> CliResult<()> {
    match command {
        RoleCommand::Create(args) => {
            edit(client, &args.project, |spec| {
                let exists = spec["roles"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["name"] == json!(args.role)));
                if exists {
                    return Err(CliError::new(
                        Exit::Conflict,
                        format!("role {:?} exists already", args.role),
                    ));
                }
                let role = role_in(spec, &args.role, true)?;
                if let Some(description) = &args.description {
                    role["description"] = json!(description);
                }
                Ok(())
            })
            .await
        }
        RoleCommand::Delete(args) => {
            edit(client, &args.project, |spec| {
                role_in(spec, &args.role, false)?;
                if let Some(roles) = spec["roles"].as_array_mut() {
                    roles.retain(|r| r["name"] != json!(args.role));
                }
                Ok(())
            })
            .await
        }
        RoleCommand::List(args) => {
            let project = client.get_project(&args.project).await?;
            if let Some(done) = as_document(&project["spec"]["roles"], args.output) {
                return done;
            }
            let mut table = Table::new(&["ROLE", "DESCRIPTION", "POLICIES", "GROUPS", "TOKENS"]);
            for r in project["spec"]["roles"].as_array().into_iter().flatten() {
                let count = |field: &str| r[field].as_array().map_or(0, Vec::len).to_string();
                table.row(vec![
                    text(r, "/name"),
                    text(r, "/description"),
                    count("policies"),
                    count("groups"),
                    count("jwtTokens"),
                ]);
            }
            table.print();
            Ok(())
        }
        RoleCommand::AddPolicy(args) => {
            let line = policy_line(&args);
            edit(client, &args.project, |spec| {
                add_unique(
                    &mut role_in(spec, &args.role, false)?["policies"],
                    json!(line),
                );
                Ok(())
            })
            .await
        }
        RoleCommand::RemovePolicy(args) => {
            let line = policy_line(&args);
            edit(client, &args.project, |spec| {
                remove_one(
                    &mut role_in(spec, &args.role, false)?["policies"],
                    &json!(line),
                    "policy",
                )
            })
            .await
        }
        RoleCommand::AddGroup(args) => {
            edit(client, &args.project, |spec| {
                add_unique(
                    &mut role_in(spec, &args.role, false)?["groups"],
                    json!(args.group),
                );
                Ok(())
            })
            .await
        }
        RoleCommand::RemoveGroup(args) => {
            edit(client, &args.project, |spec| {
                remove_one(
                    &mut role_in(spec, &args.role, false)?["groups"],
                    &json!(args.group),
                    "group",
                )
            })
            .await
        }
        RoleCommand::CreateToken(args) => {
            let seconds = output::expiry_seconds(args.expires_in);
            let token = client
                .create_project_token(&args.project, &args.role, seconds)
                .await?;
            println!("{token}");
            Ok(())
        }
        RoleCommand::DeleteToken(args) => {
            client
                .delete_project_token(&args.project, &args.role, args.issued_at, "")
                .await?;
            println!(
                "token issued at {} of role '{}' revoked",
                args.issued_at, args.role
            );
            Ok(())
        }
        RoleCommand::ListTokens(args) => {
            let project = client.get_project(&args.project).await?;
            let tokens = project["spec"]["roles"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == json!(args.role))
                .map(|r| r["jwtTokens"].clone())
                .unwrap_or(json!([]));
            if let Some(done) = as_document(&tokens, args.output) {
                return done;
            }
            let mut table = Table::new(&["ID", "ISSUED-AT", "EXPIRES-AT"]);
            for r in project["spec"]["roles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["name"] == json!(args.role))
            {
                for t in r["jwtTokens"].as_array().into_iter().flatten() {
                    table.row(vec![text(t, "/id"), text(t, "/iat"), text(t, "/exp")]);
                }
            }
            table.print();
            Ok(())
        }
    }
}

/// For `-o json|yaml`: `list` (an empty list when missing) printed as a document; `None` for
/// the other formats, which print a table.
fn as_document(list: &Value, format: Format) -> Option<CliResult<()>> {
    let list = if list.is_array() {
        list.clone()
    } else {
        json!([])
    };
    matches!(format, Format::Json | Format::Yaml).then(|| output::print_document(&list, format))
}

/// Argo CD's project role policy line.
fn policy_line(args: &PolicyArgs) -> String {
    format!(
        "p, proj:{}:{}, applications, {}, {}/{}, {}",
        args.project, args.role, args.action, args.project, args.object, args.permission
    )
}

async fn windows(client: &Client, command: WindowsCommand) -> CliResult<()> {
    match command {
        WindowsCommand::List(args) => {
            let project = client.get_project(&args.project).await?;
            if let Some(done) = as_document(&project["spec"]["syncWindows"], args.output) {
                return done;
            }
            let mut table = Table::new(&[
                "ID",
                "KIND",
                "SCHEDULE",
                "DURATION",
                "APPLICATIONS",
                "NAMESPACES",
                "CLUSTERS",
                "MANUALSYNC",
                "TIMEZONE",
            ]);
            for (i, w) in project["spec"]["syncWindows"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let join = |field: &str| {
                    w[field]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                table.row(vec![
                    i.to_string(),
                    text(w, "/kind"),
                    text(w, "/schedule"),
                    text(w, "/duration"),
                    join("applications"),
                    join("namespaces"),
                    join("clusters"),
                    if w["manualSync"] == json!(true) {
                        "Enabled".into()
                    } else {
                        "Disabled".into()
                    },
                    text(w, "/timeZone"),
                ]);
            }
            table.print();
            Ok(())
        }
        WindowsCommand::Add(args) => {
            let mut window = json!({
                "kind": args.kind, "schedule": args.schedule, "duration": args.duration,
                "applications": args.applications, "namespaces": args.namespaces, "clusters": args.clusters,
            });
            if args.manual_sync {
                window["manualSync"] = json!(true);
            }
            if let Some(zone) = &args.time_zone {
                window["timeZone"] = json!(zone);
            }
            if let Some(description) = &args.description {
                window["description"] = json!(description);
            }
            edit(client, &args.project, |spec| {
                add_unique(&mut spec["syncWindows"], window.clone());
                Ok(())
            })
            .await
        }
        WindowsCommand::Delete(args) => {
            edit(client, &args.project, |spec| {
                let windows = spec["syncWindows"]
                    .as_array_mut()
                    .filter(|w| args.id < w.len())
                    .ok_or_else(|| {
                        CliError::new(
                            Exit::NotFound,
                            format!("the project has no sync window {}", args.id),
                        )
                        .hint("IDs are listed by `capstan proj windows list PROJECT`")
                    })?;
                windows.remove(args.id);
                Ok(())
            })
            .await
        }
    }
}
