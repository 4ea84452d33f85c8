// Package computetest is the conformance suite every compute.Target passes.
package computetest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

// Harness gives the suite a target and model folders to run.
type Harness struct {
	Target compute.Target
	// Spec returns a spec serving a model whose run() echoes {"generation": gen}; failing makes init() raise.
	Spec func(t *testing.T, key compute.Key, gen int64, failing bool) compute.Spec
	// Replicas returns the replica set the target last reported for key (the router's view).
	Replicas func(key compute.Key) []compute.Replica
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("ApplyScaleDelete", func(t *testing.T) { testApplyScaleDelete(t, h) })
	t.Run("RollingUpdate", func(t *testing.T) { testRollingUpdate(t, h) })
	t.Run("InitFailure", func(t *testing.T) { testInitFailure(t, h) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Score posts to a replica and returns the body.
func Score(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Post(url+"/score", "application/json", strings.NewReader(`{"data": 1}`))
	if err != nil {
		t.Fatalf("score %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("score %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ready(rs []compute.Replica) []compute.Replica {
	var out []compute.Replica
	for _, r := range rs {
		if r.Ready {
			out = append(out, r)
		}
	}
	return out
}

func testApplyScaleDelete(t *testing.T, h Harness) {
	ctx := ctxT(t)
	key := compute.Key{Workspace: "ws", Service: "asd", Version: "asd"}
	spec := h.Spec(t, key, 1, false)
	spec.Replicas = 1
	if err := h.Target.Apply(ctx, spec); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st, err := h.Target.Status(ctx, key)
	if err != nil || st.State != store.StateHealthy || st.Ready != 1 || st.Generation != 1 {
		t.Fatalf("Status after Apply = %+v, %v", st, err)
	}
	reps := ready(h.Replicas(key))
	if len(reps) != 1 || !strings.Contains(Score(t, reps[0].URL), `"generation": 1`) {
		t.Fatalf("replicas reported = %+v", reps)
	}
	if err := h.Target.Scale(ctx, key, 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 ready replicas", func() bool { return len(ready(h.Replicas(key))) == 3 })
	for _, r := range ready(h.Replicas(key)) {
		Score(t, r.URL)
	}
	if err := h.Target.Scale(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "1 replica", func() bool { return len(h.Replicas(key)) == 1 })
	logs, err := h.Target.Logs(ctx, key, compute.LogOptions{})
	if err != nil || logs == "" {
		t.Fatalf("Logs = %q, %v", logs, err)
	}
	if tail, _ := h.Target.Logs(ctx, key, compute.LogOptions{Tail: 1}); strings.Count(tail, "\n") != 1 {
		t.Fatalf("Logs tail 1 = %q", tail)
	}
	urls := []string{}
	for _, r := range h.Replicas(key) {
		urls = append(urls, r.URL)
	}
	if err := h.Target.Scale(ctx, key, 0); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("Scale to 0: %v, want ErrInvalid", err)
	}
	if err := h.Target.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if len(h.Replicas(key)) != 0 {
		t.Fatalf("replicas after delete: %+v", h.Replicas(key))
	}
	if _, err := h.Target.Status(ctx, key); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Status after Delete: %v, want ErrNotFound", err)
	}
	for _, u := range urls {
		if resp, err := http.Get(u + "/"); err == nil {
			resp.Body.Close()
			t.Fatalf("replica %s still answers after Delete", u)
		}
	}
	if err := h.Target.Scale(ctx, key, 2); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Scale of a deleted key: %v, want ErrNotFound", err)
	}
}

func testRollingUpdate(t *testing.T, h Harness) {
	ctx := ctxT(t)
	key := compute.Key{Workspace: "ws", Service: "roll", Version: "roll"}
	t.Cleanup(func() { h.Target.Delete(context.Background(), key) })
	spec := h.Spec(t, key, 1, false)
	spec.Replicas = 2
	if err := h.Target.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// While generation 2 starts, generation 1 keeps answering.
	done := make(chan error, 1)
	go func() {
		s2 := h.Spec(t, key, 2, false)
		s2.Replicas = 2
		done <- h.Target.Apply(ctx, s2)
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("rolling Apply: %v", err)
			}
			reps := h.Replicas(key)
			if len(reps) != 2 {
				t.Fatalf("after the rollout %d replicas, want 2", len(reps))
			}
			for _, r := range reps {
				if !strings.Contains(Score(t, r.URL), `"generation": 2`) {
					t.Fatal("an old-generation replica survived the rollout")
				}
			}
			// A failing generation 3 leaves generation 2 serving.
			if err := h.Target.Apply(ctx, h.Spec(t, key, 3, true)); err == nil {
				t.Fatal("Apply of a failing generation succeeded")
			}
			st, _ := h.Target.Status(ctx, key)
			if st.Generation != 2 || st.Ready != 2 {
				t.Fatalf("after a failed rollout: %+v, want generation 2 with 2 ready", st)
			}
			return
		default:
		}
		rs := ready(h.Replicas(key))
		if len(rs) == 0 {
			t.Fatal("no ready replica during the rollout")
		}
		Score(t, rs[0].URL)
		time.Sleep(5 * time.Millisecond)
	}
}

func testInitFailure(t *testing.T, h Harness) {
	ctx := ctxT(t)
	key := compute.Key{Workspace: "ws", Service: "boom", Version: "boom"}
	t.Cleanup(func() { h.Target.Delete(context.Background(), key) })
	err := h.Target.Apply(ctx, h.Spec(t, key, 1, true))
	if err == nil {
		t.Fatal("Apply of a model whose init() raises succeeded")
	}
	st, serr := h.Target.Status(ctx, key)
	if serr != nil || st.State != store.StateFailed || st.Error == "" {
		t.Fatalf("Status = %+v, %v; want Failed with the reason", st, serr)
	}
	logs, err := h.Target.Logs(ctx, key, compute.LogOptions{Init: true})
	if err != nil || !strings.Contains(logs, "Traceback") || !strings.Contains(logs, "init is broken") {
		t.Fatalf("init logs lack the traceback: %q, %v", logs, err)
	}
	if len(ready(h.Replicas(key))) != 0 {
		t.Fatal("a failed replica is reported ready")
	}
}
