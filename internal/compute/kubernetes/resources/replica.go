package resources

import (
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// NonRootUID is the user replicas and the router run as unless the input says otherwise: the
// "nonroot" user of distroless images. mlship's base images have only root in /etc/passwd, so a
// fixed numeric UID is what lets runAsNonRoot pass.
const NonRootUID int64 = 65532

const (
	preStopSleepSeconds  = 3 // lets the router see the pod leave the EndpointSlice before it stops
	shutdownSlackSeconds = 5
	readyPath            = "/v2/health/ready"
	livePath             = "/"
)

// ReplicaInput is what Replica needs for one service version.
type ReplicaInput struct {
	Namespace string
	// Spec's ModelDir, SourceDir, EntryScript and Python are paths inside Image. Spec.CPU and
	// Spec.MemoryGB are the requests (0 = Azure's defaults 0.1 and 0.5). Spec.Replicas 0 leaves
	// spec.replicas unset, so an apply does not fight the router's autoscaler.
	Spec   compute.Spec
	Image  string
	Binary string // the mlship binary in Image; default DefaultBinary
	Limits ResourceLimits
	// Liveness is Azure's livenessProbeRequirements; nil fields take Azure's defaults.
	Liveness config.LivenessProbeRequirements
	// User is the UID the container runs as: nil = NonRootUID with runAsNonRoot; 0 = root (for
	// images that need it, runAsNonRoot off); another value = that UID with runAsNonRoot.
	User *int64
	// Owner is the service's owner ConfigMap, as returned by the API server (it needs a UID).
	Owner *corev1.ConfigMap
}

// ResourceLimits are deploymentconfig's cpuLimit, memoryInGBLimit and gpuCores; 0 = none.
type ResourceLimits struct {
	CPU, MemoryGB float64
	GPUCores      int
}

// LimitsFromConfig takes the limits out of a parsed deployment config.
func LimitsFromConfig(dc *config.DeploymentConfig) ResourceLimits {
	r := dc.ContainerResourceRequirements
	return ResourceLimits{CPU: deref(r.CPULimit), MemoryGB: deref(r.MemoryInGBLimit), GPUCores: deref(dc.GPUCores)}
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

// Replica builds the Deployment running in.Spec's replicas. Every error matches errdefs.ErrInvalid.
func Replica(in ReplicaInput) (*appsv1.Deployment, error) {
	s := in.Spec
	name, err := ReplicaName(s.Key)
	if err != nil {
		return nil, err
	}
	if in.Image == "" {
		return nil, errdefs.Invalid("replicas of %s: no image", s.Key)
	}
	if s.ModelDir == "" {
		return nil, errdefs.Invalid("replicas of %s: no model directory", s.Key)
	}
	if s.Generation < 0 {
		return nil, errdefs.Invalid("replicas of %s: generation %d is negative", s.Key, s.Generation)
	}
	owner, err := OwnerReference(in.Owner)
	if err != nil {
		return nil, err
	}
	res, err := resources(s.CPU, s.MemoryGB, in.Limits)
	if err != nil {
		return nil, errdefs.Invalid("replicas of %s: %w", s.Key, err)
	}
	args, err := scoreArgs(s)
	if err != nil {
		return nil, errdefs.Invalid("replicas of %s: %w", s.Key, err)
	}
	live, err := liveness(in.Liveness)
	if err != nil {
		return nil, errdefs.Invalid("replicas of %s: %w", s.Key, err)
	}
	if s.Replicas < 0 {
		return nil, errdefs.Invalid("replicas of %s: %d replicas is negative", s.Key, s.Replicas)
	}
	var replicas *int32
	if s.Replicas > 0 {
		replicas = ptr(int32(s.Replicas))
	}
	binary := in.Binary
	if binary == "" {
		binary = DefaultBinary
	}
	gen := strconv.FormatInt(s.Generation, 10)
	labels := replicaLabels(s.Key)
	labels[LabelGeneration] = gen
	sc, podSC := securityContexts(in.User)
	maxUnavailable, maxSurge := intstr.FromInt32(0), intstr.FromString("25%")

	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       in.Namespace,
			Labels:          labels,
			Annotations:     map[string]string{AnnotationWorkspace: s.Workspace, AnnotationGeneration: gen},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: replicas,
			Selector: &metav1.LabelSelector{MatchLabels: replicaSelector(s.Key)},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable, MaxSurge: &maxSurge},
			},
			RevisionHistoryLimit: ptr(int32(3)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      copyMap(labels),
					Annotations: map[string]string{AnnotationGeneration: gen},
				},
				Spec: corev1.PodSpec{
					// The model's code has no business with the API server or other services' env.
					AutomountServiceAccountToken:  ptr(false),
					EnableServiceLinks:            ptr(false),
					TerminationGracePeriodSeconds: ptr(gracePeriod(s)),
					SecurityContext:               podSC,
					Containers: []corev1.Container{{
						Name:            "score",
						Image:           in.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         append([]string{binary}, args...),
						Ports:           []corev1.ContainerPort{{Name: portName, ContainerPort: ScoringPort, Protocol: corev1.ProtocolTCP}},
						Env:             env(s, in.User == nil),
						Resources:       res,
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:     httpGet(readyPath),
							PeriodSeconds:    1,
							TimeoutSeconds:   1,
							SuccessThreshold: 1,
							FailureThreshold: 3,
						},
						LivenessProbe: live,
						Lifecycle: &corev1.Lifecycle{
							PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: preStopSleepSeconds}},
						},
						SecurityContext:          sc,
						TerminationMessagePath:   corev1.TerminationMessagePathDefault,
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
				},
			},
		},
	}
	return d, nil
}

// scoreArgs are mlship score's flags. --host 0.0.0.0: the kubelet's probes and the router reach
// the pod on its IP, not on loopback (score's default).
func scoreArgs(s compute.Spec) ([]string, error) {
	for _, c := range []struct {
		name string
		v    int64
	}{{"workers", int64(s.Workers)}, {"maxConcurrentRequests", int64(s.MaxConcurrentRequests)},
		{"maxQueueWait", int64(s.MaxQueueWait)}, {"scoringTimeout", int64(s.ScoringTimeout)}} {
		if c.v < 0 {
			return nil, errdefs.Invalid("%s %d is negative", c.name, c.v)
		}
	}
	if s.ScoringTimeout > time.Duration(config.MaxScoringTimeoutMs)*time.Millisecond {
		return nil, errdefs.Invalid("scoringTimeout %v is over Azure's limit of %d ms", s.ScoringTimeout, config.MaxScoringTimeoutMs)
	}
	if s.EntryScript != "" && s.SourceDir == "" {
		return nil, errdefs.Invalid("entry script %q without a source directory", s.EntryScript)
	}
	a := []string{"score", "--model-dir", s.ModelDir}
	if s.SourceDir != "" {
		a = append(a, "--entry-script", s.EntryScript, "--source-dir", s.SourceDir)
	}
	if s.Python != "" {
		a = append(a, "--python", s.Python)
	}
	queue, timeout := limitsOf(s)
	return append(a,
		"--host", "0.0.0.0",
		"--port", strconv.Itoa(ScoringPort),
		"--workers", strconv.Itoa(orDefault(s.Workers, 1)),
		"--max-concurrent-requests", strconv.Itoa(orDefault(s.MaxConcurrentRequests, config.DefaultMaxConcurrentRequests)),
		"--max-queue-wait-ms", strconv.FormatInt(queue.Milliseconds(), 10),
		"--scoring-timeout-ms", strconv.FormatInt(timeout.Milliseconds(), 10),
	), nil
}

// limitsOf applies Azure's defaults to a spec's zero queue wait and scoring timeout.
func limitsOf(s compute.Spec) (queue, timeout time.Duration) {
	queue, timeout = s.MaxQueueWait, s.ScoringTimeout
	if queue == 0 {
		queue = config.DefaultMaxQueueWaitMs * time.Millisecond
	}
	if timeout == 0 {
		timeout = config.DefaultScoringTimeoutMs * time.Millisecond
	}
	return queue, timeout
}

// gracePeriod covers the preStop sleep plus the longest a request admitted just before SIGTERM
// can take in the replica (queue wait + scoring timeout), plus slack for the shutdown itself.
func gracePeriod(s compute.Spec) int64 {
	queue, timeout := limitsOf(s)
	return preStopSleepSeconds + int64(math.Ceil((queue + timeout).Seconds())) + shutdownSlackSeconds
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// env is AZUREML_MODEL_DIR, then the spec's variables sorted by name (the model dir wins over a
// variable of the same name). A non-root UID without a passwd entry gets HOME=/tmp, writable.
func env(s compute.Spec, defaultUser bool) []corev1.EnvVar {
	e := []corev1.EnvVar{{Name: "AZUREML_MODEL_DIR", Value: s.ModelDir}}
	names := make([]string, 0, len(s.Env))
	for k := range s.Env {
		if k != "AZUREML_MODEL_DIR" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		e = append(e, corev1.EnvVar{Name: k, Value: s.Env[k]})
	}
	if _, ok := s.Env["HOME"]; defaultUser && !ok {
		e = append(e, corev1.EnvVar{Name: "HOME", Value: "/tmp"})
	}
	return e
}

// resources turns Azure's cores and GB (GiB, as Azure means them) into requests and limits.
func resources(cpu, memGB float64, l ResourceLimits) (corev1.ResourceRequirements, error) {
	if cpu == 0 {
		cpu = config.DefaultCPU
	}
	if memGB == 0 {
		memGB = config.DefaultMemoryInGB
	}
	for _, c := range []struct {
		name string
		v    float64
	}{{"cpu", cpu}, {"memoryInGB", memGB}, {"cpuLimit", l.CPU}, {"memoryInGBLimit", l.MemoryGB}, {"gpuCores", float64(l.GPUCores)}} {
		if c.v < 0 || math.IsNaN(c.v) || math.IsInf(c.v, 0) {
			return corev1.ResourceRequirements{}, errdefs.Invalid("containerResourceRequirements: %s %v must be a positive number", c.name, c.v)
		}
	}
	if l.CPU > 0 && l.CPU < cpu {
		return corev1.ResourceRequirements{}, errdefs.Invalid("cpuLimit %v is below the cpu request %v", l.CPU, cpu)
	}
	if l.MemoryGB > 0 && l.MemoryGB < memGB {
		return corev1.ResourceRequirements{}, errdefs.Invalid("memoryInGBLimit %v is below the memoryInGB request %v", l.MemoryGB, memGB)
	}
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    CPUQuantity(cpu),
		corev1.ResourceMemory: MemoryQuantity(memGB),
	}}
	if l.CPU > 0 || l.MemoryGB > 0 || l.GPUCores > 0 {
		r.Limits = corev1.ResourceList{}
	}
	if l.CPU > 0 {
		r.Limits[corev1.ResourceCPU] = CPUQuantity(l.CPU)
	}
	if l.MemoryGB > 0 {
		r.Limits[corev1.ResourceMemory] = MemoryQuantity(l.MemoryGB)
	}
	if l.GPUCores > 0 {
		// Extended resources take requests = limits; the limit alone is enough.
		r.Limits[GPUResourceName] = *resource.NewQuantity(int64(l.GPUCores), resource.DecimalSI)
	}
	return r, nil
}

// CPUQuantity is cores in millicores, rounded up to a whole millicore: 0.1 → "100m", 2 → "2".
func CPUQuantity(cores float64) resource.Quantity {
	return *resource.NewMilliQuantity(ceil(cores*1000), resource.DecimalSI)
}

// MemoryQuantity is GiB in whole MiB, rounded up: 0.5 → "512Mi", 2 → "2Gi", 0.1 → "103Mi".
func MemoryQuantity(gib float64) resource.Quantity {
	return *resource.NewQuantity(ceil(gib*1024)<<20, resource.BinarySI)
}

// ceil rounds up, ignoring float noise (0.3*1000 = 300.00000000000006 is 300).
func ceil(f float64) int64 {
	if r := math.Round(f); math.Abs(f-r) < 1e-6 {
		return int64(r)
	}
	return int64(math.Ceil(f))
}

// liveness is Azure's livenessProbeRequirements on GET / (the replica's "Healthy"). Kubernetes
// only accepts successThreshold 1 on a liveness probe, so other values are refused rather than
// silently changed.
func liveness(l config.LivenessProbeRequirements) (*corev1.Probe, error) {
	p := &corev1.Probe{
		ProbeHandler:        httpGet(livePath),
		PeriodSeconds:       int32(orDefaultPtr(l.PeriodSeconds, config.DefaultLivenessPeriodSeconds)),
		InitialDelaySeconds: int32(orDefaultPtr(l.InitialDelaySeconds, config.DefaultLivenessInitialDelay)),
		TimeoutSeconds:      int32(orDefaultPtr(l.TimeoutSeconds, config.DefaultLivenessTimeoutSeconds)),
		SuccessThreshold:    int32(orDefaultPtr(l.SuccessThreshold, config.DefaultLivenessSuccessThreshold)),
		FailureThreshold:    int32(orDefaultPtr(l.FailureThreshold, config.DefaultLivenessFailureThreshold)),
	}
	switch {
	case p.InitialDelaySeconds < 0:
		return nil, errdefs.Invalid("livenessProbeRequirements.initialDelaySeconds %d is negative", p.InitialDelaySeconds)
	case p.PeriodSeconds < 1 || p.TimeoutSeconds < 1 || p.FailureThreshold < 1:
		return nil, errdefs.Invalid("livenessProbeRequirements: periodSeconds, timeoutSeconds and failureThreshold must be at least 1")
	case p.SuccessThreshold != 1:
		return nil, errdefs.Invalid("livenessProbeRequirements.successThreshold %d: Kubernetes accepts only 1 for a liveness probe", p.SuccessThreshold)
	}
	return p, nil
}

func orDefaultPtr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

func httpGet(path string) corev1.ProbeHandler {
	return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: path, Port: intstr.FromString(portName), Scheme: corev1.URISchemeHTTP,
	}}
}

// securityContexts follow the "restricted" Pod Security Standard unless the input asks for root.
func securityContexts(user *int64) (*corev1.SecurityContext, *corev1.PodSecurityContext) {
	uid := NonRootUID
	if user != nil {
		uid = *user
	}
	sc := &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false)}
	pod := &corev1.PodSecurityContext{
		RunAsUser:      ptr(uid),
		RunAsGroup:     ptr(uid),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	// An image that needs root usually needs root's capabilities too (file ownership); keep them.
	if uid != 0 {
		pod.RunAsNonRoot = ptr(true)
		sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	}
	return sc, pod
}

func ptr[T any](v T) *T { return &v }

func copyMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
