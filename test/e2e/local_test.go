package e2e

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/errdefs"
)

func TestDeployScoreAndKeys(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m := e.register("lin", 2)
	svc := e.mustDeploy("lin-svc", []string{m}, e.source(""), `{}`)
	if svc.State != "Healthy" || !svc.AuthEnabled || svc.TokenAuthEnabled || svc.Replicas.Ready != 1 ||
		svc.ScoringURI != e.scoring+"/api/v1/service/lin-svc/score" {
		t.Fatalf("service = %+v", svc)
	}
	k := e.keys("lin-svc")
	if k.PrimaryKey == "" || k.SecondaryKey == "" || k.PrimaryKey == k.SecondaryKey {
		t.Fatalf("keys = %+v", k)
	}
	for _, cred := range []string{k.PrimaryKey, k.SecondaryKey} {
		if code, body := score(t, svc.ScoringURI, cred, `{"x": 21}`); code != 200 || !strings.Contains(body, `"y": 42`) {
			t.Fatalf("score with a key: %d %s", code, body)
		}
	}
	for name, cred := range map[string]string{"no key": "", "wrong key": "nope", "token-looking": k.PrimaryKey + "x"} {
		if code, _ := score(t, svc.ScoringURI, cred, `{"x": 1}`); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if code, _ := score(t, e.scoring+"/api/v1/service/ghost/score", k.PrimaryKey, `{"x": 1}`); code != 404 {
		t.Errorf("unknown service: %d, want 404", code)
	}
	// Regenerating a key retires the old one at once.
	nk, err := e.client.RegenerateKeys(ctx, "default", "lin-svc", api.RegenerateKeysRequest{KeyType: "Primary"})
	if err != nil || nk.PrimaryKey == k.PrimaryKey || nk.SecondaryKey != k.SecondaryKey {
		t.Fatalf("regen = %+v, %v", nk, err)
	}
	if code, _ := score(t, svc.ScoringURI, k.PrimaryKey, `{"x": 1}`); code != 401 {
		t.Fatalf("old primary key after regen: %d, want 401", code)
	}
	if code, _ := score(t, svc.ScoringURI, nk.PrimaryKey, `{"x": 1}`); code != 200 {
		t.Fatalf("new primary key: %d", code)
	}
	if _, err := e.client.RegenerateKeys(ctx, "default", "lin-svc", api.RegenerateKeysRequest{KeyType: "Tertiary"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("regen Tertiary: %v", err)
	}
	set, err := e.client.RegenerateKeys(ctx, "default", "lin-svc", api.RegenerateKeysRequest{KeyType: "Secondary", KeyValue: "my-own-secondary-key"})
	if err != nil || set.SecondaryKey != "my-own-secondary-key" {
		t.Fatalf("regen with a value: %+v, %v", set, err)
	}
	if code, _ := score(t, svc.ScoringURI, "my-own-secondary-key", `{"x": 1}`); code != 200 {
		t.Fatalf("chosen secondary key: %d", code)
	}
	// Status codes from the model pass through: bad JSON makes run() raise (502).
	if code, body := score(t, svc.ScoringURI, nk.PrimaryKey, `not json`); code != 502 || !strings.Contains(body, "JSONDecodeError") {
		t.Fatalf("run() raising: %d %s", code, body)
	}
	if _, err := e.client.ServiceToken(ctx, "default", "lin-svc"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("token for a key-auth service: %v, want 400", err)
	}
	// A deployed model version cannot be deleted from under its service.
	if err := e.client.DeleteModel(ctx, "default", "lin", 1); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "lin-svc") {
		t.Fatalf("deleting a deployed model: %v, want 409 naming the service", err)
	}
}

func TestTokenAuth(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	svc := e.mustDeploy("tok-svc", []string{e.register("lin", 3)}, e.source(""), `{"tokenAuthEnabled": true}`)
	if svc.AuthEnabled || !svc.TokenAuthEnabled {
		t.Fatalf("auth flags = %v/%v", svc.AuthEnabled, svc.TokenAuthEnabled)
	}
	tok, err := e.client.ServiceToken(ctx, "default", "tok-svc")
	if err != nil || tok.TokenType != "Bearer" || !tok.RefreshAfter.Before(tok.ExpiryOn) {
		t.Fatalf("token = %+v, %v", tok, err)
	}
	if code, body := score(t, svc.ScoringURI, tok.AccessToken, `{"x": 2}`); code != 200 || !strings.Contains(body, `"y": 6`) {
		t.Fatalf("score with the token: %d %s", code, body)
	}
	if _, err := e.client.ServiceKeys(ctx, "default", "tok-svc"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("get-keys of a token service: %v, want 400", err)
	}
	if code, _ := score(t, svc.ScoringURI, tok.AccessToken[:len(tok.AccessToken)-2]+"xx", `{"x": 2}`); code != 401 {
		t.Fatalf("tampered token: %d, want 401", code)
	}
	e.clock.advance(2 * time.Hour)
	if code, body := score(t, svc.ScoringURI, tok.AccessToken, `{"x": 2}`); code != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("expired token: %d %s, want 401", code, body)
	}
}

func TestDeployRejectsBadRequestsBeforeStarting(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m := e.register("lin", 1)
	src := e.source("")
	cases := []struct {
		name   string
		svc    string
		models []string
		dc     string
		kind   error
		msg    string
	}{
		{"unknown model", "svc-a", []string{"ghost:1"}, `{}`, errdefs.ErrNotFound, "ghost:1"},
		{"unknown version", "svc-b", []string{"lin:9"}, `{}`, errdefs.ErrNotFound, "lin:9"},
		{"bad name", "Bad_Name", []string{m}, `{}`, errdefs.ErrInvalid, "3-32 lowercase"},
		{"short name", "ab", []string{m}, `{}`, errdefs.ErrInvalid, "3-32"},
		{"both auths", "svc-c", []string{m}, `{"authEnabled": true, "tokenAuthEnabled": true}`, errdefs.ErrInvalid, "tokenAuthEnabled"},
		{"bad config key", "svc-d", []string{m}, `{"autoScaler": {"minReplica": 2}}`, errdefs.ErrInvalid, "minReplicas"},
	}
	for _, c := range cases {
		_, err := e.deploy(c.svc, c.models, src, c.dc)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", c.name, err, c.kind, c.msg)
		}
	}
	// No-code needs a single ONNX model.
	if _, err := e.deploy("svc-e", []string{m}, "", `{}`); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), ".onnx") {
		t.Errorf("no-code without ONNX: %v", err)
	}
	list, _ := e.client.ListServices(ctx, "default")
	if len(list) != 0 {
		t.Fatalf("rejected deploys left services behind: %+v", list)
	}
	e.mustDeploy("svc-ok", []string{m}, src, `{}`)
	if _, err := e.deploy("svc-ok", []string{m}, src, `{}`); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("deploy over an existing name: %v, want 409", err)
	}
	op, err := e.client.DeployService(ctx, "default", api.DeployRequest{Name: "svc-ok", Models: []string{m}, Overwrite: true,
		InferenceConfig: []byte(`{"entryScript":"score.py"}`), DeploymentConfig: []byte(`{}`)}, mustPlan(t, src))
	if err != nil || e.wait(op).State != "Succeeded" {
		t.Fatalf("deploy --overwrite: %+v, %v", op, err)
	}
}

func TestInitFailureEndsFailedWithTraceback(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	op, err := e.deploy("broken", []string{e.register("lin", 1)}, e.source(`raise ValueError("weights are corrupt")`), `{}`)
	if err != nil {
		t.Fatal(err)
	}
	op = e.wait(op)
	if op.State != "Failed" || !strings.Contains(op.Error, "weights are corrupt") {
		t.Fatalf("operation = %+v", op)
	}
	svc, _ := e.client.GetService(ctx, "default", "broken")
	if svc.State != "Failed" || !strings.Contains(svc.Error, "weights are corrupt") {
		t.Fatalf("service = %s %q", svc.State, svc.Error)
	}
	logs, err := e.client.ServiceLogs(ctx, "default", "broken", 0, true)
	if err != nil || !strings.Contains(logs, "Traceback") || !strings.Contains(logs, "ValueError: weights are corrupt") {
		t.Fatalf("init logs = %q, %v", logs, err)
	}
}

func pgrep(args ...string) []int {
	out, _ := exec.Command("pgrep", args...).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// replicaPIDs finds a service's replica processes by their model folder, and their Python workers.
func replicaPIDs(t *testing.T, dataDir, service string) []int {
	pids := pgrep("-f", dataDir+"/services/default/"+service+"/")
	for _, p := range pids {
		pids = append(pids, pgrep("-P", strconv.Itoa(p))...)
	}
	return pids
}

var listenRE = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

func TestDeleteFreesProcessesAndPorts(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	svc := e.mustDeploy("gone-svc", []string{e.register("lin", 1)}, e.source(""), `{"numReplicas": 2}`)
	if svc.Replicas.Ready != 2 {
		t.Fatalf("replicas = %+v", svc.Replicas)
	}
	pids := replicaPIDs(t, e.dataDir, "gone-svc")
	if len(pids) < 4 { // two 'mlship score' processes, each with a Python worker
		t.Fatalf("replica processes = %v, want at least 4", pids)
	}
	logs, _ := e.client.ServiceLogs(ctx, "default", "gone-svc", 0, false)
	m := listenRE.FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("no replica address in the logs: %q", logs)
	}
	op, err := e.client.DeleteService(ctx, "default", "gone-svc")
	if err != nil || e.wait(op).State != "Succeeded" {
		t.Fatalf("delete: %+v %v", op, err)
	}
	if left := replicaPIDs(t, e.dataDir, "gone-svc"); len(left) != 0 {
		t.Fatalf("processes left after delete: %v", left)
	}
	if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
		c.Close()
		t.Fatalf("replica port %s still open after delete", m[1])
	}
	if _, err := e.client.GetService(ctx, "default", "gone-svc"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("service after delete: %v", err)
	}
	if code, _ := score(t, svc.ScoringURI, "x", `{"x": 1}`); code != 404 {
		t.Fatalf("scoring a deleted service: %d, want 404", code)
	}
}

// load runs n clients against uri until stop is closed; it counts answers by status.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	bodies     []string
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(t *testing.T, n int, uri, cred, body string) *load {
	l := &load{stop: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, b := score(t, uri, cred, body)
				if code == 200 {
					l.ok.Add(1)
				} else {
					l.failed.Add(1)
					l.mu.Lock()
					l.bodies = append(l.bodies, strconv.Itoa(code)+" "+b)
					l.mu.Unlock()
				}
			}
		}()
	}
	return l
}

func (l *load) finish() (ok, failed int64, samples []string) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.bodies) > 3 {
		l.bodies = l.bodies[:3]
	}
	return l.ok.Load(), l.failed.Load(), l.bodies
}

func TestRollingUpdateFailsNoRequest(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	ctx := context.Background()
	m1, m2 := e.register("lin", 1), e.register("lin", 5)
	src := e.source("")
	svc := e.mustDeploy("roll-svc", []string{m1}, src, `{"numReplicas": 2, "maxQueueWaitMs": 5000}`)
	k := e.keys("roll-svc")
	l := startLoad(t, 4, svc.ScoringURI, k.PrimaryKey, `{"x": 1}`)
	time.Sleep(300 * time.Millisecond)
	op, err := e.client.UpdateService(ctx, "default", api.DeployRequest{Name: "roll-svc", Models: []string{m2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if op = e.wait(op); op.State != "Succeeded" {
		t.Fatalf("update: %+v", op)
	}
	time.Sleep(300 * time.Millisecond)
	ok, failed, samples := l.finish()
	if failed != 0 || ok < 50 {
		t.Fatalf("during the rolling update: %d ok, %d failed %v", ok, failed, samples)
	}
	if code, body := score(t, svc.ScoringURI, k.PrimaryKey, `{"x": 1}`); code != 200 || !strings.Contains(body, `"y": 5`) {
		t.Fatalf("after update: %d %s, want model lin:2's answer", code, body)
	}
	got, _ := e.client.GetService(ctx, "default", "roll-svc")
	if got.Models[0] != m2 || got.State != "Healthy" || got.Replicas.Ready != 2 {
		t.Fatalf("service after update: %+v", got)
	}
	t.Logf("rolling update: %d requests, none failed", ok)
}

func TestKilledReplicaUnderLoad(t *testing.T) {
	e := start(t, t.TempDir(), "", "")
	svc := e.mustDeploy("kill-svc", []string{e.register("lin", 1)}, e.source(""), `{"numReplicas": 2, "maxQueueWaitMs": 5000}`)
	k := e.keys("kill-svc")
	l := startLoad(t, 4, svc.ScoringURI, k.PrimaryKey, `{"x": 1}`)
	time.Sleep(500 * time.Millisecond)
	out, _ := exec.Command("pgrep", "-f", "mlship score.*"+e.dataDir+"/services/default/kill-svc/").Output()
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		t.Fatal("no replica process found")
	}
	pid, _ := strconv.Atoi(fields[0])
	syscall.Kill(pid, syscall.SIGKILL)
	time.Sleep(2500 * time.Millisecond)
	ok, failed, samples := l.finish()
	if total := ok + failed; failed*100 >= total || ok < 100 {
		t.Fatalf("after SIGKILL of a replica: %d ok, %d failed (%v): want under 1%% failed", ok, failed, samples)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := e.client.GetService(context.Background(), "default", "kill-svc")
		if got.Replicas.Ready == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed replica was not restarted within 30 s: %+v", got.Replicas)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("killed a replica under load: %d ok, %d failed", ok, failed)
}

func TestServicesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	scoring := freePort(t)
	e := start(t, dir, scoring, "")
	svc := e.mustDeploy("keep-svc", []string{e.register("lin", 7)}, e.source(""), `{}`)
	k := e.keys("keep-svc")
	e.stop()
	if left := replicaPIDs(t, dir, "keep-svc"); len(left) != 0 {
		t.Fatalf("replicas outlived the server: %v", left)
	}

	e2 := start(t, dir, scoring, e.token)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := e2.client.GetService(context.Background(), "default", "keep-svc")
		if err == nil && got.State == "Healthy" {
			if got.ScoringURI != svc.ScoringURI {
				t.Fatalf("scoring URI changed: %s -> %s", svc.ScoringURI, got.ScoringURI)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not Healthy 30 s after restart: %+v %v", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if k2 := e2.keys("keep-svc"); k2 != k {
		t.Fatal("keys changed across a restart")
	}
	if code, body := score(t, svc.ScoringURI, k.PrimaryKey, `{"x": 1}`); code != 200 || !strings.Contains(body, `"y": 7`) {
		t.Fatalf("score after restart: %d %s", code, body)
	}
}
