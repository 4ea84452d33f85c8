package resources

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testServiceConfig() *ServiceConfig {
	return &ServiceConfig{
		APIVersion: "v1",
		Workspace:  "default",
		Name:       "fraud",
		Auth:       ServiceAuth{AuthEnabled: true, KeySecret: "fraud-keys"},
		Limits:     RequestLimits{MaxConcurrentRequestsPerContainer: 2, MaxQueueWaitMs: 500, ScoringTimeoutMs: 60000},
		Versions: []VersionConfig{
			{Name: "blue", Replicas: "fraud-blue-" + hash("fraud\x00blue"), TrafficPercentile: 80, IsDefault: true, IsControlVersion: true,
				Scale: ScaleConfig{AutoscaleEnabled: true, MinReplicas: 1, MaxReplicas: 10, RefreshPeriodInSeconds: 1, TargetUtilization: 70}},
			{Name: "green", Replicas: "fraud-green-" + hash("fraud\x00green"), TrafficPercentile: 20, MirrorPercentile: 5,
				Scale: ScaleConfig{NumReplicas: 2}},
		},
	}
}

func TestServiceConfigRoundTrip(t *testing.T) {
	c := testServiceConfig()
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseServiceConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}
	again, _ := back.Marshal()
	if string(again) != string(data) {
		t.Errorf("Marshal is not stable:\n%s\n%s", data, again)
	}

	c.APIVersion = ""
	if data2, err := c.Marshal(); err != nil || string(data2) != string(data) {
		t.Errorf("Marshal with no apiVersion should write v1: %v\n%s", err, data2)
	}
	if c.APIVersion != "" {
		t.Error("Marshal changed its receiver")
	}
}

func TestServiceConfigParse(t *testing.T) {
	newer := `{"apiVersion":"v1","workspace":"w","name":"fraud","auth":{"authEnabled":false,"tokenAuthEnabled":true},
		"limits":{},"versions":[{"name":"fraud","replicas":"fraud","trafficPercentile":100,"scale":{"numReplicas":1},"futureField":1}],
		"anotherFutureField":{"x":1}}`
	c, err := ParseServiceConfig([]byte(newer))
	if err != nil {
		t.Fatalf("unknown fields in v1 must be ignored: %v", err)
	}
	if !c.Auth.TokenAuthEnabled || c.Versions[0].Scale.NumReplicas != 1 {
		t.Errorf("parsed %+v", c)
	}
	for name, mutate := range map[string]func(c *ServiceConfig){
		"apiVersion v2":         func(c *ServiceConfig) { c.APIVersion = "v2" },
		"bad name":              func(c *ServiceConfig) { c.Name = "Fraud" },
		"no workspace":          func(c *ServiceConfig) { c.Workspace = "" },
		"key and token auth":    func(c *ServiceConfig) { c.Auth.TokenAuthEnabled = true },
		"key auth without keys": func(c *ServiceConfig) { c.Auth.KeySecret = "" },
		"negative queue wait":   func(c *ServiceConfig) { c.Limits.MaxQueueWaitMs = -1 },
		"timeout over max":      func(c *ServiceConfig) { c.Limits.ScoringTimeoutMs = 300001 },
		"no versions":           func(c *ServiceConfig) { c.Versions = nil },
		"seven versions": func(c *ServiceConfig) {
			c.Versions = append(c.Versions, c.Versions[:1][0], c.Versions[0], c.Versions[0], c.Versions[0], c.Versions[0])
		},
		"duplicate version":      func(c *ServiceConfig) { c.Versions[1].Name = "blue" },
		"version without target": func(c *ServiceConfig) { c.Versions[0].Replicas = "" },
		"traffic over 100":       func(c *ServiceConfig) { c.Versions[0].TrafficPercentile = 101 },
		"negative mirror":        func(c *ServiceConfig) { c.Versions[1].MirrorPercentile = -1 },
		"negative replicas":      func(c *ServiceConfig) { c.Versions[1].Scale.NumReplicas = -1 },
		"min above max":          func(c *ServiceConfig) { c.Versions[0].Scale.MinReplicas = 11 },
		"utilization over 100":   func(c *ServiceConfig) { c.Versions[0].Scale.TargetUtilization = 101 },
	} {
		c := testServiceConfig()
		mutate(c)
		if _, err := c.Marshal(); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: Marshal error = %v, want ErrInvalid", name, err)
		}
		if err := c.Validate(); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: Validate error = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := ParseServiceConfig([]byte(`{"apiVersion":"v2"}`)); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), `"v1"`) {
		t.Errorf("v2 file: error = %v, want ErrInvalid naming v1", err)
	}
	if _, err := ParseServiceConfig([]byte(`{`)); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("bad JSON: error = %v, want ErrInvalid", err)
	}
}

func TestScaleFromConfig(t *testing.T) {
	for _, tc := range []struct {
		json string
		want ScaleConfig
	}{
		{`{}`, ScaleConfig{AutoscaleEnabled: true, MinReplicas: 1, MaxReplicas: 10, RefreshPeriodInSeconds: 1, TargetUtilization: 70}},
		{`{"numReplicas": 3}`, ScaleConfig{NumReplicas: 3}},
		{`{"autoScaler": {"minReplicas": 2, "maxReplicas": 4, "targetUtilization": 50}}`,
			ScaleConfig{AutoscaleEnabled: true, MinReplicas: 2, MaxReplicas: 4, RefreshPeriodInSeconds: 1, TargetUtilization: 50}},
	} {
		dc, err := config.ParseDeployment([]byte(tc.json), "dc.json")
		if err != nil {
			t.Fatal(err)
		}
		if got := ScaleFromConfig(dc); got != tc.want {
			t.Errorf("ScaleFromConfig(%s) = %+v, want %+v", tc.json, got, tc.want)
		}
	}
}

func TestServiceConfigMap(t *testing.T) {
	cm, err := ServiceConfigMap("mlship", testServiceConfig())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "service-configmap.yaml", cm)
	goldenBytes(t, "service.json", []byte(cm.Data[ServiceConfigKey]))
	back, err := ServiceConfigFrom(cm)
	if err != nil || !reflect.DeepEqual(back, testServiceConfig()) {
		t.Errorf("ServiceConfigFrom = %+v, %v", back, err)
	}
	delete(cm.Data, ServiceConfigKey)
	if _, err := ServiceConfigFrom(cm); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("no service.json: error = %v, want ErrInvalid", err)
	}
	if cm.Labels[LabelComponent] != ComponentService || cm.Labels[LabelManagedBy] != ManagedBy {
		t.Errorf("labels = %v: the router selects with %s", cm.Labels, ServiceConfigSelector)
	}
}

func TestOwnerReference(t *testing.T) {
	owner := testOwner("fraud")
	ref, err := OwnerReference(owner)
	if err != nil {
		t.Fatal(err)
	}
	want := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "fraud", UID: owner.UID,
		Controller: ptr(true), BlockOwnerDeletion: ptr(true)}
	if !reflect.DeepEqual(ref, want) {
		t.Errorf("OwnerReference = %+v, want %+v", ref, want)
	}
	if _, err := OwnerReference(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fraud"}}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("no UID: error = %v, want ErrInvalid", err)
	}
	other := testOwner("other")
	other.UID = "another"
	d, _ := Replica(testInput())
	if !IsOwnedBy(d, owner) || IsOwnedBy(d, other) || IsOwnedBy(d, nil) {
		t.Error("IsOwnedBy does not tell owners apart by UID")
	}
}
