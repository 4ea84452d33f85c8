# Shared settings of the testbed scripts (sourced, not run). Every value can be overridden from the environment.
TB=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)            # test/testbed
CACHE=${MLSHIP_CACHE:-$HOME/.cache/mlship}/testbed               # binaries + image tarballs, kept across runs
BIN=$CACHE/bin
IMG=$CACHE/images
STATE=${MLSHIP_STATE:-/tmp/mlship-testbed}                       # one cluster's state, wiped by up.sh
K8S_VERSION=v1.37.2
KWOK_VERSION=v0.8.0
ETCD_PORT=${MLSHIP_ETCD_PORT:-23791}       # +10 peer, +20 metrics
API_PORT=${MLSHIP_API_PORT:-16444}         # +1 controller-manager, +2 scheduler
KUBELET_PORT=${MLSHIP_KUBELET_PORT:-10350}
KUBELET_HEALTHZ_PORT=$((KUBELET_PORT - 2))
KWOK_PORT=${MLSHIP_KWOK_PORT:-10247}
PROXY_PORT=${MLSHIP_PROXY_PORT:-10356}     # kube-proxy healthz, +1 metrics
REGISTRY_PORT=${MLSHIP_REGISTRY_PORT:-15001}
REGISTRY=127.0.0.1:$REGISTRY_PORT
NODE=${MLSHIP_NODE:-mlship-node}           # the real node (kubelet + containerd + runc)
KWOK_NODE=${MLSHIP_KWOK_NODE:-kwok-node-0} # the fake node
BRIDGE=${MLSHIP_BRIDGE:-mlship0}
POD_CIDR=${MLSHIP_POD_CIDR:-10.244.0.0/24}
_net=${POD_CIDR%/*}; POD_GW=${_net%.*}.$(( ${_net##*.} + 1 ))  # the bridge's address (host-local's default gateway)
SERVICE_CIDR=${MLSHIP_SERVICE_CIDR:-10.96.0.0/12}
TOKEN=mlship-testbed-admin
SOCK=$STATE/containerd/containerd.sock
export KUBECONFIG=$STATE/kubeconfig
KUBECTL="$BIN/kubectl --kubeconfig=$KUBECONFIG"
# the components started by up.sh, in stop order (down.sh kills them by their PID files)
COMPONENTS="kubelet kube-proxy apiserver-forward kwok kube-scheduler kube-controller-manager kube-apiserver etcd containerd registry"

log() { printf '[testbed %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

# render FILE: the config template with @VARS@ filled in, on stdout.
render() {
  sed -e "s|@STATE@|$STATE|g" -e "s|@REGISTRY@|$REGISTRY|g" -e "s|@BRIDGE@|$BRIDGE|g" \
      -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@SERVICE_CIDR@|$SERVICE_CIDR|g" -e "s|@KUBELET_PORT@|$KUBELET_PORT|g" \
      -e "s|@KUBELET_HEALTHZ_PORT@|$KUBELET_HEALTHZ_PORT|g" -e "s|@KWOK_NODE@|$KWOK_NODE|g" "$1"
}

# start NAME COMMAND...: run COMMAND in the background, log to $STATE/NAME.log, PID in $STATE/NAME.pid.
start() {
  local name=$1; shift
  "$@" >"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

node_ready() {
  [ "$($KUBECTL get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
