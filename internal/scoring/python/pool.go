// Package python runs Azure ML entry scripts (init()/run()) in a pool of Python worker processes.
package python

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
)

// Platform is the OIP v2 platform name of entry-script models.
const Platform = "python"

// DefaultPython is Debian's interpreter, which sees Debian's python3-* packages.
const DefaultPython = "/usr/bin/python3"

// Config says which script to run and how.
type Config struct {
	Python      string        // interpreter; DefaultPython if empty
	EntryScript string        // path to score.py
	SourceDir   string        // put first on sys.path and used as the working directory; the script's dir if empty
	ModelDir    string        // exported as AZUREML_MODEL_DIR
	Workers     int           // processes; 1 if < 1
	InitTimeout time.Duration // bound on one worker's init(); 5 minutes if 0
	PollMicros  int           // how long a lone busy worker and the replica poll for each other instead of sleeping; 0 never
	// Pipeline is how many requests one worker may hold at once: the one it runs and those already
	// sent behind it, so it finds the next one waiting instead of sleeping. 1 (or less) never pipelines.
	Pipeline  int
	Env       []string // extra KEY=VALUE entries for the workers
	ModelName string
	Version   string
}

// threadVars are pinned to 1 per worker unless set, because N workers each spawning a thread per
// core oversubscribe the CPU and make latency worse, not better.
var threadVars = []string{"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"}

// Pool is a backend.Backend running the entry script in Workers processes.
type Pool struct {
	cfg    Config
	logger *slog.Logger
	env    []string
	dir    string // shim directory
	script string

	sched sched
	// service is a moving average of run() times as seen from here (ns): pipelining is used only
	// while it is below pipelineBelow, because a request queued behind a long run() in one worker
	// may wait longer than it would for any worker.
	service atomic.Int64
	poll    time.Duration // Config.PollMicros; 0 on a single core, where polling only delays the other side
	// pollMisses counts lone requests in a row whose answer took longer than the poll budget (a
	// slow model, or the worker sharing this core): from missesBeforePause on, only every
	// pollProbeEvery-th lone request polls, so such a replica does not burn a core for nothing.
	pollMisses atomic.Int32
	lone       atomic.Uint32

	closed   chan struct{}
	closeMu  sync.Mutex
	isClosed bool
	live     map[*worker]struct{}
	spawns   sync.WaitGroup
	restarts atomic.Uint64
	meta     backend.Metadata
}

// New checks cfg and prepares a pool; Start launches the workers.
func New(cfg Config, logger *slog.Logger) (*Pool, error) {
	if cfg.Python == "" {
		cfg.Python = DefaultPython
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = 5 * time.Minute
	}
	cfg.Pipeline = max(cfg.Pipeline, 1)
	script, err := filepath.Abs(cfg.EntryScript)
	if err != nil {
		return nil, fmt.Errorf("entry script: %w", err)
	}
	if st, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("entry script: %w", err)
	} else if st.IsDir() {
		return nil, fmt.Errorf("entry script %s is a directory", script)
	}
	cfg.EntryScript = script
	if cfg.SourceDir == "" {
		cfg.SourceDir = filepath.Dir(script)
	}
	if cfg.SourceDir, err = filepath.Abs(cfg.SourceDir); err != nil {
		return nil, fmt.Errorf("source dir: %w", err)
	}
	if cfg.ModelDir != "" {
		if cfg.ModelDir, err = filepath.Abs(cfg.ModelDir); err != nil {
			return nil, fmt.Errorf("model dir: %w", err)
		}
	}
	if _, err := os.Stat(cfg.Python); err != nil {
		return nil, fmt.Errorf("python interpreter: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{
		cfg:    cfg,
		logger: logger,
		sched:  sched{depth: cfg.Pipeline},
		closed: make(chan struct{}),
		live:   map[*worker]struct{}{},
	}
	if runtime.NumCPU() > 1 {
		p.poll = time.Duration(cfg.PollMicros) * time.Microsecond
	}
	p.env = p.buildEnv()
	p.meta = backend.Metadata{Name: cfg.ModelName, Version: cfg.Version, Platform: Platform}
	return p, nil
}

func (p *Pool) buildEnv() []string {
	env := os.Environ()
	set := map[string]bool{}
	for _, kv := range append(env, p.cfg.Env...) {
		if k, _, ok := strings.Cut(kv, "="); ok {
			set[k] = true
		}
	}
	for _, k := range threadVars {
		if !set[k] {
			env = append(env, k+"=1")
		}
	}
	env = append(env,
		"AZUREML_MODEL_DIR="+p.cfg.ModelDir,
		"AZUREML_ENTRY_SCRIPT="+filepath.Base(p.cfg.EntryScript),
		"MLSHIP_ENTRY_SCRIPT="+p.cfg.EntryScript,
		"MLSHIP_SOURCE_DIR="+p.cfg.SourceDir,
		"PYTHONUNBUFFERED=1", // print() lines reach the log as they happen
		"MLSHIP_WORKER_POLL_US="+strconv.Itoa(int(p.poll.Microseconds())),
	)
	return append(env, p.cfg.Env...)
}

// Start launches every worker and returns once all of their init() calls returned.
// If any init() fails, every worker is stopped and the *backend.InitError is returned.
func (p *Pool) Start(ctx context.Context) error {
	dir, script, err := writeShim()
	if err != nil {
		return err
	}
	p.dir, p.script = dir, script
	workers := make([]*worker, p.cfg.Workers)
	errs := make([]error, p.cfg.Workers)
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[i], errs[i] = p.startWorker(ictx, i+1)
			if errs[i] != nil {
				cancel() // one failed init fails the replica; do not wait for the others
			}
		}()
	}
	wg.Wait()
	if err := firstInitError(errs); err != nil {
		for _, w := range workers {
			if w != nil {
				w.kill()
			}
		}
		return err
	}
	p.closeMu.Lock()
	for _, w := range workers {
		p.live[w] = struct{}{}
		p.sched.add(w)
	}
	p.closeMu.Unlock()
	info := workers[0].info
	p.meta.RawHTTP = info.RawHTTP
	p.meta.InputSchema = nonNull(info.Schema.Input)
	p.meta.OutputSchema = nonNull(info.Schema.Output)
	p.logger.Info("python workers ready", "workers", p.cfg.Workers, "entry_script", p.cfg.EntryScript)
	return nil
}

// firstInitError prefers the root cause over the "interrupted" errors of workers cancelled because of it.
func firstInitError(errs []error) error {
	for _, err := range errs {
		if errors.Is(err, backend.ErrInit) {
			return err
		}
	}
	return errors.Join(errs...)
}

func nonNull(b []byte) []byte {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}

// Metadata implements backend.Backend.
func (p *Pool) Metadata() backend.Metadata { return p.meta }

// Restarts is how many workers were replaced after crashing or timing out.
func (p *Pool) Restarts() uint64 { return p.restarts.Load() }

// Score runs run() in a worker. The worker's deadline is ctx's; a client going away does not
// interrupt run(), because killing a worker for that would cost a full init().
func (p *Pool) Score(ctx context.Context, req *backend.Request) (*backend.Result, error) {
	select {
	case <-p.closed:
		return nil, backend.ErrNotReady
	default:
	}
	if err := ctx.Err(); err != nil {
		// Already too late: answering now must not cost a worker.
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("before running: %w", backend.ErrTimeout)
		}
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	buf := framePool.Get().(*[]byte)
	frame := encodeRequest((*buf)[:0], req, p.meta.RawHTTP)
	defer func() {
		if cap(frame) <= 1<<20 { // do not keep one huge request's buffer
			*buf = frame
			framePool.Put(buf)
		}
	}()
	for {
		// A request may wait in a busy worker's socket only while run() is short (then the worker
		// finds it there instead of sleeping and being woken) and only if its frame is small, so
		// writing it never blocks.
		pipeline := p.cfg.Pipeline > 1 && p.service.Load() < int64(pipelineBelow) && len(frame) <= directWriteMax
		w, err := p.acquire(ctx, pipeline)
		if err != nil {
			return nil, err
		}
		// A lone request has a core to spare: neither this process nor the worker should sleep while
		// the other works, because waking a sleeping process costs tens of microseconds on a virtual
		// machine, longer than many run() calls.
		var poll time.Duration
		if req.Alone && p.poll > 0 && (p.pollMisses.Load() < missesBeforePause || p.lone.Add(1)%pollProbeEvery == 0) {
			poll = p.poll
		}
		// done gives the request's place in w back, replacing w first if it cannot be used again.
		done := func(replace bool) {
			if replace {
				p.replace(w) // only the first of several calls queued in w does anything
			}
			p.sched.release(w)
		}
		o := w.call(frame, deadline, poll, func(fatal bool) {
			if fatal {
				p.logger.Warn("run() of a request abandoned at its deadline did not finish in time; replacing the worker", "worker", w.id)
			}
			done(fatal)
		})
		if o.abandoned {
			return nil, o.err // its place in w is released once the worker has answered it
		}
		if o.polled {
			if o.missed {
				p.pollMisses.Add(1)
			} else {
				p.pollMisses.Store(0)
			}
		}
		if o.service > 0 {
			old := p.service.Load() // concurrent updates may lose a sample; it is an estimate
			p.service.Store(old + (int64(o.service)-old)/8)
		}
		if o.fatal {
			switch {
			case errors.Is(o.err, errNotStarted):
				p.logger.Warn("worker failed before running a request queued in it; replacing it", "worker", w.id, "err", o.err)
			case errors.Is(o.err, backend.ErrTimeout):
				p.logger.Warn("run() exceeded the scoring timeout; replacing the worker", "worker", w.id)
			default:
				p.logger.Error("worker failed mid-request; replacing it", "worker", w.id, "err", o.err)
			}
		}
		// A worker that failed before this request's turn came is removed here too, so it is not
		// taken again before the call that failed replaces it; another worker runs the request.
		notStarted := errors.Is(o.err, errNotStarted)
		done(o.fatal || notStarted)
		if notStarted {
			continue
		}
		if me := (*backend.ModelError)(nil); errors.As(o.err, &me) {
			p.logger.Error("run() raised", "worker", w.id, "error", me.Error())
		}
		return o.res, o.err
	}
}

// acquire takes an idle worker, or with pipeline a busy one with room, skipping (and replacing) any
// that died while idle, so a request is not failed for a crash that happened before it arrived.
func (p *Pool) acquire(ctx context.Context, pipeline bool) (*worker, error) {
	for {
		w, wt := p.sched.take(pipeline)
		if w == nil {
			select {
			case w = <-wt.c:
			case <-ctx.Done():
				p.sched.cancel(wt)
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return nil, fmt.Errorf("waiting for a free worker: %w", backend.ErrTimeout)
				}
				return nil, ctx.Err()
			case <-p.closed:
				p.sched.cancel(wt)
				return nil, backend.ErrNotReady
			}
		}
		select {
		case <-w.exited:
			p.logger.Error("worker died; replacing it", "worker", w.id, "status", w.exitStatus())
			p.replace(w)
			p.sched.release(w)
			continue
		default:
		}
		if err := ctx.Err(); err != nil { // handed a worker just as time ran out
			p.sched.release(w)
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("waiting for a free worker: %w", backend.ErrTimeout)
			}
			return nil, err
		}
		return w, nil
	}
}

// replace kills w and starts another worker in its place, retrying with backoff while init fails.
// Several requests queued in w may call it; only the first does anything.
func (p *Pool) replace(w *worker) {
	if !p.sched.remove(w) {
		return
	}
	w.kill()
	p.closeMu.Lock()
	delete(p.live, w)
	if p.isClosed {
		p.closeMu.Unlock()
		return
	}
	p.spawns.Add(1)
	p.closeMu.Unlock()
	p.restarts.Add(1)
	go func() {
		defer p.spawns.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-p.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		backoff := 500 * time.Millisecond
		for {
			nw, err := p.startWorker(ctx, w.id)
			if err == nil {
				p.closeMu.Lock()
				if p.isClosed {
					p.closeMu.Unlock()
					nw.kill()
					return
				}
				p.live[nw] = struct{}{}
				p.closeMu.Unlock()
				p.sched.add(nw)
				p.logger.Info("replacement worker ready", "worker", w.id)
				return
			}
			if ctx.Err() != nil {
				return
			}
			p.logger.Error("replacement worker failed to start", "worker", w.id, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-p.closed:
				return
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}()
}

// Close stops every worker (EOF first, SIGKILL after a grace period) and waits for them.
func (p *Pool) Close() error {
	p.closeMu.Lock()
	if p.isClosed {
		p.closeMu.Unlock()
		return nil
	}
	p.isClosed = true
	close(p.closed)
	live := make([]*worker, 0, len(p.live))
	for w := range p.live {
		live = append(live, w)
	}
	p.live = map[*worker]struct{}{}
	p.closeMu.Unlock()
	var wg sync.WaitGroup
	for _, w := range live {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop(2 * time.Second) }()
	}
	wg.Wait()
	p.spawns.Wait()
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
	return nil
}

// framePool recycles request frame buffers.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

const (
	missesBeforePause = 3
	pollProbeEvery    = 64
	// pipelineBelow: requests are queued in busy workers only while run() takes less than this on
	// average; beyond it the wake-up a queued request saves is small next to run() itself.
	pipelineBelow = time.Millisecond
)

// sched knows how many requests each live worker holds and hands out workers: an idle one first,
// most recently used first (under light load the same worker takes every request, so its caches
// stay warm and the others sleep), else, when pipelining, the least busy one with room. Requests
// that find nothing wait in arrival order, and each freed place is handed to the first of them
// that can use it; while a request that needs an idle worker waits first in line, nothing more is
// queued in busy workers, so they drain and it is not overtaken for ever.
type sched struct {
	mu      sync.Mutex
	depth   int       // requests one worker may hold (Config.Pipeline)
	idle    []*worker // live workers holding no request, most recently used last
	all     []*worker // live workers
	waiters []*waiter // in arrival order
}

// waiter is a request waiting for a worker; it receives one on c, already counted in the worker.
type waiter struct {
	pipeline bool
	c        chan *worker
}

// take returns a worker and counts the caller's request in it, or nil and the waiter that will
// receive one; a caller that stops waiting must call cancel.
func (s *sched) take(pipeline bool) (*worker, *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiters) == 0 { // else any room went to them first: queue behind them
		if w := s.pick(pipeline); w != nil {
			return w, nil
		}
	}
	wt := &waiter{pipeline: pipeline, c: make(chan *worker, 1)}
	s.waiters = append(s.waiters, wt)
	return nil, wt
}

// pick finds a worker with room and counts a request in it; s.mu held.
func (s *sched) pick(pipeline bool) *worker {
	if n := len(s.idle); n > 0 {
		w := s.idle[n-1]
		s.idle = s.idle[:n-1]
		w.held++
		return w
	}
	if !pipeline {
		return nil
	}
	var best *worker
	for _, w := range s.all {
		if w.held < s.depth && (best == nil || w.held < best.held) {
			best = w
		}
	}
	if best != nil {
		best.held++
	}
	return best
}

// dispatch hands workers with room to waiters, first come first served; s.mu held.
func (s *sched) dispatch() {
	for len(s.waiters) > 0 {
		wt := s.waiters[0]
		w := s.pick(wt.pipeline)
		if w == nil {
			return
		}
		s.waiters = slices.Delete(s.waiters, 0, 1)
		wt.c <- w
	}
}

// cancel withdraws a waiter; a worker already handed to it is released.
func (s *sched) cancel(wt *waiter) {
	s.mu.Lock()
	if i := slices.Index(s.waiters, wt); i >= 0 {
		s.waiters = slices.Delete(s.waiters, i, i+1)
		if i == 0 {
			s.dispatch() // the waiters behind it may fit where it did not
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.release(<-wt.c)
}

// release uncounts one request of w.
func (s *sched) release(w *worker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.held--
	if w.held == 0 && !w.gone {
		s.idle = append(s.idle, w)
	}
	s.dispatch()
}

// add makes a new worker available.
func (s *sched) add(w *worker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, w)
	s.idle = append(s.idle, w)
	s.dispatch()
}

// remove takes w out of service; it reports false if w was already removed.
func (s *sched) remove(w *worker) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.gone {
		return false
	}
	w.gone = true
	s.all = slices.DeleteFunc(s.all, func(x *worker) bool { return x == w })
	s.idle = slices.DeleteFunc(s.idle, func(x *worker) bool { return x == w })
	return true
}
