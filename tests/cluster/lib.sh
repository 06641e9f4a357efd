# shellcheck shell=bash
# Shared by build.sh, up.sh, down.sh and smoke.sh: where binaries are cached, logging, waiting.
# Sourced, never run. Everything here is side-effect free until a function is called.

CLUSTER_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The binaries build.sh produces and up.sh needs, all in one bin/ directory per cache key.
CLUSTER_BINARIES=(etcd kube-apiserver kube-scheduler kubectl kwok)

# The cache key is a hash of versions.env: a version change means a new directory, never a
# half-rebuilt old one.
cluster_key() { sha256sum "$CLUSTER_HERE/versions.env" | cut -c1-16; }
cluster_cache_dir() { echo "${TROUPE_CACHE:-$HOME/.cache/troupe}/cluster/$(cluster_key)"; }
cluster_bin_dir() { echo "$(cluster_cache_dir)/bin"; }

# True when every binary is present in bin/: the warm path, which must stay well under a second.
cluster_binaries_present() {
  local bin b
  bin=$(cluster_bin_dir)
  for b in "${CLUSTER_BINARIES[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

# Logs go to stderr so that stdout carries only what a caller may capture (a path).
log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${LOG_TAG:-cluster}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_until SECONDS DESCRIPTION CMD...: polls CMD every 0.2 s until it succeeds or time runs out.
wait_until() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out after ${limit}s waiting for $what"; return 1; }
    sleep 0.2
  done
}
