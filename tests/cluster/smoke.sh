#!/usr/bin/env bash
# Proves the test control plane works: starts it, checks placement, host ports, the simulated
# image-pull and crash-loop failures, and stops it. Exits non-zero on the first failed check.
#
# Usage: smoke.sh   (honours TROUPE_CACHE and TROUPE_CLUSTER_DIR like up.sh)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
LOG_TAG=smoke
start_time=$SECONDS

# How long a pod may take to reach the state a check expects. kwok acts within milliseconds; the
# image-pull case has the 10 s the brief of these checks allows.
POD_TIMEOUT_S=20
PULL_TIMEOUT_S=10
NS=smoke

env_file=$("$HERE/up.sh" | tail -n1)
# shellcheck source=/dev/null
. "$env_file"
trap '"$HERE/down.sh" "$TROUPE_CLUSTER_DIR"' EXIT
log "cluster up in $((SECONDS - start_time))s"

k() { "$TROUPE_KUBECTL" -n "$NS" "$@"; }
passed=0
pass() {
  passed=$((passed + 1))
  log "ok: $*"
}
fail() {
  log "FAILED: $*"
  k get pods -o wide >&2 || true
  echo "smoke: $passed passed, 1 failed"
  exit 1
}
# field POD JSONPATH
field() { k get pod "$1" -o "jsonpath=$2"; }
# eventually SECONDS POD JSONPATH REGEX: waits until the field matches, prints its last value.
eventually() {
  local limit=$1 pod=$2 path=$3 want=$4 deadline value=""
  deadline=$((SECONDS + limit))
  while ((SECONDS < deadline)); do
    value=$(field "$pod" "$path" 2>/dev/null || true)
    if [[ $value =~ $want ]]; then
      printf '%s' "$value"
      return 0
    fi
    sleep 0.2
  done
  log "$pod: $path is '$value' after ${limit}s, expected /$want/"
  return 1
}

# pod NAME IMAGE HOST_PORT [EXTRA_SPEC_YAML]: creates a one-container pod listening on UDP 7777,
# published on HOST_PORT of its node unless that is 0; EXTRA goes under spec.
pod() {
  local name=$1 image=$2 host_port=$3 extra=${4:-}
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: $NS
spec:
  containers:
  - name: server
    image: $image
    ports:
    - containerPort: 7777
      protocol: UDP
$( ((host_port == 0)) || echo "      hostPort: $host_port")
$extra
YAML
}

"$TROUPE_KUBECTL" create namespace "$NS" >/dev/null

# 1. A game server with a host port on the game pool: Running, with loopback pod and host IPs.
pod game-0 example.invalid/game-server:1 7777 '  nodeSelector:
    pool: game'
eventually "$POD_TIMEOUT_S" game-0 '{.status.phase}' '^Running$' >/dev/null ||
  fail "game-0 did not become Running"
pod_ip=$(eventually "$POD_TIMEOUT_S" game-0 '{.status.podIP}' '^127\.') || fail "game-0 has no loopback pod IP"
host_ip=$(field game-0 '{.status.hostIP}')
node=$(field game-0 '{.spec.nodeName}')
[[ $host_ip =~ ^127\.0\.1\.[12]$ && $node =~ ^kwok-node-[01]$ ]] ||
  fail "game-0 on $node with hostIP $host_ip, expected kwok-node-0/1 with 127.0.1.1/2"
eventually 5 game-0 '{.status.conditions[?(@.type=="Ready")].status}' '^True$' >/dev/null ||
  fail "game-0 is Running but not Ready"
pass "game-0 Running and Ready on $node, podIP $pod_ip, hostIP $host_ip"

# 2. An image that cannot be pulled: Pending with ErrImagePull, then ImagePullBackOff.
pod broken-image example.invalid/cannot-pull:1 0
reason=$(eventually "$PULL_TIMEOUT_S" broken-image '{.status.containerStatuses[0].state.waiting.reason}' \
  '^(ErrImagePull|ImagePullBackOff)$') || fail "broken-image has no image-pull waiting reason"
pass "broken-image waiting with $reason"
eventually 5 broken-image '{.status.containerStatuses[0].state.waiting.reason}' '^ImagePullBackOff$' \
  >/dev/null || fail "broken-image did not back off"
phase=$(field broken-image '{.status.phase}')
[[ $phase == Pending ]] || fail "broken-image is $phase, expected Pending"
pass "broken-image stays Pending in ImagePullBackOff"

# 3. A crashing container: CrashLoopBackOff with restarts.
pod crasher example.invalid/crashloop:1 0
eventually "$POD_TIMEOUT_S" crasher '{.status.containerStatuses[0].state.waiting.reason}' \
  '^CrashLoopBackOff$' >/dev/null || fail "crasher is not in CrashLoopBackOff"
restarts=$(field crasher '{.status.containerStatuses[0].restartCount}')
((restarts > 0)) || fail "crasher has restartCount $restarts"
pass "crasher in CrashLoopBackOff, restartCount $restarts"

# 4. A server that never passes its readiness probe: Running, not Ready.
pod unready example.invalid/never-ready:1 0
eventually "$POD_TIMEOUT_S" unready '{.status.phase}' '^Running$' >/dev/null || fail "unready not Running"
ready=$(field unready '{.status.conditions[?(@.type=="Ready")].status}')
[[ $ready == False ]] || fail "unready has Ready=$ready"
pass "unready Running with Ready=False"

# 5. The batch node is tainted: a pod without the toleration stays off it, one with it lands.
pod batch-intolerant example.invalid/batch:1 0 '  nodeSelector:
    pool: batch'
pod batch-tolerant example.invalid/batch:1 0 '  nodeSelector:
    pool: batch
  tolerations:
  - key: dedicated
    operator: Equal
    value: batch
    effect: NoSchedule'
eventually "$POD_TIMEOUT_S" batch-tolerant '{.spec.nodeName}' '^kwok-node-2$' >/dev/null ||
  fail "batch-tolerant not on kwok-node-2"
eventually "$POD_TIMEOUT_S" batch-tolerant '{.status.phase}' '^Running$' >/dev/null ||
  fail "batch-tolerant not Running"
pass "batch-tolerant Running on kwok-node-2"
eventually "$POD_TIMEOUT_S" batch-intolerant '{.status.conditions[?(@.type=="PodScheduled")].reason}' \
  '^Unschedulable$' >/dev/null || fail "batch-intolerant was not refused by the taint"
pass "batch-intolerant Unschedulable (taint dedicated=batch)"

# 6. Two pods with the same host port pinned to one node: the second cannot be scheduled.
for name in port-a port-b; do
  pod "$name" example.invalid/game-server:1 7778 '  nodeSelector:
    kubernetes.io/hostname: kwok-node-1'
  if [[ $name == port-a ]]; then
    eventually "$POD_TIMEOUT_S" port-a '{.status.phase}' '^Running$' >/dev/null || fail "port-a not Running"
  fi
done
eventually "$POD_TIMEOUT_S" port-b '{.status.conditions[?(@.type=="PodScheduled")].reason}' \
  '^Unschedulable$' >/dev/null || fail "port-b was not refused for its host port"
message=$(field port-b '{.status.conditions[?(@.type=="PodScheduled")].message}')
[[ $message == *"free ports"* ]] || fail "port-b Unschedulable for another reason: $message"
pass "port-b Unschedulable: $message"

# 7. Every pod that got an IP got its own.
ips=$(k get pods -o 'jsonpath={range .items[*]}{.status.podIP}{"\n"}{end}' | grep -v '^$' | sort)
[[ -z $(uniq -d <<<"$ips") ]] || fail "pod IPs handed out twice: $(uniq -d <<<"$ips" | tr '\n' ' ')"
pass "$(wc -l <<<"$ips") pods with distinct pod IPs"

# 8. The crashing container is restarted after the kubelet's 10 s back-off, and crashes again.
restarts=$(eventually "$POD_TIMEOUT_S" crasher '{.status.containerStatuses[0].restartCount}' '^[2-9]$') ||
  fail "crasher was not restarted after its back-off"
pass "crasher restarted, restartCount $restarts"

# 9. Deleting a pod removes it (kwok's pod-delete stage plays the kubelet's part).
k delete pod game-0 --wait=true --timeout="${POD_TIMEOUT_S}s" >/dev/null || fail "game-0 not deleted"
pass "game-0 deleted"

log "all checks passed in $((SECONDS - start_time))s"
echo "smoke: $passed passed, 0 failed"
