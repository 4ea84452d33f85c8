package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlship/mlship/api"
)

// With several models, AZUREML_MODEL_DIR is the parent of NAME/VERSION folders, as in Azure ML.
func TestMultiModelServiceSeesEveryModel(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	a, b := e.register("alpha", 1), e.register("beta", 2)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "score.py"), []byte(`import os, json
def init():
    pass
def run(raw):
    root = os.environ["AZUREML_MODEL_DIR"]
    found = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            found.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(found)
`), 0o644)
	svc := e.mustDeploy("multi-svc", []string{a, b}, src, `{}`)
	code, body := score(t, svc.ScoringURI, e.keys("multi-svc").PrimaryKey, `{}`)
	var files []string
	json.Unmarshal([]byte(body), &files)
	if code != 200 || strings.Join(files, ",") != "alpha/1/weights.json,beta/1/weights.json" {
		t.Fatalf("model dir holds %d %s, want alpha/1/weights.json and beta/1/weights.json", code, body)
	}
}

// Services with the same package list share one cached virtualenv (Azure's image cache, locally).
func TestEnvironmentIsBuiltOnceAndShared(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m := e.register("lin", 1)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "score.py"), []byte(`import sys, numpy
def init():
    pass
def run(raw):
    return {"prefix": sys.prefix, "numpy": numpy.__version__}
`), 0o644)
	ic := json.RawMessage(`{"entryScript": "score.py", "environment": {"name": "np", "python": {"condaDependencies": {"dependencies": ["python=3.11", {"pip": ["numpy"]}]}}}}`)
	var prefixes []string
	for _, name := range []string{"env-one", "env-two"} {
		op, err := e.client.DeployService(ctx, "default", api.DeployRequest{Name: name, Models: []string{m}, InferenceConfig: ic, DeploymentConfig: json.RawMessage(`{}`)}, mustPlan(t, src))
		if err != nil {
			t.Fatal(err)
		}
		if op = e.wait(op); op.State != "Succeeded" {
			t.Fatalf("deploy %s: %+v", name, op)
		}
		svc, _ := e.client.GetService(ctx, "default", name)
		code, body := score(t, svc.ScoringURI, e.keys(name).PrimaryKey, `{}`)
		var out struct{ Prefix, Numpy string }
		json.Unmarshal([]byte(body), &out)
		if code != 200 || !strings.HasPrefix(out.Prefix, filepath.Join(e.dataDir, "envs")) || out.Numpy == "" {
			t.Fatalf("%s runs in %q (numpy %q): want a cached virtualenv under the data dir (%d %s)", name, out.Prefix, out.Numpy, code, body)
		}
		prefixes = append(prefixes, out.Prefix)
	}
	if prefixes[0] != prefixes[1] {
		t.Fatalf("two services with one package list use two environments: %v", prefixes)
	}
	// A package that cannot be installed fails the deploy with pip's reason.
	bad := json.RawMessage(`{"entryScript": "score.py", "environment": {"name": "bad", "python": {"condaDependencies": {"dependencies": [{"pip": ["surely-not-a-real-package-mlship==9.9"]}]}}}}`)
	op, err := e.client.DeployService(ctx, "default", api.DeployRequest{Name: "env-bad", Models: []string{m}, InferenceConfig: bad, DeploymentConfig: json.RawMessage(`{}`)}, mustPlan(t, src))
	if err != nil {
		t.Fatal(err)
	}
	if op = e.wait(op); op.State != "Failed" || !strings.Contains(op.Error, "surely-not-a-real-package-mlship") {
		t.Fatalf("deploy with an uninstallable package: %+v", op)
	}
}

// A deploy interrupted by a server stop ends, after the restart, Failed or Succeeded; never stuck Running.
func TestInterruptedDeployIsNotStuck(t *testing.T) {
	dir := t.TempDir()
	scoring := freePort(t)
	e := start(t, dir, scoring, "")
	op, err := e.deploy("slow-svc", []string{e.register("lin", 1)}, e.source("time.sleep(3)"), `{}`)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	e.stop()

	e2 := start(t, dir, scoring, e.token)
	got, err := e2.client.GetOperation(context.Background(), "default", op.ID)
	if err != nil || got.State != "Failed" || !strings.Contains(got.Error, "interrupted") {
		t.Fatalf("interrupted operation after restart = %+v, %v; want Failed (interrupted)", got, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		svc, _ := e2.client.GetService(context.Background(), "default", "slow-svc")
		if svc.State == "Healthy" {
			break
		}
		if svc.State == "Failed" || time.Now().After(deadline) {
			t.Fatalf("service after restart: %s %q", svc.State, svc.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
