//! `login`, `logout`, `context`, `version`, `completion`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use serde_json::json;

use crate::client::{Client, Target};
use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::output::{self, Format, Table};
use crate::tls::TlsOptions;
use crate::{Global, read_ca};

pub const LOGIN_EXAMPLES: &str = "\
Examples:
  # The all-in-one (its CA is in DATA/tls/ca.crt; the admin password in DATA/initial-admin-password)
  capstan login localhost:8080 --server-ca .capstan/data/tls/ca.crt --username admin
  # Single sign-on through the browser
  capstan login capstan.example.com --sso
  # An API token (from `capstan account generate-token`), e.g. in CI
  capstan login capstan.example.com --token \"$TOKEN\" --name ci
  # A password from a script
  echo \"$PASSWORD\" | capstan login localhost:8080 --username admin --password-stdin";

pub const CONTEXT_EXAMPLES: &str = "\
Examples:
  capstan context               # list contexts; * marks the current one
  capstan context prod          # switch to context prod
  capstan context --delete old  # forget context old";

pub const COMPLETION_EXAMPLES: &str = "\
Examples:
  capstan completion bash > /etc/bash_completion.d/capstan
  capstan completion zsh > \"${fpath[1]}/_capstan\"
  capstan completion fish > ~/.config/fish/completions/capstan.fish";

/// `capstan login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server: host:port or URL.
    #[arg(value_name = "SERVER")]
    pub address: String,
    /// The account to log in as (asked for when missing on a terminal).
    #[arg(long)]
    pub username: Option<String>,
    /// The password (asked for without echo when missing; prefer --password-stdin in scripts:
    /// a flag shows in the process list).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Log in through the SSO provider in a browser.
    #[arg(long, conflicts_with_all = ["username", "password", "password_stdin", "token"])]
    pub sso: bool,
    /// The local port the browser returns to after SSO (the provider must allow
    /// http://localhost:PORT/auth/callback).
    #[arg(long, default_value_t = 8085)]
    pub sso_port: u16,
    /// Store this token (a session or API token) instead of logging in.
    #[arg(long, conflicts_with_all = ["username", "password", "password_stdin"])]
    pub token: Option<String>,
    /// The context's name (default: the server's address).
    #[arg(long)]
    pub name: Option<String>,
}

/// `capstan logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The context to log out of (default: the current one).
    #[arg(value_name = "CONTEXT")]
    pub name: Option<String>,
}

/// `capstan context`.
#[derive(Debug, Args)]
pub struct ContextArgs {
    /// The context to switch to; none: list them.
    pub name: Option<String>,
    /// Forget this context.
    #[arg(long, value_name = "NAME", conflicts_with = "name")]
    pub delete: Option<String>,
    /// Output format of the list.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `capstan version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the CLI's version (no server needed).
    #[arg(long)]
    pub client: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `capstan completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: Shell,
}

pub async fn login(global: &Global, args: LoginArgs) -> CliResult<()> {
    let server_ca = global.server_ca.clone();
    let target = Target {
        server: args.address.clone(),
        token: None,
        plaintext: global.plaintext,
        tls: TlsOptions {
            ca_pem: server_ca.as_deref().map(read_ca).transpose()?,
            insecure: global.insecure,
            identity: None,
        },
        rest: global.rest,
    };
    let anonymous = Client::new(&target)?;
    let (token, how) = if let Some(token) = &args.token {
        (crate::checked_token(token, "--token")?, "with a token")
    } else if args.sso {
        let settings = anonymous.settings().await?;
        let id_token = crate::sso::sign_in(&settings, args.sso_port, &target.tls).await?;
        (anonymous.exchange_id_token(&id_token).await?, "by SSO")
    } else {
        let username = match args.username.clone() {
            Some(username) => username,
            None => crate::prompt::line("Username: ", "--username")?,
        };
        let password = match (args.password.clone(), args.password_stdin) {
            (Some(password), _) => password,
            (None, true) => crate::prompt::stdin_line("password")?,
            (None, false) => crate::prompt::password(&format!("Password for {username}: "))?,
        };
        let token = anonymous.login(&username, &password).await.map_err(|e| {
            if e.exit == Exit::Unauthenticated {
                e.hint("check the username and password")
            } else {
                e
            }
        })?;
        (token, "")
    };
    let client = Client::new(&Target {
        token: Some(token.clone()),
        ..target.clone()
    })?;
    let info = client.user_info().await?;
    let user = output::text(&info, "/username");
    let name = args.name.clone().unwrap_or_else(|| args.address.clone());
    let path = global.config_path()?;
    let mut config = crate::config::Config::load(&path)?;
    config.upsert(Context {
        name: name.clone(),
        server: args.address.clone(),
        user: user.clone(),
        auth_token: token,
        insecure: global.insecure,
        plaintext: global.plaintext,
        server_ca: server_ca
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        rest: client.uses_rest(),
    });
    config.save(&path)?;
    let how = if how.is_empty() {
        String::new()
    } else {
        format!(" {how}")
    };
    println!(
        "'{user}' logged in{how} to {} (context '{name}')",
        client.base_url()
    );
    Ok(())
}

pub async fn logout(global: &Global, args: LogoutArgs) -> CliResult<()> {
    let path = global.config_path()?;
    let mut config = crate::config::Config::load(&path)?;
    let name = args
        .name
        .clone()
        .or_else(|| global.context.clone())
        .unwrap_or_else(|| config.current_context.clone());
    let Some(context) = config.context(&name).cloned() else {
        return Err(
            CliError::new(Exit::NotFound, format!("no context {name:?}"))
                .hint("list contexts with `capstan context`"),
        );
    };
    if context.auth_token.is_empty() {
        println!("not logged in to '{name}'");
        return Ok(());
    }
    let scoped = Global {
        context: Some(name.clone()),
        server: None,
        auth_token: None,
        ..global.clone()
    };
    // Revoke on the server; forget the token locally even when the server is gone (or the
    // context's CA file is).
    let revoked = match scoped.client() {
        Ok(client) => client.logout().await,
        Err(error) => Err(error),
    };
    if let Err(error) = revoked {
        eprintln!("capstan: the server did not revoke the session: {error}");
    }
    if let Some(c) = config.contexts.iter_mut().find(|c| c.name == name) {
        c.auth_token.clear();
    }
    config.save(&path)?;
    println!("logged out of '{name}'");
    Ok(())
}

pub fn context(global: &Global, args: ContextArgs) -> CliResult<()> {
    let path = global.config_path()?;
    let mut config = crate::config::Config::load(&path)?;
    if let Some(name) = args.delete {
        let before = config.contexts.len();
        config.contexts.retain(|c| c.name != name);
        if config.contexts.len() == before {
            return Err(CliError::new(
                Exit::NotFound,
                format!("no context {name:?}"),
            ));
        }
        if config.current_context == name {
            config.current_context.clear();
        }
        config.save(&path)?;
        println!("context '{name}' deleted");
        return Ok(());
    }
    if let Some(name) = args.name {
        if config.context(&name).is_none() {
            return Err(
                CliError::new(Exit::NotFound, format!("no context {name:?}"))
                    .hint("log in to create it: `capstan login SERVER --name NAME`"),
            );
        }
        config.current_context.clone_from(&name);
        config.save(&path)?;
        println!("switched to context '{name}'");
        return Ok(());
    }
    match args.output {
        Format::Json | Format::Yaml => {
            // Tokens stay out of printed output.
            let contexts: Vec<_> = config
                .contexts
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name, "server": c.server, "user": c.user,
                        "current": c.name == config.current_context,
                        "loggedIn": !c.auth_token.is_empty(),
                    })
                })
                .collect();
            output::print_document(&json!(contexts), args.output)
        }
        Format::Name => {
            for c in &config.contexts {
                println!("{}", c.name);
            }
            Ok(())
        }
        Format::Table | Format::Wide => {
            let mut table = Table::new(&["CURRENT", "NAME", "SERVER", "USER"]);
            for c in &config.contexts {
                let current = if c.name == config.current_context {
                    "*"
                } else {
                    ""
                };
                table.row(vec![
                    current.into(),
                    c.name.clone(),
                    c.server.clone(),
                    c.user.clone(),
                ]);
            }
            table.print();
            Ok(())
        }
    }
}

pub async fn version(global: &Global, args: VersionArgs) -> CliResult<()> {
    let mut versions = json!({ "client": { "Version": env!("CARGO_PKG_VERSION") } });
    if !args.client {
        versions["server"] = global.client()?.version().await?;
    }
    match args.output {
        Format::Json | Format::Yaml => output::print_document(&versions, args.output),
        _ => {
            println!("capstan: {}", env!("CARGO_PKG_VERSION"));
            if let Some(server) = versions.get("server") {
                println!(
                    "server: {} ({})",
                    output::text(server, "/Version"),
                    output::text(server, "/Platform")
                );
            }
            Ok(())
        }
    }
}

pub fn completion(args: CompletionArgs) -> CliResult<()> {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "capstan", &mut std::io::stdout());
    Ok(())
}
