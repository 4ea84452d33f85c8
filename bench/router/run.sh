#!/bin/sh
# Benchmarks the router against queue-proxy, httputil.ReverseProxy and direct calls, then
# split routing (70/20/10) against a plain service;
# writes bench/results/router.md. Extra arguments go to the benchmark (e.g. -n 50000,
# -split-only, -cpuprofile router.prof).
set -eu
cd "$(dirname "$0")/../.."
mkdir -p .cache/bench
if [ ! -x .cache/bench/queue-proxy ]; then
	echo "building queue-proxy v0.42.2 (about a minute)..." >&2
	(cd bench/router/queueproxy && go build -o ../../../.cache/bench/queue-proxy .)
fi
go build -o .cache/bench/router-bench ./bench/router
exec .cache/bench/router-bench "$@"
