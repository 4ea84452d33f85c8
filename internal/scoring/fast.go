package scoring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/mlship/mlship/internal/scoring/backend"
)

// The replica serves HTTP with fasthttp. POST /score, the request every client of a deployed model
// sends, is answered natively; every other route goes through the net/http handlers in
// handlers.go and oip.go (fasthttpadaptor), so they stay written once. net/http spent about twice
// the CPU per request of a minimal HTTP/1.1 loop on this machine (a goroutine, a read and deadline
// changes per request for its background read, header maps, response buffers), and the replica's
// CPU is what limits it under load: see docs/scoring.md.

// newHTTPServer is the replica's HTTP server; serve it with rawconn's listener.
func (s *Server) newHTTPServer() *fasthttp.Server {
	slow := fasthttpadaptor.NewFastHTTPHandler(s.mux)
	return &fasthttp.Server{
		Handler: func(fc *fasthttp.RequestCtx) {
			// The fast path needs the model loaded (meta is set before ready) and no @rawhttp script,
			// which gets the whole request; the rest, including "not ready", is handlers.go's.
			if s.ready.Load() && !s.meta.RawHTTP && fc.IsPost() && string(fc.Path()) == "/score" {
				start := time.Now()
				code := s.scoreFast(fc)
				s.metrics.observe(code, time.Since(start))
				return
			}
			slow(fc)
		},
		ErrorHandler:                 s.requestError,
		ReadBufferSize:               16 << 10, // request line and headers; over it: 431
		MaxRequestBodySize:           int(s.cfg.MaxBodyBytes),
		ReadTimeout:                  s.cfg.RequestReadTimeout, // a whole request, body included
		IdleTimeout:                  120 * time.Second,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true, // @rawhttp scripts get multipart bodies as sent
		SecureErrorLogMessage:        true, // errors and logs never quote the request (its headers may hold keys)
		Logger:                       fastLogger{s.logger},
	}
}

// scoreFast is handlers.go's score for a POST /score to a ready model, on fasthttp's request.
// The body is already read (fasthttp reads it whole, within MaxBodyBytes).
func (s *Server) scoreFast(fc *fasthttp.RequestCtx) int {
	if err := s.lim.acquire(context.Background()); err != nil {
		return writeFastError(fc, 503, s.busyMessage())
	}
	defer s.lim.release()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ScoringTimeout)
	defer cancel()
	res, err := s.backend.Score(ctx, &backend.Request{Body: fc.PostBody(), Alone: s.lim.alone()})
	if err != nil {
		code, msg := s.backendErrorStatus(err)
		return writeFastError(fc, code, msg)
	}
	status, ct := resultHead(res)
	for k, vs := range res.Header {
		for _, v := range vs {
			fc.Response.Header.Add(k, v)
		}
	}
	var timing [32]byte
	if t := s.runTiming(timing[:0], res); len(t) > 0 {
		fc.Response.Header.AddBytesV("Server-Timing", t)
	}
	fc.SetContentType(ct)
	fc.SetStatusCode(status)
	fc.SetBody(res.Body)
	return status
}

func writeFastError(fc *fasthttp.RequestCtx, code int, msg string) int {
	if code == 499 {
		return code // nobody to answer
	}
	if code == 503 {
		fc.Response.Header.Set("Retry-After", retryAfter)
	}
	b, _ := json.Marshal(errorBody{StatusCode: code, Message: msg})
	fc.SetContentType("application/json")
	fc.SetStatusCode(code)
	fc.SetBody(b)
	return code
}

// requestError answers a request fasthttp could not read, in the replica's JSON error shape.
func (s *Server) requestError(fc *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	code, msg := 400, "malformed HTTP request: "+err.Error()
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, msg = 413, s.tooLarge()
	case errors.As(err, &small) || errors.Is(err, fasthttp.ErrSmallReadBuffer):
		code, msg = 431, "request line and headers are over 16 KiB"
	case errors.As(err, &ne) && ne.Timeout():
		code, msg = 408, fmt.Sprintf("the request was not received within %s", s.cfg.RequestReadTimeout)
	}
	writeFastError(fc, code, msg)
	if string(fc.Path()) == "/score" {
		s.metrics.observe(code, 0)
	}
}

// fastLogger sends fasthttp's connection errors (a client that went away, a timeout) to the
// replica's log at debug level.
type fastLogger struct{ l *slog.Logger }

func (f fastLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...))
}
