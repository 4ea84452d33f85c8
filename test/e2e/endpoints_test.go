package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/errdefs"
)

func pct(p float64) *float64 { return &p }

func (e *env) createVersion(ep, name, model, src string, req api.VersionRequest) (api.Operation, error) {
	req.Name, req.Models = name, []string{model}
	req.InferenceConfig = json.RawMessage(`{"entryScript": "score.py"}`)
	return e.client.CreateVersion(context.Background(), "default", ep, req, mustPlan(e.t, src))
}

func (e *env) mustOp(op api.Operation, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	if op = e.wait(op); op.State != "Succeeded" {
		e.t.Fatalf("%s: %s", op.OperationType, op.Error)
	}
}

func (e *env) shares(ep string) map[string]float64 {
	e.t.Helper()
	got, err := e.client.GetEndpoint(context.Background(), "default", ep)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, v := range got.Versions {
		out[v.Name] = v.EffectiveTrafficPercentile
	}
	return out
}

// scoreVersion scores x=1: the answer's y is the weight of the model version that answered.
func scoreAs(t *testing.T, uri, key, pin string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, uri, strings.NewReader(`{"x": 1}`))
	req.Header.Set("Authorization", "Bearer "+key)
	if pin != "" {
		req.Header.Set("azureml-model-deployment", pin)
	}
	resp, err := scoreClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var out struct{ Y float64 }
	var raw json.RawMessage
	json.NewDecoder(resp.Body).Decode(&raw)
	json.Unmarshal(raw, &out)
	if resp.StatusCode != 200 {
		return resp.StatusCode, string(raw)
	}
	return resp.StatusCode, fmt.Sprint(out.Y)
}

func TestEndpointVersionsAndSplit(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m1, m2, m3 := e.register("lin", 1), e.register("lin", 2), e.register("lin", 3)
	src := e.source("")
	ep := e.mustDeploy("ep-svc", []string{m1}, src, `{"computeType": "AKSENDPOINT", "versionName": "ver1", "trafficPercentile": 20}`)
	if ep.ComputeType != "AKSENDPOINT" {
		t.Fatalf("computeType = %q", ep.ComputeType)
	}
	// Azure's worked example.
	if s := e.shares("ep-svc"); s["ver1"] != 100 {
		t.Fatalf("ver1 at 20%% alone: %v, want 100", s)
	}
	e.mustOp(e.createVersion("ep-svc", "ver2", m2, src, api.VersionRequest{TrafficPercentile: pct(10)}))
	if s := e.shares("ep-svc"); s["ver1"] != 90 || s["ver2"] != 10 {
		t.Fatalf("after adding ver2 at 10%%: %v, want 90/10", s)
	}
	e.mustOp(e.client.UpdateVersion(ctx, "default", "ep-svc", api.VersionRequest{Name: "ver2", TrafficPercentile: pct(40), IsDefault: true}, nil))
	if s := e.shares("ep-svc"); s["ver1"] != 20 || s["ver2"] != 80 {
		t.Fatalf("after ver2 at 40%% and default: %v, want 20/80", s)
	}

	// A 70/20/10 split over 5,000 requests lands within 2 points (the picker is deterministic).
	e.mustOp(e.createVersion("ep-svc", "ver3", m3, src, api.VersionRequest{TrafficPercentile: pct(10)}))
	e.mustOp(e.client.UpdateVersion(ctx, "default", "ep-svc", api.VersionRequest{Name: "ver2", TrafficPercentile: pct(20)}, nil))
	e.mustOp(e.client.UpdateVersion(ctx, "default", "ep-svc", api.VersionRequest{Name: "ver1", TrafficPercentile: pct(70)}, nil))
	key := e.keys("ep-svc").PrimaryKey
	counts := map[string]int{}
	for range 5000 {
		code, y := scoreAs(t, ep.ScoringURI, key, "")
		if code != 200 {
			t.Fatalf("score: %d %s", code, y)
		}
		counts[y]++
	}
	for y, want := range map[string]float64{"1": 70, "2": 20, "3": 10} {
		if got := float64(counts[y]) / 50; got < want-2 || got > want+2 {
			t.Errorf("version with weight %s got %.1f%% of 5000 requests, want %.0f±2 (%v)", y, got, want, counts)
		}
	}
	// Pinning: the header picks a version, even one at 0%; an unknown one is 404 naming the versions.
	e.mustOp(e.client.UpdateVersion(ctx, "default", "ep-svc", api.VersionRequest{Name: "ver3", TrafficPercentile: pct(0)}, nil))
	for range 50 {
		if _, y := scoreAs(t, ep.ScoringURI, key, ""); y == "3" {
			t.Fatal("a 0% version got an unpinned request")
		}
	}
	for range 5 {
		if code, y := scoreAs(t, ep.ScoringURI, key, "ver3"); code != 200 || y != "3" {
			t.Fatalf("pinned to ver3: %d %s", code, y)
		}
	}
	if code, body := scoreAs(t, ep.ScoringURI, key, "nope"); code != 404 || !strings.Contains(body, "ver1") || !strings.Contains(body, "ver3") {
		t.Fatalf("unknown pinned version: %d %s", code, body)
	}

	got, _ := e.client.GetEndpoint(ctx, "default", "ep-svc")
	types := map[string]string{}
	for _, v := range got.Versions {
		types[v.Name] = v.Type
	}
	if types["ver1"] != "Control" || types["ver2"] != "Treatment" || got.State != "Healthy" {
		t.Fatalf("endpoint = %s %v", got.State, types)
	}
	e.mustOp(e.client.UpdateVersion(ctx, "default", "ep-svc", api.VersionRequest{Name: "ver3", IsControlVersion: true}, nil))
	got, _ = e.client.GetEndpoint(ctx, "default", "ep-svc")
	for _, v := range got.Versions {
		if (v.Name == "ver3") != (v.Type == "Control") {
			t.Fatalf("after making ver3 the control: %s is %s", v.Name, v.Type)
		}
	}
}

func TestEndpointRulesRefuseBadChanges(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m := e.register("lin", 1)
	src := e.source("")
	e.mustDeploy("rules-ep", []string{m}, src, `{"computeType": "AKSENDPOINT", "versionName": "ver1", "trafficPercentile": 50}`)
	for i := 2; i <= 6; i++ {
		e.mustOp(e.createVersion("rules-ep", fmt.Sprintf("ver%d", i), m, src, api.VersionRequest{}))
	}
	check := func(name string, err error, kind error, msg string) {
		t.Helper()
		if !errors.Is(err, kind) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want %v mentioning %q", name, err, kind, msg)
		}
	}
	_, err := e.createVersion("rules-ep", "ver7", m, src, api.VersionRequest{})
	check("seventh version", err, errdefs.ErrConflict, "6")
	_, err = e.client.UpdateVersion(ctx, "default", "rules-ep", api.VersionRequest{Name: "ver2", TrafficPercentile: pct(150)}, nil)
	check("percentile 150", err, errdefs.ErrInvalid, "150")
	_, err = e.client.UpdateVersion(ctx, "default", "rules-ep", api.VersionRequest{Name: "ver2", TrafficPercentile: pct(60)}, nil)
	check("shares over 100", err, errdefs.ErrInvalid, "100")
	_, err = e.client.UpdateVersion(ctx, "default", "rules-ep", api.VersionRequest{Name: "ghost", TrafficPercentile: pct(1)}, nil)
	check("unknown version", err, errdefs.ErrNotFound, "ghost")
	_, err = e.client.DeleteVersion(ctx, "default", "rules-ep", "ver1", "")
	check("delete the default", err, errdefs.ErrConflict, "default")
	_, err = e.createVersion("rules-ep", "Bad_Name", m, src, api.VersionRequest{})
	check("bad version name", err, errdefs.ErrInvalid, "Bad_Name")

	// Another default moves the role: there is never a second one.
	e.mustOp(e.client.UpdateVersion(ctx, "default", "rules-ep", api.VersionRequest{Name: "ver4", IsDefault: true}, nil))
	got, _ := e.client.GetEndpoint(ctx, "default", "rules-ep")
	defaults, controls := 0, 0
	for _, v := range got.Versions {
		if v.IsDefault {
			defaults++
		}
		if v.Type == "Control" {
			controls++
		}
	}
	if defaults != 1 || controls != 1 {
		t.Fatalf("%d defaults and %d controls, want exactly one of each", defaults, controls)
	}
	e.mustOp(e.client.DeleteVersion(ctx, "default", "rules-ep", "ver1", ""))
	for _, v := range []string{"ver2", "ver3", "ver5", "ver6"} {
		e.mustOp(e.client.DeleteVersion(ctx, "default", "rules-ep", v, ""))
	}
	_, err = e.client.DeleteVersion(ctx, "default", "rules-ep", "ver4", "")
	check("delete the only version", err, errdefs.ErrConflict, "delete the endpoint")
	if got, _ := e.client.GetEndpoint(ctx, "default", "rules-ep"); len(got.Versions) != 1 || got.State != "Healthy" {
		t.Fatalf("after the refusals: %+v", got)
	}
	if n := len(replicaPIDs(t, e.dataDir, "rules-ep")); n == 0 || n > 2 {
		t.Fatalf("replica processes of the one version left: %d, want 1 (+ its worker)", n)
	}
}

func TestSplitChangesUnderLoadFailNoRequest(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m1, m2 := e.register("lin", 1), e.register("lin", 2)
	src := e.source("")
	ep := e.mustDeploy("load-ep", []string{m1}, src, `{"computeType": "AKSENDPOINT", "versionName": "blue", "numReplicas": 2, "maxQueueWaitMs": 5000}`)
	e.mustOp(e.createVersion("load-ep", "green", m2, src, api.VersionRequest{DeploymentConfig: json.RawMessage(`{"numReplicas": 2, "maxQueueWaitMs": 5000}`)}))
	key := e.keys("load-ep").PrimaryKey
	l := startLoad(t, 8, ep.ScoringURI, key, `{"x": 1}`)
	for _, p := range []float64{10, 50, 90, 100, 0, 30} {
		e.mustOp(e.client.UpdateVersion(ctx, "default", "load-ep", api.VersionRequest{Name: "green", TrafficPercentile: pct(p)}, nil))
		time.Sleep(150 * time.Millisecond)
	}
	ok, failed, samples := l.finish()
	if failed != 0 || ok < 100 {
		t.Fatalf("split changes under load: %d ok, %d failed %v", ok, failed, samples)
	}
	t.Logf("6 split changes under 8 clients: %d requests, none failed", ok)
}

// A mirror version gets a copy of part of the traffic; its answers never reach the client.
func TestMirrorTrafficNeverReachesClients(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m1, m2 := e.register("lin", 1), e.register("lin", 9)
	src := e.source("")
	marks := filepath.Join(t.TempDir(), "mirrored")
	shadow := t.TempDir()
	os.WriteFile(filepath.Join(shadow, "score.py"), []byte(fmt.Sprintf(`import json
def init():
    pass
def run(raw):
    with open(%q, "a") as f:
        f.write("x\n")
    return {"y": 9}
`, marks)), 0o644)
	ep := e.mustDeploy("mirror-ep", []string{m1}, src, `{"computeType": "AKSENDPOINT", "versionName": "live", "maxConcurrentRequestsPerContainer": 4}`)
	e.mustOp(e.createVersion("mirror-ep", "shadow", m2, shadow, api.VersionRequest{TrafficPercentile: pct(0), MirrorPercentile: pct(50),
		DeploymentConfig: json.RawMessage(`{"maxConcurrentRequestsPerContainer": 4}`)}))
	key := e.keys("mirror-ep").PrimaryKey
	for range 100 {
		if code, y := scoreAs(t, ep.ScoringURI, key, ""); code != 200 || y != "1" {
			t.Fatalf("client got %d %s: only the live version may answer", code, y)
		}
		time.Sleep(2 * time.Millisecond) // a copy is sent only when a shadow replica slot is free
	}
	time.Sleep(300 * time.Millisecond)
	b, _ := os.ReadFile(marks)
	n := strings.Count(string(b), "x")
	if n < 35 || n > 50 {
		t.Fatalf("the shadow version saw %d of 100 requests, want about 50 (mirror 50%%)", n)
	}
	if _, err := e.client.UpdateVersion(ctx, "default", "mirror-ep", api.VersionRequest{Name: "shadow", MirrorPercentile: pct(60)}, nil); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("mirror over 50%%: %v, want 400", err)
	}
	t.Logf("mirror 50%%: the shadow version saw %d of 100 requests", n)
}
