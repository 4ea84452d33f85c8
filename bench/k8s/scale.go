package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/mlship/mlship/api"
)

// scaleResult is target 2: many services deployed at once on the KWOK node.
type scaleResult struct {
	Services int
	// From the first deploy call.
	LastCall   time.Duration   // the last deploy call was answered (its operation started)
	AllHealthy time.Duration   // every deploy operation had ended, the service Healthy
	Healthy    []time.Duration // each deploy operation's end, sorted
	Listed     time.Duration   // 'GET services' first showed every service Healthy
	ListCalls  []time.Duration // how long each 'GET services' took
	ListAtRest []time.Duration // 'GET services' once all were Healthy, 3 calls in a row
	// Each deploy's phases (server log and operation end), sorted; see phases.
	Phases       phases
	ImagesReused int
	IdleRSSMiB   float64
	Server       memoryFigures
	LoadStart    load
	LoadEnd      load
	// The baseline, from the first create.
	RawLastCreate, RawAll time.Duration
	RawLoadEnd            load
}

// FromLastCall is the target's figure: all Healthy, after the last deploy call.
func (s scaleResult) FromLastCall() time.Duration { return s.AllHealthy - s.LastCall }

// benchScale fires services deploys of 2 replicas at once through the REST API of a separate
// mlship server, with a target pinned to the KWOK node, and polls until all are Healthy. Then
// the baseline: as many Deployments of the same pod template, created at once with client-go.
func benchScale(ctx context.Context, tb *testbed, bins binaries, work string, services int) (r scaleResult, err error) {
	r.Services = services
	tmpl, err := scaleMlship(ctx, tb, bins, work, &r)
	if err != nil {
		return r, err
	}
	ns, drop, err := tb.namespace(ctx, "mlship-bench-raw")
	if err != nil {
		return r, err
	}
	defer drop()
	ds := make([]*appsv1.Deployment, services)
	for i := range ds {
		ds[i] = rawDeployment(fmt.Sprintf("raw-%03d", i), tmpl.Spec.Template, 2)
	}
	if r.RawLastCreate, r.RawAll, err = rawMany(ctx, tb.cs, ns, ds); err != nil {
		return r, err
	}
	r.RawLoadEnd = loadNow()
	logf("  raw: %d Deployments available %s after the first create", services, secs(r.RawAll))
	return r, nil
}

// scaleMlship runs mlship's side and returns one of its Deployments, the baseline's template.
// The server is stopped and the namespace deleted (its pods gone) before it returns.
func scaleMlship(ctx context.Context, tb *testbed, bins binaries, work string, r *scaleResult) (*appsv1.Deployment, error) {
	ns, drop, err := tb.namespace(ctx, "mlship-bench-kwok")
	if err != nil {
		return nil, err
	}
	defer drop()
	srv, err := startServer(work, "scale", bins)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	c := srv.api
	if err := srv.attach(ctx, tb, "kwok", ns, map[string]string{"type": "kwok"}); err != nil {
		return nil, err
	}
	ex, err := newExample(ctx, c, "kwok", 2)
	if err != nil {
		return nil, err
	}
	r.IdleRSSMiB = func() float64 { rss, _ := procStatus(srv.pid()); return float64(rss) / 1024 }()
	r.LoadStart = loadNow()
	mem := sampleMemory(srv.pid(), 250*time.Millisecond)
	names := make([]string, r.Services)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%03d", i)
	}

	start := time.Now()
	ops, err := deployAll(ctx, c, ex, names)
	r.LastCall = time.Since(start)
	if err != nil {
		mem.finish()
		return nil, err
	}
	logf("  %d deploy calls answered in %s", len(names), secs(r.LastCall))

	// Two views of "Healthy": each operation's end (the state recorded, as 'model deploy' waits for
	// it), and 'GET services' (what 'service list' shows), polled side by side.
	var listErr error
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		r.Listed, r.ListCalls, listErr = waitListed(ctx, c, names, start, 10*time.Minute)
	}()
	ends, err := waitOperations(ctx, c, ops, 10*time.Minute)
	<-listed
	r.Server = mem.finish()
	if err = errors.Join(err, listErr); err != nil {
		return nil, err
	}
	r.LoadEnd = loadNow()
	for _, end := range ends {
		r.Healthy = append(r.Healthy, end.Sub(start))
	}
	sortDurations(r.Healthy)
	r.AllHealthy = maxOf(r.Healthy)
	// 'GET services' with nothing else going on but the server's own observer.
	for range 3 {
		t := time.Now()
		if _, err := c.ListServices(ctx, "default"); err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		r.ListAtRest = append(r.ListAtRest, time.Since(t))
	}
	logf("  all %d Healthy %s after the first call, %s after the last ('GET services' showed it after %s); server RSS peak %.0f MiB",
		len(names), secs(r.AllHealthy), secs(r.FromLastCall()), secs(r.Listed), r.Server.HWMMiB)
	if r.Phases, r.ImagesReused, err = deployPhases(srv.log, ends); err != nil {
		return nil, err
	}
	return tb.replicaDeployment(ctx, ns, names[0])
}

// deployAll starts a deploy of each name at once, one goroutine each, and returns the operations.
func deployAll(ctx context.Context, c *api.Client, ex example, names []string) ([]api.Operation, error) {
	var wg sync.WaitGroup
	ops := make([]api.Operation, len(names))
	errs := make([]error, len(names))
	for i, name := range names {
		wg.Go(func() { ops[i], errs[i] = ex.deploy(ctx, c, name) })
	}
	wg.Wait()
	return ops, errors.Join(errs...)
}

// waitOperations polls the operations until all have ended, and returns when each ended (its
// EndTime) by service. An operation that failed fails the run.
func waitOperations(ctx context.Context, c *api.Client, ops []api.Operation, within time.Duration) (map[string]time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	ended := map[string]time.Time{}
	pending := ops
	for len(pending) > 0 {
		if err := sleep(ctx, time.Second); err != nil {
			return nil, fmt.Errorf("%d of %d deploys ended: %w", len(ended), len(ops), err)
		}
		var still []api.Operation
		for _, op := range pending {
			cur, err := c.GetOperation(ctx, "default", op.ID)
			switch {
			case err != nil:
				return nil, fmt.Errorf("operation of %s: %w", op.ServiceName, err)
			case !cur.Done():
				still = append(still, cur)
			case cur.State != "Succeeded":
				return nil, fmt.Errorf("deploy %s: %s: %s", cur.ServiceName, cur.State, cur.Error)
			case cur.EndTime != nil:
				ended[cur.ServiceName] = *cur.EndTime
			default:
				ended[cur.ServiceName] = time.Now()
			}
		}
		pending = still
	}
	return ended, nil
}

// waitListed polls 'GET services' until it shows every service Healthy, and returns when it did,
// from start, and how long each call took.
func waitListed(ctx context.Context, c *api.Client, names []string, start time.Time, within time.Duration) (time.Duration, []time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	ours := map[string]bool{}
	for _, n := range names {
		ours[n] = true
	}
	var calls []time.Duration
	for {
		t := time.Now()
		l, err := c.ListServices(ctx, "default")
		if err != nil {
			return 0, calls, fmt.Errorf("list services: %w", err)
		}
		calls = append(calls, time.Since(t))
		healthy := 0
		for _, s := range l {
			if ours[s.Name] && s.State == "Healthy" {
				healthy++
			}
		}
		if healthy == len(names) {
			return time.Since(start), calls, nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return 0, calls, fmt.Errorf("'GET services' shows %d of %d services Healthy: %w", healthy, len(names), err)
		}
	}
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

// phases split each deploy, on the server's clock, by its log lines: "deploy started", the
// target's "image ready" (with the image step's own duration, so the step's start is known),
// "replicas ready", and the operation's end.
type phases struct {
	BeforeImage []time.Duration // operation start → image step: materialize, the cluster router's config (ConfigMap, key Secret)
	Image       []time.Duration // the image step (tag check; nothing built when reused)
	Rollout     []time.Duration // owner ConfigMap, Deployment, Service, then waiting for the rollout
	After       []time.Duration // replicas ready → operation end: the record, the router's config again
}

func deployPhases(logPath string, ends map[string]time.Time) (phases, int, error) {
	var p phases
	reused := 0
	started, err := serverLog(logPath, "deploy started")
	if err != nil {
		return p, 0, err
	}
	images, err := serverLog(logPath, "image ready")
	if err != nil {
		return p, 0, err
	}
	applied, err := serverLog(logPath, "replicas ready")
	if err != nil {
		return p, 0, err
	}
	start := map[string]time.Time{}
	for _, l := range started {
		start[l.service()] = l.Time
	}
	image := map[string]logLine{}
	for _, l := range images {
		image[l.service()] = l
		if l.Reuse != nil && *l.Reuse {
			reused++
		}
	}
	for _, l := range applied {
		name := l.service()
		img, ok := image[name]
		end, ended := ends[name]
		if !ok || !ended || start[name].IsZero() {
			continue
		}
		imageStart := img.Time.Add(-time.Duration(img.Took))
		p.BeforeImage = append(p.BeforeImage, imageStart.Sub(start[name]))
		p.Image = append(p.Image, time.Duration(img.Took))
		p.Rollout = append(p.Rollout, l.Time.Sub(img.Time))
		p.After = append(p.After, end.Sub(l.Time))
	}
	if len(p.Image) != len(ends) {
		return p, 0, fmt.Errorf("server log: phases of %d of %d deploys", len(p.Image), len(ends))
	}
	for _, d := range [][]time.Duration{p.BeforeImage, p.Image, p.Rollout, p.After} {
		sortDurations(d)
	}
	return p, reused, nil
}
