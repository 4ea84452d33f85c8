package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const servicePrefix = "/api/v1/service/"

// VersionHeader pins a request to an endpoint version (Azure's header).
const VersionHeader = "azureml-model-deployment"

// versionHeaderKey is VersionHeader canonicalized once (Header.Get would do it per request).
var versionHeaderKey = http.CanonicalHeaderKey(VersionHeader)

var (
	bufPool  = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
)

// ServeHTTP routes:
//
//	GET  /                                     liveness ("Healthy")
//	GET  /metrics                              Prometheus metrics (unauthenticated: no secrets, only counts)
//	POST|GET /api/v1/service/{name}/score      → replica /score
//	GET  /api/v1/service/{name}/swagger.json   → replica /swagger.json
//	*    /api/v1/service/{name}/v2/...         → replica /v2/... (Open Inference Protocol)
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	path := req.URL.Path
	if !strings.HasPrefix(path, servicePrefix) {
		switch path {
		case "/":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "Healthy\n")
		case "/metrics":
			r.metrics.handler.ServeHTTP(w, req)
		default:
			r.metrics.observeUnrouted(http.StatusNotFound)
			writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no route for %s: scoring URIs look like %s{service}/score", path, servicePrefix))
		}
		return
	}
	rest := path[len(servicePrefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		r.metrics.observeUnrouted(http.StatusNotFound)
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no route for %s: scoring URIs look like %s{service}/score", path, servicePrefix))
		return
	}
	name, sub := rest[:i], rest[i:]
	var allowed string
	switch {
	case sub == "/score":
		if req.Method != http.MethodPost && req.Method != http.MethodGet {
			allowed = "GET, POST"
		}
	case sub == "/swagger.json":
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			allowed = "GET, HEAD"
		}
	case strings.HasPrefix(sub, "/v2/") || sub == "/v2":
	default:
		r.metrics.observeUnrouted(http.StatusNotFound)
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no route for %s: a service serves /score, /swagger.json and /v2/...", path))
		return
	}
	svc := r.lookup(name)
	if svc == nil {
		r.metrics.observeUnrouted(http.StatusNotFound)
		writeError(w, http.StatusNotFound, "ServiceNotFound", fmt.Sprintf("service %q not found: list services with `mlship service list`", name))
		return
	}
	start := time.Now()
	st := svc.state.Load()
	if allowed != "" {
		w.Header().Set("Allow", allowed)
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", fmt.Sprintf("%s does not accept %s", sub, req.Method))
		st.m.observe(http.StatusMethodNotAllowed, start)
		return
	}
	if ok, msg := st.authorize(req, r.opts.Tokens, r.opts.Now); !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mlship", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "Unauthorized", msg)
		st.m.observe(http.StatusUnauthorized, start)
		return
	}
	if req.ContentLength > r.opts.MaxBodyBytes {
		r.tooLarge(w, st.m, start)
		return
	}
	r.route(w, req, svc, st, sub, start)
}

// route picks the version and forwards. When the chosen version disappears while the
// request waits (a config change), the request is routed again under the new config.
func (r *Router) route(w http.ResponseWriter, req *http.Request, svc *service, st *serviceState, sub string, start time.Time) {
	var pinned string
	if v := req.Header[versionHeaderKey]; len(v) > 0 {
		pinned = v[0]
	}
	// Bodies of known, modest length are read before a replica is taken (a slow client holds
	// no replica slot) and feed the fast path; others stream, or are read only to mirror them.
	var body []byte
	buffered := false
	if n := req.ContentLength; n >= 0 && n <= fastBodyMax {
		bp := bodyPool.Get().(*[]byte)
		if int64(cap(*bp)) < n {
			*bp = make([]byte, n)
		}
		body = (*bp)[:n]
		defer func() {
			if cap(*bp) <= 64<<10 {
				bodyPool.Put(bp)
			}
		}()
		if _, err := io.ReadFull(req.Body, body); err != nil {
			if req.Context().Err() != nil {
				st.m.observe(499, start)
				return
			}
			writeError(w, http.StatusBadRequest, "BadRequest", "the request body could not be read: "+err.Error())
			st.m.observe(http.StatusBadRequest, start)
			return
		}
		buffered = true
	}
	for attempt := 0; ; attempt++ {
		var v *version
		if pinned != "" {
			if v = st.versions[pinned]; v == nil {
				writeError(w, http.StatusNotFound, "VersionNotFound",
					fmt.Sprintf("service %q has no version %q; its versions are %s", st.cfg.Name, pinned, st.names))
				st.m.observe(http.StatusNotFound, start)
				return
			}
		} else {
			name, ok := st.picker.Pick()
			if !ok {
				writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", fmt.Sprintf("service %q has no version receiving traffic", st.cfg.Name))
				st.m.observe(http.StatusServiceUnavailable, start)
				return
			}
			v = st.versions[name]
			if st.mirror != nil && attempt == 0 {
				var arr [traffic6]string
				if targets := st.mirror.Targets(arr[:0]); len(targets) > 0 {
					if !buffered {
						var tooBig bool
						body, tooBig = r.readBody(req)
						if tooBig {
							r.tooLarge(w, v.pool.m, start)
							return
						}
						buffered = true
					}
					for _, t := range targets {
						if mv := st.versions[t]; mv != nil && mv != v {
							r.mirror(req, st, mv, sub, body)
						}
					}
				}
			}
		}
		rep, err := v.pool.acquire(req.Context(), st.cfg.Limits.MaxQueueWait)
		if errors.Is(err, errGone) && attempt < 3 {
			if st = svc.state.Load(); r.lookup(svc.name) == svc {
				continue
			}
		}
		if err != nil {
			r.unavailable(w, req, st, v, err, start)
			return
		}
		if buffered && r.opts.Collect != nil && r.opts.Collect(st.cfg.Name, v.name) {
			cw := &captureWriter{ResponseWriter: w, status: http.StatusOK}
			r.forward(cw, req, st, v, rep, sub, body, buffered, start)
			r.opts.OnCollect(st.cfg.Name, v.name, body, cw.buf, cw.status, time.Since(start))
			return
		}
		r.forward(w, req, st, v, rep, sub, body, buffered, start)
		return
	}
}

// maxCapture bounds the answer kept for data collection.
const maxCapture = 1 << 20

// captureWriter keeps a copy of the answer (up to maxCapture) for data collection.
type captureWriter struct {
	http.ResponseWriter
	status int
	buf    []byte
}

func (c *captureWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if room := maxCapture - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return c.ResponseWriter.Write(p)
}

func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// traffic6 bounds the mirror targets of one request (an endpoint's version limit).
const traffic6 = 6

func (r *Router) unavailable(w http.ResponseWriter, req *http.Request, st *serviceState, v *version, err error, start time.Time) {
	if req.Context().Err() != nil {
		v.pool.m.observe(499, start) // client went away while queued
		return
	}
	var msg, retry string
	switch {
	case errors.Is(err, errNoReplica):
		retry = "5"
		msg = fmt.Sprintf("service %q version %q has no ready replica (waited %v): it may be starting or scaling from zero; retry shortly",
			st.cfg.Name, v.name, st.cfg.Limits.MaxQueueWait)
	case errors.Is(err, errGone):
		retry = "1"
		msg = fmt.Sprintf("service %q version %q was removed while the request waited", st.cfg.Name, v.name)
	default:
		retry = "1"
		msg = fmt.Sprintf("service %q version %q: every replica is busy and the request waited maxQueueWait (%v); "+
			"retry, or raise maxConcurrentRequestsPerContainer, maxQueueWaitMs or the replica count",
			st.cfg.Name, v.name, st.cfg.Limits.MaxQueueWait)
	}
	w.Header().Set("Retry-After", retry)
	writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", msg)
	v.pool.m.observe(http.StatusServiceUnavailable, start)
}

func (r *Router) tooLarge(w http.ResponseWriter, m *versionMetrics, start time.Time) {
	w.Header().Set("Connection", "close") // the rest of the body is not read
	writeError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge",
		fmt.Sprintf("request body is over the router's limit of %d bytes", r.opts.MaxBodyBytes))
	m.observe(http.StatusRequestEntityTooLarge, start)
}

// readBody reads the whole body, up to MaxBodyBytes.
func (r *Router) readBody(req *http.Request) (b []byte, tooBig bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, r.opts.MaxBodyBytes+1))
	if int64(len(b)) > r.opts.MaxBodyBytes {
		return nil, true
	}
	if err != nil {
		return nil, false // the forward below sends what arrived; the replica sees a short body
	}
	return b, false
}

// limitedBody passes the body through and fails once it exceeds max bytes.
type limitedBody struct {
	rc       io.ReadCloser
	left     int64
	exceeded bool
}

var errBodyTooLarge = errors.New("request body too large")

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		b.exceeded = true
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.exceeded = true
		return 0, errBodyTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; neither is Authorization: the
// key or token is for the router, and the model's code has no business seeing it.
var dropHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Authorization": true,
}

func outHeader(in http.Header) http.Header {
	out := make(http.Header, len(in))
	for k, vv := range in {
		if !dropHeaders[k] {
			out[k] = vv // shared, never modified
		}
	}
	if c := in["Connection"]; len(c) > 0 {
		for _, v := range c {
			for f := range strings.SplitSeq(v, ",") {
				delete(out, http.CanonicalHeaderKey(strings.TrimSpace(f)))
			}
		}
	}
	return out
}

func (r *Router) forward(w http.ResponseWriter, req *http.Request, st *serviceState, v *version, rep *replica, sub string, body []byte, buffered bool, start time.Time) {
	defer v.pool.release(rep)
	if buffered && rep.conns != nil {
		r.fastForward(w, req, st, v, rep, sub, body, start)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), st.cfg.Limits.ScoringTimeout)
	defer cancel()
	out := (&http.Request{
		Method:     req.Method,
		URL:        &url.URL{Scheme: rep.target.Scheme, Host: rep.target.Host, Path: sub, RawQuery: req.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     outHeader(req.Header),
		Host:       rep.target.Host,
	}).WithContext(ctx)
	var lb *limitedBody
	switch {
	case buffered:
		out.ContentLength = int64(len(body))
		if len(body) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(body))
		}
	case req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody:
		lb = &limitedBody{rc: req.Body, left: r.opts.MaxBodyBytes}
		out.Body = lb
		out.ContentLength = req.ContentLength
	}
	resp, err := r.transport.RoundTrip(out)
	if err != nil {
		switch {
		case lb != nil && lb.exceeded:
			r.tooLarge(w, v.pool.m, start)
		case req.Context().Err() != nil:
			v.pool.m.observe(499, start)
		case ctx.Err() != nil:
			writeError(w, http.StatusGatewayTimeout, "GatewayTimeout", fmt.Sprintf(
				"replica did not answer within the scoring timeout (%v): raise scoringTimeoutMs or make the model faster",
				st.cfg.Limits.ScoringTimeout))
			v.pool.m.observe(http.StatusGatewayTimeout, start)
		default:
			r.opts.Logger.Warn("replica unreachable", "service", st.cfg.Name, "version", v.name, "replica", rep.id, "err", err)
			writeError(w, http.StatusBadGateway, "BadGateway", fmt.Sprintf("replica %s of service %q did not answer: %v", rep.id, st.cfg.Name, err))
			v.pool.m.observe(http.StatusBadGateway, start)
		}
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, vv := range resp.Header {
		if !dropHeaders[k] || k == "Authorization" {
			h[k] = vv
		}
	}
	w.WriteHeader(resp.StatusCode)
	bp := bufPool.Get().(*[]byte)
	_, err = io.CopyBuffer(w, resp.Body, *bp)
	bufPool.Put(bp)
	v.pool.m.observe(resp.StatusCode, start)
	if err != nil && req.Context().Err() == nil {
		// The status is already sent: abort so the client sees a broken response, not a short one.
		r.opts.Logger.Warn("response copy failed", "service", st.cfg.Name, "version", v.name, "replica", rep.id, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// mirror sends a copy of the request to version mv in the background: only if a replica
// slot is free right now, never queueing, answer discarded.
func (r *Router) mirror(req *http.Request, st *serviceState, mv *version, sub string, body []byte) {
	rep := mv.pool.tryAcquire()
	if rep == nil {
		mv.pool.m.mirrorDropped.Add(1)
		return
	}
	h := outHeader(req.Header)
	method, query := req.Method, req.URL.RawQuery
	body = bytes.Clone(body) // the request's buffer is reused once it is answered
	timeout := st.cfg.Limits.ScoringTimeout
	r.mirrorsWG.Add(1)
	go func() {
		defer r.mirrorsWG.Done()
		defer mv.pool.release(rep)
		ctx, cancel := context.WithTimeout(r.baseCtx, timeout)
		defer cancel()
		out := (&http.Request{
			Method: method, Header: h, Host: rep.target.Host,
			URL:   &url.URL{Scheme: rep.target.Scheme, Host: rep.target.Host, Path: sub, RawQuery: query},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, ContentLength: int64(len(body)),
		}).WithContext(ctx)
		if len(body) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := r.transport.RoundTrip(out)
		if err != nil {
			mv.pool.m.mirrorFailed.Add(1)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		mv.pool.m.mirrorSent.Add(1)
	}()
}

// writeError writes Azure's error shape: {"error":{"code":...,"message":...}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	b, _ := json.Marshal(errorBody{Error: errorDetail{Code: code, Message: msg}})
	w.Write(append(b, '\n'))
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
