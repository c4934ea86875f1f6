//! `capstand`: the Capstan server binary. Each component of the control plane is a
//! sub-command, so one binary serves every role in a deployment.

mod admin;
mod all_in_one;
mod api;
mod api_server;
mod controller;
mod discovery;
mod etcd;
mod observe;
mod owners;
mod repo_server;
mod sealing;
mod summary;
mod units;

use clap::{Parser, Subcommand};

/// Capstan's server components.
///
/// Each sub-command runs one component of the control plane. Every component logs to stderr
/// (`--log-format json` for log collectors; `RUST_LOG` filters, e.g.
/// `RUST_LOG=capstan_repo=debug`) and serves Prometheus metrics and health checks on its
/// `--metrics-listen` address (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Parser)]
#[command(name = "capstand", version, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = observe::LogFormat::Text, env = "CAPSTAN_LOG_FORMAT")]
    log_format: observe::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the repo-server: fetches Git repositories, resolves revisions and renders
    /// manifests (directory, Jsonnet, Kustomize, Helm) for the controller, over gRPC.
    #[command(after_help = repo_server::EXAMPLES)]
    RepoServer(Box<repo_server::Args>),
    /// Serve the API tier (REST, gRPC, webhooks, SSO) over the shared etcd store; run as many
    /// replicas as you like behind a load balancer: they keep no state of their own.
    #[command(after_help = api_server::EXAMPLES)]
    Api(Box<api_server::Args>),
    /// Run one member of the sharded application controller over the shared etcd store:
    /// members split the registered clusters between them (consistent hashing with bounded
    /// loads, ownership fenced in etcd) and take over a member's clusters when it goes.
    #[command(after_help = controller::EXAMPLES)]
    Controller(Box<controller::Args>),
    /// Run the whole control plane in one process — embedded store, repo-server and
    /// controller and API — managing the cluster of your kubeconfig (registered as
    /// `in-cluster`).
    #[command(after_help = all_in_one::EXAMPLES)]
    AllInOne(Box<all_in_one::Args>),
    /// Offline checks on files, for users: `admin health` judges objects with the built-in
    /// and your custom Lua health checks, `admin diff` compares desired and live objects with
    /// your ignoreDifferences. No cluster needed.
    #[command(after_help = admin::EXAMPLES)]
    Admin(admin::Args),
    /// Internal: evaluates Jsonnet for a repo-server in a process of its own.
    #[command(hide = true)]
    JsonnetEval {
        /// The request file the repo-server wrote.
        request: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::JsonnetEval { request } = &cli.command {
        // A child of the repo-server: no logging set-up, no runtime, answer on stdout.
        let code = capstan_repo::render::jsonnet_child::child_main(request);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    observe::init_logging(cli.log_format);
    let command = match cli.command {
        // One-shot and synchronous: no async runtime.
        Command::Admin(args) => return admin::run(args),
        other => other,
    };
    // 8 MiB worker stacks (tokio's default is 2 MiB): a reconcile that runs a sync through
    // the kube client nests deeply, and unoptimised builds overflowed the default.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("capstand: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::RepoServer(args) => repo_server::run(*args).await,
            Command::AllInOne(args) => all_in_one::run(*args).await,
            Command::Api(args) => api_server::run(*args).await,
            Command::Controller(args) => controller::run(*args).await,
            Command::JsonnetEval { .. } | Command::Admin(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "capstand stopped");
            eprintln!("capstand: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
