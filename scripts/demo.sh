#!/usr/bin/env bash
# The main job: start mlship on its embedded defaults, register an example model, and show what to try next.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MLSHIP="$ROOT/bin/mlship"
[ -x "$MLSHIP" ] || go build -o "$MLSHIP" ./cmd/mlship

DEMO=${MLSHIP_DEMO_DIR:-$ROOT/.mlship-demo}
PORT=${MLSHIP_DEMO_PORT:-7878}
rm -rf "$DEMO"; mkdir -p "$DEMO"
# Its own CLI config, so the demo never touches yours.
export MLSHIP_CONFIG="$DEMO/config.json"
unset MLSHIP_SERVER MLSHIP_TOKEN

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

"$MLSHIP" server --data-dir "$DEMO/data" --addr "127.0.0.1:$PORT" >"$DEMO/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -s "$MLSHIP_CONFIG" ] && break
  kill -0 $SERVER 2>/dev/null || { cat "$DEMO/server.log"; exit 1; }
  sleep 0.1
done
[ -s "$MLSHIP_CONFIG" ] || { echo "server did not start:"; cat "$DEMO/server.log"; exit 1; }
echo "mlship server is up on http://127.0.0.1:$PORT (data in $DEMO/data, log in $DEMO/server.log)"

MODEL_DIR=examples/stdlib
[ -d "$MODEL_DIR" ] || MODEL_DIR=examples/configs
run "$MLSHIP" model register -n demo-model -p "$MODEL_DIR" -t stage=demo -d "mlship demo model" -o table
run "$MLSHIP" model register -n demo-model -p "$MODEL_DIR" -t stage=demo -o table
run "$MLSHIP" model list -o table
run "$MLSHIP" model download -i demo-model:1 -t "$DEMO/download"
find "$DEMO/download" -type f | sed "s|$DEMO/||" | sort

cat <<EOT

Done. What to try next (the server above stops when this script ends; start your own with 'bin/mlship server'):
  bin/mlship server &                                  # control plane on 127.0.0.1:7878, token saved for the CLI
  bin/mlship model register -n mymodel -p ./outputs    # a file or a folder; versions count 1, 2, 3...
  bin/mlship model list --latest -o table
  bin/mlship model show -i mymodel:1 -o yaml
  bin/mlship --help
EOT
