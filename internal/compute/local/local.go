// Package local runs a service's replicas as supervised 'mlship score' processes on this machine.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

// Options configure the local target.
type Options struct {
	Binary       string // the mlship executable; this process's own if empty
	LogDir       string // replica logs are appended under it; none if empty
	Logger       *slog.Logger
	OnReplicas   compute.ReplicaWatcher
	ReadyTimeout time.Duration // bound on a replica's model loading; 5 min if 0
	StopTimeout  time.Duration // grace for in-flight requests on stop; 30 s if 0
	BackoffMin   time.Duration // first restart delay after a crash; 1 s if 0
	BackoffMax   time.Duration // 30 s if 0
	// DrainDelay is how long a replica taken out of the router's set keeps running before it is
	// stopped, so requests routed to it just before finish; 1 s if 0 (Kubernetes' preStop sleep).
	DrainDelay time.Duration
}

// Target is the local compute target.
type Target struct {
	opts   Options
	mu     sync.Mutex
	groups map[compute.Key]*group
	client *http.Client
}

var _ compute.Target = (*Target)(nil)

// New returns a local target.
func New(opts Options) (*Target, error) {
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local target: find the mlship binary: %w", err)
		}
		opts.Binary = exe
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnReplicas == nil {
		opts.OnReplicas = func(compute.Key, []compute.Replica) {}
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 5 * time.Minute
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 30 * time.Second
	}
	if opts.BackoffMin == 0 {
		opts.BackoffMin = time.Second
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.DrainDelay == 0 {
		opts.DrainDelay = time.Second
	}
	return &Target{opts: opts, groups: map[compute.Key]*group{}, client: &http.Client{Timeout: 2 * time.Second}}, nil
}

// group is the replicas of one key.
type group struct {
	key      compute.Key
	spec     compute.Spec // the generation being served
	active   []*replica   // serving generation
	incoming []*replica   // a rollout's new generation, not yet swapped in
	seq      int
	failure  string     // why the last generation failed to start
	lastLogs *logBuffer // logs of the last replica that failed, for get-logs
}

func (t *Target) groupFor(key compute.Key) *group {
	g := t.groups[key]
	if g == nil {
		g = &group{key: key}
		t.groups[key] = g
	}
	return g
}

// notify tells the watcher which replicas of key exist and which are ready.
func (t *Target) notify(key compute.Key) {
	t.mu.Lock()
	var view []compute.Replica
	if g := t.groups[key]; g != nil {
		for _, r := range append(append([]*replica(nil), g.active...), g.incoming...) {
			view = append(view, r.view())
		}
	}
	t.mu.Unlock()
	t.opts.OnReplicas(key, view)
}

// Apply implements compute.Target.
func (t *Target) Apply(ctx context.Context, spec compute.Spec) error {
	n := spec.Replicas
	if n < 1 {
		n = 1
	}
	t.mu.Lock()
	g := t.groupFor(spec.Key)
	if len(g.active) > 0 && g.spec.Generation == spec.Generation {
		t.mu.Unlock()
		return t.Scale(ctx, spec.Key, n)
	}
	if len(g.incoming) > 0 {
		t.mu.Unlock()
		return errdefs.Conflict("%s is already rolling out a new generation; wait for it to finish", spec.Key)
	}
	fresh := make([]*replica, n)
	for i := range fresh {
		fresh[i] = t.startReplica(g, spec)
	}
	g.incoming = fresh
	t.mu.Unlock()

	err := waitAllReady(ctx, fresh)
	t.mu.Lock()
	g.incoming = nil
	if err != nil {
		for _, r := range fresh {
			if r.failed() {
				g.lastLogs = r.logs
			}
		}
		if len(g.active) == 0 {
			g.failure = err.Error()
		}
		t.mu.Unlock()
		t.notify(spec.Key)
		t.stopAll(fresh)
		return err
	}
	old := g.active
	g.active, g.spec, g.failure = fresh, spec, ""
	t.mu.Unlock()
	t.notify(spec.Key)
	t.drainThenStop(old)
	return nil
}

func waitAllReady(ctx context.Context, rs []*replica) error {
	for _, r := range rs {
		select {
		case <-r.readyCh:
		case <-r.failCh:
			return r.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Scale implements compute.Target.
func (t *Target) Scale(ctx context.Context, key compute.Key, n int) error {
	if n < 1 {
		return errdefs.Invalid("%s: at least one replica is needed, not %d", key, n)
	}
	t.mu.Lock()
	g := t.groups[key]
	if g == nil || len(g.active) == 0 {
		t.mu.Unlock()
		return errdefs.NotFound("%s has no running replicas to scale", key)
	}
	var removed []*replica
	switch cur := len(g.active); {
	case n > cur:
		for range n - cur {
			g.active = append(g.active, t.startReplica(g, g.spec))
		}
	case n < cur:
		removed = append(removed, g.active[n:]...)
		g.active = g.active[:n:n]
	}
	g.spec.Replicas = n
	t.mu.Unlock()
	if len(removed) > 0 {
		t.notify(key) // the router stops sending to them before they stop
		go t.drainThenStop(removed)
	}
	return nil
}

// Status implements compute.Target.
func (t *Target) Status(ctx context.Context, key compute.Key) (compute.Status, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[key]
	if g == nil {
		return compute.Status{}, errdefs.NotFound("%s has no replicas on this machine", key)
	}
	st := compute.Status{Generation: g.spec.Generation, Desired: len(g.active), Error: g.failure}
	for _, r := range g.active {
		v := r.view()
		st.Replicas = append(st.Replicas, v)
		if v.Ready {
			st.Ready++
		}
	}
	switch {
	case len(g.active) == 0 && g.failure != "":
		st.State = store.StateFailed
	case st.Ready > 0:
		st.State = store.StateHealthy
	case len(g.active) > 0 && g.spec.Generation != 0 && anyEverReady(g.active):
		st.State = store.StateUnhealthy
	default:
		st.State = store.StateTransitioning
	}
	return st, nil
}

func anyEverReady(rs []*replica) bool {
	for _, r := range rs {
		if r.wasReady() {
			return true
		}
	}
	return false
}

// Logs implements compute.Target: the first serving replica's output, else the last failed one's.
func (t *Target) Logs(ctx context.Context, key compute.Key, o compute.LogOptions) (string, error) {
	t.mu.Lock()
	g := t.groups[key]
	var b *logBuffer
	if g != nil {
		switch {
		case len(g.incoming) > 0 && len(g.active) == 0:
			b = g.incoming[0].logs
		case len(g.active) > 0:
			b = g.active[0].logs
		default:
			b = g.lastLogs
		}
	}
	t.mu.Unlock()
	if b == nil {
		return "", errdefs.NotFound("%s has no replica logs on this machine", key)
	}
	return b.text(o.Init, o.Tail), nil
}

// Delete implements compute.Target.
func (t *Target) Delete(ctx context.Context, key compute.Key) error {
	t.mu.Lock()
	g := t.groups[key]
	delete(t.groups, key)
	t.mu.Unlock()
	if g == nil {
		return nil
	}
	t.opts.OnReplicas(key, nil)
	t.stopAll(append(g.active, g.incoming...))
	return nil
}

// Close stops every replica (server shutdown).
func (t *Target) Close() {
	t.mu.Lock()
	keys := make([]compute.Key, 0, len(t.groups))
	for k := range t.groups {
		keys = append(keys, k)
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		go func() { defer wg.Done(); t.Delete(context.Background(), k) }()
	}
	wg.Wait()
}

// drainThenStop stops replicas the router no longer sends to, after requests already on their way arrive.
func (t *Target) drainThenStop(rs []*replica) {
	if len(rs) == 0 {
		return
	}
	time.Sleep(t.opts.DrainDelay)
	t.stopAll(rs)
}

func (t *Target) stopAll(rs []*replica) {
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() { defer wg.Done(); r.stop(t.opts.StopTimeout) }()
	}
	wg.Wait()
}

// replica is one supervised process (restarted after crashes).
type replica struct {
	id      string
	readyCh chan struct{} // closed at first ready
	failCh  chan struct{} // closed when it failed before ever being ready
	done    chan struct{} // closed when supervision ended
	stopCh  chan struct{}
	logs    *logBuffer
	err     error

	mu       sync.Mutex
	url      string
	ready    bool
	everRdy  bool
	isFailed bool
	proc     *os.Process
	stopOnce sync.Once
}

func (r *replica) view() compute.Replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	return compute.Replica{ID: r.id, URL: r.url, Ready: r.ready}
}

func (r *replica) wasReady() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.everRdy
}

func (r *replica) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isFailed
}

func (r *replica) stopping() bool {
	select {
	case <-r.stopCh:
		return true
	default:
		return false
	}
}

// stop asks the process to drain (SIGTERM), then kills its whole process group after grace.
func (r *replica) stop(grace time.Duration) {
	r.stopOnce.Do(func() { close(r.stopCh) })
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p != nil {
		p.Signal(syscall.SIGTERM)
	}
	select {
	case <-r.done:
	case <-time.After(grace):
		r.mu.Lock()
		if r.proc != nil {
			syscall.Kill(-r.proc.Pid, syscall.SIGKILL)
		}
		r.mu.Unlock()
		<-r.done
	}
}

var listenRE = regexp.MustCompile(`^mlship-score: listening on (127\.0\.0\.1:\d+)$`)

func (t *Target) startReplica(g *group, spec compute.Spec) *replica {
	g.seq++
	r := &replica{
		id:      fmt.Sprintf("%s-g%d-%d", spec.Service, spec.Generation, g.seq),
		readyCh: make(chan struct{}), failCh: make(chan struct{}), done: make(chan struct{}), stopCh: make(chan struct{}),
	}
	logPath := ""
	if t.opts.LogDir != "" {
		dir := filepath.Join(t.opts.LogDir, spec.Workspace, spec.Service)
		if err := os.MkdirAll(dir, 0o700); err == nil {
			logPath = filepath.Join(dir, r.id+".log")
		}
	}
	addrs := make(chan string, 4)
	r.logs = newLogBuffer(logPath, func(line string) {
		if m := listenRE.FindStringSubmatch(line); m != nil {
			select {
			case addrs <- m[1]:
			default:
			}
		}
	})
	go t.supervise(spec, r, addrs)
	return r
}

func scoreArgs(spec compute.Spec) []string {
	args := []string{"score", "--model-dir", spec.ModelDir, "--port", "0"}
	if spec.EntryScript != "" {
		args = append(args, "--entry-script", spec.EntryScript, "--source-dir", spec.SourceDir)
	}
	if spec.Python != "" {
		args = append(args, "--python", spec.Python)
	}
	if spec.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(spec.Workers))
	}
	if spec.MaxConcurrentRequests > 0 {
		args = append(args, "--max-concurrent-requests", strconv.Itoa(spec.MaxConcurrentRequests))
	}
	if spec.MaxQueueWait > 0 {
		args = append(args, "--max-queue-wait-ms", strconv.FormatInt(spec.MaxQueueWait.Milliseconds(), 10))
	}
	if spec.ScoringTimeout > 0 {
		args = append(args, "--scoring-timeout-ms", strconv.FormatInt(spec.ScoringTimeout.Milliseconds(), 10))
	}
	return args
}

func (t *Target) supervise(spec compute.Spec, r *replica, addrs chan string) {
	defer close(r.done)
	defer r.logs.close()
	log := t.opts.Logger.With("replica", r.id)
	backoff := t.opts.BackoffMin
	for {
		started := time.Now()
		cmd := exec.Command(t.opts.Binary, scoreArgs(spec)...)
		cmd.Env = os.Environ()
		for k, v := range spec.Env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Stdout, cmd.Stderr = r.logs, r.logs
		// Own process group, so a stop reaches the Python workers too; die with the server.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			r.fail(fmt.Errorf("start replica %s: %w", r.id, err))
			return
		}
		r.mu.Lock()
		r.proc = cmd.Process
		r.mu.Unlock()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		err := t.waitReady(r, addrs, exited)
		if err == nil {
			r.setReady(true)
			t.notifyReplica(spec.Key)
			err = <-exited
			r.setReady(false)
			t.notifyReplica(spec.Key)
		} else {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // reap stray workers of the group
		if r.stopping() {
			return
		}
		if !r.wasReady() {
			r.fail(fmt.Errorf("replica %s failed while loading the model: %v%s", r.id, err, lastError(r.logs.text(false, 50))))
			return
		}
		if time.Since(started) > time.Minute {
			backoff = t.opts.BackoffMin
		}
		log.Warn("replica exited; restarting", "err", err, "after", backoff)
		select {
		case <-time.After(backoff):
		case <-r.stopCh:
			return
		}
		backoff = min(backoff*2, t.opts.BackoffMax)
	}
}

// notifyReplica is notify for a replica whose group may be gone.
func (t *Target) notifyReplica(key compute.Key) {
	t.mu.Lock()
	_, ok := t.groups[key]
	t.mu.Unlock()
	if ok {
		t.notify(key)
	}
}

// errExited reports a replica process that ended while loading.
var errExited = errors.New("the replica process exited")

func (t *Target) waitReady(r *replica, addrs chan string, exited chan error) error {
	deadline := time.NewTimer(t.opts.ReadyTimeout)
	defer deadline.Stop()
	var url string
	for url == "" {
		select {
		case a := <-addrs:
			url = "http://" + a
		case err := <-exited:
			exited <- err
			return fmt.Errorf("%w (%v)", errExited, err)
		case <-deadline.C:
			return fmt.Errorf("the model did not load within %s", t.opts.ReadyTimeout)
		case <-r.stopCh:
			return errors.New("stopped")
		}
	}
	r.mu.Lock()
	r.url = url
	r.mu.Unlock()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := t.client.Get(url + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-tick.C:
		case err := <-exited:
			exited <- err
			return fmt.Errorf("%w (%v)", errExited, err)
		case <-deadline.C:
			return fmt.Errorf("the model did not load within %s", t.opts.ReadyTimeout)
		case <-r.stopCh:
			return errors.New("stopped")
		}
	}
}

func (r *replica) setReady(ready bool) {
	r.mu.Lock()
	r.ready = ready
	first := ready && !r.everRdy
	if ready {
		r.everRdy = true
	}
	r.mu.Unlock()
	if first {
		r.logs.markReady()
		close(r.readyCh)
	}
}

func (r *replica) fail(err error) {
	r.mu.Lock()
	r.err, r.isFailed = err, true
	r.mu.Unlock()
	close(r.failCh)
}

// lastError picks the replica's own closing "Error: ..." line from its log, if any.
func lastError(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if msg, ok := strings.CutPrefix(lines[i], "Error: "); ok {
			return ": " + msg
		}
	}
	return ""
}

// PIDs lists the process ids of key's serving replicas (diagnostics and fault tests).
func (t *Target) PIDs(key compute.Key) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	if g := t.groups[key]; g != nil {
		for _, r := range g.active {
			r.mu.Lock()
			if r.proc != nil {
				out = append(out, r.proc.Pid)
			}
			r.mu.Unlock()
		}
	}
	return out
}
