package routerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/test/e2e/k8s"
)

func TestMain(m *testing.M) {
	code := m.Run()
	k8s.StopShared()
	os.Exit(code)
}

// cluster is one test's namespace on a real kube-apiserver, with an `mlship router` (Run)
// serving it. The API server has no controllers or kubelets: tests create the Deployments,
// and the EndpointSlices the EndpointSlice controller would, by hand.
type cluster struct {
	t      *testing.T
	c      *k8s.Cluster
	admin  kubernetes.Interface
	router kubernetes.Interface // the router's own client: a ServiceAccount token bound to RouterRules
	ns     string
	url    string // the router's base URL
	logs   *syncBuffer
	ctx    context.Context
}

var nsSeq atomic.Int32

// newCluster makes a namespace on c with the router's ServiceAccount, Role and RoleBinding.
func newCluster(t *testing.T, c *k8s.Cluster) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ns := fmt.Sprintf("rd-%d-%d", os.Getpid()%10000, nsSeq.Add(1))
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	e := &cluster{t: t, c: c, admin: c.Admin(), ns: ns, logs: &syncBuffer{}, ctx: ctx}
	objs, err := resources.Router(ns, "unused.example/mlship:test", resources.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CoreV1().ServiceAccounts(ns).Create(ctx, objs.ServiceAccount, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RbacV1().Roles(ns).Create(ctx, objs.Role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RbacV1().RoleBindings(ns).Create(ctx, objs.RoleBinding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := e.admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, resources.RouterName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("service account token: %v", err)
	}
	e.router, err = kubernetes.NewForConfig(&rest.Config{Host: c.URL, BearerToken: tok.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run starts Run on loopback and, with synced, waits until GET / says it has synced.
func (e *cluster) run(o Options, synced bool) {
	e.t.Helper()
	o.Client, o.Namespace, o.Addr, o.mapAddr = e.router, e.ns, "127.0.0.1:0", testAddr
	o.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, testWriter{e.t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	addr := make(chan net.Addr, 1)
	o.Ready = func(a net.Addr) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("Run returned %v after its context ended, want nil", err)
			}
		case <-time.After(30 * time.Second):
			e.t.Errorf("Run did not return 30s after its context ended")
		}
	})
	select {
	case a := <-addr:
		e.url = "http://" + a.String()
	case err := <-done:
		e.t.Fatalf("Run: %v", err)
	}
	if !synced {
		return
	}
	e.eventually("GET / answers 200 Healthy", func() error {
		res := get(e.url + "/")
		if res.status != http.StatusOK || !strings.Contains(res.body, "Healthy") {
			return fmt.Errorf("GET / = %d %q", res.status, res.body)
		}
		return nil
	})
}

// service writes c's owner ConfigMap and returns it as the API server has it.
func (e *cluster) service(c resources.ServiceConfig) *corev1.ConfigMap {
	e.t.Helper()
	cm, err := resources.ServiceConfigMap(e.ns, &c)
	if err != nil {
		e.t.Fatal(err)
	}
	got, err := e.admin.CoreV1().ConfigMaps(e.ns).Create(e.ctx, cm, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create configmap: %v", err)
	}
	return got
}

func (e *cluster) updateService(c resources.ServiceConfig) {
	e.t.Helper()
	cm, err := resources.ServiceConfigMap(e.ns, &c)
	if err != nil {
		e.t.Fatal(err)
	}
	e.setServiceJSON(cm.Name, cm.Data[resources.ServiceConfigKey])
}

// setServiceJSON writes raw service.json into an existing owner ConfigMap.
func (e *cluster) setServiceJSON(name, data string) {
	e.t.Helper()
	cm, err := e.admin.CoreV1().ConfigMaps(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	cm.Data[resources.ServiceConfigKey] = data
	if _, err := e.admin.CoreV1().ConfigMaps(e.ns).Update(e.ctx, cm, metav1.UpdateOptions{}); err != nil {
		e.t.Fatalf("update configmap: %v", err)
	}
}

func (e *cluster) keys(workspace, service, primary, secondary string, owner *corev1.ConfigMap) {
	e.t.Helper()
	s, err := resources.KeySecret(e.ns, workspace, service, primary, secondary, owner)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.admin.CoreV1().Secrets(e.ns).Create(e.ctx, s, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create key secret: %v", err)
	}
}

// deployment creates the replica Deployment whose scale the autoscaler sets (no controller
// runs it: only its spec matters here).
func (e *cluster) deployment(name string, replicas int32) {
	e.t.Helper()
	labels := map[string]string{resources.LabelManagedBy: resources.ManagedBy, resources.LabelComponent: resources.ComponentReplica, "test": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "score", Image: "unused.example/score:test"}}},
			},
		},
	}
	if _, err := e.admin.AppsV1().Deployments(e.ns).Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create deployment: %v", err)
	}
}

func (e *cluster) scale(name string) int32 {
	e.t.Helper()
	s, err := e.admin.AppsV1().Deployments(e.ns).GetScale(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("get scale of %s: %v", name, err)
	}
	return s.Spec.Replicas
}

// endpoint is one replica as its EndpointSlice lists it.
type endpoint struct {
	pod         string
	ip          string
	ready       *bool // nil: unset, which counts as ready
	terminating bool
}

// slice writes (creates or replaces) the EndpointSlice name of Service svc, as the EndpointSlice
// controller would: the Service's labels, kubernetes.io/service-name, port "http".
func (e *cluster) slice(name, svc string, port int, eps ...endpoint) {
	e.t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: map[string]string{
			resources.LabelManagedBy: resources.ManagedBy, resources.LabelComponent: resources.ComponentReplica,
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(port)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, ep := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ep.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ep.ready, Serving: ptr(true), Terminating: ptr(ep.terminating)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: ep.pod, Namespace: e.ns},
		})
	}
	cur, err := e.admin.DiscoveryV1().EndpointSlices(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = e.admin.DiscoveryV1().EndpointSlices(e.ns).Update(e.ctx, es, metav1.UpdateOptions{})
	} else {
		_, err = e.admin.DiscoveryV1().EndpointSlices(e.ns).Create(e.ctx, es, metav1.CreateOptions{})
	}
	if err != nil {
		e.t.Fatalf("write endpointslice %s: %v", name, err)
	}
}

// eventually retries f for up to 20 s; the router follows the cluster through watches.
func (e *cluster) eventually(what string, f func() error) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: still not after 20s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *cluster) score(svc string, header map[string]string) result {
	return do(http.MethodPost, e.url+"/api/v1/service/"+svc+"/score", `{"data":[1]}`, header)
}

// scoresWith waits until scoring svc with header answers want.
func (e *cluster) scoresWith(svc string, header map[string]string, want int) result {
	e.t.Helper()
	var last result
	e.eventually(fmt.Sprintf("score %s answers %d", svc, want), func() error {
		last = e.score(svc, header)
		if last.status != want {
			return fmt.Errorf("got %d %s", last.status, last.body)
		}
		return nil
	})
	return last
}

// replicaSet is scoring replicas on distinct loopback addresses sharing one port, as pods of a
// Deployment share their container port. They are httptest-style Go servers that answer like
// `mlship score` (JSON from /score), not real scoring processes: these tests are about routing.
// The API server refuses loopback addresses in EndpointSlices, so slices list each replica at
// 192.0.2.N (TEST-NET-1, RFC 5737) and the router under test maps that to 127.0.10.N (testAddr).
type replicaSet struct {
	port int
	ips  []string // where they listen
	pubs []string // what their EndpointSlices say
	hits []atomic.Int64
}

const (
	listedNet = "192.0.2."
	loopNet   = "127.0.10."
)

// testAddr is Options.mapAddr for these tests.
func testAddr(a string) string {
	if rest, ok := strings.CutPrefix(a, listedNet); ok {
		return loopNet + rest
	}
	return a
}

var ipSeq atomic.Int32

func newReplicaSet(t *testing.T, n int, delay time.Duration) *replicaSet {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		rs := &replicaSet{hits: make([]atomic.Int64, n)}
		var lns []net.Listener
		ok := true
		for i := range n {
			n := fmt.Sprint(2 + ipSeq.Add(1)%250)
			ip := loopNet + n
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(rs.port)))
			if err != nil {
				ok = false
				break
			}
			if i == 0 {
				rs.port = ln.Addr().(*net.TCPAddr).Port
			}
			lns = append(lns, ln)
			rs.ips = append(rs.ips, ip)
			rs.pubs = append(rs.pubs, listedNet+n)
		}
		if !ok {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		for i, ln := range lns {
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if r.URL.Path != "/score" {
					http.NotFound(w, r)
					return
				}
				rs.hits[i].Add(1)
				if delay > 0 {
					time.Sleep(delay)
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"replica":%q}`, rs.ips[i])
			})}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
		}
		return rs
	}
	t.Fatal("could not bind replicas on loopback addresses sharing a port")
	return nil
}

func (rs *replicaSet) counts() []int64 {
	out := make([]int64, len(rs.hits))
	for i := range rs.hits {
		out[i] = rs.hits[i].Load()
	}
	return out
}

func (rs *replicaSet) reset() {
	for i := range rs.hits {
		rs.hits[i].Store(0)
	}
}

// endpoints lists every replica as ready (condition unset unless ready says otherwise).
func (rs *replicaSet) endpoints(prefix string) []endpoint {
	out := make([]endpoint, len(rs.pubs))
	for i, ip := range rs.pubs {
		out[i] = endpoint{pod: fmt.Sprintf("%s-%d", prefix, i), ip: ip}
	}
	return out
}

type result struct {
	status int
	body   string
	header http.Header
}

var client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func do(method, url, body string, header map[string]string) result {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return result{body: err.Error()}
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func get(url string) result { return do(http.MethodGet, url, "", nil) }

func bearer(cred string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + cred}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// testWriter sends the router's log to the test's log (shown on failure or with -v).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var errNotYet = errors.New("not yet")

func newClientForHost(host string) (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(&rest.Config{Host: host, BearerToken: "unused", TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
}
