package router

import (
	"context"
	"math"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// endpoint configures service "ep" with the given versions, each served by an echo of its name.
func endpoint(t *testing.T, r *Router, versions []VersionConfig) {
	t.Helper()
	mustSetService(t, r, ServiceConfig{Name: "ep", Versions: versions, Limits: Limits{MaxConcurrentRequestsPerContainer: 16}})
	for _, v := range versions {
		mustSetReplicas(t, r, "ep", v.Name, ready(upstream(t, echo(v.Name))))
	}
}

func TestTrafficSplit(t *testing.T) {
	r, base := startRouter(t, Options{})
	endpoint(t, r, []VersionConfig{
		{Name: "blue", TrafficPercentile: 70, IsDefault: true, IsControl: true},
		{Name: "green", TrafficPercentile: 20},
		{Name: "red", TrafficPercentile: 10},
		{Name: "dark"}, // 0 %: only pinned requests
	})
	const n = 5000
	var mu sync.Mutex
	counts := map[string]int{}
	fails := hammer(t, 8, n/8, func() result {
		res := score(t, base, "ep", nil)
		mu.Lock()
		counts[res.body]++
		mu.Unlock()
		return res
	})
	if fails > 0 {
		t.Fatalf("%d failures", fails)
	}
	for name, want := range map[string]float64{"blue": 70, "green": 20, "red": 10, "dark": 0} {
		got := 100 * float64(counts[name]) / n
		if math.Abs(got-want) > 2 {
			t.Errorf("%s got %.2f %% of requests, want %v ± 2", name, got, want)
		}
	}
}

func TestPinnedVersion(t *testing.T) {
	r, base := startRouter(t, Options{})
	endpoint(t, r, []VersionConfig{
		{Name: "blue", IsDefault: true, IsControl: true},
		{Name: "dark"},
	})
	for range 20 {
		if res := score(t, base, "ep", map[string]string{VersionHeader: "dark"}); res.status != 200 || res.body != "dark" {
			t.Fatalf("pinned to dark: %d %q", res.status, res.body)
		}
	}
	res := score(t, base, "ep", map[string]string{VersionHeader: "nope"})
	code, msg := errorCode(t, res)
	if res.status != 404 || code != "VersionNotFound" || !strings.Contains(msg, `"nope"`) || !strings.Contains(msg, "blue dark") {
		t.Fatalf("unknown version: %d %q %q", res.status, code, msg)
	}
}

func TestMirror(t *testing.T) {
	before := runtime.NumGoroutine()
	var mirrored atomic.Int64
	r := New(Options{})
	front := httptestServer(t, r)
	mustSetService(t, r, ServiceConfig{Name: "ep", Limits: Limits{MaxConcurrentRequestsPerContainer: 64}, Versions: []VersionConfig{
		{Name: "blue", IsDefault: true, IsControl: true},
		{Name: "shadow", MirrorPercentile: 25},
	}})
	mustSetReplicas(t, r, "ep", "blue", ready(upstream(t, echo("blue"))))
	mustSetReplicas(t, r, "ep", "shadow", ready(upstream(t, func(w http.ResponseWriter, req *http.Request) {
		b := make([]byte, 64)
		n, _ := req.Body.Read(b)
		if string(b[:n]) == `{"data":[1]}` {
			mirrored.Add(1)
		}
		time.Sleep(20 * time.Millisecond) // a slow shadow must not slow the client
		w.Write([]byte("shadow"))
	})))
	start := time.Now()
	for range 100 {
		if res := score(t, front.URL, "ep", nil); res.status != 200 || res.body != "blue" {
			t.Fatalf("%d %q", res.status, res.body)
		}
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("100 requests took %v: mirroring delayed the client", d)
	}
	waitFor(t, func() bool { return mirrored.Load() == 25 })
	front.Close()
	r.Close()
	// Router goroutines (mirrors) are gone after Close; idle connections' goroutines go too.
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+4 })
	buf := make([]byte, 1<<20)
	if s := string(buf[:runtime.Stack(buf, true)]); strings.Contains(s, "router.(*Router).mirror") {
		t.Fatalf("mirror goroutine outlived Close:\n%s", s)
	}
}

func httptestServer(t *testing.T, h http.Handler) *httptestSrv {
	return newHTTPTestSrv(t, h)
}

func TestReplicaRemovalKeepsInFlight(t *testing.T) {
	g, h := newGate(t)
	old := upstream(t, h)
	next := upstream(t, echo("next"))
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{MaxQueueWait: 5 * time.Second}, old)

	inflight := make(chan result)
	go func() { inflight <- score(t, base, "svc", nil) }()
	<-g.entered
	mustSetReplicas(t, r, "svc", "svc", ready(next))
	// New requests go to the new replica at once, while the old one still works.
	if res := score(t, base, "svc", nil); res.status != 200 || res.body != "next" {
		t.Fatalf("new request: %d %q", res.status, res.body)
	}
	close(g.release)
	if res := <-inflight; res.status != 200 || res.body != "gated" {
		t.Fatalf("in-flight request on the removed replica: %d %q", res.status, res.body)
	}
	if s, _ := r.Stats("svc", "svc"); s.InFlight != 0 || len(s.Replicas) != 1 {
		t.Errorf("stats after drain: %+v", s)
	}
}

// Under 8 concurrent clients, traffic split, limits, replicas and versions change constantly:
// no request may fail.
func TestConfigChangeUnderLoad(t *testing.T) {
	r, base := startRouter(t, Options{})
	ups := map[string][]Replica{}
	for _, v := range []string{"blue", "green", "red"} {
		ups[v] = append(ready(upstream(t, echo(v))), ready(upstream(t, echo(v)))...)
	}
	configs := []ServiceConfig{
		{Name: "ep", Limits: Limits{MaxQueueWait: 5 * time.Second}, Versions: []VersionConfig{
			{Name: "blue", IsDefault: true, IsControl: true, TrafficPercentile: 50}, {Name: "green", TrafficPercentile: 50}}},
		{Name: "ep", Limits: Limits{MaxQueueWait: 5 * time.Second, MaxConcurrentRequestsPerContainer: 3}, Versions: []VersionConfig{
			{Name: "blue", IsDefault: true, IsControl: true, TrafficPercentile: 10}, {Name: "green", TrafficPercentile: 30}, {Name: "red", TrafficPercentile: 60, MirrorPercentile: 10}}},
		{Name: "ep", Limits: Limits{MaxQueueWait: 5 * time.Second}, Versions: []VersionConfig{
			{Name: "green", IsDefault: true, IsControl: true}}},
	}
	apply := func(i int) {
		cfg := configs[i%len(configs)]
		mustSetService(t, r, cfg)
		for _, v := range cfg.Versions {
			reps := ups[v.Name][i%2 : i%2+1] // one of the two, or both, rotating
			if (i/2)%2 == 1 {
				reps = ups[v.Name]
			}
			mustSetReplicas(t, r, "ep", v.Name, reps)
		}
	}
	apply(0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; ctx.Err() == nil; i++ {
			apply(i)
			time.Sleep(2 * time.Millisecond)
		}
	})
	var total atomic.Int64
	fails := hammer(t, 8, 250, func() result {
		total.Add(1)
		return score(t, base, "ep", nil)
	})
	cancel()
	wg.Wait()
	if fails > 0 {
		t.Fatalf("%d of %d requests failed during config changes", fails, total.Load())
	}
}
