// Package rawconn wraps a socket so its reads and writes are raw system calls.
//
// Go performs an ordinary socket read or write as a blocking-capable system call: the scheduler
// marks the goroutine's P as in a system call, and when the call lasts longer than a sysmon tick
// (20 µs; a loopback TCP write, which runs the receiver's network stack inline, often does on a
// virtual machine) sysmon hands the P to another thread. With one P, as a scoring replica runs,
// that hand-off wakes a second thread for every such call and keeps sysmon polling every 20 µs:
// thread switches that cost more than the work. The sockets here are non-blocking, so their calls
// never sleep; making them raw keeps the P where it is. Waiting for readiness still goes through
// the runtime's poller, with deadlines.
package rawconn

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write are raw non-blocking system calls.
type Conn struct {
	net.Conn
	rc syscall.RawConn
}

// Wrap returns c with raw reads and writes, or c itself if it exposes no file descriptor.
func Wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{Conn: c, rc: rc}
}

// Read implements net.Conn.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until readable
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, renameOp(err, "read") // deadline or closed, as the runtime poller reports them
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write implements net.Conn.
func (c *Conn) Write(b []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[n])), uintptr(len(b)-n))
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until writable
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, renameOp(err, "write")
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

// CloseWrite shuts down the writing side, if the wrapped connection can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: c.LocalAddr().Network(), Err: syscall.ENOTSUP}
}

// renameOp makes the runtime poller's "raw-read"/"raw-write" errors look like those of an ordinary
// Read or Write, which callers such as net/http inspect.
func renameOp(err error, op string) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
	}
	return err
}

func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// Listener wraps every accepted connection with Wrap.
type Listener struct{ net.Listener }

// Accept implements net.Listener.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
