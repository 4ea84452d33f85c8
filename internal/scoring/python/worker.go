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

	mu     sync.Mutex    // orders and serializes the frames written; guards wbuf, last, broken
	wbuf   []byte        //
	last   chan struct{} // closed once the answer to the last request written has been read
	broken bool          // a call failed in a way that leaves the stream unusable

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

// call sends one request and reads the answer. When earlier requests are still waiting for their
// answers in w, it writes right behind them and reads its own answer when theirs have been read.
// With poll > 0, the worker is asked to poll for its next request after answering, and a call
// with nothing ahead of it polls for the answer for up to poll (at most until the deadline)
// before sleeping.
func (w *worker) call(deadline time.Time, req *backend.Request, rawHTTP bool, poll time.Duration) (o outcome) {
	w.mu.Lock()
	if w.broken {
		w.mu.Unlock()
		return outcome{err: errNotStarted}
	}
	prev, done := w.last, make(chan struct{})
	w.last = done
	defer func() {
		if o.fatal {
			w.mu.Lock()
			w.broken = true // before passing the turn: the requests behind this one never start
			w.mu.Unlock()
		}
		close(done)
	}()
	first := prev == nil || isClosed(prev)
	if !first {
		poll = 0 // only a lone request polls
	}
	if rawHTTP {
		meta, _ := json.Marshal(map[string]any{"method": req.Method, "path": req.Path, "query": req.Query, "headers": req.Header})
		var ml [4]byte
		binary.BigEndian.PutUint32(ml[:], uint32(len(meta)))
		w.wbuf = appendFrame(w.wbuf[:0], kindHTTP|pollFlag(poll), ml[:], meta, req.Body)
	} else {
		w.wbuf = appendFrame(w.wbuf[:0], kindRun|pollFlag(poll), req.Body)
	}
	if !deadline.IsZero() {
		poll = min(poll, time.Until(deadline)) // the deadline is enforced by the wait after polling
	}
	var start time.Time
	if first {
		w.conn.SetDeadline(deadline)
		start = time.Now()
		total := len(w.wbuf)
		wrote, err := w.send(poll, &o) // unlocks w.mu
		switch {
		case err == nil:
		case wrote == 0 && errors.Is(err, os.ErrDeadlineExceeded):
			// Nothing reached the worker, so it stays in service.
			return outcome{err: fmt.Errorf("before running: %w", backend.ErrTimeout)}
		case wrote < total:
			return outcome{err: fmt.Errorf("%w: %w", errNotStarted, w.transportError(err)), fatal: true}
		default:
			return outcome{err: w.transportError(err), fatal: true}
		}
	} else {
		w.conn.SetWriteDeadline(deadline)
		_, err := w.rw.Write(w.wbuf)
		w.shrink()
		w.mu.Unlock()
		if err != nil {
			return outcome{err: fmt.Errorf("%w: %w", errNotStarted, w.transportError(err)), fatal: true}
		}
		<-prev
		w.mu.Lock()
		broken := w.broken
		w.mu.Unlock()
		if broken {
			return outcome{err: errNotStarted}
		}
		w.conn.SetReadDeadline(deadline)
		start = time.Now()
	}
	kind, payload, err := readFrame(w.r)
	if err != nil {
		return outcome{err: w.transportError(err), fatal: true}
	}
	o.service = time.Since(start)
	switch kind {
	case kindJSON:
		o.res = &backend.Result{Body: payload}
	case kindRaw:
		o.res, o.err, o.fatal = decodeRaw(payload)
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
	return o
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// shrink drops a huge request's buffer, so it is not pinned for the worker's lifetime; w.mu held.
func (w *worker) shrink() {
	if cap(w.wbuf) > 1<<20 {
		w.wbuf = nil
	}
}

// directWriteMax bounds the frames sent by send's fast path; far below a socket buffer, so the write completes.
const directWriteMax = 32 << 10

// send writes w.wbuf, unlocks w.mu once the whole frame is out (frames of requests queued behind
// this one must not interleave with it), and returns once the reply is (probably) readable, with
// how many bytes of the frame it wrote. For small frames it writes from inside a read-readiness wait:
// the readiness flag is reset before the request goes out, so the reply's arrival cannot be
// missed, and the read that would only return EAGAIN is saved (system calls are the largest
// per-request cost here).
//
// With poll > 0 it then polls for the reply for up to poll before sleeping, without giving up the
// goroutine's thread: waking a sleeping thread costs more than a short run() on a virtual machine.
func (w *worker) send(poll time.Duration, o *outcome) (wrote int, err error) {
	total := len(w.wbuf) // w.wbuf belongs to the next writer once w.mu is unlocked
	locked := true
	unlock := func() {
		if locked {
			w.shrink()
			w.mu.Unlock()
			locked = false
		}
	}
	defer unlock()
	if len(w.wbuf) > directWriteMax || w.r.Buffered() > 0 {
		return w.rw.Write(w.wbuf)
	}
	written := 0
	var werr error
	err = w.raw.Read(func(fd uintptr) bool {
		if written == 0 && werr == nil {
			r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&w.wbuf[0])), uintptr(len(w.wbuf)))
			n := int(r)
			if errno != 0 || n < len(w.wbuf) {
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
		return total, err // the deadline passed while run() was working
	}
	if locked {
		n, err := w.rw.Write(w.wbuf[written:])
		return written + n, err
	}
	return total, nil
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

func decodeRaw(payload []byte) (*backend.Result, error, bool) {
	if len(payload) < 4 {
		return nil, errors.New("malformed AMLResponse frame"), true
	}
	n := binary.BigEndian.Uint32(payload)
	if uint64(n)+4 > uint64(len(payload)) {
		return nil, errors.New("malformed AMLResponse frame"), true
	}
	var meta struct {
		Status      int               `json:"status"`
		Headers     map[string]string `json:"headers"`
		ContentType string            `json:"content_type"`
	}
	if err := json.Unmarshal(payload[4:4+n], &meta); err != nil {
		return nil, fmt.Errorf("malformed AMLResponse frame: %w", err), true
	}
	res := &backend.Result{Status: meta.Status, ContentType: meta.ContentType, Body: payload[4+n:]}
	if len(meta.Headers) > 0 {
		res.Header = make(http.Header, len(meta.Headers))
		for k, v := range meta.Headers {
			res.Header.Set(k, v)
		}
	}
	return res, nil, false
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
