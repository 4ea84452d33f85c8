package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }

// render writes the results as markdown: one table per concurrency, then the targets.
func render(targets []target, cs []int, res map[int]map[string]run, n, rounds int, qpErr error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Router benchmark\n\n")
	fmt.Fprintf(&b, "`go run ./bench/router` (or `bench/router/run.sh`), %s. %d cores (GOMAXPROCS %d), load average before the run: %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadavg())
	fmt.Fprintf(&b, "Closed loop, keep-alive connections, POST of a 33-byte JSON body to a trivial Go upstream; "+
		"%d requests per measurement, median of %d interleaved rounds by throughput. Every server is its own process; "+
		"the load generator shares the cores. The router does key auth on every request and runs with "+
		"maxConcurrentRequestsPerContainer 64 (the baselines have no limit). Latencies in ms; \"added\" is over direct.\n\n", n, rounds)
	if qpErr != nil {
		fmt.Fprintf(&b, "queue-proxy was skipped: %v\n\n", qpErr)
	}
	for _, c := range cs {
		fmt.Fprintf(&b, "## Concurrency %d\n\n| target | req/s | p50 | p99 | added p50 | added p99 | errors |\n|---|---:|---:|---:|---:|---:|---:|\n", c)
		d := res[c]["direct"]
		for _, t := range targets {
			r := res[c][t.name]
			fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %d |\n", t.name, r.RPS(), ms(r.P(0.5)), ms(r.P(0.99)),
				ms(r.P(0.5)-d.P(0.5)), ms(r.P(0.99)-d.P(0.99)), r.Errors+r.Non200)
		}
		rt, qp := res[c]["mlship router"], res[c]["queue-proxy v0.42.2"]
		if qp.Requests > 0 {
			fmt.Fprintf(&b, "\nrouter vs queue-proxy: throughput ×%.2f, added p50 ×%.2f of queue-proxy's.\n",
				rt.RPS()/qp.RPS(), float64(rt.P(0.5)-d.P(0.5))/float64(qp.P(0.5)-d.P(0.5)))
		}
		b.WriteString("\n")
	}
	if rs, ok := res[8]; ok {
		rt, d, qp := rs["mlship router"], rs["direct"], rs["queue-proxy v0.42.2"]
		b.WriteString("## Targets at concurrency 8\n\n| target | measured | met |\n|---|---|---|\n")
		row := func(name, got string, ok bool) {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", name, got, map[bool]string{true: "yes", false: "**no**"}[ok])
		}
		row("router throughput ≥ 8,000 req/s", fmt.Sprintf("%.0f req/s", rt.RPS()), rt.RPS() >= 8000)
		row("added p50 ≤ 1 ms", ms(rt.P(0.5)-d.P(0.5))+" ms", rt.P(0.5)-d.P(0.5) <= time.Millisecond)
		row("added p99 ≤ 3 ms", ms(rt.P(0.99)-d.P(0.99))+" ms", rt.P(0.99)-d.P(0.99) <= 3*time.Millisecond)
		if qp.Requests > 0 {
			tr := rt.RPS() / qp.RPS()
			lr := float64(rt.P(0.5)-d.P(0.5)) / float64(qp.P(0.5)-d.P(0.5))
			row("throughput ≥ 1.5× queue-proxy", fmt.Sprintf("×%.2f", tr), tr >= 1.5)
			row("added p50 ≤ ½ of queue-proxy's", fmt.Sprintf("×%.2f", lr), lr <= 0.5)
		}
	}
	return b.String()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
