#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
if [ -f scripts/setup-onnxruntime.sh ]; then
  ONNXRUNTIME_LIB="$(bash scripts/setup-onnxruntime.sh)"
  export ONNXRUNTIME_LIB
fi

echo "== go vet" >&2
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2; echo "$unformatted" >&2; exit 1
fi

echo "== go test" >&2
go test -count=1 ./...
