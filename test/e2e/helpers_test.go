// Package e2e runs mlship end to end on this machine: a real control plane, real replica processes, real HTTP.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/server"
	"github.com/mlship/mlship/internal/store/postgres/pgtest"
)

var binary string

// pg is a PostgreSQL server for the tests of the control plane on PostgreSQL.
var pg *pgtest.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mlship-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mlship")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/mlship/mlship/cmd/mlship").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build mlship: %v\n%s", err, out)
		os.Exit(1)
	}
	code := pgtest.Main(m, &pg)
	os.RemoveAll(dir)
	os.Exit(code)
}

// clock is a settable clock for token expiry tests.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

type env struct {
	t       *testing.T
	dataDir string
	client  *api.Client
	token   string
	scoring string // router base URL
	clock   *clock
	stop    func()
	logs    *bytes.Buffer
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// start runs a control plane on dataDir; scoringAddr "" picks a free port.
func start(t *testing.T, dataDir, scoringAddr, token string) *env {
	t.Helper()
	if scoringAddr == "" {
		scoringAddr = freePort(t)
	}
	c := &clock{}
	logs := &syncBuf{}
	s, err := server.New(context.Background(), server.Options{
		DataDir: dataDir, Addr: "127.0.0.1:0", ScoringAddr: scoringAddr, ScoreBinary: binary,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: c.now, ReplicaReadyTimeout: 60 * time.Second, DownscaleDelay: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if token == "" {
		token = s.AdminToken
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("server: %v", err)
	}
	e := &env{t: t, dataDir: dataDir, token: token, client: api.NewClient("http://"+addr.String(), token, nil), scoring: "http://" + scoringAddr, clock: c}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		s.Close()
	}
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return e
}

// model writes a stdlib entry script and registers a weights file; it returns the model id.
func (e *env) register(name string, weight float64) string {
	e.t.Helper()
	dir := e.t.TempDir()
	p := filepath.Join(dir, "weights.json")
	os.WriteFile(p, []byte(fmt.Sprintf(`{"w": %g}`, weight)), 0o644)
	plan, err := archive.NewPlan(p)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := e.client.RegisterModel(context.Background(), "default", api.ModelSpec{Name: name}, plan, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return m.ID
}

// A stdlib scoring script: y = w * x, w from the model's weights.json; optional sleep and failure.
const scorePy = `import json, os, time
def init():
    global w
    %s
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")) as f:
        w = json.load(f)["w"]
def run(raw):
    d = json.loads(raw)
    if d.get("sleep"):
        time.sleep(d["sleep"])
    return {"y": w * d["x"], "pid": os.getpid()}
`

// source writes score.py into a fresh folder; initExtra is a Python statement run first in init().
func (e *env) source(initExtra string) string {
	dir := e.t.TempDir()
	if initExtra == "" {
		initExtra = "pass"
	}
	os.WriteFile(filepath.Join(dir, "score.py"), []byte(fmt.Sprintf(scorePy, initExtra)), 0o644)
	return dir
}

func (e *env) deploy(name string, models []string, sourceDir string, dc string) (api.Operation, error) {
	req := api.DeployRequest{Name: name, Models: models, DeploymentConfig: json.RawMessage(dc)}
	var plan *archive.Plan
	if sourceDir != "" {
		req.InferenceConfig = json.RawMessage(`{"entryScript": "score.py"}`)
		var err error
		if plan, err = archive.NewPlan(sourceDir); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.client.DeployService(context.Background(), "default", req, plan)
}

func (e *env) wait(op api.Operation) api.Operation {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !op.Done() {
		if time.Now().After(deadline) {
			e.t.Fatalf("operation %s still %s after 90 s", op.ID, op.State)
		}
		time.Sleep(50 * time.Millisecond)
		var err error
		if op, err = e.client.GetOperation(context.Background(), "default", op.ID); err != nil {
			e.t.Fatal(err)
		}
	}
	return op
}

func (e *env) mustDeploy(name string, models []string, sourceDir, dc string) api.Service {
	e.t.Helper()
	op, err := e.deploy(name, models, sourceDir, dc)
	if err != nil {
		e.t.Fatalf("deploy %s: %v", name, err)
	}
	if op = e.wait(op); op.State != "Succeeded" {
		e.t.Fatalf("deploy %s ended %s: %s", name, op.State, op.Error)
	}
	svc, err := e.client.GetService(context.Background(), "default", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

func (e *env) keys(name string) api.Keys {
	e.t.Helper()
	k, err := e.client.ServiceKeys(context.Background(), "default", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

var scoreClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

// score posts body to a scoring URI with a bearer credential; it returns the status and body.
func score(t *testing.T, uri, cred, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, uri, strings.NewReader(body))
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := scoreClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustPlan(t *testing.T, dir string) *archive.Plan {
	p, err := archive.NewPlan(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
