package main

import (
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"
)

// parseTargets reads "NAME=http://HOST:PORT/PATH;..." (the first is the baseline all others are
// compared with).
func parseTargets(spec, key string) ([]target, error) {
	var out []target
	for _, f := range strings.Split(spec, ";") {
		name, raw, ok := strings.Cut(strings.TrimSpace(f), "=")
		u, err := url.Parse(raw)
		if !ok || err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, fmt.Errorf("bad target %q: want NAME=http://HOST:PORT/PATH", f)
		}
		t := target{name: name, addr: u.Host, path: u.RequestURI()}
		if key != "" && len(out) > 0 {
			t.header = map[string]string{"Authorization": "Bearer " + key}
		}
		out = append(out, t)
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("-targets needs a baseline and at least one target to compare")
	}
	return out, nil
}

// external measures endpoints that are already running (bench/router/cluster.sh: a replica pod
// and the router of a test cluster) and renders the router's overhead over the first one.
func external(targets []target, cs []int, n, rounds int, title, note string) (string, error) {
	if err := check(targets); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n%s, %d cores, load average before: %s. Closed loop, keep-alive connections, "+
		"%d requests per measurement, median of %d interleaved rounds by throughput; latencies in ms, \"added\" is over %s.\n\n",
		title, time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), loadavg(), n, rounds, targets[0].name)
	if note != "" {
		b.WriteString(note + "\n\n")
	}
	base := targets[0].name
	var verdicts strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "## Concurrency %d\n\n| target | req/s | p50 | p99 | added p50 | added p99 | errors |\n|---|---:|---:|---:|---:|---:|---:|\n", c)
		res := map[string]run{}
		for name, rs := range measure(targets, c, n, rounds) {
			res[name] = medianByRPS(rs)
		}
		d := res[base]
		for _, t := range targets {
			r := res[t.name]
			fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %d |\n", t.name, r.RPS(), ms(r.P(0.5)), ms(r.P(0.99)),
				ms(r.P(0.5)-d.P(0.5)), ms(r.P(0.99)-d.P(0.99)), r.Errors+r.Non200)
			if t.name != base {
				a50, a99 := r.P(0.5)-d.P(0.5), r.P(0.99)-d.P(0.99)
				fmt.Fprintf(&verdicts, "| %s, concurrency %d | %s ms / %s ms | %s |\n", t.name, c, ms(a50), ms(a99),
					map[bool]string{true: "yes", false: "**no**"}[a50 <= time.Millisecond && a99 <= 3*time.Millisecond])
			}
		}
		b.WriteString("\n")
		fmt.Fprintf(os.Stderr, "concurrency %d done\n", c)
	}
	b.WriteString("## Targets (the local router's: added p50 ≤ 1 ms, added p99 ≤ 3 ms)\n\n| target | added p50 / p99 | met |\n|---|---|---|\n")
	b.WriteString(verdicts.String())
	return b.String(), nil
}
