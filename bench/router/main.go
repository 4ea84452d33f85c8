// Command router benchmarks mlship's router against Knative's queue-proxy, a plain
// httputil.ReverseProxy and the upstream called directly, then split routing against a plain
// service, in one run, and writes bench/results/router.md. Run it from the repository root:
// go run ./bench/router
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/router:", err)
		os.Exit(1)
	}
}

type target struct {
	name, addr, path string
	header           map[string]string
}

func mainErr() error {
	serveKind := flag.String("serve", "", "internal: run one server (upstream|router|split-router|reverseproxy) and print its address")
	upstreamURL := flag.String("upstream", "", "internal: upstream URL(s) for -serve, comma-separated")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the mlship router process (the comparison's, or the split scenario's with -split-only) to this file")
	splitOnly := flag.Bool("split-only", false, "run only the split-routing scenario and replace its section in -out")
	splitRounds := flag.Int("split-rounds", 5, "rounds of the split-routing scenario (0: skip it)")
	n := flag.Int("n", 20000, "requests per measurement")
	rounds := flag.Int("rounds", 3, "measurements per target and concurrency; the median by throughput is reported")
	concs := flag.String("c", "1,8,32", "concurrencies")
	out := flag.String("out", "bench/results/router.md", "results file")
	qpBin := flag.String("queue-proxy", ".cache/bench/queue-proxy", "queue-proxy binary (built from bench/router/queueproxy if missing)")
	targetSpec := flag.String("targets", "", "measure running endpoints instead: NAME=http://HOST:PORT/PATH;... (the first is the baseline; see cluster.sh)")
	key := flag.String("key", "", "with -targets: bearer key sent to every target but the baseline")
	title := flag.String("title", "Router benchmark", "with -targets: the report's title")
	note := flag.String("note", "", "with -targets: a paragraph saying what the targets are")
	flag.Parse()
	if *serveKind != "" {
		return serve(*serveKind, *upstreamURL, *cpuprofile)
	}
	var cs []int
	for _, f := range strings.Split(*concs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c <= 0 {
			return fmt.Errorf("bad concurrency %q", f)
		}
		cs = append(cs, c)
	}

	if *targetSpec != "" {
		targets, err := parseTargets(*targetSpec, *key)
		if err != nil {
			return err
		}
		report, err := external(targets, cs, *n, *rounds, *title, *note)
		if err != nil {
			return err
		}
		fmt.Print(report)
		return os.WriteFile(*out, []byte(report), 0o644)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer stopChildren()
	var report string
	if *splitOnly {
		old, err := os.ReadFile(*out)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		report = string(old)
		if i := strings.Index(report, splitHeading); i >= 0 {
			report = report[:i]
		}
	} else {
		cmp, err := compare(ctx, cs, *n, *rounds, *qpBin, *cpuprofile)
		if err != nil {
			return err
		}
		report = cmp
	}
	prof := ""
	if *splitOnly {
		prof = *cpuprofile
	}
	if *splitRounds > 0 {
		sec, err := splitScenario(ctx, cs, *n, *splitRounds, prof)
		if err != nil {
			return err
		}
		report = strings.TrimRight(report, "\n") + "\n\n" + sec
	}
	fmt.Print(report)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(*out, []byte(report), 0o644)
}

var body = []byte(`{"data": [[1.0, 2.0, 3.0, 4.0]]}`)

// compare measures direct, httputil.ReverseProxy, queue-proxy and the router side by side
// and renders their tables.
func compare(ctx context.Context, cs []int, n, rounds int, qpBin, cpuprofile string) (string, error) {
	upAddr, err := start(ctx, "upstream", "", "")
	if err != nil {
		return "", err
	}
	upURL := "http://" + upAddr
	routerAddr, err := start(ctx, "router", upURL, cpuprofile)
	if err != nil {
		return "", err
	}
	rpAddr, err := start(ctx, "reverseproxy", upURL, "")
	if err != nil {
		return "", err
	}
	targets := []target{
		{name: "direct", addr: upAddr, path: "/score"},
		{name: "httputil.ReverseProxy", addr: rpAddr, path: "/score"},
	}
	qpAddr, qpErr := startQueueProxy(ctx, qpBin, upAddr)
	if qpErr != nil {
		fmt.Fprintln(os.Stderr, "queue-proxy skipped:", qpErr)
	} else {
		targets = append(targets, target{name: "queue-proxy v0.42.2", addr: qpAddr, path: "/score"})
	}
	targets = append(targets, target{name: "mlship router", addr: routerAddr, path: "/api/v1/service/bench/score",
		header: map[string]string{"Authorization": "Bearer " + benchKey}})
	if err := check(targets); err != nil {
		return "", err
	}
	results := map[int]map[string]run{}
	for _, c := range cs {
		results[c] = map[string]run{}
		for name, rs := range measure(targets, c, n, rounds) {
			results[c][name] = medianByRPS(rs)
		}
		fmt.Fprintf(os.Stderr, "concurrency %d done\n", c)
	}
	return render(targets, cs, results, n, rounds, qpErr), nil
}

// check fails fast on a broken setup, before minutes of measuring.
func check(targets []target) error {
	for _, t := range targets {
		if r := load(t.addr, t.path, t.header, body, 1, 10); r.Errors > 0 || r.Non200 > 0 {
			return fmt.Errorf("%s does not answer 200 (%d errors, %d non-200)", t.name, r.Errors, r.Non200)
		}
	}
	return nil
}

// measure runs rounds of n requests at concurrency c against every target, interleaved so
// drifts in machine load hit every target alike; it returns each target's runs in round order.
func measure(targets []target, c, n, rounds int) map[string][]run {
	all := map[string][]run{}
	for range rounds {
		for _, t := range targets {
			load(t.addr, t.path, t.header, body, c, min(2000, n/5)) // warm connections and caches
			all[t.name] = append(all[t.name], load(t.addr, t.path, t.header, body, c, n))
		}
	}
	return all
}

func medianByRPS(rs []run) run {
	rs = slices.Clone(rs)
	sort.Slice(rs, func(i, j int) bool { return rs[i].RPS() < rs[j].RPS() })
	return rs[len(rs)/2]
}

// start runs this binary with -serve kind and returns the address it listens on.
func start(ctx context.Context, kind, upstream, cpuprofile string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, self, "-serve", kind, "-upstream", upstream, "-cpuprofile", cpuprofile)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	children = append(children, child{cmd, true})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("start %s: %w", kind, err)
	}
	return strings.TrimSpace(line), nil
}

// startQueueProxy runs Knative's queue-proxy in front of upstream, building it first if needed.
func startQueueProxy(ctx context.Context, bin, upstream string) (string, error) {
	for _, port := range []string{"8022", "9090", "9091"} { // its fixed admin and metrics ports
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			return "", fmt.Errorf("queue-proxy needs port %s, which is in use", port)
		}
		l.Close()
	}
	if _, err := os.Stat(bin); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "building queue-proxy v0.42.2 (about a minute)...")
		abs, _ := filepath.Abs(bin)
		b := exec.CommandContext(ctx, "go", "build", "-o", abs, ".")
		b.Dir = "bench/router/queueproxy"
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return "", fmt.Errorf("build queue-proxy: %w", err)
		}
	}
	servingPort, tlsPort := freePort(), freePort()
	_, upPort, _ := net.SplitHostPort(upstream)
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(),
		"CONTAINER_CONCURRENCY=0", "QUEUE_SERVING_PORT="+servingPort, "QUEUE_SERVING_TLS_PORT="+tlsPort,
		"USER_PORT="+upPort, "REVISION_TIMEOUT_SECONDS=300", "SERVING_LOGGING_CONFIG=", "SERVING_LOGGING_LEVEL=error",
		"SERVING_NAMESPACE=ns", "SERVING_CONFIGURATION=c", "SERVING_REVISION=r", "SERVING_POD=p", "SERVING_POD_IP=127.0.0.1")
	if err := cmd.Start(); err != nil {
		return "", err
	}
	children = append(children, child{cmd, false})
	addr := "127.0.0.1:" + servingPort
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r := load(addr, "/score", nil, []byte("{}"), 1, 1); r.Errors == 0 && r.Non200 == 0 {
			return addr, nil
		}
	}
	return "", errors.New("queue-proxy did not answer within 20s")
}

// children are the servers this run started; stopChildren stops and reaps them. Ours get
// SIGTERM (a profiling one then writes its profile); queue-proxy is killed, as it drains for a
// long while on SIGTERM and nothing here needs a graceful stop.
var children []child

type child struct {
	cmd  *exec.Cmd
	ours bool
}

func stopChildren() {
	for _, c := range children {
		if c.ours {
			c.cmd.Process.Signal(syscall.SIGTERM)
		} else {
			c.cmd.Process.Kill()
		}
		c.cmd.Wait()
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
