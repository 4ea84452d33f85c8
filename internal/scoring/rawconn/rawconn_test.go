package rawconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// pair returns a wrapped server side and a plain client side of a loopback TCP connection.
func pair(t *testing.T) (server net.Conn, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = Listener{l}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := server.(*Conn); !ok {
		t.Fatalf("accepted %T, want *rawconn.Conn", server)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestReadWriteEOF(t *testing.T) {
	s, c := pair(t)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if n, err := s.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty Read = %d, %v", n, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	// CloseWrite reaches the peer as EOF; the peer closing reaches us as EOF.
	if err := s.(*Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("peer read after CloseWrite: %v, want EOF", err)
	}
	c.Close()
	if _, err := s.Read(buf); err != io.EOF {
		t.Fatalf("Read after the peer closed: %v, want EOF", err)
	}
}

// A write far larger than the socket buffers must wait for the peer to drain it, and arrive whole.
func TestLargeWrite(t *testing.T) {
	s, c := pair(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	if n, err := s.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	s.Close()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("peer got %d bytes, want the same %d", len(b), len(data))
	}
}

func TestDeadlinesAndClose(t *testing.T) {
	s, _ := pair(t)
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := s.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) > 5*time.Second {
		t.Fatalf("Read past its deadline: %v after %s, want a timeout", err, time.Since(start))
	}
	if oe := (*net.OpError)(nil); !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("error %v: want a *net.OpError with Op read", err)
	}
	s.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read blocked across Close returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

func TestWriteToResetPeer(t *testing.T) {
	s, c := pair(t)
	c.(*net.TCPConn).SetLinger(0) // close with RST
	c.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = s.Write([]byte("after the peer is gone"))
		time.Sleep(time.Millisecond)
	}
	if oe := (*net.OpError)(nil); !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write to a reset peer: %v, want a *net.OpError from write", err)
	}
}

// net/http over the wrapped listener: keep-alive requests, and a handler's context is cancelled
// when its client goes away (net/http's background read sees EOF through Read).
func TestHTTPServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cancelled := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) == "wait" {
			<-r.Context().Done()
			close(cancelled)
			return
		}
		w.Write(bytes.ToUpper(body))
	})}
	go srv.Serve(Listener{l})
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/"
	client := &http.Client{}
	for i := 0; i < 50; i++ {
		res, err := client.Post(url, "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "HELLO" {
			t.Fatalf("request %d: %q", i, b)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader("wait"))
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if _, err := client.Do(req); err == nil {
		t.Fatal("the cancelled request succeeded")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled when its client went away")
	}
}
