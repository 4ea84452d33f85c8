package routerd

import (
	"net"
	"sort"
	"strconv"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/router"
)

// portName is the EndpointSlice port the replicas serve scoring on (resources' Service port name).
const portName = "http"

// routerConfig maps service.json (and the keys of its Secret) to what the router knows of the
// service, as the control plane's in-process frontend does from its records.
func routerConfig(c *resources.ServiceConfig, keys []string, downscale time.Duration) router.ServiceConfig {
	auth := router.AuthConfig{KeyAuth: c.Auth.AuthEnabled, TokenAuth: c.Auth.TokenAuthEnabled}
	if auth.KeyAuth {
		auth.Keys = append([]string(nil), keys...)
	}
	versions := make([]router.VersionConfig, len(c.Versions))
	for i, v := range c.Versions {
		versions[i] = router.VersionConfig{
			Name:              v.Name,
			TrafficPercentile: v.TrafficPercentile,
			IsDefault:         v.IsDefault,
			IsControl:         v.IsControlVersion,
			MirrorPercentile:  v.MirrorPercentile,
			Scale:             scaleSpec(v.Scale, downscale),
		}
	}
	return router.ServiceConfig{
		Name:      c.Name,
		Workspace: c.Workspace,
		Auth:      auth,
		Limits: router.Limits{
			MaxConcurrentRequestsPerContainer: c.Limits.MaxConcurrentRequestsPerContainer,
			MaxQueueWait:                      time.Duration(c.Limits.MaxQueueWaitMs) * time.Millisecond,
			ScoringTimeout:                    time.Duration(c.Limits.ScoringTimeoutMs) * time.Millisecond,
		},
		Versions: versions,
	}
}

// scaleSpec maps a version's scale settings; zeros are left for the router's Azure defaults.
// Without autoscaling and without numReplicas the version is not managed.
func scaleSpec(s resources.ScaleConfig, downscale time.Duration) router.ScaleSpec {
	if !s.AutoscaleEnabled {
		return router.ScaleSpec{NumReplicas: s.NumReplicas}
	}
	return router.ScaleSpec{
		Autoscale:         true,
		MinReplicas:       s.MinReplicas,
		MaxReplicas:       s.MaxReplicas,
		TargetUtilization: s.TargetUtilization,
		RefreshPeriod:     time.Duration(s.RefreshPeriodInSeconds) * time.Second,
		DownscaleDelay:    downscale,
	}
}

// replicasFrom turns a version's EndpointSlices into router replicas, sorted by ID. An endpoint
// whose ready condition is unset counts as ready (the API's rule); terminating endpoints are
// left out, so they get no new requests while the router lets their in-flight ones finish.
// An endpoint listed by two slices (the controller moving it) appears once, ready if either says
// so. mapAddr, if not nil, rewrites addresses (tests).
func replicasFrom(slices []*discoveryv1.EndpointSlice, mapAddr func(string) string) []router.Replica {
	byID := map[string]router.Replica{}
	for _, s := range slices {
		port, ok := httpPort(s)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) == 0 || isTrue(ep.Conditions.Terminating, false) {
				continue
			}
			addr := ep.Addresses[0]
			id := addr
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && ep.TargetRef.Name != "" {
				id = ep.TargetRef.Name
			}
			if mapAddr != nil {
				addr = mapAddr(addr)
			}
			rep := router.Replica{
				ID:    id,
				URL:   "http://" + net.JoinHostPort(addr, strconv.Itoa(int(port))),
				Ready: isTrue(ep.Conditions.Ready, true),
			}
			if prev, seen := byID[id]; seen && prev.Ready && !rep.Ready {
				continue
			}
			byID[id] = rep
		}
	}
	out := make([]router.Replica, 0, len(byID))
	for _, r := range byID {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func httpPort(s *discoveryv1.EndpointSlice) (int32, bool) {
	for _, p := range s.Ports {
		if p.Name != nil && *p.Name == portName && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

func isTrue(b *bool, unset bool) bool {
	if b == nil {
		return unset
	}
	return *b
}
