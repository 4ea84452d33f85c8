package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mlship/mlship/api"
)

type binaries struct {
	server string // cmd/mlship as built for this machine
	static string // cmd/mlship linked statically, put into every image
}

func buildBinaries(work string) (binaries, error) {
	b := binaries{server: filepath.Join(work, "mlship"), static: filepath.Join(work, "mlship-static")}
	if out, err := exec.Command("go", "build", "-o", b.server, "./cmd/mlship").CombinedOutput(); err != nil {
		return b, fmt.Errorf("build mlship: %v\n%s", err, out)
	}
	// As 'make static': onnxruntime_go needs cgo, so link statically rather than CGO_ENABLED=0.
	static := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static",
		"-o", b.static, "./cmd/mlship")
	static.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := static.CombinedOutput(); err != nil {
		return b, fmt.Errorf("build a static mlship: %v\n%s", err, out)
	}
	return b, nil
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// server is an 'mlship server' process, with its own data folder and CLI config.
type server struct {
	cmd  *exec.Cmd
	log  string // its stderr, JSON lines
	api  *api.Client
	done chan struct{}
}

func startServer(work, name string, bins binaries) (*server, error) {
	home := filepath.Join(work, name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	cfg := filepath.Join(home, "config.json")
	logPath := filepath.Join(home, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	addr, scoring := freeAddr(), freeAddr()
	cmd := exec.Command(bins.server, "server", "--data-dir", filepath.Join(home, "data"), "--addr", addr,
		"--scoring-addr", scoring, "--image-binary", bins.static, "--log-format", "json")
	// The admin token goes to this config only, never to the user's.
	cmd.Env = append(os.Environ(), "MLSHIP_CONFIG="+cfg, "MLSHIP_SERVER=", "MLSHIP_TOKEN=")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	s := &server{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); logFile.Close(); close(s.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var c struct{ Server, Token string }
		if b, rerr := os.ReadFile(cfg); rerr == nil && json.Unmarshal(b, &c) == nil && c.Token != "" {
			s.api = api.NewClient(c.Server, c.Token, nil)
			return s, nil
		}
		select {
		case <-s.done:
			err = fmt.Errorf("mlship server exited at start:\n%s", tail(logPath, 30))
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				err = fmt.Errorf("mlship server wrote no CLI config within 20 s:\n%s", tail(logPath, 30))
			}
		}
		if err != nil {
			s.stop()
			return nil, err
		}
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop interrupts the server and kills it if it has not stopped within 20 s.
func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// attach attaches the testbed's namespace ns as compute target name, replicas pinned by selector.
func (s *server) attach(ctx context.Context, tb *testbed, name, ns string, selector map[string]string) error {
	_, err := s.api.AttachCompute(ctx, "default", api.AttachRequest{
		Name: name, Kubeconfig: string(tb.kubeconfig), Namespace: ns, ClusterPurpose: "DevTest",
		Registry: tb.env["REGISTRY"], InsecureRegistry: true, PythonImage: tb.env["PYTHON_IMAGE"],
		ONNXImage: tb.env["ONNX_IMAGE"], NodeSelector: selector,
	})
	if err != nil {
		return fmt.Errorf("attach %s (namespace %s): %w", name, ns, err)
	}
	return nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // loopback without a free port: nothing here can run
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logLine is one of the server's JSON log lines, the fields the bench reads.
type logLine struct {
	Time  time.Time `json:"time"`
	Msg   string    `json:"msg"`
	Key   string    `json:"key"`     // the target's compute key, WORKSPACE/SERVICE
	Svc   string    `json:"service"` // the deployer's
	Took  int64     `json:"took"`    // ns (slog's JSON for a time.Duration)
	Reuse *bool     `json:"reused"`
}

// service is the service a line is about.
func (l logLine) service() string {
	if l.Svc != "" {
		return l.Svc
	}
	return l.Key[strings.LastIndexByte(l.Key, '/')+1:]
}

// serverLog reads the log lines with message msg.
func serverLog(path, msg string) ([]logLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == msg {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// memory samples a process's resident set from /proc/PID/status.
type memory struct {
	mu        sync.Mutex
	maxRSS    int64 // KiB, the largest VmRSS seen
	hwm       int64 // KiB, VmHWM at the last sample (the kernel's own peak)
	lastRSS   int64
	samples   int
	stop      chan struct{}
	stopped   chan struct{}
	pid       int
	maxLoad1  float64
	cpuTicks0 int64
}

func sampleMemory(pid int, every time.Duration) *memory {
	m := &memory{pid: pid, stop: make(chan struct{}), stopped: make(chan struct{}), cpuTicks0: cpuTicks(pid)}
	go func() {
		defer close(m.stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				m.sample()
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memory) sample() {
	rss, hwm := procStatus(m.pid)
	l1 := loadNow()[0]
	m.mu.Lock()
	defer m.mu.Unlock()
	if rss > 0 {
		m.lastRSS, m.hwm = rss, hwm
		m.maxRSS = max(m.maxRSS, rss)
		m.samples++
	}
	m.maxLoad1 = max(m.maxLoad1, l1)
}

// memoryFigures are a sampling window's results.
type memoryFigures struct {
	MaxRSSMiB, HWMMiB, EndRSSMiB float64
	Samples                      int
	MaxLoad1                     float64
	CPUSeconds                   float64 // user+system time the process spent in the window
}

func (m *memory) finish() memoryFigures {
	close(m.stop)
	<-m.stopped
	m.mu.Lock()
	defer m.mu.Unlock()
	return memoryFigures{MaxRSSMiB: float64(m.maxRSS) / 1024, HWMMiB: float64(m.hwm) / 1024, EndRSSMiB: float64(m.lastRSS) / 1024,
		Samples: m.samples, MaxLoad1: m.maxLoad1, CPUSeconds: float64(cpuTicks(m.pid)-m.cpuTicks0) / 100}
}

// procStatus returns VmRSS and VmHWM in KiB (0 once the process is gone).
func procStatus(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm
}

// cpuTicks is utime+stime of pid in clock ticks (USER_HZ, 100 on Linux).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at state, field 3.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// load is the 1, 5 and 15 minute load averages.
type load [3]float64

func loadNow() load {
	var l load
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(b), &l[0], &l[1], &l[2])
	}
	return l
}
