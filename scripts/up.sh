#!/usr/bin/env bash
# Runs Capstan's main job on this machine: a local simulated cluster (real kube-apiserver,
# controller-manager and scheduler; kwok fake nodes), a demo Git repository served over
# smart HTTP on loopback, and `capstand all-in-one` syncing the demo app from Git into the
# cluster, in the foreground. Ctrl-C stops everything.
#
#   bash scripts/up.sh [extra capstand all-in-one flags]
#
# Everything lives under $CAPSTAN_UP_DIR (default .capstan in the repository, git-ignored):
#   kubeconfig          the simulated cluster's admin kubeconfig (while it runs)
#   demo-repo/          the demo Git repository; commit in it to deploy a change
#   guestbook-app.yaml  the Application given to capstand
#   data/               capstand's store and Git cache
#   devcluster.log      the simulated cluster's output
# Run it again at any time: the demo repository and the store are kept, the cluster is new.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${CAPSTAN_UP_DIR:-.capstan}"
START_TIMEOUT="${CAPSTAN_UP_START_TIMEOUT:-300}"

bash scripts/tools.sh
TOOLS="$(bash scripts/tools.sh --print)"
# shellcheck source=../tools/versions
source tools/versions
KUBECTL="$TOOLS/kubernetes-$KUBERNETES_VERSION/bin/kubectl"

echo "[up] building capstand and capstan-devcluster ..."
cargo build --locked -p capstand -p capstan-testkit --bin capstand --bin capstan-devcluster

mkdir -p "$WORK"
# Left behind by a run that was killed: they would be taken for the new cluster's.
rm -f "$WORK/kubeconfig" "$WORK/demo-repo-url"

echo "[up] starting the simulated cluster and the demo Git server (log: $WORK/devcluster.log) ..."
target/debug/capstan-devcluster \
    --kubeconfig-out "$WORK/kubeconfig" \
    --demo-repo "$WORK/demo-repo" \
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

# The demo Application, as an Argo CD user writes it. The Git server's port changes with
# every start; capstand updates the stored Application to the new URL.
cat >"$WORK/guestbook-app.yaml" <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guestbook
  namespace: capstan
spec:
  project: default
  source:
    repoURL: $REPO_URL
    path: guestbook
    targetRevision: HEAD
  destination:
    server: https://kubernetes.default.svc
    namespace: guestbook
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
    - CreateNamespace=true
EOF

cat <<EOF

Capstan is starting: it syncs the guestbook app from $REPO_URL
into the simulated cluster (namespace guestbook). In another terminal, from $ROOT:

  # what Capstan deployed
  $KUBECTL --kubeconfig $WORK/kubeconfig -n guestbook get deployments,services,configmaps,pods

  # deploy a change: commit in the demo repo; Capstan notices it within about 30 seconds
  sed -i 's/replicas: 2/replicas: 3/' $WORK/demo-repo/guestbook/deployment.yaml
  git -C $WORK/demo-repo commit -qam 'three replicas'

  # self-heal: change it by hand, and watch Capstan put it back
  $KUBECTL --kubeconfig $WORK/kubeconfig -n guestbook scale deployment guestbook-ui --replicas=5

  # metrics
  curl -s 127.0.0.1:8082/metrics | grep -E '^capstan_(controller|cluster_cache)'

Press Ctrl-C to stop. Docs: docs/all-in-one.md

EOF

# Short refresh periods so the demo shows Git changes quickly (no webhooks yet); the
# defaults are 3 minutes, as in Argo CD. capstand runs as a child this script waits for, so a
# SIGTERM or Ctrl-C to the script is passed on at once (bash runs traps only between
# commands) and capstand drains before the cluster is stopped.
target/debug/capstand all-in-one \
    --kubeconfig "$WORK/kubeconfig" \
    --data-dir "$WORK/data" \
    --app "$WORK/guestbook-app.yaml" \
    --helm "$TOOLS/helm-$HELM_VERSION/bin/helm" \
    --kustomize "$TOOLS/kustomize-$KUSTOMIZE_VERSION/bin/kustomize" \
    --resync 20s \
    --ref-ttl 10s \
    "$@" &
CAPSTAND=$!
trap 'kill -TERM "$CAPSTAND" 2>/dev/null || true' INT TERM
status=0
wait "$CAPSTAND" || status=$?
# A trap interrupts `wait`; wait again for capstand's own exit status.
while kill -0 "$CAPSTAND" 2>/dev/null; do
    status=0
    wait "$CAPSTAND" || status=$?
done
exit "$status"
