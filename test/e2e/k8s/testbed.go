package k8s

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgo "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Root is the repository's root folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "../../.."))
}

var static struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// StaticBinary builds cmd/mlship statically linked, once per test binary, for the images of a
// Kubernetes target. CGO_ENABLED=0 cannot build it (onnxruntime_go needs cgo): it is linked
// statically instead, as 'make static' does.
func StaticBinary(t testing.TB) string {
	t.Helper()
	static.once.Do(func() {
		dir, err := os.MkdirTemp("", "mlship-static-")
		if err != nil {
			static.err = err
			return
		}
		static.path = filepath.Join(dir, "mlship")
		build := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static",
			"-o", static.path, "github.com/mlship/mlship/cmd/mlship")
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		static.out, static.err = build.CombinedOutput()
	})
	if static.err != nil {
		t.Fatalf("build a static mlship: %v\n%s", static.err, static.out)
	}
	return static.path
}

// Testbed starts the real cluster of test/testbed (up.sh; down.sh in cleanup) and returns its
// environment. The package's TestMain belongs to cluster_test.go, so the test itself brings it up.
func Testbed(t testing.TB) map[string]string {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if os.Getenv("MLSHIP_K8S_TESTS") != "1" {
		t.Skip("the Kubernetes target runs on the real testbed cluster: set MLSHIP_K8S_TESTS=1 (root; after bash test/testbed/scripts/build.sh). Off by default so go test ./... stays fast until the testbed joins CI")
	}
	root := Root()
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
			StopShared()
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

// Prepull runs the Python base image once on the node, so the suite's 60 s budgets measure the
// target rather than the first pull of a 120 MB base (containerd's store is wiped by up.sh).
func Prepull(t testing.TB, kubeconfig []byte, env map[string]string) {
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
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("prepull-python-%d", time.Now().UnixNano()%1e6), Namespace: "default"},
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
