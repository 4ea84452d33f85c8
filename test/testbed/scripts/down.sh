#!/usr/bin/env bash
# Stop the testbed cleanly: delete workloads (the kubelet stops their containers), stop components by PID file,
# kill leftover shims by their PID files, unmount, delete the bridge, kube-proxy's rules and the testbed's firewall
# rules, restore the sysctls up.sh changed, then verify nothing is left.
# Keeps $STATE's logs; exits non-zero if anything is left behind.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
T0=$SECONDS
alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

if alive kubelet && alive kube-apiserver; then
  $KUBECTL delete deploy,rs,sts,ds,job,pod --all --all-namespaces --wait=false >/dev/null 2>&1
  end=$((SECONDS + 60))
  while [ $SECONDS -lt $end ] && [ -n "$(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null)" ]; do sleep 0.5; done
  # the kubelet also stops pod sandboxes (and with them their network namespaces)
  while [ $SECONDS -lt $end ] && ls "$STATE"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*/shim.pid >/dev/null 2>&1; do sleep 0.5; done
fi

[ $SECONDS -gt $T0 ] && log "workloads gone after $((SECONDS - T0))s"
stop_pid() {  # stop_pid NAME PID: SIGTERM, wait up to 30 s (the apiserver drains for ~10-15 s), then SIGKILL
  local name=$1 pid=$2 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; log "killed $name ($pid) with SIGKILL"; }
  return 0
}
# the kubelet first (it must not restart containers), then all the others at once (nothing depends on them now)
for c in $COMPONENTS; do
  [ -f "$STATE/$c.pid" ] || continue
  if [ "$c" = kubelet ]; then stop_pid "$c" "$(cat "$STATE/$c.pid")"; else stop_pid "$c" "$(cat "$STATE/$c.pid")" & fi
done
wait
for c in $COMPONENTS; do rm -f "$STATE/$c.pid"; done
# socat's per-connection children end with their connections; stop any still there.
pkill -f "^socat TCP-LISTEN:[0-9]*,bind=$POD_GW," 2>/dev/null || true
log "components stopped after $((SECONDS - T0))s"
# shims (and the containers under them) that outlived the kubelet, found by containerd's own PID files
for f in "$STATE"/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid "$STATE"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
  [ -f "$f" ] && stop_pid "$(basename "$(dirname "$f")")" "$(cat "$f")"
done

# mounts: everything under $STATE (overlay rootfs, shm, kubelet volumes), deepest first; then new network namespaces
grep -o " $STATE/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null
grep -o " $STATE/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
for ns in $(ls /run/netns 2>/dev/null); do
  grep -qx "$ns" "$STATE/netns.before" 2>/dev/null && continue
  case $ns in cni-*) umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns" ;; esac
done
ip link del "$BRIDGE" 2>/dev/null
# kube-proxy's rules (IPv4 and IPv6, every table): its own cleanup first
rules() { { iptables-save; ip6tables-save; } 2>/dev/null; }   # (no `| grep -q` on it: SIGPIPE + pipefail = false)
if [ -x "$BIN/kube-proxy" ] && [ "$(rules | grep -c KUBE-)" != 0 ]; then
  "$BIN/kube-proxy" --cleanup --proxy-mode=iptables >"$STATE/kube-proxy-cleanup.log" 2>&1 ||
    log "kube-proxy --cleanup failed (see $STATE/kube-proxy-cleanup.log); flushing the KUBE-* chains"
  n=$(rules | grep -c KUBE-)   # it keeps KUBE-FIREWALL (kubelet's chain, shared): the flush below removes it
  [ "$n" = 0 ] || log "kube-proxy --cleanup left $n KUBE- lines ($(rules | grep -o '^:KUBE-[^ ]*' | sort -u | tr -d : | paste -sd' ')); flushing them"
fi
# then, as a safety net, every KUBE-* chain and the jumps to it: what kube-proxy --cleanup missed, and what a kubelet
# with makeIPTablesUtilChains=true would leave (KUBE-FIREWALL, KUBE-KUBELET-CANARY...). No other kubelet/kube-proxy runs here.
flush_kube() {  # flush_kube iptables|ip6tables
  local ipt=$1 t rule c chains
  for t in filter nat mangle raw; do
    $ipt-save -t $t 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | while read -r rule; do
      eval "$ipt -t $t -D ${rule#-A }" 2>/dev/null   # eval: the rules quote their comments
    done
    chains=$($ipt-save -t $t 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p')
    for c in $chains; do $ipt -t $t -F "$c" 2>/dev/null; done
    for c in $chains; do $ipt -t $t -X "$c" 2>/dev/null; done
  done
}
flush_kube iptables; flush_kube ip6tables
# last, the testbed's own guards (FORWARD out of the bridge, OUTPUT to the service range): every rule with its comment
iptables-save -t filter 2>/dev/null | grep -E '^-A [A-Z]+ .*--comment "?mlship-testbed' | while read -r rule; do
  eval "iptables -D ${rule#-A }" 2>/dev/null
done
[ -f "$STATE/ip_forward.before" ] && sysctl -qw net.ipv4.ip_forward="$(cat "$STATE/ip_forward.before")"
[ -f "$STATE/bridge-nf-call-iptables.before" ] &&
  sysctl -qw net.bridge.bridge-nf-call-iptables="$(cat "$STATE/bridge-nf-call-iptables.before")"
# the kubelet's /var/log/containers symlinks into our pod logs; then the empty dirs the runtime made outside $STATE
for l in /var/log/containers/*.log; do [ -L "$l" ] && case $(readlink "$l") in "$STATE"/*) rm -f "$l" ;; esac; done
rmdir /var/log/containers /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/s /run/containerd \
      /var/lib/cni/results /var/lib/cni /run/netns 2>/dev/null
# empty pod cgroups the kubelet made (cgroup v1: one tree per controller)
for d in /sys/fs/cgroup/*/kubepods; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
# containers' writable layers, images and volumes (logs stay)
rm -rf "$STATE"/containerd/root "$STATE"/containerd/state "$STATE"/kubelet/pods 2>/dev/null

# verify
left=""
ours() {  # ours PID: a process of this testbed (other clusters, e.g. envtest's, may run the same binaries)
  [ "$(readlink "/proc/$1/cwd")" = "$STATE" ] || tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qe "$STATE/" -e " $REGISTRY "
}
for c in $COMPONENTS; do
  for pid in $(pgrep -f "^$BIN/$c "); do ours "$pid" && left="$left process:$c($pid)"; done
done
pgrep -f "containerd --config $STATE/" >/dev/null && left="$left process:containerd"
pgrep -f "^socat TCP-LISTEN:[0-9]*,bind=$POD_GW," >/dev/null && left="$left process:apiserver-forward"
grep -q " $STATE/" /proc/mounts && left="$left mounts:$(grep -c " $STATE/" /proc/mounts)"
ip link show "$BRIDGE" >/dev/null 2>&1 && left="$left bridge:$BRIDGE"
n=$(rules | grep -c mlship-testbed); [ "$n" = 0 ] || left="$left iptables-rules:$n"
n=$(rules | grep -c KUBE-); [ "$n" = 0 ] || left="$left iptables-KUBE-lines:$n"
for ns in $(ls /run/netns 2>/dev/null); do grep -qx "$ns" "$STATE/netns.before" 2>/dev/null || left="$left netns:$ns"; done
for l in /var/log/containers/*.log; do [ -L "$l" ] && case $(readlink "$l") in "$STATE"/*) left="$left log-link:$l" ;; esac; done
for p in $ETCD_PORT $API_PORT $KUBELET_PORT $KWOK_PORT $PROXY_PORT $REGISTRY_PORT; do ss -Hltn "sport = :$p" | grep -q . && left="$left port:$p"; done
if [ -n "$left" ]; then log "LEFT BEHIND:$left"; exit 1; fi
log "testbed down in $((SECONDS - T0))s; nothing left (logs in $STATE)"
