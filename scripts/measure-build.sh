#!/usr/bin/env bash
# Measures the effect of the build profile on a cold build and on the test run, for
# docs/development.md. Each variant builds into its own target dir from scratch.
#   bash scripts/measure-build.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/tools.sh >/dev/null
measure() {
    local label=$1
    shift
    local dir
    dir="$(mktemp -d)"
    local t0=$SECONDS
    CARGO_TARGET_DIR="$dir" cargo "$@" test --workspace --locked --no-run -q >/dev/null 2>&1
    local build=$((SECONDS - t0))
    t0=$SECONDS
    CARGO_TARGET_DIR="$dir" cargo "$@" test --workspace --locked -q >/dev/null 2>&1
    local run=$((SECONDS - t0))
    local size
    size="$(du -sh "$dir" | cut -f1)"
    echo "$label: cold build ${build}s, test run ${run}s, target dir $size"
    rm -rf "$dir"
}
measure "deps opt-level=1 (chosen)"
measure "deps opt-level=0" --config 'profile.dev.package."*".opt-level=0'
