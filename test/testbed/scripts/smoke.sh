#!/usr/bin/env bash
# Smoke test of the testbed: up, push a static Go app to the loopback registry, run it on the real node
# (real pull, readiness, logs, exec, pod IP from the host), reach it through kube-proxy (ClusterIP and NodePort
# from the host, ClusterIP from a pod to another pod and to itself), run the Python base image, fill the KWOK node,
# then down and check that nothing is left. Prereq: build.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
T0=$SECONDS
timings=()
lap() { timings+=("$1=$(( SECONDS - $2 ))s"); }

cleanup() {
  rc=$?
  S=$SECONDS
  if ! bash "$TB/scripts/down.sh"; then rc=1; fi
  lap down $S
  echo "smoke: ${timings[*]} total=$((SECONDS - T0))s" >&2
  [ $rc = 0 ] && echo "SMOKE OK" >&2 || echo "SMOKE FAILED (logs in $STATE)" >&2
  exit $rc
}
trap cleanup EXIT
S=$SECONDS; bash "$TB/scripts/up.sh" >/dev/null; lap up $S
. "$STATE/testbed.env"

# deploy NAME NODE IMAGE REPLICAS [PROBE]: a Deployment pinned to NODE
deploy() {
  cat <<Y | $KUBECTL apply -f - >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1}
spec:
  replicas: $4
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      nodeSelector: {kubernetes.io/hostname: $2}
      terminationGracePeriodSeconds: 2
      containers:
      - {name: app, image: "$3", imagePullPolicy: IfNotPresent${5:+, readinessProbe: $5}}
Y
}
available() { [ "$($KUBECTL get deploy "$1" -o jsonpath='{.status.availableReplicas}')" = "$2" ]; }
show() { $KUBECTL get deploy,pods -o wide >&2; $KUBECTL get events --sort-by=.lastTimestamp | tail -20 >&2; }

# 1. static Go app, pulled by containerd from the loopback registry onto the real node
S=$SECONDS
APP=$REGISTRY/mlship/smokeapp:1
"$BIN/images" app "$BIN/smokeapp" "$APP"
deploy smoke "$NODE" "$APP" 2 '{exec: {command: [/app, probe]}, periodSeconds: 1}'
wait_for 120 "deployment smoke (real node)" available smoke 2 || { show; exit 1; }
lap real-deploy $S
$KUBECTL get events --field-selector reason=Pulled -o jsonpath='{.items[*].message}' | grep -q "Successfully pulled image \"$APP\"" ||
  die "no 'Successfully pulled image $APP' event: the image did not come from the registry"
$KUBECTL logs deploy/smoke | grep -q "smokeapp serving" || die "kubectl logs: no startup line"
$KUBECTL exec deploy/smoke -- /app probe | grep -q "200 OK" || die "kubectl exec probe failed"
ip=$($KUBECTL get pods -l app=smoke -o jsonpath='{.items[0].status.podIP}')
[ "$(curl -sf --max-time 5 "http://$ip:8080/healthz")" = ok ] || die "host cannot reach pod $ip over $BRIDGE"
log "real node: pulled, Ready, logs, exec and pod IP $ip OK"

# 2. Services through kube-proxy (iptables mode)
S=$SECONDS
answers() { [ "$(curl -sf --max-time 2 "$1")" = ok ]; }
$KUBECTL expose deploy smoke --type=NodePort --port=80 --target-port=8080 >/dev/null
cip=$($KUBECTL get svc smoke -o jsonpath='{.spec.clusterIP}')
np=$($KUBECTL get svc smoke -o jsonpath='{.spec.ports[0].nodePort}')
wait_for 30 "ClusterIP $cip:80 answering the host" answers "http://$cip/healthz" || { show; exit 1; }
lap clusterip $S
for i in 1 2 3 4 5 6; do answers "http://$cip/healthz" || die "ClusterIP $cip:80 from the host: request $i failed"; done
answers "http://$NODEPORT_IP:$np/healthz" || die "NodePort $NODEPORT_IP:$np from the host failed"
# pod -> ClusterIP: a Service whose only endpoint is pods[0], called from pods[1] (the reply is bridged back:
# needs br_netfilter) and from pods[0] itself (hairpin: needs the CNI bridge's hairpinMode)
pods=($($KUBECTL get pods -l app=smoke -o jsonpath='{.items[*].metadata.name}'))
$KUBECTL label pod "${pods[0]}" smoke-self=1 >/dev/null
cat <<Y | $KUBECTL apply -f - >/dev/null
apiVersion: v1
kind: Service
metadata: {name: smoke-self}
spec: {selector: {app: smoke, smoke-self: "1"}, ports: [{port: 80, targetPort: 8080}]}
Y
sip=$($KUBECTL get svc smoke-self -o jsonpath='{.spec.clusterIP}')
wait_for 30 "ClusterIP $sip:80 (smoke-self)" answers "http://$sip/healthz"
$KUBECTL exec "${pods[1]}" -- /app probe "http://$sip/healthz" | grep -q "200 OK" || die "pod -> ClusterIP -> other pod failed"
$KUBECTL exec "${pods[0]}" -- /app probe "http://$sip/healthz" | grep -q "200 OK" || die "pod -> ClusterIP -> itself (hairpin) failed"
# refused at once on the host, never sent out: no endpoints (kube-proxy's REJECT), no such port (the testbed's guard)
kip=$($KUBECTL get svc kubernetes -o jsonpath='{.spec.clusterIP}')
for u in "https://$kip:443/" "http://$kip:80/"; do
  rc=0; curl -s --max-time 5 "$u" >/dev/null || rc=$?
  [ $rc = 7 ] || die "$u: curl exit $rc, want 7 (connection refused)"
done
log "kube-proxy: ClusterIP $cip and NodePort $NODEPORT_IP:$np from the host, pod->ClusterIP->pod and hairpin OK"

# 3. the Python base image (Debian python3 + numpy + scikit-learn), when built
if [ -n "${PYTHON_IMAGE:-}" ]; then
  S=$SECONDS
  $KUBECTL run pycheck --image="$PYTHON_IMAGE" --image-pull-policy=IfNotPresent --restart=Never \
    --overrides="{\"spec\":{\"nodeSelector\":{\"kubernetes.io/hostname\":\"$NODE\"}}}" -- \
    /usr/bin/python3 -c 'import sklearn, numpy; print("sklearn", sklearn.__version__, "numpy", numpy.__version__)' >/dev/null
  wait_for 300 "pod pycheck Succeeded" sh -c "$KUBECTL get pod pycheck -o jsonpath='{.status.phase}' | grep -qx Succeeded" || { show; exit 1; }
  $KUBECTL logs pycheck | grep "^sklearn " >&2 || die "python image: no sklearn"
  lap python-pod $S
fi

# 4. capacity on the KWOK node: pods are scheduled and "run" without any process
S=$SECONDS
deploy fake "$KWOK_NODE" example.invalid/model:1 20
wait_for 60 "deployment fake (KWOK node)" available fake 20 || { show; exit 1; }
lap kwok-deploy $S
# a ClusterIP whose endpoints are the KWOK pods' fake IPs (10.0.0.x, routed to eth0): refused on the host, not sent
$KUBECTL expose deploy fake --port=80 >/dev/null
fip=$($KUBECTL get svc fake -o jsonpath='{.spec.clusterIP}')
wait_for 30 "KWOK endpoints in kube-proxy's rules" sh -c "iptables-save -t nat | grep -c 'default/fake -> 10.0.0.'"
rc=0; curl -s --max-time 5 "http://$fip/" >/dev/null || rc=$?
[ $rc = 7 ] || die "ClusterIP $fip (KWOK endpoints): curl exit $rc, want 7 (refused by the testbed's OUTPUT guard)"
log "KWOK node: 20 replicas available; their ClusterIP $fip is refused on the host"
ps -o rss= -p "$(cat "$STATE"/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kwok,containerd,registry}.pid | paste -sd,)" |
  awk '{s+=$1} END {printf "[testbed] RSS of the components: %d MiB\n", s/1024}' >&2
