package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path speaks HTTP/1.1 to plain-http replicas itself, on the handler's goroutine:
// net/http's Transport hands every request to two goroutines per connection (read and write
// loops), and those handoffs are most of a proxy's added latency. Bodies of known length up
// to fastBodyMax are read first and sent with the headers in one write; other requests (and
// https replicas) go through http.Transport.
const fastBodyMax = 1 << 20

// upConn is one keep-alive connection to a replica.
type upConn struct {
	net.Conn
	br     *bufio.Reader
	reused bool
}

// connPool keeps idle connections to one replica.
type connPool struct {
	addr   string
	dialer *net.Dialer
	idle   chan *upConn
	closed atomic.Bool
}

func newConnPool(addr string, dialer *net.Dialer, maxIdle int) *connPool {
	return &connPool{addr: addr, dialer: dialer, idle: make(chan *upConn, maxIdle)}
}

func (p *connPool) get(ctx context.Context) (*upConn, error) {
	select {
	case c := <-p.idle:
		c.reused = true
		return c, nil
	default:
	}
	return p.dial(ctx)
}

func (p *connPool) dial(ctx context.Context) (*upConn, error) {
	nc, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &upConn{Conn: nc, br: bufio.NewReaderSize(nc, 16<<10)}, nil
}

func (p *connPool) put(c *upConn) {
	if p.closed.Load() {
		c.Close()
		return
	}
	select {
	case p.idle <- c:
	default:
		c.Close()
	}
	if p.closed.Load() { // closed meanwhile: do not strand it
		p.closeIdle()
	}
}

// closeIdle closes idle connections; with done, later puts close theirs too.
func (p *connPool) closeIdle() {
	for {
		select {
		case c := <-p.idle:
			c.Close()
		default:
			return
		}
	}
}

func (p *connPool) close() {
	p.closed.Store(true)
	p.closeIdle()
}

var (
	reqBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
	longAgo    = time.Unix(1, 0)
)

// errFastTimeout marks a replica that did not answer within the scoring timeout.
var errFastTimeout = errors.New("scoring timeout")

// fastForward sends req (whose body is already in body) to rep and copies the answer to w.
func (r *Router) fastForward(w http.ResponseWriter, req *http.Request, st *serviceState, v *version, rep *replica, sub string, body []byte, start time.Time) {
	bp := reqBufPool.Get().(*[]byte)
	b := appendRequest((*bp)[:0], req, rep.target.Host, sub, body)
	defer func() {
		if cap(b) <= 64<<10 {
			*bp = b[:0]
			reqBufPool.Put(bp)
		}
	}()
	deadline := time.Now().Add(st.cfg.Limits.ScoringTimeout)
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		c, err := rep.conns.get(ctx)
		if err != nil {
			r.upstreamFailed(w, req, st, v, rep, err, start)
			return
		}
		c.SetDeadline(deadline)
		// A client that goes away cuts the wait short; SetDeadline is the only way to interrupt
		// a blocked read without another goroutine.
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(longAgo) })
		status, keep, sent, err := r.exchange(w, req, c, b, body)
		stopped := stop()
		if err == nil {
			if keep && stopped {
				// The deadline stays: the next request on c sets its own before any I/O.
				rep.conns.put(c)
			} else {
				c.Close()
			}
			v.pool.m.observe(status, start)
			return
		}
		c.Close()
		if sent {
			// The status is already sent: abort so the client sees a broken response, not a short one.
			v.pool.m.observe(status, start)
			if ctx.Err() == nil {
				r.opts.Logger.Warn("response copy failed", "service", st.cfg.Name, "version", v.name, "replica", rep.id, "err", err)
				panic(http.ErrAbortHandler)
			}
			return
		}
		// A reused connection the replica closed while idle fails before any answer; the
		// request did not reach the model, so it is sent again on a new connection.
		var retryable *staleConnError
		if c.reused && attempt == 0 && errors.As(err, &retryable) && ctx.Err() == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() && ctx.Err() == nil {
			err = errFastTimeout
		}
		r.upstreamFailed(w, req, st, v, rep, err, start)
		return
	}
}

// staleConnError is a failure before the first byte of the answer.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string { return e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

// upstreamFailed answers for a replica that gave no usable answer.
func (r *Router) upstreamFailed(w http.ResponseWriter, req *http.Request, st *serviceState, v *version, rep *replica, err error, start time.Time) {
	switch {
	case req.Context().Err() != nil:
		v.pool.m.observe(499, start)
	case errors.Is(err, errFastTimeout) || errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "GatewayTimeout", fmt.Sprintf(
			"replica did not answer within the scoring timeout (%v): raise scoringTimeoutMs or make the model faster",
			st.cfg.Limits.ScoringTimeout))
		v.pool.m.observe(http.StatusGatewayTimeout, start)
	default:
		r.opts.Logger.Warn("replica unreachable", "service", st.cfg.Name, "version", v.name, "replica", rep.id, "err", err)
		writeError(w, http.StatusBadGateway, "BadGateway", fmt.Sprintf("replica %s of service %q did not answer: %v", rep.id, st.cfg.Name, err))
		v.pool.m.observe(http.StatusBadGateway, start)
	}
}

// appendRequest serializes req for the replica: request line, forwarded headers, body.
func appendRequest(b []byte, req *http.Request, host, path string, body []byte) []byte {
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, path...)
	if q := req.URL.RawQuery; q != "" {
		b = append(b, '?')
		b = append(b, q...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	conn := req.Header["Connection"]
	for k, vv := range req.Header {
		if dropHeaders[k] || k == "Content-Length" || k == "Expect" || k == "Host" || listed(conn, k) {
			continue
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if len(body) > 0 || req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if len(body) <= 64<<10 {
		b = append(b, body...) // one write for headers and body
	}
	return b
}

// listed reports whether the Connection header names header k (making it hop-by-hop).
func listed(conn []string, k string) bool {
	for _, v := range conn {
		for len(v) > 0 {
			i := 0
			for i < len(v) && v[i] != ',' {
				i++
			}
			if http.CanonicalHeaderKey(string(bytes.TrimSpace([]byte(v[:i])))) == k {
				return true
			}
			if i == len(v) {
				break
			}
			v = v[i+1:]
		}
	}
	return false
}

// exchange writes the request and copies the response to w. sent reports whether the
// status was written to w (after which errors can only abort).
func (r *Router) exchange(w http.ResponseWriter, req *http.Request, c *upConn, b, body []byte) (status int, keep, sent bool, err error) {
	if _, err := c.Write(b); err != nil {
		return 0, false, false, &staleConnError{err}
	}
	if len(body) > 64<<10 {
		if _, err := c.Write(body); err != nil {
			return 0, false, false, err
		}
	}
	h := w.Header()
	var length int64
	var chunked bool
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			if len(line) == 0 && (errors.Is(err, io.EOF) || isConnReset(err)) {
				return 0, false, false, &staleConnError{err}
			}
			return 0, false, false, err
		}
		// "HTTP/1.1 200 OK\r\n"
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, false, false, fmt.Errorf("malformed status line %q", truncate(line))
		}
		status, err = strconv.Atoi(string(line[9:12]))
		if err != nil || status < 100 {
			return 0, false, false, fmt.Errorf("malformed status line %q", truncate(line))
		}
		keep = line[7] == '1'
		var hdrErr error
		keep, length, chunked, hdrErr = readHeaders(c.br, h, status >= 200, keep)
		if hdrErr != nil {
			return 0, false, false, hdrErr
		}
		if status >= 200 {
			break
		}
		// 1xx interim answers (e.g. 103 Early Hints) are dropped; read the final one.
	}
	noBody := req.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
	if !noBody && !chunked && length < 0 {
		keep = false // body runs to the end of the connection
	}
	w.WriteHeader(status)
	if noBody {
		return status, keep, true, nil
	}
	var src io.Reader = c.br
	switch {
	case chunked:
		src = httputil.NewChunkedReader(c.br)
	case length >= 0:
		if length <= int64(c.br.Buffered()) { // the common case: the whole body arrived with the headers
			p, _ := c.br.Peek(int(length))
			w.Write(p)
			c.br.Discard(int(length))
			return status, keep, true, nil
		}
		src = io.LimitReader(c.br, length)
	}
	bp := bufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(writerOnly{w}, src, *bp)
	bufPool.Put(bp)
	if err == nil && length >= 0 && n != length {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && chunked {
		err = skipTrailer(c.br) // the chunked reader stops before the trailer section
	}
	if err != nil && length < 0 && !chunked && errors.Is(err, io.EOF) {
		err = nil
	}
	return status, keep, true, err
}

// writerOnly hides ReadFrom, so CopyBuffer uses our buffer and not a sendfile probe.
type writerOnly struct{ io.Writer }

func skipTrailer(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return bytes.TrimRight(b, "\r\n")
}

func isConnReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// readHeaders reads header lines into h (the client's response headers), skipping
// hop-by-hop ones. set is false for 1xx answers, whose headers are not forwarded.
func readHeaders(br *bufio.Reader, h http.Header, set, keepIn bool) (keep bool, length int64, chunked bool, err error) {
	// Forwarded values are gathered on the stack and added to h at the end, sharing one string
	// and one slice backing array: two allocations per answer instead of two per header line.
	var keysArr [16]string
	var endsArr [16]int
	var valsArr [512]byte
	keys, ends, vals := keysArr[:0], endsArr[:0], valsArr[:0]
	keep, length = keepIn, -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			addHeaders(h, keys, ends, vals)
			return false, 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			addHeaders(h, keys, ends, vals)
			return keep, length, chunked, nil
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			addHeaders(h, keys, ends, vals)
			return false, 0, false, fmt.Errorf("malformed header line %q", truncate(line))
		}
		key := canonicalKey(line[:i])
		val := bytes.TrimSpace(line[i+1:])
		switch key {
		case "Content-Length":
			n, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || n < 0 {
				addHeaders(h, keys, ends, vals)
				return false, 0, false, fmt.Errorf("malformed Content-Length %q", truncate(val))
			}
			length = n
		case "Transfer-Encoding":
			chunked = bytes.EqualFold(val, []byte("chunked"))
			continue
		case "Connection":
			if bytes.EqualFold(val, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(val, []byte("keep-alive")) {
				keep = true
			}
			continue
		}
		if !set || dropHeaders[key] {
			continue
		}
		if len(keys) == cap(keysArr) { // many headers: add those gathered so far, start again
			addHeaders(h, keys, ends, vals)
			keys, ends, vals = keysArr[:0], endsArr[:0], valsArr[:0]
		}
		keys = append(keys, key)
		vals = append(vals, val...)
		ends = append(ends, len(vals))
	}
}

// addHeaders appends to h, in order, the value vals[ends[i-1]:ends[i]] of each keys[i].
func addHeaders(h http.Header, keys []string, ends []int, vals []byte) {
	if len(keys) == 0 {
		return
	}
	all := string(vals)
	vs := make([]string, len(keys))
	start := 0
	for i, k := range keys {
		vs[i] = all[start:ends[i]]
		start = ends[i]
		if old := h[k]; len(old) > 0 {
			h[k] = append(old, vs[i])
		} else {
			h[k] = vs[i : i+1 : i+1] // full slice: a later append to h[k] copies, never overwrites vs[i+1]
		}
	}
}

// canonicalKey returns the canonical form of a header name without allocating for the
// names replicas usually send.
func canonicalKey(k []byte) string {
	switch string(k) { // no allocation: the compiler recognizes this conversion
	case "Content-Type":
		return "Content-Type"
	case "Content-Length":
		return "Content-Length"
	case "Date":
		return "Date"
	case "Connection":
		return "Connection"
	case "Transfer-Encoding":
		return "Transfer-Encoding"
	}
	return http.CanonicalHeaderKey(string(k))
}
