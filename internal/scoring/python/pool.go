// Package python runs Azure ML entry scripts (init()/run()) in a pool of Python worker processes.
package python

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

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
	PollMicros  int           // how long a worker polls for the next request after answering a lone one; 0 never
	Env         []string      // extra KEY=VALUE entries for the workers
	ModelName   string
	Version     string
}

// threadVars are pinned to 1 per worker unless set, because N workers each spawning a thread per
// core oversubscribe the CPU and make latency worse, not better.
var threadVars = []string{"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"}

// Pool is a backend.Backend running the entry script in Workers processes.
//
// Requests go into one queue all workers take from (a SOCK_SEQPACKET socket: the kernel gives each
// message to exactly one reader), so a request waits for the first free worker, never behind a
// busy one, and a worker that finishes finds the next request waiting instead of sleeping until
// the replica picks one for it. Each worker records the id of the request it runs in a slot of
// shared memory; when a worker dies or overruns the scoring timeout, that slot says which request
// it took with it, and every request still queued is simply taken by another worker.
//
// Idle workers sleep on their own sockets, not in the queue, so that the replica, not the kernel,
// picks which one wakes: the most recently used, whose caches are warm, and only when no busy or
// polling worker will take the request first (see wake).
type Pool struct {
	cfg    Config
	logger *slog.Logger
	env    []string
	dir    string // shim directory
	script string

	queue      int      // the replica's end of the shared queue (non-blocking)
	queueChild *os.File // the workers' end
	slots      *slots
	workers    []atomic.Pointer[worker] // by slot; nil while a worker is being replaced
	nextID     atomic.Uint64
	pendMu     sync.Mutex
	pending    map[uint64]chan outcome // requests sent and not yet answered
	inflight   atomic.Int32            // len(pending)

	poll time.Duration // Config.PollMicros; 0 on a single core, where polling only delays the other side

	closed   chan struct{}
	closeMu  sync.Mutex
	isClosed bool
	spawns   sync.WaitGroup
	restarts atomic.Uint64
	meta     backend.Metadata
}

// outcome is how one request went.
type outcome struct {
	res   *backend.Result
	err   error
	fatal bool // the worker's stream is unusable (only from parse)
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
		cfg:     cfg,
		logger:  logger,
		closed:  make(chan struct{}),
		workers: make([]atomic.Pointer[worker], cfg.Workers),
		pending: map[uint64]chan outcome{},
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
		"MLSHIP_WORKERS="+strconv.Itoa(p.cfg.Workers),
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
	if err := p.openQueue(); err != nil {
		os.RemoveAll(dir)
		return err
	}
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
		p.closeQueue()
		os.RemoveAll(dir)
		return err
	}
	for _, w := range workers {
		p.serve(w)
	}
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
	deadline, hasDeadline := ctx.Deadline()
	var mono int64 // the deadline on CLOCK_MONOTONIC, which the worker reads too; 0 for none
	if hasDeadline {
		mono = monotonic() + int64(time.Until(deadline))
	}
	// After a lone request the worker polls the queue for the next one instead of sleeping: waking
	// a sleeping process costs tens of microseconds on a virtual machine, more than many run()
	// calls. This side does not poll for the answer: with the client on the same cores, a third
	// spinning party slowed every request (see docs/scoring.md).
	poll := req.Alone && p.poll > 0
	id := p.nextID.Add(1)
	done := make(chan outcome, 1)
	p.pendMu.Lock()
	p.pending[id] = done
	p.inflight.Add(1)
	p.pendMu.Unlock()
	if err := p.send(id, mono, req, poll, deadline); err != nil {
		p.untrack(id)
		return nil, err
	}
	p.wake()
	var timeout <-chan time.Time
	if hasDeadline {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	var o outcome
	select {
	case o = <-done:
	case <-timeout:
		o = p.expire(id, done, mono)
	case <-p.closed:
		p.untrack(id)
		return nil, backend.ErrNotReady
	}
	if me := (*backend.ModelError)(nil); errors.As(o.err, &me) {
		p.logger.Error("run() raised", "error", me.Error())
	}
	return o.res, o.err
}

// send puts the request into the shared queue: a message with its id, deadline and kind, and the
// payload inline or, when large, in a memfd passed along with it.
func (p *Pool) send(id uint64, mono int64, req *backend.Request, poll bool, deadline time.Time) error {
	kind := kindRun
	var meta []byte
	if p.meta.RawHTTP {
		kind = kindHTTP
		meta, _ = json.Marshal(map[string]any{"method": req.Method, "path": req.Path, "query": req.Query, "headers": req.Header})
	}
	if poll {
		kind |= pollBit
	}
	size := len(req.Body)
	if meta != nil {
		size += 4 + len(meta)
	}
	buf := msgPool.Get().(*[]byte)
	defer msgPool.Put(buf)
	msg := binary.BigEndian.AppendUint64((*buf)[:0], id)
	msg = binary.BigEndian.AppendUint64(msg, uint64(mono))
	var oob []byte
	if size > inlineMax {
		f, err := payloadFile(meta, req.Body)
		if err != nil {
			return err
		}
		defer f.Close()
		oob = syscall.UnixRights(int(f.Fd()))
		msg = append(msg, kind|fdBit)
	} else {
		msg = append(msg, kind)
		if meta != nil {
			msg = binary.BigEndian.AppendUint32(msg, uint32(len(meta)))
			msg = append(msg, meta...)
		}
		msg = append(msg, req.Body...)
		if cap(msg) <= 64<<10 {
			*buf = msg
		}
	}
	for {
		var err error
		if oob == nil {
			_, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(p.queue), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)))
			if errno != 0 {
				err = errno
			}
		} else {
			err = syscall.Sendmsg(p.queue, msg, oob, nil, syscall.MSG_DONTWAIT)
		}
		switch {
		case err == nil:
			return nil
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			// The queue is full (large requests, workers all busy): wait for room, within the deadline.
			wait := -1
			if !deadline.IsZero() {
				left := time.Until(deadline)
				if left <= 0 {
					return fmt.Errorf("waiting for room in the request queue: %w", backend.ErrTimeout)
				}
				wait = int(left/time.Millisecond) + 1
			}
			unix.Poll([]unix.PollFd{{Fd: int32(p.queue), Events: unix.POLLOUT}}, min(wait, 100))
			select {
			case <-p.closed:
				return backend.ErrNotReady
			default:
			}
		default:
			return fmt.Errorf("send the request to the workers: %w", err)
		}
	}
}

// payloadFile returns a memfd holding a large request's payload (meta length, meta, body).
func payloadFile(meta, body []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("mlship-request", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("request payload: %w", err)
	}
	f := os.NewFile(uintptr(fd), "mlship-request")
	if meta != nil {
		var ml [4]byte
		binary.BigEndian.PutUint32(ml[:], uint32(len(meta)))
		if _, err := f.Write(append(ml[:], meta...)); err != nil {
			f.Close()
			return nil, fmt.Errorf("request payload: %w", err)
		}
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		return nil, fmt.Errorf("request payload: %w", err)
	}
	return f, nil
}

// Queued implements backend.QueueReporter: requests sent and not answered, less the workers
// running one. A sample, not exact: states change while it is read.
func (p *Pool) Queued() int {
	busy := 0
	for i := range p.workers {
		if p.slots.state(i) == stBusy && p.workers[i].Load() != nil {
			busy++
		}
	}
	return max(0, int(p.inflight.Load())-busy)
}

// Worker states, in the word after each slot; the worker sets the first three (see mlship_worker.py).
const (
	stBusy     = 0 // running a request; it looks at the queue again before it sleeps
	stSpin     = 1 // polling the queue
	stSleep    = 2 // asleep on its own socket
	stWaking   = 3 // asleep, and sent a byte that wakes it
	stStarting = 4 // not yet taking requests (init, or replaced)
)

// wake wakes a sleeping worker if the requests queued outnumber the workers that will take one
// without being woken (the polling ones, and those already being woken). Busy workers are not
// counted: a request queued behind them while a worker sleeps would wait a whole run().
//
// It must run after a request is queued: a worker sets its state to stSleep and then looks at the
// queue once more before it sleeps, so either that look finds the request or this one finds the
// worker asleep (both sides go through the socket's lock, a full barrier, between the two steps).
// The most recently used sleeper is woken, for its warm caches. A spurious wake costs one look at
// an empty queue.
func (p *Pool) wake() {
	for range len(p.workers) {
		busy, ready, best := 0, 0, -1
		var bestUsed uint64
		var bw *worker
		for i := range p.workers {
			switch p.slots.state(i) {
			case stBusy:
				busy++
			case stSpin, stWaking:
				ready++
			case stSleep:
				if w := p.workers[i].Load(); w != nil && (bw == nil || w.used.Load() > bestUsed) {
					best, bw, bestUsed = i, w, w.used.Load()
				}
			}
		}
		if bw == nil || int(p.inflight.Load())-busy <= ready {
			return
		}
		if p.slots.casState(best, stSleep, stWaking) {
			bw.wake()
			return
		}
		// It woke by itself, or another request woke it: look again.
	}
}

// holder is the live worker running request id, or nil.
func (p *Pool) holder(id uint64) *worker {
	for i := range p.workers {
		if p.slots.get(i) == id {
			if w := p.workers[i].Load(); w != nil && !w.failed.Load() {
				return w
			}
		}
	}
	return nil
}

// deliver hands an answer to the request waiting for it; one nobody waits for any more is dropped.
func (p *Pool) deliver(id uint64, o outcome) {
	if done, ok := p.untrack(id); ok {
		done <- o
	}
}

// untrack takes request id out of pending and returns the channel of its caller, if still waiting.
func (p *Pool) untrack(id uint64) (chan outcome, bool) {
	p.pendMu.Lock()
	done, ok := p.pending[id]
	if ok {
		delete(p.pending, id)
		p.inflight.Add(-1)
	}
	p.pendMu.Unlock()
	return done, ok
}

// expire answers a request whose deadline passed. A worker running it is killed and replaced; a
// request still queued is dropped here, and the worker that takes it later sees the deadline passed
// and does not run it.
func (p *Pool) expire(id uint64, done chan outcome, mono int64) outcome {
	// The worker compares the same clock with the deadline after recording the request in its slot;
	// once the clock has passed the deadline here, a worker that will still run the request is in
	// its slot already.
	if d := mono - monotonic(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if _, waiting := p.untrack(id); !waiting {
		return <-done // answered meanwhile
	}
	if w := p.holder(id); w != nil {
		p.logger.Warn("run() exceeded the scoring timeout; replacing the worker", "worker", w.id)
		p.workerGone(w, nil)
		return outcome{err: fmt.Errorf("worker %d: %w", w.id, backend.ErrTimeout)}
	}
	return outcome{err: fmt.Errorf("waiting for a free worker: %w", backend.ErrTimeout)}
}

// serve puts w in its slot and starts its reader.
func (p *Pool) serve(w *worker) {
	p.workers[w.id-1].Store(w)
	go w.readAnswers(p.deliver, p.workerGone)
}

// workerGone takes a dead (or timed-out, when cause is nil) worker out of service: the request it
// was running fails, and another worker is started in its place.
func (p *Pool) workerGone(w *worker, cause error) {
	if !p.workers[w.id-1].CompareAndSwap(w, nil) {
		return // already handled
	}
	w.kill()
	p.slots.setState(w.id-1, stStarting)
	// Requests queued while it polled were left to it: wake another worker for them.
	defer p.wake()
	if done, ok := p.untrack(p.slots.get(w.id - 1)); ok {
		if cause == nil || !errors.Is(cause, backend.ErrWorkerCrashed) {
			cause = fmt.Errorf("worker %d (%s): %w", w.id, w.exitStatus(), backend.ErrWorkerCrashed)
		}
		p.logger.Error("worker failed mid-request; replacing it", "worker", w.id, "err", cause)
		done <- outcome{err: cause}
	} else if cause != nil {
		p.logger.Error("worker died; replacing it", "worker", w.id, "status", w.exitStatus())
	}
	p.replace(w)
}

// replace starts another worker in w's place, retrying with backoff while init fails.
func (p *Pool) replace(w *worker) {
	p.closeMu.Lock()
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
				p.serve(nw)
				p.closeMu.Unlock()
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

// Close stops every worker (it closes the queue, so each sees EOF; SIGKILL after a grace period)
// and waits for them.
func (p *Pool) Close() error {
	p.closeMu.Lock()
	if p.isClosed {
		p.closeMu.Unlock()
		return nil
	}
	p.isClosed = true
	close(p.closed)
	var live []*worker
	for i := range p.workers {
		if w := p.workers[i].Swap(nil); w != nil {
			live = append(live, w)
		}
	}
	p.closeMu.Unlock()
	p.spawns.Wait() // replacements see closed and stop
	p.closeQueue()
	for _, w := range live {
		w.wake() // asleep on its socket, it wakes to find the queue closed
	}
	var wg sync.WaitGroup
	for _, w := range live {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop(2 * time.Second) }()
	}
	wg.Wait()
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
	return nil
}

// openQueue creates the shared request queue and the workers' slots.
func (p *Pool) openQueue() error {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("request queue: %w", err)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return fmt.Errorf("request queue: %w", err)
	}
	syscall.SetsockoptInt(fds[0], syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20) // as much as the system allows
	p.queue, p.queueChild = fds[0], os.NewFile(uintptr(fds[1]), "mlship-queue")
	if p.slots, err = newSlots(p.cfg.Workers); err != nil {
		p.closeQueue()
		return err
	}
	return nil
}

func (p *Pool) closeQueue() {
	if p.queueChild != nil {
		syscall.Close(p.queue)
		p.queueChild.Close()
		p.queueChild = nil
	}
	if p.slots != nil {
		p.slots.close()
	}
}

// slots is shared memory holding, for each worker, the id of the request it runs (or ran last) and
// its state (stBusy...): two 8-byte words.
type slots struct {
	file *os.File
	mem  []byte
}

func newSlots(n int) (*slots, error) {
	fd, err := unix.MemfdCreate("mlship-slots", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("worker slots: %w", err)
	}
	f := os.NewFile(uintptr(fd), "mlship-slots")
	size := (16*n + 4095) &^ 4095
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("worker slots: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("worker slots: %w", err)
	}
	sl := &slots{file: f, mem: mem}
	// Unmapped only once nothing can reach it: a request, a reader or a metrics scrape still
	// running when the pool closes reads it, and unmapping it then would crash the process.
	runtime.AddCleanup(sl, func(mem []byte) { unix.Munmap(mem) }, mem)
	return sl, nil
}

// The worker stores its words with aligned 8-byte writes in native byte order.
func (s *slots) word(i int) *uint64       { return (*uint64)(unsafe.Pointer(&s.mem[8*i])) }
func (s *slots) get(i int) uint64         { return atomic.LoadUint64(s.word(2 * i)) }
func (s *slots) set(i int, v uint64)      { atomic.StoreUint64(s.word(2*i), v) }
func (s *slots) state(i int) uint64       { return atomic.LoadUint64(s.word(2*i + 1)) }
func (s *slots) setState(i int, v uint64) { atomic.StoreUint64(s.word(2*i+1), v) }
func (s *slots) casState(i int, old, v uint64) bool {
	return atomic.CompareAndSwapUint64(s.word(2*i+1), old, v)
}

// close closes the file; the mapping stays until the slots are garbage (see newSlots).
func (s *slots) close() { s.file.Close() }

// monotonic is CLOCK_MONOTONIC, the clock Python's time.monotonic_ns() reads, in nanoseconds. It
// is computed from Go's monotonic clock, which is CLOCK_MONOTONIC read without a system call.
func monotonic() int64 { return monoBase + int64(time.Since(monoStart)) }

var monoStart, monoBase = func() (time.Time, int64) {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now(), ts.Nano()
}()

// msgPool recycles request message buffers.
var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

const (
	// inlineMax: larger payloads go to the worker in a memfd, so the queue's socket buffer holds
	// many requests and a large one never has to be split.
	inlineMax = 16 << 10
)
