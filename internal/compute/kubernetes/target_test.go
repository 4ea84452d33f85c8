package kubernetes_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgo "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

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

// testbed starts the real cluster of test/testbed (up.sh; down.sh in cleanup) and returns its
// environment. The package's TestMain belongs to cluster_test.go, so the test itself brings it up.
func testbed(t *testing.T) map[string]string {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if os.Getenv("MLSHIP_K8S_TESTS") != "1" {
		t.Skip("the Kubernetes target runs on the real testbed cluster: set MLSHIP_K8S_TESTS=1 (root; after bash test/testbed/scripts/build.sh). Off by default so go test ./... stays fast until the testbed joins CI")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("MLSHIP_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "mlship")
	}
	for _, b := range []string{"kube-apiserver", "kubelet", "etcd", "images"} {
		if _, err := os.Stat(filepath.Join(cache, "testbed", "bin", b)); err != nil {
			msg := "testbed binaries are missing (" + b + "): run bash test/testbed/scripts/build.sh"
			if ci {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	state := os.Getenv("MLSHIP_STATE")
	if state == "" {
		state = "/tmp/mlship-testbed"
	}
	// MLSHIP_TESTBED_RUNNING=1 uses a cluster already up (for iterating) and leaves it up.
	if os.Getenv("MLSHIP_TESTBED_RUNNING") != "1" {
		start := time.Now()
		up := exec.Command("bash", filepath.Join(root, "test/testbed/scripts/up.sh"))
		if out, err := up.CombinedOutput(); err != nil {
			exec.Command("bash", filepath.Join(root, "test/testbed/scripts/down.sh")).Run()
			t.Fatalf("up.sh: %v\n%s", err, out)
		}
		t.Logf("testbed up in %v", time.Since(start).Round(time.Second))
		t.Cleanup(func() {
			// down.sh reports any kube-apiserver or etcd run from the testbed's binaries as left
			// behind, the Inspect tests' shared one included: stop it first (this file's tests run
			// after cluster_test.go's; TestMain's StopShared is then a no-op).
			k8s.StopShared()
			if out, err := exec.Command("bash", filepath.Join(root, "test/testbed/scripts/down.sh")).CombinedOutput(); err != nil {
				t.Errorf("down.sh: %v\n%s", err, out)
			}
		})
	}
	f, err := os.Open(filepath.Join(state, "testbed.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "), "=")
		if ok {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	if env["PYTHON_IMAGE"] == "" {
		t.Fatal("the testbed has no Python base image: run bash test/testbed/scripts/build.sh without MLSHIP_SKIP_BASE_IMAGES")
	}
	return env
}

// prepull runs the Python base image once on the node, so the suite's 60 s budgets measure the
// target rather than the first pull of a 120 MB base (containerd's store is wiped by up.sh).
func prepull(t *testing.T, kubeconfig []byte, env map[string]string) {
	t.Helper()
	rc, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := clientgo.NewForConfigOrDie(rc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "prepull-python", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{"kubernetes.io/hostname": env["NODE"]},
			Containers: []corev1.Container{{Name: "p", Image: env["PYTHON_IMAGE"], ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"/usr/bin/python3", "-c", "pass"}}},
		},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	cs.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	t.Logf("Python base image pulled and run on %s in %v", env["NODE"], time.Since(start).Round(100*time.Millisecond))
}

func TestTargetConformance(t *testing.T) {
	env := testbed(t)
	kubeconfig, err := os.ReadFile(env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "mlship")
	// CGO_ENABLED=0 cannot build cmd/mlship (onnxruntime_go needs cgo): link it statically instead.
	build := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static",
		"-o", bin, "github.com/mlship/mlship/cmd/mlship")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build mlship: %v\n%s", err, out)
	}
	prepull(t, kubeconfig, env)

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
