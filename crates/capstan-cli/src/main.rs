//! `capstan`: the command line for Capstan. See `capstan --help`, and `docs/cli.md`.
//!
//! It talks to the API over gRPC (REST where a proxy blocks gRPC) and links none of the
//! server, Git or Kubernetes machinery: `cluster add` speaks to the kube-apiserver with a
//! few plain HTTPS calls, and `app diff --local` renders with the `kustomize` and `helm`
//! binaries on the PATH.

mod client;
mod cmd;
mod config;
mod error;
mod http;
mod kube;
mod local;
mod output;
mod progress;
mod prompt;
mod sso;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};

use crate::client::{Client, Target};
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::tls::TlsOptions;

/// The exit codes, in `capstan --help`.
const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   `app diff`: differences found
  2   bad flags, arguments or input files
  3   not logged in, session expired, or wrong credentials
  4   permission denied
  5   not found
  6   already exists, or changed meanwhile
  7   server unreachable or not ready
  8   timed out (`app wait`, `app sync`)
  9   the operation waited for failed (a sync or rollback)
  10  any other error
  130 interrupted (Ctrl-C)

Environment:
  CAPSTAN_SERVER      the server, instead of the current context's
  CAPSTAN_AUTH_TOKEN  a token (session or API token), instead of the context's
  CAPSTAN_CONTEXT     the context to use
  CAPSTAN_CONFIG      the configuration file (default: $XDG_CONFIG_HOME/capstan/config)
  NO_COLOR            no colours in diffs

Get started:
  capstan login localhost:8080 --server-ca ca.crt
  capstan app list
  capstan app get guestbook";

/// Capstan's command line: log in, then manage Applications, projects, repositories and
/// clusters. Every command takes -h for its flags and examples.
#[derive(Debug, Parser)]
#[command(name = "capstan", version, after_long_help = EXIT_CODES, after_help = "Exit codes and environment variables: capstan --help")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: cmd::Command,
}

/// Flags every command takes.
#[derive(Clone, Debug, Default, Args)]
pub struct Global {
    /// The API server (host:port or URL) instead of the current context's.
    #[arg(long, global = true, env = "CAPSTAN_SERVER", value_name = "ADDRESS")]
    pub server: Option<String>,
    /// A session or API token instead of the context's.
    #[arg(
        long,
        global = true,
        env = "CAPSTAN_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub auth_token: Option<String>,
    /// The context to use instead of the current one.
    #[arg(long, global = true, env = "CAPSTAN_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// The configuration file.
    #[arg(long, global = true, env = "CAPSTAN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Accept any server certificate (the connection is still encrypted); with `login --sso`,
    /// the SSO provider's too.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Speak plain HTTP, without TLS (servers started with --insecure).
    #[arg(long, global = true)]
    pub plaintext: bool,
    /// Trust the CA in this PEM file for the server's certificate (the all-in-one writes
    /// its CA to DATA/tls/ca.crt).
    #[arg(long, global = true, value_name = "FILE")]
    pub server_ca: Option<PathBuf>,
    /// Use REST instead of gRPC (when a proxy on the way blocks gRPC; found out by itself
    /// otherwise).
    #[arg(long, global = true)]
    pub rest: bool,
}

impl Global {
    /// The configuration file's path.
    pub fn config_path(&self) -> CliResult<PathBuf> {
        match &self.config {
            Some(path) => Ok(path.clone()),
            None => config::default_path(),
        }
    }

    /// The configuration.
    pub fn load_config(&self) -> CliResult<Config> {
        Config::load(&self.config_path()?)
    }

    /// Where and how to reach the API. The context is `--context` (its server wins), else
    /// the one `--server` names (by name or address; its address is used), else the current
    /// one. A context's token and connection settings go only to its own server; flags and
    /// `CAPSTAN_*` variables come on top.
    pub fn target(&self) -> CliResult<Target> {
        let config = self.load_config()?;
        let (context, server) = match (&self.context, &self.server) {
            (Some(name), _) => {
                let context = config.context(name).cloned().ok_or_else(|| {
                    CliError::usage(format!("no context {name:?}"))
                        .hint("list contexts with `capstan context`")
                })?;
                let server = context.server.clone();
                (context, server)
            }
            (None, Some(server)) => match config.for_server(server) {
                Some(context) => (context.clone(), context.server.clone()),
                None => (Default::default(), server.clone()),
            },
            (None, None) => {
                let context = config.current().cloned().unwrap_or_default();
                let server = context.server.clone();
                (context, server)
            }
        };
        let own = !context.server.is_empty() && context.server == server;
        let token = match &self.auth_token {
            Some(token) => Some(checked_token(token, "--auth-token or CAPSTAN_AUTH_TOKEN")?),
            None if own && !context.auth_token.is_empty() => Some(checked_token(
                &context.auth_token,
                &format!("context {:?}", context.name),
            )?),
            None => None,
        };
        let server_ca = self.server_ca.clone().or_else(|| {
            (own && !context.server_ca.is_empty()).then(|| PathBuf::from(&context.server_ca))
        });
        Ok(Target {
            server,
            token,
            plaintext: self.plaintext || (own && context.plaintext),
            tls: TlsOptions {
                ca_pem: server_ca.map(|path| read_ca(&path)).transpose()?,
                insecure: self.insecure || (own && context.insecure),
                identity: None,
            },
            rest: self.rest || (own && context.rest),
        })
    }

    /// A client for the target.
    pub fn client(&self) -> CliResult<Client> {
        Client::new(&self.target()?)
    }
}

/// A token, trimmed (a newline from a YAML block or `echo` is common); one that could not be
/// sent in a header is refused, naming where it came from (never the token itself).
pub fn checked_token(token: &str, from: &str) -> CliResult<String> {
    let token = token.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::usage(format!(
            "the token from {from} is not a token (it is empty or has spaces or control characters)"
        )));
    }
    Ok(token.to_owned())
}

/// How files holding secrets (the config, kubeconfigs) are parsed: errors give the line and
/// column but no snippet of the text around them, which could hold a token or a key.
pub fn secret_yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options.crop_radius = 0;
    options
}

/// A CA file's PEM.
pub fn read_ca(path: &std::path::Path) -> CliResult<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| CliError::usage(format!("cannot read the CA file {}: {e}", path.display())))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("capstan: cannot start: {e}");
            return ExitCode::from(error::Exit::Other as u8);
        }
    };
    let outcome = runtime.block_on(async {
        // Ctrl-C ends the command with 130 (as shells report it), after putting back the
        // terminal if a password prompt had turned echo off. The handler is in place before
        // the command starts (signal() registers at once; ctrl_c() only when first polled).
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
            Ok(mut interrupt) => {
                tokio::spawn(async move {
                    if interrupt.recv().await.is_some() {
                        prompt::restore_terminal();
                        eprintln!();
                        std::process::exit(130);
                    }
                });
            }
            Err(e) => eprintln!("capstan: Ctrl-C will not restore the terminal: {e}"),
        }
        cmd::run(cli.global, cli.command).await
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("capstan: {error}");
            ExitCode::from(error.exit as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn global_with(config: &config::Config, dir: &std::path::Path) -> CliResult<Global> {
        let path = dir.join("config");
        config.save(&path)?;
        Ok(Global {
            config: Some(path),
            ..Global::default()
        })
    }

    #[test]
    fn a_context_token_goes_only_to_its_own_server() -> CliResult<()> {
        let dir = tempfile::tempdir()?;
        let mut config = config::Config::default();
        config.upsert(config::Context {
            name: "ci".into(),
            server: "capstan.example:443".into(),
            auth_token: "ci-token".into(),
            insecure: true,
            ..Default::default()
        });
        let global = global_with(&config, dir.path())?;
        // --server naming the context: its address, its token.
        let by_name = Global {
            server: Some("ci".into()),
            ..global.clone()
        }
        .target()?;
        assert_eq!(by_name.server, "capstan.example:443");
        assert_eq!(by_name.token.as_deref(), Some("ci-token"));
        assert!(by_name.tls.insecure);
        // Another server: nothing of the context's.
        let other = Global {
            server: Some("evil.example:443".into()),
            ..global.clone()
        }
        .target()?;
        assert_eq!(other.token, None);
        assert!(!other.tls.insecure);
        // --context wins over a server from the environment.
        let context = Global {
            context: Some("ci".into()),
            server: Some("evil.example:443".into()),
            ..global
        }
        .target()?;
        assert_eq!(context.server, "capstan.example:443");
        Ok(())
    }

    #[test]
    fn tokens_are_trimmed_and_bad_ones_named_not_shown() {
        assert_eq!(
            checked_token(" abc.def\n", "x").ok().as_deref(),
            Some("abc.def")
        );
        let bad = checked_token("secret part\u{7}", "--auth-token").expect_err("refused");
        assert!(bad.message.contains("--auth-token"), "{bad}");
        assert!(!bad.message.contains("secret"), "{bad}");
    }

    /// `--help` is enough to use a command without the docs: every command shows examples.
    #[test]
    fn every_command_has_examples() {
        use clap::CommandFactory;
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let subcommands: Vec<&clap::Command> = command.get_subcommands().collect();
            if subcommands.is_empty() {
                let help = command
                    .get_after_help()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                if !help.contains("Examples:") {
                    missing.push(path.to_owned());
                }
            }
            for sub in subcommands {
                check(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        for sub in Cli::command().get_subcommands() {
            check(sub, sub.get_name(), &mut missing);
        }
        assert!(missing.is_empty(), "no examples: {missing:#?}");
    }

    /// A command's own argument with a global flag's id would silently set the global flag
    /// too (clap shares ids): `proj add-destination P SERVER NS` would change the server
    /// the CLI talks to.
    #[test]
    fn no_argument_shadows_a_global_flag() {
        use clap::CommandFactory;
        fn check(command: &clap::Command, globals: &[String], path: &str) {
            for arg in command.get_arguments().filter(|a| !a.is_global_set()) {
                let id = arg.get_id().as_str().to_owned();
                assert!(
                    !globals.contains(&id),
                    "{path} has an argument `{id}` shadowing a global flag"
                );
            }
            for sub in command.get_subcommands() {
                check(sub, globals, &format!("{path} {}", sub.get_name()));
            }
        }
        let root = Cli::command();
        let globals: Vec<String> = root
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().as_str().to_owned())
            .collect();
        assert!(globals.contains(&"server".to_owned()), "{globals:?}");
        for sub in root.get_subcommands() {
            check(sub, &globals, sub.get_name());
        }
    }
}
