package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("Healthy")) })
	m.HandleFunc("POST /score", s.handleScore)
	m.HandleFunc("GET /score", s.handleScore) // reaches only @rawhttp scripts
	m.HandleFunc("GET /swagger.json", s.handleSwagger)
	m.HandleFunc("GET /metrics", s.handleMetrics)
	m.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]bool{"live": true}) })
	m.HandleFunc("GET /v2/health/ready", s.handleReady)
	m.HandleFunc("GET /v2", s.handleServerMetadata)
	m.HandleFunc("GET /v2/models/{model}", s.handleModelMetadata)
	m.HandleFunc("GET /v2/models/{model}/versions/{version}", s.handleModelMetadata)
	m.HandleFunc("GET /v2/models/{model}/ready", s.handleModelReady)
	m.HandleFunc("GET /v2/models/{model}/versions/{version}/ready", s.handleModelReady)
	m.HandleFunc("POST /v2/models/{model}/infer", s.handleInfer)
	m.HandleFunc("POST /v2/models/{model}/versions/{version}/infer", s.handleInfer)
	s.mux = m
}

// errorBody is Azure's ErrorResponse (see the swagger document).
type errorBody struct {
	StatusCode int    `json:"status_code"`
	Message    string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, code, errorBody{StatusCode: code, Message: msg})
}

// retryAfter is the Retry-After of every 503: the replica is busy or loading, try again in a second.
const retryAfter = "1"

// resultHead is the status and content type a backend's result is sent with.
func resultHead(res *backend.Result) (status int, contentType string) {
	status, contentType = res.Status, res.ContentType
	if status == 0 {
		status = 200
	}
	if contentType == "" {
		contentType = "application/json"
	}
	return status, contentType
}

// runTiming records how long the model's own code took and appends the Server-Timing value for it
// ("run;dur=" in milliseconds) to dst; it appends nothing when the backend did not say.
func (s *Server) runTiming(dst []byte, res *backend.Result) []byte {
	if res.RunTime <= 0 {
		return dst
	}
	s.metrics.run.observe(res.RunTime)
	dst = append(dst, "run;dur="...)
	return strconv.AppendFloat(dst, float64(res.RunTime)/1e6, 'f', 3, 64)
}

// tooLarge is the 413 message.
func (s *Server) tooLarge() string {
	return fmt.Sprintf("request body is over the %d-byte limit", s.cfg.MaxBodyBytes)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// errBodyTooLarge is a body over MaxBodyBytes (413).
var errBodyTooLarge = errors.New("request body too large")

// readBody reads the body before taking a concurrency slot, so slow uploads do not hold one.
func (s *Server) readBody(r *http.Request) (*bytes.Buffer, error) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, errBodyTooLarge
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		putBuf(buf)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errBodyTooLarge
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return buf, nil
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		bufPool.Put(b)
	}
}

// admit applies the replica's limits: readiness, body size, concurrency and queue wait.
// On success the caller must call done.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (body *bytes.Buffer, ctx context.Context, done func(), code int) {
	if !s.ready.Load() {
		writeError(w, 503, "the model is not ready yet")
		return nil, nil, nil, 503
	}
	body, err := s.readBody(r)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			writeError(w, 413, s.tooLarge())
			return nil, nil, nil, 413
		}
		writeError(w, 400, err.Error())
		return nil, nil, nil, 400
	}
	if err := s.lim.acquire(r.Context()); err != nil {
		putBuf(body)
		if errors.Is(err, errQueueTimeout) {
			writeError(w, 503, s.busyMessage())
			return nil, nil, nil, 503
		}
		return nil, nil, nil, 499 // client went away while queued
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ScoringTimeout)
	return body, ctx, func() { cancel(); s.lim.release(); putBuf(body) }, 0
}

func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code := s.score(w, r)
	s.metrics.observe(code, time.Since(start))
}

func (s *Server) score(w http.ResponseWriter, r *http.Request) int {
	// Whether the script is @rawhttp is known once the model is loaded (meta is set before ready);
	// until then a GET gets admit's 503 like a POST.
	if r.Method == http.MethodGet && s.ready.Load() && !s.meta.RawHTTP {
		w.Header().Set("Allow", "POST")
		writeError(w, 405, "GET /score is served only to @rawhttp entry scripts; POST the input")
		return 405
	}
	body, ctx, done, code := s.admit(w, r)
	if code != 0 {
		return code
	}
	defer done()
	req := &backend.Request{Body: body.Bytes(), Alone: s.lim.alone()}
	if s.meta.RawHTTP {
		req.Method, req.Path, req.Query, req.Header = r.Method, r.URL.Path, r.URL.RawQuery, r.Header
	}
	res, err := s.backend.Score(ctx, req)
	if err != nil {
		return s.writeBackendError(w, err)
	}
	status, ct := resultHead(res)
	h := w.Header()
	for k, v := range res.Header {
		h[k] = v
	}
	var timing [32]byte
	if t := s.runTiming(timing[:0], res); len(t) > 0 {
		h.Add("Server-Timing", string(t))
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(status)
	w.Write(res.Body)
	return status
}

// writeBackendError maps a backend error to its status; the messages tell the caller what happened.
func (s *Server) writeBackendError(w http.ResponseWriter, err error) int {
	code, msg := s.backendErrorStatus(err)
	if code != 499 {
		writeError(w, code, msg)
	}
	return code
}

// backendErrorStatus is the status and message for a backend error (499: the client went away).
func (s *Server) backendErrorStatus(err error) (int, string) {
	var me *backend.ModelError
	switch {
	case errors.Is(err, backend.ErrBadInput):
		return 400, err.Error()
	case errors.As(err, &me):
		return 502, me.Error()
	case errors.Is(err, backend.ErrWorkerCrashed):
		return 502, "the scoring worker died while running this request; see the replica log (" + err.Error() + ")"
	case errors.Is(err, backend.ErrTimeout):
		return 504, fmt.Sprintf("scoring did not finish within scoringTimeoutMs=%d", s.cfg.ScoringTimeout.Milliseconds())
	case errors.Is(err, backend.ErrNotReady):
		return 503, "the model is not ready"
	case errors.Is(err, backend.ErrUnsupported):
		return 501, err.Error()
	case errors.Is(err, context.Canceled):
		return 499, ""
	}
	s.logger.Error("scoring failed", "err", err)
	return 500, err.Error()
}

// busyMessage answers a request that waited maxQueueWaitMs for a concurrency slot (503).
func (s *Server) busyMessage() string {
	return fmt.Sprintf("the replica is busy: %d requests in flight (maxConcurrentRequestsPerContainer) and none finished within maxQueueWaitMs=%d; retry later", cap(s.lim.slots), s.cfg.MaxQueueWait.Milliseconds())
}

func (s *Server) handleSwagger(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeError(w, 503, "the model is not ready yet")
		return
	}
	if v := r.URL.Query().Get("version"); v != "" && v != "2" {
		writeError(w, 404, "only swagger version 2 is served")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.swagger)
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	g := gauges{inFlight: s.lim.inFlight.Load(), queued: s.lim.queued.Load(), ready: s.ready.Load()}
	if rc, ok := s.backend.(backend.RestartCounter); ok {
		g.restarts = rc.Restarts()
	}
	if qr, ok := s.backend.(backend.QueueReporter); ok {
		// Admitted requests waiting for a free worker are queued too, not being run.
		q := min(int64(qr.Queued()), g.inFlight)
		g.queued += q
		g.inFlight -= q
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.metrics.write(w, g)
}
