#!/usr/bin/env bash
# Fetches the official ONNX Runtime shared library (from the npm package onnxruntime-node, the only
# place it is reachable here) into a cache dir, idempotently, and prints the library's path.
# Usage: scripts/setup-onnxruntime.sh   then   export ONNXRUNTIME_LIB="$(scripts/setup-onnxruntime.sh)"
set -euo pipefail

VERSION="${ONNXRUNTIME_VERSION:-1.24.3}" # matches github.com/yalue/onnxruntime_go v1.27.0
CACHE="${MLSHIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlship}/onnxruntime/$VERSION"
LIB="$CACHE/libonnxruntime.so"

if [ -s "$LIB" ]; then
  echo "$LIB"
  exit 0
fi

command -v npm >/dev/null || { echo "setup-onnxruntime: npm is required (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "onnxruntime-node@$VERSION" >/dev/null)
tgz="$(ls "$tmp"/onnxruntime-node-*.tgz)"
# The napi-vN folder changed across releases (v3, v6); take whichever holds the x64 library.
tar -xzf "$tgz" -C "$tmp" --wildcards 'package/bin/napi-v*/linux/x64/libonnxruntime.so*'
mkdir -p "$CACHE"
for f in "$tmp"/package/bin/napi-v*/linux/x64/libonnxruntime.so*; do
  cp -P "$f" "$CACHE.tmp.$(basename "$f")"
  mv -f "$CACHE.tmp.$(basename "$f")" "$CACHE/$(basename "$f")"
done
# The package ships libonnxruntime.so.1 (and maybe a versioned name); give it the plain name too.
if [ ! -e "$LIB" ]; then
  real="$(ls "$CACHE"/libonnxruntime.so.* | head -n1)"
  ln -sf "$(basename "$real")" "$LIB"
fi
echo "$LIB"
