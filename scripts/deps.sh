#!/usr/bin/env bash
# Installs what mlship's tests and examples need on a fresh Debian machine (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-numpy python3-venv python3-pip python3-sklearn python3-pandas python3-flask gunicorn python3-onnx curl postgresql
)

missing=()
# npm fetches the ONNX Runtime library; a machine may already have it with its own Node.js.
command -v npm >/dev/null || missing+=(npm)
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
