//! `capstand admin`: offline checks for users, on files, without a cluster or a running
//! Capstan (the counterpart of `argocd admin settings resource-overrides`).
//!
//! - [`health`]: the health verdict of each object in a file, with the built-in checks and
//!   the custom Lua checks of a configuration file.
//! - [`diff`]: desired manifests against live objects, with normalisation and the
//!   `ignoreDifferences` of a configuration file ([`ignore`]).
//!
//! - [`shards`]: who owns which cluster in a sharded control plane (this one reads etcd).
//!
//! `health` and `diff` read their objects through [`input`], which names the file, document and line of
//! every problem, and use the engine's own code (`capstan_engine::health`,
//! `capstan_engine::diff`), so a verdict here is the verdict the controller would give.
//! Exit status: 0 clean, 1 findings, 2 errors — like `diff(1)`. The user guide is
//! `docs/admin.md`.

mod diff;
mod health;
mod ignore;
mod input;
mod shards;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Subcommand;

/// Arguments of `capstand admin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Print the health of each object in a file, as Capstan judges it: built-in checks and
    /// your custom Lua checks.
    #[command(after_help = health::EXAMPLES)]
    Health(health::Args),
    /// Compare desired manifests with live objects, with Capstan's normalisation and your
    /// ignoreDifferences.
    #[command(after_help = diff::EXAMPLES)]
    Diff(diff::Args),
    /// Show which controller member owns which cluster (read from etcd) beside what the
    /// ring assigns, with each member's load and bound.
    #[command(after_help = shards::EXAMPLES)]
    Shards(shards::Args),
}

pub const EXAMPLES: &str = "\
Examples:
  capstand admin health live.yaml --config argocd-cm.yaml
  capstand admin diff --live live.yaml --desired desired.yaml --config argocd-cm.yaml
  capstand admin shards --etcd-endpoints http://etcd:2379 --encryption-key-file encryption.key

Exit status: 0 clean, 1 findings (differences; unhealthy objects with --fail-on-unhealthy),
2 usage or input errors. See `capstand admin <command> --help` and docs/admin.md.";

/// How a command that ran to the end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report: exit status 0.
    Clean,
    /// Differences, or unhealthy objects when asked to fail on them: exit status 1.
    Findings,
}

/// Exit status of an error (a usage or input problem), as `diff(1)` uses it.
const EXIT_ERROR: u8 = 2;

/// Runs an admin command; errors are printed on stderr and give exit status 2.
pub fn run(args: Args) -> ExitCode {
    let (name, result) = match &args.command {
        AdminCommand::Health(a) => ("health", health::run(a)),
        AdminCommand::Diff(a) => ("diff", diff::run(a)),
        AdminCommand::Shards(a) => ("shards", shards::run(a)),
    };
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            eprintln!("capstand admin {name}: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Writes the command's output to stdout. A reader that went away (`| head`) is not an
/// error: the exit status still reports the result.
fn write_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to standard output"))
        }
        _ => Ok(()),
    }
}
