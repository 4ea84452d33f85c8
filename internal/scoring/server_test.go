package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/onnx"
)

var (
	faultsScript = filepath.Join("python", "testdata", "faults.py")
	stdlibDir    = filepath.Join("..", "..", "examples", "stdlib")
	onnxDir      = filepath.Join("..", "..", "examples", "onnx", "model")
)

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but Debian python3 is missing: %v", err)
		}
		t.Skipf("needs Debian's /usr/bin/python3: %v", err)
	}
}

func requireONNX(t *testing.T) {
	t.Helper()
	lib := onnx.LibraryPath("")
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but ONNX Runtime is missing at %s: run scripts/setup-onnxruntime.sh and set ONNXRUNTIME_LIB", lib)
		}
		t.Skipf("needs ONNX Runtime at %s (scripts/setup-onnxruntime.sh): %v", lib, err)
	}
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

// eventually polls cond for a few seconds; worker output reaches the log through a pipe, after the reply.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

type replica struct {
	*Server
	url  string
	logs *syncBuffer
	stop func() error // cancels Start and returns its error
}

// startReplica runs a real replica on loopback and waits until it is ready.
func startReplica(t *testing.T, cfg Config) *replica {
	t.Helper()
	logs := &syncBuffer{}
	s, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("replica failed to start: %v\nlog:\n%s", err, logs)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("replica not ready after 60s\nlog:\n%s", logs)
	}
	var once sync.Once
	var stopErr error
	r := &replica{Server: s, url: "http://" + s.Addr(), logs: logs}
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = errors.New("Start did not return 30s after its context ended")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return r
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

func faultsReplica(t *testing.T, cfg Config) *replica {
	requirePython(t)
	cfg.EntryScript = faultsScript
	if cfg.ModelDir == "" {
		cfg.ModelDir = t.TempDir()
	}
	return startReplica(t, cfg)
}

func TestStdlibExampleOverHTTP(t *testing.T) {
	t.Parallel()
	requirePython(t)
	r := startReplica(t, Config{ModelDir: filepath.Join(stdlibDir, "model"), EntryScript: "score.py", SourceDir: stdlibDir})
	a := do(t, "POST", r.url+"/score", `{"data": [[1, 2, 3], [0, 0, 0]]}`)
	if a.code != 200 || a.body != `{"predictions": [4.75, 0.25]}` || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("/score = %d %q %v", a.code, a.body, a.header)
	}
	if a := do(t, "GET", r.url+"/", ""); a.code != 200 || a.body != "Healthy" {
		t.Fatalf("GET / = %d %q", a.code, a.body)
	}
	if a := do(t, "GET", r.url+"/score", ""); a.code != 405 {
		t.Fatalf("GET /score = %d, want 405 for a non-@rawhttp script", a.code)
	}
	for path, want := range map[string]string{
		"/v2/health/live":        `{"live":true}`,
		"/v2/health/ready":       `{"ready":true}`,
		"/v2/models/model/ready": `{"name":"model","ready":true}`,
		"/v2/models/model":       `{"inputs":[],"name":"model","outputs":[],"platform":"python","versions":["1"]}`,
	} {
		if a := do(t, "GET", r.url+path, ""); a.code != 200 || a.body != want {
			t.Errorf("GET %s = %d %s, want %s", path, a.code, a.body, want)
		}
	}
	if a := do(t, "GET", r.url+"/v2/models/other", ""); a.code != 404 {
		t.Errorf("unknown model: %d", a.code)
	}
	// OIP v2 through the entry script: the tensor becomes {"data": nested list}.
	a = do(t, "POST", r.url+"/v2/models/model/infer", `{"id": "r1", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 0, 0, 0]}]}`)
	if a.code != 200 || a.body != `{"model_name":"model","model_version":"1","id":"r1","outputs":[{"name":"predictions","shape":[2],"datatype":"FP64","data":[4.75,0.25]}]}` {
		t.Fatalf("infer = %d %s", a.code, a.body)
	}
	var sw map[string]any
	a = do(t, "GET", r.url+"/swagger.json", "")
	if err := json.Unmarshal([]byte(a.body), &sw); err != nil || sw["swagger"] != "2.0" {
		t.Fatalf("swagger %d %s: %v", a.code, a.body, err)
	}
	if _, ok := sw["paths"].(map[string]any)["/score"]; !ok {
		t.Fatalf("swagger lacks /score: %s", a.body)
	}
}

func TestRunRaisesIs502WithMessage(t *testing.T) {
	r := faultsReplica(t, Config{})
	a := do(t, "POST", r.url+"/score", `{"raise": "feature 7 is negative"}`)
	var e errorBody
	json.Unmarshal([]byte(a.body), &e)
	if a.code != 502 || e.Message != "ValueError: feature 7 is negative" || e.StatusCode != 502 {
		t.Fatalf("= %d %s", a.code, a.body)
	}
	if !eventually(func() bool {
		return strings.Contains(r.logs.String(), "Traceback") && strings.Contains(r.logs.String(), "feature 7 is negative")
	}) {
		t.Fatalf("traceback not logged:\n%s", r.logs)
	}
	if a := do(t, "POST", r.url+"/score", `{}`); a.code != 200 {
		t.Fatalf("next request = %d %s", a.code, a.body)
	}
}

func TestScoringTimeoutIs504AndWorkerReplaced(t *testing.T) {
	r := faultsReplica(t, Config{ScoringTimeout: time.Second})
	start := time.Now()
	a := do(t, "POST", r.url+"/score", `{"sleep": 30}`)
	if a.code != 504 || time.Since(start) > 5*time.Second {
		t.Fatalf("= %d %s after %s, want 504 promptly", a.code, a.body, time.Since(start))
	}
	// The next request waits for the replacement worker and succeeds; on a very busy machine the
	// replacement's start may itself outlast a scoring timeout, so allow 504s until it is up.
	for deadline := time.Now().Add(30 * time.Second); ; {
		a := do(t, "POST", r.url+"/score", `{}`)
		if a.code == 200 {
			break
		}
		if a.code != 504 || time.Now().After(deadline) {
			t.Fatalf("request after the timeout = %d %s", a.code, a.body)
		}
	}
	if m := do(t, "GET", r.url+"/metrics", "").body; !strings.Contains(m, "mlship_scoring_worker_restarts_total 1") || !strings.Contains(m, `mlship_scoring_requests_total{code="504"}`) {
		t.Fatalf("metrics:\n%s", m)
	}
}

func TestWorkerKilledMidRequest(t *testing.T) {
	r := faultsReplica(t, Config{Workers: 2, MaxConcurrentRequests: 2})
	var first struct{ PID int }
	json.Unmarshal([]byte(do(t, "POST", r.url+"/score", `{}`).body), &first)
	// Fill both workers with slow requests, then SIGKILL the one we know.
	results := make(chan answer, 2)
	for i := 0; i < 2; i++ {
		go func() { results <- do(t, "POST", r.url+"/score", `{"sleep": 2}`) }()
	}
	if !eventually(func() bool {
		return strings.Contains(do(t, "GET", r.url+"/metrics", "").body, "mlship_scoring_requests_in_flight 2")
	}) {
		t.Fatal("the two slow requests never ran together")
	}
	time.Sleep(200 * time.Millisecond) // from admitted to inside run()
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for i := 0; i < 2; i++ {
		a := <-results
		codes[a.code]++
		if a.code == 502 && !strings.Contains(a.body, "worker died") {
			t.Errorf("502 body %s", a.body)
		}
	}
	if codes[502] != 1 || codes[200] != 1 {
		t.Fatalf("codes %v, want one 502 (killed) and one 200", codes)
	}
	for i := 0; i < 6; i++ {
		if a := do(t, "POST", r.url+"/score", `{}`); a.code != 200 {
			t.Fatalf("request %d after the kill = %d %s", i, a.code, a.body)
		}
	}
}

func TestQueueOverflowIs503(t *testing.T) {
	r := faultsReplica(t, Config{MaxConcurrentRequests: 1, MaxQueueWait: 100 * time.Millisecond})
	slow := make(chan answer)
	go func() { slow <- do(t, "POST", r.url+"/score", `{"sleep": 2}`) }()
	if !eventually(func() bool {
		return strings.Contains(do(t, "GET", r.url+"/metrics", "").body, "mlship_scoring_requests_in_flight 1")
	}) {
		t.Fatal("the slow request was never admitted")
	}
	start := time.Now()
	a := do(t, "POST", r.url+"/score", `{}`)
	if a.code != 503 || a.header.Get("Retry-After") == "" || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("= %d %s (Retry-After %q) after %s", a.code, a.body, a.header.Get("Retry-After"), time.Since(start))
	}
	if a := <-slow; a.code != 200 {
		t.Fatalf("the admitted request = %d %s", a.code, a.body)
	}
}

func TestBodyOverLimitIs413(t *testing.T) {
	r := faultsReplica(t, Config{MaxBodyBytes: 1000})
	if a := do(t, "POST", r.url+"/score", `{"echo": "`+strings.Repeat("x", 2000)+`"}`); a.code != 413 || a.body != `{"status_code":413,"message":"request body is over the 1000-byte limit"}` {
		t.Fatalf("= %d %s", a.code, a.body)
	}
	// The OIP route has the same limit.
	if a := do(t, "POST", r.url+"/v2/models/model/infer", strings.Repeat(" ", 2000)); a.code != 413 {
		t.Fatalf("infer = %d %s", a.code, a.body)
	}
	// A body at the limit is read and scored.
	if a := do(t, "POST", r.url+"/score", `{"echo": "`+strings.Repeat("x", 980)+`"}`); a.code != 200 {
		t.Fatalf("at the limit = %d %s", a.code, a.body[:min(len(a.body), 200)])
	}
	// Without Content-Length (chunked) the limit holds too.
	req, _ := http.NewRequest("POST", r.url+"/score", io.MultiReader(strings.NewReader(strings.Repeat(" ", 1500)), strings.NewReader("{}")))
	req.ContentLength = -1
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Fatalf("chunked = %d", res.StatusCode)
	}
}

// POST /score has its own fast path (fast.go); what run() answers must reach the client as the
// other routes would send it: status, headers and content type of an AMLResponse, and the replica's
// JSON errors for requests it cannot read.
func TestScoreFastPathAnswers(t *testing.T) {
	r := faultsReplica(t, Config{})
	a := do(t, "POST", r.url+"/score", `{"aml": "test"}`)
	if a.code != 418 || a.body != `{"because": "test"}` || a.header.Get("X-Why") != "asked" || a.header.Get("X-Count") != "5" ||
		a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("AMLResponse = %d %q %v", a.code, a.body, a.header)
	}
	a = do(t, "POST", r.url+"/score", `{"str": "plain"}`)
	if a.code != 200 || a.body != `"plain"` || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("str = %d %q %v", a.code, a.body, a.header)
	}
	raw := func(req string) string {
		c, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c) // the replica closes the connection after an unreadable request
		return string(b)
	}
	// The message names the problem but does not echo the request (its headers may hold secrets).
	if got := raw("POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekrit-token\r\nContent-Length: nope\r\n\r\n{}"); !strings.HasPrefix(got, "HTTP/1.1 400") ||
		!strings.Contains(got, `"message":"malformed HTTP request: `) || strings.Contains(got, "sekrit") {
		t.Fatalf("malformed request answered %q", got)
	}
	if got := raw("POST /score HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\nContent-Length: 2\r\n\r\n{}"); !strings.HasPrefix(got, "HTTP/1.1 431") ||
		!strings.Contains(got, "over 16 KiB") {
		t.Fatalf("oversized headers answered %q", got[:min(len(got), 300)])
	}
	// The connection keeps working for well-formed requests after all that.
	if a := do(t, "POST", r.url+"/score", `{"echo": 1}`); a.code != 200 {
		t.Fatalf("after bad requests = %d %s", a.code, a.body)
	}
}

// A request that does not arrive whole within RequestReadTimeout is answered 408.
func TestSlowRequestIs408(t *testing.T) {
	r := faultsReplica(t, Config{RequestReadTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	io.WriteString(c, "POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"ec") // and no more
	b, _ := io.ReadAll(c)
	if got := string(b); !strings.HasPrefix(got, "HTTP/1.1 408") || !strings.Contains(got, "not received within 300ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("after %s: %q", time.Since(start), got)
	}
	// A request sent at a normal pace is served.
	if a := do(t, "POST", r.url+"/score", `{"echo": 1}`); a.code != 200 {
		t.Fatalf("after bad requests = %d %s", a.code, a.body)
	}
}

func TestInitRaisesNeverReady(t *testing.T) {
	t.Parallel()
	requirePython(t)
	logs := &syncBuffer{}
	s, err := New(Config{ModelDir: t.TempDir(), EntryScript: faultsScript, Workers: 2, PythonEnv: []string{"FAULTS_INIT_RAISE=model.pkl is corrupt"}}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Start(context.Background())
	if !errors.Is(err, backend.ErrInit) || !strings.Contains(err.Error(), "RuntimeError: cannot load model: model.pkl is corrupt") {
		t.Fatalf("Start = %v, want an init error with the exception", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
	select {
	case <-s.Ready():
		t.Fatal("replica became ready")
	default:
	}
	if !strings.Contains(logs.String(), "model initialization failed") || !strings.Contains(logs.String(), "Traceback") {
		t.Fatalf("log:\n%s", logs)
	}
}

func TestNotReadyDuringInit(t *testing.T) {
	t.Parallel()
	requirePython(t)
	s, err := New(Config{ModelDir: t.TempDir(), EntryScript: faultsScript, PythonEnv: []string{"FAULTS_INIT_SLEEP=2"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	<-s.Listening()
	url := "http://" + s.Addr()
	if a := do(t, "GET", url+"/", ""); a.code != 200 {
		t.Errorf("liveness during init = %d", a.code)
	}
	if a := do(t, "GET", url+"/v2/health/ready", ""); a.code != 503 {
		t.Errorf("readiness during init = %d", a.code)
	}
	if a := do(t, "POST", url+"/score", "{}"); a.code != 503 || a.header.Get("Retry-After") == "" {
		t.Errorf("score during init = %d", a.code)
	}
	// Whether GET /score is the script's (@rawhttp) is not known before the model loads.
	if a := do(t, "GET", url+"/score", ""); a.code != 503 {
		t.Errorf("GET /score during init = %d, want 503", a.code)
	}
	<-s.Ready()
	if a := do(t, "POST", url+"/score", "{}"); a.code != 200 {
		t.Errorf("score when ready = %d", a.code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSchemaOverHTTP(t *testing.T) {
	t.Parallel()
	requireModule(t, "numpy, pandas", "python3-numpy python3-pandas")
	r := startReplica(t, Config{ModelDir: t.TempDir(), EntryScript: "schema.py", SourceDir: filepath.Join("python", "testdata")})
	if a := do(t, "POST", r.url+"/score", `{"data": [[1, 2, 3]]}`); a.code != 200 || a.body != `{"sums": [6.0], "frame_rows": 0}` {
		t.Fatalf("= %d %s", a.code, a.body)
	}
	for _, body := range []string{`{"data": [[1, 2]]}`, `{not json`} {
		if a := do(t, "POST", r.url+"/score", body); a.code != 400 {
			t.Fatalf("%s = %d %s", body, a.code, a.body)
		}
	}
	var sw struct {
		Definitions map[string]struct {
			Properties map[string]struct {
				Type    string `json:"type"`
				Format  string `json:"format"`
				Example any    `json:"example"`
			} `json:"properties"`
		} `json:"definitions"`
	}
	a := do(t, "GET", r.url+"/swagger.json", "")
	if err := json.Unmarshal([]byte(a.body), &sw); err != nil {
		t.Fatal(err)
	}
	data := sw.Definitions["ServiceInput"].Properties["data"]
	if data.Type != "array" || data.Format != "numpy.ndarray" || fmt.Sprint(data.Example) != "[[1 2 3]]" {
		t.Fatalf("ServiceInput.data = %+v\n%s", data, a.body)
	}
	if _, ok := sw.Definitions["ServiceOutput"].Properties["sums"]; !ok {
		t.Fatalf("ServiceOutput from @output_schema missing:\n%s", a.body)
	}
}

func TestRawHTTPOverHTTP(t *testing.T) {
	t.Parallel()
	requirePython(t)
	r := startReplica(t, Config{ModelDir: t.TempDir(), EntryScript: "rawresp.py", SourceDir: filepath.Join("python", "testdata")})
	if a := do(t, "POST", r.url+"/score", "abc"); a.code != 201 || a.body != "ABC" {
		t.Fatalf("POST = %d %s", a.code, a.body)
	}
	if a := do(t, "GET", r.url+"/score?q=hi", ""); a.code != 200 || a.body != "got hi" {
		t.Fatalf("GET = %d %s", a.code, a.body)
	}
}

func TestONNXOverHTTP(t *testing.T) {
	t.Parallel()
	requireONNX(t)
	r := startReplica(t, Config{ModelDir: onnxDir, MaxConcurrentRequests: 4})
	a := do(t, "POST", r.url+"/score", `{"data": [[5.1, 3.5, 1.4, 0.2]]}`)
	if a.code != 200 || !strings.HasPrefix(a.body, `{"probabilities":[[`) {
		t.Fatalf("/score = %d %s", a.code, a.body)
	}
	if d := runDur(t, a); d <= 0 || d > time.Second {
		t.Fatalf("the ONNX session took %v by Server-Timing", d)
	}
	a = do(t, "POST", r.url+"/score", `{"data": [[5.1, 3.5, 1.4]]}`)
	if a.code != 400 || !strings.Contains(a.body, "expected shape [-1, 4], got [1, 3]") {
		t.Fatalf("wrong shape = %d %s", a.code, a.body)
	}
	if a := do(t, "POST", r.url+"/score", `{"data": [[5.1, 3.5`); a.code != 400 {
		t.Fatalf("malformed JSON = %d %s", a.code, a.body)
	}
	a = do(t, "GET", r.url+"/v2/models/model", "")
	if a.code != 200 || a.body != `{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,4]}],"name":"model","outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,3]}],"platform":"onnxruntime_onnx","versions":["1"]}` {
		t.Fatalf("metadata = %d %s", a.code, a.body)
	}
	a = do(t, "POST", r.url+"/v2/models/model/infer", `{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}`)
	if a.code != 200 || !strings.Contains(a.body, `"name":"probabilities","shape":[1,3],"datatype":"FP32"`) {
		t.Fatalf("infer = %d %s", a.code, a.body)
	}
	a = do(t, "POST", r.url+"/v2/models/model/infer", `{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [5.1, 3.5, 1.4]}]}`)
	if a.code != 400 || !strings.Contains(a.body, "expected shape [-1, 4], got [1, 3]") {
		t.Fatalf("infer wrong shape = %d %s", a.code, a.body)
	}
	a = do(t, "GET", r.url+"/swagger.json", "")
	if !strings.Contains(a.body, `"ServiceInput"`) || !strings.Contains(a.body, "shape [-1, 4]") {
		t.Fatalf("swagger %s", a.body)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	r := faultsReplica(t, Config{})
	for i := 0; i < 3; i++ {
		do(t, "POST", r.url+"/score", `{}`)
	}
	do(t, "POST", r.url+"/score", `{"raise": "x"}`)
	m := do(t, "GET", r.url+"/metrics", "").body
	for _, want := range []string{
		`mlship_scoring_requests_total{code="200"} 3`,
		`mlship_scoring_requests_total{code="502"} 1`,
		`mlship_scoring_request_duration_seconds_count 4`,
		`mlship_scoring_request_duration_seconds_bucket{le="+Inf"} 4`,
		"mlship_scoring_requests_in_flight 0",
		"mlship_scoring_queue_depth 0",
		"mlship_scoring_worker_restarts_total 0",
		"mlship_scoring_ready 1",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
}

// runDur reads the run time an answer reports in its Server-Timing header.
func runDur(t *testing.T, a answer) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`^run;dur=([0-9]+\.[0-9]{3})$`).FindStringSubmatch(a.header.Get("Server-Timing"))
	if m == nil {
		t.Fatalf("Server-Timing = %q, want run;dur=<milliseconds> (answer %d %s)", a.header.Values("Server-Timing"), a.code, a.body)
	}
	d, err := time.ParseDuration(m[1] + "ms")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A /score answer says how long run() took, on the fast path and through net/http (@rawhttp), and
// /metrics keeps a histogram of it; answers the model did not give carry no timing.
func TestServerTimingReportsRunTime(t *testing.T) {
	t.Parallel()
	r := faultsReplica(t, Config{ScoringTimeout: 2 * time.Second})
	start := time.Now()
	a := do(t, "POST", r.url+"/score", `{"sleep": 0.2}`)
	took := time.Since(start)
	if d := runDur(t, a); a.code != 200 || d < 200*time.Millisecond || d > took {
		t.Fatalf("sleeping 200 ms: %d, run took %v by Server-Timing, %v at the client", a.code, d, took)
	}
	if d := runDur(t, do(t, "POST", r.url+"/score", `{}`)); d <= 0 || d >= 25*time.Millisecond {
		t.Fatalf("an empty run() took %v by Server-Timing", d)
	}
	// An AMLResponse's own Server-Timing is kept; mlship's comes after it.
	a = do(t, "POST", r.url+"/score", `{"aml": "x", "headers": {"Server-Timing": "db;dur=1.5"}}`)
	if v := a.header.Values("Server-Timing"); a.code != 418 || len(v) != 2 || v[0] != "db;dur=1.5" || !strings.HasPrefix(v[1], "run;dur=") {
		t.Fatalf("AMLResponse with its own Server-Timing: %d, Server-Timing %q", a.code, v)
	}
	for _, body := range []string{`{"raise": "x"}`, `{"sleep": 5}`, `{"data"`} {
		if a := do(t, "POST", r.url+"/score", body); a.code == 200 || a.header.Get("Server-Timing") != "" {
			t.Fatalf("%s = %d with Server-Timing %q", body, a.code, a.header.Get("Server-Timing"))
		}
	}
	m := do(t, "GET", r.url+"/metrics", "").body
	for _, want := range []string{
		`mlship_scoring_run_duration_seconds_bucket{le="0.025"} 2`,
		`mlship_scoring_run_duration_seconds_bucket{le="0.1"} 2`,
		`mlship_scoring_run_duration_seconds_bucket{le="0.25"} 3`,
		`mlship_scoring_run_duration_seconds_count 3`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}

	raw := startReplica(t, Config{ModelDir: t.TempDir(), EntryScript: "rawresp.py", SourceDir: filepath.Join("python", "testdata")})
	if a := do(t, "POST", raw.url+"/score", "abc"); a.code != 201 || runDur(t, a) <= 0 {
		t.Fatalf("@rawhttp POST = %d %s", a.code, a.body)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want error
	}{
		{Config{}, ErrInvalidConfig},
		{Config{ModelDir: t.TempDir(), ScoringTimeout: 301 * time.Second}, ErrInvalidConfig},
		{Config{ModelDir: t.TempDir(), MaxConcurrentRequests: -1}, ErrInvalidConfig},
		{Config{ModelDir: t.TempDir()}, ErrNoModel},
	} {
		if _, err := New(tc.cfg, nil); !errors.Is(err, tc.want) {
			t.Errorf("New(%+v) = %v, want %v", tc.cfg, err, tc.want)
		}
	}
	two := t.TempDir()
	os.WriteFile(filepath.Join(two, "a.onnx"), nil, 0o644)
	os.WriteFile(filepath.Join(two, "b.onnx"), nil, 0o644)
	if _, err := New(Config{ModelDir: two}, nil); !errors.Is(err, ErrNoModel) {
		t.Errorf("two .onnx files: %v", err)
	}
}

// TestSoak: 100 clients for 10 s against a replica with faults mixed in (run() raising, a worker
// killed mid-request every second, with requests pipelined behind it); every request is answered,
// and shutdown leaves no goroutine or process behind.
func TestSoak(t *testing.T) {
	requirePython(t)
	if testing.Short() {
		t.Skip("10-second soak; runs without -short")
	}
	baseline := runtime.NumGoroutine()
	r := faultsReplica(t, Config{Workers: 2, MaxConcurrentRequests: 4, MaxQueueWait: 200 * time.Millisecond, ScoringTimeout: 2 * time.Second})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}, Timeout: 30 * time.Second}
	var (
		mu     sync.Mutex
		codes  = map[int]int{}
		lost   []error
		pids   = map[int]bool{}
		sent   int
		wg     sync.WaitGroup
		stopAt = time.Now().Add(10 * time.Second)
		bodies = []string{`{}`, `{}`, `{}`, `{"raise": "boom"}`, `{"print": "p"}`}
	)
	for c := 0; c < 100; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lastKill := time.Now()
			for i := c; time.Now().Before(stopAt); i++ {
				body := bodies[i%len(bodies)]
				if c == 0 && time.Since(lastKill) > time.Second {
					body, lastKill = `{"kill": true}`, time.Now()
				}
				res, err := client.Post(r.url+"/score", "application/json", strings.NewReader(body))
				mu.Lock()
				sent++
				mu.Unlock()
				if err != nil {
					mu.Lock()
					lost = append(lost, err)
					mu.Unlock()
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				var out struct{ PID int }
				json.Unmarshal(b, &out)
				mu.Lock()
				codes[res.StatusCode]++
				if out.PID != 0 {
					pids[out.PID] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range codes {
		total += n
	}
	t.Logf("%d requests: %v", sent, codes)
	if len(lost) > 0 || total != sent {
		t.Fatalf("%d of %d requests got no response (first: %v)", sent-total, sent, lost)
	}
	for code := range codes {
		if code != 200 && code != 502 && code != 503 {
			t.Errorf("unexpected status %d (%d times)", code, codes[code])
		}
	}
	if codes[200] == 0 || codes[502] == 0 {
		t.Fatalf("codes %v: want successes and the raised requests' 502s", codes)
	}
	if m := do(t, "GET", r.url+"/metrics", ""); !regexp.MustCompile(`(?m)^mlship_scoring_worker_restarts_total ([5-9]|\d\d)$`).MatchString(m.body) {
		t.Errorf("want a worker restart per killed worker (about 9); metrics:\n%s", m.body)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
	for pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker %d alive after shutdown", pid)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d after shutdown, %d before\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStopDuringInitIsClean(t *testing.T) {
	t.Parallel()
	requirePython(t)
	s, err := New(Config{ModelDir: t.TempDir(), EntryScript: faultsScript, PythonEnv: []string{"FAULTS_INIT_SLEEP=30"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	<-s.Listening()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start = %v, want nil when stopped while loading", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after its context ended during init")
	}
}

// Requests admitted but waiting for a free Python worker count in the queue depth, not in flight.
func TestMetricsQueueDepthIncludesRequestsWaitingForAWorker(t *testing.T) {
	t.Parallel()
	r := faultsReplica(t, Config{Workers: 1, MaxConcurrentRequests: 8})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); do(t, "POST", r.url+"/score", `{"sleep": 0.4}`) }()
	}
	defer wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := do(t, "GET", r.url+"/metrics", "").body
		if strings.Contains(m, "mlship_scoring_queue_depth 3\n") && strings.Contains(m, "mlship_scoring_requests_in_flight 1\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("with 1 worker running 1 of 4 admitted requests, want queue depth 3 and 1 in flight:\n%s", m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failingBackend fails Start at once, before the HTTP server's goroutine may even have run.
type failingBackend struct{}

func (failingBackend) Start(context.Context) error {
	return fmt.Errorf("%w: broken at once", backend.ErrInit)
}
func (failingBackend) Score(context.Context, *backend.Request) (*backend.Result, error) {
	return nil, backend.ErrNotReady
}
func (failingBackend) Metadata() backend.Metadata { return backend.Metadata{} }
func (failingBackend) Close() error               { return nil }

// A model that fails to load at once leaves nothing listening: the port is free again when Start
// returns, every time.
func TestFailedStartReleasesThePort(t *testing.T) {
	for i := range 20 {
		s, err := NewWithBackend(Config{Addr: "127.0.0.1:0"}, failingBackend{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); !errors.Is(err, backend.ErrInit) {
			t.Fatalf("Start = %v", err)
		}
		time.Sleep(20 * time.Millisecond) // time for a late Serve to accept, had it been left running
		if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
			c.Close()
			t.Fatalf("round %d: %s still accepts connections after a failed Start", i, s.Addr())
		}
	}
}
