package python

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	// dies while the replica polls fails only its own request.
	p, _ := startPoolConfig(t, Config{EntryScript: filepath.Join("testdata", "faults.py"), Workers: 1, PollMicros: 5_000_000})
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
		t.Fatalf("request after the crash: %v", err)
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

func TestPoolStopsPollingForSlowAnswers(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("polling is off on a single core")
	}
	// run() takes 300 ms, longer than the 200 ms poll budget: the first lone requests poll in vain
	// (this process spends the budget on a core), then the replica waits for answers asleep.
	p, _ := startPoolConfig(t, Config{EntryScript: filepath.Join("testdata", "faults.py"), Workers: 1, PollMicros: 200_000})
	lone := func() time.Duration {
		before := cpuTime(t)
		if _, err := scoreRequest(t, p, &backend.Request{Body: []byte(`{"sleep": 0.3}`), Alone: true}, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		return cpuTime(t) - before
	}
	if used := lone(); used < 100*time.Millisecond {
		t.Fatalf("first slow lone request used %s of CPU here, want about the 200ms poll budget", used)
	}
	lone()
	lone()
	if used := lone(); used > 60*time.Millisecond {
		t.Fatalf("after 3 answers slower than the budget, a lone request still used %s of CPU, want no polling", used)
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

// workerQueue reports, for the pool's only live worker, how many requests it holds and how many
// bytes this process wrote to its socket that it has not read yet (SIOCOUTQ): a request waiting
// behind the one it runs.
func workerQueue(t *testing.T, p *Pool) (held, unread int) {
	t.Helper()
	p.sched.mu.Lock()
	if len(p.sched.all) != 1 {
		p.sched.mu.Unlock()
		return -1, -1
	}
	w := p.sched.all[0]
	held = w.held
	p.sched.mu.Unlock()
	w.raw.Control(func(fd uintptr) {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		if err != nil {
			t.Errorf("SIOCOUTQ: %v", err)
		}
		unread = n
	})
	return held, unread
}

// waitQueue waits up to d for the worker's queue to satisfy ok and returns the last values seen.
func waitQueue(t *testing.T, p *Pool, d time.Duration, ok func(held, unread int) bool) (held, unread int) {
	t.Helper()
	for end := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		held, unread = workerQueue(t, p)
		if ok(held, unread) || time.Now().After(end) {
			return held, unread
		}
	}
}

type answer struct {
	out map[string]any
	err error
}

// scoreAsync starts a request and returns where its answer will arrive.
func scoreAsync(t *testing.T, p *Pool, body string, timeout time.Duration) <-chan answer {
	c := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		res, err := p.Score(ctx, &backend.Request{Body: []byte(body)})
		var out map[string]any
		if err == nil {
			err = json.Unmarshal(res.Body, &out)
		}
		c <- answer{out, err}
	}()
	return c
}

// pipelinePool starts one worker that may hold depth requests. Its run() average is reset after
// each warm-up request, so pipelining applies however slowly a loaded machine ran them.
func pipelinePool(t *testing.T, depth int) *Pool {
	p, _ := startPoolConfig(t, Config{EntryScript: filepath.Join("testdata", "faults.py"), Workers: 1, Pipeline: depth})
	if _, err := score(t, p, `{}`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.service.Store(0)
	return p
}

// runningAlone starts a request that runs for a while and waits until the worker has read it.
func runningAlone(t *testing.T, p *Pool, body string, timeout time.Duration) <-chan answer {
	t.Helper()
	a := scoreAsync(t, p, body, timeout)
	if held, unread := waitQueue(t, p, 5*time.Second, func(h, u int) bool { return h == 1 && u == 0 }); held != 1 || unread != 0 {
		t.Fatalf("first request: worker holds %d, %d bytes unread; want 1 and 0", held, unread)
	}
	return a
}

func TestPoolPipelinesShortRequests(t *testing.T) {
	t.Parallel()
	p := pipelinePool(t, 2)
	a := runningAlone(t, p, `{"sleep": 1.5, "echo": "a"}`, 20*time.Second)
	// The second request is written to the busy worker's socket at once and waits there.
	b := scoreAsync(t, p, `{"echo": "b"}`, 20*time.Second)
	if held, unread := waitQueue(t, p, time.Second, func(h, u int) bool { return h == 2 && u > 0 }); held != 2 || unread == 0 {
		t.Fatalf("second request: worker holds %d, %d bytes unread; want it queued in the worker's socket", held, unread)
	}
	// The third waits in the replica: the depth is 2.
	c := scoreAsync(t, p, `{"echo": "c"}`, 20*time.Second)
	time.Sleep(100 * time.Millisecond)
	if held, _ := workerQueue(t, p); held != 2 {
		t.Fatalf("worker holds %d requests with depth 2", held)
	}
	ra, rb, rc := <-a, <-b, <-c
	for _, r := range []answer{ra, rb, rc} {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	if ra.out["echo"] != "a" || rb.out["echo"] != "b" || rc.out["echo"] != "c" {
		t.Fatalf("answers reached the wrong requests: %v %v %v", ra.out, rb.out, rc.out)
	}
	if rb.out["calls"].(float64) != ra.out["calls"].(float64)+1 {
		t.Fatalf("the queued request did not run right after the first in the same worker: %v then %v", ra.out, rb.out)
	}
}

func TestPoolPipelineFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, first string
		timeout     time.Duration
		want        error
		replaced    bool
	}{
		{"crash", `{"sleep": 1.5, "kill": true}`, 20 * time.Second, backend.ErrWorkerCrashed, true},
		{"timeout", `{"sleep": 30}`, 1500 * time.Millisecond, backend.ErrTimeout, true},
		{"raises", `{"sleep": 1.5, "raise": "boom"}`, 20 * time.Second, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := pipelinePool(t, 2)
			before, _ := score(t, p, `{}`, 10*time.Second)
			p.service.Store(0)
			a := runningAlone(t, p, tc.first, tc.timeout)
			b := scoreAsync(t, p, `{"echo": "b"}`, 30*time.Second)
			if held, unread := waitQueue(t, p, time.Second, func(h, u int) bool { return h == 2 && u > 0 }); held != 2 || unread == 0 {
				t.Fatalf("second request not queued in the worker: holds %d, %d bytes unread", held, unread)
			}
			ra, rb := <-a, <-b
			if tc.want != nil && !errors.Is(ra.err, tc.want) {
				t.Fatalf("first request: err = %v, want %v", ra.err, tc.want)
			}
			if me := (*backend.ModelError)(nil); tc.want == nil && !errors.As(ra.err, &me) {
				t.Fatalf("first request: err = %v, want the model's error", ra.err)
			}
			// The request queued behind a failure never started there: it runs once, elsewhere.
			if rb.err != nil || rb.out["echo"] != "b" {
				t.Fatalf("queued request: %v %v", rb.out, rb.err)
			}
			samePID := rb.out["pid"] == before["pid"]
			if tc.replaced && (samePID || rb.out["calls"].(float64) != 1 || p.Restarts() != 1) {
				t.Fatalf("queued request ran in pid %v as call %v (failed worker %v), restarts %d; want it run once on the replacement",
					rb.out["pid"], rb.out["calls"], before["pid"], p.Restarts())
			}
			if !tc.replaced && (!samePID || p.Restarts() != 0) {
				t.Fatalf("queued request ran in pid %v (worker %v), restarts %d; a raising run() must not cost the worker", rb.out["pid"], before["pid"], p.Restarts())
			}
		})
	}
}

func TestPoolDoesNotPipelineSlowOrLargeRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, warmup, second string
		fast                 bool // run() counts as short whatever the machine's load
	}{
		{"slow", `{"sleep": 0.02}`, `{"echo": "b"}`, false}, // run() averages far over pipelineBelow
		{"large", `{}`, `{"echo": "b", "pad": "` + strings.Repeat("x", directWriteMax) + `"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := pipelinePool(t, 2)
			for i := 0; i < 4; i++ {
				if _, err := score(t, p, tc.warmup, 10*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			if tc.fast {
				p.service.Store(0)
			}
			a := runningAlone(t, p, `{"sleep": 0.5}`, 20*time.Second)
			b := scoreAsync(t, p, tc.second, 20*time.Second)
			time.Sleep(200 * time.Millisecond)
			if held, unread := workerQueue(t, p); held != 1 || unread != 0 {
				t.Fatalf("worker holds %d, %d bytes unread; want the second request kept in the replica", held, unread)
			}
			if r := <-a; r.err != nil {
				t.Fatal(r.err)
			}
			if r := <-b; r.err != nil || r.out["echo"] != "b" {
				t.Fatalf("%v %v", r.out, r.err)
			}
		})
	}
}

func TestSchedPrefersIdleThenLeastBusy(t *testing.T) {
	s := &sched{depth: 3}
	w1, w2, w3 := &worker{id: 1}, &worker{id: 2}, &worker{id: 3}
	s.add(w1)
	s.add(w2)
	s.add(w3)
	take := func(pipeline bool) *worker {
		w, wt := s.take(pipeline)
		if wt != nil {
			s.cancel(wt)
		}
		return w
	}
	if w := take(true); w != w3 {
		t.Fatalf("took worker %v, want the most recently added idle one (3)", w)
	}
	s.release(w3)
	if w := take(false); w != w3 {
		t.Fatalf("took worker %v, want the most recently released one (3)", w)
	}
	take(true) // 2
	take(true) // 1
	if w := take(false); w != nil {
		t.Fatalf("without pipelining and no idle worker, took %v, want none", w)
	}
	if w := take(true); w == nil {
		t.Fatal("pipelining found no busy worker with room")
	}
	// Every worker now holds 1 except one that holds 2; the next goes to one that held 1.
	if w := take(true); w == nil || w.held != 2 {
		t.Fatalf("took %v, want a worker that held 1", w)
	}
	if !s.remove(w2) || s.remove(w2) {
		t.Fatal("remove must report true once")
	}
	for i := 0; i < 6; i++ {
		if w := take(true); w == w2 {
			t.Fatal("a removed worker was handed out")
		}
	}
}

// Each freed place goes to one waiter, in arrival order; while a waiter that needs an idle worker
// is first in line, later ones wait behind it and the busy worker drains for it; a cancelled
// waiter's worker is not lost.
func TestSchedHandsFreedPlacesToWaitersInOrder(t *testing.T) {
	s, w1 := busySched(t, true)
	if w, _ := s.take(true); w != w1 {
		t.Fatal("second take should pipeline")
	}
	_, a := s.take(true)
	_, b := s.take(true)
	if a == nil || b == nil {
		t.Fatal("a full worker must make callers wait")
	}
	s.release(w1)
	if received(a) != w1 || received(b) != nil {
		t.Fatal("one freed place must go to the first waiter, and only to it")
	}
	s.release(w1)
	if received(b) != w1 {
		t.Fatal("the next freed place must go to the next waiter")
	}
	// Now one that needs an idle worker, then one that could pipeline: the second must not
	// overtake the first, and the first gets the worker once it has drained.
	_, idleOnly := s.take(false)
	_, c := s.take(true)
	s.release(w1) // holds 1: room for pipelining, but the idle-only waiter is first
	if received(idleOnly) != nil || received(c) != nil {
		t.Fatal("a place was handed out past the waiter first in line")
	}
	if w, wt := s.take(true); w != nil || wt == nil {
		t.Fatal("a new request overtook the waiters")
	} else {
		s.cancel(wt)
	}
	s.release(w1) // idle
	if received(idleOnly) != w1 || received(c) != w1 || w1.held != 2 {
		t.Fatalf("after draining: the idle-only waiter and then the next must get the worker (held %d)", w1.held)
	}
	// A waiter cancelled after a worker was handed to it passes the place on.
	_, f := s.take(true)
	_, g := s.take(true)
	s.release(w1) // to f
	s.cancel(f)   // back, and on to g
	if received(g) != w1 || w1.held != 2 {
		t.Fatalf("a cancelled hand-off was not passed on (held %d)", w1.held)
	}
	// A waiter cancelled before anything was handed to it is simply withdrawn.
	_, h := s.take(false)
	s.cancel(h)
	s.mu.Lock()
	n := len(s.waiters)
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d waiters left", n)
	}
}

// When the waiter first in line, which needs an idle worker, leaves, the waiters behind it get the
// room it was holding them back from.
func TestSchedCancelledHeadLetsTheNextIn(t *testing.T) {
	s, w := busySched(t, false)
	_, x := s.take(false) // needs an idle worker: waits first in line
	_, y := s.take(true)  // fits behind the running request, but must not overtake x
	s.cancel(x)
	got := received(y)
	if got == nil {
		t.Fatalf("after the head waiter left, the one behind it was not let in (held %d < depth %d)", w.held, s.depth)
	}
	s.release(got)
}

// busySched is a scheduler of depth 2 with one worker, already holding one request taken with pipeline.
func busySched(t *testing.T, pipeline bool) (*sched, *worker) {
	t.Helper()
	s := &sched{depth: 2}
	w := &worker{id: 1}
	s.add(w)
	if got, _ := s.take(pipeline); got != w {
		t.Fatal("the idle worker was not handed out")
	}
	return s, w
}

// received is the worker handed to wt, or nil if none was yet.
func received(wt *waiter) *worker {
	select {
	case w := <-wt.c:
		return w
	default:
		return nil
	}
}

// A request that needs an idle worker (a body over directWriteMax) is served amid small requests
// that keep the only worker's pipeline full. Whether it is served depends on timing; the order
// that guarantees it is pinned by TestSchedHandsFreedPlacesToWaitersInOrder.
func TestPoolLargeRequestIsNotStarved(t *testing.T) {
	t.Parallel()
	p := pipelinePool(t, 2)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var small atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := score(t, p, `{}`, 10*time.Second); err == nil {
					small.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	big := `{"echo": "big", "pad": "` + strings.Repeat("x", directWriteMax) + `"}`
	out, err := score(t, p, big, 5*time.Second)
	stop.Store(true)
	wg.Wait()
	if err != nil || out["echo"] != "big" {
		t.Fatalf("the large request, amid %d small ones: %v %v", small.Load(), out, err)
	}
	if small.Load() == 0 {
		t.Fatal("no small request was served: the test did not load the worker")
	}
}

// A queued request whose deadline passes before it is written (here it is held up on w.mu) answers
// 504 and costs neither the worker nor the request running in it.
func TestPoolPipelinedRequestExpiredBeforeWrite(t *testing.T) {
	t.Parallel()
	p := pipelinePool(t, 2)
	a := runningAlone(t, p, `{"sleep": 1.0, "echo": "a"}`, 20*time.Second)
	w := onlyWorker(t, p)
	w.mu.Lock()
	b := scoreAsync(t, p, `{"echo": "b"}`, 100*time.Millisecond)
	waitQueue(t, p, time.Second, func(h, u int) bool { return h == 2 })
	time.Sleep(200 * time.Millisecond)
	w.mu.Unlock()
	ra, rb := <-a, <-b
	if ra.err != nil || ra.out["echo"] != "a" {
		t.Fatalf("the running request: %v %v", ra.out, ra.err)
	}
	if !errors.Is(rb.err, backend.ErrTimeout) {
		t.Fatalf("the expired request: %v, want ErrTimeout", rb.err)
	}
	if n := p.Restarts(); n != 0 {
		t.Fatalf("%d restarts, want the worker kept", n)
	}
}

// A queued request whose deadline passes while it waits behind a longer run() answers 504 on time;
// the worker still runs it, its answer is read and dropped, and the next request gets its own.
func TestPoolQueuedRequestTimesOutOnTime(t *testing.T) {
	t.Parallel()
	p := pipelinePool(t, 2)
	a := runningAlone(t, p, `{"sleep": 1.0, "echo": "a"}`, 20*time.Second)
	start := time.Now()
	b := scoreAsync(t, p, `{"echo": "b"}`, 300*time.Millisecond)
	rb := <-b
	if d := time.Since(start); !errors.Is(rb.err, backend.ErrTimeout) || d > 900*time.Millisecond {
		t.Fatalf("queued request: %v after %v, want ErrTimeout at its 300ms deadline", rb.err, d)
	}
	if ra := <-a; ra.err != nil || ra.out["echo"] != "a" {
		t.Fatalf("the running request: %v %v", ra.out, ra.err)
	}
	for i := 0; i < 3; i++ {
		out, err := score(t, p, fmt.Sprintf(`{"echo": %d}`, i), 10*time.Second)
		if err != nil || out["echo"] != float64(i) {
			t.Fatalf("request %d after the dropped answer: %v %v", i, out, err)
		}
	}
	if held, _ := workerQueue(t, p); held != 0 || p.Restarts() != 0 {
		t.Fatalf("worker holds %d, restarts %d; want 0 and 0", held, p.Restarts())
	}
}

func rawRequest(headers map[string]string) *backend.Request {
	h := http.Header{}
	for k, v := range headers {
		h.Set(k, v)
	}
	return &backend.Request{Method: "POST", Path: "/score", Body: []byte("x"), Header: h}
}

// rawPipelinePool starts one worker running testdata/rawhttp_pipeline.py that may hold depth
// requests, warmed up and with its run() average reset (see pipelinePool).
func rawPipelinePool(t *testing.T, depth int) *Pool {
	t.Helper()
	p, _ := startPoolConfig(t, Config{EntryScript: filepath.Join("testdata", "rawhttp_pipeline.py"), Workers: 1, Pipeline: depth})
	if _, err := p.Score(context.Background(), rawRequest(nil)); err != nil {
		t.Fatal(err)
	}
	p.service.Store(0)
	return p
}

type rawAnswer struct {
	r   *backend.Result
	err error
	d   time.Duration
}

func scoreRawAsync(p *Pool, req *backend.Request, timeout time.Duration) <-chan rawAnswer {
	c := make(chan rawAnswer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		r, err := p.Score(ctx, req)
		c <- rawAnswer{r, err, time.Since(start)}
	}()
	return c
}

// For @rawhttp scripts the frame carries the headers too: a request with 1 MiB of headers is not
// queued behind another (its write could block), so an answer larger than the socket buffer
// ahead of it is read without delay.
func TestPoolRawHTTPLargeFramesAreNotPipelined(t *testing.T) {
	t.Parallel()
	p := rawPipelinePool(t, 3)
	a := scoreRawAsync(p, rawRequest(map[string]string{"X-Sleep": "0.3"}), 20*time.Second)
	waitQueue(t, p, 5*time.Second, func(h, u int) bool { return h == 1 && u == 0 })
	b := scoreRawAsync(p, rawRequest(map[string]string{"X-Big": "4000000"}), 20*time.Second)
	waitQueue(t, p, 5*time.Second, func(h, u int) bool { return h == 2 })
	c := scoreRawAsync(p, rawRequest(map[string]string{"X-Pad": strings.Repeat("p", 1<<20)}), 10*time.Second)
	ra, rb, rc := <-a, <-b, <-c
	if ra.err != nil || rc.err != nil {
		t.Fatalf("a: %v; c: %v", ra.err, rc.err)
	}
	if rb.err != nil || len(rb.r.Body) != 4000000 || rb.d > 3*time.Second {
		t.Fatalf("b (a 4 MB answer): %v after %v", rb.err, rb.d)
	}
	if p.Restarts() != 0 {
		t.Fatalf("%d restarts", p.Restarts())
	}
}

// An AMLResponse with a header value that is not a string is sent as Flask would (the value as a
// string), and the request queued behind it runs exactly once.
func TestPoolAMLResponseHeaderValuesAndQueuedRequestRunsOnce(t *testing.T) {
	t.Parallel()
	p := rawPipelinePool(t, 2)
	a := scoreRawAsync(p, rawRequest(map[string]string{"X-Sleep": "0.3", "X-Int-Header": "1"}), 20*time.Second)
	waitQueue(t, p, 5*time.Second, func(h, u int) bool { return h == 1 && u == 0 })
	b := scoreRawAsync(p, rawRequest(map[string]string{"X-Log": "b", "X-Sleep": "0.2"}), 20*time.Second)
	ra, rb := <-a, <-b
	if ra.err != nil || ra.r.Header.Get("X-Count") != "5" {
		t.Fatalf("a: %v, headers %v; want X-Count: 5", ra.err, ra.r)
	}
	if rb.err != nil {
		t.Fatal(rb.err)
	}
	log, _ := os.ReadFile(filepath.Join(p.cfg.ModelDir, "log"))
	if n := strings.Count(string(log), "b "); n != 1 {
		t.Fatalf("request b ran %d times:\n%s", n, log)
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

func onlyWorker(t *testing.T, p *Pool) *worker {
	t.Helper()
	p.sched.mu.Lock()
	defer p.sched.mu.Unlock()
	if len(p.sched.all) != 1 {
		t.Fatalf("%d workers, want 1", len(p.sched.all))
	}
	return p.sched.all[0]
}
