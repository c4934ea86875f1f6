//! The commands: one module per group, each with its clap definitions beside the code that
//! runs them.

pub mod account;
pub mod app;
pub mod cluster;
pub mod proj;
pub mod repo;
pub mod session;

use std::process::ExitCode;

use clap::Subcommand;

use crate::Global;
use crate::error::CliResult;

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to a Capstan server (password, --sso or --token) and make it the current context.
    #[command(after_help = session::LOGIN_EXAMPLES)]
    Login(session::LoginArgs),
    /// Log out: revoke the session and forget its token.
    #[command(after_help = "Examples:\n  capstan logout\n  capstan logout prod")]
    Logout(session::LogoutArgs),
    /// List contexts, or switch to one.
    #[command(after_help = session::CONTEXT_EXAMPLES)]
    Context(session::ContextArgs),
    /// Manage Applications.
    #[command(subcommand)]
    App(Box<app::AppCommand>),
    /// Manage projects.
    #[command(subcommand)]
    Proj(proj::ProjCommand),
    /// Manage Git and Helm repositories.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Manage clusters Applications deploy to.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Manage accounts: passwords, API tokens, permissions.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Print the CLI's and the server's versions.
    #[command(
        after_help = "Examples:\n  capstan version\n  capstan version --client\n  capstan version -o json"
    )]
    Version(session::VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = session::COMPLETION_EXAMPLES)]
    Completion(session::CompletionArgs),
}

/// Runs `command`; the exit code on success (`app diff` exits 1 when it finds differences).
pub async fn run(global: Global, command: Command) -> CliResult<ExitCode> {
    match command {
        Command::Login(args) => session::login(&global, args).await,
        Command::Logout(args) => session::logout(&global, args).await,
        Command::Context(args) => session::context(&global, args),
        Command::App(command) => app::run(&global, *command).await,
        Command::Proj(command) => proj::run(&global, command).await,
        Command::Repo(command) => repo::run(&global, command).await,
        Command::Cluster(command) => cluster::run(&global, command).await,
        Command::Account(command) => account::run(&global, command).await,
        Command::Version(args) => session::version(&global, args).await,
        Command::Completion(args) => session::completion(args),
    }
    .map(|()| ExitCode::SUCCESS)
    .or_else(|error| match error.exit {
        // `app diff` reports differences through its exit code, not as an error.
        crate::error::Exit::Differences if error.message.is_empty() => Ok(ExitCode::from(1)),
        _ => Err(error),
    })
}
