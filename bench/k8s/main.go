// Command k8s measures the Kubernetes target on the testbed cluster against Deployments created
// directly with client-go, and writes bench/results/k8s.md.
//
//	bash test/testbed/scripts/up.sh     # once: the test cluster
//	go run ./bench/k8s [-n 5] [-services 100] [-out bench/results/k8s.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"
)

func main() {
	os.Exit(Main())
}

// Main runs the benchmark and returns the exit code.
func Main() int {
	var o options
	flag.IntVar(&o.n, "n", 5, "re-deploys (and raw Deployments) to time on the real node")
	flag.IntVar(&o.services, "services", 100, "services of 2 replicas each to deploy at once on the KWOK node")
	flag.StringVar(&o.out, "out", "bench/results/k8s.md", "results file")
	flag.StringVar(&o.testbedEnv, "testbed", defaultTestbedEnv(), "the testbed's environment file (written by up.sh)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder (binaries, server logs) and print its path")
	flag.Parse()
	if o.n < 1 || o.services < 1 {
		fmt.Fprintln(os.Stderr, "bench/k8s: -n and -services must be at least 1")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/k8s:", err)
		return 1
	}
	return 0
}

type options struct {
	n, services int
	out         string
	testbedEnv  string
	keep        bool
}

func defaultTestbedEnv() string {
	state := os.Getenv("MLSHIP_STATE")
	if state == "" {
		state = "/tmp/mlship-testbed"
	}
	return filepath.Join(state, "testbed.env")
}

func run(ctx context.Context, o options) error {
	tb, err := openTestbed(ctx, o.testbedEnv)
	if err != nil {
		return err
	}
	// 2 pods per service, the namespace's router, and room for a few terminating pods.
	if err := tb.checkKWOKCapacity(ctx, 2*o.services+1); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "mlship-bench-k8s-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Fprintln(os.Stderr, "work folder kept:", work)
	} else {
		defer os.RemoveAll(work)
	}
	logf("building mlship (server) and a static mlship (images)")
	bins, err := buildBinaries(work)
	if err != nil {
		return err
	}
	rep := report{Date: time.Now().UTC(), Commit: gitCommit(), Kubernetes: tb.version, N: o.n, Services: o.services}
	if fi, err := os.Stat(bins.static); err == nil {
		rep.BinaryMB = float64(fi.Size()) / 1e6
	}

	logf("1/2 re-deploy on the real node %s, %d times, and as many raw Deployments", tb.env["NODE"], o.n)
	if rep.Redeploy, err = benchRedeploy(ctx, tb, bins, work, o.n); err != nil {
		return fmt.Errorf("re-deploy: %w", err)
	}
	logf("2/2 %d services × 2 replicas on the KWOK node %s, and as many raw Deployments", o.services, tb.env["KWOK_NODE"])
	if rep.Scale, err = benchScale(ctx, tb, bins, work, o.services); err != nil {
		return fmt.Errorf("scale: %w", err)
	}

	md := rep.markdown()
	fmt.Print(md)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(o.out, []byte(md), 0o644)
}

// logf reports progress on stderr; the results go to stdout and the file.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
