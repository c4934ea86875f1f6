#!/usr/bin/env bash
# Runs Capstan's main job on this machine. Today: builds the pinned tools if needed and starts
# a local simulated cluster (real kube-apiserver, controller-manager, scheduler; kwok nodes).
# The all-in-one control plane that syncs a demo Git repo into it comes with the controller.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/tools.sh
echo "[up] building capstan-devcluster ..."
cargo build --locked -p capstan-testkit --bin capstan-devcluster
exec target/debug/capstan-devcluster "$@"
