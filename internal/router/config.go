package router

import (
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/traffic"
)

// Azure ML's defaults for a web service's limits.
const (
	DefaultMaxConcurrentRequests = 1
	DefaultMaxQueueWait          = 500 * time.Millisecond
	DefaultScoringTimeout        = 60 * time.Second
	DefaultMaxBodyBytes          = 100 << 20
)

// TokenVerifier checks access tokens; *auth.TokenSigner is one.
type TokenVerifier interface {
	VerifyToken(tok, service, workspace string, now time.Time) error
}

// Options configure a Router. The zero value works: no token verifier, stdlib clock, defaults.
type Options struct {
	Logger *slog.Logger // default: discard
	Now    func() time.Time
	// Tokens verifies access tokens for services with token auth; without it every token is refused.
	Tokens TokenVerifier
	// MaxBodyBytes bounds a request body (413 beyond); default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxIdleConnsPerReplica is how many keep-alive connections to hold open per replica;
	// default 256, comfortably above any client concurrency a replica is expected to see.
	MaxIdleConnsPerReplica int
	// DialTimeout bounds connecting to a replica (502 beyond); default 5 s.
	DialTimeout time.Duration
	// OnResult, if set, is told every answered request of a version (for the control plane's
	// time series). It runs on the request path: it must be fast and must not block.
	OnResult func(service, version string, status int, latency time.Duration)
	// Collect, if set, says whether a version's inputs and outputs are collected; OnCollect then
	// receives them (bodies of buffered requests, answers up to 1 MiB). OnCollect must not block
	// and must copy what it keeps.
	Collect   func(service, version string) bool
	OnCollect func(service, version string, input, output []byte, status int, latency time.Duration)
}

// ServiceConfig is what the router knows of a service: who may call it, its limits and its
// versions. A plain service has one version; an endpoint up to traffic.MaxVersions.
type ServiceConfig struct {
	Name      string
	Workspace string
	Auth      AuthConfig
	Limits    Limits
	// Versions may be empty for a plain service: one version named after the service is assumed.
	Versions []VersionConfig
}

// AuthConfig follows Azure: key auth (primary/secondary) or token auth, or neither (open).
type AuthConfig struct {
	KeyAuth   bool
	Keys      []string // plaintext primary and secondary keys; empty strings never match
	TokenAuth bool
}

// Limits are per-version request limits (Azure's deploymentconfig names). Zero means default.
type Limits struct {
	MaxConcurrentRequestsPerContainer int
	// MaxQueueWait is how long a request may wait for a replica slot before 503.
	MaxQueueWait time.Duration
	// ScoringTimeout is how long a replica may take to answer before 504.
	ScoringTimeout time.Duration
}

// VersionConfig is one version of an endpoint (or the one version of a plain service).
type VersionConfig struct {
	Name              string
	TrafficPercentile float64
	IsDefault         bool
	IsControl         bool
	MirrorPercentile  float64
	// Scale is the version's replica policy for the Autoscaler; the zero value leaves the
	// version alone.
	Scale ScaleSpec
}

// Replica is one scoring replica of a version.
type Replica struct {
	ID    string
	URL   string // base URL, e.g. http://127.0.0.1:PORT
	Ready bool
}

func (l Limits) withDefaults() Limits {
	if l.MaxConcurrentRequestsPerContainer <= 0 {
		l.MaxConcurrentRequestsPerContainer = DefaultMaxConcurrentRequests
	}
	if l.MaxQueueWait == 0 {
		l.MaxQueueWait = DefaultMaxQueueWait
	}
	if l.ScoringTimeout <= 0 {
		l.ScoringTimeout = DefaultScoringTimeout
	}
	return l
}

// normalize fills defaults and checks cfg; every error is errdefs.ErrInvalid.
func normalize(cfg ServiceConfig) (ServiceConfig, error) {
	if cfg.Name == "" {
		return cfg, errdefs.Invalid("router: service config has no name")
	}
	if cfg.Limits.MaxQueueWait < 0 {
		return cfg, errdefs.Invalid("router: service %q: maxQueueWait %v is negative", cfg.Name, cfg.Limits.MaxQueueWait)
	}
	cfg.Limits = cfg.Limits.withDefaults()
	cfg.Auth.Keys = append([]string(nil), cfg.Auth.Keys...)
	vs := append([]VersionConfig(nil), cfg.Versions...)
	if len(vs) == 0 {
		vs = []VersionConfig{{Name: cfg.Name}}
	}
	if len(vs) == 1 {
		vs[0].IsDefault, vs[0].IsControl = true, true
	}
	cfg.Versions = vs
	if err := traffic.Validate(trafficVersions(vs)); err != nil {
		return cfg, fmt.Errorf("router: service %q: %w", cfg.Name, err)
	}
	for i := range vs {
		if err := vs[i].Scale.validate(); err != nil {
			return cfg, fmt.Errorf("router: service %q version %q: %w", cfg.Name, vs[i].Name, err)
		}
	}
	return cfg, nil
}

func trafficVersions(vs []VersionConfig) []traffic.Version {
	out := make([]traffic.Version, len(vs))
	for i, v := range vs {
		out[i] = traffic.Version{Name: v.Name, TrafficPercentile: v.TrafficPercentile,
			IsDefault: v.IsDefault, IsControl: v.IsControl, MirrorPercentile: v.MirrorPercentile}
	}
	return out
}

func parseReplicaURL(service, version string, rep Replica) (*url.URL, error) {
	u, err := url.Parse(rep.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errdefs.Invalid("router: service %q version %q: replica %q has URL %q; want http://host:port",
			service, version, rep.ID, rep.URL)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}
