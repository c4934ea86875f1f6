//! `capstan account ...`: passwords, API tokens and permission checks.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::Global;
use crate::error::{CliError, CliResult};
use crate::output::{self, Format, Table, text};

/// `capstan account`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// List accounts.
    #[command(after_help = "Examples:\n  capstan account list")]
    List(ListArgs),
    /// Show an account and its tokens (default: your own).
    #[command(
        after_help = "Examples:\n  capstan account get\n  capstan account get --account ci -o json"
    )]
    Get(GetArgs),
    /// Change a password (your own, or --account's as an admin); asked for without echo.
    #[command(
        after_help = "Examples:\n  capstan account update-password\n  capstan account update-password --account ci"
    )]
    UpdatePassword(PasswordArgs),
    /// Create an API token for an account (printed once: keep it).
    #[command(
        after_help = "Examples:\n  capstan account generate-token --account ci --expires-in 720h"
    )]
    GenerateToken(TokenArgs),
    /// Revoke an API token.
    #[command(
        after_help = "Examples:\n  capstan account get --account ci\n  capstan account delete-token 2f1c7a --account ci"
    )]
    DeleteToken(DeleteTokenArgs),
    /// Check whether you may do something: prints yes or no (exit 0 either way).
    #[command(
        after_help = "Examples:\n  capstan account can-i sync applications 'default/*'\n  capstan account can-i create clusters '*'"
    )]
    CanI(CanIArgs),
}

/// `account list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `account get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The account (default: your own).
    #[arg(short, long)]
    pub account: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `account update-password`.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// The account (default: your own).
    #[arg(long)]
    pub account: Option<String>,
    /// Your current password (asked for when missing).
    #[arg(long)]
    pub current_password: Option<String>,
    /// The new password (asked for twice when missing).
    #[arg(long)]
    pub new_password: Option<String>,
}

/// `account generate-token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The account (default: your own).
    #[arg(short, long)]
    pub account: Option<String>,
    /// How long the token lasts, e.g. 24h, 30d (default: forever).
    #[arg(short, long)]
    pub expires_in: Option<humantime::Duration>,
    /// The token's id (default: generated).
    #[arg(long)]
    pub id: Option<String>,
}

/// `account delete-token`.
#[derive(Debug, Args)]
pub struct DeleteTokenArgs {
    /// The token's id.
    pub id: String,
    /// The account (default: your own).
    #[arg(short, long)]
    pub account: Option<String>,
}

/// `account can-i`.
#[derive(Debug, Args)]
pub struct CanIArgs {
    /// The action: get, create, update, delete, sync, override, action/..., ...
    pub action: String,
    /// The resource: applications, projects, clusters, repositories, accounts, ...
    pub resource: String,
    /// The object, e.g. PROJECT/APP for applications, or '*'.
    pub object: String,
}

pub async fn run(global: &Global, command: AccountCommand) -> CliResult<()> {
    let client = global.client()?;
    // The account a command names, else the caller's own.
    let account_or_me = async |account: Option<String>| -> CliResult<String> {
        match account {
            Some(name) => Ok(name),
            None => Ok(text(&client.user_info().await?, "/username")),
        }
    };
    match command {
        AccountCommand::List(args) => {
            let accounts = client.list_accounts().await?;
            output::print_list(
                &accounts,
                args.output,
                |a| text(a, "/name"),
                &["NAME", "ENABLED", "CAPABILITIES"],
                |a| {
                    let capabilities: Vec<&str> = a["capabilities"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    vec![
                        text(a, "/name"),
                        text(a, "/enabled"),
                        capabilities.join(", "),
                    ]
                },
            )
        }
        AccountCommand::Get(args) => {
            let name = account_or_me(args.account).await?;
            let account = client.get_account(&name).await?;
            match args.output {
                Format::Json | Format::Yaml => output::print_document(&account, args.output),
                _ => {
                    print!(
                        "{}",
                        output::fields(&[
                            ("Name", text(&account, "/name")),
                            ("Enabled", text(&account, "/enabled"))
                        ])
                    );
                    let tokens = account["tokens"].as_array().cloned().unwrap_or_default();
                    if !tokens.is_empty() {
                        println!();
                        let mut table = Table::new(&["ID", "ISSUED AT", "EXPIRES AT"]);
                        for t in &tokens {
                            table.row(vec![
                                text(t, "/id"),
                                text(t, "/issuedAt"),
                                text(t, "/expiresAt"),
                            ]);
                        }
                        table.print();
                    }
                    Ok(())
                }
            }
        }
        AccountCommand::UpdatePassword(args) => {
            let name = args.account.clone().unwrap_or_default();
            let current = match args.current_password {
                Some(p) => p,
                None => prompt("Current password (yours): ")?,
            };
            let new = match args.new_password {
                Some(p) => p,
                None => {
                    let first = prompt("New password: ")?;
                    if prompt("New password again: ")? != first {
                        return Err(CliError::usage("the new passwords differ"));
                    }
                    first
                }
            };
            client.update_password(&name, &current, &new).await?;
            println!(
                "password updated{}",
                if name.is_empty() {
                    String::new()
                } else {
                    format!(" for '{name}'")
                }
            );
            Ok(())
        }
        AccountCommand::GenerateToken(args) => {
            let name = account_or_me(args.account).await?;
            let seconds = output::expiry_seconds(args.expires_in);
            let token = client
                .create_account_token(&name, seconds, args.id.as_deref().unwrap_or_default())
                .await?;
            println!("{token}");
            Ok(())
        }
        AccountCommand::DeleteToken(args) => {
            let name = account_or_me(args.account).await?;
            client.delete_account_token(&name, &args.id).await?;
            println!("token '{}' of '{name}' revoked", args.id);
            Ok(())
        }
        AccountCommand::CanI(args) => {
            let answer = client
                .can_i(&args.action, &args.resource, &args.object)
                .await?;
            println!("{answer}");
            Ok(())
        }
    }
}

fn prompt(question: &str) -> CliResult<String> {
    crate::prompt::password(question)
        .map_err(|e| e.hint("pass --current-password and --new-password"))
}
