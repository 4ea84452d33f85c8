package scoring

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/rawconn"
)

// Server is one replica: an HTTP server in front of a model backend. Use New, then Start.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	backend backend.Backend
	lim     *limiter
	metrics *metrics
	mux     *http.ServeMux

	ready     atomic.Bool
	readyCh   chan struct{}
	listenCh  chan struct{}
	addr      string
	swagger   []byte
	meta      backend.Metadata
	startOnce sync.Once
}

// New validates cfg and picks the backend for the model folder; nothing runs until Start.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b, err := newBackend(cfg, logger)
	if err != nil {
		return nil, err
	}
	return NewWithBackend(cfg, b, logger)
}

// NewWithBackend serves b (which must not be started yet) with cfg's limits.
func NewWithBackend(cfg Config, b backend.Backend, logger *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.ModelDir == "" {
		cfg.ModelDir = "."
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers > cfg.MaxConcurrentRequests {
		logger.Warn("more workers than maxConcurrentRequestsPerContainer: the extra workers stay idle", "workers", cfg.Workers, "max_concurrent_requests", cfg.MaxConcurrentRequests)
	}
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		backend:  b,
		lim:      newLimiter(cfg.MaxConcurrentRequests, cfg.MaxQueueWait),
		metrics:  newMetrics(),
		readyCh:  make(chan struct{}),
		listenCh: make(chan struct{}),
	}
	s.routes()
	return s, nil
}

// Platform names the runtime chosen for the model: "python" (entry script) or "onnxruntime_onnx".
func (s *Server) Platform() string { return s.backend.Metadata().Platform }

// Handler is the replica's HTTP API, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.mux }

// Ready is closed once the model is loaded and the replica takes scoring traffic.
func (s *Server) Ready() <-chan struct{} { return s.readyCh }

// Listening is closed once Addr is known.
func (s *Server) Listening() <-chan struct{} { return s.listenCh }

// Addr is the address the replica listens on (valid after Listening is closed).
func (s *Server) Addr() string { return s.addr }

// Start listens, loads the model, serves until ctx ends, then shuts down gracefully: in-flight
// requests finish (up to the scoring timeout) and every worker is stopped.
// It returns an error if listening or loading the model fails; a replica that never became ready.
func (s *Server) Start(ctx context.Context) error {
	var err error
	s.startOnce.Do(func() { err = s.start(ctx) })
	return err
}

func (s *Server) start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		s.backend.Close()
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.addr = ln.Addr().String()
	close(s.listenCh)
	hs := s.newHTTPServer()
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(rawconn.Listener{Listener: ln}) }()

	s.logger.Info("loading model", "model_dir", s.cfg.ModelDir, "addr", s.addr)
	ictx, cancel := context.WithTimeout(ctx, s.cfg.InitTimeout)
	err = s.backend.Start(ictx)
	cancel()
	if err == nil {
		s.meta = s.backend.Metadata()
		if s.meta.Name == "" {
			s.meta.Name = s.cfg.ModelName
		}
		if s.meta.Version == "" {
			s.meta.Version = s.cfg.Version
		}
		s.swagger, err = swagger(s.meta)
	}
	if err != nil && ctx.Err() != nil {
		// Asked to stop while loading: a clean exit, not a failed model.
		s.logger.Info("stopped while loading the model")
		s.shutdown(hs, ln)
		return nil
	}
	if err != nil {
		// The worker already logged the traceback line by line, just above.
		s.logger.Error("model initialization failed; the replica will not become ready", "err", err)
		s.shutdown(hs, ln)
		return fmt.Errorf("load model from %s: %w", s.cfg.ModelDir, err)
	}
	s.ready.Store(true)
	close(s.readyCh)
	s.logger.Info("replica ready", "addr", s.addr, "model", s.meta.Name, "platform", s.meta.Platform)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		s.shutdown(hs, ln)
		return fmt.Errorf("serve: %w", err)
	}
	s.shutdown(hs, ln)
	return nil
}

func (s *Server) shutdown(hs *fasthttp.Server, ln net.Listener) {
	s.ready.Store(false)
	grace := min(s.cfg.ScoringTimeout+s.lim.wait, 5*time.Minute)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := hs.ShutdownWithContext(sctx); err != nil {
		s.logger.Warn("requests still running at shutdown were cut off", "err", err)
	}
	// fasthttp's shutdown does nothing to a Serve that has not started yet (a model that fails at
	// once): closed here, the listener makes such a Serve return.
	ln.Close()
	s.backend.Close()
	s.logger.Info("replica stopped")
}
