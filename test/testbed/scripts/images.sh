#!/usr/bin/env bash
# Base images of the testbed, built without Docker and cached as tarballs in $CACHE/images:
#   images.sh build   python (debootstrap of Debian packages) + onnx (glibc/libstdc++ + ONNX Runtime), if not cached
#   images.sh python|onnx   build just one of them
#   images.sh push    push pause + both bases to the running loopback registry, write $STATE/images.env
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SUITE=bookworm
TOOL_KEY=3   # bump when the trimming or packing below changes

mirror() {  # Debian's mirror as apt itself uses it
  local m
  m=$(awk '/^URIs:/{u=$2} /^Suites:/ && / bookworm( |$)/{print u; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1=="deb" && $3=="bookworm"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

python_key() { { echo "$TOOL_KEY $SUITE"; grep -v '^#' "$TB/images/python.packages"; sed -n '/^trim()/,/^}/p' "$0"; } | sha256sum | cut -c1-12; }

# trim ROOT: purge the C/C++ toolchain and headers (bookworm's python3-scipy Depends on python3-pythran, which
# drags in g++, boost and BLAS headers: 1.2 GB -> 620 MB), then docs, man pages, locales, apt caches, logs and test
# suites (copyright files stay): -> ~310 MB.
trim() {
  local r=$1
  chroot "$r" dpkg --purge --force-depends $(chroot "$r" dpkg-query -W -f='${Package}\n' | grep -E -- '-dev$|^(gcc|g\+\+|cpp)(-12)?$|^binutils|^lib(asan|tsan|lsan|ubsan|itm|cc1|hwasan)[0-9]|^libjs-|^libboost|^libxsimd|^libisl|^libmpc|^libmpfr|^libgprofng|^libctf|^libbinutils|^libjansson|^python3-(pythran|beniget|gast|ply)$') >/dev/null
  find "$r/usr/share/doc" -type f ! -name copyright -delete
  find "$r/usr/share/doc" -depth -type d -empty -delete
  rm -rf "$r"/usr/share/{man,info,lintian,linda,groff} "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/var/log/* \
         "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  find "$r/usr/lib/python3/dist-packages" -type d -name tests -prune -exec rm -rf {} +
}

build_python() {
  local key out root S=$SECONDS
  key=$(python_key); out=$IMG/python-$key.tar
  if [ -s "$out" ]; then log "python base image cached: $out"; echo "$out" > "$IMG/python.current"; return; fi
  root=$IMG/.python-rootfs-$key
  rm -rf "$root"; mkdir -p "$IMG"
  local pkgs; pkgs=$(grep -v '^#' "$TB/images/python.packages" | paste -sd, -)
  log "debootstrap --variant=minbase --include=$pkgs $SUITE from $(mirror) (cold: ~1-2 min)"
  if ! debootstrap --variant=minbase --include="$pkgs" "$SUITE" "$root" "$(mirror)" > "$IMG/debootstrap.log" 2>&1; then
    umount_under "$root"; die "debootstrap failed, see $IMG/debootstrap.log"
  fi
  umount_under "$root"   # debootstrap can leave proc/sys mounted when it stops early
  trim "$root"
  chroot "$root" /usr/bin/python3 -c 'import numpy, scipy, sklearn; from sklearn.linear_model import LogisticRegression as L; L().fit([[0],[1]],[0,1]).predict([[1]])' ||
    die "python3 in $root cannot import sklearn"
  log "packing $(du -sh "$root" | cut -f1) rootfs as one layer"
  "$BIN/images" dir -cmd /usr/bin/python3 -env PYTHONDONTWRITEBYTECODE=1 "$root" "mlship/python:$key" "$out"
  rm -rf "$root"
  echo "$out" > "$IMG/python.current"
  log "python base image built in $((SECONDS - S))s: $out ($(du -h "$out" | cut -f1))"
}

# The ONNX base: only what a cgo binary linked against libonnxruntime needs (glibc, libgcc, libstdc++)
# taken from the host's own Debian packages, plus the official libonnxruntime.so when it is set up.
build_onnx() {
  local ort key out stage S=$SECONDS
  ort=$(bash "$TB/../../scripts/setup-onnxruntime.sh" 2>/dev/null || true)
  key=$( { echo "$TOOL_KEY"; dpkg-query -W libc6 libgcc-s1 libstdc++6; [ -n "$ort" ] && sha256sum "$ort"; sed -n '/^build_onnx()/,/^}/p' "$0"; } | sha256sum | cut -c1-12)
  out=$IMG/onnx-$key.tar
  if [ -s "$out" ]; then log "onnx base image cached: $out"; echo "$out" > "$IMG/onnx.current"; return; fi
  stage=$IMG/.onnx-stage-$key; rm -rf "$stage"; mkdir -p "$stage"/{tmp,etc,usr/lib/onnxruntime}
  chmod 1777 "$stage/tmp"
  dpkg -L libc6 libgcc-s1 libstdc++6 | grep -Ev '^/usr/share/(doc|locale|man|lintian)|/gconv/|^/\.$' | while read -r f; do
    [ -d "$f" ] && continue   # directories (and the /lib64 -> usr/lib64 link of merged /usr) come as parents
    [ -e "$f" ] || [ -L "$f" ] || continue
    (cd / && cp -a --parents "${f#/}" "$stage")
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$stage/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$stage/etc/group"
  local env=()
  if [ -n "$ort" ]; then
    cp -a "$(dirname "$ort")"/libonnxruntime.so* "$stage/usr/lib/onnxruntime/"
    env=(-env ONNXRUNTIME_LIB=/usr/lib/onnxruntime/libonnxruntime.so)
  else
    log "WARNING: no libonnxruntime.so (scripts/setup-onnxruntime.sh failed); onnx base has glibc/libstdc++ only"
  fi
  "$BIN/images" dir "${env[@]}" "$stage" "mlship/onnx-base:$key" "$out"
  rm -rf "$stage"
  echo "$out" > "$IMG/onnx.current"
  log "onnx base image built in $((SECONDS - S))s: $out ($(du -h "$out" | cut -f1))"
}

umount_under() { grep -o " $1/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true; }

push() {
  local S=$SECONDS py onnx
  curl -sf "http://$REGISTRY/v2/" >/dev/null || die "no registry on $REGISTRY (run up.sh)"
  "$BIN/images" app "$BIN/pause" "$REGISTRY/mlship/pause:1"
  py=$(cat "$IMG/python.current" 2>/dev/null || true); onnx=$(cat "$IMG/onnx.current" 2>/dev/null || true)
  { echo "PAUSE_IMAGE=$REGISTRY/mlship/pause:1"
    if [ -s "$py" ]; then
      "$BIN/images" push "$py" "$REGISTRY/mlship/python:3.11-bookworm"
      echo "PYTHON_IMAGE=$REGISTRY/mlship/python:3.11-bookworm"
    fi
    if [ -s "$onnx" ]; then
      "$BIN/images" push "$onnx" "$REGISTRY/mlship/onnx-base:bookworm"
      echo "ONNX_IMAGE=$REGISTRY/mlship/onnx-base:bookworm"
    fi
  } > "$STATE/images.env"
  log "images pushed to $REGISTRY in $((SECONDS - S))s: $(cut -d= -f1 "$STATE/images.env" | paste -sd' ' -)"
}

case "${1:-}" in
  build) [ "${MLSHIP_SKIP_BASE_IMAGES:-0}" = 1 ] && { log "base images skipped"; exit 0; }; build_python; build_onnx ;;
  python) build_python ;;
  onnx) build_onnx ;;
  push) push ;;
  *) echo "usage: images.sh build|python|onnx|push" >&2; exit 2 ;;
esac
