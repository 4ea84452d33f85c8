package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/store"
	"github.com/mlship/mlship/internal/traffic"
)

// unit is one set of replicas: a plain service, or one version of an endpoint.
type unit struct {
	version    string // the service's name for a plain service
	models     []string
	ic, dc     json.RawMessage
	source     string
	generation int64
	replicas   int
	state      string
	err        string
}

// units lists a service's sets of replicas.
func units(svc store.Service) []unit {
	if !svc.IsEndpoint() {
		return []unit{{version: svc.Name, models: svc.Models, ic: svc.InferenceConfig, dc: svc.DeploymentConfig, source: svc.SourceSHA256,
			generation: svc.Generation, replicas: svc.Replicas, state: svc.State, err: svc.Error}}
	}
	out := make([]unit, 0, len(svc.Versions))
	for _, v := range svc.Versions {
		out = append(out, unit{version: v.Name, models: v.Models, ic: v.InferenceConfig, dc: v.DeploymentConfig, source: v.SourceSHA256,
			generation: v.Generation, replicas: v.Replicas, state: v.State, err: v.Error})
	}
	return out
}

func unitOf(svc store.Service, version string) (unit, bool) {
	for _, u := range units(svc) {
		if u.version == version {
			return u, true
		}
	}
	return unit{}, false
}

// keyOf is the compute key of one unit.
func keyOf(svc store.Service, version string) compute.Key {
	return compute.Key{Workspace: svc.Workspace, Service: svc.Name, Version: version}
}

// Key is the compute key of a plain service.
func Key(svc store.Service) compute.Key { return keyOf(svc, svc.Name) }

// setUnit changes one unit's recorded state (and replicas, if >= 0), and the endpoint's overall state.
func setUnit(svc *store.Service, version, state, errMsg string, replicas int) {
	if !svc.IsEndpoint() {
		if state != "" {
			svc.State, svc.Error = state, errMsg
		}
		if replicas >= 0 {
			svc.Replicas = replicas
		}
		return
	}
	if _, i, ok := svc.Version(version); ok {
		v := &svc.Versions[i]
		if state != "" {
			v.State, v.Error = state, errMsg
		}
		if replicas >= 0 {
			v.Replicas = replicas
		}
	}
	svc.State, svc.Error = endpointState(*svc)
}

// endpointState: an endpoint is Healthy when every version that takes traffic is Healthy.
func endpointState(svc store.Service) (string, string) {
	if svc.State == store.StateDeleting {
		return svc.State, svc.Error
	}
	eff := traffic.Effective(trafficOf(svc.Versions))
	rank := map[string]int{store.StateHealthy: 0, store.StateUnhealthy: 1, store.StateTransitioning: 2, store.StateUnschedulable: 3, store.StateFailed: 4}
	state, msgs := store.StateHealthy, []string(nil)
	for _, v := range svc.Versions {
		if eff[v.Name] <= 0 {
			continue // a version without traffic does not make the endpoint unhealthy
		}
		if rank[v.State] > rank[state] {
			state = v.State
		}
		if v.Error != "" {
			msgs = append(msgs, fmt.Sprintf("version %s: %s", v.Name, v.Error))
		}
	}
	return state, strings.Join(msgs, "; ")
}

func trafficOf(vs []store.EndpointVersion) []traffic.Version {
	out := make([]traffic.Version, len(vs))
	for i, v := range vs {
		out[i] = traffic.Version{Name: v.Name, TrafficPercentile: v.TrafficPercentile, IsDefault: v.IsDefault, IsControl: v.IsControl, MirrorPercentile: v.MirrorPercentile}
	}
	return out
}

// mutate applies fn to the latest record of a service and saves it; records change one at a time.
func (d *Deployer) mutate(ctx context.Context, ws, name string, fn func(*store.Service) error) (store.Service, error) {
	d.recMu.Lock()
	defer d.recMu.Unlock()
	svc, err := d.opts.Store.GetService(ctx, ws, name)
	if err != nil {
		return svc, err
	}
	if err := fn(&svc); err != nil {
		return svc, err
	}
	svc.UpdatedTime = d.opts.Now().UTC()
	return svc, d.opts.Store.UpdateService(ctx, svc)
}
