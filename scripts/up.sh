#!/usr/bin/env bash
# Runs Capstan's main job on this machine: a local simulated cluster (real kube-apiserver,
# controller-manager and scheduler; kwok fake nodes), a demo Git repository served over
# smart HTTP on loopback, and `capstand all-in-one` syncing the demo apps from Git into the
# cluster, in the foreground. Once they are Synced and Healthy it prints a summary and what
# to try next. Ctrl-C stops everything.
#
#   bash scripts/up.sh [extra capstand all-in-one flags]
#   bash scripts/up.sh --check    # start, wait for every app to be Synced and Healthy, stop;
#                                 # exit 0 only if they all were (the test suite runs this)
#
# The demo repository (from demo/repo) holds six Applications: `demo-apps`, an app of apps
# whose children are `guestbook` (plain YAML), `kustomize-guestbook` (a Kustomize overlay),
# `helm-guestbook` (a Helm chart), `jsonnet-guestbook` (Jsonnet) and `sync-waves` (a PreSync
# hook Job and three sync waves).
#
# Everything lives under $CAPSTAN_UP_DIR (default .capstan in the repository, git-ignored):
#   kubeconfig          the simulated cluster's admin kubeconfig (while it runs)
#   demo-repo/          the demo Git repository; commit in it to deploy a change
#   demo-apps.yaml      the root Application given to capstand
#   summary.txt         the apps' sync and health once they settled
#   data/               capstand's store and Git cache
#   capstand.log        capstand's log; devcluster.log the simulated cluster's
# Run it again at any time: the demo repository and the store are kept, the cluster is new.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${CAPSTAN_UP_DIR:-.capstan}"
START_TIMEOUT="${CAPSTAN_UP_START_TIMEOUT:-300}"
SETTLE_TIMEOUT="${CAPSTAN_UP_SETTLE_TIMEOUT:-300}"
CHECK=false
if [[ "${1:-}" == "--check" ]]; then
    CHECK=true
    shift
fi

bash scripts/tools.sh
TOOLS="$(bash scripts/tools.sh --print)"
# shellcheck source=../tools/versions
source tools/versions
KUBECTL="$TOOLS/kubernetes-$KUBERNETES_VERSION/bin/kubectl"

# The test suite has just built the binaries (with the whole workspace's features); a build
# of only these packages would rebuild their dependencies with other features.
if [[ "${CAPSTAN_UP_PREBUILT:-}" != 1 ]]; then
    echo "[up] building capstand, capstan (the CLI) and capstan-devcluster ..."
    cargo build --locked -p capstand -p capstan-cli -p capstan-testkit \
        --bin capstand --bin capstan --bin capstan-devcluster
fi

mkdir -p "$WORK"
# Left behind by a run that was killed: they would be taken for the new cluster's.
rm -f "$WORK/kubeconfig" "$WORK/demo-repo-url" "$WORK/summary.txt"

echo "[up] starting the simulated cluster and the demo Git server (log: $WORK/devcluster.log) ..."
target/debug/capstan-devcluster \
    --kubeconfig-out "$WORK/kubeconfig" \
    --demo-repo "$WORK/demo-repo" \
    --demo-from demo/repo \
    --demo-url-out "$WORK/demo-repo-url" \
    >"$WORK/devcluster.log" 2>&1 &
DEVCLUSTER=$!
stop_devcluster() {
    kill -TERM "$DEVCLUSTER" 2>/dev/null || true
    wait "$DEVCLUSTER" 2>/dev/null || true
}
trap stop_devcluster EXIT

# The devcluster writes the kubeconfig last, once the cluster and the Git server are ready.
waited=0
until [[ -s "$WORK/kubeconfig" ]]; do
    if ! kill -0 "$DEVCLUSTER" 2>/dev/null; then
        tail -30 "$WORK/devcluster.log" >&2
        echo "[up] error: the simulated cluster did not start (see $WORK/devcluster.log)" >&2
        exit 1
    fi
    if ((waited >= START_TIMEOUT)); then
        tail -30 "$WORK/devcluster.log" >&2
        echo "[up] error: the simulated cluster was not ready after ${START_TIMEOUT}s" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
REPO_URL="$(cat "$WORK/demo-repo-url")"

# The root Application, as an Argo CD user writes it: an app of apps over `apps/`, whose
# files are the other demo Applications. The Git server's port changes with every start;
# capstand updates the stored Application to the new URL (and the devcluster commits the new
# URL into `apps/`).
cat >"$WORK/demo-apps.yaml" <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: demo-apps
  namespace: capstan
spec:
  project: default
  source:
    repoURL: $REPO_URL
    path: apps
    targetRevision: HEAD
  destination:
    server: https://kubernetes.default.svc
    namespace: capstan
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
EOF

METRICS=127.0.0.1:8082
API=127.0.0.1:8080
if $CHECK; then
    METRICS=127.0.0.1:0
    API=127.0.0.1:0
fi
echo "[up] starting capstand all-in-one (log: $WORK/capstand.log) ..."
# Short refresh periods so the demo shows Git changes quickly (no webhooks yet); the
# defaults are 3 minutes, as in Argo CD. capstand runs as a child this script waits for, so a
# SIGTERM or Ctrl-C to the script is passed on at once (bash runs traps only between
# commands) and capstand drains before the cluster is stopped.
target/debug/capstand all-in-one \
    --kubeconfig "$WORK/kubeconfig" \
    --data-dir "$WORK/data" \
    --app "$WORK/demo-apps.yaml" \
    --helm "$TOOLS/helm-$HELM_VERSION/bin/helm" \
    --kustomize "$TOOLS/kustomize-$KUSTOMIZE_VERSION/bin/kustomize" \
    --resync 20s \
    --ref-ttl 10s \
    --metrics-listen "$METRICS" \
    --listen "$API" \
    --summary-out "$WORK/summary.txt" \
    --summary-timeout "${SETTLE_TIMEOUT}s" \
    "$@" 2>"$WORK/capstand.log" &
CAPSTAND=$!
trap 'kill -TERM "$CAPSTAND" 2>/dev/null || true' INT TERM

# Wait for the summary: capstand writes it once every app is Synced and Healthy, or after
# the settle timeout with what is not.
echo "[up] syncing the demo apps (at most ${SETTLE_TIMEOUT}s) ..."
until [[ -s "$WORK/summary.txt" ]] || ! kill -0 "$CAPSTAND" 2>/dev/null; do
    sleep 1
done
if [[ ! -s "$WORK/summary.txt" ]]; then
    tail -30 "$WORK/capstand.log" >&2
    echo "[up] error: capstand stopped before the apps settled (see $WORK/capstand.log)" >&2
    wait "$CAPSTAND" || true
    exit 1
fi
echo
cat "$WORK/summary.txt"
SETTLED=true
[[ "$(head -1 "$WORK/summary.txt")" == settled:* ]] || SETTLED=false

if $CHECK; then
    # The CLI commands printed below, run as a user would (with a home of their own).
    CLI_OK=true
    if $SETTLED; then
        ADDRESS="$(grep -o 'API listening.*' "$WORK/capstand.log" | grep -o 'https://[0-9.]*:[0-9]*' | head -1)"
        export HOME_FOR_CLI="$WORK/cli-home"
        capstan() { HOME="$HOME_FOR_CLI" target/debug/capstan "$@"; }
        if capstan login "${ADDRESS#https://}" --server-ca "$WORK/data/tls/ca.crt" \
                --username admin --password-stdin <"$WORK/data/initial-admin-password" &&
            capstan app list &&
            capstan app get guestbook &&
            capstan app wait guestbook --sync --health --timeout 60; then
            echo "[up] the CLI logged in and sees the apps"
        else
            CLI_OK=false
        fi
    fi
    kill -TERM "$CAPSTAND" 2>/dev/null || true
    wait "$CAPSTAND" || true
    if ! $CLI_OK; then
        tail -40 "$WORK/capstand.log" >&2
        echo "[up] check failed: the capstan CLI could not use the API" >&2
        exit 1
    fi
    if ! $SETTLED; then
        tail -40 "$WORK/capstand.log" >&2
        echo "[up] check failed: not every demo app became Synced and Healthy" >&2
        exit 1
    fi
    echo "[up] check passed: every demo app is Synced and Healthy"
    exit 0
fi

KC="$KUBECTL --kubeconfig $WORK/kubeconfig"
cat <<EOF

Capstan syncs the demo apps from $REPO_URL
into the simulated cluster. In another terminal, from $ROOT:

  # what Capstan deployed (one namespace per app)
  $KC get deployments,services,configmaps -A -l '!kubernetes.io/bootstrapping'

  # the CLI, capstan (gRPC on https://$API, its CA in $WORK/data/tls/ca.crt): log in as
  # admin with the password generated at the first start, then look around
  alias capstan=$ROOT/target/debug/capstan
  capstan login $API --server-ca $WORK/data/tls/ca.crt --username admin --password-stdin < $WORK/data/initial-admin-password
  capstan app list
  capstan app get guestbook
  capstan app resources helm-guestbook
  capstan app history guestbook
  capstan proj list; capstan repo list; capstan cluster list
  capstan --help          # every command, its examples, the exit codes

  # deploy a change: commit in the demo repo; see what will change, then Capstan syncs it
  # within about 30 seconds, or at once when the Git host calls the webhook (here, by hand,
  # as GitHub would)
  sed -i 's/replicas: 2/replicas: 3/' $WORK/demo-repo/guestbook/deployment.yaml
  git -C $WORK/demo-repo commit -qam 'three replicas'
  capstan app diff guestbook --refresh
  curl -s --cacert $WORK/data/tls/ca.crt https://$API/api/webhook -H 'X-GitHub-Event: push' -d '{"ref":"refs/heads/main","repository":{"html_url":"$REPO_URL","default_branch":"main"}}'
  capstan app wait guestbook --sync --health

  # self-heal: change it by hand, and watch Capstan put it back
  $KC -n guestbook scale deployment guestbook-ui --replicas=5

  # prune: remove a file from Git, and the object goes from the cluster
  git -C $WORK/demo-repo rm -q sync-waves/frontend.yaml
  git -C $WORK/demo-repo commit -qm 'no front end'

  # metrics, and what Capstan is doing
  curl -s $METRICS/metrics | grep -E '^capstan_controller_(reconciles|syncs)'
  tail -f $WORK/capstand.log

Press Ctrl-C to stop. Docs: docs/all-in-one.md, docs/cli.md, docs/api.md

EOF

status=0
wait "$CAPSTAND" || status=$?
# A trap interrupts `wait`; wait again for capstand's own exit status.
while kill -0 "$CAPSTAND" 2>/dev/null; do
    status=0
    wait "$CAPSTAND" || status=$?
done
exit "$status"
