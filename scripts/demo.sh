#!/usr/bin/env bash
# The main job: start mlship on its embedded defaults, register an example model, and show what to try next.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MLSHIP="$ROOT/bin/mlship"
[ -x "$MLSHIP" ] || go build -o "$MLSHIP" ./cmd/mlship

DEMO=${MLSHIP_DEMO_DIR:-$ROOT/.mlship-demo}
PORT=${MLSHIP_DEMO_PORT:-7878}
SCORING_PORT=${MLSHIP_DEMO_SCORING_PORT:-7879}
rm -rf "$DEMO"; mkdir -p "$DEMO"
# Its own CLI config, so the demo never touches yours.
export MLSHIP_CONFIG="$DEMO/config.json"
unset MLSHIP_SERVER MLSHIP_TOKEN

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

"$MLSHIP" server --data-dir "$DEMO/data" --addr "127.0.0.1:$PORT" --scoring-addr "127.0.0.1:$SCORING_PORT" >"$DEMO/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -s "$MLSHIP_CONFIG" ] && break
  kill -0 $SERVER 2>/dev/null || { cat "$DEMO/server.log"; exit 1; }
  sleep 0.1
done
[ -s "$MLSHIP_CONFIG" ] || { echo "server did not start:"; cat "$DEMO/server.log"; exit 1; }
echo "mlship server is up on http://127.0.0.1:$PORT (data in $DEMO/data, log in $DEMO/server.log)"

run "$MLSHIP" model register -n demo-model -p examples/stdlib/model/weights.json -t stage=demo -d "mlship demo: a linear model" -o table
run "$MLSHIP" model deploy -n demo-svc -m demo-model:1 -ic examples/stdlib/inferenceconfig.json -o table

URI=$("$MLSHIP" service show -n demo-svc -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["scoringUri"])')
KEY=$("$MLSHIP" service get-keys -n demo-svc -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])')
say "curl -H \"Authorization: Bearer \$KEY\" -d '{\"data\": [[1, 2, 3]]}' $URI"
curl -sS -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -d '{"data": [[1, 2, 3]]}' "$URI"; echo
say "curl (no key) -> 401"
curl -sS -o /dev/null -w "%{http_code}\n" -d '{"data": [[1, 2, 3]]}' "$URI"
run "$MLSHIP" service run -n demo-svc -d '{"data": [[4, 5, 6]]}'
run "$MLSHIP" service list -o table

cat <<EOT

Done: a model registered, deployed as a key-protected web service, and scored.
The server above stops when this script ends. To keep going on your own:
  bin/mlship server &                                         # control plane :7878, scoring router :7879
  bin/mlship model register -n mymodel -p ./outputs           # a file or a folder; versions 1, 2, 3...
  bin/mlship model deploy -n mysvc -m mymodel:1 -ic inferenceconfig.json -dc deploymentconfig.json
  bin/mlship service get-keys -n mysvc                        # then POST to the scoring URI with the key
  bin/mlship service get-logs -n mysvc --init                 # the model-loading log (init())
  bin/mlship service update -n mysvc -m mymodel:2             # a rolling update, no failed requests
  bin/mlship computetarget attach kubernetes -n mycluster --kubeconfig ~/.kube/config --registry HOST:PORT
                                                              # then the same deploy with -ct mycluster
  bin/mlship --help
EOT
