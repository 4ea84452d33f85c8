package routerd

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/router"
)

func TestRouterConfigMapsServiceJSON(t *testing.T) {
	c := &resources.ServiceConfig{
		APIVersion: "v1", Workspace: "ws", Name: "fraud",
		Auth:   resources.ServiceAuth{AuthEnabled: true, KeySecret: "fraud-keys"},
		Limits: resources.RequestLimits{MaxConcurrentRequestsPerContainer: 2, MaxQueueWaitMs: 750, ScoringTimeoutMs: 3000},
		Versions: []resources.VersionConfig{
			{Name: "blue", Replicas: "fraud-blue-1", TrafficPercentile: 70, IsDefault: true, IsControlVersion: true,
				Scale: resources.ScaleConfig{AutoscaleEnabled: true, MinReplicas: 2, MaxReplicas: 5, RefreshPeriodInSeconds: 3, TargetUtilization: 50}},
			{Name: "green", Replicas: "fraud-green-2", TrafficPercentile: 30, MirrorPercentile: 10,
				Scale: resources.ScaleConfig{NumReplicas: 3}},
		},
	}
	got := routerConfig(c, []string{"k1", "k2"}, 7*time.Second)
	want := router.ServiceConfig{
		Name: "fraud", Workspace: "ws",
		Auth:   router.AuthConfig{KeyAuth: true, Keys: []string{"k1", "k2"}},
		Limits: router.Limits{MaxConcurrentRequestsPerContainer: 2, MaxQueueWait: 750 * time.Millisecond, ScoringTimeout: 3 * time.Second},
		Versions: []router.VersionConfig{
			{Name: "blue", TrafficPercentile: 70, IsDefault: true, IsControl: true,
				Scale: router.ScaleSpec{Autoscale: true, MinReplicas: 2, MaxReplicas: 5, TargetUtilization: 50, RefreshPeriod: 3 * time.Second, DownscaleDelay: 7 * time.Second}},
			{Name: "green", TrafficPercentile: 30, MirrorPercentile: 10, Scale: router.ScaleSpec{NumReplicas: 3}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("routerConfig =\n%+v\nwant\n%+v", got, want)
	}
}

func TestRouterConfigAuthAndDefaults(t *testing.T) {
	tests := []struct {
		name string
		auth resources.ServiceAuth
		keys []string
		want router.AuthConfig
	}{
		{"open", resources.ServiceAuth{}, []string{"ignored"}, router.AuthConfig{}},
		{"keys", resources.ServiceAuth{AuthEnabled: true, KeySecret: "s"}, []string{"a", "b"}, router.AuthConfig{KeyAuth: true, Keys: []string{"a", "b"}}},
		// A missing Secret gives no keys: key auth stays on and refuses every key.
		{"keys without secret", resources.ServiceAuth{AuthEnabled: true, KeySecret: "s"}, nil, router.AuthConfig{KeyAuth: true}},
		{"tokens", resources.ServiceAuth{TokenAuthEnabled: true}, []string{"ignored"}, router.AuthConfig{TokenAuth: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &resources.ServiceConfig{Name: "svc", Auth: tt.auth, Versions: []resources.VersionConfig{{Name: "svc", Replicas: "svc"}}}
			got := routerConfig(c, tt.keys, 0)
			if !reflect.DeepEqual(got.Auth, tt.want) {
				t.Errorf("auth = %+v, want %+v", got.Auth, tt.want)
			}
			// Zero limits and scale stay zero: the router applies Azure's defaults, and a version
			// with neither autoscaling nor numReplicas is not managed.
			if got.Limits != (router.Limits{}) || got.Versions[0].Scale != (router.ScaleSpec{}) {
				t.Errorf("limits %+v, scale %+v: want zeros", got.Limits, got.Versions[0].Scale)
			}
		})
	}
}

func TestReplicasFromEndpointSlices(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	pod := func(name string) *corev1.ObjectReference { return &corev1.ObjectReference{Kind: "Pod", Name: name} }
	slice := func(port *int32, portName string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   eps,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr(portName), Port: port}},
		}
	}
	ep := func(addr string, ready, terminating *bool, ref *corev1.ObjectReference) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: terminating}, TargetRef: ref}
	}
	tests := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   []router.Replica
	}{
		{"none", nil, []router.Replica{}},
		{"ready, unset and not ready", []*discoveryv1.EndpointSlice{slice(ptr(int32(5001)), "http",
			ep("10.0.0.2", yes, nil, pod("b")), ep("10.0.0.1", nil, nil, pod("a")), ep("10.0.0.3", no, no, pod("c")))},
			[]router.Replica{{ID: "a", URL: "http://10.0.0.1:5001", Ready: true}, {ID: "b", URL: "http://10.0.0.2:5001", Ready: true},
				{ID: "c", URL: "http://10.0.0.3:5001", Ready: false}}},
		{"terminating left out, even if serving", []*discoveryv1.EndpointSlice{slice(ptr(int32(5001)), "http",
			ep("10.0.0.1", no, yes, pod("a")), ep("10.0.0.2", nil, no, pod("b")))},
			[]router.Replica{{ID: "b", URL: "http://10.0.0.2:5001", Ready: true}}},
		{"no http port: slice ignored", []*discoveryv1.EndpointSlice{slice(ptr(int32(9090)), "metrics", ep("10.0.0.1", yes, nil, pod("a")))},
			[]router.Replica{}},
		{"port unset: slice ignored", []*discoveryv1.EndpointSlice{slice(nil, "http", ep("10.0.0.1", yes, nil, pod("a")))},
			[]router.Replica{}},
		{"IPv6 and no pod reference", []*discoveryv1.EndpointSlice{slice(ptr(int32(5001)), "http", ep("fd00::1", yes, nil, nil))},
			[]router.Replica{{ID: "fd00::1", URL: "http://[fd00::1]:5001", Ready: true}}},
		{"endpoint in two slices: once, ready wins", []*discoveryv1.EndpointSlice{
			slice(ptr(int32(5001)), "http", ep("10.0.0.1", yes, nil, pod("a"))),
			slice(ptr(int32(5001)), "http", ep("10.0.0.1", no, nil, pod("a")))},
			[]router.Replica{{ID: "a", URL: "http://10.0.0.1:5001", Ready: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replicasFrom(tt.slices, nil); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("replicasFrom = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
