package python

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
)

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultPython); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but Debian python3 is missing: %v", err)
		}
		t.Skipf("needs %s (Debian python3): %v", DefaultPython, err)
	}
}

// logBuffer collects worker output lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

// logged waits briefly for text to reach the log: worker output arrives through a pipe, after the reply.
func logged(logs *logBuffer, text string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(logs.String(), text) {
			return true
		}
	}
	return false
}

func startPool(t *testing.T, script string, workers int, env ...string) (*Pool, *logBuffer) {
	t.Helper()
	return startPoolConfig(t, Config{EntryScript: filepath.Join("testdata", script), Workers: workers, Env: env})
}

func startPoolConfig(t *testing.T, cfg Config) (*Pool, *logBuffer) {
	t.Helper()
	requirePython(t)
	logs := &logBuffer{}
	cfg.ModelDir = t.TempDir()
	cfg.InitTimeout = 20 * time.Second
	p, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("start: %v\nlog:\n%s", err, logs)
	}
	t.Cleanup(func() { p.Close() })
	return p, logs
}

func score(t *testing.T, p *Pool, body string, timeout time.Duration) (map[string]any, error) {
	t.Helper()
	return scoreRequest(t, p, &backend.Request{Body: []byte(body)}, timeout)
}

func scoreRequest(t *testing.T, p *Pool, req *backend.Request, timeout time.Duration) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := p.Score(ctx, req)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(res.Body, &out); err != nil {
		t.Fatalf("result %q is not a JSON object: %v", res.Body, err)
	}
	return out, nil
}

func TestPoolAzureContract(t *testing.T) {
	t.Parallel()
	p, logs := startPool(t, "faults.py", 2, "OMP_NUM_THREADS=4")
	out, err := score(t, p, `{"echo": "hi"}`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := filepath.Abs("testdata")
	if out["echo"] != "hi" || out["model"] != "ready" || out["path0"] != src {
		t.Fatalf("run() result %v; want echo, model set by init(), source dir first on sys.path", out)
	}
	env, err := score(t, p, `{"env": ["AZUREML_MODEL_DIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"]}`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if env["AZUREML_MODEL_DIR"] != p.cfg.ModelDir || env["OMP_NUM_THREADS"] != "4" || env["OPENBLAS_NUM_THREADS"] != "1" {
		t.Fatalf("worker env %v", env)
	}
	// What init() loaded is frozen out of the garbage collector's generations.
	if fr, err := score(t, p, `{"frozen": 1}`, 5*time.Second); err != nil || fr["frozen"].(float64) < 1000 {
		t.Fatalf("gc.get_freeze_count() in run() = %v, %v; want the objects init() made frozen", fr, err)
	}
	// print() output goes to the log, even bytes that look like a frame.
	if _, err := score(t, p, `{"print": "hello from run"}`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := score(t, p, `{"echo": 1}`, 5*time.Second); err != nil {
		t.Fatalf("protocol corrupted by print(): %v", err)
	}
	if !logged(logs, "hello from run") {
		t.Fatalf("print() output missing from log:\n%s", logs)
	}
	// A str result is JSON-encoded, as Azure does.
	ctx := context.Background()
	res, err := p.Score(ctx, &backend.Request{Body: []byte(`{"str": "plain"}`)})
	if err != nil || string(res.Body) != `"plain"` {
		t.Fatalf("str result = %q, %v", res.Body, err)
	}
	// Values json cannot encode by itself go through the converter (sets, bytes; numpy's tolist).
	res, err = p.Score(ctx, &backend.Request{Body: []byte(`{"convert": 1}`)})
	if want := `{"set": [3], "bytes": "hi", "tuple": [1, 2]}`; err != nil || string(res.Body) != want {
		t.Fatalf("converted result = %q, %v; want %s", res.Body, err, want)
	}
}

func TestPoolRunRaises(t *testing.T) {
	p, logs := startPool(t, "faults.py", 1)
	_, err := score(t, p, `{"raise": "bad feature 7"}`, 5*time.Second)
	var me *backend.ModelError
	if !errors.As(err, &me) || !errors.Is(err, backend.ErrModel) || me.Message != "bad feature 7" || me.Type != "ValueError" {
		t.Fatalf("err = %#v, want ModelError ValueError: bad feature 7", err)
	}
	if !strings.Contains(me.Traceback, "faults.py") || !logged(logs, "Traceback") {
		t.Fatalf("traceback missing: %q\nlog:\n%s", me.Traceback, logs)
	}
	_, err = score(t, p, `{"unserializable": true}`, 5*time.Second)
	if !errors.Is(err, backend.ErrModel) || !strings.Contains(err.Error(), "not JSON serializable") {
		t.Fatalf("unserializable result err = %v", err)
	}
	if _, err := score(t, p, `not json`, 5*time.Second); !errors.Is(err, backend.ErrModel) {
		t.Fatalf("run() raising on bad JSON is the script's error (502), got %v", err)
	}
	if p.Restarts() != 0 {
		t.Fatalf("a raising run() must not restart the worker")
	}
}

func TestPoolTimeoutReplacesWorker(t *testing.T) {
	p, _ := startPool(t, "faults.py", 1)
	first, err := score(t, p, `{}`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = score(t, p, `{"sleep": 30}`, 300*time.Millisecond)
	if !errors.Is(err, backend.ErrTimeout) || time.Since(start) > 10*time.Second {
		t.Fatalf("err = %v after %s, want ErrTimeout promptly", err, time.Since(start))
	}
	next, err := score(t, p, `{}`, 20*time.Second)
	if err != nil {
		t.Fatalf("request after timeout: %v", err)
	}
	if next["pid"] == first["pid"] || p.Restarts() != 1 {
		t.Fatalf("stuck worker not replaced: pid %v -> %v, restarts %d", first["pid"], next["pid"], p.Restarts())
	}
	if err := syscall.Kill(int(first["pid"].(float64)), 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("timed-out worker %v still exists: %v", first["pid"], err)
	}
}

func TestPoolWorkerDeath(t *testing.T) {
	for _, body := range []string{`{"kill": true}`, `{"exit": true}`} {
		p, _ := startPool(t, "faults.py", 2)
		_, err := score(t, p, body, 10*time.Second)
		if !errors.Is(err, backend.ErrWorkerCrashed) {
			t.Fatalf("%s: err = %v, want ErrWorkerCrashed", body, err)
		}
		for i := 0; i < 4; i++ {
			if _, err := score(t, p, `{}`, 20*time.Second); err != nil {
				t.Fatalf("%s: request %d after crash: %v", body, i, err)
			}
		}
		if p.Restarts() != 1 {
			t.Fatalf("restarts = %d", p.Restarts())
		}
		p.Close()
	}
}

func TestPoolInitFailure(t *testing.T) {
	t.Parallel()
	requirePython(t)
	logs := &logBuffer{}
	p, err := New(Config{EntryScript: "testdata/faults.py", Workers: 2, Env: []string{"FAULTS_INIT_RAISE=weights.pkl missing"}}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Start(context.Background())
	var ie *backend.InitError
	if !errors.As(err, &ie) || !errors.Is(err, backend.ErrInit) {
		t.Fatalf("err = %v, want InitError", err)
	}
	if !strings.Contains(ie.Message, "RuntimeError: cannot load model: weights.pkl missing") || !strings.Contains(ie.Traceback, "faults.py") {
		t.Fatalf("init error %q / traceback %q", ie.Message, ie.Traceback)
	}

	p2, _ := New(Config{EntryScript: "testdata/faults.py", InitTimeout: 500 * time.Millisecond, Env: []string{"FAULTS_INIT_SLEEP=30"}}, nil)
	defer p2.Close()
	start := time.Now()
	if err := p2.Start(context.Background()); !errors.Is(err, backend.ErrInit) || time.Since(start) > 15*time.Second {
		t.Fatalf("hanging init: err = %v after %s", err, time.Since(start))
	}
}

func TestPoolInferenceSchema(t *testing.T) {
	t.Parallel()
	requirePython(t)
	if err := exec.Command(DefaultPython, "-c", "import numpy, pandas").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but numpy/pandas are missing: install Debian python3-numpy python3-pandas")
		}
		t.Skip("needs Debian python3-numpy and python3-pandas")
	}
	p, _ := startPool(t, "schema.py", 1)
	out, err := score(t, p, `{"data": [[1,2,3],[4,5,6]], "scale": 10, "frame": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(out); string(got) != `{"frame_rows":2,"sums":[60,150]}` {
		t.Fatalf("schema'd run() = %s", got)
	}
	for body, want := range map[string]string{
		`{"data": [[1,2]]}`:                 "expected shape (-1, 3), got (1, 2)",
		`{"data": [[1,2,3]], "x": 1}`:       "unexpected keyword argument 'x'",
		`{"scale": 2}`:                      "missing input 'data'",
		`[1,2]`:                             "JSON object",
		`{"data": [[1,2,3]], "scale": "a"}`: "expected a number",
		`{bad`:                              "not valid JSON",
	} {
		_, err := score(t, p, body, 5*time.Second)
		if !errors.Is(err, backend.ErrBadInput) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrBadInput containing %q", body, err, want)
		}
	}
	m := p.Metadata()
	var in map[string]any
	if err := json.Unmarshal(m.InputSchema, &in); err != nil {
		t.Fatalf("input schema %s: %v", m.InputSchema, err)
	}
	data := in["properties"].(map[string]any)["data"].(map[string]any)
	if data["type"] != "array" || data["format"] != "numpy.ndarray" || m.OutputSchema == nil {
		t.Fatalf("swagger schema %s / %s", m.InputSchema, m.OutputSchema)
	}
}

func TestPoolRawHTTP(t *testing.T) {
	t.Parallel()
	p, _ := startPool(t, "rawresp.py", 1)
	if !p.Metadata().RawHTTP {
		t.Fatal("@rawhttp not detected")
	}
	ctx := context.Background()
	res, err := p.Score(ctx, &backend.Request{Method: "POST", Path: "/score", Body: []byte("abc")})
	if err != nil || res.Status != 201 || string(res.Body) != "ABC" || !strings.HasPrefix(res.ContentType, "text/html") {
		t.Fatalf("raw response %+v, %v", res, err)
	}
	res, err = p.Score(ctx, &backend.Request{Method: "POST", Path: "/score", Header: map[string][]string{"X-Fail": {"1"}}})
	if err != nil || res.Status != 418 || res.Header.Get("X-Why") != "header" || res.ContentType != "application/json" || string(res.Body) != `{"error": "asked to fail"}` {
		t.Fatalf("raw json response %+v, %v", res, err)
	}
	res, err = p.Score(ctx, &backend.Request{Method: "GET", Path: "/score", Query: "q=x"})
	if err != nil || string(res.Body) != "got x" {
		t.Fatalf("GET: %+v %v", res, err)
	}
}

func TestPoolCloseLeavesNoProcess(t *testing.T) {
	p, _ := startPool(t, "faults.py", 3)
	var pids []int
	for i := 0; i < 3; i++ {
		out, err := score(t, p, `{}`, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, int(out["pid"].(float64)))
	}
	p.Close()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker %d alive after Close: %v", pid, err)
		}
	}
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Errorf("shim dir %s left behind", p.dir)
	}
}

func TestPoolIdleWorkerDeathCostsNoRequest(t *testing.T) {
	p, _ := startPool(t, "faults.py", 1)
	out, err := score(t, p, `{}`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pid := int(out["pid"].(float64))
	syscall.Kill(pid, syscall.SIGKILL)
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(10 * time.Millisecond) // until reaped
	}
	time.Sleep(100 * time.Millisecond)
	next, err := score(t, p, `{}`, 20*time.Second)
	if err != nil {
		t.Fatalf("request after an idle worker died: %v", err)
	}
	if int(next["pid"].(float64)) == pid || p.Restarts() != 1 {
		t.Fatalf("pid %v restarts %d", next["pid"], p.Restarts())
	}
}

func TestPoolReusesTheMostRecentWorker(t *testing.T) {
	t.Parallel()
	p, _ := startPool(t, "faults.py", 3)
	// Right after start, a worker still on its way to sleep may take a request before the one woken
	// for it: let them all fall asleep first.
	if _, err := score(t, p, `{}`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	pids := map[any]int{}
	for i := 0; i < 12; i++ {
		out, err := score(t, p, `{}`, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pids[out["pid"]]++
	}
	if len(pids) != 1 {
		t.Fatalf("sequential requests went to %d workers (%v), want the one most recently used (warm caches)", len(pids), pids)
	}
}

// procState samples /proc/PID/stat n times over d and returns how many samples showed the process
// running or runnable ('R').
func procState(t *testing.T, pid int, n int, d time.Duration) (running int) {
	t.Helper()
	for i := 0; i < n; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// The state follows the parenthesised command name.
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] == "R" {
			running++
		}
		time.Sleep(d / time.Duration(n))
	}
	return running
}

func TestPoolLoneRequestPollsThenSleeps(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("polling is off on a single core")
	}
	p, _ := startPoolConfig(t, Config{EntryScript: filepath.Join("testdata", "faults.py"), Workers: 1, PollMicros: 700_000})
	// Not alone: the worker answers and sleeps in recv.
	out, err := score(t, p, `{}`, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pid := int(out["pid"].(float64))
	time.Sleep(50 * time.Millisecond)
	if r := procState(t, pid, 20, 200*time.Millisecond); r > 2 {
		t.Fatalf("worker was running in %d of 20 samples after a request that was not alone, want it asleep", r)
	}
	// Alone: the worker polls for the next request for PollMicros, then sleeps again.
	if _, err := scoreRequest(t, p, &backend.Request{Body: []byte(`{}`), Alone: true}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if r := procState(t, pid, 20, 200*time.Millisecond); r < 18 {
		t.Fatalf("worker was running in only %d of 20 samples right after a lone request, want it polling", r)
	}
	time.Sleep(700 * time.Millisecond)
	if r := procState(t, pid, 20, 200*time.Millisecond); r > 2 {
		t.Fatalf("worker still running in %d of 20 samples after its poll budget, want it asleep", r)
	}
	// A request that arrives while the worker polls, and one that arrives after, are both served.
	for i := 0; i < 3; i++ {
		if _, err := scoreRequest(t, p, &backend.Request{Body: []byte(`{"echo": 1}`), Alone: true}, 10*time.Second); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	time.Sleep(800 * time.Millisecond)
	if _, err := scoreRequest(t, p, &backend.Request{Body: []byte(`{}`), Alone: true}, 10*time.Second); err != nil {
		t.Fatalf("request after the poll budget: %v", err)
	}
}

func TestPoolLoneRequestFaults(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("polling is off on a single core")
	}
	// A poll budget far longer than the scoring timeout: the deadline still wins, and a worker that
	// dies while polling the queue fails only the request it took.
	p, logs := startPoolConfig(t, Config{EntryScript: filepath.Join("testdata", "faults.py"), Workers: 1, PollMicros: 5_000_000})
	alone := func(body string, timeout time.Duration) error {
		_, err := scoreRequest(t, p, &backend.Request{Body: []byte(body), Alone: true}, timeout)
		return err
	}
	start := time.Now()
	if err := alone(`{"sleep": 30}`, 300*time.Millisecond); !errors.Is(err, backend.ErrTimeout) || time.Since(start) > 3*time.Second {
		t.Fatalf("err = %v after %s, want ErrTimeout at the 300ms deadline", err, time.Since(start))
	}
	if err := alone(`{"sleep": 0.05}`, 20*time.Second); err != nil {
		t.Fatalf("run() longer than one poll check: %v", err)
	}
	if err := alone(`{"kill": true}`, 10*time.Second); !errors.Is(err, backend.ErrWorkerCrashed) {
		t.Fatalf("err = %v, want ErrWorkerCrashed", err)
	}
	if err := alone(`{}`, 20*time.Second); err != nil {
		t.Fatalf("request after the crash: %v\nlog:\n%s", err, logs)
	}
	if p.Restarts() != 2 {
		t.Fatalf("restarts = %d, want 2 (timeout and crash)", p.Restarts())
	}
}

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestPoolReplicaWaitsForAnswersAsleep(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("polling is off on a single core")
	}
	// Only the worker polls after a lone request; this side sleeps until the answer comes, so a
	// slow run() (300 ms, longer than the 200 ms poll budget) costs it almost no CPU.
	p, _ := startPoolConfig(t, Config{EntryScript: filepath.Join("testdata", "faults.py"), Workers: 1, PollMicros: 200_000})
	for i := 0; i < 3; i++ {
		before := cpuTime(t)
		if _, err := scoreRequest(t, p, &backend.Request{Body: []byte(`{"sleep": 0.3}`), Alone: true}, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if used := cpuTime(t) - before; used > 60*time.Millisecond {
			t.Fatalf("lone request %d used %s of CPU here while run() slept 300ms, want the replica asleep", i, used)
		}
	}
}

func TestPoolLargeBodies(t *testing.T) {
	t.Parallel()
	p, _ := startPool(t, "faults.py", 1)
	// Bodies far over one socket read (64 KiB) take the worker's large-frame path; small ones
	// around them must still be framed correctly.
	for _, n := range []int{10, 70 << 10, 8 << 20, 10} {
		res, err := p.Score(context.Background(), &backend.Request{Body: []byte(`{"str": "` + strings.Repeat("x", n) + `"}`)})
		if err != nil {
			t.Fatalf("%d-byte string: %v", n, err)
		}
		var s string
		if err := json.Unmarshal(res.Body, &s); err != nil || len(s) != n {
			t.Fatalf("%d-byte string came back as %d bytes (%v)", n, len(s), err)
		}
	}
}
func TestDecodeRawRejectsMalformedFramesAsModelErrors(t *testing.T) {
	for _, payload := range [][]byte{
		{0, 0},
		{0, 0, 0, 9, '{'},
		append([]byte{0, 0, 0, 26}, []byte(`{"headers": {"X-Count": 5}}`)[:26]...),
	} {
		_, err := decodeRaw(payload)
		if me := (*backend.ModelError)(nil); !errors.As(err, &me) {
			t.Errorf("decodeRaw(%q) = %v, want a ModelError (502, the worker kept)", payload, err)
		}
	}
}

// A worker killed mid-request fails only that request: the requests waiting in the shared queue
// are taken by the other worker (and the replacement), and none of them runs twice.
func TestPoolQueueCrashFailsOnlyTheRunningRequest(t *testing.T) {
	p, _ := startPool(t, "faults.py", 2)
	var wg sync.WaitGroup
	errs := make([]error, 12)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, errs[0] = score(t, p, `{"sleep": 0.05, "kill": true}`, 10*time.Second)
	}()
	time.Sleep(10 * time.Millisecond)
	for i := 1; i < len(errs); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = score(t, p, `{"sleep": 0.02}`, 10*time.Second)
		}()
	}
	wg.Wait()
	if !errors.Is(errs[0], backend.ErrWorkerCrashed) {
		t.Errorf("killed request: %v, want ErrWorkerCrashed", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("queued request %d: %v", i+1, err)
		}
	}
	if p.Restarts() != 1 {
		t.Errorf("restarts = %d, want 1", p.Restarts())
	}
}

// A request whose deadline passes while it waits in the queue answers 504 on time, and the worker
// that takes it later does not run it.
func TestPoolExpiredQueuedRequestNeverRuns(t *testing.T) {
	p, _ := startPool(t, "faults.py", 1)
	slow := make(chan error, 1)
	go func() {
		_, err := score(t, p, `{"sleep": 0.4}`, 10*time.Second)
		slow <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	_, err := score(t, p, `{}`, 100*time.Millisecond)
	if !errors.Is(err, backend.ErrTimeout) {
		t.Fatalf("queued request: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("queued request answered after %v, want about its 100ms deadline", d)
	}
	if err := <-slow; err != nil {
		t.Fatalf("slow request: %v", err)
	}
	out, err := score(t, p, `{}`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out["calls"] != 2.0 {
		t.Errorf("run() calls in the worker = %v, want 2 (the expired request must not run)", out["calls"])
	}
	if p.Restarts() != 0 {
		t.Errorf("restarts = %d: a request that expired in the queue must not cost a worker", p.Restarts())
	}
}

// Payloads over inlineMax go to the worker in a memfd; the echo proves they arrive whole.
func TestPoolMemfdPayloads(t *testing.T) {
	p, _ := startPool(t, "faults.py", 2)
	for _, n := range []int{inlineMax - 100, inlineMax + 1, 3 << 20} {
		echo := strings.Repeat("x", n)
		out, err := score(t, p, `{"echo": "`+echo+`"}`, 10*time.Second)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if out["echo"] != echo {
			t.Errorf("%d bytes: echo differs (%d bytes back)", n, len(fmt.Sprint(out["echo"])))
		}
	}
}

// Requests queued while the only worker is being replaced are taken by the replacement as soon as
// it is ready; their answers can follow its ready frame in one read, and must not be lost with it.
func TestPoolRequestsQueuedDuringReplacement(t *testing.T) {
	p, _ := startPool(t, "faults.py", 1)
	for round := 0; round < 3; round++ {
		if _, err := score(t, p, `{"kill": true}`, 10*time.Second); !errors.Is(err, backend.ErrWorkerCrashed) {
			t.Fatalf("round %d: kill: %v, want ErrWorkerCrashed", round, err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = score(t, p, `{}`, 10*time.Second)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: request %d queued during the replacement: %v", round, i, err)
			}
		}
	}
}

// The ready frame is read alone: what the worker sends after it belongs to the answer reader.
func TestReadFrameReadsNothingAfterTheFrame(t *testing.T) {
	first := appendFrame(nil, kindReady, []byte(`{"pid": 1}`))
	second := appendFrame(nil, kindJSON, []byte("12345678runtime!{}"))
	r := bytes.NewReader(append(first, second...))
	kind, payload, err := readFrame(r)
	if err != nil || kind != kindReady || string(payload) != `{"pid": 1}` {
		t.Fatalf("readFrame = %q %q %v", kind, payload, err)
	}
	if rest, _ := io.ReadAll(r); !bytes.Equal(rest, second) {
		t.Fatalf("after the frame the reader holds %q, want the next frame %q", rest, second)
	}
}

// Queued counts the admitted requests no worker has started: the /metrics queue depth includes them.
func TestPoolQueuedCountsRequestsWaitingForAWorker(t *testing.T) {
	p, _ := startPool(t, "faults.py", 1)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := score(t, p, `{"sleep": 0.3}`, 20*time.Second); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Queued() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("Queued() = %d with one request running and three waiting, want 3", p.Queued())
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if q := p.Queued(); q != 0 {
		t.Fatalf("Queued() = %d after every request was answered, want 0", q)
	}
}

// Closing the pool while requests and metrics scrapes are running answers them ErrNotReady (or
// lets them finish); none of them may touch released shared memory and crash the process.
func TestPoolCloseWhileScoring(t *testing.T) {
	p, _ := startPool(t, "faults.py", 2)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := p.Score(ctx, &backend.Request{Body: []byte(`{}`)})
				cancel()
				if errors.Is(err, backend.ErrNotReady) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				p.Queued()
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	p.Close()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request during Close: %v, want success or ErrNotReady", err)
	}
}
