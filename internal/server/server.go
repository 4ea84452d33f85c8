// Package server is mlship's control plane: the REST API over the store and the model registry.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mlship/mlship/internal/auth"
	"github.com/mlship/mlship/internal/collect"
	"github.com/mlship/mlship/internal/compute/local"
	"github.com/mlship/mlship/internal/deploy"
	"github.com/mlship/mlship/internal/env"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/monitor"
	"github.com/mlship/mlship/internal/registry"
	"github.com/mlship/mlship/internal/registry/blob"
	"github.com/mlship/mlship/internal/router"
	"github.com/mlship/mlship/internal/store"
	"github.com/mlship/mlship/internal/store/postgres"
	"github.com/mlship/mlship/internal/store/sqlite"
)

// DefaultMaxUploadBytes is the default limit on a model upload (2 GiB).
const DefaultMaxUploadBytes int64 = 2 << 30

// Options configure a control plane.
type Options struct {
	DataDir string // database and artifacts live here
	// DatabaseURL, if set, keeps the state in this PostgreSQL database (postgres://...) instead of
	// SQLite in DataDir; artifacts stay in DataDir.
	DatabaseURL    string
	Addr           string // listen address, 127.0.0.1:7878 by default
	ScoringAddr    string // the router's listen address, 127.0.0.1:7879 by default
	MaxUploadBytes int64
	Logger         *slog.Logger
	Now            func() time.Time
	// ScoreBinary is the mlship executable replicas run as 'mlship score'; this process's own if empty.
	ScoreBinary string
	// ImageBinary is the static linux mlship binary put into images for Kubernetes targets;
	// this process's own if empty (it must then run on the nodes' libc, or be static).
	ImageBinary string
	// BasePython is the interpreter for entry scripts and virtualenvs; /usr/bin/python3 if empty.
	BasePython string
	// ReplicaReadyTimeout bounds a replica's model loading; 5 min if 0.
	ReplicaReadyTimeout time.Duration
	// DownscaleDelay overrides the autoscaler's 60 s of low load before scaling down (tests).
	DownscaleDelay time.Duration
	// MetricsRetention is how long per-version request metrics are kept (appInsightsEnabled); 24 h if 0.
	MetricsRetention time.Duration
}

// Server is a running control plane's state.
type Server struct {
	opts     Options
	log      *slog.Logger
	store    store.Store
	registry *registry.Registry
	router   *router.Router
	local    *local.Target
	deployer *deploy.Deployer
	tokens   *auth.TokenSigner
	// serverKey derives the keys of compute targets' routers.
	serverKey []byte
	clusters  clusters
	sealer    *auth.Sealer // seals keys and cluster credentials with the server key
	scaler    *router.Autoscaler
	insights  *insights
	monitor   *monitor.Recorder
	collect   *collect.Collector
	// AdminToken is set only when this start created the first admin token; it is shown once.
	AdminToken string
}

// New opens the data dir, applies migrations and makes sure the default workspace and an admin token exist.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:7878"
	}
	if opts.ScoringAddr == "" {
		opts.ScoringAddr = "127.0.0.1:7879"
	}
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DataDir == "" {
		return nil, errdefs.Invalid("no data dir: pass --data-dir")
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	st, err := openStore(ctx, opts)
	if err != nil {
		return nil, err
	}
	blobs, err := blob.NewFS(filepath.Join(opts.DataDir, "blobs"))
	if err != nil {
		st.Close()
		return nil, err
	}
	s := &Server{opts: opts, log: opts.Logger, store: st, registry: registry.New(st, blobs, opts.Now)}
	if err := s.bootstrap(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if err := s.wire(); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// wire builds the data-plane side: server key, router, local target, environments, deployer.
func (s *Server) wire() error {
	key, err := auth.LoadOrCreateServerKey(filepath.Join(s.opts.DataDir, "server.key"))
	if err != nil {
		return fmt.Errorf("server key: %w", err)
	}
	sealer, err := auth.NewSealer(key)
	if err != nil {
		return err
	}
	s.sealer = sealer
	s.serverKey = key
	if s.tokens, err = auth.NewTokenSigner(key); err != nil {
		return err
	}
	s.insights = newInsights()
	s.monitor = monitor.New(monitor.Options{Now: s.opts.Now, Retention: s.opts.MetricsRetention})
	s.collect = collect.New(filepath.Join(s.opts.DataDir, "modeldata"), collect.Options{Now: s.opts.Now})
	s.router = router.New(router.Options{
		Logger: s.log.With("component", "router"), Now: s.opts.Now, Tokens: s.tokens,
		OnResult: func(service, version string, status int, latency time.Duration) {
			if version != "" && s.insights.monitored(service) {
				s.monitor.Observe(service, version, status, latency)
			}
		},
		Collect: s.insights.collected,
		OnCollect: func(service, version string, in, out []byte, status int, latency time.Duration) {
			s.collect.Collect(service, version, in, out, status, latency)
		},
	})
	fe := &frontend{s: s, r: s.router, log: s.log, downscale: s.opts.DownscaleDelay, insights: s.insights, monitor: s.monitor}
	s.local, err = local.New(local.Options{
		Binary: s.opts.ScoreBinary, LogDir: filepath.Join(s.opts.DataDir, "logs"), Logger: s.log.With("component", "local"),
		OnReplicas: fe.onReplicas, ReadyTimeout: s.opts.ReplicaReadyTimeout,
	})
	if err != nil {
		return err
	}
	s.deployer = deploy.New(deploy.Options{
		Store: s.store, Registry: s.registry, Targets: s.target,
		Envs:     env.NewCache(filepath.Join(s.opts.DataDir, "envs"), env.Options{BasePython: s.opts.BasePython, Logger: s.log}),
		Frontend: fe, Sealer: sealer, WorkDir: filepath.Join(s.opts.DataDir, "services"),
		Logger: s.log.With("component", "deploy"), Now: s.opts.Now,
	})
	s.scaler = router.NewAutoscaler(s.router, scaler{s}, router.AutoscalerOptions{
		Now: s.opts.Now, Logger: s.log.With("component", "autoscaler"),
		OnDecision: func(d router.Decision) {
			msg := fmt.Sprintf("autoscaler: %d -> %d replicas (load %.2f replicas, utilization %.0f%%: %s)", d.From, d.To, d.Load, d.Utilization*100, d.Reason)
			if d.Err != nil {
				msg += "; not applied: " + d.Err.Error()
			}
			s.deployer.Event(d.Service, "%s", msg)
			s.log.Info(msg, "service", d.Service)
		},
	})
	return nil
}

func (s *Server) bootstrap(ctx context.Context) error {
	err := s.store.CreateWorkspace(ctx, store.Workspace{Name: "default", Description: "Default workspace", CreatedTime: s.opts.Now().UTC()})
	if err != nil && !errors.Is(err, errdefs.ErrConflict) {
		return fmt.Errorf("create default workspace: %w", err)
	}
	n, err := s.store.CountTokens(ctx)
	if err != nil || n > 0 {
		return err
	}
	tok, err := auth.NewControlToken()
	if err != nil {
		return err
	}
	if err := s.store.CreateToken(ctx, store.Token{ID: tok.ID, Name: "admin", Hash: tok.Hash, CreatedTime: s.opts.Now().UTC()}); err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	s.AdminToken = tok.String()
	return nil
}

// Close stops every replica and releases the database.
func (s *Server) Close() error {
	s.deployer.Close()
	s.closeClusters()
	s.local.Close()
	s.router.Close()
	s.collect.Close()
	return s.store.Close()
}

// Router is the scoring router (tests serve it themselves).
func (s *Server) Router() http.Handler { return s.router }

// Recover restarts the services recorded in the store; Run calls it.
func (s *Server) Recover(ctx context.Context) error { return s.deployer.Recover(ctx) }

// clusterObserveEvery is how many observer ticks (seconds) pass between looks at a cluster's services.
const clusterObserveEvery = 5

// Background runs the autoscaler and the state observer until ctx ends.
func (s *Server) Background(ctx context.Context) {
	go s.scaler.Run(ctx)
	go s.observe(ctx)
}

// observe keeps service states in step with their replicas (Healthy <-> Unhealthy).
func (s *Server) observe(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		services, err := s.store.ListServices(ctx, "")
		if err != nil {
			continue
		}
		for _, svc := range services {
			// A cluster's services are read from its API server: every clusterObserveEvery ticks,
			// so a hundred services do not cost it hundreds of requests a second.
			if !deploy.IsLocal(svc.ComputeTarget) && tick%clusterObserveEvery != 0 {
				continue
			}
			if svc.State == store.StateHealthy || svc.State == store.StateUnhealthy {
				s.deployer.Observe(ctx, svc)
			}
		}
	}
}

// Handler is the whole REST API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	api := http.NewServeMux()
	api.Handle("GET /api/v1/workspaces", s.wrap(s.listWorkspaces))
	api.Handle("POST /api/v1/workspaces", s.wrap(s.createWorkspace))
	api.Handle("GET /api/v1/workspaces/{ws}", s.wrap(s.getWorkspace))
	api.Handle("GET /api/v1/workspaces/{ws}/models", s.wrap(s.listModels))
	api.Handle("POST /api/v1/workspaces/{ws}/models", s.limitBody(s.wrap(s.registerModel)))
	api.Handle("GET /api/v1/workspaces/{ws}/models/{name}/versions", s.wrap(s.listModelVersions))
	api.Handle("GET /api/v1/workspaces/{ws}/models/{name}/versions/{version}", s.wrap(s.getModel))
	api.Handle("DELETE /api/v1/workspaces/{ws}/models/{name}/versions/{version}", s.wrap(s.deleteModel))
	api.HandleFunc("GET /api/v1/workspaces/{ws}/models/{name}/versions/{version}/content", s.downloadModel)
	s.routesServices(api)
	s.routesEndpoints(api)
	s.routesComputes(api)
	api.Handle("/", s.wrap(func(r *http.Request) (any, error) {
		return nil, errdefs.NotFound("no API route %s %s", r.Method, r.URL.Path)
	}))
	mux.Handle("/api/", s.authenticate(api))
	mux.Handle("/", s.wrap(func(r *http.Request) (any, error) {
		return nil, errdefs.NotFound("no route %s %s: the API lives under /api/v1", r.Method, r.URL.Path)
	}))
	return s.logRequests(mux)
}

// Run serves the API and the scoring router until ctx ends, then shuts down gracefully.
// ready, if not nil, gets the bound API address.
func (s *Server) Run(ctx context.Context, ready func(addr net.Addr)) error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another mlship server running? pass --addr)", s.opts.Addr, err)
	}
	sln, err := net.Listen("tcp", s.opts.ScoringAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen on %s for scoring: %w (pass --scoring-addr)", s.opts.ScoringAddr, err)
	}
	s.opts.ScoringAddr = sln.Addr().String()
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	rs := &http.Server{Handler: s.router, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()
	go func() { errc <- rs.Serve(sln) }()
	bctx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	if err := s.Recover(ctx); err != nil {
		s.log.Error("restart services", "err", err)
	}
	s.Background(bctx)
	if ready != nil {
		ready(ln.Addr())
	}
	s.log.Info("control plane listening", "addr", ln.Addr().String(), "scoring", sln.Addr().String(), "dataDir", s.opts.DataDir)
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range []*http.Server{hs, rs} {
		if serr := srv.Shutdown(sctx); serr != nil {
			srv.Close()
		}
	}
	return err
}

// ScoringURL is the router's base URL.
func (s *Server) ScoringURL() string { return "http://" + s.opts.ScoringAddr }

// limitBody caps the request body at the upload limit; the connection closes after a 413.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxUploadBytes)
		next.ServeHTTP(w, r)
	})
}

// authenticate requires a valid control-plane token on every API call.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkToken(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mlship"`)
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) checkToken(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return errdefs.Unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
	}
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return errdefs.Unauthorized("the Authorization header must be 'Bearer <token>'")
	}
	id, secret, err := auth.ParseControlToken(strings.TrimSpace(raw))
	if err != nil {
		return errdefs.Unauthorized("invalid token")
	}
	tok, err := s.store.GetToken(r.Context(), id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return errdefs.Unauthorized("invalid token")
	}
	if err != nil {
		return err
	}
	if !auth.SecretMatches(secret, tok.Hash) {
		return errdefs.Unauthorized("invalid token")
	}
	return nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests logs method, path, status and duration; never headers, so tokens stay out of logs.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start).Round(time.Microsecond))
	})
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// openStore opens the PostgreSQL database if one is named, else SQLite in the data dir.
func openStore(ctx context.Context, opts Options) (store.Store, error) {
	if opts.DatabaseURL == "" {
		return sqlite.Open(ctx, filepath.Join(opts.DataDir, "mlship.db"))
	}
	if !postgres.IsURL(opts.DatabaseURL) {
		return nil, errdefs.Invalid("database URL must start with postgres:// or postgresql:// (leave it empty for SQLite in the data dir)")
	}
	return postgres.Open(ctx, opts.DatabaseURL)
}
