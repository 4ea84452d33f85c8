package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// splitHeading starts the split scenario's section, the last of the results file (-split-only
// replaces it and keeps what precedes it).
const splitHeading = "## Split routing"

const (
	plainName = "plain service (1 version, 3 replicas)"
	splitName = "endpoint split 70/20/10 (3 versions, 1 replica each)"
)

// splitScenario measures the router serving a plain service and a 70/20/10 endpoint over the
// same three upstreams, in one router process, and renders the section.
func splitScenario(ctx context.Context, cs []int, n, rounds int, cpuprofile string) (string, error) {
	var ups []string
	for range splitVersions {
		a, err := start(ctx, "upstream", "", "")
		if err != nil {
			return "", err
		}
		ups = append(ups, "http://"+a)
	}
	addr, err := start(ctx, "split-router", strings.Join(ups, ","), cpuprofile)
	if err != nil {
		return "", err
	}
	auth := map[string]string{"Authorization": "Bearer " + benchKey}
	targets := []target{
		{name: plainName, addr: addr, path: "/api/v1/service/plain/score", header: auth},
		{name: splitName, addr: addr, path: "/api/v1/service/split/score", header: auth},
	}
	if err := check(targets); err != nil {
		return "", err
	}
	res := map[int]map[string][]run{}
	for _, c := range cs {
		res[c] = measure(targets, c, n, rounds)
		fmt.Fprintf(os.Stderr, "split scenario, concurrency %d done\n", c)
	}
	counts, err := versionCounts(addr, "split")
	if err != nil {
		return "", err
	}
	return renderSplit(cs, res, counts, n, rounds), nil
}

// versionCounts reads the router's per-version 200 counts of service svc from /metrics.
func versionCounts(addr, svc string) (map[string]int, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "mlship_router_requests_total{") || !strings.Contains(line, `code="200"`) ||
			!strings.Contains(line, `service="`+svc+`"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, `version="`)
		version, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		counts[version] = int(v)
	}
	return counts, sc.Err()
}

func renderSplit(cs []int, res map[int]map[string][]run, counts map[string]int, n, rounds int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", splitHeading)
	fmt.Fprintf(&b, "`go run ./bench/router` (this section alone: `go run ./bench/router -split-only`), %s. %d cores, load average before the section: %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), loadavg())
	fmt.Fprintf(&b, "One router process serves (a) a plain service, one version with a replica on each of three trivial "+
		"upstreams (least outstanding requests), and (b) an endpoint whose versions v70/v20/v10 take 70/20/10 %% of the "+
		"traffic, each with one replica on one of the same three upstreams: same replicas, only the routing differs. "+
		"Key auth, maxConcurrentRequestsPerContainer 64. %d requests per measurement, %d interleaved rounds; "+
		"req/s, p50 and p99 are the round with the median throughput; \"added p50\" is the median over rounds of "+
		"(b)'s p50 minus (a)'s in the same round (the range over rounds in brackets). Latencies in ms.\n\n", n, rounds)
	b.WriteString("| concurrency | (a) req/s | (a) p50 | (a) p99 | (b) req/s | (b) p50 | (b) p99 | added p50 | errors |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, c := range cs {
		pa, sp := res[c][plainName], res[c][splitName]
		a, s := medianByRPS(pa), medianByRPS(sp)
		d, lo, hi := addedP50(pa, sp)
		errs := 0
		for _, r := range append(slices.Clone(pa), sp...) {
			errs += r.Errors + r.Non200
		}
		fmt.Fprintf(&b, "| %d | %.0f | %s | %s | %.0f | %s | %s | %s [%s, %s] | %d |\n", c,
			a.RPS(), ms(a.P(0.5)), ms(a.P(0.99)), s.RPS(), ms(s.P(0.5)), ms(s.P(0.99)), ms(d), ms(lo), ms(hi), errs)
	}
	total := 0
	for _, v := range counts {
		total += v
	}
	if total > 0 {
		fmt.Fprintf(&b, "\nRequests the endpoint answered per version (from the router's /metrics, warm-ups included): ")
		for i, v := range splitVersions {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d (%.2f %%)", v.Name, counts[v.Name], 100*float64(counts[v.Name])/float64(total))
		}
		b.WriteString(".\n")
	}
	if rs, ok := res[8]; ok {
		d, _, _ := addedP50(rs[plainName], rs[splitName])
		fmt.Fprintf(&b, "\n| target | measured | met |\n|---|---|---|\n| split routing adds ≤ 0.2 ms p50 over a single service (concurrency 8) | %s ms | %s |\n",
			ms(d), map[bool]string{true: "yes", false: "**no**"}[d <= 200*time.Microsecond])
	}
	return b.String()
}

// addedP50 is the median, minimum and maximum over rounds of split's p50 minus plain's.
func addedP50(plain, split []run) (med, lo, hi time.Duration) {
	var ds []time.Duration
	for i := range min(len(plain), len(split)) {
		ds = append(ds, split[i].P(0.5)-plain[i].P(0.5))
	}
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[0], ds[len(ds)-1]
}
