package python

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/scoring/rawconn"
)

// These tests drive worker.call against the other end of a socketpair instead of a Python
// process, to reach interleavings a real worker makes rare.

// socketWorker builds a worker around one end of a socketpair and returns the other end.
func socketWorker(t *testing.T) (*worker, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent := os.NewFile(uintptr(fds[0]), "replica")
	peer := os.NewFile(uintptr(fds[1]), "worker")
	c, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.UnixConn)
	raw, _ := conn.SyscallConn()
	rw := rawconn.Wrap(conn)
	exited := make(chan struct{})
	close(exited)
	return &worker{id: 1, conn: conn, rw: rw, raw: raw, r: bufio.NewReaderSize(rw, 64<<10), exited: exited}, peer
}

// A call that starts while the request ahead of it fails must not take the failed stream as its
// own: it sees broken (errNotStarted), or it waits for its turn and then sees it. Reading the
// late answer of the failed request as its own would hand a client another request's result.
func TestCallBehindAFailingCallNeverReadsItsAnswer(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs 2 Ps to interleave")
	}
	stale := appendFrame(nil, kindJSON, []byte(`"the answer of the request that failed"`))
	frame := appendFrame(nil, kindRun, []byte(`{}`))
	for i := 0; i < 30000; i++ {
		w, peer := socketWorker(t)
		go func() { // the failed request's answer arrives late, as the next frame is written
			b := make([]byte, len(frame))
			if _, err := io.ReadFull(peer, b); err == nil {
				peer.Write(stale)
			}
		}()
		failing := make(chan struct{})
		w.last = failing
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the failing call's epilogue: broken, then its turn passes on
			defer wg.Done()
			for j := 0; j < i%64; j++ {
				runtime.Gosched()
			}
			w.broken.Store(true)
			close(failing)
		}()
		o := w.call(append([]byte(nil), frame...), time.Now().Add(20*time.Millisecond), 0, func(bool) {})
		wg.Wait()
		if !errors.Is(o.err, errNotStarted) && !o.abandoned {
			body := ""
			if o.res != nil {
				body = string(o.res.Body)
			}
			t.Fatalf("iteration %d: the call behind a failed one went ahead: err=%v body=%s", i, o.err, body)
		}
		w.conn.Close()
		peer.Close()
	}
}

// A lone call whose deadline passes just as its whole answer arrives is treated as timed out, but
// the worker may have begun the request queued behind it: that one must not be re-run elsewhere.
func TestTimeoutAsTheAnswerArrivesMarksTheNextAsStarted(t *testing.T) {
	frame := appendFrame(nil, kindRun, []byte(`{}`))
	answer := appendFrame(nil, kindJSON, []byte(`1`))
	unmarked := 0
	for i := 0; i < 1000; i++ {
		w, peer := socketWorker(t)
		deadline := time.Now().Add(2 * time.Millisecond)
		sentAt := make(chan time.Time, 1)
		go func() {
			b := make([]byte, len(frame))
			if _, err := io.ReadFull(peer, b); err != nil {
				sentAt <- time.Time{}
				return
			}
			for at := deadline.Add(time.Duration(i%100-80) * time.Microsecond); time.Now().Before(at); {
			}
			peer.Write(answer)
			sentAt <- time.Now()
		}()
		o := w.call(append([]byte(nil), frame...), deadline, 0, func(bool) {})
		w.conn.Close() // ends the peer's read if the call wrote nothing (its deadline had passed)
		at := <-sentAt
		peer.Close()
		if o.fatal && !at.IsZero() && at.Before(deadline) && w.mayHaveStarted != w.last {
			unmarked++
		}
	}
	if unmarked > 0 {
		t.Fatalf("%d calls timed out after the whole answer had been sent without marking the next request as possibly started", unmarked)
	}
}
