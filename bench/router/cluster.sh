#!/usr/bin/env bash
# The router in the cluster: its overhead over calling the replica pod directly, on the testbed.
# Needs the testbed up (bash test/testbed/scripts/up.sh; root). Deploys examples/stdlib with numReplicas 1
# (MODEL=onnx: examples/onnx) through a throwaway mlship server, measures the replica pod directly, the mlship-router pod, and the
# router through its ClusterIP (kube-proxy), then deletes everything it made. Writes
# bench/results/router-cluster.md (router-cluster-onnx.md with MODEL=onnx).
#   bash bench/router/cluster.sh [-c 1,8] [-n 5000] [-rounds 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${MLSHIP_STATE:-/tmp/mlship-testbed}
[ -f "$STATE/testbed.env" ] || { echo "bench/router/cluster.sh: no testbed: run bash test/testbed/scripts/up.sh first" >&2; exit 1; }
. "$STATE/testbed.env"
K="$TESTBED_BIN/kubectl"
make -s build
W=$(mktemp -d)
NS=bench-router-$$
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export MLSHIP_CONFIG=$W/config.json MLSHIP_SERVER= MLSHIP_TOKEN=
M=bin/mlship
cleanup() {
  $M service delete -n bench-cluster >/dev/null 2>&1 || true
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null || true
  $K delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
$K create namespace "$NS" >/dev/null
$M server --data-dir "$W/data" --addr "127.0.0.1:$(free)" --scoring-addr "127.0.0.1:$(free)" \
  --image-binary bin/mlship 2>"$W/server.log" &
SRV=$!
for _ in $(seq 100); do [ -f "$MLSHIP_CONFIG" ] && break; sleep 0.1; done
$M computetarget attach kubernetes -n testbed --kubeconfig "$KUBECONFIG" --namespace "$NS" --cluster-purpose DevTest \
  --registry "$REGISTRY" --insecure-registry --node-selector "kubernetes.io/hostname=$NODE" -o json >/dev/null
cat > "$W/dc.json" <<DC
{"computeType": "AKS", "numReplicas": 1, "maxConcurrentRequestsPerContainer": 8,
 "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 0.5}}
DC
# MODEL=onnx: the no-code ONNX example (served in Go by ONNX Runtime: a fast replica, so the router's own
# cost shows); default: examples/stdlib, a Python entry script.
if [ "${MODEL:-stdlib}" = onnx ]; then
  $M model register -n bench-lin -p examples/onnx/model/model.onnx -o json >/dev/null
  ic=()
  what="examples/onnx (no-code ONNX, served by ONNX Runtime in the replica's Go process, maxConcurrentRequestsPerContainer 8)"
else
  $M model register -n bench-lin -p examples/stdlib/model/weights.json -o json >/dev/null
  ic=(-ic examples/stdlib/inferenceconfig.json)
  what="examples/stdlib (Python entry script, 8 workers, maxConcurrentRequestsPerContainer 8 so the router does not queue what the replica would take)"
fi
uri=$($M model deploy -n bench-cluster -m bench-lin:1 "${ic[@]}" -dc "$W/dc.json" -ct testbed -o json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["scoringUri"])')
key=$($M service get-keys -n bench-cluster -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])')
pod=$($K -n "$NS" get pods -l mlship.io/service=bench-cluster -o jsonpath='{.items[0].status.podIP}')
router=$($K -n "$NS" get pods -l app.kubernetes.io/component=router -o jsonpath='{.items[0].status.podIP}')
path=/api/v1/service/bench-cluster/score
note="$what deployed with \`-ct\` on the testbed's real node; \
the replica pod (\`mlship score\`, no auth) is the baseline; the mlship-router pod does key auth, balancing and the queue; \
the ClusterIP row adds kube-proxy's DNAT. Client, cluster and replicas share the machine's cores."
go run ./bench/router -targets "replica pod (direct)=http://$pod:5001/score;mlship router pod=http://$router:7879$path;mlship router via ClusterIP=$uri" \
  -key "$key" -title "The router in the cluster (${MODEL:-stdlib} replica)" -note "$note" \
  -out "bench/results/router-cluster${MODEL:+-$MODEL}.md" "$@"
