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
  9   the operation waited for failed (sync failed, app degraded)
  10  any other error

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
    /// Accept any server certificate (the connection is still encrypted).
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

    /// Where and how to reach the API: flags first, then the environment (clap reads both),
    /// then the context (`--context`, else the one for `--server`, else the current one).
    pub fn target(&self) -> CliResult<Target> {
        let config = self.load_config()?;
        let context = match (&self.context, &self.server) {
            (Some(name), _) => Some(config.context(name).cloned().ok_or_else(|| {
                CliError::usage(format!("no context {name:?}"))
                    .hint("list contexts with `capstan context`")
            })?),
            (None, Some(server)) => config.for_server(server).cloned(),
            (None, None) => config.current().cloned(),
        };
        let context = context.unwrap_or_default();
        let server = self
            .server
            .clone()
            .unwrap_or_else(|| context.server.clone());
        let same_server =
            self.server.is_none() || context.server == server || context.name == server;
        let token = self
            .auth_token
            .clone()
            .or_else(|| same_server.then(|| context.auth_token.clone()));
        let server_ca = self
            .server_ca
            .clone()
            .or_else(|| (!context.server_ca.is_empty()).then(|| PathBuf::from(&context.server_ca)));
        Ok(Target {
            server: if server.is_empty() {
                String::new()
            } else {
                server
            },
            token,
            plaintext: self.plaintext || (same_server && context.plaintext),
            tls: TlsOptions {
                ca_pem: server_ca.map(|path| read_ca(&path)).transpose()?,
                insecure: self.insecure || (same_server && context.insecure),
                identity: None,
            },
            rest: self.rest || (same_server && context.rest),
        })
    }

    /// A client for the target.
    pub fn client(&self) -> CliResult<Client> {
        Client::new(&self.target()?)
    }
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
    match runtime.block_on(cmd::run(cli.global, cli.command)) {
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
