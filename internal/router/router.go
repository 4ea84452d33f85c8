package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/traffic"
)

// Router routes scoring requests to replicas. Configure it with SetService and SetReplicas
// (safe at any time, from any goroutine); changes apply to new requests at once and never
// fail requests in flight. Serve it with ServeHTTP; Close it when done.
type Router struct {
	opts      Options
	transport *http.Transport
	metrics   *metrics

	mu       sync.Mutex                          // serializes writers
	services atomic.Pointer[map[string]*service] // copy-on-write, read lock-free per request
	pools    map[poolKey]*pool                   // guarded by mu; outlive config changes

	dialer *net.Dialer

	baseCtx   context.Context // parent of mirrored copies; cancelled by Close
	cancel    context.CancelFunc
	mirrorsWG sync.WaitGroup
}

type poolKey struct{ service, version string }

// service is one service; its state is replaced whole on SetService.
type service struct {
	name  string
	state atomic.Pointer[serviceState]
}

// serviceState is an immutable snapshot of a service's configuration.
type serviceState struct {
	cfg      ServiceConfig
	versions map[string]*version
	names    string // version names, for 404 messages
	picker   *traffic.Picker
	mirror   *traffic.Mirror // nil when no version mirrors
	m        *versionMetrics // requests refused before a version was chosen
}

type version struct {
	name string
	pool *pool
}

// New returns a Router with no services.
func New(opts Options) *Router {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxIdleConnsPerReplica <= 0 {
		opts.MaxIdleConnsPerReplica = 256
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	dialer := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	r := &Router{
		opts:   opts,
		dialer: dialer,
		transport: &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConns:        0, // no global cap; per-replica cap below
			MaxIdleConnsPerHost: opts.MaxIdleConnsPerReplica,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // pass the client's Accept-Encoding through untouched
			ForceAttemptHTTP2:   false,
			WriteBufferSize:     16 << 10,
			ReadBufferSize:      16 << 10,
		},
		metrics: newMetrics(),
		pools:   map[poolKey]*pool{},
	}
	r.baseCtx, r.cancel = context.WithCancel(context.Background())
	empty := map[string]*service{}
	r.services.Store(&empty)
	r.metrics.router = r
	r.metrics.onResult = opts.OnResult
	return r
}

// Close cancels mirrored copies still running, waits for them and closes idle connections.
// Requests being served finish on their own (http.Server.Shutdown waits for them).
func (r *Router) Close() error {
	r.cancel()
	r.mirrorsWG.Wait()
	r.transport.CloseIdleConnections()
	r.mu.Lock()
	for _, p := range r.pools {
		p.mu.Lock()
		for _, rep := range p.replicas {
			if rep.conns != nil {
				rep.conns.close()
			}
		}
		p.mu.Unlock()
	}
	r.mu.Unlock()
	return nil
}

func (r *Router) lookup(name string) *service {
	return (*r.services.Load())[name]
}

// SetService adds or replaces a service's configuration. Replicas already set for its
// versions are kept; versions no longer listed are dropped (their queued requests are
// routed again under the new configuration, in-flight ones finish).
func (r *Router) SetService(cfg ServiceConfig) error {
	cfg, err := normalize(cfg)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	st := &serviceState{cfg: cfg, versions: make(map[string]*version, len(cfg.Versions))}
	names := make([]string, 0, len(cfg.Versions))
	for _, vc := range cfg.Versions {
		k := poolKey{cfg.Name, vc.Name}
		p := r.pools[k]
		if p == nil {
			p = newPool(cfg.Limits.MaxConcurrentRequestsPerContainer, r.metrics.forVersion(cfg.Name, vc.Name))
			r.pools[k] = p
		} else {
			p.setMaxConc(cfg.Limits.MaxConcurrentRequestsPerContainer)
		}
		st.versions[vc.Name] = &version{name: vc.Name, pool: p}
		names = append(names, vc.Name)
	}
	sort.Strings(names)
	st.names = fmt.Sprint(names)
	tv := trafficVersions(cfg.Versions)
	st.picker = traffic.NewPicker(tv)
	for _, v := range tv {
		if v.MirrorPercentile > 0 {
			st.mirror = traffic.NewMirror(tv)
			break
		}
	}
	st.m = r.metrics.forVersion(cfg.Name, "")

	old := r.lookup(cfg.Name)
	if old == nil {
		next := r.copyServices()
		s := &service{name: cfg.Name}
		s.state.Store(st)
		next[cfg.Name] = s
		r.services.Store(&next)
		return nil
	}
	prev := old.state.Swap(st)
	for name := range prev.versions {
		if _, ok := st.versions[name]; !ok {
			r.dropPoolLocked(poolKey{cfg.Name, name})
		}
	}
	return nil
}

// RemoveService forgets a service: new requests get 404, queued ones 503, in-flight ones finish.
func (r *Router) RemoveService(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lookup(name) == nil {
		return
	}
	next := r.copyServices()
	delete(next, name)
	r.services.Store(&next)
	for k := range r.pools {
		if k.service == name {
			r.dropPoolLocked(k)
		}
	}
	r.metrics.dropVersion(name, "")
}

func (r *Router) dropPoolLocked(k poolKey) {
	if p := r.pools[k]; p != nil {
		delete(r.pools, k)
		p.close()
		r.metrics.dropVersion(k.service, k.version)
	}
}

func (r *Router) copyServices() map[string]*service {
	cur := *r.services.Load()
	next := make(map[string]*service, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	return next
}

// SetReplicas replaces the replicas of a service's version. It may come before SetService.
// Replicas no longer listed finish their in-flight requests; queued requests move to
// replicas that are ready.
func (r *Router) SetReplicas(serviceName, versionName string, replicas []Replica) error {
	urls := make([]*url.URL, len(replicas))
	seen := make(map[string]bool, len(replicas))
	for i, rep := range replicas {
		if rep.ID == "" || seen[rep.ID] {
			return errdefs.Invalid("router: service %q version %q: replica IDs must be unique and non-empty (got %q)",
				serviceName, versionName, rep.ID)
		}
		seen[rep.ID] = true
		u, err := parseReplicaURL(serviceName, versionName, rep)
		if err != nil {
			return err
		}
		urls[i] = u
	}
	r.mu.Lock()
	k := poolKey{serviceName, versionName}
	p := r.pools[k]
	if p == nil {
		p = newPool(DefaultMaxConcurrentRequests, r.metrics.forVersion(serviceName, versionName))
		if s := r.lookup(serviceName); s != nil {
			p.maxConc = s.state.Load().cfg.Limits.MaxConcurrentRequestsPerContainer
		}
		r.pools[k] = p
	}
	r.mu.Unlock()
	p.setReplicas(replicas, urls, r.newConnPool)
	return nil
}

// Stats returns the exact load of a service's version.
func (r *Router) Stats(serviceName, versionName string) (VersionStats, bool) {
	r.mu.Lock()
	p := r.pools[poolKey{serviceName, versionName}]
	r.mu.Unlock()
	if p == nil {
		return VersionStats{}, false
	}
	s := p.stats()
	s.Service, s.Version = serviceName, versionName
	return s, true
}

// configured lists the versions of every configured service with their scale specs.
func (r *Router) configured() []configuredVersion {
	var out []configuredVersion
	for _, s := range *r.services.Load() {
		st := s.state.Load()
		for _, v := range st.cfg.Versions {
			out = append(out, configuredVersion{service: s.name, version: v.Name, spec: v.Scale})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].service != out[j].service {
			return out[i].service < out[j].service
		}
		return out[i].version < out[j].version
	})
	return out
}

type configuredVersion struct {
	service, version string
	spec             ScaleSpec
}

func (r *Router) newConnPool(u *url.URL) *connPool {
	if u.Scheme != "http" {
		return nil // TLS goes through http.Transport
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return newConnPool(host, r.dialer, r.opts.MaxIdleConnsPerReplica)
}
