//! Capstan's benchmark entry point: `cargo run --release -p capstan-bench -- SCENARIO [--quick]`.
//!
//! Every scenario prints its results on standard output, one per line, exactly as
//! `figure NAME VALUE UNIT`; progress and diagnostics go to standard error, so
//! `… | grep ^figure` is the machine-readable result. Each figure is measured against a
//! baseline in the same run (the tool run directly, the parser alone, `git` itself), so the
//! ratios carry over between machines better than the absolute numbers do. Results and how
//! to read them: `docs/performance.md`.
//!
//! Scenarios live in their own modules (start reading at [`repo::run`]; [`engine::run`] and
//! [`controller::run`] need a kube-apiserver, which the testkit starts); the helpers they
//! share are [`stats`] (medians, percentiles), [`clock`] (on-CPU time), [`fixtures`]
//! (generated repositories, charts and YAML), [`direct`] (running a tool or `git` directly,
//! timed) and [`grpc`] (the repo-server's gRPC service on loopback). [`api::run`] needs
//! nothing outside the process; [`shard_sim::run`] is a pure simulation; [`takeover::run`]
//! starts an etcd.

mod alloc;
mod api;
mod clock;
mod controller;
mod direct;
mod engine;
mod fixtures;
mod grpc;
mod repo;
mod shard_sim;
mod stats;
mod takeover;

use clap::{Parser, ValueEnum};

/// Every allocation is counted, so memory figures are measured, not estimated.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Runs one of Capstan's benchmarks and prints `figure NAME VALUE UNIT` lines.
#[derive(Debug, Parser)]
#[command(name = "capstan-bench", version)]
struct Cli {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Smaller inputs and fewer repetitions: about a minute on a 2-core machine.
    #[arg(long)]
    quick: bool,
}

/// The scenarios; an unknown name is refused by clap with this list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// The repo-server: warm-cache gRPC latency, Helm/Kustomize/directory render overhead,
    /// fetch and ref-listing coalescing, gix vs git fetch.
    Repo,
    /// The engine: sync of 500 resources vs `kubectl apply --server-side`, diff cost per
    /// resource, cluster cache bytes per watched object.
    Engine,
    /// The controller: 1,000 Applications of 5 resources to Synced and Healthy, a sweep with
    /// nothing changed, memory of the all-in-one's parts, vs `kubectl apply --server-side`.
    Controller,
    /// The API: webhook-to-refresh latency for a push touching 1 of 10,000 Applications of a
    /// monorepo (vs reading and matching every Application), first list page latency and
    /// bytes (vs listing everything).
    Api,
    /// Sharding, simulated: 10,000 clusters with Zipf-skewed Application counts assigned to
    /// controller members by Capstan's ring and by Argo CD's three algorithms — max/average
    /// load, and the clusters moved going 10 → 9 and 10 → 11 members.
    ShardSim,
    /// Sharding, for real: how long a controller member's clusters stay unowned after it is
    /// killed (lease expiry) or stops (leave), three members and 300 clusters on a real etcd,
    /// beside etcd's own notice of the member's departure.
    Takeover,
}

/// The unit of a figure, as printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Milliseconds.
    Ms,
    /// A dimensionless ratio (ours ÷ baseline).
    Ratio,
    /// Mebibytes (2^20 bytes) per second.
    MibPerS,
    /// A number of events.
    Count,
    /// Microseconds.
    Us,
    /// Bytes.
    Bytes,
    /// Seconds.
    S,
    /// Mebibytes (2^20 bytes).
    Mib,
    /// Events per second.
    PerS,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Ratio => "ratio",
            Unit::MibPerS => "MiB/s",
            Unit::Count => "count",
            Unit::Us => "us",
            Unit::Bytes => "bytes",
            Unit::S => "s",
            Unit::Mib => "MiB",
            Unit::PerS => "1/s",
        }
    }
}

/// Prints one result line: `figure NAME VALUE UNIT` (counts as integers, the rest with three
/// decimals).
pub(crate) fn figure(name: &str, value: f64, unit: Unit) {
    match unit {
        Unit::Count | Unit::Bytes => println!("figure {name} {value:.0} {}", unit.as_str()),
        _ => println!("figure {name} {value:.3} {}", unit.as_str()),
    }
}

/// Progress for the human watching: standard error, never mixed into the figures.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[bench] {}", format_args!($($arg)*)) };
}
pub(crate) use progress;

/// The CPUs and the load average, for the record: other work on the machine skews figures.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cpus} CPUs, load average {}", load.join(" "))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.scenario {
        Scenario::Repo => runtime.block_on(repo::run(cli.quick)),
        Scenario::Engine => runtime.block_on(engine::run(cli.quick)),
        Scenario::Controller => runtime.block_on(controller::run(cli.quick)),
        Scenario::Api => runtime.block_on(api::run(cli.quick)),
        Scenario::ShardSim => shard_sim::run(cli.quick),
        Scenario::Takeover => runtime.block_on(takeover::run(cli.quick)),
    }
}
