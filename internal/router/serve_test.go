package router

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

func TestRoutes(t *testing.T) {
	var paths sync.Map
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.Method+" "+r.URL.RequestURI(), true)
		io.WriteString(w, r.URL.Path)
	})
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{}, up)

	tests := []struct {
		method, path string
		want         int
		upstreamSaw  string
	}{
		{"POST", "/api/v1/service/svc/score", 200, "POST /score"},
		{"GET", "/api/v1/service/svc/score?x=1", 200, "GET /score?x=1"},
		{"GET", "/api/v1/service/svc/swagger.json", 200, "GET /swagger.json"},
		{"POST", "/api/v1/service/svc/v2/models/m/infer", 200, "POST /v2/models/m/infer"},
		{"GET", "/api/v1/service/svc/v2/health/ready", 200, "GET /v2/health/ready"},
		{"DELETE", "/api/v1/service/svc/score", 405, ""},
		{"POST", "/api/v1/service/svc/swagger.json", 405, ""},
		{"GET", "/api/v1/service/svc/other", 404, ""},
		{"GET", "/api/v1/service/svc", 404, ""},
		{"GET", "/nowhere", 404, ""},
		{"GET", "/", 200, ""},
	}
	for _, tt := range tests {
		res := do(t, tt.method, base+tt.path, "", nil)
		if res.status != tt.want {
			t.Errorf("%s %s = %d (%s), want %d", tt.method, tt.path, res.status, res.body, tt.want)
		}
		if tt.upstreamSaw != "" {
			if _, ok := paths.Load(tt.upstreamSaw); !ok {
				t.Errorf("%s %s: replica did not see %q", tt.method, tt.path, tt.upstreamSaw)
			}
		}
	}
	res := do(t, "GET", base+"/metrics", "", nil)
	for _, want := range []string{`mlship_router_requests_total{code="200",service="svc",version="svc"}`,
		`mlship_router_request_duration_seconds_bucket{service="svc",version="svc"`,
		`mlship_router_ready_replicas{service="svc",version="svc"} 1`,
		`mlship_router_queue_depth{service="svc",version="svc"} 0`,
		`mlship_router_unrouted_requests_total{code="404"}`} {
		if !strings.Contains(res.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestUnknownService(t *testing.T) {
	_, base := startRouter(t, Options{})
	res := score(t, base, "ghost", nil)
	if res.status != 404 {
		t.Fatalf("status %d", res.status)
	}
	if code, msg := errorCode(t, res); code != "ServiceNotFound" || !strings.Contains(msg, `"ghost"`) {
		t.Errorf("error %q %q does not name the service", code, msg)
	}
}

func TestRemoveService(t *testing.T) {
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{}, upstream(t, echo("a")))
	if res := score(t, base, "svc", nil); res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	r.RemoveService("svc")
	if res := score(t, base, "svc", nil); res.status != 404 {
		t.Fatalf("after removal: status %d", res.status)
	}
}

func TestInvalidConfig(t *testing.T) {
	r := New(Options{})
	defer r.Close()
	for name, cfg := range map[string]ServiceConfig{
		"no name":         {},
		"negative wait":   {Name: "svc", Limits: Limits{MaxQueueWait: -1}},
		"two defaults":    {Name: "svc", Versions: []VersionConfig{{Name: "blue", IsDefault: true, IsControl: true}, {Name: "green", IsDefault: true}}},
		"traffic >100":    {Name: "svc", Versions: []VersionConfig{{Name: "blue", IsDefault: true, IsControl: true, TrafficPercentile: 80}, {Name: "green", TrafficPercentile: 30}}},
		"min above max":   {Name: "svc", Versions: []VersionConfig{{Name: "svc", Scale: ScaleSpec{Autoscale: true, MinReplicas: 5, MaxReplicas: 2}}}},
		"target over 100": {Name: "svc", Versions: []VersionConfig{{Name: "svc", Scale: ScaleSpec{Autoscale: true, TargetUtilization: 150}}}},
	} {
		if err := r.SetService(cfg); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	for name, reps := range map[string][]Replica{
		"bad url":      {{ID: "a", URL: "127.0.0.1:80"}},
		"no id":        {{URL: "http://127.0.0.1:1"}},
		"duplicate id": {{ID: "a", URL: "http://127.0.0.1:1"}, {ID: "a", URL: "http://127.0.0.1:2"}},
	} {
		if err := r.SetReplicas("svc", "svc", reps); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestNoReadyReplica(t *testing.T) {
	up := upstream(t, echo("a"))
	r, base := startRouter(t, Options{})
	mustSetService(t, r, ServiceConfig{Name: "svc", Limits: Limits{MaxQueueWait: 50 * time.Millisecond}})
	for _, reps := range [][]Replica{nil, {{ID: "a", URL: up.URL, Ready: false}}} {
		mustSetReplicas(t, r, "svc", "svc", reps)
		start := time.Now()
		res := score(t, base, "svc", nil)
		if res.status != 503 || res.header.Get("Retry-After") == "" {
			t.Fatalf("status %d Retry-After %q, want 503 with Retry-After", res.status, res.header.Get("Retry-After"))
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Errorf("answered after %v, before maxQueueWait", d)
		}
		if code, msg := errorCode(t, res); code != "ServiceUnavailable" || !strings.Contains(msg, "no ready replica") {
			t.Errorf("error %q %q", code, msg)
		}
	}
}

// Scale from cold: a request waits (up to maxQueueWait) for the first replica to become ready.
func TestWaitsForFirstReplica(t *testing.T) {
	up := upstream(t, echo("a"))
	r, base := startRouter(t, Options{})
	mustSetService(t, r, ServiceConfig{Name: "svc", Limits: Limits{MaxQueueWait: 5 * time.Second}})
	done := make(chan result)
	go func() { done <- score(t, base, "svc", nil) }()
	waitFor(t, func() bool { s, _ := r.Stats("svc", "svc"); return s.Queued == 1 })
	mustSetReplicas(t, r, "svc", "svc", ready(up))
	if res := <-done; res.status != 200 || res.body != "a" {
		t.Fatalf("status %d body %q", res.status, res.body)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// gate is an upstream whose requests block until released.
type gate struct {
	release chan struct{}
	entered chan struct{}
}

func newGate(t *testing.T) (*gate, http.HandlerFunc) {
	g := &gate{release: make(chan struct{}), entered: make(chan struct{}, 100)}
	return g, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		g.entered <- struct{}{}
		<-g.release
		io.WriteString(w, "gated")
	}
}

func TestQueueOverflow(t *testing.T) {
	g, h := newGate(t)
	up := upstream(t, h)
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{MaxQueueWait: 100 * time.Millisecond}, up)

	first := make(chan result)
	go func() { first <- score(t, base, "svc", nil) }()
	<-g.entered
	start := time.Now()
	res := score(t, base, "svc", nil)
	if res.status != 503 || res.header.Get("Retry-After") != "1" {
		t.Fatalf("queued past maxQueueWait: status %d Retry-After %q", res.status, res.header.Get("Retry-After"))
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("gave up after %v, before maxQueueWait", d)
	}
	if _, msg := errorCode(t, res); !strings.Contains(msg, "busy") {
		t.Errorf("message %q", msg)
	}

	// A queued request that gets a slot within the wait succeeds, in FIFO order.
	second := make(chan result)
	r.SetService(ServiceConfig{Name: "svc", Limits: Limits{MaxQueueWait: 5 * time.Second}})
	go func() { second <- score(t, base, "svc", nil) }()
	waitFor(t, func() bool { s, _ := r.Stats("svc", "svc"); return s.Queued == 1 })
	g.release <- struct{}{}
	if res := <-first; res.status != 200 {
		t.Fatalf("first: %d", res.status)
	}
	<-g.entered
	g.release <- struct{}{}
	if res := <-second; res.status != 200 {
		t.Fatalf("second: %d", res.status)
	}
}

// concurrency counts requests in flight at one upstream and remembers the most seen.
type concurrency struct {
	now, max, total atomic.Int64
}

func (c *concurrency) handler(delay time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := c.now.Add(1)
		for {
			m := c.max.Load()
			if n <= m || c.max.CompareAndSwap(m, n) {
				break
			}
		}
		c.total.Add(1)
		io.Copy(io.Discard, r.Body)
		time.Sleep(delay)
		c.now.Add(-1)
		io.WriteString(w, "ok")
	}
}

func hammer(t *testing.T, clients, perClient int, f func() result) (fails int64) {
	t.Helper()
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range clients {
		wg.Go(func() {
			for range perClient {
				if res := f(); res.status != 200 {
					if bad.Add(1) == 1 {
						t.Errorf("status %d: %s", res.status, res.body)
					}
				}
			}
		})
	}
	wg.Wait()
	return bad.Load()
}

func TestConcurrencyCap(t *testing.T) {
	var a, b concurrency
	ua, ub := upstream(t, a.handler(5*time.Millisecond)), upstream(t, b.handler(5*time.Millisecond))
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{MaxConcurrentRequestsPerContainer: 2, MaxQueueWait: 10 * time.Second}, ua, ub)
	if fails := hammer(t, 16, 10, func() result { return score(t, base, "svc", nil) }); fails > 0 {
		t.Fatalf("%d requests failed", fails)
	}
	if a.max.Load() > 2 || b.max.Load() > 2 {
		t.Errorf("max concurrent at replicas = %d, %d; cap is 2", a.max.Load(), b.max.Load())
	}
	if a.max.Load() < 2 || b.max.Load() < 2 {
		t.Errorf("max concurrent at replicas = %d, %d; the cap of 2 was never used", a.max.Load(), b.max.Load())
	}
	if s, _ := r.Stats("svc", "svc"); s.InFlight != 0 || s.Queued != 0 {
		t.Errorf("after the load: %+v", s)
	}
}

func TestLeastOutstanding(t *testing.T) {
	var slow, fast concurrency
	us, uf := upstream(t, slow.handler(40*time.Millisecond)), upstream(t, fast.handler(time.Millisecond))
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{MaxConcurrentRequestsPerContainer: 8, MaxQueueWait: 10 * time.Second}, us, uf)
	if fails := hammer(t, 4, 40, func() result { return score(t, base, "svc", nil) }); fails > 0 {
		t.Fatalf("%d requests failed", fails)
	}
	s, f := slow.total.Load(), fast.total.Load()
	t.Logf("slow replica %d requests, fast %d", s, f)
	if f < 4*s {
		t.Errorf("slow replica got %d requests, fast %d; least-outstanding should favour the fast one", s, f)
	}
}

func TestPassThrough(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscan(r.URL.Query().Get("code"), &code)
		w.Header().Set("X-Model", "m1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"status":%d}`, code)
	})
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{}, up)
	for _, code := range []int{200, 400, 404, 500, 502, 503, 504} {
		res := do(t, "POST", fmt.Sprintf("%s/api/v1/service/svc/score?code=%d", base, code), "{}", nil)
		if res.status != code || res.body != fmt.Sprintf(`{"status":%d}`, code) || res.header.Get("X-Model") != "m1" {
			t.Errorf("replica answered %d: router answered %d %q X-Model=%q", code, res.status, res.body, res.header.Get("X-Model"))
		}
	}
}

func TestReplicaDown(t *testing.T) {
	up := upstream(t, echo("a"))
	url := up.URL
	up.Close()
	r, base := startRouter(t, Options{})
	mustSetService(t, r, ServiceConfig{Name: "svc"})
	mustSetReplicas(t, r, "svc", "svc", []Replica{{ID: "a", URL: url, Ready: true}})
	res := score(t, base, "svc", nil)
	if code, _ := errorCode(t, res); res.status != 502 || code != "BadGateway" {
		t.Fatalf("status %d code %q", res.status, code)
	}
}

func TestScoringTimeout(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only once the body is read
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{ScoringTimeout: 100 * time.Millisecond}, up)
	start := time.Now()
	res := score(t, base, "svc", nil)
	if code, _ := errorCode(t, res); res.status != 504 || code != "GatewayTimeout" {
		t.Fatalf("status %d code %q", res.status, code)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("answered after %v", d)
	}
	if s, _ := r.Stats("svc", "svc"); s.InFlight != 0 {
		t.Errorf("slot not released: %+v", s)
	}
}

func TestBodyTooLarge(t *testing.T) {
	var reached atomic.Int64
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.Copy(io.Discard, r.Body)
	})
	r, base := startRouter(t, Options{MaxBodyBytes: 1024})
	plain(t, r, "svc", Limits{}, up)

	// Declared length over the limit: refused before a replica is involved.
	res := do(t, "POST", base+"/api/v1/service/svc/score", strings.Repeat("x", 2048), nil)
	if code, _ := errorCode(t, res); res.status != 413 || code != "PayloadTooLarge" {
		t.Fatalf("status %d code %q", res.status, code)
	}
	if reached.Load() != 0 {
		t.Error("an over-long declared body reached the replica")
	}
	// Unknown length (chunked): cut off while streaming.
	req, _ := http.NewRequest("POST", base+"/api/v1/service/svc/score", io.MultiReader(strings.NewReader(strings.Repeat("x", 4096))))
	req.ContentLength = -1
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked over the limit: status %d", resp.StatusCode)
	}
	// At the limit: fine.
	if res := do(t, "POST", base+"/api/v1/service/svc/score", strings.Repeat("x", 1024), nil); res.status != 200 {
		t.Fatalf("at the limit: status %d", res.status)
	}
}
