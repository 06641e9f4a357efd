# shellcheck shell=bash
# Shared by build.sh, up.sh, down.sh and smoke.sh: where binaries are cached, logging, pids.
# Sourced, never run. Everything here is side-effect free until a function is called.

CLUSTER_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# What build.sh produces and up.sh needs, relative to the cache directory of one key.
CLUSTER_ARTEFACTS=(bin/etcd bin/kube-apiserver bin/kube-scheduler bin/kubectl bin/kwok
  share/kwok/stage-crd.yaml share/kwok/default-stages.yaml)

# The cache key is a hash of versions.env: a version change means a new directory, never a
# half-rebuilt old one.
cluster_key() { sha256sum "$CLUSTER_HERE/versions.env" | cut -c1-16; }
cluster_cache_dir() { echo "${TROUPE_CACHE:-$HOME/.cache/troupe}/cluster/$(cluster_key)"; }
cluster_bin_dir() { echo "$(cluster_cache_dir)/bin"; }

# True when everything is built: the warm path, which must stay well under a second.
cluster_artefacts_present() {
  local root a
  root=$(cluster_cache_dir)
  for a in "${CLUSTER_ARTEFACTS[@]}"; do [[ -s "$root/$a" ]] || return 1; done
}

# Logs go to stderr so that stdout carries only what a caller may capture (a path).
log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${LOG_TAG:-cluster}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# cluster_pid_alive PIDFILE DIR: true when the pid in PIDFILE runs and its command line mentions
# DIR (every component's does), so that a recycled pid is never taken for ours.
cluster_pid_alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}

# http_ok HOST:PORT PATH: true when a plain-HTTP GET answers 200. Bash only: no curl needed.
http_ok() {
  local fd status=""
  exec {fd}<>"/dev/tcp/${1%:*}/${1##*:}" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" >&"$fd"
  read -r -t 2 _ status _ <&"$fd" || true
  exec {fd}>&-
  [[ $status == 200 ]]
}

# now_ms: wall clock in milliseconds; since_ms T0: "1.234s" elapsed since now_ms gave T0.
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
since_ms() {
  local d=$(($(now_ms) - $1))
  printf '%d.%03ds' $((d / 1000)) $((d % 1000))
}
