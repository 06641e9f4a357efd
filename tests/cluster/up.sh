#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback for tests: etcd, kube-apiserver,
# kube-scheduler, and kwok playing the kubelet of three fake nodes. Builds the binaries first if
# they are not cached (build.sh).
#
# Usage: up.sh [DIR]     DIR defaults to $TROUPE_CLUSTER_DIR, else a new /tmp/troupe-cluster.XXXX
#
# In DIR: pki/ (CA, serving and client certificates, service-account keys), kubeconfig (admin),
# env (shell file exporting KUBECONFIG, TROUPE_CLUSTER_DIR, TROUPE_APISERVER_URL, ...),
# logs/<component>.log, pids/<component>.pid. The path of the env file is the LAST line of stdout:
#   env_file=$(tests/cluster/up.sh | tail -n1) && . "$env_file"
# Stop with down.sh DIR. Refuses to start when DIR already has a running cluster.
#
# Choices that keep it small (see README.md for the list of limits):
# - no kube-controller-manager: the ServiceAccount admission plugin is disabled (nothing would
#   create the "default" service account of a namespace, and pod creation would fail), and so is
#   TaintNodesByCondition (nothing would lift its not-ready taint from new nodes).
# - every address is on loopback: nodes 127.0.1.1-3, pod IPs 127.100-102.x.y, services 127.96/16.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
LOG_TAG=up
start_time=$(now_ms)

# How long each component may take to become ready; generous for a loaded 2-core CI machine.
READY_TIMEOUT_S=60
# Services get addresses from a loopback range: nothing routes them, and nothing should ever
# send traffic anywhere else from this machine.
SERVICE_CIDR=127.96.0.0/16
SERVICE_FIRST_IP=127.96.0.1
# Label that makes kwok manage a node.
KWOK_NODE_SELECTOR=kwok.x-k8s.io/node=fake

BIN=$("$HERE/build.sh" | tail -n1)
[[ -x "$BIN/kube-apiserver" ]] || die "build.sh did not produce binaries in '$BIN'"
KUBECTL="$BIN/kubectl"

# openssl makes the certificates; Debian's package is the one dependency not built here.
if ! command -v openssl >/dev/null; then
  log "installing openssl (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; } >&2 ||
    die "openssl is required and could not be installed"
fi

DIR=${1:-${TROUPE_CLUSTER_DIR:-}}
if [[ -z "$DIR" ]]; then
  DIR=$(mktemp -d /tmp/troupe-cluster.XXXX)
else
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
fi

# down.sh deletes DIR whole: only ever take an empty directory or one that up.sh made.
MARKER="$DIR/.troupe-cluster"
if [[ ! -e "$MARKER" && -n "$(ls -A "$DIR")" ]]; then
  die "$DIR is not empty and was not made by up.sh: give an empty or new directory"
fi
touch "$MARKER"
# A live process under pids/ means a cluster runs here: refuse rather than start a second one.
if [[ -d "$DIR/pids" ]]; then
  for f in "$DIR"/pids/*.pid; do
    [[ -e "$f" ]] || continue
    if cluster_pid_alive "$f" "$DIR"; then
      die "a cluster is already running in $DIR ($(basename "$f" .pid) pid $(cat "$f"));" \
        "stop it with: $HERE/down.sh $DIR"
    fi
  done
  log "removing the remains of a stopped cluster in $DIR"
fi
rm -rf "$DIR/pki" "$DIR/etcd" "$DIR/logs" "$DIR/pids" "$DIR/kwok" "$DIR/kube-cache" "$DIR/env" \
  "$DIR/kubeconfig"
mkdir -p "$DIR/pki" "$DIR/etcd" "$DIR/logs" "$DIR/pids" "$DIR/kwok"
chmod 700 "$DIR/etcd"
KC="$DIR/kubeconfig"
# kubectl's discovery cache goes in DIR, not in ~/.kube/cache (one entry per random port).
export KUBECACHEDIR="$DIR/kube-cache"
kubectl() { "$KUBECTL" --kubeconfig="$KC" "$@"; }

# On any failure: stop what was started, keep the logs, say where they are.
on_exit() {
  local rc=$?
  ((rc == 0)) && return
  log "failed; last lines of each component log:"
  local f
  for f in "$DIR"/logs/{etcd,kube-apiserver,kube-scheduler,kwok,kubectl}.log; do
    [[ -e "$f" ]] || continue
    echo "--- $f" >&2
    tail -n 15 "$f" >&2
  done
  "$HERE/down.sh" --keep "$DIR" >&2 || true
  log "logs kept in $DIR/logs"
}
trap on_exit EXIT

# --- ports ----------------------------------------------------------------------------------------
# Free ports below the kernel's ephemeral range (32768+), so that no outgoing connection can take
# one between the check and the bind.
PORT_MIN=20000
PORT_SPAN=12000
taken_ports=" "
free_port() { # free_port VAR
  local p _
  for _ in {1..200}; do
    p=$((PORT_MIN + RANDOM % PORT_SPAN))
    [[ "$taken_ports" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken_ports+="$p "
      printf -v "$1" '%s' "$p"
      return
    fi
  done
  die "no free port found on 127.0.0.1"
}
free_port ETCD_CLIENT_PORT
free_port ETCD_PEER_PORT
free_port APISERVER_PORT
free_port SCHEDULER_PORT
free_port KWOK_PORT
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"

# start NAME CMD...: runs CMD in the background, output to logs/NAME.log, pid to pids/NAME.pid.
# Every command line mentions $DIR, which down.sh checks before it signals a pid.
start() {
  local name=$1
  shift
  "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 &
  echo $! >"$DIR/pids/$name.pid"
}
# alive NAME: fails (and says so) when NAME has exited.
alive() {
  cluster_pid_alive "$DIR/pids/$1.pid" "$DIR" && return
  log "$1 exited; see $DIR/logs/$1.log"
  return 1
}
# ready NAME SECONDS DESCRIPTION CMD...: waits for CMD while NAME keeps running.
ready() {
  local name=$1 limit=$2 what=$3 deadline
  shift 3
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || return 1
    ((SECONDS < deadline)) || { log "timed out after ${limit}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

# --- etcd (started now, waited for once the certificates are made) --------------------------------
etcd_started=$(now_ms)
# --unsafe-no-fsync: the data is thrown away with DIR; fsync would only slow tests down.
start etcd "$BIN/etcd" \
  --name=troupe-test \
  --data-dir="$DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="troupe-test=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync \
  --log-level=warn

# --- certificates ---------------------------------------------------------------------------------
PKI="$DIR/pki"
phase=$(now_ms)
CERT_DAYS=30
openssl_quiet() { openssl "$@" 2>>"$DIR/logs/openssl.log" >/dev/null; }
# ECDSA P-256 keys (PKCS#8): made in milliseconds where RSA takes a second or more on a loaded
# machine; Go, rustls and OpenSSL clients all take them.
new_key() { openssl_quiet genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA.
sign() {
  local name=$1 subject=$2 ext=$3
  new_key "$PKI/$name.key"
  openssl_quiet req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr"
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl_quiet x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days "$CERT_DAYS" -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
new_key "$PKI/ca.key"
openssl_quiet req -x509 -new -key "$PKI/ca.key" -subj "/CN=troupe-test-ca" -days "$CERT_DAYS" \
  -sha256 -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI/ca.crt"
# Serving certificate for kube-apiserver, also used by kube-scheduler's health endpoint.
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_FIRST_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
# The admin client: system:masters is bound to cluster-admin by the apiserver's bootstrap RBAC.
sign admin "/O=system:masters/CN=troupe-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
# The aggregation layer's client (front proxy), so that kube-apiserver publishes a request-header
# CA; without one, kube-scheduler's delegated authentication logs an error every few seconds.
sign front-proxy-client "/CN=front-proxy-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
new_key "$PKI/sa.key"
openssl_quiet pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
chmod 600 "$PKI"/*.key
log "certificates made in $(since_ms "$phase")"

b64() { base64 -w0 <"$1"; }
umask 077
cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: troupe-test
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: troupe-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: troupe-test
  context:
    cluster: troupe-test
    user: troupe-admin
current-context: troupe-test
EOF
umask 022

ready etcd "$READY_TIMEOUT_S" "etcd /health" http_ok "127.0.0.1:$ETCD_CLIENT_PORT" /health
log "etcd ready on 127.0.0.1:$ETCD_CLIENT_PORT in $(since_ms "$etcd_started")"

# --- kube-apiserver -------------------------------------------------------------------------------
phase=$(now_ms)
# --endpoint-reconciler-type=none: the "kubernetes" Endpoints would hold 127.0.0.1, which
# Endpoints validation rejects (loopback), and nothing in-cluster needs them.
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" \
  --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --requestheader-client-ca-file="$PKI/ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
  --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --authorization-mode=Node,RBAC \
  --disable-admission-plugins=ServiceAccount,TaintNodesByCondition \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --profiling=false
ready kube-apiserver "$READY_TIMEOUT_S" "kube-apiserver /readyz" kubectl get --raw /readyz
log "kube-apiserver ready at $APISERVER_URL in $(since_ms "$phase")"

# --- kwok stage CRD -------------------------------------------------------------------------------
# kwok runs with --enable-crds=Stage: it reads every stage from the apiserver (so a test may add
# one with kubectl) and has no built-in one. The CRD must exist before kwok starts.
phase=$(now_ms)
SHARE="$(cluster_cache_dir)/share/kwok"
KLOG="$DIR/logs/kubectl.log"
kubectl create -f "$SHARE/stage-crd.yaml" >>"$KLOG" 2>&1
kubectl wait --for=condition=Established --timeout="${READY_TIMEOUT_S}s" crd/stages.kwok.x-k8s.io \
  >>"$KLOG" 2>&1
log "Stage CRD established in $(since_ms "$phase")"

# --- kube-scheduler and kwok ----------------------------------------------------------------------
# QPS well above the default 50: a benchmark schedules 1,000 pods at once.
cat >"$DIR/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $KC
  qps: 1000
  burst: 2000
leaderElection:
  leaderElect: false
EOF
start kube-scheduler "$BIN/kube-scheduler" \
  --config="$DIR/scheduler.yaml" \
  --bind-address=127.0.0.1 \
  --secure-port="$SCHEDULER_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" \
  --tls-private-key-file="$PKI/apiserver.key" \
  --authentication-kubeconfig="$KC" \
  --authorization-kubeconfig="$KC"

# --- kwok -----------------------------------------------------------------------------------------
# KWOK_WORKDIR keeps kwok away from a developer's ~/.kwok/kwok.yaml, which it would load.
# Node leases as a kubelet keeps them (kwok alone keeps none): renewed every few seconds, while
# node status is refreshed every 10 min (node-heartbeat-with-lease).
NODE_LEASE_S=40
cat >"$DIR/kwok/kwok.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options: {}
EOF
start kwok env KWOK_WORKDIR="$DIR/kwok" "$BIN/kwok" \
  --kubeconfig="$KC" \
  --config="$DIR/kwok/kwok.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-label-selector="$KWOK_NODE_SELECTOR" \
  --enable-crds=Stage \
  --node-lease-duration-seconds="$NODE_LEASE_S" \
  --cidr=127.99.0.0/16 \
  --node-ip=127.0.1.254 \
  --server-address="127.0.0.1:$KWOK_PORT"

# --- kwok stages ----------------------------------------------------------------------------------
# kwok's own defaults (copied from the pinned module by build.sh) first, then ours. The first
# write of a new CRD's objects waits about 2 s for its storage: the scheduler and kwok start
# meanwhile, and kwok picks the stages up as they come.
phase=$(now_ms)
kubectl create -f "$SHARE/default-stages.yaml" -f "$HERE/stages/" >>"$KLOG" 2>&1
log "kwok stages created in $(since_ms "$phase")"

ready kube-scheduler "$READY_TIMEOUT_S" "kube-scheduler /healthz" \
  kubectl --server="https://127.0.0.1:$SCHEDULER_PORT" get --raw /healthz
ready kwok "$READY_TIMEOUT_S" "kwok /healthz" http_ok "127.0.0.1:$KWOK_PORT" /healthz
log "kube-scheduler and kwok ready"

# --- fake nodes -----------------------------------------------------------------------------------
# kwok-node-0 and -1 in pool=game, kwok-node-2 in pool=batch and tainted. Each has its own
# loopback InternalIP (what pods get as hostIP) and its own loopback pod CIDR (a /16: room for
# far more than the 2,000 pods it accepts). kwok hands out pod IPs from the address written in the
# CIDR on, so it is written 127.10x.0.1/16 (not .0.0, a network address); the apiserver takes it
# with a warning ("ambiguous"), which lands in logs/kubectl.log.
phase=$(now_ms)
NODE_POOLS=(game game batch)
# Roomy enough for the 1,000-pod benchmark on one node.
NODE_CPU=32
NODE_MEMORY=128Gi
NODE_PODS=2000
nodes_yaml() {
  local i
  for i in 0 1 2; do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kwok.x-k8s.io/node: fake
    node.kubernetes.io/instance-type: kwok
    pool: ${NODE_POOLS[$i]}
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
spec:
  podCIDR: 127.$((100 + i)).0.1/16
  podCIDRs:
  - 127.$((100 + i)).0.1/16
EOF
    if [[ ${NODE_POOLS[$i]} == batch ]]; then
      cat <<EOF
  taints:
  - key: dedicated
    value: batch
    effect: NoSchedule
EOF
    fi
    cat <<EOF
status:
  addresses:
  - type: InternalIP
    address: 127.0.1.$((i + 1))
  - type: Hostname
    address: kwok-node-$i
  allocatable:
    cpu: "$NODE_CPU"
    memory: $NODE_MEMORY
    pods: "$NODE_PODS"
    ephemeral-storage: 1Ti
  capacity:
    cpu: "$NODE_CPU"
    memory: $NODE_MEMORY
    pods: "$NODE_PODS"
    ephemeral-storage: 1Ti
EOF
  done
}
nodes_yaml >"$DIR/nodes.yaml"
kubectl create -f "$DIR/nodes.yaml" >>"$KLOG" 2>&1
ready kwok "$READY_TIMEOUT_S" "kwok to make the nodes Ready" \
  kubectl wait --for=condition=Ready --timeout=2s node -l "$KWOK_NODE_SELECTOR"
log "3 nodes Ready in $(since_ms "$phase")"

# --- env ------------------------------------------------------------------------------------------
cat >"$DIR/env" <<EOF
# Written by tests/cluster/up.sh; source it to talk to this cluster.
export TROUPE_CLUSTER_DIR='$DIR'
export KUBECONFIG='$KC'
export KUBECACHEDIR='$DIR/kube-cache'
export TROUPE_APISERVER_URL='$APISERVER_URL'
export TROUPE_KUBECTL='$KUBECTL'
export TROUPE_CLUSTER_BIN='$BIN'
EOF
log "cluster up in $(since_ms "$start_time"): $DIR (stop with $HERE/down.sh $DIR)"
echo "$DIR/env"
