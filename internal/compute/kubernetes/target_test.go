package kubernetes_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/compute/computetest"
	"github.com/mlship/mlship/internal/compute/kubernetes"
	"github.com/mlship/mlship/internal/store"
	"github.com/mlship/mlship/test/e2e/k8s"
)

const scoreOK = `import json, os
def init():
    print("model dir", os.environ["AZUREML_MODEL_DIR"], flush=True)
def run(raw):
    return {"generation": %d}
`

const scoreBad = `def init():
    raise RuntimeError("init is broken")
def run(raw):
    return raw
`

func TestTargetConformance(t *testing.T) {
	env := k8s.Testbed(t)
	kubeconfig, err := os.ReadFile(env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	bin := k8s.StaticBinary(t)
	k8s.Prepull(t, kubeconfig, env)

	var mu sync.Mutex
	seen := map[compute.Key][]compute.Replica{}
	target, err := kubernetes.NewTarget(kubernetes.TargetConfig{
		Kubeconfig: kubeconfig, Namespace: "default",
		Registry: env["REGISTRY"], RegistryInsecure: true,
		PythonImage: env["PYTHON_IMAGE"], ONNXImage: env["ONNX_IMAGE"], Binary: bin,
		NodeSelector: map[string]string{"kubernetes.io/hostname": env["NODE"]},
		Logger:       testLogger(t),
		OnReplicas: func(k compute.Key, rs []compute.Replica) {
			mu.Lock()
			seen[k] = rs
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.Close)
	h := computetest.Harness{
		Target: target,
		Spec: func(t *testing.T, key compute.Key, gen int64, failing bool) compute.Spec {
			dir := t.TempDir()
			body := fmt.Sprintf(scoreOK, gen)
			if failing {
				body = scoreBad
			}
			os.WriteFile(filepath.Join(dir, "score.py"), []byte(body), 0o644)
			os.MkdirAll(filepath.Join(dir, "model"), 0o755)
			os.WriteFile(filepath.Join(dir, "model", "weights.txt"), []byte("42\n"), 0o644)
			return compute.Spec{Key: key, Generation: gen, ModelDir: filepath.Join(dir, "model"), SourceDir: dir,
				EntryScript: "score.py", Python: "/usr/bin/python3", Replicas: 1, Workers: 1}
		},
		Replicas: func(k compute.Key) []compute.Replica {
			mu.Lock()
			defer mu.Unlock()
			return seen[k]
		},
	}
	computetest.Run(t, h)

	t.Run("Unschedulable", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		key := compute.Key{Workspace: "ws", Service: "huge", Version: "huge"}
		t.Cleanup(func() { target.Delete(context.Background(), key) })
		spec := h.Spec(t, key, 1, false)
		spec.CPU = 1000
		err := target.Apply(ctx, spec)
		if err == nil || !strings.Contains(err.Error(), "cannot be scheduled") {
			t.Fatalf("Apply of 1000 CPUs: %v, want the scheduler's message", err)
		}
		st, err := target.Status(ctx, key)
		if err != nil || st.State != store.StateUnschedulable || !strings.Contains(st.Error, "Insufficient cpu") {
			t.Fatalf("Status = %+v, %v; want Unschedulable with the scheduler's message", st, err)
		}
		if err := target.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	})
}
