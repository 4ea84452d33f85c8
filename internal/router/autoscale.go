package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

// Azure ML's autoscaler defaults.
const (
	DefaultMinReplicas       = 1
	DefaultMaxReplicas       = 10
	DefaultTargetUtilization = 70 // percent
	DefaultRefreshPeriod     = time.Second
	DefaultDownscaleDelay    = 60 * time.Second
)

// ScaleSpec is a version's replica policy (deploymentconfig autoScaler / numReplicas).
// The zero value means "not managed": the Autoscaler leaves the version alone.
type ScaleSpec struct {
	// Autoscale sizes the version to its load; otherwise NumReplicas fixes the count.
	Autoscale   bool
	NumReplicas int
	// MinReplicas and MaxReplicas bound autoscaling; defaults 1 and 10.
	MinReplicas, MaxReplicas int
	// TargetUtilization is the percentage of replica capacity to aim for; default 70.
	TargetUtilization int
	// RefreshPeriod is how often load is sampled; default 1 s.
	RefreshPeriod time.Duration
	// DownscaleDelay is how long load must stay low before scaling down; default 60 s.
	DownscaleDelay time.Duration
}

func (s ScaleSpec) managed() bool { return s.Autoscale || s.NumReplicas > 0 }

func (s ScaleSpec) withDefaults() ScaleSpec {
	if s.MinReplicas <= 0 {
		s.MinReplicas = DefaultMinReplicas
	}
	if s.MaxReplicas <= 0 {
		s.MaxReplicas = max(DefaultMaxReplicas, s.MinReplicas)
	}
	if s.TargetUtilization <= 0 {
		s.TargetUtilization = DefaultTargetUtilization
	}
	if s.RefreshPeriod <= 0 {
		s.RefreshPeriod = DefaultRefreshPeriod
	}
	if s.DownscaleDelay <= 0 {
		s.DownscaleDelay = DefaultDownscaleDelay
	}
	return s
}

func (s ScaleSpec) validate() error {
	if s.NumReplicas < 0 || s.MinReplicas < 0 || s.MaxReplicas < 0 {
		return errdefs.Invalid("replica counts must not be negative")
	}
	d := s.withDefaults()
	if d.MinReplicas > d.MaxReplicas {
		return errdefs.Invalid("minReplicas %d is above maxReplicas %d", d.MinReplicas, d.MaxReplicas)
	}
	if d.TargetUtilization > 100 {
		return errdefs.Invalid("targetUtilization %d %% is over 100 %%", d.TargetUtilization)
	}
	return nil
}

// ScaleState is what the decision function carries from one sample to the next.
type ScaleState struct {
	Replicas int // the count last decided
	// LowSince is when load first fell below what Replicas needs (zero while it does not);
	// LowPeak is the most replicas the load needed since then, the count to scale down to.
	LowSince time.Time
	LowPeak  int
}

// Decision is one autoscaler decision; From == To means no change.
type Decision struct {
	Service, Version string
	From, To         int
	// Load is the average of busy replicas plus queued requests over the sample, in
	// replicas (requests ÷ maxConcurrentRequestsPerContainer); Utilization is Load ÷ From.
	Load, Utilization float64
	Reason            string
	Time              time.Time
	Err               error // the Scaler's error, when applying the decision failed
}

// Decide is the autoscaler's pure rule (Azure ML semantics). Utilization = load ÷ replicas;
// above the target it scales up at once to ceil(load ÷ target); below it, it scales down only
// once load has stayed low for the downscale delay, to the most the load needed meanwhile.
// Counts stay within [min, max]; without autoscaling, NumReplicas is the count.
func Decide(spec ScaleSpec, st ScaleState, load float64, now time.Time) (ScaleState, Decision) {
	spec = spec.withDefaults()
	d := Decision{From: st.Replicas, To: st.Replicas, Load: load, Time: now}
	if st.Replicas > 0 {
		d.Utilization = load / float64(st.Replicas)
	} else if load > 0 {
		d.Utilization = math.Inf(1)
	}
	if !spec.Autoscale {
		d.To = spec.NumReplicas
		if d.To != d.From {
			d.Reason = fmt.Sprintf("numReplicas fixes the count at %d", d.To)
		}
		return ScaleState{Replicas: d.To}, d
	}
	target := float64(spec.TargetUtilization) / 100
	need := int(math.Ceil(load/target - 1e-9)) // the epsilon keeps exact multiples from rounding up
	need = min(max(need, spec.MinReplicas), spec.MaxReplicas)
	cur := st.Replicas
	switch {
	case cur < spec.MinReplicas || cur > spec.MaxReplicas:
		d.To = min(max(cur, spec.MinReplicas), spec.MaxReplicas)
		d.Reason = fmt.Sprintf("%d replicas is outside [minReplicas %d, maxReplicas %d]", cur, spec.MinReplicas, spec.MaxReplicas)
		return ScaleState{Replicas: d.To}, d
	case need > cur:
		d.To = need
		d.Reason = fmt.Sprintf("utilization %.0f %% is above the target %d %%: scaling up from %d to %d replicas",
			100*d.Utilization, spec.TargetUtilization, cur, need)
		return ScaleState{Replicas: need}, d
	case need < cur:
		if st.LowSince.IsZero() {
			return ScaleState{Replicas: cur, LowSince: now, LowPeak: need}, d
		}
		peak := max(st.LowPeak, need)
		if low := now.Sub(st.LowSince); low >= spec.DownscaleDelay {
			d.To = peak
			d.Reason = fmt.Sprintf("utilization has been below the target %d %% for %v: scaling down from %d to %d replicas",
				spec.TargetUtilization, low.Round(time.Second), cur, peak)
			return ScaleState{Replicas: peak}, d
		}
		return ScaleState{Replicas: cur, LowSince: st.LowSince, LowPeak: peak}, d
	default:
		return ScaleState{Replicas: cur}, d
	}
}

// Scaler applies a replica count; the control plane (or the cluster router) provides it.
// Scale sets the desired count and must be idempotent.
type Scaler interface {
	Scale(ctx context.Context, service, version string, replicas int) error
}

// AutoscalerOptions configure an Autoscaler.
type AutoscalerOptions struct {
	// Interval is how often Run looks at the versions; each version is sampled at its own
	// RefreshPeriod on top. Default 1 s.
	Interval time.Duration
	Now      func() time.Time
	// OnDecision receives every change of replica count (applied or failed), for the
	// service's events and logs.
	OnDecision func(Decision)
	Logger     *slog.Logger
}

// Autoscaler sizes every managed version of a Router's services from the exact load the
// router sees.
type Autoscaler struct {
	r    *Router
	s    Scaler
	opts AutoscalerOptions

	mu     sync.Mutex // serializes Step
	tracks map[poolKey]*scaleTrack
}

type scaleTrack struct {
	st           ScaleState
	busy, queued float64 // integrals at the last sample
	at           time.Time
	sampled      time.Time // Now() at the last sample
}

// NewAutoscaler returns an autoscaler over r's services that applies counts through s.
func NewAutoscaler(r *Router, s Scaler, opts AutoscalerOptions) *Autoscaler {
	if opts.Interval <= 0 {
		opts.Interval = DefaultRefreshPeriod
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Autoscaler{r: r, s: s, opts: opts, tracks: map[poolKey]*scaleTrack{}}
}

// Run calls Step every Interval until ctx ends.
func (a *Autoscaler) Run(ctx context.Context) error {
	t := time.NewTicker(a.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.Step(ctx)
		}
	}
}

// Step samples every managed version whose refresh period has passed and applies decisions.
func (a *Autoscaler) Step(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.opts.Now()
	live := map[poolKey]bool{}
	for _, cv := range a.r.configured() {
		if !cv.spec.managed() {
			continue
		}
		k := poolKey{cv.service, cv.version}
		stats, ok := a.r.Stats(cv.service, cv.version)
		if !ok {
			continue
		}
		live[k] = true
		spec := cv.spec.withDefaults()
		tr := a.tracks[k]
		if tr == nil {
			// First sight: assume the replicas the control plane has set (within bounds).
			n := len(stats.Replicas)
			if spec.Autoscale {
				n = min(max(n, spec.MinReplicas), spec.MaxReplicas)
			}
			tr = &scaleTrack{st: ScaleState{Replicas: n}, busy: stats.BusySeconds, queued: stats.QueuedSeconds,
				at: stats.At, sampled: now}
			a.tracks[k] = tr
			if spec.Autoscale {
				a.r.metrics.forVersion(cv.service, cv.version).desired.Store(int64(n))
				continue // need a window of load first
			}
		} else if now.Sub(tr.sampled) < spec.RefreshPeriod*9/10 {
			continue // ticks jitter; a tenth of slack keeps a 1 s period from becoming 2 s
		}
		var load float64
		if dt := stats.At.Sub(tr.at).Seconds(); dt > 0 && stats.MaxConcurrent > 0 {
			load = (stats.BusySeconds - tr.busy + stats.QueuedSeconds - tr.queued) / dt / float64(stats.MaxConcurrent)
		}
		tr.busy, tr.queued, tr.at, tr.sampled = stats.BusySeconds, stats.QueuedSeconds, stats.At, now
		next, d := Decide(spec, tr.st, load, now)
		d.Service, d.Version = cv.service, cv.version
		if d.To != d.From {
			if err := a.s.Scale(ctx, cv.service, cv.version, d.To); err != nil {
				d.Err = fmt.Errorf("scale %s/%s to %d: %w", cv.service, cv.version, d.To, err)
				next = tr.st // retry at the next sample
				a.opts.Logger.Warn("autoscaler could not scale", "service", cv.service, "version", cv.version, "err", err)
			} else {
				a.opts.Logger.Info("autoscaler", "service", cv.service, "version", cv.version, "from", d.From, "to", d.To, "reason", d.Reason)
			}
			if a.opts.OnDecision != nil {
				a.opts.OnDecision(d)
			}
		}
		tr.st = next
		a.r.metrics.forVersion(cv.service, cv.version).desired.Store(int64(tr.st.Replicas))
	}
	for k := range a.tracks {
		if !live[k] {
			delete(a.tracks, k)
		}
	}
}
