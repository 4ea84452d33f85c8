// Package routerd runs the scoring router inside a Kubernetes namespace, configured from the cluster's ConfigMaps, Secrets and EndpointSlices.
package routerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/router"
)

// Defaults of Options.
const (
	DefaultAddr            = ":7879"
	DefaultShutdownTimeout = 25 * time.Second // inside Kubernetes' default 30 s grace period
)

// Options configure Run.
type Options struct {
	// Client reads the namespace and scales its Deployments; it needs exactly the rights of
	// resources.RouterRules.
	Client    kubernetes.Interface
	Namespace string
	Addr      string // default DefaultAddr
	Logger    *slog.Logger
	// AutoscaleInterval is how often the autoscaler looks at the versions; default 1 s.
	AutoscaleInterval time.Duration
	// DownscaleDelay is how long load must stay low before a version scales down; default the
	// router's (60 s, Azure's). Tests shorten it.
	DownscaleDelay time.Duration
	// ShutdownTimeout bounds waiting for requests in flight once ctx ends; default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Ready, if set, is called with the bound address once the router listens (before it has
	// synced with the cluster: GET / answers 503 until then).
	Ready func(net.Addr)

	// mapAddr, if set, rewrites endpoint addresses. Only tests set it: the API server refuses
	// loopback addresses in EndpointSlices, so they list TEST-NET addresses and map them here.
	mapAddr func(string) string
}

func (o Options) withDefaults() (Options, error) {
	if o.Client == nil {
		return o, errdefs.Invalid("router: no Kubernetes client")
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return o, errdefs.Invalid("router: namespace %q is not a valid namespace name", o.Namespace)
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.AutoscaleInterval <= 0 {
		o.AutoscaleInterval = router.DefaultRefreshPeriod
	}
	if o.DownscaleDelay < 0 {
		return o, errdefs.Invalid("router: downscale delay %v is negative", o.DownscaleDelay)
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	return o, nil
}

// Run serves the namespace's scoring traffic on Addr until ctx ends, then drains requests in
// flight. It routes from what the cluster says (owner ConfigMaps, key and router Secrets,
// EndpointSlices), autoscales the replica Deployments, and keeps serving from what it last
// knew while the API server is unreachable. GET / answers 200 "Healthy" once it has synced.
func Run(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("router: listen on %s: %w", o.Addr, err)
	}
	tokens := newTokenKeys(missingTokenKey(o.Namespace))
	r := router.New(router.Options{Logger: o.Logger, Tokens: tokens})
	defer r.Close()
	s := newSyncer(o.Client, o.Namespace, r, tokens, o.DownscaleDelay, o.Logger)
	s.mapAddr = o.mapAddr
	as := router.NewAutoscaler(r, scaler{client: o.Client, ns: o.Namespace, deployment: s.deployment},
		router.AutoscalerOptions{Interval: o.AutoscaleInterval, Logger: o.Logger})

	bg, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The autoscaler starts once the router knows the replicas: before, every version
		// would look like it had none.
		s.run(bg, func() {
			wg.Add(1)
			go func() { defer wg.Done(); as.Run(bg) }()
		})
	}()

	hs := &http.Server{
		Handler:           health(s, r),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	o.Logger.Info("router listening", "addr", ln.Addr().String(), "namespace", o.Namespace)
	if o.Ready != nil {
		o.Ready(ln.Addr())
	}

	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("router: serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	if serr := hs.Shutdown(sctx); serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
		o.Logger.Warn("router shutdown", "err", serr)
	}
	stop()
	wg.Wait()
	return err
}

// health answers GET / with 503 until the router has synced with the cluster (so a new router
// pod takes no traffic it would 404), then leaves / and everything else to the router.
func health(s *syncer, r *router.Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/" && !s.ready.Load() {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "Not ready: waiting to read the namespace from the Kubernetes API\n")
			return
		}
		r.ServeHTTP(w, req)
	})
}
