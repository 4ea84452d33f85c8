package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlship/mlship/api"
)

// With appInsightsEnabled the control plane keeps per-version time series and compares a
// treatment with the control; with dataCollection.storageEnabled it writes inputs and outputs.
func TestEndpointMetricsCompareAndDataCollection(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m := e.register("lin", 2)
	fast := e.source("")
	slow := t.TempDir()
	os.WriteFile(filepath.Join(slow, "score.py"), []byte(`import json, os, time
def init():
    global w
    w = json.load(open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")))["w"]
def run(raw):
    time.sleep(0.02)
    return {"y": w * json.loads(raw)["x"]}
`), 0o644)
	dc := `{"computeType": "AKSENDPOINT", "versionName": "control", "trafficPercentile": 50, "appInsightsEnabled": true,
		"dataCollection": {"storageEnabled": true}, "maxConcurrentRequestsPerContainer": 4}`
	ep := e.mustDeploy("watch-ep", []string{m}, fast, dc)
	e.mustOp(e.createVersion("watch-ep", "slower", m, slow, api.VersionRequest{TrafficPercentile: pct(50),
		DeploymentConfig: json.RawMessage(`{"maxConcurrentRequestsPerContainer": 4}`)}))
	key := e.keys("watch-ep").PrimaryKey
	for i := range 200 {
		if code, body := score(t, ep.ScoringURI, key, `{"x": 3}`); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	score(t, ep.ScoringURI, key, `not json`) // run() raises: a 502 for one version

	got, err := e.client.EndpointMetrics(ctx, "default", "watch-ep", 5*time.Minute, true)
	if err != nil {
		t.Fatal(err)
	}
	if !got.AppInsightsEnabled || len(got.Versions) != 2 {
		t.Fatalf("metrics = %+v", got)
	}
	var total, failures uint64
	for _, v := range got.Versions {
		total += v.Requests
		failures += v.Failures
		if v.Requests < 90 || v.P50Ms <= 0 || v.P99Ms < v.P50Ms {
			t.Errorf("version %s: %+v", v.Version, v)
		}
	}
	if total != 201 || failures != 1 {
		t.Fatalf("recorded %d requests and %d failures, want 201 and 1", total, failures)
	}
	if len(got.Comparisons) != 1 {
		t.Fatalf("comparisons = %+v", got.Comparisons)
	}
	c := got.Comparisons[0]
	if c.Control != "control" || c.Treatment != "slower" || !c.LatencyTested || c.LatencyP >= 0.05 ||
		!strings.Contains(c.LatencyVerdict, "slower") || c.P50DiffMs < 10 {
		t.Fatalf("comparison = %+v; want the treatment significantly slower (~20 ms)", c)
	}
	t.Logf("compare: %s / %s (p50 diff %.1f ms)", c.LatencyVerdict, c.ErrorVerdict, c.P50DiffMs)

	// Collected inputs and outputs, one JSON line per request, per version and day.
	day := time.Now().UTC().Format("2006-01-02")
	path := filepath.Join(e.dataDir, "modeldata", "watch-ep", "control", day+".jsonl")
	deadline := time.Now().Add(10 * time.Second)
	var lines []map[string]any
	for {
		lines = nil
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var l map[string]any
				if json.Unmarshal(sc.Bytes(), &l) == nil {
					lines = append(lines, l)
				}
			}
			f.Close()
		}
		if len(lines) >= 90 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(lines) < 90 {
		t.Fatalf("%d collected lines in %s, want one per request to the control version", len(lines), path)
	}
	in, _ := json.Marshal(lines[0]["input"])
	out, _ := lines[0]["output"].(map[string]any)
	if string(in) != `{"x":3}` || out["y"] != 6.0 || lines[0]["version"] != "control" || lines[0]["status"] != 200.0 {
		t.Fatalf("collected line = %v", lines[0])
	}
}
