package resources

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const testImage = "127.0.0.1:15001/mlship/fraud@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testOwner(service string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: "mlship", UID: "6f1c2c4e-0000-4000-8000-000000000001"}}
}

func testSpec() compute.Spec {
	return compute.Spec{
		Key:         compute.Key{Workspace: "default", Service: "fraud"},
		Generation:  3,
		ModelDir:    "/var/azureml-app/azureml-models/fraud-model/2",
		SourceDir:   "/var/azureml-app/source",
		EntryScript: "score.py",
		Env:         map[string]string{"ZETA": "1", "ALPHA": "a", "AZUREML_MODEL_DIR": "/elsewhere"},
		Replicas:    2,
		Workers:     2,
		// MaxConcurrentRequests, MaxQueueWait, ScoringTimeout, CPU, MemoryGB: Azure's defaults
	}
}

func testInput() ReplicaInput {
	return ReplicaInput{Namespace: "mlship", Spec: testSpec(), Image: testImage, Owner: testOwner("fraud")}
}

func intp(v int) *int { return &v }

func TestReplicaGolden(t *testing.T) {
	d, err := Replica(testInput())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "replica-default.yaml", d)

	in := testInput()
	in.Spec.Key = compute.Key{Workspace: "team_a", Service: "fraud", Version: "blue"}
	in.Spec.SourceDir, in.Spec.EntryScript, in.Spec.Env = "", "", nil // a no-code ONNX model
	in.Spec.CPU, in.Spec.MemoryGB = 1.5, 3
	in.Spec.MaxConcurrentRequests, in.Spec.MaxQueueWait, in.Spec.ScoringTimeout = 4, 2*time.Second, 90500*time.Millisecond
	in.Limits = ResourceLimits{CPU: 2, MemoryGB: 4, GPUCores: 1}
	in.Liveness = config.LivenessProbeRequirements{PeriodSeconds: intp(5), InitialDelaySeconds: intp(30)}
	in.Spec.Replicas = 0
	d, err = Replica(in)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "replica-version-gpu.yaml", d)
}

func TestReplicaResources(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cpu, mem     float64
		limits       ResourceLimits
		wantRequests map[string]string
		wantLimits   map[string]string
	}{
		{"defaults", 0, 0, ResourceLimits{}, map[string]string{"cpu": "100m", "memory": "512Mi"}, nil},
		{"azure defaults given", 0.1, 0.5, ResourceLimits{}, map[string]string{"cpu": "100m", "memory": "512Mi"}, nil},
		{"whole units", 2, 2, ResourceLimits{}, map[string]string{"cpu": "2", "memory": "2Gi"}, nil},
		{"fractions", 1.5, 1.5, ResourceLimits{}, map[string]string{"cpu": "1500m", "memory": "1536Mi"}, nil},
		{"float noise", 0.3, 0.3, ResourceLimits{}, map[string]string{"cpu": "300m", "memory": "308Mi"}, nil},
		{"rounded up to MiB", 0.0005, 0.1, ResourceLimits{}, map[string]string{"cpu": "1m", "memory": "103Mi"}, nil},
		{"limits", 0.5, 1, ResourceLimits{CPU: 1, MemoryGB: 2},
			map[string]string{"cpu": "500m", "memory": "1Gi"}, map[string]string{"cpu": "1", "memory": "2Gi"}},
		{"memory limit only", 0.5, 1, ResourceLimits{MemoryGB: 1},
			map[string]string{"cpu": "500m", "memory": "1Gi"}, map[string]string{"memory": "1Gi"}},
		{"gpu", 1, 4, ResourceLimits{GPUCores: 2},
			map[string]string{"cpu": "1", "memory": "4Gi"}, map[string]string{"nvidia.com/gpu": "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput()
			in.Spec.CPU, in.Spec.MemoryGB, in.Limits = tc.cpu, tc.mem, tc.limits
			d, err := Replica(in)
			if err != nil {
				t.Fatal(err)
			}
			r := d.Spec.Template.Spec.Containers[0].Resources
			if got := quantities(r.Requests); !reflect.DeepEqual(got, tc.wantRequests) {
				t.Errorf("requests = %v, want %v", got, tc.wantRequests)
			}
			if got := quantities(r.Limits); !reflect.DeepEqual(got, tc.wantLimits) {
				t.Errorf("limits = %v, want %v", got, tc.wantLimits)
			}
		})
	}
}

func quantities(l corev1.ResourceList) map[string]string {
	if l == nil {
		return nil
	}
	m := map[string]string{}
	for k, v := range l {
		m[string(k)] = v.String()
	}
	return m
}

func TestReplicaLiveness(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   config.LivenessProbeRequirements
		want [5]int32 // period, initial delay, timeout, success, failure
	}{
		{"azure defaults", config.LivenessProbeRequirements{}, [5]int32{10, 310, 2, 1, 3}},
		{"parsed defaults", config.DefaultDeployment().LivenessProbeRequirements, [5]int32{10, 310, 2, 1, 3}},
		{"given", config.LivenessProbeRequirements{PeriodSeconds: intp(5), InitialDelaySeconds: intp(0), TimeoutSeconds: intp(4),
			SuccessThreshold: intp(1), FailureThreshold: intp(6)}, [5]int32{5, 0, 4, 1, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput()
			in.Liveness = tc.in
			d, err := Replica(in)
			if err != nil {
				t.Fatal(err)
			}
			p := d.Spec.Template.Spec.Containers[0].LivenessProbe
			got := [5]int32{p.PeriodSeconds, p.InitialDelaySeconds, p.TimeoutSeconds, p.SuccessThreshold, p.FailureThreshold}
			if got != tc.want || p.HTTPGet.Path != "/" || p.HTTPGet.Port.StrVal != "http" {
				t.Errorf("liveness = %v on %s %v, want %v on / http", got, p.HTTPGet.Path, p.HTTPGet.Port, tc.want)
			}
		})
	}
}

func TestReplicaShape(t *testing.T) {
	d, err := Replica(testInput())
	if err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template
	c := pod.Spec.Containers[0]
	wantCmd := []string{"/mlship", "score", "--model-dir", "/var/azureml-app/azureml-models/fraud-model/2",
		"--entry-script", "score.py", "--source-dir", "/var/azureml-app/source",
		"--host", "0.0.0.0", "--port", "5001", "--workers", "2", "--max-concurrent-requests", "1",
		"--max-queue-wait-ms", "500", "--scoring-timeout-ms", "60000"}
	if !reflect.DeepEqual(c.Command, wantCmd) {
		t.Errorf("command = %q\nwant      %q", c.Command, wantCmd)
	}
	wantEnv := []corev1.EnvVar{{Name: "AZUREML_MODEL_DIR", Value: "/var/azureml-app/azureml-models/fraud-model/2"},
		{Name: "ALPHA", Value: "a"}, {Name: "ZETA", Value: "1"}, {Name: "HOME", Value: "/tmp"}}
	if !reflect.DeepEqual(c.Env, wantEnv) {
		t.Errorf("env = %v, want %v", c.Env, wantEnv)
	}
	if r := c.ReadinessProbe; r.HTTPGet.Path != "/v2/health/ready" || r.PeriodSeconds != 1 || c.Ports[0].ContainerPort != 5001 {
		t.Errorf("readiness = %+v on port %v", r, c.Ports)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent || c.Image != testImage {
		t.Errorf("image %q pull %q", c.Image, c.ImagePullPolicy)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.String() != "25%" {
		t.Errorf("rolling update = %v/%v, want 0/25%%", ru.MaxUnavailable, ru.MaxSurge)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d", *d.Spec.Replicas)
	}
	if g := *pod.Spec.TerminationGracePeriodSeconds; g != 3+61+5 {
		t.Errorf("grace = %d, want preStop 3 + ceil(0.5 s + 60 s) + 5", g)
	}
	if pod.Annotations[AnnotationGeneration] != "3" || d.Labels[LabelGeneration] != "3" {
		t.Errorf("generation: pod annotations %v, labels %v", pod.Annotations, d.Labels)
	}
	wantLabels := map[string]string{LabelManagedBy: "mlship", LabelComponent: "replica", LabelWorkspace: "default",
		LabelService: "fraud", LabelVersion: "fraud", LabelGeneration: "3"}
	if !reflect.DeepEqual(d.Labels, wantLabels) || !reflect.DeepEqual(pod.Labels, wantLabels) {
		t.Errorf("labels = %v / pod %v, want %v", d.Labels, pod.Labels, wantLabels)
	}
	sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if !sel.Matches(labels.Set(pod.Labels)) || d.Spec.Selector.MatchLabels[LabelGeneration] != "" {
		t.Errorf("selector %v must match the pod labels and leave out the generation", sel)
	}
	sc := pod.Spec.SecurityContext
	if *sc.RunAsNonRoot != true || *sc.RunAsUser != NonRootUID || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("security context = %+v / %+v", sc, c.SecurityContext)
	}
	if !IsOwnedBy(d, testOwner("fraud")) || !*d.OwnerReferences[0].Controller {
		t.Errorf("owner references = %+v", d.OwnerReferences)
	}
}

func TestReplicaGenerationRolls(t *testing.T) {
	a, _ := Replica(testInput())
	in := testInput()
	in.Spec.Generation = 4
	b, _ := Replica(in)
	if reflect.DeepEqual(a.Spec.Template, b.Spec.Template) {
		t.Error("a new generation left the pod template unchanged: it would not roll")
	}
	if !reflect.DeepEqual(a.Spec.Selector, b.Spec.Selector) {
		t.Error("a new generation changed the (immutable) selector")
	}
}

func TestReplicaOptions(t *testing.T) {
	in := testInput()
	root := int64(0)
	in.User, in.Spec.Replicas, in.Binary, in.Spec.Python = &root, 0, "/usr/local/bin/mlship", "/opt/env/bin/python3"
	d, err := Replica(in)
	if err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	if pod.SecurityContext.RunAsNonRoot != nil || *pod.SecurityContext.RunAsUser != 0 {
		t.Errorf("root: security context = %+v", pod.SecurityContext)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("replicas 0 should leave spec.replicas to the autoscaler, got %d", *d.Spec.Replicas)
	}
	cmd := pod.Containers[0].Command
	if cmd[0] != "/usr/local/bin/mlship" || cmd[8] != "--python" || cmd[9] != "/opt/env/bin/python3" {
		t.Errorf("command = %q", cmd)
	}
	for _, e := range pod.Containers[0].Env {
		if e.Name == "HOME" {
			t.Errorf("HOME set for an image's own user: %v", e)
		}
	}
}

func TestLimitsFromConfig(t *testing.T) {
	dc, err := config.ParseDeployment([]byte(`{"containerResourceRequirements":{"cpu":1,"cpuLimit":2,"memoryInGBLimit":3},"gpuCores":1}`), "dc.json")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := LimitsFromConfig(dc), (ResourceLimits{CPU: 2, MemoryGB: 3, GPUCores: 1}); got != want {
		t.Errorf("LimitsFromConfig = %+v, want %+v", got, want)
	}
	if got := LimitsFromConfig(config.DefaultDeployment()); got != (ResourceLimits{}) {
		t.Errorf("defaults: %+v, want no limits", got)
	}
}

func TestReplicaInvalid(t *testing.T) {
	neg := func(f func(*ReplicaInput)) ReplicaInput { in := testInput(); f(&in); return in }
	for name, in := range map[string]ReplicaInput{
		"negative cpu":            neg(func(in *ReplicaInput) { in.Spec.CPU = -1 }),
		"negative memory":         neg(func(in *ReplicaInput) { in.Spec.MemoryGB = -0.5 }),
		"negative cpu limit":      neg(func(in *ReplicaInput) { in.Limits.CPU = -1 }),
		"negative gpu":            neg(func(in *ReplicaInput) { in.Limits.GPUCores = -1 }),
		"cpu limit below request": neg(func(in *ReplicaInput) { in.Spec.CPU, in.Limits.CPU = 2, 1 }),
		"memory limit below":      neg(func(in *ReplicaInput) { in.Limits.MemoryGB = 0.25 }),
		"negative workers":        neg(func(in *ReplicaInput) { in.Spec.Workers = -1 }),
		"negative queue wait":     neg(func(in *ReplicaInput) { in.Spec.MaxQueueWait = -time.Second }),
		"timeout over azure max":  neg(func(in *ReplicaInput) { in.Spec.ScoringTimeout = 301 * time.Second }),
		"negative replicas":       neg(func(in *ReplicaInput) { in.Spec.Replicas = -1 }),
		"negative generation":     neg(func(in *ReplicaInput) { in.Spec.Generation = -1 }),
		"liveness success 2":      neg(func(in *ReplicaInput) { in.Liveness.SuccessThreshold = intp(2) }),
		"liveness period 0":       neg(func(in *ReplicaInput) { in.Liveness.PeriodSeconds = intp(0) }),
		"liveness negative delay": neg(func(in *ReplicaInput) { in.Liveness.InitialDelaySeconds = intp(-1) }),
		"no image":                neg(func(in *ReplicaInput) { in.Image = "" }),
		"no model dir":            neg(func(in *ReplicaInput) { in.Spec.ModelDir = "" }),
		"script without source":   neg(func(in *ReplicaInput) { in.Spec.SourceDir = "" }),
		"bad version name":        neg(func(in *ReplicaInput) { in.Spec.Version = "Blue" }),
		"no owner":                neg(func(in *ReplicaInput) { in.Owner = nil }),
		"owner without uid":       neg(func(in *ReplicaInput) { in.Owner = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fraud"}} }),
	} {
		if _, err := Replica(in); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: error = %v, want ErrInvalid", name, err)
		}
	}
}
