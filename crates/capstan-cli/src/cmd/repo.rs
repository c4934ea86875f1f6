//! `capstan repo ...`: Git and Helm repositories and their credentials. Credentials come from
//! flags, files or stdin, are prompted for without echo, and are never printed: the server
//! does not send them back.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::Global;
use crate::cmd::app::{confirm, read_input};
use crate::error::CliResult;
use crate::output::{self, Format, or, text};

/// `capstan repo`.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Register a repository (its connection is tested first).
    #[command(
        after_help = "Examples:\n  capstan repo add https://github.com/argoproj/argocd-example-apps.git\n  capstan repo add https://git.example.com/team/apps.git --username ci --password-stdin < token.txt\n  capstan repo add git@github.com:team/apps.git --ssh-private-key-path ~/.ssh/id_ed25519\n  capstan repo add https://charts.example.com --type helm --name example"
    )]
    Add(AddArgs),
    /// List repositories with their connection state.
    #[command(after_help = "Examples:\n  capstan repo list\n  capstan repo list -o json")]
    List(ListArgs),
    /// Show a repository.
    #[command(
        after_help = "Examples:\n  capstan repo get https://git.example.com/team/apps.git --refresh"
    )]
    Get(GetArgs),
    /// Remove a repository.
    #[command(
        after_help = "Examples:\n  capstan repo rm https://git.example.com/team/apps.git --yes"
    )]
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// `repo add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The repository URL (https://, ssh:// or git@host:path).
    pub url: String,
    /// `git` (default) or `helm`.
    #[arg(long = "type", value_parser = ["git", "helm"])]
    pub repo_type: Option<String>,
    /// A name (Helm repositories are referred to by it).
    #[arg(long)]
    pub name: Option<String>,
    /// Only this project may use the repository (and these credentials).
    #[arg(long)]
    pub project: Option<String>,
    /// User name for HTTPS.
    #[arg(long)]
    pub username: Option<String>,
    /// Password or token for HTTPS (asked for without echo when --username is given on a
    /// terminal; prefer --password-stdin in scripts).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// A bearer token file for HTTPS (Bitbucket Data Center access tokens).
    #[arg(long, value_name = "FILE")]
    pub bearer_token_path: Option<PathBuf>,
    /// The SSH private key file.
    #[arg(long, value_name = "FILE")]
    pub ssh_private_key_path: Option<PathBuf>,
    /// Do not check the SSH host key or the HTTPS certificate.
    #[arg(long)]
    pub insecure_skip_server_verification: bool,
    /// A TLS client certificate file.
    #[arg(long, value_name = "FILE", requires = "tls_client_cert_key_path")]
    pub tls_client_cert_path: Option<PathBuf>,
    /// Its key file.
    #[arg(long, value_name = "FILE", requires = "tls_client_cert_path")]
    pub tls_client_cert_key_path: Option<PathBuf>,
    /// Helm: the repository is an OCI registry.
    #[arg(long)]
    pub enable_oci: bool,
    /// Replace a repository registered for the same URL and project.
    #[arg(long)]
    pub upsert: bool,
}

/// `repo list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `repo get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The repository URL.
    pub url: String,
    /// The project it is registered for.
    #[arg(long, default_value = "")]
    pub project: String,
    /// Test the connection now.
    #[arg(long)]
    pub refresh: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `repo rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The repository URL.
    pub url: String,
    /// The project it is registered for.
    #[arg(long, default_value = "")]
    pub project: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

pub async fn run(global: &Global, command: RepoCommand) -> CliResult<()> {
    let client = global.client()?;
    match command {
        RepoCommand::Add(args) => {
            let repository = repository(&args)?;
            let created = client.create_repo(&repository, args.upsert).await?;
            println!("repository '{}' added", text(&created, "/spec/url"));
            Ok(())
        }
        RepoCommand::List(args) => {
            let repos = client.list_repos().await?;
            output::print_list(
                &repos,
                args.output,
                |r| text(r, "/spec/url"),
                &["TYPE", "NAME", "REPO", "PROJECT", "STATUS", "MESSAGE"],
                |r| {
                    vec![
                        or(text(r, "/spec/type"), "git"),
                        text(r, "/spec/name"),
                        text(r, "/spec/url"),
                        text(r, "/spec/project"),
                        text(r, "/status/connectionState/status"),
                        text(r, "/status/connectionState/message"),
                    ]
                },
            )
        }
        RepoCommand::Get(args) => {
            let repo = client
                .get_repo(&args.url, &args.project, args.refresh)
                .await?;
            match args.output {
                Format::Json | Format::Yaml => output::print_document(&repo, args.output),
                _ => {
                    print!(
                        "{}",
                        output::fields(&[
                            ("Repo", text(&repo, "/spec/url")),
                            ("Type", or(text(&repo, "/spec/type"), "git")),
                            ("Name", text(&repo, "/spec/name")),
                            ("Project", text(&repo, "/spec/project")),
                            ("Username", text(&repo, "/spec/username")),
                            ("Status", text(&repo, "/status/connectionState/status")),
                            ("Message", text(&repo, "/status/connectionState/message")),
                        ])
                    );
                    Ok(())
                }
            }
        }
        RepoCommand::Rm(args) => {
            if !args.yes && !confirm(&format!("Remove repository '{}'? [y/n] ", args.url))? {
                println!("repository '{}' kept", args.url);
                return Ok(());
            }
            client.delete_repo(&args.url, &args.project).await?;
            println!("repository '{}' removed", args.url);
            Ok(())
        }
    }
}

/// The Repository to register, credentials read from where the flags say.
fn repository(args: &AddArgs) -> CliResult<serde_json::Value> {
    let mut spec = json!({ "url": args.url });
    let mut set = |field: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            spec[field] = json!(value);
        }
    };
    set("type", args.repo_type.clone());
    set("name", args.name.clone());
    set("project", args.project.clone());
    set("username", args.username.clone());
    let password = match (&args.password, args.password_stdin) {
        (Some(password), _) => Some(password.clone()),
        (None, true) => Some(crate::prompt::stdin_line("password")?),
        (None, false) if args.username.is_some() && std::io::stdin().is_terminal() => {
            Some(crate::prompt::password("Password: ")?)
        }
        (None, false) => None,
    };
    set("password", password);
    let file = |path: &Option<PathBuf>| -> CliResult<Option<String>> {
        path.as_deref().map(read_input).transpose()
    };
    set(
        "bearerToken",
        file(&args.bearer_token_path)?.map(|t| t.trim().to_owned()),
    );
    set("sshPrivateKey", file(&args.ssh_private_key_path)?);
    set("tlsClientCertData", file(&args.tls_client_cert_path)?);
    set("tlsClientCertKey", file(&args.tls_client_cert_key_path)?);
    if args.insecure_skip_server_verification {
        spec["insecure"] = json!(true);
        spec["insecureIgnoreHostKey"] = json!(true);
    }
    if args.enable_oci {
        spec["enableOCI"] = json!(true);
    }
    Ok(json!({
        "apiVersion": "capstan.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {},
        "spec": spec,
    }))
}
