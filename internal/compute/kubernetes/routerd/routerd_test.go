package routerd

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mlship/mlship/internal/auth"
	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/router"
	"github.com/mlship/mlship/test/e2e/k8s"
)

const workspace = "ws"

func plainService(name string, a resources.ServiceAuth) resources.ServiceConfig {
	return resources.ServiceConfig{APIVersion: resources.ServiceConfigVersion, Workspace: workspace, Name: name, Auth: a,
		Versions: []resources.VersionConfig{{Name: name, Replicas: name, TrafficPercentile: 100, IsDefault: true, IsControlVersion: true}}}
}

func keyAuth(service string) resources.ServiceAuth {
	return resources.ServiceAuth{AuthEnabled: true, KeySecret: service + "-keys"}
}

func TestScoresWithKeysAndTokensFromSecrets(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	reps := newReplicaSet(t, 1, 0)
	owner := e.service(plainService("keyed", keyAuth("keyed")))
	e.keys(workspace, "keyed", "primary-1", "secondary-1", owner)
	e.service(plainService("tokened", resources.ServiceAuth{TokenAuthEnabled: true}))
	e.slice("keyed-1", "keyed", reps.port, reps.endpoints("keyed")...)
	e.slice("tokened-1", "tokened", reps.port, reps.endpoints("tokened")...)
	e.run(Options{}, true)

	res := e.scoresWith("keyed", bearer("primary-1"), http.StatusOK)
	if want := fmt.Sprintf(`{"replica":%q}`, reps.ips[0]); res.body != want {
		t.Errorf("body = %s, want the replica's answer %s", res.body, want)
	}
	if res := e.score("keyed", bearer("secondary-1")); res.status != http.StatusOK {
		t.Errorf("secondary key: %d %s, want 200", res.status, res.body)
	}
	for name, h := range map[string]map[string]string{"wrong key": bearer("primary-2"), "no header": nil} {
		if res := e.score("keyed", h); res.status != http.StatusUnauthorized || res.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s (WWW-Authenticate %q), want 401 with a challenge", name, res.status, res.body, res.header.Get("WWW-Authenticate"))
		}
	}

	key := make([]byte, 32)
	rand.Read(key)
	signer, err := auth.NewTokenSignerWithKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.IssueToken("tokened", workspace, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// No router Secret yet: every token is refused, saying which Secret is missing.
	res = e.score("tokened", bearer(tok.AccessToken))
	if res.status != http.StatusUnauthorized || !strings.Contains(res.body, resources.RouterSecretName) || !strings.Contains(res.body, "missing") {
		t.Errorf("token without the router Secret: %d %s, want 401 naming the missing Secret %s", res.status, res.body, resources.RouterSecretName)
	}
	rs, err := resources.RouterSecret(e.ns, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CoreV1().Secrets(e.ns).Create(e.ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.scoresWith("tokened", bearer(tok.AccessToken), http.StatusOK)

	otherKey := make([]byte, 32)
	rand.Read(otherKey)
	other, _ := auth.NewTokenSignerWithKey(otherKey)
	forged, _ := other.IssueToken("tokened", workspace, time.Now())
	wrongService, _ := signer.IssueToken("keyed", workspace, time.Now())
	for name, cred := range map[string]string{"token signed with another key": forged.AccessToken,
		"token of another service": wrongService.AccessToken, "a key on a token service": "primary-1"} {
		if res := e.score("tokened", bearer(cred)); res.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, res.status, res.body)
		}
	}
	// A token-auth service takes no keys, a key-auth service no tokens.
	if res := e.score("keyed", bearer(wrongService.AccessToken)); res.status != http.StatusUnauthorized {
		t.Errorf("token on a key service: %d, want 401", res.status)
	}

	m := get(e.url + "/metrics")
	if want := `mlship_router_requests_total{code="200",service="keyed",version="keyed"}`; !strings.Contains(m.body, want) {
		t.Errorf("/metrics lacks %s:\n%.2000s", want, m.body)
	}
}

func TestKeyRotationTakesEffect(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	reps := newReplicaSet(t, 1, 0)
	owner := e.service(plainService("rotating", keyAuth("rotating")))
	e.keys(workspace, "rotating", "old-primary", "secondary", owner)
	e.slice("rotating-1", "rotating", reps.port, reps.endpoints("rotating")...)
	e.run(Options{}, true)
	e.scoresWith("rotating", bearer("old-primary"), http.StatusOK)

	sec, err := e.admin.CoreV1().Secrets(e.ns).Get(e.ctx, "rotating-keys", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data[resources.PrimaryKeyField] = []byte("new-primary")
	if _, err := e.admin.CoreV1().Secrets(e.ns).Update(e.ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.scoresWith("rotating", bearer("new-primary"), http.StatusOK)
	if res := e.score("rotating", bearer("old-primary")); res.status != http.StatusUnauthorized {
		t.Errorf("old primary after rotation: %d, want 401", res.status)
	}
	if res := e.score("rotating", bearer("secondary")); res.status != http.StatusOK {
		t.Errorf("unchanged secondary after rotation: %d, want 200", res.status)
	}

	// Without its Secret the service refuses every key: auth never opens.
	if err := e.admin.CoreV1().Secrets(e.ns).Delete(e.ctx, "rotating-keys", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.scoresWith("rotating", bearer("new-primary"), http.StatusUnauthorized)
	if res := e.score("rotating", nil); res.status != http.StatusUnauthorized {
		t.Errorf("no key once the Secret is gone: %d, want 401", res.status)
	}
}

func TestReplicasFollowEndpointSlices(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	reps := newReplicaSet(t, 3, 0)
	e.service(plainService("follow", resources.ServiceAuth{}))
	eps := reps.endpoints("follow")
	e.slice("follow-a", "follow", reps.port, eps...)
	e.run(Options{}, true)

	e.eventually("every ready replica gets traffic", func() error {
		reps.reset()
		for range 30 {
			if res := e.score("follow", nil); res.status != http.StatusOK {
				return fmt.Errorf("score: %d %s", res.status, res.body)
			}
		}
		for i, n := range reps.counts() {
			if n == 0 {
				return fmt.Errorf("replica %d got no request: %v", i, reps.counts())
			}
		}
		return nil
	})

	// Replica 1 stops being ready; replica 2 is terminating (still serving): neither gets new requests.
	eps[1].ready = ptr(false)
	eps[2].ready, eps[2].terminating = ptr(false), true
	e.slice("follow-a", "follow", reps.port, eps...)
	onlyFirst := func() error {
		reps.reset()
		for range 20 {
			if res := e.score("follow", nil); res.status != http.StatusOK {
				return fmt.Errorf("score: %d %s", res.status, res.body)
			}
		}
		if c := reps.counts(); c[0] != 20 {
			return fmt.Errorf("requests per replica %v, want all 20 on replica 0", c)
		}
		return nil
	}
	e.eventually("not-ready and terminating replicas get no traffic", onlyFirst)
	if err := onlyFirst(); err != nil {
		t.Errorf("a second round: %v", err)
	}

	// The controller moves replica 1, ready again, to a second slice: the router merges slices.
	e.slice("follow-a", "follow", reps.port, eps[0])
	e.slice("follow-b", "follow", reps.port, endpoint{pod: eps[1].pod, ip: eps[1].ip, ready: ptr(true)})
	e.eventually("a replica in a second slice gets traffic", func() error {
		reps.reset()
		for range 20 {
			e.score("follow", nil)
		}
		if c := reps.counts(); c[0] == 0 || c[1] == 0 || c[2] != 0 {
			return fmt.Errorf("requests per replica %v, want replicas 0 and 1 only", c)
		}
		return nil
	})

	// Slices gone: no replica, 503 with Retry-After.
	for _, name := range []string{"follow-a", "follow-b"} {
		if err := e.admin.DiscoveryV1().EndpointSlices(e.ns).Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res := e.scoresWith("follow", nil, http.StatusServiceUnavailable)
	if res.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After: %v", res.header)
	}
}

func TestDeletedServiceAnswers404(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	reps := newReplicaSet(t, 1, 0)
	e.service(plainService("doomed", resources.ServiceAuth{}))
	e.service(plainService("kept", resources.ServiceAuth{}))
	e.slice("doomed-1", "doomed", reps.port, reps.endpoints("doomed")...)
	e.slice("kept-1", "kept", reps.port, reps.endpoints("kept")...)
	e.run(Options{}, true)
	e.scoresWith("doomed", nil, http.StatusOK)

	if err := e.admin.CoreV1().ConfigMaps(e.ns).Delete(e.ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	res := e.scoresWith("doomed", nil, http.StatusNotFound)
	if !strings.Contains(res.body, "ServiceNotFound") {
		t.Errorf("404 body %s, want code ServiceNotFound", res.body)
	}
	if res := e.score("kept", nil); res.status != http.StatusOK {
		t.Errorf("the other service: %d %s, want 200", res.status, res.body)
	}
}

func TestTrafficSplitFollowsPercentiles(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	blue, green := newReplicaSet(t, 1, 0), newReplicaSet(t, 1, 0)
	split := func(bluePct, greenPct float64) resources.ServiceConfig {
		return resources.ServiceConfig{APIVersion: resources.ServiceConfigVersion, Workspace: workspace, Name: "split",
			Versions: []resources.VersionConfig{
				{Name: "blue", Replicas: "split-blue", TrafficPercentile: bluePct, IsDefault: true, IsControlVersion: true},
				{Name: "green", Replicas: "split-green", TrafficPercentile: greenPct},
			}}
	}
	e.service(split(80, 20))
	e.slice("split-blue-1", "split-blue", blue.port, blue.endpoints("blue")...)
	e.slice("split-green-1", "split-green", green.port, green.endpoints("green")...)
	e.run(Options{}, true)

	shares := func(wantBlue int) func() error {
		return func() error {
			blue.reset()
			green.reset()
			for range 200 {
				if res := e.score("split", nil); res.status != http.StatusOK {
					return fmt.Errorf("score: %d %s", res.status, res.body)
				}
			}
			b, g := blue.counts()[0], green.counts()[0]
			if d := int(b) - 2*wantBlue; b+g != 200 || d < -10 || d > 10 {
				return fmt.Errorf("blue %d, green %d of 200; want blue %d %% ± 5", b, g, wantBlue)
			}
			return nil
		}
	}
	e.eventually("80/20 split", shares(80))

	green.reset()
	for range 10 {
		e.score("split", map[string]string{router.VersionHeader: "green"})
	}
	if n := green.counts()[0]; n != 10 {
		t.Errorf("pinned to green: green served %d of 10", n)
	}

	e.updateService(split(50, 50))
	e.eventually("50/50 split after the ConfigMap changed", shares(50))
}

func TestBadServiceJSONKeepsPreviousConfig(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	reps := newReplicaSet(t, 1, 0)
	good := plainService("steady", resources.ServiceAuth{})
	e.service(good)
	e.slice("steady-1", "steady", reps.port, reps.endpoints("steady")...)
	e.run(Options{}, true)
	e.scoresWith("steady", nil, http.StatusOK)

	twoDefaults := good
	twoDefaults.Versions = []resources.VersionConfig{
		{Name: "one", Replicas: "steady", IsDefault: true, IsControlVersion: true},
		{Name: "two", Replicas: "steady", IsDefault: true},
	}
	twoDefaultsJSON, err := twoDefaults.Marshal() // service.json accepts it; the router's traffic rules do not
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ name, data, logged string }{
		{"not JSON", `{"apiVersion": "v1", "name": `, "refused a changed service.json"},
		{"another apiVersion", strings.Replace(string(twoDefaultsJSON), `"v1"`, `"v9"`, 1), "refused a changed service.json"},
		{"two default versions", string(twoDefaultsJSON), "router refused the service's configuration"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			before := strings.Count(e.logs.String(), bad.logged)
			e.setServiceJSON("steady", bad.data)
			e.eventually("the router logs the refusal", func() error {
				if strings.Count(e.logs.String(), bad.logged) == before {
					return errNotYet
				}
				return nil
			})
			for range 5 {
				if res := e.score("steady", nil); res.status != http.StatusOK {
					t.Fatalf("after a bad service.json: %d %s, want 200 from the previous config", res.status, res.body)
				}
			}
			if res := get(e.url + "/"); res.status != http.StatusOK {
				t.Errorf("GET / after a bad service.json: %d", res.status)
			}
		})
	}

	// A good change after bad ones applies: key auth on, and no Secret yet, so 401.
	withAuth := good
	withAuth.Auth = keyAuth("steady")
	e.updateService(withAuth)
	e.scoresWith("steady", nil, http.StatusUnauthorized)

	// A service whose first service.json is bad is not routed.
	cm, err := resources.ServiceConfigMap(e.ns, ptr(plainService("broken", resources.ServiceAuth{})))
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[resources.ServiceConfigKey] = "[]"
	if _, err := e.admin.CoreV1().ConfigMaps(e.ns).Create(e.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the router logs the refusal", func() error {
		if !strings.Contains(e.logs.String(), "configmap=broken") {
			return errNotYet
		}
		return nil
	})
	if res := e.score("broken", nil); res.status != http.StatusNotFound {
		t.Errorf("service with a bad first service.json: %d, want 404", res.status)
	}
}

func TestAutoscalerScalesDeployments(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	slow := newReplicaSet(t, 1, 200*time.Millisecond)
	busy := plainService("busy", resources.ServiceAuth{})
	busy.Limits = resources.RequestLimits{MaxConcurrentRequestsPerContainer: 1, MaxQueueWaitMs: 20000}
	busy.Versions[0].Scale = resources.ScaleConfig{AutoscaleEnabled: true, MinReplicas: 1, MaxReplicas: 4,
		RefreshPeriodInSeconds: 1, TargetUtilization: 70}
	e.service(busy)
	e.deployment("busy", 1)
	e.slice("busy-1", "busy", slow.port, slow.endpoints("busy")...)
	fixed := plainService("fixed", resources.ServiceAuth{})
	fixed.Versions[0].Scale = resources.ScaleConfig{NumReplicas: 3}
	e.service(fixed)
	e.deployment("fixed", 1)
	e.run(Options{AutoscaleInterval: 100 * time.Millisecond, DownscaleDelay: time.Second}, true)

	e.eventually("numReplicas 3 applied to the Deployment", func() error {
		if n := e.scale("fixed"); n != 3 {
			return fmt.Errorf("fixed has %d replicas", n)
		}
		return nil
	})

	// Six clients against one replica that takes one request at a time for 200 ms: load 6
	// replicas, far above 70 % of one, so the autoscaler goes to its maximum of 4.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				e.score("busy", nil)
			}
		}()
	}
	e.eventually("scaled up to maxReplicas", func() error {
		if n := e.scale("busy"); n != 4 {
			return fmt.Errorf("busy has %d replicas", n)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	e.eventually("scaled down to minReplicas once idle", func() error {
		if n := e.scale("busy"); n != 1 {
			return fmt.Errorf("busy has %d replicas", n)
		}
		return nil
	})
}

func TestScalerErrors(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	e.deployment("present", 1)
	names := map[versionKey]string{{"svc", "present"}: "present", {"svc", "absent"}: "absent"}
	s := scaler{client: e.router, ns: e.ns, deployment: func(svc, v string) (string, bool) {
		n, ok := names[versionKey{svc, v}]
		return n, ok
	}}
	if err := s.Scale(e.ctx, "svc", "present", 2); err != nil {
		t.Fatalf("Scale: %v", err)
	}
	if n := e.scale("present"); n != 2 {
		t.Errorf("present has %d replicas after Scale(2)", n)
	}
	if err := s.Scale(e.ctx, "svc", "unknown", 2); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Scale of a version without service.json: %v, want ErrNotFound", err)
	}
	if err := s.Scale(e.ctx, "svc", "absent", 2); !apierrors.IsNotFound(err) {
		t.Errorf("Scale of a missing Deployment: %v, want the API's NotFound", err)
	}
}

func TestKeepsServingWithoutAPIServer(t *testing.T) {
	k8s.Need(t) // skips when the binaries are absent
	c, err := k8s.Start()
	if err != nil {
		t.Fatalf("start a second kube-apiserver: %v", err)
	}
	t.Cleanup(c.Stop)
	e := newCluster(t, c)
	reps := newReplicaSet(t, 1, 0)
	owner := e.service(plainService("survivor", keyAuth("survivor")))
	e.keys(workspace, "survivor", "primary", "secondary", owner)
	e.slice("survivor-1", "survivor", reps.port, reps.endpoints("survivor")...)
	e.run(Options{}, true)
	e.scoresWith("survivor", bearer("primary"), http.StatusOK)

	c.Stop()
	if _, err := e.admin.CoreV1().ConfigMaps(e.ns).List(e.ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("the API server still answers after Stop")
	}
	// The informers keep retrying their watches (every second or so, backing off) meanwhile.
	for i := range 30 {
		if res := e.score("survivor", bearer("primary")); res.status != http.StatusOK {
			t.Fatalf("request %d without the API server: %d %s, want 200", i, res.status, res.body)
		}
		if res := e.score("survivor", bearer("wrong")); res.status != http.StatusUnauthorized {
			t.Fatalf("wrong key without the API server: %d, want 401", res.status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res := get(e.url + "/"); res.status != http.StatusOK {
		t.Errorf("GET / without the API server: %d %s, want 200 (it serves from its cache)", res.status, res.body)
	}
}

func TestNotReadyUntilSynced(t *testing.T) {
	// An API server address nothing listens on: the informers never sync.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	cs, err := newClientForHost("https://" + dead)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Client: cs, Namespace: "unreachable", Addr: "127.0.0.1:0", Ready: func(a net.Addr) { addr <- a }})
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a.String()
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	for range 10 {
		if res := get(url + "/"); res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "Not ready") {
			t.Fatalf("GET / before sync: %d %q, want 503 Not ready", res.status, res.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res := do(http.MethodPost, url+"/api/v1/service/any/score", "{}", nil); res.status != http.StatusNotFound {
		t.Errorf("score before sync: %d, want 404 (no service known)", res.status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10s after cancel while the API server was unreachable")
	}
}

func TestRunRefusesBadOptions(t *testing.T) {
	cs, err := newClientForHost("https://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		o       Options
		invalid bool
	}{
		{"no client", Options{Namespace: "ns"}, true},
		{"no namespace", Options{Client: cs}, true},
		{"bad namespace", Options{Client: cs, Namespace: "Not_A_Namespace"}, true},
		{"negative downscale delay", Options{Client: cs, Namespace: "ns", DownscaleDelay: -time.Second}, true},
		{"address in use", Options{Client: cs, Namespace: "ns", Addr: busy.Addr().String()}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := Run(ctx, tt.o)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			if got := errors.Is(err, errdefs.ErrInvalid); got != tt.invalid {
				t.Errorf("Run: %v; ErrInvalid = %v, want %v", err, got, tt.invalid)
			}
		})
	}
}

func TestNotReadyWithoutRights(t *testing.T) {
	e := newCluster(t, k8s.Need(t))
	if err := e.admin.RbacV1().RoleBindings(e.ns).Delete(e.ctx, resources.RouterName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server's authorizer learns of the deletion through its own watch: wait until the
	// router's credentials are refused, or a loaded machine lets the router sync first.
	e.eventually("the router's rights revoked", func() error {
		_, err := e.router.CoreV1().ConfigMaps(e.ns).List(e.ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			return errNotYet
		}
		return nil
	})
	e.run(Options{}, false)
	e.eventually("the router logs why it cannot read the namespace", func() error {
		if !strings.Contains(e.logs.String(), "cannot watch the Kubernetes API") || !strings.Contains(e.logs.String(), "forbidden") {
			return errNotYet
		}
		return nil
	})
	if res := get(e.url + "/"); res.status != http.StatusServiceUnavailable {
		t.Errorf("GET / without rights to read the namespace: %d %s, want 503", res.status, res.body)
	}
}
