// Command scoring benchmarks mlship's scoring runtime against gunicorn + Flask (Azure ML's server design)
// on the examples and writes bench/results/scoring.md. Run from the repository root:
//
//	go run ./bench/scoring [-n 10000] [-conc 1,8,32] [-workers 2] [-only stdlib,sklearn,onnx]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/cli/score"
	"github.com/mlship/mlship/internal/scoring/rawconn"
)

type options struct {
	n, warmup, workers int
	rounds             int
	loadBefore         string
	conc               []int
	only               map[string]bool
	out, python        string
	gunicorn           string
}

func main() {
	// The benchmark starts replicas by re-running itself, so it measures the real command in its own process.
	if len(os.Args) > 1 && os.Args[1] == "replica" {
		os.Exit(replica(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		os.Exit(bare())
	}
	if len(os.Args) > 1 && os.Args[1] == "load" {
		os.Exit(loadOnly(os.Args[2:]))
	}
	var o options
	var conc, only string
	flag.IntVar(&o.n, "n", 10000, "measured requests per run")
	flag.IntVar(&o.warmup, "warmup", 1000, "unmeasured requests before each run")
	flag.IntVar(&o.workers, "workers", 2, "Python workers for both servers")
	flag.IntVar(&o.rounds, "rounds", 3, "measured rounds per server and concurrency (the median is reported)")
	flag.StringVar(&conc, "conc", "1,8,32", "client concurrencies")
	flag.StringVar(&only, "only", "stdlib,sklearn,onnx", "scenarios to run")
	flag.StringVar(&o.out, "out", "bench/results/scoring.md", "results file")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "Python interpreter")
	flag.StringVar(&o.gunicorn, "gunicorn", "/usr/bin/gunicorn", "gunicorn executable")
	flag.Parse()
	for _, c := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(c)
		if err != nil {
			fatal(fmt.Errorf("-conc: %w", err))
		}
		o.conc = append(o.conc, n)
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		o.only[s] = true
	}
	o.loadBefore = loadAvg()
	if err := run(o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func replica(args []string) int {
	f := cmdutil.New(cmdutil.System())
	cmd := score.NewCmdScore(f)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	ctx, stop := signalContext()
	defer stop()
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}

// loadOnly drives a server already running with this benchmark's load generator, for A/B runs of
// two builds (wrk, with its own threads, does not reproduce every difference the benchmark shows):
//
//	go run ./bench/scoring load -addr 127.0.0.1:5001 -c 1 -n 20000 -body '{"data": [[5.1, 3.5, 1.4, 0.2]]}'
func loadOnly(args []string) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5001", "server address (loopback)")
	path := fs.String("path", "/score", "request path")
	body := fs.String("body", `{"data": [[5.1, 3.5, 1.4, 0.2]]}`, "POST body")
	c := fs.Int("c", 1, "concurrent clients")
	n := fs.Int("n", 20000, "measured requests (after 2000 unmeasured)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	load(*addr, *path, []byte(*body), *c, 2000)
	r := load(*addr, *path, []byte(*body), *c, *n)
	fmt.Printf("c=%d %s\n", *c, summary(r))
	return 0
}

// bare is the floor for any HTTP server on this machine: the replica's own HTTP stack (fasthttp on
// raw socket calls, one P, as mlship's replica runs for entry scripts) reading the body and
// answering a constant, no model at all.
func bare() int {
	runtime.GOMAXPROCS(1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, score.ReadyPrefix+l.Addr().String())
	srv := &fasthttp.Server{NoDefaultServerHeader: true, Handler: func(fc *fasthttp.RequestCtx) {
		_ = fc.PostBody()
		fc.SetContentType("application/json")
		fc.SetBodyString("[0]")
	}}
	srv.Serve(rawconn.Listener{Listener: l})
	return 0
}

type scenario struct {
	name, modelDir, sourceDir, script, body string
	baseline                                bool
	maxConcurrent                           int
}

type row struct {
	conc         int
	base, mlship loadResult
	hasBase      bool
}

type report struct {
	scenario scenario
	rows     []row
	inproc   *inprocResult
	bare     *loadResult // a bare HTTP server at 1 client, measured in the same rounds
	rssKB    int64
	workerKB int64
}

type inprocResult struct {
	P50us float64 `json:"p50_us"`
	RPS   float64 `json:"rps"`
}

func run(o options) error {
	root, _ := os.Getwd()
	tmp, err := os.MkdirTemp("", "mlship-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ex := filepath.Join(root, "examples")
	var scenarios []scenario
	if o.only["stdlib"] {
		scenarios = append(scenarios, scenario{name: "stdlib", modelDir: filepath.Join(ex, "stdlib", "model"), sourceDir: filepath.Join(ex, "stdlib"), script: "score.py",
			body: `{"data": [[1.0, 2.0, 3.0]]}`, baseline: true, maxConcurrent: 16 * o.workers})
	}
	if o.only["sklearn"] {
		modelDir := filepath.Join(tmp, "sklearn-model")
		if out, err := exec.Command(o.python, filepath.Join(ex, "sklearn", "train.py"), modelDir).CombinedOutput(); err != nil {
			return fmt.Errorf("train the sklearn example: %w\n%s", err, out)
		}
		scenarios = append(scenarios, scenario{name: "sklearn", modelDir: modelDir, sourceDir: filepath.Join(ex, "sklearn"), script: "score.py",
			body: `{"data": [[5.1, 3.5, 1.4, 0.2]]}`, baseline: true, maxConcurrent: 16 * o.workers})
	}
	if o.only["onnx"] {
		scenarios = append(scenarios, scenario{name: "onnx", modelDir: filepath.Join(ex, "onnx", "model"),
			body: `{"data": [[5.1, 3.5, 1.4, 0.2]]}`, maxConcurrent: 8})
	}
	var reports []report
	for _, sc := range scenarios {
		rep, err := runScenario(o, sc)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		reports = append(reports, rep)
	}
	return writeReport(o, reports)
}

func runScenario(o options, sc scenario) (report, error) {
	rep := report{scenario: sc}
	if sc.script != "" {
		out, err := exec.Command(o.python, filepath.Join(root(), "bench", "scoring", "inprocess.py"), filepath.Join(sc.sourceDir, sc.script), sc.modelDir, sc.body, "20000").Output()
		if err != nil {
			return rep, fmt.Errorf("in-process run(): %w", err)
		}
		rep.inproc = &inprocResult{}
		json.Unmarshal(out, rep.inproc)
		fmt.Fprintf(os.Stderr, "%s in-process run(): p50 %.1f µs, %.0f calls/s on one core\n", sc.name, rep.inproc.P50us, rep.inproc.RPS)
	}
	// Both servers stay up and the rounds alternate between them, so drift in the machine's
	// background load hits both sides alike; each side reports its median round by throughput.
	var g *exec.Cmd
	var baseAddr string
	if sc.baseline {
		var err error
		if g, baseAddr, err = startGunicorn(o, sc); err != nil {
			return rep, err
		}
		defer stop(g)
	}
	r, addr, err := startReplica(o, sc)
	if err != nil {
		return rep, err
	}
	var bareAddr string
	if sc.baseline {
		var b *exec.Cmd
		if b, bareAddr, err = startSelf("bare"); err != nil {
			return rep, err
		}
		defer stop(b)
	}
	rows := make([]row, len(o.conc))
	for i, c := range o.conc {
		rows[i].conc, rows[i].hasBase = c, sc.baseline
		var bases, mls, bares []loadResult
		if sc.baseline {
			load(baseAddr, "/score", []byte(sc.body), c, o.warmup)
		}
		load(addr, "/score", []byte(sc.body), c, o.warmup)
		for round := 0; round < o.rounds; round++ {
			if sc.baseline {
				b := load(baseAddr, "/score", []byte(sc.body), c, o.n)
				printRun(sc.name, "gunicorn+flask", c, b)
				bases = append(bases, b)
			}
			m := load(addr, "/score", []byte(sc.body), c, o.n)
			printRun(sc.name, "mlship", c, m)
			mls = append(mls, m)
			if bareAddr != "" && c == 1 {
				b := load(bareAddr, "/score", []byte(sc.body), c, o.n)
				printRun(sc.name, "bare fasthttp", c, b)
				bares = append(bares, b)
			}
		}
		if len(bares) > 0 {
			b := median(bares)
			rep.bare = &b
		}
		rows[i].mlship = median(mls)
		if sc.baseline {
			rows[i].base = median(bases)
		}
	}
	rep.rssKB = rssKB(r.Process.Pid)
	rep.workerKB = childrenRSSKB(r.Process.Pid)
	stop(r)
	rep.rows = rows
	return rep, nil
}

func median(rs []loadResult) loadResult {
	sort.Slice(rs, func(i, j int) bool { return rs[i].RPS() < rs[j].RPS() })
	return rs[len(rs)/2]
}

func printRun(name, server string, c int, r loadResult) {
	fmt.Fprintf(os.Stderr, "%-8s %-15s c=%-3d %s\n", name, server, c, summary(r))
}

// summary is one run's line: throughput, latency, answers and, if the answers carried
// Server-Timing, what run() took and what serving added around it.
func summary(r loadResult) string {
	line := fmt.Sprintf("%8.0f req/s  p50 %7.0f µs  p99 %7.0f µs  codes %v errors %d", r.RPS(), us(r.Percentile(0.5)), us(r.Percentile(0.99)), r.Codes, r.Errors)
	if len(r.run) > 0 {
		line += fmt.Sprintf("  run() p50 %.0f p99 %.0f µs, latency − run() p50 %.0f p99 %.0f µs",
			us(percentile(r.run, .5)), us(percentile(r.run, .99)), us(percentile(r.aroundRun, .5)), us(percentile(r.aroundRun, .99)))
	}
	return line
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func root() string { d, _ := os.Getwd(); return d }

func startReplica(o options, sc scenario) (*exec.Cmd, string, error) {
	args := []string{"replica", "--model-dir", sc.modelDir, "--port", "0", "--workers", strconv.Itoa(o.workers),
		"--max-concurrent-requests", strconv.Itoa(sc.maxConcurrent), "--max-queue-wait-ms", "60000", "--log-level", "warn"}
	if sc.script != "" {
		args = append(args, "--entry-script", sc.script, "--source-dir", sc.sourceDir)
	}
	return startSelf(args...)
}

// startSelf runs this benchmark binary with args and waits for its ready line.
func startSelf(args ...string) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	addr := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			line := s.Text()
			if strings.HasPrefix(line, score.ReadyPrefix) {
				addr <- strings.TrimPrefix(line, score.ReadyPrefix)
			} else {
				fmt.Fprintln(os.Stderr, "  replica:", line)
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, a, nil
	case <-time.After(2 * time.Minute):
		stop(cmd)
		return nil, "", fmt.Errorf("%s not ready after 2 minutes", args[0])
	}
}

func startGunicorn(o options, sc scenario) (*exec.Cmd, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(o.gunicorn, "--workers", strconv.Itoa(o.workers), "--bind", addr, "--log-level", "warning",
		"--chdir", filepath.Join(root(), "bench", "scoring"), "baseline_app:app")
	cmd.Env = append(os.Environ(), "ENTRY_SCRIPT="+filepath.Join(sc.sourceDir, sc.script), "AZUREML_MODEL_DIR="+sc.modelDir,
		"OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start gunicorn: %w", err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + addr + "/")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				time.Sleep(time.Second) // let every worker finish init()
				return cmd, addr, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop(cmd)
	return nil, "", errors.New("gunicorn not ready after a minute")
}

func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	return 0
}

// childrenRSSKB sums the RSS of pid's child processes (the Python workers).
func childrenRSSKB(pid int) int64 {
	var sum int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesized command name: state, ppid, ...
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			c, _ := strconv.Atoi(e.Name())
			sum += rssKB(c)
		}
	}
	return sum
}

func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
