package python

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mlship/mlship/internal/scoring/backend"
)

// worker is one Python process running the entry script. It takes requests from the pool's shared
// queue one at a time, records the one it runs in its slot, and answers on its own socket.
type worker struct {
	id     int // also its slot: id-1
	cmd    *exec.Cmd
	conn   *net.UnixConn
	raw    syscall.RawConn
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited closes
	info   initInfo

	buf    []byte        // what the reader read and has not yet delivered
	failed atomic.Bool   // the socket reported EOF or an error: the worker is gone
	used   atomic.Uint64 // useClock when it last answered: the pool wakes the most recent sleeper
}

// useClock orders the workers' answers.
var useClock atomic.Uint64

// wake writes a byte to the worker's socket, which its sleep there waits for. Through the RawConn,
// so a worker closed meanwhile is not a reused descriptor.
func (w *worker) wake() {
	b := [1]byte{1}
	w.raw.Write(func(fd uintptr) bool {
		syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), 1)
		return true // a full buffer already holds a wake
	})
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

	p.slots.set(id-1, 0)
	p.slots.setState(id-1, stStarting)
	cmd := exec.Command(p.cfg.Python, "-B", p.script)
	cmd.Dir = p.cfg.SourceDir
	cmd.Env = append(slices.Clip(p.env), "MLSHIP_WORKER_SLOT="+strconv.Itoa(id-1)) // a copy: workers start concurrently
	cmd.ExtraFiles = []*os.File{child, p.queueChild, p.slots.file}                 // fds 3, 4 and 5 in the worker
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
	w := &worker{id: id, cmd: cmd, conn: conn, raw: raw, exited: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		out.flush()
		close(w.exited)
	}()

	conn.SetReadDeadline(time.Now().Add(p.cfg.InitTimeout))
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	// Unbuffered: a worker takes queued requests as soon as it is ready, and their answers, which
	// may follow the ready frame at once, are the reader's.
	kind, payload, err := readFrame(conn)
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

// readAnswers is the worker's reader: it sleeps until the socket is readable and then delivers
// every answer that arrived, until the socket fails (the worker died or was killed), and then
// hands the worker to gone.
func (w *worker) readAnswers(deliver func(id uint64, o outcome), gone func(*worker, error)) {
	var cause error
	err := w.raw.Read(func(fd uintptr) bool {
		cause = w.drain(fd, deliver)
		return cause != nil
	})
	if cause == nil {
		cause = err
	}
	w.failed.Store(true)
	gone(w, cause)
}

// drain reads until the socket has nothing more, delivering each complete answer; it returns the
// error that ended the socket, if one did.
func (w *worker) drain(fd uintptr, deliver func(id uint64, o outcome)) error {
	for {
		for {
			id, o, n := w.parse()
			if n == 0 {
				break
			}
			w.buf = w.buf[n:]
			if o.fatal {
				return o.err
			}
			w.used.Store(useClock.Add(1))
			deliver(id, o)
		}
		if len(w.buf) == 0 && cap(w.buf) > 1<<20 {
			w.buf = nil // do not keep one huge answer's buffer
		}
		if cap(w.buf)-len(w.buf) < 4<<10 {
			nb := make([]byte, len(w.buf), max(64<<10, 2*cap(w.buf)))
			copy(nb, w.buf)
			w.buf = nb
		}
		free := w.buf[len(w.buf):cap(w.buf)]
		r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&free[0])), uintptr(len(free)))
		switch n := int(r); {
		case errno == syscall.EAGAIN:
			return nil
		case errno == syscall.EINTR:
		case errno != 0:
			return w.transportError(errno)
		case n == 0:
			return w.transportError(io.EOF)
		default:
			w.buf = w.buf[:len(w.buf)+n]
		}
	}
}

// parse decodes the first complete answer in w.buf, returning its length n (0 if incomplete).
func (w *worker) parse() (id uint64, o outcome, n int) {
	if len(w.buf) < 5 {
		return 0, o, 0
	}
	size := binary.BigEndian.Uint32(w.buf)
	if size > maxFrame || size < answerHead {
		return 0, outcome{err: fmt.Errorf("worker %d: malformed %d-byte answer", w.id, size), fatal: true}, 5
	}
	if len(w.buf) < 5+int(size) {
		if cap(w.buf) < 5+int(size) { // make room for the whole answer at once
			nb := make([]byte, len(w.buf), 5+int(size))
			copy(nb, w.buf)
			w.buf = nb
		}
		return 0, o, 0
	}
	kind := w.buf[4]
	id = binary.BigEndian.Uint64(w.buf[5:])
	took := time.Duration(binary.BigEndian.Uint64(w.buf[13:]))
	payload := slices.Clone(w.buf[5+answerHead : 5+size]) // results outlive the buffer
	switch kind {
	case kindJSON:
		o.res = &backend.Result{Body: payload, RunTime: took}
	case kindRaw:
		if o.res, o.err = decodeRaw(payload); o.res != nil {
			o.res.RunTime = took
		}
	case kindRaised:
		var pe pyError
		if err := json.Unmarshal(payload, &pe); err != nil {
			o.err = &backend.ModelError{Type: "mlship", Message: "the worker sent a malformed error: " + err.Error()}
		} else {
			o.err = &backend.ModelError{Type: pe.Type, Message: pe.Message, Traceback: pe.Traceback}
		}
	case kindBadInput:
		o.err = fmt.Errorf("%w: %s", backend.ErrBadInput, payload)
	case kindExpired:
		o.err = fmt.Errorf("before running: %w", backend.ErrTimeout)
	default:
		o.err, o.fatal = fmt.Errorf("worker %d: unexpected frame %q", w.id, kind), true
	}
	return id, o, 5 + int(size)
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

// stop waits up to grace for the worker to exit (the pool closed the queue, so it sees EOF), then
// kills it; anything it started in its group goes too.
func (w *worker) stop(grace time.Duration) {
	select {
	case <-w.exited:
	case <-time.After(grace):
	}
	w.kill()
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
