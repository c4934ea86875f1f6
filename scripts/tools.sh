#!/usr/bin/env bash
# Builds the real tools Capstan's tests and demo run against, at the versions pinned in
# tools/versions, from the package registries (Go module proxy, PyPI, npm, Debian packages).
#
# Idempotent: each tool lands in $CAPSTAN_TOOLS_DIR/<name>-<version>/bin and is marked
# complete only after a successful build, so a second run only checks markers (seconds).
#
#   scripts/tools.sh            build/install everything that is missing
#   scripts/tools.sh --print    print the tool directory and exit
#
# Environment:
#   CAPSTAN_TOOLS_DIR   cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/capstan/tools)
#   CAPSTAN_SKIP_APT=1  never call apt-get (fail if a Debian tool is missing)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../tools/versions
source "$ROOT/tools/versions"
TOOLS_DIR="${CAPSTAN_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/capstan/tools}"

if [[ "${1:-}" == "--print" ]]; then
    echo "$TOOLS_DIR"
    exit 0
fi

START=$SECONDS
say() { printf '[tools %4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------------------------
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v git >/dev/null || need_apt+=(git)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
    [[ "${CAPSTAN_SKIP_APT:-}" == 1 ]] && die "missing ${need_apt[*]} and CAPSTAN_SKIP_APT=1"
    command -v apt-get >/dev/null || die "missing ${need_apt[*]}; install them with your package manager"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    say "installing Debian packages: ${need_apt[*]}"
    $SUDO apt-get update -qq || die "apt-get update failed: is the Debian package mirror reachable?"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null \
        || die "apt-get install ${need_apt[*]} failed"
fi
# git http-backend is part of the git package; the testkit serves smart HTTP through it.
GIT_EXEC="$(git --exec-path)"
[[ -x "$GIT_EXEC/git-http-backend" ]] || die "git-http-backend not found in $GIT_EXEC"

# --- Go tools --------------------------------------------------------------------------------
command -v go >/dev/null || die "Go is required to build kube-apiserver, etcd, helm, kustomize and kwok"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local
GOPROXY_URL="$(go env GOPROXY | tr ',|' '\n\n' | grep -E '^https?://' | head -1 || true)"

check_proxy() {
    [[ -z "$GOPROXY_URL" ]] && return 0
    curl -fsS --max-time 30 -o /dev/null "$GOPROXY_URL/k8s.io/kubernetes/@v/list" \
        || die "the Go module proxy ($GOPROXY_URL) is unreachable; the tools cannot be built"
}

# build_go_tool NAME VERSION GO_MOD_BODY LDFLAGS MAIN_GO PACKAGE...
#   GO_MOD_BODY  requires/replaces appended to a scratch go.mod
#   MAIN_GO      optional main.go content (for modules whose main package sits behind replaces)
build_go_tool() {
    local name=$1 version=$2 mod_body=$3 ldflags=$4 main_go=$5
    shift 5
    local dest="$TOOLS_DIR/$name-$version"
    if [[ -f "$dest/.complete" ]]; then
        say "$name $version: cached in $dest"
        return 0
    fi
    check_proxy
    say "$name $version: building $* (this is the slow part on a cold machine)"
    local work
    work="$(mktemp -d)"
    rm -rf "$dest"
    mkdir -p "$dest/bin"
    {
        printf 'module capstan.local/tools/%s\n\ngo 1.26.0\n\n%s\n' "$name" "$mod_body"
    } >"$work/go.mod"
    if [[ -n "$main_go" ]]; then
        printf '%s\n' "$main_go" >"$work/main.go"
    fi
    local t0=$SECONDS
    # A heartbeat, so a cold Kubernetes build (15+ minutes on 2 cores) is not a silent terminal.
    local begun
    begun=$(date +%s)
    (
        trap 'kill "$tick" 2>/dev/null; exit 0' TERM
        while :; do
            sleep 60 &
            tick=$!
            wait "$tick"
            say "$name $version: still building ($(($(date +%s) - begun))s; see $work/log)"
        done
    ) &
    local heartbeat=$! status=0
    (
        cd "$work"
        if [[ -n "$main_go" ]]; then
            go mod tidy >"$work/log" 2>&1
        else
            # `go get` of the main packages records exactly the sums their builds need.
            go get "${@/%/@$version}" >"$work/log" 2>&1 || go get "$@" >>"$work/log" 2>&1
        fi
        go build -ldflags "-s -w $ldflags" -o "$dest/bin/" "$@" >>"$work/log" 2>&1
    ) || status=$?
    kill "$heartbeat" 2>/dev/null || true
    wait "$heartbeat" 2>/dev/null || true
    if ((status != 0)); then
        tail -30 "$work/log" >&2
        die "building $name $version failed (full log: $work/log)"
    fi
    cp "$work/go.mod" "$dest/go.mod"
    rm -rf "$work"
    touch "$dest/.complete"
    say "$name $version: built in $((SECONDS - t0))s -> $dest/bin"
}

mkdir -p "$TOOLS_DIR"

# etcd: the server module's etcdmain, behind a two-line main (the etcd root module uses
# local replaces and cannot be built as a dependency).
build_go_tool etcd "$ETCD_VERSION" "require go.etcd.io/etcd/server/v3 $ETCD_VERSION" "" \
    'package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }' \
    .

# Kubernetes: k8s.io/kubernetes requires its staging modules at v0.0.0 and points them at
# ./staging with replaces, which do not apply to a dependency. Replace each with the
# published v0.Y.Z of the same release.
k8s_minor="${KUBERNETES_VERSION#v1.}"
k8s_staging_version="v0.$k8s_minor"
k8s_replaces() {
    local modfile
    modfile="$(curl -fsS --max-time 60 "$GOPROXY_URL/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod")" \
        || die "cannot read k8s.io/kubernetes $KUBERNETES_VERSION go.mod from the Go module proxy"
    echo "replace ("
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' <<<"$modfile" | awk -v v="$k8s_staging_version" '{ print "\t" $1 " => " $1 " " v }'
    echo ")"
}
if [[ ! -f "$TOOLS_DIR/kubernetes-$KUBERNETES_VERSION/.complete" ]]; then
    check_proxy
    K8S_MOD="require k8s.io/kubernetes $KUBERNETES_VERSION
$(k8s_replaces)"
else
    K8S_MOD=""
fi
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
-X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=${k8s_minor%%.*} \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
build_go_tool kubernetes "$KUBERNETES_VERSION" "$K8S_MOD" "$k8s_ldflags" "" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl

build_go_tool helm "$HELM_VERSION" "require helm.sh/helm/v3 $HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "" \
    helm.sh/helm/v3/cmd/helm

build_go_tool kustomize "$KUSTOMIZE_VERSION" "require sigs.k8s.io/kustomize/kustomize/v5 $KUSTOMIZE_VERSION" \
    "-X sigs.k8s.io/kustomize/api/provenance.version=$KUSTOMIZE_VERSION" "" \
    sigs.k8s.io/kustomize/kustomize/v5

build_go_tool kwok "$KWOK_VERSION" "require sigs.k8s.io/kwok $KWOK_VERSION" \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" "" \
    sigs.k8s.io/kwok/cmd/kwok

# kwok simulates nothing until it is given stages: render kwok's own "fast" set (node
# initialise + lease heartbeat, pod ready/complete/delete) from the same module version.
KWOK_STAGES="$TOOLS_DIR/kwok-$KWOK_VERSION/stages-fast.yaml"
if [[ ! -s "$KWOK_STAGES" ]]; then
    say "kwok $KWOK_VERSION: rendering its fast stages"
    kwok_dir="$(cd /tmp && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$kwok_dir/kustomize/stage/fast" ]] || die "kwok module source not found (go mod download sigs.k8s.io/kwok@$KWOK_VERSION)"
    "$TOOLS_DIR/kustomize-$KUSTOMIZE_VERSION/bin/kustomize" build "$kwok_dir/kustomize/stage/fast" >"$KWOK_STAGES.tmp" \
        || die "rendering kwok stages failed"
    mv "$KWOK_STAGES.tmp" "$KWOK_STAGES"
fi

# --- Python tools ----------------------------------------------------------------------------
# install_python_tool NAME VERSION: `pip install NAME==VERSION` into its own virtual
# environment, $TOOLS_DIR/NAME-VERSION (its executables in bin/).
install_python_tool() {
    local name=$1 version=$2
    local dest="$TOOLS_DIR/$name-$version"
    if [[ -f "$dest/.complete" ]]; then
        say "$name $version: cached in $dest"
        return 0
    fi
    say "$name $version: installing from PyPI"
    rm -rf "$dest"
    python3 -m venv "$dest" || die "creating a Python virtual environment for $name failed"
    "$dest/bin/pip" install --quiet --disable-pip-version-check "$name==$version" \
        || die "pip install $name==$version failed: is PyPI reachable?"
    touch "$dest/.complete"
}

# schemathesis: fuzzes the REST API from its OpenAPI document.
install_python_tool schemathesis "$SCHEMATHESIS_VERSION"

# --- npm tools -------------------------------------------------------------------------------
# oidc-provider: a real OpenID Connect provider for the SSO tests, run by node with the
# script tools/oidc-provider.mjs (copied next to its node_modules, where ESM imports look).
OIDC_DEST="$TOOLS_DIR/oidc-provider-$OIDC_PROVIDER_VERSION"
if [[ -f "$OIDC_DEST/.complete" ]] && cmp -s "$ROOT/tools/oidc-provider.mjs" "$OIDC_DEST/provider.mjs"; then
    say "oidc-provider $OIDC_PROVIDER_VERSION: cached in $OIDC_DEST"
else
    say "oidc-provider $OIDC_PROVIDER_VERSION: installing from npm"
    rm -rf "$OIDC_DEST"
    mkdir -p "$OIDC_DEST"
    npm install --prefix "$OIDC_DEST" --no-audit --no-fund --silent "oidc-provider@$OIDC_PROVIDER_VERSION" \
        || die "npm install oidc-provider@$OIDC_PROVIDER_VERSION failed: is the npm registry reachable?"
    cp "$ROOT/tools/oidc-provider.mjs" "$OIDC_DEST/provider.mjs"
    touch "$OIDC_DEST/.complete"
fi

say "all tools ready in $TOOLS_DIR ($((SECONDS - START))s)"
