#!/usr/bin/env bash
# The whole test suite, from a fresh machine: builds/installs the pinned tools (cached after
# the first run), builds the Rust workspace once, and runs every test against the real
# components (etcd, kube-apiserver, controller-manager, scheduler, kwok, Redis Cluster, git).
#
#   bash scripts/test.sh              # everything
#   bash scripts/test.sh --test apiserver   # extra arguments go to `cargo test` (and skip
#                                           # the demo check, `bash scripts/up.sh --check`)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$SECONDS
say() { printf '[test %4ds] %s\n' "$((SECONDS - START))" "$*"; }

if ! command -v cargo >/dev/null; then
    echo "error: cargo (Rust) is required: https://rustup.rs" >&2
    exit 1
fi

say "tools: building or checking the pinned tools (scripts/tools.sh)"
bash scripts/tools.sh

# Two cores: one build of everything, then run. `--no-run` first so compile time and test
# time are reported separately.
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# CI builds once: incremental compilation data (gigabytes for this workspace) is never reused.
if [[ -n "${CI:-}" ]]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
# Also set in .cargo/config.toml; repeated here so the suite does not depend on cargo's
# [env] reaching test binaries (see that file for why).
export RUST_MIN_STACK="${RUST_MIN_STACK:-8388608}"
say "build: compiling the workspace and its tests"
cargo test --workspace --locked --no-run "$@"
BUILT=$SECONDS
say "run: running the tests (unit, integration and doc tests)"
cargo test --workspace --locked "$@"
# The README's first command, end to end, unless the run was narrowed to some tests: every
# demo app (plain YAML, Kustomize, Helm, Jsonnet, sync waves with a hook, app of apps) must
# become Synced and Healthy in a fresh simulated cluster.
if [[ $# -eq 0 ]]; then
    say "demo: bash scripts/up.sh --check"
    DEMO_DIR="$(mktemp -d)"
    # `cargo test` built target/debug/capstand and capstan-devcluster for the integration
    # tests: use them as they are.
    CAPSTAN_UP_PREBUILT=1 CAPSTAN_UP_DIR="$DEMO_DIR" bash scripts/up.sh --check
    rm -rf "$DEMO_DIR"
fi
say "done: build $((BUILT - START))s (incl. tools), tests $((SECONDS - BUILT))s"
