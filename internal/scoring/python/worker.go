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
	"syscall"
	"time"
	"unsafe"

	"github.com/mlship/mlship/internal/scoring/backend"
)

// worker is one Python process running the entry script; it serves one request at a time.
type worker struct {
	id     int
	cmd    *exec.Cmd
	conn   *net.UnixConn
	raw    syscall.RawConn
	r      *bufio.Reader
	wbuf   []byte
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited closes
	info   initInfo
	// pollMissed: the last call polled for its answer and did not see it within the budget.
	pollMissed bool
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
	w := &worker{id: id, cmd: cmd, conn: conn, raw: raw, r: bufio.NewReaderSize(conn, 64<<10), exited: make(chan struct{})}
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

// call sends one request and reads the answer. A non-nil fatal means the worker is unusable.
// With poll > 0, the worker is asked to poll for its next request after answering, and this call
// polls for the answer for up to poll (at most until the deadline) before sleeping.
func (w *worker) call(deadline time.Time, req *backend.Request, rawHTTP bool, poll time.Duration) (res *backend.Result, err error, fatal bool) {
	w.conn.SetDeadline(deadline)
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
	if err := w.send(poll); err != nil {
		return nil, w.transportError(err), true
	}
	if cap(w.wbuf) > 1<<20 {
		w.wbuf = nil // do not pin one huge request's buffer for the worker's lifetime
	}
	kind, payload, err := readFrame(w.r)
	if err != nil {
		return nil, w.transportError(err), true
	}
	switch kind {
	case kindJSON:
		return &backend.Result{Body: payload}, nil, false
	case kindRaw:
		return decodeRaw(payload)
	case kindRaised:
		var pe pyError
		if err := json.Unmarshal(payload, &pe); err != nil {
			return nil, fmt.Errorf("worker %d: malformed error frame: %w", w.id, err), true
		}
		return nil, &backend.ModelError{Type: pe.Type, Message: pe.Message, Traceback: pe.Traceback}, false
	case kindBadInput:
		return nil, fmt.Errorf("%w: %s", backend.ErrBadInput, payload), false
	}
	return nil, fmt.Errorf("worker %d: unexpected frame %q", w.id, kind), true
}

// directWriteMax bounds the frames sent by send's fast path; far below a socket buffer, so the write completes.
const directWriteMax = 32 << 10

// send writes w.wbuf and returns once the reply is (probably) readable. For small frames it writes
// from inside a read-readiness wait: the readiness flag is reset before the request goes out, so
// the reply's arrival cannot be missed, and the read that would only return EAGAIN is saved
// (system calls are the largest per-request cost here).
//
// With poll > 0 it then polls for the reply for up to poll before sleeping, without giving up the
// goroutine's thread: waking a sleeping thread costs more than a short run() on a virtual machine.
func (w *worker) send(poll time.Duration) error {
	if len(w.wbuf) > directWriteMax || w.r.Buffered() > 0 {
		_, err := w.conn.Write(w.wbuf)
		return err
	}
	written := 0
	var werr error
	err := w.raw.Read(func(fd uintptr) bool {
		if written == 0 && werr == nil {
			n, err := syscall.Write(int(fd), w.wbuf)
			if err != nil || n < len(w.wbuf) {
				written, werr = max(n, 0), err
				return true // finish below with an ordinary write
			}
			written = n
			if poll > 0 {
				got := pollReadable(int(fd), poll)
				w.pollMissed = !got
				return got
			}
			return false // wait until the worker answers
		}
		return true
	})
	if err != nil {
		return err // the deadline passed while run() was working
	}
	if written < len(w.wbuf) {
		_, err := w.conn.Write(w.wbuf[written:])
		return err
	}
	return nil
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
