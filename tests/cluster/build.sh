#!/usr/bin/env bash
# Builds the test control plane from the Go module proxy, at the versions pinned in versions.env:
#   etcd            go.etcd.io/etcd/server/v3
#   kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver
#   kube-scheduler  k8s.io/kubernetes/cmd/kube-scheduler
#   kubectl         k8s.io/kubernetes/cmd/kubectl
#   kwok            sigs.k8s.io/kwok/cmd/kwok
# into ${TROUPE_CACHE:-$HOME/.cache/troupe}/cluster/<key>/bin, key = hash of versions.env, and
# copies from the same kwok module its Stage CRD and default stages into <key>/share/kwok.
# Prints that bin directory as the last line of stdout. Does nothing when all of it is there.
#
# Usage: build.sh [component...]   (components: etcd kwok k8s; default all)
#
# Each component is built in its own wrapper module (<key>/src/<component>) so that their
# dependency graphs never meet: kwok and etcd would otherwise drag k8s.io modules to other versions.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=versions.env
. "$HERE/versions.env"
LOG_TAG=build

ROOT=$(cluster_cache_dir)
BIN="$ROOT/bin"
if [[ $# -eq 0 ]] && cluster_artefacts_present; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || die "go is required (the Go toolchain builds every component)"
mkdir -p "$ROOT/src" "$BIN"
# Two test runs starting at once build once: the second waits here, then finds everything built.
exec 9>"$ROOT/build.lock"
flock 9

# Use the installed toolchain as it is; build static binaries; never read a go.work from above.
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false

built() { local b; for b in "$@"; do [[ -x "$BIN/$b" ]] || return 1; done; }
SHARE="$ROOT/share/kwok"

# wrapper_module DIR MODULE_PATH: writes DIR/go.mod (the caller appends require/replace) and
# DIR/tools.go importing the main packages given after, so that `go mod tidy` records them.
wrapper_module() {
  local dir=$1 module=$2 pkg
  shift 2
  rm -rf "$dir"
  mkdir -p "$dir"
  printf 'module %s\n\ngo 1.24\n' "$module" >"$dir/go.mod"
  {
    echo '//go:build tools'
    echo
    echo '// Package tools only names the programs this wrapper module builds.'
    echo 'package tools'
    echo
    echo 'import ('
    for pkg in "$@"; do echo "	_ \"$pkg\""; done
    echo ')'
  } >"$dir/tools.go"
}

# go_build DIR LDFLAGS OUT PKG...: tidies the wrapper module and builds PKG... into OUT (a file
# for one package, a directory ending in / for several), then moves the results into bin/.
go_build() {
  local dir=$1 ldflags=$2 out=$3 start=$SECONDS
  shift 3
  (cd "$dir" && go mod tidy) || die "go mod tidy failed in $dir"
  log "tidy done in $((SECONDS - start))s; compiling $*"
  local tmp="$ROOT/tmp-bin"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (cd "$dir" && go build -trimpath -ldflags="-s -w $ldflags" -o "$tmp/$out" "$@") ||
    die "go build failed in $dir for: $*"
  mv -f "$tmp"/* "$BIN"/
  rmdir "$tmp"
}

build_etcd() {
  built etcd && return
  local dir="$ROOT/src/etcd" start=$SECONDS
  log "etcd $ETCD_VERSION: building"
  wrapper_module "$dir" troupe.test/cluster/etcd go.etcd.io/etcd/server/v3
  printf '\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >>"$dir/go.mod"
  go_build "$dir" "" etcd go.etcd.io/etcd/server/v3
  log "etcd built in $((SECONDS - start))s"
}

build_kwok() {
  built kwok && return
  local dir="$ROOT/src/kwok" start=$SECONDS
  log "kwok $KWOK_VERSION: building"
  wrapper_module "$dir" troupe.test/cluster/kwok sigs.k8s.io/kwok/cmd/kwok
  printf '\nrequire sigs.k8s.io/kwok %s\n' "$KWOK_VERSION" >>"$dir/go.mod"
  go_build "$dir" "" kwok sigs.k8s.io/kwok/cmd/kwok
  log "kwok built in $((SECONDS - start))s"
}

# The Stage CRD and kwok's default node and pod stages, taken from the pinned kwok module itself:
# with --enable-crds=Stage kwok loads no built-in stage, so up.sh applies these (then ours).
kwok_share() {
  [[ -f "$SHARE/stage-crd.yaml" && -f "$SHARE/default-stages.yaml" ]] && return
  local src tmp="$SHARE.tmp" f
  src=$(cd "$ROOT/src/kwok" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$src/kustomize" ]] || die "no source of sigs.k8s.io/kwok@$KWOK_VERSION in the module cache"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp "$src/kustomize/crd/bases/kwok.x-k8s.io_stages.yaml" "$tmp/stage-crd.yaml"
  # node-heartbeat-with-lease: kwok keeps node leases fresh, so node status is refreshed rarely.
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$src/kustomize/stage/$f"
  done >"$tmp/default-stages.yaml"
  rm -rf "$SHARE"
  mv "$tmp" "$SHARE"
  log "kwok stage CRD and default stages copied to $SHARE"
}

# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with paths inside its
# own repository, which a dependent module cannot see. Pin each one, by name, to the published
# K8S_STAGING_VERSION; the list comes from k8s.io/kubernetes's own go.mod replace block.
k8s_staging_replaces() {
  local gomod
  gomod=$(cd "$1" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f "$gomod" ]] || die "could not download the go.mod of k8s.io/kubernetes@$K8S_VERSION"
  awk -v v="$K8S_STAGING_VERSION" '
    $2 == "=>" && $3 ~ /^\.\/staging\/src\// { print "\t" $1 " => " $1 " " v }
  ' "$gomod"
}

K8S_PROGRAMS=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler
  k8s.io/kubernetes/cmd/kubectl)
build_k8s() {
  built kube-apiserver kube-scheduler kubectl && return
  local dir="$ROOT/src/k8s" start=$SECONDS minor ldflags="" pkg replaces
  log "kubernetes $K8S_VERSION (staging $K8S_STAGING_VERSION): building"
  wrapper_module "$dir" troupe.test/cluster/k8s "${K8S_PROGRAMS[@]}"
  replaces=$(k8s_staging_replaces "$dir")
  [[ -n "$replaces" ]] || die "no staging replace lines in k8s.io/kubernetes@$K8S_VERSION's go.mod"
  printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n%s\n)\n' "$K8S_VERSION" "$replaces" \
    >>"$dir/go.mod"
  log "pinned $(wc -l <<<"$replaces") staging modules to $K8S_STAGING_VERSION"
  # What the Kubernetes release build stamps (hack/lib/version.sh): without it the binaries call
  # themselves v0.0.0-master and kubectl warns about version skew.
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  go_build "$dir" "$ldflags" "" "${K8S_PROGRAMS[@]}"
  log "kube-apiserver, kube-scheduler, kubectl built in $((SECONDS - start))s"
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(etcd kwok k8s)
total=$SECONDS
for c in "${components[@]}"; do
  case $c in
    etcd) build_etcd ;;
    kwok) build_kwok && kwok_share ;;
    k8s) build_k8s ;;
    *) die "unknown component '$c' (etcd, kwok, k8s)" ;;
  esac
done
cp "$HERE/versions.env" "$ROOT/versions.env"
log "done in $((SECONDS - total))s: $BIN"
echo "$BIN"
