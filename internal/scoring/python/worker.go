package python

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/rawconn"
)

// worker is one Python process running the entry script. It runs one request at a time; with
// pipelining, more requests wait in its socket, and it answers them in order.
type worker struct {
	id     int
	cmd    *exec.Cmd
	conn   *net.UnixConn
	rw     net.Conn // conn with raw reads and writes
	raw    syscall.RawConn
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited closes
	info   initInfo

	mu   sync.Mutex    // orders and serializes the frames written; guards last
	last chan struct{} // closed once the answer to the last request written has been read
	// broken: a call failed in a way that leaves the stream unusable; set before that call passes
	// its turn on, so the requests behind it know they never started.
	broken atomic.Bool
	// mayHaveStarted is the done channel of a call that failed after the worker had answered it:
	// the request right behind it may have begun running, so it must not be run again elsewhere.
	// Written by the call holding the turn before it passes the turn on.
	mayHaveStarted chan struct{}

	r *bufio.Reader // read only by the call whose answer is next (its predecessor's last is closed)

	held int  // requests taken for this worker and not yet released; guarded by sched.mu
	gone bool // removed from service; guarded by sched.mu
}

// errNotStarted: the request went to a worker that failed before running it, so it can run elsewhere.
var errNotStarted = errors.New("the worker failed before running the request")

// outcome is how one call went.
type outcome struct {
	res            *backend.Result
	err            error
	fatal          bool          // the worker is unusable and must be replaced
	polled, missed bool          // the call polled for its answer; and did not see it within the budget
	service        time.Duration // how long the answer took once the request's turn came; 0 if unknown
	abandoned      bool          // the caller gave up while queued; see worker.call
}

type initInfo struct {
	RawHTTP bool `json:"rawhttp"`
	PID     int  `json:"pid"`
	Schema  struct {
		Input  json.RawMessage `json:"input"`
		Output json.RawMessage `json:"output"`
	} `json:"schema"`
}

type pyError struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	Traceback string `json:"traceback"`
}

// startWorker starts a worker process and waits until its init() returns, raises, or initTimeout passes.
func (p *Pool) startWorker(ctx context.Context, id int) (*worker, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("worker %d: socketpair: %w", id, err)
	}
	parent := os.NewFile(uintptr(fds[0]), "mlship-worker")
	child := os.NewFile(uintptr(fds[1]), "mlship-worker-child")
	defer child.Close()
	c, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", id, err)
	}
	conn := c.(*net.UnixConn)

	cmd := exec.Command(p.cfg.Python, "-B", p.script)
	cmd.Dir = p.cfg.SourceDir
	cmd.Env = p.env
	cmd.ExtraFiles = []*os.File{child} // fd 3 in the worker
	out := &lineLogger{logger: p.logger, worker: id}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group so a kill takes the user's subprocesses too; die with the replica.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("worker %d: start %s: %w", id, p.cfg.Python, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		cmd.Process.Kill()
		return nil, fmt.Errorf("worker %d: %w", id, err)
	}
	rw := rawconn.Wrap(conn) // reads and writes that never hand the replica's one P to another thread
	w := &worker{id: id, cmd: cmd, conn: conn, rw: rw, raw: raw, r: bufio.NewReaderSize(rw, 64<<10), exited: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		out.flush()
		close(w.exited)
	}()

	conn.SetReadDeadline(time.Now().Add(p.cfg.InitTimeout))
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	kind, payload, err := readFrame(w.r)
	stop()
	conn.SetReadDeadline(time.Time{})
	switch {
	case err != nil && ctx.Err() != nil:
		w.kill()
		return nil, fmt.Errorf("worker %d: init interrupted: %w", id, ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.kill()
		return nil, &backend.InitError{Worker: id, Message: fmt.Sprintf("init() did not return within %s", p.cfg.InitTimeout)}
	case err != nil:
		w.kill()
		return nil, &backend.InitError{Worker: id, Message: fmt.Sprintf("worker exited before init() returned (%s); see its output above", w.exitStatus())}
	case kind == kindInitErr:
		var pe pyError
		json.Unmarshal(payload, &pe)
		w.kill()
		return nil, &backend.InitError{Worker: id, Message: pe.Type + ": " + pe.Message, Traceback: pe.Traceback}
	case kind != kindReady:
		w.kill()
		return nil, &backend.InitError{Worker: id, Message: fmt.Sprintf("worker sent frame %q before init finished", kind)}
	}
	if err := json.Unmarshal(payload, &w.info); err != nil {
		w.kill()
		return nil, &backend.InitError{Worker: id, Message: "worker sent a malformed ready message: " + err.Error()}
	}
	return w, nil
}

// call sends one request frame (see encodeRequest) and reads the answer. When earlier requests
// are still waiting for their answers in w, it writes right behind them and reads its own answer
// when theirs have been read. With poll > 0, the worker is asked to poll for its next request
// after answering, and a call with nothing ahead of it polls for the answer for up to poll (at
// most until the deadline) before sleeping.
//
// A call whose deadline passes while it waits behind another returns ErrTimeout at once and marks
// itself abandoned: the worker still runs the request, so a goroutine reads and drops its answer
// when its turn comes and then calls after (fatal when that answer never came), which must
// release the caller's place in w. For any other outcome the caller releases it.
func (w *worker) call(frame []byte, deadline time.Time, poll time.Duration, after func(fatal bool)) (o outcome) {
	kind := frame[4] &^ pollBit
	w.mu.Lock()
	// Observed before broken: a call that fails stores broken before it closes its done, so a
	// closed predecessor seen here guarantees its broken is seen below.
	first := w.last == nil || isClosed(w.last)
	if w.broken.Load() {
		w.mu.Unlock()
		return outcome{err: errNotStarted}
	}
	budget := time.Until(deadline) // how long run() may take from when the request's turn comes
	if !deadline.IsZero() && budget <= 0 {
		w.mu.Unlock()
		return outcome{err: fmt.Errorf("before running: %w", backend.ErrTimeout)}
	}
	prev, done := w.last, make(chan struct{})
	w.last = done
	abandoned := false
	defer func() {
		if abandoned {
			return // the goroutine that drops the answer passes the turn on
		}
		if o.fatal {
			w.broken.Store(true) // before passing the turn: the requests behind this one never start
		}
		close(done)
	}()
	if !first {
		poll = 0 // only a lone request polls
	}
	frame[4] = kind | pollFlag(poll)
	if !deadline.IsZero() {
		poll = min(poll, budget) // the deadline is enforced by the wait after polling
	}
	var start time.Time
	if first {
		w.conn.SetDeadline(deadline)
		start = time.Now()
		wrote, err := w.send(frame, poll, &o) // unlocks w.mu
		switch {
		case err == nil:
		case wrote == 0 && errors.Is(err, os.ErrDeadlineExceeded):
			// Nothing reached the worker, so it stays in service.
			return outcome{err: fmt.Errorf("before running: %w", backend.ErrTimeout)}
		case wrote < len(frame):
			return outcome{err: fmt.Errorf("%w: %w", errNotStarted, w.transportError(err)), fatal: true}
		default:
			if errors.Is(err, os.ErrDeadlineExceeded) && w.answerArrived() {
				w.mayHaveStarted = done // run() finished as time ran out; the next request may have begun
			}
			return outcome{err: w.transportError(err), fatal: true}
		}
	} else {
		// Frames queued behind another are small (Pool.Score), so this write fits in the socket
		// buffer and does not block while w.mu is held.
		w.conn.SetWriteDeadline(deadline)
		n, err := w.rw.Write(frame)
		if err != nil && n == 0 {
			w.last = prev // nothing went out and nothing can be queued behind this call yet: undo
			w.mu.Unlock()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return outcome{err: fmt.Errorf("before running: %w", backend.ErrTimeout)}
			}
			return outcome{err: fmt.Errorf("%w: %w", errNotStarted, w.transportError(err)), fatal: true}
		}
		w.mu.Unlock()
		if err != nil { // part of the frame went out: the stream is unusable
			return outcome{err: fmt.Errorf("%w: %w", errNotStarted, w.transportError(err)), fatal: true}
		}
		if !waitTurn(prev, deadline) {
			abandoned = true
			go w.drop(prev, done, budget, after)
			return outcome{err: fmt.Errorf("waiting behind another request in worker %d: %w", w.id, backend.ErrTimeout), abandoned: true}
		}
		if w.broken.Load() {
			if w.mayHaveStarted == prev {
				// The worker had answered the request ahead and may have begun this one.
				return outcome{err: fmt.Errorf("worker %d was replaced while it may have been running this request: %w", w.id, backend.ErrWorkerCrashed), fatal: true}
			}
			return outcome{err: errNotStarted}
		}
		w.conn.SetReadDeadline(deadline)
		start = time.Now()
	}
	kind, payload, err := readFrame(w.r)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && w.answerArrived() {
			w.mayHaveStarted = done // run() finished as time ran out; the next request may have begun
		}
		return outcome{err: w.transportError(err), fatal: true}
	}
	o.service = time.Since(start)
	switch kind {
	case kindJSON:
		o.res = &backend.Result{Body: payload}
	case kindRaw:
		o.res, o.err = decodeRaw(payload)
	case kindRaised:
		var pe pyError
		if err := json.Unmarshal(payload, &pe); err != nil {
			o.err, o.fatal = fmt.Errorf("worker %d: malformed error frame: %w", w.id, err), true
		} else {
			o.err = &backend.ModelError{Type: pe.Type, Message: pe.Message, Traceback: pe.Traceback}
		}
	case kindBadInput:
		o.err = fmt.Errorf("%w: %s", backend.ErrBadInput, payload)
	default:
		o.err, o.fatal = fmt.Errorf("worker %d: unexpected frame %q", w.id, kind), true
	}
	if o.fatal {
		w.mayHaveStarted = done // the answer was read whole, so the worker went on to the next request
	}
	return o
}

// waitTurn waits until prev is closed (the answers ahead have been read) or the deadline passes.
func waitTurn(prev chan struct{}, deadline time.Time) bool {
	select {
	case <-prev:
		return true
	default:
	}
	if deadline.IsZero() {
		<-prev
		return true
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-prev:
		return true
	case <-t.C:
		return false
	}
}

// drop takes the turn of a request whose caller gave up while it waited behind another: it reads
// and discards the answer, allowing run() the budget the request had when it was sent, then passes
// the turn on and calls after.
func (w *worker) drop(prev, done chan struct{}, budget time.Duration, after func(fatal bool)) {
	<-prev
	fatal := false
	if !w.broken.Load() { // else the request never started, or the worker is being replaced anyway
		w.conn.SetReadDeadline(time.Now().Add(budget))
		if _, _, err := readFrame(w.r); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && w.answerArrived() {
				w.mayHaveStarted = done // see call
			}
			fatal = true
			w.broken.Store(true)
		} else {
			w.conn.SetReadDeadline(time.Time{})
		}
	}
	close(done)
	after(fatal)
}

// answerArrived reports whether the worker has sent anything not yet read.
func (w *worker) answerArrived() bool {
	if w.r.Buffered() > 0 {
		return true
	}
	arrived := false
	w.raw.Control(func(fd uintptr) { arrived = pollReadable(int(fd), 0) })
	return arrived
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// encodeRequest appends the frame for req to dst; Pool.Score encodes once, and call sets the
// frame's poll flag.
func encodeRequest(dst []byte, req *backend.Request, rawHTTP bool) []byte {
	if rawHTTP {
		meta, _ := json.Marshal(map[string]any{"method": req.Method, "path": req.Path, "query": req.Query, "headers": req.Header})
		var ml [4]byte
		binary.BigEndian.PutUint32(ml[:], uint32(len(meta)))
		return appendFrame(dst, kindHTTP, ml[:], meta, req.Body)
	}
	return appendFrame(dst, kindRun, req.Body)
}

// directWriteMax bounds the frames sent by send's fast path and the frames queued behind another
// request; far below a socket buffer, so such a write completes at once.
const directWriteMax = 32 << 10

// send writes frame, unlocks w.mu once the whole frame is out (frames of requests queued behind
// this one must not interleave with it), and returns once the reply is (probably) readable, with
// how many bytes of the frame it wrote. For small frames it writes from inside a read-readiness
// wait: the readiness flag is reset before the request goes out, so the reply's arrival cannot be
// missed, and the read that would only return EAGAIN is saved (system calls are the largest
// per-request cost here).
//
// With poll > 0 it then polls for the reply for up to poll before sleeping, without giving up the
// goroutine's thread: waking a sleeping thread costs more than a short run() on a virtual machine.
func (w *worker) send(frame []byte, poll time.Duration, o *outcome) (wrote int, err error) {
	locked := true
	unlock := func() {
		if locked {
			w.mu.Unlock()
			locked = false
		}
	}
	defer unlock()
	if len(frame) > directWriteMax || w.r.Buffered() > 0 {
		return w.rw.Write(frame)
	}
	written := 0
	var werr error
	err = w.raw.Read(func(fd uintptr) bool {
		if written == 0 && werr == nil {
			r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&frame[0])), uintptr(len(frame)))
			n := int(r)
			if errno != 0 || n < len(frame) {
				if errno != 0 {
					n, werr = 0, errno
				}
				written = n
				return true // finish below with an ordinary write
			}
			written = n
			unlock()
			if poll > 0 {
				got := pollReadable(int(fd), poll)
				o.polled, o.missed = true, !got
				return got
			}
			return false // wait until the worker answers
		}
		return true
	})
	if err != nil {
		if locked {
			return written, err // the deadline had passed before the write
		}
		return len(frame), err // the deadline passed while run() was working
	}
	if locked {
		n, err := w.rw.Write(frame[written:])
		return written + n, err
	}
	return len(frame), nil
}

// pollReadable reports whether fd has data to read within d, checking without blocking and yielding
// the thread to other goroutines between checks. The check is a raw system call: it never blocks,
// and an ordinary one would let the runtime hand this P to another thread, which then spins too.
func pollReadable(fd int, d time.Duration) bool {
	var b [1]byte
	start := time.Now()
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno != syscall.EAGAIN && errno != syscall.EINTR {
			return true // data, EOF or an error: the read that follows reports which
		}
		if time.Since(start) > d {
			return false
		}
		runtime.Gosched()
	}
}

func pollFlag(poll time.Duration) byte {
	if poll > 0 {
		return pollBit
	}
	return 0
}

// decodeRaw decodes an AMLResponse frame. A malformed one was still read whole, so the worker
// stays usable; the request fails with 502.
func decodeRaw(payload []byte) (*backend.Result, error) {
	bad := func(why string) error {
		return &backend.ModelError{Type: "AMLResponse", Message: "the entry script returned an AMLResponse mlship cannot send: " + why}
	}
	if len(payload) < 4 {
		return nil, bad("truncated")
	}
	n := binary.BigEndian.Uint32(payload)
	if uint64(n)+4 > uint64(len(payload)) {
		return nil, bad("truncated")
	}
	var meta struct {
		Status      int               `json:"status"`
		Headers     map[string]string `json:"headers"`
		ContentType string            `json:"content_type"`
	}
	if err := json.Unmarshal(payload[4:4+n], &meta); err != nil {
		return nil, bad(err.Error())
	}
	res := &backend.Result{Status: meta.Status, ContentType: meta.ContentType, Body: payload[4+n:]}
	if len(meta.Headers) > 0 {
		res.Header = make(http.Header, len(meta.Headers))
		for k, v := range meta.Headers {
			res.Header.Set(k, v)
		}
	}
	return res, nil
}

func (w *worker) transportError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("worker %d: %w", w.id, backend.ErrTimeout)
	}
	// The worker most likely died; give Wait a moment so the message says how.
	select {
	case <-w.exited:
	case <-time.After(500 * time.Millisecond):
	}
	return fmt.Errorf("worker %d (%s): %w", w.id, w.exitStatus(), backend.ErrWorkerCrashed)
}

func (w *worker) exitStatus() string {
	select {
	case <-w.exited:
		if w.err == nil {
			return "exited with status 0"
		}
		return w.err.Error()
	default:
		return "still running"
	}
}

// kill ends the worker's whole process group and waits until it is reaped.
func (w *worker) kill() {
	syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	w.conn.Close()
	<-w.exited
}

// stop asks the worker to exit (EOF on its socket), then kills it after grace.
func (w *worker) stop(grace time.Duration) {
	w.conn.CloseWrite()
	select {
	case <-w.exited:
		// The worker is gone; anything it started in its group goes too.
		syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		w.conn.Close()
	case <-time.After(grace):
		w.kill()
	}
}

// lineLogger turns a worker's stdout/stderr into one log record per line.
type lineLogger struct {
	logger *slog.Logger
	worker int
	buf    []byte
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.logger.Info(string(l.buf[:i]), "worker", l.worker)
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 { // a huge line without newline: log it in pieces
		l.flush()
	}
	return len(b), nil
}

func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.logger.Info(string(l.buf), "worker", l.worker)
		l.buf = l.buf[:0]
	}
}
