#!/usr/bin/env bash
# Start the testbed on loopback: registry, etcd, kube-apiserver, controller-manager, scheduler, a KWOK node,
# a real node (containerd + runc + kubelet) and kube-proxy (iptables mode: ClusterIPs work from the host and from pods).
# Writes $STATE/testbed.env; prints `export KUBECONFIG=...`.
# Prereq: build.sh. Stop with down.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
T0=$SECONDS
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kwok images pause; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: run test/testbed/scripts/build.sh first"
done
for c in $COMPONENTS; do
  if [ -f "$STATE/$c.pid" ] && kill -0 "$(cat "$STATE/$c.pid")" 2>/dev/null; then die "testbed already running ($c); run down.sh first"; fi
done
grep -q " $STATE/" /proc/mounts && die "mounts left under $STATE from an earlier run; run down.sh first"
for p in $ETCD_PORT $((ETCD_PORT+10)) $((ETCD_PORT+20)) $API_PORT $((API_PORT+1)) $((API_PORT+2)) $KUBELET_PORT $KUBELET_HEALTHZ_PORT $KWOK_PORT $PROXY_PORT $((PROXY_PORT+1)) $REGISTRY_PORT; do
  ss -Hltn "sport = :$p" | grep -q . && die "port $p is in use (override with MLSHIP_*_PORT, see lib.sh)"
done
ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE exists; run down.sh first"

# a failed start leaves nothing behind unless asked to (to read the logs in $STATE, which down.sh keeps)
trap 'rc=$?; [ $rc = 0 ] || [ "${MLSHIP_KEEP_ON_FAIL:-0}" = 1 ] || { log "up failed; stopping (logs in $STATE)"; bash "$TB/scripts/down.sh"; }; exit $rc' EXIT
rm -rf "$STATE"; mkdir -p "$STATE"/{certs,containerd/certs.d/$REGISTRY,cni/conf,kubelet}
# whatever down.sh must restore or must not touch
sysctl -n net.ipv4.ip_forward > "$STATE/ip_forward.before"
ls /run/netns 2>/dev/null > "$STATE/netns.before" || true
# pod -> ClusterIP -> pod on the same bridge: the reply is bridged, and only br_netfilter (bridge-nf-call-iptables=1)
# lets conntrack undo the DNAT on it; without it the client pod gets the reply from the wrong address and drops it.
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null || true
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  sysctl -n net.bridge.bridge-nf-call-iptables > "$STATE/bridge-nf-call-iptables.before"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
else
  log "WARNING: no br_netfilter: pods cannot reach ClusterIPs served by pods on the same node (the host can)"
fi

# registry first (its blobs persist in the cache, so re-pushing is quick); containerd meanwhile
start registry "$BIN/images" serve "$REGISTRY" "$CACHE/registry"
render "$TB/node/containerd/config.toml" > "$STATE/containerd/config.toml"
render "$TB/node/containerd/hosts.toml" > "$STATE/containerd/certs.d/$REGISTRY/hosts.toml"
render "$TB/node/cni/10-mlship.conflist" > "$STATE/cni/conf/10-mlship.conflist"
# The pod bridge, made here so the guard below exists before any pod: the CNI bridge plugin turns on
# ip_forward (isGateway); pods may reach each other and the host, never beyond it. Its gateway address is set
# here too (the plugin keeps it), so the pod network is routed into the bridge from the start, not via eth0.
ip link add "$BRIDGE" type bridge && ip addr add "$POD_GW/${POD_CIDR#*/}" dev "$BRIDGE" && ip link set "$BRIDGE" up
iptables -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP -m comment --comment mlship-testbed
# Host -> ClusterIP: the host routes the service range through its default route (eth0). A new connection to
# a ClusterIP that kube-proxy's DNAT did not send to a pod on the bridge (kube-proxy not running yet, no such
# Service or port, an endpoint on the KWOK node's fake 10.0.0.0/24) is refused here, never sent out.
# Not `! -o $BRIDGE`: in OUTPUT the out-interface is the one routed before the DNAT (always eth0 here).
# Only NEW: the ICMP errors of other REJECTs are RELATED to the same connection and must get through.
iptables -I OUTPUT -m conntrack --ctstate NEW --ctorigdst "$SERVICE_CIDR" ! -d "$POD_CIDR" -j REJECT -m comment --comment mlship-testbed
start containerd containerd --config "$STATE/containerd/config.toml"
wait_for 20 registry curl -sf "http://$REGISTRY/v2/"
bash "$TB/scripts/images.sh" push > "$STATE/images-push.log" 2>&1 &
PUSH=$!

# control plane
cd "$STATE"
openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
echo "$TOKEN,admin,admin,system:masters" > tokens.csv
cat > kubeconfig <<KC
apiVersion: v1
kind: Config
clusters: [{name: mlship-testbed, cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: $TOKEN}}]
contexts: [{name: mlship-testbed, context: {cluster: mlship-testbed, user: admin}}]
current-context: mlship-testbed
KC
start etcd "$BIN/etcd" --data-dir "$STATE/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT+10))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT+10))" --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT+10))" \
  --listen-metrics-urls "http://127.0.0.1:$((ETCD_PORT+20))"
# Pods reach the API server (in-cluster config: the `kubernetes` Service, 10.96.0.1:443) at the bridge
# address: --advertise-address is the bridge gateway, which the lease reconciler publishes as the Service's
# endpoint with the secure port, and socat forwards that address to the loopback-bound apiserver. The
# apiserver's self-signed certificate carries 10.96.0.1 and kubernetes.default.svc.
# --kubelet-preferred-address-types=InternalIP: with a Hostname address the apiserver would resolve the node
# name through the system DNS server (non-loopback traffic).
start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" --secure-port="$API_PORT" \
  --bind-address=127.0.0.1 --cert-dir="$STATE/certs" --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file=sa.pub --service-account-signing-key-file=sa.key --token-auth-file=tokens.csv \
  --authorization-mode=Node,RBAC --service-cluster-ip-range="$SERVICE_CIDR" --advertise-address="$POD_GW" \
  --kubelet-preferred-address-types=InternalIP
wait_for 60 kube-apiserver curl -sfk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT/readyz"
start apiserver-forward socat "TCP-LISTEN:$API_PORT,bind=$POD_GW,fork,reuseaddr" "TCP:127.0.0.1:$API_PORT"
wait_for 10 "API server on $POD_GW" curl -sfk -H "Authorization: Bearer $TOKEN" "https://$POD_GW:$API_PORT/readyz"
log "kube-apiserver ready after $((SECONDS - T0))s"
start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig=kubeconfig --authentication-kubeconfig=kubeconfig \
  --authorization-kubeconfig=kubeconfig --bind-address=127.0.0.1 --secure-port=$((API_PORT+1)) --leader-elect=false \
  --use-service-account-credentials=true --service-account-private-key-file=sa.key \
  --root-ca-file="$STATE/certs/apiserver.crt" --controllers='*'
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig=kubeconfig --authentication-kubeconfig=kubeconfig \
  --authorization-kubeconfig=kubeconfig --bind-address=127.0.0.1 --secure-port=$((API_PORT+2)) --leader-elect=false

# KWOK node
render "$TB/node/kwok/node.yaml" | $KUBECTL apply -f - >/dev/null
start kwok "$BIN/kwok" --kubeconfig="$KUBECONFIG" -c "$TB/node/kwok/stages.yaml" --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --cidr=10.0.0.0/24 --node-ip=10.0.0.1 \
  --node-lease-duration-seconds=40 --server-address="127.0.0.1:$KWOK_PORT"

# real node
wait_for 20 containerd ctr -a "$SOCK" version
render "$TB/node/kubelet/config.yaml" > "$STATE/kubelet/config.yaml"
start kubelet "$BIN/kubelet" --config="$STATE/kubelet/config.yaml" --kubeconfig="$KUBECONFIG" --root-dir="$STATE/kubelet" \
  --cert-dir="$STATE/kubelet/pki" --node-ip=127.0.0.1 --hostname-override="$NODE" -v=2
wait_for 60 "node $KWOK_NODE Ready" node_ready "$KWOK_NODE"
wait_for 90 "node $NODE Ready" node_ready "$NODE"
# The kubelet refuses a loopback node IP ("nodeIP can't be loopback address") and leaves the addresses empty,
# so logs/exec fail with "no preferred addresses found"; set InternalIP by hand (the kubelet keeps it).
$KUBECTL patch node "$NODE" --subresource=status --type=merge \
  -p '{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}' >/dev/null

# kube-proxy, iptables mode (the `iptables` on PATH: Debian's nft backend). The flags keep it off the host's sysctls:
# conntrack-max-per-core=0 and the two timeouts=0 leave nf_conntrack_* as they are; no localhost NodePorts means no
# route_localnet=1. NodePorts are served on the bridge address only (`primary` would expand to nothing for the
# loopback node IP, i.e. to every local IP; ::1 keeps IPv6 NodePorts off). down.sh removes its rules.
start kube-proxy "$BIN/kube-proxy" --kubeconfig="$KUBECONFIG" --proxy-mode=iptables --hostname-override="$NODE" \
  --bind-address=127.0.0.1 --cluster-cidr="$POD_CIDR" --healthz-bind-address="127.0.0.1:$PROXY_PORT" \
  --metrics-bind-address="127.0.0.1:$((PROXY_PORT+1))" --conntrack-max-per-core=0 \
  --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
  --iptables-localhost-nodeports=false --nodeport-addresses="$POD_GW/32,::1/128" -v=2
proxy_synced() {  # healthy, and the rules of the `kubernetes` Service are in place
  curl -sf "http://127.0.0.1:$PROXY_PORT/healthz" >/dev/null && iptables -t nat -S OUTPUT | grep -c KUBE-SERVICES &&
    iptables -t nat -S KUBE-SERVICES | grep -c 'default/kubernetes:https'
}
wait_for 60 "kube-proxy synced" proxy_synced
log "kube-proxy synced after $((SECONDS - T0))s"
wait_for 60 "default ServiceAccount" $KUBECTL get sa default
wait $PUSH || { cat "$STATE/images-push.log" >&2; die "pushing images to $REGISTRY failed"; }

# `export K=V` lines: sourceable by sh, includable by make, trivial to parse in a Go test
{ cat <<ENV
KUBECONFIG=$KUBECONFIG
REGISTRY=$REGISTRY
NODE=$NODE
SERVICE_CIDR=$SERVICE_CIDR
NODEPORT_IP=$POD_GW
KWOK_NODE=$KWOK_NODE
CONTAINERD_SOCK=$SOCK
TESTBED_BIN=$BIN
ENV
  cat "$STATE/images.env"; } | sed 's/^/export /' > "$STATE/testbed.env"
log "testbed up in $((SECONDS - T0))s; env in $STATE/testbed.env"
echo "export KUBECONFIG=$KUBECONFIG"
