package router

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	auto := ScaleSpec{Autoscale: true, MinReplicas: 1, MaxReplicas: 10, TargetUtilization: 70, DownscaleDelay: 60 * time.Second}
	type step struct {
		at   time.Duration // since t0
		load float64
		want int
	}
	tests := []struct {
		name  string
		spec  ScaleSpec
		start int
		steps []step
	}{
		{"steady at target", auto, 2, []step{{0, 1.4, 2}, {time.Second, 1.4, 2}, {2 * time.Minute, 1.4, 2}}},
		// 3 busy on 2 replicas = 150 % > 70 %: ceil(3/0.7) = 5 at once.
		{"scale up at once", auto, 2, []step{{0, 3, 5}}},
		{"scale up capped at max", auto, 2, []step{{0, 100, 10}}},
		{"idle scales to min after the delay", auto, 4, []step{
			{0, 0, 4}, {30 * time.Second, 0, 4}, {59 * time.Second, 0, 4}, {60 * time.Second, 0, 1}}},
		// The low period restarts when load comes back to the target.
		{"low period interrupted", auto, 4, []step{
			{0, 0, 4}, {50 * time.Second, 2.8, 4}, {51 * time.Second, 0, 4}, {110 * time.Second, 0, 4}, {111 * time.Second, 0, 1}}},
		// Scales down to the most the load needed during the low period, not the last sample.
		{"down to the low period's peak", auto, 6, []step{
			{0, 0, 6}, {20 * time.Second, 2, 6}, {60 * time.Second, 0.1, 3}}},
		{"up during low period", auto, 4, []step{{0, 0, 4}, {10 * time.Second, 7, 10}}},
		{"below min", ScaleSpec{Autoscale: true, MinReplicas: 3, MaxReplicas: 5}, 1, []step{{0, 0, 3}}},
		{"above max", ScaleSpec{Autoscale: true, MinReplicas: 1, MaxReplicas: 5}, 8, []step{{0, 8, 5}}},
		{"defaults: target 70, max 10", ScaleSpec{Autoscale: true}, 1, []step{{0, 0.7, 1}, {time.Second, 0.71, 2}, {2 * time.Second, 50, 10}}},
		{"numReplicas fixes the count", ScaleSpec{NumReplicas: 3}, 1, []step{{0, 50, 3}, {time.Hour, 0, 3}}},
		{"zero replicas with load", auto, 0, []step{{0, 0.5, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ScaleState{Replicas: tt.start}
			for i, s := range tt.steps {
				var d Decision
				from := st.Replicas
				st, d = Decide(tt.spec, st, s.load, t0.Add(s.at))
				if st.Replicas != s.want || d.To != s.want || d.From != from {
					t.Fatalf("step %d (t+%v, load %v): replicas %d (decision %d→%d), want %d", i, s.at, s.load, st.Replicas, d.From, d.To, s.want)
				}
				if (d.From != d.To) != (d.Reason != "") {
					t.Errorf("step %d: reason %q for %d→%d", i, d.Reason, d.From, d.To)
				}
			}
		})
	}
}

// recordingScaler is the consumer's Scaler, recording calls (a test double: the real one
// is the control plane's compute target).
type recordingScaler struct {
	mu    sync.Mutex
	calls []int
	err   error
}

func (s *recordingScaler) Scale(_ context.Context, service, version string, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, n)
	return s.err
}

func (s *recordingScaler) last() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		return 0, 0
	}
	return s.calls[len(s.calls)-1], len(s.calls)
}

// The loop against a real router: four clients hold requests at a one-replica service
// (1 busy + 3 queued = load 4 → ceil(4/0.7) = 6); once they finish it scales back to 1.
func TestAutoscalerLoop(t *testing.T) {
	g, h := newGate(t)
	up := upstream(t, h)
	r, base := startRouter(t, Options{})
	mustSetService(t, r, ServiceConfig{Name: "svc", Limits: Limits{MaxQueueWait: 10 * time.Second},
		Versions: []VersionConfig{{Name: "svc", Scale: ScaleSpec{Autoscale: true, RefreshPeriod: 20 * time.Millisecond, DownscaleDelay: 100 * time.Millisecond}}}})
	mustSetReplicas(t, r, "svc", "svc", ready(up))

	sc := &recordingScaler{}
	var mu sync.Mutex
	var decisions []Decision
	a := NewAutoscaler(r, sc, AutoscalerOptions{Interval: 10 * time.Millisecond, OnDecision: func(d Decision) {
		mu.Lock()
		decisions = append(decisions, d)
		mu.Unlock()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if res := score(t, base, "svc", nil); res.status != 200 {
				t.Errorf("status %d", res.status)
			}
		})
	}
	waitFor(t, func() bool { n, _ := sc.last(); return n == 6 })
	close(g.release)
	wg.Wait()
	waitFor(t, func() bool { n, _ := sc.last(); return n == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(decisions) < 2 || decisions[0].Service != "svc" || decisions[0].To != 6 || decisions[0].Reason == "" {
		t.Fatalf("decisions = %+v", decisions)
	}
	res := do(t, "GET", base+"/metrics", "", nil)
	if want := `mlship_router_autoscaler_desired_replicas{service="svc",version="svc"} 1`; !strings.Contains(res.body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// A Scaler error is reported and the decision retried at the next sample.
func TestAutoscalerScaleError(t *testing.T) {
	r := New(Options{})
	defer r.Close()
	mustSetService(t, r, ServiceConfig{Name: "svc", Versions: []VersionConfig{{Name: "svc", Scale: ScaleSpec{NumReplicas: 3}}}})
	mustSetReplicas(t, r, "svc", "svc", []Replica{{ID: "a", URL: "http://127.0.0.1:1", Ready: true}})
	sc := &recordingScaler{err: errors.New("quota exceeded")}
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var got []Decision
	a := NewAutoscaler(r, sc, AutoscalerOptions{Now: func() time.Time { return now }, OnDecision: func(d Decision) { got = append(got, d) }})
	a.Step(context.Background())
	now = now.Add(time.Second)
	a.Step(context.Background())
	if _, calls := sc.last(); calls != 2 || len(got) != 2 || got[1].Err == nil || got[1].From != 1 || got[1].To != 3 {
		t.Fatalf("calls %d decisions %+v", calls, got)
	}
	sc.err = nil
	now = now.Add(time.Second)
	a.Step(context.Background())
	now = now.Add(time.Second)
	a.Step(context.Background())
	if n, calls := sc.last(); n != 3 || calls != 3 {
		t.Fatalf("after recovery: last %d calls %d", n, calls)
	}
}
