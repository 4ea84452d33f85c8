package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Azure's autoscaler semantics: scale up within about a second of load, down only after the
// low load has lasted the downscale delay (60 s by default; 3 s in these tests).
func TestAutoscalerFollowsLoad(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	svc := e.mustDeploy("auto-svc", []string{e.register("lin", 1)}, e.source(""),
		`{"autoScaler": {"minReplicas": 1, "maxReplicas": 6}, "maxQueueWaitMs": 5000}`)
	if svc.Replicas.Desired != 1 {
		t.Fatalf("initial replicas = %+v", svc.Replicas)
	}
	k := e.keys("auto-svc")
	l := startLoad(t, 16, svc.ScoringURI, k.PrimaryKey, `{"x": 1, "sleep": 0.05}`)
	start := time.Now()
	var grewTo int
	for time.Since(start) < 10*time.Second {
		got, _ := e.client.GetService(ctx, "default", "auto-svc")
		if got.Replicas.Ready >= 4 {
			grewTo = got.Replicas.Ready
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	ok, failed, samples := l.finish()
	if grewTo < 4 {
		t.Fatalf("replicas did not reach 4 within 10 s of a 16-client load (ok %d, failed %d %v)", ok, failed, samples)
	}
	t.Logf("scaled 1 -> %d ready replicas in %.1fs; %d requests ok, %d failed", grewTo, took.Seconds(), ok, failed)
	if failed*100 > ok+failed {
		t.Fatalf("%d of %d requests failed while scaling up: %v", failed, ok+failed, samples)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, _ := e.client.GetService(ctx, "default", "auto-svc")
		if got.Replicas.Desired == 1 && got.Replicas.Ready == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not scale back to 1 replica within 20 s of idling: %+v", got.Replicas)
		}
		time.Sleep(200 * time.Millisecond)
	}
	logs, err := e.client.ServiceLogs(ctx, "default", "auto-svc", 0, false)
	if err != nil || !strings.Contains(logs, "autoscaler: 1 -> ") || !strings.Contains(logs, " -> 1 replicas") {
		t.Fatalf("autoscaler decisions missing from get-logs: %v\n%s", err, logs)
	}
}
