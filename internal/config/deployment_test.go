package config

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"
)

func TestEmptyDeploymentIsDefaults(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"empty.json", `{}`},
		{"empty.yml", ``},
		{"null.yml", "# nothing here\n"},
		{"nulls.json", `{"autoScaler": null, "numReplicas": null, "keys": null}`},
	} {
		got, err := ParseDeployment([]byte(tc.data), tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, DefaultDeployment()) {
			t.Errorf("%s: got %s, want the defaults %s", tc.name, mustJSON(t, got), mustJSON(t, DefaultDeployment()))
		}
	}
}

// TestDefaultDeploymentValues pins Azure ML's documented defaults.
func TestDefaultDeploymentValues(t *testing.T) {
	const want = `{"computeType":"AKS",` +
		`"autoScaler":{"autoscaleEnabled":true,"minReplicas":1,"maxReplicas":10,"refreshPeriodInSeconds":1,"targetUtilization":70},` +
		`"containerResourceRequirements":{"cpu":0.1,"memoryInGB":0.5},"gpuCores":0,` +
		`"livenessProbeRequirements":{"periodSeconds":10,"initialDelaySeconds":310,"timeoutSeconds":2,"successThreshold":1,"failureThreshold":3},` +
		`"authEnabled":true,"tokenAuthEnabled":false,"appInsightsEnabled":false,"dataCollection":{"storageEnabled":false},` +
		`"scoringTimeoutMs":60000,"maxConcurrentRequestsPerContainer":1,"maxQueueWaitMs":500}`
	if got := mustJSON(t, DefaultDeployment()); got != want {
		t.Errorf("defaults:\n got %s\nwant %s", got, want)
	}
	d := DefaultDeployment()
	if !d.Autoscale() || d.ScoringTimeout() != time.Minute || d.MaxQueueWait() != 500*time.Millisecond {
		t.Errorf("Autoscale=%v ScoringTimeout=%v MaxQueueWait=%v", d.Autoscale(), d.ScoringTimeout(), d.MaxQueueWait())
	}
	if lo, hi := d.Replicas(); lo != 1 || hi != 10 {
		t.Errorf("Replicas = %d, %d", lo, hi)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestExampleDeploymentConfigs(t *testing.T) {
	for _, tc := range []struct {
		file        string
		computeType string
		autoscale   bool
		lo, hi      int
		cpu, mem    float64
		auth, token bool
		endpoint    bool
	}{
		{"deploymentconfig.json", ComputeAKS, true, 1, 3, 0.5, 1, true, false, false},
		{"deploymentconfig-numreplicas.json", ComputeAKS, false, 2, 2, 1, 2, false, true, false},
		{"deploymentconfig-endpoint.json", ComputeAKSEndpoint, true, 1, 4, 0.5, 1, true, false, true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c, err := LoadDeployment("../../examples/configs/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := c.Replicas()
			r := c.ContainerResourceRequirements
			if c.ComputeType != tc.computeType || c.Autoscale() != tc.autoscale || lo != tc.lo || hi != tc.hi ||
				*r.CPU != tc.cpu || *r.MemoryInGB != tc.mem || *c.AuthEnabled != tc.auth || *c.TokenAuthEnabled != tc.token ||
				c.IsEndpoint() != tc.endpoint {
				t.Errorf("got %s", mustJSON(t, c))
			}
		})
	}
}

func TestEndpointExample(t *testing.T) {
	c, err := LoadDeployment("../../examples/configs/deploymentconfig-endpoint.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.VersionName != "version-a" || *c.TrafficPercentile != 20 || !*c.IsDefault || !*c.IsControlVersion ||
		*c.Keys.PrimaryKey != "primary-7f3c9a1e5d" || *c.Keys.SecondaryKey != "secondary-2b8e4f6a0c" {
		t.Errorf("got %s", mustJSON(t, c))
	}
}

// TestNumReplicasDisablesAutoscale covers Azure's rule: autoscale is on unless numReplicas is set.
func TestNumReplicasDisablesAutoscale(t *testing.T) {
	for _, tc := range []struct {
		data      string
		autoscale bool
		lo, hi    int
	}{
		{`{"numReplicas": 3}`, false, 3, 3},
		{`{"numReplicas": 3, "autoScaler": {"autoscaleEnabled": false}}`, false, 3, 3},
		{`{"autoScaler": {"maxReplicas": 4}}`, true, 1, 4},
		{`{"autoScaler": {"autoscaleEnabled": true, "minReplicas": 2}}`, true, 2, 10},
	} {
		c, err := ParseDeployment([]byte(tc.data), "t.json")
		if err != nil {
			t.Fatalf("%s: %v", tc.data, err)
		}
		lo, hi := c.Replicas()
		if c.Autoscale() != tc.autoscale || lo != tc.lo || hi != tc.hi {
			t.Errorf("%s: Autoscale=%v Replicas=%d,%d", tc.data, c.Autoscale(), lo, hi)
		}
		if !tc.autoscale && (c.AutoScaler.MinReplicas != nil || c.AutoScaler.TargetUtilization != nil) {
			t.Errorf("%s: autoscaler defaults filled although autoscaling is off: %s", tc.data, mustJSON(t, c))
		}
	}
}

func TestTokenAuthTurnsKeyAuthDefaultOff(t *testing.T) {
	c, err := ParseDeployment([]byte(`{"tokenAuthEnabled": true}`), "t.json")
	if err != nil {
		t.Fatal(err)
	}
	if *c.AuthEnabled || !*c.TokenAuthEnabled {
		t.Errorf("authEnabled=%v tokenAuthEnabled=%v", *c.AuthEnabled, *c.TokenAuthEnabled)
	}
}

func TestComputeTypeNormalized(t *testing.T) {
	for in, want := range map[string]string{"aks": ComputeAKS, "Aks": ComputeAKS, "aksendpoint": ComputeAKSEndpoint, "LOCAL": ComputeLocal, "local": ComputeLocal} {
		data := `{"computeType": "` + in + `"}`
		if want == ComputeAKSEndpoint {
			data = `{"computeType": "` + in + `", "versionName": "v-one"}`
		}
		c, err := ParseDeployment([]byte(data), "t.json")
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if c.ComputeType != want {
			t.Errorf("computeType %q normalized to %q, want %q", in, c.ComputeType, want)
		}
	}
}

func TestYAMLEqualsJSON(t *testing.T) {
	j, err := LoadDeployment("../../examples/configs/deploymentconfig.json")
	if err != nil {
		t.Fatal(err)
	}
	y, err := ParseDeployment([]byte(`
computeType: aks
autoScaler:
  autoscaleEnabled: true
  minReplicas: 1
  maxReplicas: 3
  refreshPeriodInSeconds: 1
  targetUtilization: 70
dataCollection:
  storageEnabled: true
authEnabled: true
containerResourceRequirements:
  cpu: 0.5
  memoryInGB: 1.0
`), "deploymentconfig.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(j, y) {
		t.Errorf("YAML and JSON differ:\n%s\n%s", mustJSON(t, j), mustJSON(t, y))
	}
}

// TestDeploymentRoundTrip checks that a parsed config, serialized into the service record and
// parsed again, is unchanged.
func TestDeploymentRoundTrip(t *testing.T) {
	inputs := map[string][]byte{"default": []byte(`{}`), "local": []byte(`{"computeType": "local", "port": 8890}`)}
	for _, f := range []string{"deploymentconfig.json", "deploymentconfig-numreplicas.json", "deploymentconfig-endpoint.json"} {
		data, err := os.ReadFile("../../examples/configs/" + f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = data
	}
	for name, data := range inputs {
		first, err := ParseDeployment(data, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := json.Marshal(first)
		if err != nil {
			t.Fatal(err)
		}
		second, err := ParseDeployment(out, name)
		if err != nil {
			t.Fatalf("%s: re-parse: %v\n%s", name, err, out)
		}
		if !reflect.DeepEqual(first, second) {
			t.Errorf("%s: round trip changed the config:\n%s\n%s", name, out, mustJSON(t, second))
		}
	}
}

func TestValidateHandBuilt(t *testing.T) {
	c := DefaultDeployment()
	c.NumReplicas = ptr(2)
	err := c.Validate()
	const want = "numReplicas: cannot be set when autoScaler.autoscaleEnabled is true; remove one of them"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
