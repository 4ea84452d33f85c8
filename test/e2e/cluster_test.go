package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgo "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/test/e2e/k8s"
)

// clusterEnv is a CLI bound to a server with the testbed cluster attached as "testbed", in a
// namespace of its own that is deleted afterwards.
type clusterEnv struct {
	*cli
	cs        clientgo.Interface
	namespace string
	tb        map[string]string
}

func startCluster(t *testing.T, prefix string) *clusterEnv {
	return startClusterWith(t, prefix, k8s.StaticBinary(t))
}

// startClusterWith is startCluster with the server's --image-binary.
func startClusterWith(t *testing.T, prefix, imageBinary string) *clusterEnv {
	// A fresh namespace per run: one deleted by an earlier run may still be terminating.
	namespace := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e6)
	tb := k8s.Testbed(t)
	kc, err := os.ReadFile(tb["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	cs := clientgo.NewForConfigOrDie(rc)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), namespace, metav1.DeleteOptions{}) })
	k8s.Prepull(t, kc, tb)
	c := startCLI(t, "--image-binary", imageBinary)
	c.ok("computetarget", "attach", "kubernetes", "-n", "testbed", "--kubeconfig", tb["KUBECONFIG"], "--namespace", namespace,
		"--cluster-purpose", "DevTest", "--registry", tb["REGISTRY"], "--insecure-registry",
		"--node-selector", "kubernetes.io/hostname="+tb["NODE"])
	return &clusterEnv{cli: c, cs: cs, namespace: namespace, tb: tb}
}

// objects lists what mlship created for a service in the namespace, by kind.
func (e *clusterEnv) objects(t *testing.T, service string) map[string][]string {
	t.Helper()
	ctx, ns := context.Background(), e.namespace
	sel := metav1.ListOptions{LabelSelector: resources.LabelService + "=" + service}
	lists := map[string]func() (runtime.Object, error){
		"ConfigMap":  func() (runtime.Object, error) { return e.cs.CoreV1().ConfigMaps(ns).List(ctx, sel) },
		"Secret":     func() (runtime.Object, error) { return e.cs.CoreV1().Secrets(ns).List(ctx, sel) },
		"Deployment": func() (runtime.Object, error) { return e.cs.AppsV1().Deployments(ns).List(ctx, sel) },
		"Service":    func() (runtime.Object, error) { return e.cs.CoreV1().Services(ns).List(ctx, sel) },
		"Pod":        func() (runtime.Object, error) { return e.cs.CoreV1().Pods(ns).List(ctx, sel) },
	}
	out := map[string][]string{}
	for kind, list := range lists {
		l, err := list()
		if err != nil {
			continue
		}
		items, _ := meta.ExtractList(l)
		for _, it := range items {
			if o, err := meta.Accessor(it); err == nil {
				out[kind] = append(out[kind], o.GetName())
			}
		}
	}
	return out
}

func eventually(t *testing.T, within time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		good, last := ok()
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterDeploy runs the Kubernetes target end to end through the CLI on the real testbed:
// attach, deploy, score through the cluster's router over the service network, keys, tokens,
// logs, a rolling update under load, a crashing init(), an unschedulable request, delete (every
// object gone from the API server), and scoring with the control plane stopped.
func TestClusterDeploy(t *testing.T) {
	e := startCluster(t, "mlship-e2e")
	proj := e.dir
	write(t, filepath.Join(proj, "outputs", "weights.json"), `{"w": 10}`)
	write(t, filepath.Join(proj, "src", "score.py"), `import json, os
def init():
    global w
    print("loading weights", flush=True)
    w = json.load(open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")))["w"]
def run(raw):
    return {"y": w * json.loads(raw)["x"]}
`)
	write(t, filepath.Join(proj, "bad", "score.py"), "def init():\n    raise RuntimeError(\"init is broken\")\ndef run(raw):\n    return raw\n")
	ic := write(t, filepath.Join(proj, "inferenceconfig.json"), `{"entryScript": "score.py", "sourceDirectory": "src"}`)
	icBad := write(t, filepath.Join(proj, "bad.json"), `{"entryScript": "score.py", "sourceDirectory": "bad"}`)
	dc := write(t, filepath.Join(proj, "deploymentconfig.json"), `{"computeType": "AKS", "numReplicas": 1,
		"containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.25, "cpuLimit": 1, "memoryInGBLimit": 0.5},
		"livenessProbeRequirements": {"periodSeconds": 7, "failureThreshold": 4}}`)
	e.ok("model", "register", "-n", "lin", "-p", "outputs/weights.json")

	start := time.Now()
	var svc api.Service
	out := e.ok("model", "deploy", "-n", "k8s-svc", "-m", "lin:1", "-ic", ic, "-dc", dc, "-ct", "testbed")
	if err := json.Unmarshal([]byte(out), &svc); err != nil || svc.State != "Healthy" || svc.ComputeTargetName != "testbed" {
		t.Fatalf("deploy printed %q (%v)", out, err)
	}
	t.Logf("first deploy (router image and pod included) Healthy in %v; scoring URI %s", time.Since(start).Round(100*time.Millisecond), svc.ScoringURI)
	if !strings.HasPrefix(svc.ScoringURI, "http://10.") || !strings.HasSuffix(svc.ScoringURI, "/api/v1/service/k8s-svc/score") {
		t.Fatalf("scoring URI %q is not the cluster router's", svc.ScoringURI)
	}
	var keys api.Keys
	json.Unmarshal([]byte(e.ok("service", "get-keys", "-n", "k8s-svc")), &keys)
	eventually(t, 30*time.Second, "score through the cluster router", func() (bool, string) {
		code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{"x": 4}`)
		return code == 200 && strings.TrimSpace(body) == `{"y": 40}`, fmt.Sprint(code, " ", body)
	})
	if code, body := score(t, svc.ScoringURI, "", `{"x": 4}`); code != 401 {
		t.Fatalf("no key: %d %s, want 401", code, body)
	}
	if code, body := score(t, svc.ScoringURI, "wrong-key", `{"x": 4}`); code != 401 {
		t.Fatalf("wrong key: %d %s, want 401", code, body)
	}
	if got := strings.TrimSpace(e.ok("service", "run", "-n", "k8s-svc", "-d", `{"x": 2}`)); got != `{"y": 20}` {
		t.Fatalf("service run = %q", got)
	}
	if logs := e.ok("service", "get-logs", "-n", "k8s-svc", "--tail", "50"); !strings.Contains(logs, "loading weights") {
		t.Fatalf("get-logs = %q", logs)
	}
	// Objects with owner references to the service's ConfigMap, and the key Secret in the cluster.
	objs := e.objects(t, "k8s-svc")
	if len(objs["ConfigMap"]) != 1 || len(objs["Secret"]) != 1 || len(objs["Deployment"]) != 1 || len(objs["Service"]) != 1 {
		t.Fatalf("objects of k8s-svc: %v", objs)
	}

	// Requests, limits and the liveness probe come from the deployment config.
	d, err := e.cs.AppsV1().Deployments(e.namespace).Get(context.Background(), objs["Deployment"][0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := d.Spec.Template.Spec.Containers[0]
	if ctr.Resources.Requests.Cpu().String() != "100m" || ctr.Resources.Limits.Cpu().String() != "1" ||
		ctr.Resources.Limits.Memory().Value() != 512*1024*1024 || ctr.LivenessProbe == nil ||
		ctr.LivenessProbe.PeriodSeconds != 7 || ctr.LivenessProbe.FailureThreshold != 4 {
		t.Fatalf("container of k8s-svc: resources %+v, liveness %+v", ctr.Resources, ctr.LivenessProbe)
	}

	// Key rotation reaches the cluster router: the old primary key stops working.
	old := keys.PrimaryKey
	json.Unmarshal([]byte(e.ok("service", "regen-key", "-n", "k8s-svc", "--key", "Primary")), &keys)
	eventually(t, 20*time.Second, "old key refused after regen-key", func() (bool, string) {
		code, _ := score(t, svc.ScoringURI, old, `{"x": 1}`)
		return code == 401, fmt.Sprint(code)
	})
	if code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{"x": 1}`); code != 200 {
		t.Fatalf("new key: %d %s", code, body)
	}

	// A rolling update (new model version, 2 replicas) under load: no failed request.
	write(t, filepath.Join(proj, "outputs2", "weights.json"), `{"w": 100}`)
	e.ok("model", "register", "-n", "lin", "-p", "outputs2/weights.json")
	dc2 := write(t, filepath.Join(proj, "two.json"), `{"numReplicas": 2, "containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.25}}`)
	var sent, failed atomic.Int64
	var lastFail atomic.Value
	stop := clients(4, func() {
		code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{"x": 1}`)
		sent.Add(1)
		if code != 200 {
			failed.Add(1)
			lastFail.Store(fmt.Sprint(code, " ", body))
		}
	})
	start = time.Now()
	json.Unmarshal([]byte(e.ok("service", "update", "-n", "k8s-svc", "-m", "lin:2", "-dc", dc2)), &svc)
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	stop()
	if svc.State != "Healthy" || svc.Replicas.Ready != 2 {
		t.Fatalf("after update: %+v", svc)
	}
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed during the rolling update; last: %v", failed.Load(), sent.Load(), lastFail.Load())
	}
	t.Logf("rolling update to 2 replicas of lin:2 in %v; %d requests, 0 failed", took.Round(100*time.Millisecond), sent.Load())
	if code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{"x": 1}`); code != 200 || strings.TrimSpace(body) != `{"y": 100}` {
		t.Fatalf("after update: %d %s", code, body)
	}

	// Token auth: tokens from get-access-token are verified by the cluster router.
	dcTok := write(t, filepath.Join(proj, "token.json"), `{"numReplicas": 1, "tokenAuthEnabled": true, "containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.25}}`)
	var tsvc api.Service
	json.Unmarshal([]byte(e.ok("model", "deploy", "-n", "k8s-tok", "-m", "lin:1", "-ic", ic, "-dc", dcTok, "-ct", "testbed")), &tsvc)
	var tok api.AccessToken
	json.Unmarshal([]byte(e.ok("service", "get-access-token", "-n", "k8s-tok")), &tok)
	eventually(t, 20*time.Second, "token accepted by the cluster router", func() (bool, string) {
		code, body := score(t, tsvc.ScoringURI, tok.AccessToken, `{"x": 3}`)
		return code == 200 && strings.TrimSpace(body) == `{"y": 30}`, fmt.Sprint(code, " ", body)
	})
	if code, _ := score(t, tsvc.ScoringURI, keys.PrimaryKey, `{"x": 3}`); code != 401 {
		t.Fatalf("a key on a token-auth service: %d, want 401", code)
	}

	// A crashing init(): Failed, with the traceback from the pod's log.
	code, stdout, stderr := e.run("model", "deploy", "-n", "k8s-bad", "-m", "lin:1", "-ic", icBad, "-dc", dc, "-ct", "testbed")
	if code == 0 || !strings.Contains(stdout+stderr, "init is broken") {
		t.Fatalf("crashing init: exit %d\n%s\n%s", code, stdout, stderr)
	}
	json.Unmarshal([]byte(e.ok("service", "show", "-n", "k8s-bad", "-o", "json")), &svc)
	if svc.State != "Failed" || !strings.Contains(svc.Error, "RuntimeError") {
		t.Fatalf("crashing init: state %s, error %q", svc.State, svc.Error)
	}

	// The inference config's baseImage is the image's base: a missing one fails the deploy, named.
	icBase := write(t, filepath.Join(proj, "base.json"), fmt.Sprintf(`{"entryScript": "score.py", "sourceDirectory": "src",
		"environment": {"name": "custom-base", "docker": {"baseImage": "%s/mlship/no-such-base:1"}}}`, e.tb["REGISTRY"]))
	code, stdout, stderr = e.run("model", "deploy", "-n", "k8s-base", "-m", "lin:1", "-ic", icBase, "-dc", dc, "-ct", "testbed")
	if code == 0 || !strings.Contains(stdout+stderr, "no-such-base") {
		t.Fatalf("missing base image: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// More CPU than any node has: Unschedulable, with the scheduler's reason.
	dcBig := write(t, filepath.Join(proj, "big.json"), `{"numReplicas": 1, "containerResourceRequirements": {"cpu": 64, "memoryInGB": 0.25}}`)
	code, stdout, stderr = e.run("model", "deploy", "-n", "k8s-big", "-m", "lin:1", "-ic", ic, "-dc", dcBig, "-ct", "testbed")
	json.Unmarshal([]byte(e.ok("service", "show", "-n", "k8s-big", "-o", "json")), &svc)
	if code == 0 || svc.State != "Unschedulable" || !strings.Contains(svc.Error, "Insufficient cpu") {
		t.Fatalf("64 CPUs: exit %d, state %s, error %q\n%s", code, svc.State, svc.Error, stderr)
	}

	// Delete removes every object the service created, on the API server.
	for _, name := range []string{"k8s-bad", "k8s-big", "k8s-tok", "k8s-base"} {
		e.ok("service", "delete", "-n", name)
	}
	e.ok("service", "delete", "-n", "k8s-svc")
	eventually(t, 60*time.Second, "k8s-svc's objects gone", func() (bool, string) {
		objs := e.objects(t, "k8s-svc")
		return len(objs) == 0, fmt.Sprint(objs)
	})
	for _, name := range []string{"k8s-bad", "k8s-big", "k8s-tok"} {
		if objs := e.objects(t, name); len(objs["ConfigMap"])+len(objs["Deployment"])+len(objs["Service"])+len(objs["Secret"]) > 0 {
			t.Fatalf("%s left %v", name, objs)
		}
	}
}

// TestClusterScoringWithoutControlPlane: once deployed, the cluster's router serves on its own;
// the server, started again, finds the service as it left it.
func TestClusterScoringWithoutControlPlane(t *testing.T) {
	e := startCluster(t, "mlship-e2e-cp")
	write(t, filepath.Join(e.dir, "m", "weights.json"), `{"w": 7}`)
	write(t, filepath.Join(e.dir, "src", "score.py"), "import json, os\ndef init():\n    global w\n    w = json.load(open(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'weights.json')))['w']\ndef run(raw):\n    return {'y': w * json.loads(raw)['x']}\n")
	ic := write(t, filepath.Join(e.dir, "ic.json"), `{"entryScript": "score.py", "sourceDirectory": "src"}`)
	dc := write(t, filepath.Join(e.dir, "dc.json"), `{"numReplicas": 1, "containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.25}}`)
	e.ok("model", "register", "-n", "seven", "-p", "m/weights.json")
	var svc api.Service
	json.Unmarshal([]byte(e.ok("model", "deploy", "-n", "k8s-cp", "-m", "seven:1", "-ic", ic, "-dc", dc, "-ct", "testbed")), &svc)
	var keys api.Keys
	json.Unmarshal([]byte(e.ok("service", "get-keys", "-n", "k8s-cp")), &keys)
	eventually(t, 30*time.Second, "scoring", func() (bool, string) {
		code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{"x": 2}`)
		return code == 200, fmt.Sprint(code, " ", body)
	})
	// Stop the control plane.
	e.srv.Process.Kill()
	e.srv.Wait()
	for i := range 20 {
		if code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{"x": 2}`); code != 200 || strings.TrimSpace(body) != `{"y": 14}` {
			t.Fatalf("request %d with the control plane stopped: %d %s", i, code, body)
		}
	}
	if code, _ := score(t, svc.ScoringURI, "", `{"x": 2}`); code != 401 {
		t.Fatalf("no key with the control plane stopped: %d, want 401", code)
	}

	// Started again, the server leaves the cluster's service as it is and manages it as before.
	pods := e.objects(t, "k8s-cp")["Pod"]
	e.restartServer()
	json.Unmarshal([]byte(e.ok("service", "show", "-n", "k8s-cp", "-o", "json")), &svc)
	if svc.State != "Healthy" || svc.Replicas.Ready != 1 {
		t.Fatalf("after a restart: %+v", svc)
	}
	if now := e.objects(t, "k8s-cp")["Pod"]; fmt.Sprint(now) != fmt.Sprint(pods) {
		t.Fatalf("the restart replaced the pods: %v, then %v", pods, now)
	}
	if got := strings.TrimSpace(e.ok("service", "run", "-n", "k8s-cp", "-d", `{"x": 3}`)); got != `{"y": 21}` {
		t.Fatalf("service run after a restart = %q", got)
	}
	e.ok("service", "delete", "-n", "k8s-cp")
	eventually(t, 60*time.Second, "k8s-cp's objects gone", func() (bool, string) {
		objs := e.objects(t, "k8s-cp")
		return len(objs) == 0, fmt.Sprint(objs)
	})
}

// TestClusterEndpoint: an endpoint's versions and traffic split, served by the cluster's router.
func TestClusterEndpoint(t *testing.T) {
	e := startCluster(t, "mlship-e2e-ep")
	write(t, filepath.Join(e.dir, "v1", "weights.json"), `{"w": 1}`)
	write(t, filepath.Join(e.dir, "v2", "weights.json"), `{"w": 2}`)
	write(t, filepath.Join(e.dir, "src", "score.py"), "import json, os\ndef init():\n    global w\n    w = json.load(open(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'weights.json')))['w']\ndef run(raw):\n    return {'y': w}\n")
	ic := write(t, filepath.Join(e.dir, "ic.json"), `{"entryScript": "score.py", "sourceDirectory": "src"}`)
	dc := write(t, filepath.Join(e.dir, "ep.json"), `{"computeType": "AKSENDPOINT", "versionName": "ver1", "trafficPercentile": 50,
		"numReplicas": 1, "containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.25}}`)
	e.ok("model", "register", "-n", "lin", "-p", "v1/weights.json")
	e.ok("model", "register", "-n", "lin", "-p", "v2/weights.json")
	var svc api.Service
	json.Unmarshal([]byte(e.ok("model", "deploy", "-n", "k8s-ep", "-m", "lin:1", "-ic", ic, "-dc", dc, "-ct", "testbed")), &svc)
	e.ok("endpoint", "create-version", "-n", "k8s-ep", "--version-name", "ver2", "-m", "lin:2", "-ic", ic, "--traffic-percentile", "50")
	var keys api.Keys
	json.Unmarshal([]byte(e.ok("service", "get-keys", "-n", "k8s-ep")), &keys)
	if !strings.HasPrefix(svc.ScoringURI, "http://10.") {
		t.Fatalf("scoring URI %q", svc.ScoringURI)
	}
	counts := map[string]int{}
	eventually(t, 30*time.Second, "both versions answer", func() (bool, string) {
		code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{}`)
		if code == 200 {
			counts[strings.TrimSpace(body)]++
		}
		return counts[`{"y": 1}`] >= 5 && counts[`{"y": 2}`] >= 5, fmt.Sprint(code, " ", body, " ", counts)
	})
	// Pinned to a version with Azure's header.
	for range 10 {
		req, _ := http.NewRequest(http.MethodPost, svc.ScoringURI, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+keys.PrimaryKey)
		req.Header.Set("azureml-model-deployment", "ver2")
		resp, err := scoreClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"y": 2}` {
			t.Fatalf("pinned to ver2: %d %s", resp.StatusCode, b)
		}
	}
	e.ok("endpoint", "delete-version", "-n", "k8s-ep", "--version-name", "ver2")
	eventually(t, 30*time.Second, "ver2 no longer answers", func() (bool, string) {
		for range 10 {
			if code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{}`); code != 200 || strings.TrimSpace(body) != `{"y": 1}` {
				return false, fmt.Sprint(code, " ", body)
			}
		}
		return true, ""
	})
	e.ok("service", "delete", "-n", "k8s-ep")
	eventually(t, 60*time.Second, "k8s-ep's objects gone", func() (bool, string) {
		objs := e.objects(t, "k8s-ep")
		return len(objs) == 0, fmt.Sprint(objs)
	})
}

// TestClusterAutoscale: the cluster's router scales a busy service through the Deployment's scale
// subresource (with the rights of its own service account), without the control plane.
func TestClusterAutoscale(t *testing.T) {
	e := startCluster(t, "mlship-e2e-as")
	write(t, filepath.Join(e.dir, "m", "weights.json"), `{"w": 1}`)
	write(t, filepath.Join(e.dir, "src", "score.py"), "import time\ndef init():\n    pass\ndef run(raw):\n    time.sleep(0.05)\n    return {'ok': True}\n")
	ic := write(t, filepath.Join(e.dir, "ic.json"), `{"entryScript": "score.py", "sourceDirectory": "src"}`)
	dc := write(t, filepath.Join(e.dir, "dc.json"), `{"autoScaler": {"autoscaleEnabled": true, "minReplicas": 1, "maxReplicas": 3,
		"refreshPeriodInSeconds": 1, "targetUtilization": 70}, "maxConcurrentRequestsPerContainer": 1, "maxQueueWaitMs": 5000,
		"containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.25}}`)
	e.ok("model", "register", "-n", "slow", "-p", "m/weights.json")
	var svc api.Service
	json.Unmarshal([]byte(e.ok("model", "deploy", "-n", "k8s-as", "-m", "slow:1", "-ic", ic, "-dc", dc, "-ct", "testbed")), &svc)
	var keys api.Keys
	json.Unmarshal([]byte(e.ok("service", "get-keys", "-n", "k8s-as")), &keys)
	eventually(t, 30*time.Second, "scoring", func() (bool, string) {
		code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{}`)
		return code == 200, fmt.Sprint(code, " ", body)
	})
	objs := e.objects(t, "k8s-as")
	if len(objs["Deployment"]) != 1 {
		t.Fatalf("objects: %v", objs)
	}
	defer clients(6, func() { score(t, svc.ScoringURI, keys.PrimaryKey, `{}`) })()
	start := time.Now()
	eventually(t, 60*time.Second, "scaled out to 2+ ready replicas", func() (bool, string) {
		d, err := e.cs.AppsV1().Deployments(e.namespace).Get(context.Background(), objs["Deployment"][0], metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return d.Spec.Replicas != nil && *d.Spec.Replicas >= 2 && d.Status.ReadyReplicas >= 2,
			fmt.Sprintf("spec %v, ready %d", *d.Spec.Replicas, d.Status.ReadyReplicas)
	})
	t.Logf("1 -> 2+ ready replicas %v after the load started", time.Since(start).Round(100*time.Millisecond))
}

// TestClusterONNX: a no-code ONNX model on the cluster, with the dynamically linked binary ONNX
// Runtime needs (a static one is refused before anything is built).
func TestClusterONNX(t *testing.T) {
	e := startClusterWith(t, "mlship-e2e-onnx", binary)
	root := k8s.Root()
	e.ok("model", "register", "-n", "iris", "-p", filepath.Join(root, "examples/onnx/model/model.onnx"))
	dc := write(t, filepath.Join(e.dir, "dc.json"), `{"numReplicas": 1, "containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.25}}`)
	var svc api.Service
	json.Unmarshal([]byte(e.ok("model", "deploy", "-n", "k8s-onnx", "-m", "iris:1", "-dc", dc, "-ct", "testbed")), &svc)
	var keys api.Keys
	json.Unmarshal([]byte(e.ok("service", "get-keys", "-n", "k8s-onnx")), &keys)
	eventually(t, 30*time.Second, "ONNX scoring through the cluster router", func() (bool, string) {
		code, body := score(t, svc.ScoringURI, keys.PrimaryKey, `{"data": [[5.1, 3.5, 1.4, 0.2]]}`)
		return code == 200 && strings.Contains(body, "["), fmt.Sprint(code, " ", body)
	})
	e.ok("service", "delete", "-n", "k8s-onnx")

	// The same model with a static image binary: refused with the way out, nothing left behind.
	s := startClusterWith(t, "mlship-e2e-onnxs", k8s.StaticBinary(t))
	s.ok("model", "register", "-n", "iris", "-p", filepath.Join(root, "examples/onnx/model/model.onnx"))
	code, out, errOut := s.run("model", "deploy", "-n", "k8s-onnx-static", "-m", "iris:1", "-dc", dc, "-ct", "testbed")
	if code == 0 || !strings.Contains(out+errOut, "dynamically linked") {
		t.Fatalf("ONNX with a static image binary: exit %d\n%s%s", code, out, errOut)
	}
	if objs := s.objects(t, "k8s-onnx-static"); len(objs) > 0 {
		t.Fatalf("a refused deploy created %v", objs)
	}
}

// clients runs n goroutines calling request in a loop; the returned func stops them and waits.
func clients(n int, request func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				request()
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}
