// Command deploy measures local deployments: time from 'model deploy' to Healthy with a warm
// environment cache, and the autoscaler's answer to a load step. It writes bench/results/deploy.md.
//
//	go run ./bench/deploy [-n 10] [-out bench/results/deploy.md]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/server"
)

func main() {
	n := flag.Int("n", 10, "deploys to time")
	out := flag.String("out", "bench/results/deploy.md", "results file")
	flag.Parse()
	if err := run(*n, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench/deploy:", err)
		os.Exit(1)
	}
}

func freeAddr() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return ln.Addr().String()
}

func run(n int, out string) error {
	work, err := os.MkdirTemp("", "mlship-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "mlship")
	if b, err := exec.Command("go", "build", "-o", bin, "./cmd/mlship").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, b)
	}
	scoring := freeAddr()
	s, err := server.New(context.Background(), server.Options{DataDir: filepath.Join(work, "data"), Addr: "127.0.0.1:0",
		ScoringAddr: scoring, ScoreBinary: bin, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(a net.Addr) { addrc <- a }) }()
	defer func() { cancel(); <-done; s.Close() }()
	c := api.NewClient("http://"+(<-addrc).String(), s.AdminToken, nil)

	plan, err := archive.NewPlan("examples/stdlib/model/weights.json")
	if err != nil {
		return err
	}
	if _, err := c.RegisterModel(ctx, "default", api.ModelSpec{Name: "lin"}, plan, nil); err != nil {
		return err
	}
	src, err := archive.NewPlan("examples/stdlib")
	if err != nil {
		return err
	}
	ic, _ := os.ReadFile("examples/stdlib/inferenceconfig.json")
	sleepy, err := archive.NewPlan("bench/deploy/sleepy")
	if err != nil {
		return err
	}
	deployFrom := func(name, dc string, src *archive.Plan) (time.Duration, error) {
		start := time.Now()
		op, err := c.DeployService(ctx, "default", api.DeployRequest{Name: name, Models: []string{"lin:1"},
			InferenceConfig: ic, DeploymentConfig: json.RawMessage(dc)}, src)
		if err != nil {
			return 0, err
		}
		for !op.Done() {
			time.Sleep(10 * time.Millisecond)
			if op, err = c.GetOperation(ctx, "default", op.ID); err != nil {
				return 0, err
			}
		}
		if op.State != "Succeeded" {
			return 0, fmt.Errorf("deploy %s: %s", name, op.Error)
		}
		return time.Since(start), nil
	}
	deploy := func(name, dc string) (time.Duration, error) { return deployFrom(name, dc, src) }
	del := func(name string) {
		op, err := c.DeleteService(ctx, "default", name)
		for err == nil && !op.Done() {
			time.Sleep(10 * time.Millisecond)
			op, err = c.GetOperation(ctx, "default", op.ID)
		}
	}
	// Warm the environment cache once, as the target is "with a warm cache".
	if _, err := deploy("warmup", `{}`); err != nil {
		return err
	}
	del("warmup")
	var times []time.Duration
	for i := range n {
		d, err := deploy(fmt.Sprintf("svc-%d", i), `{}`)
		if err != nil {
			return err
		}
		times = append(times, d)
		del(fmt.Sprintf("svc-%d", i))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })

	// Autoscaler: a load step from 1 to 16 clients on a model that sleeps 50 ms.
	if _, err := deployFrom("auto", `{"autoScaler": {"minReplicas": 1, "maxReplicas": 10}}`, sleepy); err != nil {
		return err
	}
	keys, err := c.ServiceKeys(ctx, "default", "auto")
	if err != nil {
		return err
	}
	uri := "http://" + scoring + "/api/v1/service/auto/score"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var ok, unavailable, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	body := `{"data": [[1, 2, 3]]}`
	client := func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("POST", uri, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+keys.PrimaryKey)
			resp, err := hc.Do(req)
			if err != nil {
				other.Add(1)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				ok.Add(1)
			case 503:
				unavailable.Add(1)
			default:
				other.Add(1)
			}
		}
	}
	wg.Add(1)
	go client()
	time.Sleep(2 * time.Second)
	step := time.Now()
	for range 15 {
		wg.Add(1)
		go client()
	}
	reached := map[int]time.Duration{}
	for time.Since(step) < 10*time.Second {
		svc, err := c.GetService(ctx, "default", "auto")
		if err == nil {
			for r := 2; r <= svc.Replicas.Ready; r++ {
				if _, seen := reached[r]; !seen {
					reached[r] = time.Since(step)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	final, _ := c.GetService(ctx, "default", "auto")

	var b strings.Builder
	fmt.Fprintf(&b, "# Local deployments\n\n`go run ./bench/deploy -n %d` on this machine (2 cores), %s.\n\n", n, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "## Deploy to Healthy, warm environment cache (stdlib example, 1 replica)\n\n")
	fmt.Fprintf(&b, "| deploys | min | median | max | target |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d | %s | %s | %s | ≤ 3 s median |\n\n", n, ms(times[0]), ms(times[len(times)/2]), ms(times[len(times)-1]))
	fmt.Fprintf(&b, "Measured from the deploy call to the operation's Succeeded (the CLI waits the same way).\n\n")
	fmt.Fprintf(&b, "## Autoscaler: load step from 1 to 16 clients, model sleeps 50 ms (min 1, max 10 replicas)\n\n")
	fmt.Fprintf(&b, "| ready replicas | reached after the step |\n|---|---|\n")
	for r := 2; r <= 10; r++ {
		if d, ok := reached[r]; ok {
			fmt.Fprintf(&b, "| %d | %s |\n", r, ms(d))
		}
	}
	fmt.Fprintf(&b, "\nOver the run: %d requests answered 200, %d answered 503 (queue wait exceeded), %d other failures; %d replicas ready at the end. Target: ≥ 4 replicas within 5 s.\n",
		ok.Load(), unavailable.Load(), other.Load(), final.Replicas.Ready)
	fmt.Print(b.String())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }
