#!/usr/bin/env bash
# Stops a control plane started by up.sh and removes its directory. Safe to call twice, and on a
# directory whose start failed half-way.
#
# Usage: down.sh [--keep] [DIR]   DIR defaults to $TROUPE_CLUSTER_DIR (set by up.sh's env file).
#        --keep stops the processes but leaves DIR (and its logs) in place.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
LOG_TAG=down

# How long a component gets to exit on SIGTERM before SIGKILL.
STOP_TIMEOUT_S=10
# Reverse start order: the apiserver outlives its clients, etcd outlives the apiserver.
COMPONENTS=(kwok kube-scheduler kube-apiserver etcd)

keep=false
if [[ ${1:-} == --keep ]]; then
  keep=true
  shift
fi
DIR=${1:-${TROUPE_CLUSTER_DIR:-}}
[[ -n "$DIR" ]] || die "usage: down.sh [--keep] DIR (or set TROUPE_CLUSTER_DIR)"
if [[ ! -d "$DIR" ]]; then
  log "nothing to stop: $DIR does not exist"
  exit 0
fi
DIR=$(cd "$DIR" && pwd)
# Never delete a directory up.sh did not make (it leaves this marker).
[[ -e "$DIR/.troupe-cluster" ]] || die "$DIR has no .troupe-cluster marker: not made by up.sh"

stop() {
  local name=$1 pidfile="$DIR/pids/$1.pid" pid deadline
  cluster_pid_alive "$pidfile" "$DIR" || return 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + STOP_TIMEOUT_S))
  while cluster_pid_alive "$pidfile" "$DIR"; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  log "stopped $name (pid $pid)"
}

for c in "${COMPONENTS[@]}"; do stop "$c"; done
rm -f "$DIR"/pids/*.pid
if $keep; then
  log "processes stopped; kept $DIR"
else
  rm -rf "$DIR"
  log "removed $DIR"
fi
