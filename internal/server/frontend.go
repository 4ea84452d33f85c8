package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/deploy"
	"github.com/mlship/mlship/internal/monitor"
	"github.com/mlship/mlship/internal/router"
	"github.com/mlship/mlship/internal/store"
)

// frontend adapts the in-process router to what the deployer drives.
type frontend struct {
	s         *Server
	r         *router.Router
	log       *slog.Logger
	downscale time.Duration // 0: the router's default (60 s)
	insights  *insights
	monitor   *monitor.Recorder
}

func scaleSpec(dc *config.DeploymentConfig, downscale time.Duration) router.ScaleSpec {
	if dc.NumReplicas != nil {
		return router.ScaleSpec{NumReplicas: *dc.NumReplicas}
	}
	lo, hi := dc.Replicas()
	scale := router.ScaleSpec{Autoscale: true, MinReplicas: lo, MaxReplicas: hi, DownscaleDelay: downscale}
	if dc.AutoScaler.TargetUtilization != nil {
		scale.TargetUtilization = *dc.AutoScaler.TargetUtilization
	}
	if dc.AutoScaler.RefreshPeriodInSeconds != nil {
		scale.RefreshPeriod = time.Duration(*dc.AutoScaler.RefreshPeriodInSeconds) * time.Second
	}
	return scale
}

// routerConfig is what the router needs of a service: auth from the service's (endpoint's) own
// deployment config, limits from the default version's, and every version with its traffic.
// A version takes its share of traffic only once it is serving.
func routerConfig(svc store.Service, keys []string, downscale time.Duration) router.ServiceConfig {
	dc := deploy.DeploymentConfigOf(svc.DeploymentConfig)
	auth := router.AuthConfig{KeyAuth: dc.AuthEnabled == nil || *dc.AuthEnabled, TokenAuth: dc.TokenAuthEnabled != nil && *dc.TokenAuthEnabled}
	if auth.TokenAuth {
		auth.KeyAuth = false
	}
	if auth.KeyAuth {
		auth.Keys = keys
	}
	limitsFrom := dc
	var versions []router.VersionConfig
	if !svc.IsEndpoint() {
		versions = []router.VersionConfig{{Name: svc.Name, Scale: scaleSpec(dc, downscale)}}
	}
	for _, v := range svc.Versions {
		vdc := deploy.DeploymentConfigOf(v.DeploymentConfig)
		if v.IsDefault {
			limitsFrom = vdc
		}
		vc := router.VersionConfig{Name: v.Name, IsDefault: v.IsDefault, IsControl: v.IsControl, Scale: scaleSpec(vdc, downscale)}
		if v.State == store.StateHealthy || v.State == store.StateUnhealthy {
			vc.TrafficPercentile, vc.MirrorPercentile = v.TrafficPercentile, v.MirrorPercentile
		}
		versions = append(versions, vc)
	}
	return router.ServiceConfig{
		Name: svc.Name, Workspace: svc.Workspace, Auth: auth,
		Limits: router.Limits{
			MaxConcurrentRequestsPerContainer: deref(limitsFrom.MaxConcurrentRequestsPerContainer),
			MaxQueueWait:                      limitsFrom.MaxQueueWait(),
			ScoringTimeout:                    limitsFrom.ScoringTimeout(),
		},
		Versions: versions,
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (f *frontend) Configure(ctx context.Context, svc store.Service, keys []string) error {
	if !deploy.IsLocal(svc.ComputeTarget) {
		// The cluster's own router serves it, configured from the cluster.
		t, err := f.s.cluster(ctx, svc.Workspace, svc.ComputeTarget)
		if err != nil {
			return err
		}
		var primary, secondary string
		if len(keys) == 2 {
			primary, secondary = keys[0], keys[1]
		}
		return t.ConfigureService(ctx, clusterConfig(svc, f.downscale), primary, secondary)
	}
	f.insights.configure(svc)
	if err := f.r.SetService(routerConfig(svc, keys, f.downscale)); err != nil {
		f.log.Error("configure router", "service", svc.Name, "err", err)
		return fmt.Errorf("configure the router for %s: %w", svc.Name, err)
	}
	return nil
}

func (f *frontend) Remove(svc store.Service) {
	f.r.RemoveService(svc.Name)
	f.insights.remove(svc.Name)
	f.monitor.Forget(svc.Name)
}

// onReplicas forwards a target's replica set to the router.
func (f *frontend) onReplicas(key compute.Key, reps []compute.Replica) {
	out := make([]router.Replica, len(reps))
	for i, r := range reps {
		out[i] = router.Replica{ID: r.ID, URL: r.URL, Ready: r.Ready}
	}
	if err := f.r.SetReplicas(key.Service, key.Version, out); err != nil {
		f.log.Debug("router replicas", "service", key.Service, "err", err)
	}
}

// scaler lets the router's autoscaler resize services through the deployer.
type scaler struct {
	s *Server
}

func (sc scaler) Scale(ctx context.Context, service, version string, replicas int) error {
	svc, err := sc.s.findService(ctx, service)
	if err != nil {
		return err
	}
	state := svc.State
	if v, _, ok := svc.Version(version); ok {
		state = v.State
	}
	if state != store.StateHealthy && state != store.StateUnhealthy {
		return fmt.Errorf("%s/%s is %s; not scaling now", service, version, state)
	}
	return sc.s.deployer.Scale(ctx, svc, version, replicas)
}

// findService finds a service by name in any workspace (names are unique on a server).
func (s *Server) findService(ctx context.Context, name string) (store.Service, error) {
	all, err := s.store.ListServices(ctx, "")
	if err != nil {
		return store.Service{}, err
	}
	for _, svc := range all {
		if svc.Name == name {
			return svc, nil
		}
	}
	return store.Service{}, fmt.Errorf("service %s not found", name)
}

var _ deploy.Frontend = (*frontend)(nil)
