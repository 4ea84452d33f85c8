package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func writeReport(o options, reports []report) error {
	var b bytes.Buffer
	cpu := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	gunicornVersion, _ := exec.Command(o.gunicorn, "--version").CombinedOutput()
	fmt.Fprintf(&b, "# Scoring runtime benchmark\n\n")
	fmt.Fprintf(&b, "Generated %s by `go run ./bench/scoring -n %d -conc %s -workers %d -rounds %d` on %d cores (%s), %s, %s.\n",
		time.Now().UTC().Format(time.RFC3339), o.n, joinInts(o.conc), o.workers, o.rounds, runtime.NumCPU(), cpu, runtime.Version(), strings.TrimSpace(string(gunicornVersion)))
	fmt.Fprintf(&b, "Load average (1/5/15 min) before: %s; after: %s. Other work on the machine competes for the same cores, so compare the two servers within a row, not across runs.\n\n", o.loadBefore, loadAvg())
	fmt.Fprintf(&b, "Closed loop over loopback: C clients with keep-alive connections (gunicorn's sync workers close after each response, so its clients reconnect, as they do against Azure ML's server). "+
		"%d warm-up requests, then %d rounds of %d measured requests per server, alternating between the servers; each cell is the median round by throughput. Both servers run %d Python workers with BLAS/OpenMP threads pinned to 1; "+
		"mlship runs with --max-concurrent-requests %d (16 per worker: requests wait in the workers' shared queue, first come first served, rather than for admission) and --max-queue-wait-ms 60000 so no request is shed; gunicorn queues without limit in its listen backlog. "+
		"The load generator (bench/scoring/load.go) runs on the same 2 cores as the servers; it reads and writes with raw system calls, so its own Go runtime does not wake a second thread on every request (which delayed the servers by 40–60 µs at one client).\n\n", o.warmup, o.rounds, o.n, o.workers, 16*o.workers)
	for _, r := range reports {
		sc := r.scenario
		fmt.Fprintf(&b, "## %s\n\n", sc.name)
		if sc.script != "" {
			fmt.Fprintf(&b, "`%s` in `%s`, model `%s`, body `%s`.\n\n", sc.script, rel(sc.sourceDir), rel(sc.modelDir), sc.body)
		} else {
			fmt.Fprintf(&b, "No-code ONNX model `%s` (ONNX Runtime, 1 intra-op thread per request, --max-concurrent-requests %d), body `%s`.\n\n", rel(sc.modelDir), sc.maxConcurrent, sc.body)
		}
		if r.rows[0].hasBase {
			fmt.Fprintf(&b, "| clients | gunicorn+flask req/s | p50 µs | p99 µs | mlship req/s | p50 µs | p99 µs | throughput × | p99 ÷ |\n|---|---|---|---|---|---|---|---|---|\n")
			for _, row := range r.rows {
				fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f |\n", row.conc,
					row.base.RPS(), us(row.base.Percentile(.5)), us(row.base.Percentile(.99)),
					row.mlship.RPS(), us(row.mlship.Percentile(.5)), us(row.mlship.Percentile(.99)),
					row.mlship.RPS()/row.base.RPS(), us(row.base.Percentile(.99))/us(row.mlship.Percentile(.99)))
			}
			b.WriteString("\nthroughput × = mlship req/s ÷ baseline req/s; p99 ÷ = baseline p99 ÷ mlship p99 (higher is better for both).\n")
		} else {
			fmt.Fprintf(&b, "| clients | mlship req/s | p50 µs | p90 µs | p99 µs |\n|---|---|---|---|---|\n")
			for _, row := range r.rows {
				fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.0f | %.0f |\n", row.conc, row.mlship.RPS(), us(row.mlship.Percentile(.5)), us(row.mlship.Percentile(.9)), us(row.mlship.Percentile(.99)))
			}
		}
		for _, row := range r.rows {
			if bad := nonOK(row.mlship.Codes, row.mlship.Errors) + nonOK(row.base.Codes, row.base.Errors); bad != "" {
				fmt.Fprintf(&b, "\nc=%d non-200 answers: %s\n", row.conc, bad)
			}
		}
		if r.inproc != nil {
			p50c1 := us(r.rows[0].mlship.Percentile(.5))
			fmt.Fprintf(&b, "\nIn-process `run()` + `json.dumps` (bench/scoring/inprocess.py, one core): p50 %.1f µs, %.0f calls/s.\n", r.inproc.P50us, r.inproc.RPS)
			if r.rows[0].conc == 1 {
				fmt.Fprintf(&b, "Per-request overhead of mlship at 1 client (served p50 − in-process p50, client included): **%.0f µs**.\n", p50c1-r.inproc.P50us)
				if r.bare != nil {
					bp := us(r.bare.Percentile(.5))
					fmt.Fprintf(&b, "A bare server on the replica's HTTP stack (fasthttp on raw socket calls, one P; reads the body, answers a constant; same client, same rounds) answers in p50 %.0f µs, p99 %.0f µs: "+
						"the loopback HTTP round trip any server pays here. mlship's overhead beyond it and `run()` (served p50 − bare p50 − in-process p50): **%.0f µs**.\n",
						bp, us(r.bare.Percentile(.99)), p50c1-bp-r.inproc.P50us)
					if m := r.rows[0].mlship; len(m.run) > 0 {
						around := us(percentile(m.aroundRun, .5))
						fmt.Fprintf(&b, "Timed per request instead, from the replica's `Server-Timing: run;dur=` header (run() timed in the worker, %d of %d answers): served, `run()` takes p50 %.1f µs, against %.1f µs in the in-process loop. "+
							"Served latency minus that request's own `run()`: p50 %.0f µs; minus the bare server's p50, mlship's per-request overhead around the `run()` it serves: **%.0f µs**.\n",
							len(m.run), m.Requests, us(percentile(m.run, .5)), r.inproc.P50us, around, around-bp)
					}
				}
			}
			best := 0.0
			for _, row := range r.rows {
				best = max(best, row.mlship.RPS())
			}
			fmt.Fprintf(&b, "Best served throughput %.0f req/s = %.0f %% of %d × the in-process single-core rate.\n", best, 100*best/(float64(o.workers)*r.inproc.RPS), o.workers)
		}
		fmt.Fprintf(&b, "\nRSS after the runs: mlship Go process %.1f MB", float64(r.rssKB)/1024)
		if r.workerKB > 0 {
			fmt.Fprintf(&b, "; its Python workers %.1f MB together", float64(r.workerKB)/1024)
		}
		b.WriteString(".\n\n")
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, b.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "wrote", o.out)
	return nil
}

func nonOK(codes map[int]int, errs int) string {
	var parts []string
	for c, n := range codes {
		if c != 200 {
			parts = append(parts, fmt.Sprintf("%d×%d", n, c))
		}
	}
	if errs > 0 {
		parts = append(parts, fmt.Sprintf("%d transport errors", errs))
	}
	return strings.Join(parts, ", ")
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

func rel(p string) string {
	wd, _ := os.Getwd()
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	if strings.Contains(p, "mlship-bench-") {
		return "(trained by examples/sklearn/train.py into a temp dir)"
	}
	return p
}

func loadAvg() string {
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
