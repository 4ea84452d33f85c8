package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Compute types accepted in deploymentconfig.json (case-insensitive on input, normalized to these).
const (
	ComputeAKS         = "AKS"
	ComputeAKSEndpoint = "AKSENDPOINT"
	ComputeLocal       = "local"
)

// Azure ML's defaults and limits for AKS web services.
const (
	DefaultCPU                      = 0.1
	DefaultMemoryInGB               = 0.5
	DefaultMinReplicas              = 1
	DefaultMaxReplicas              = 10
	DefaultRefreshPeriodInSeconds   = 1
	DefaultTargetUtilization        = 70
	DefaultScoringTimeoutMs         = 60000
	MaxScoringTimeoutMs             = 300000
	DefaultMaxConcurrentRequests    = 1
	DefaultMaxQueueWaitMs           = 500
	DefaultLivenessPeriodSeconds    = 10
	DefaultLivenessInitialDelay     = 310
	DefaultLivenessTimeoutSeconds   = 2
	DefaultLivenessSuccessThreshold = 1
	DefaultLivenessFailureThreshold = 3
	maxNamespaceLength              = 63
	minVersionNameLength            = 3
	maxVersionNameLength            = 32
)

// DeploymentConfig is deploymentconfig.json, with Azure ML's key names. Pointer fields are nil
// when not given; after ParseDeployment every field that has a default is set, except that
// NumReplicas is nil when autoscaling and the autoScaler numbers are nil when not.
type DeploymentConfig struct {
	ComputeType string            `json:"computeType"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`

	AutoScaler                    AutoScaler                    `json:"autoScaler"`
	NumReplicas                   *int                          `json:"numReplicas,omitempty"`
	ContainerResourceRequirements ContainerResourceRequirements `json:"containerResourceRequirements"`
	GPUCores                      *int                          `json:"gpuCores,omitempty"`
	LivenessProbeRequirements     LivenessProbeRequirements     `json:"livenessProbeRequirements"`

	AuthEnabled                       *bool           `json:"authEnabled,omitempty"`
	TokenAuthEnabled                  *bool           `json:"tokenAuthEnabled,omitempty"`
	Keys                              *Keys           `json:"keys,omitempty"`
	AppInsightsEnabled                *bool           `json:"appInsightsEnabled,omitempty"`
	DataCollection                    *DataCollection `json:"dataCollection,omitempty"`
	ScoringTimeoutMs                  *int            `json:"scoringTimeoutMs,omitempty"`
	MaxConcurrentRequestsPerContainer *int            `json:"maxConcurrentRequestsPerContainer,omitempty"`
	MaxQueueWaitMs                    *int            `json:"maxQueueWaitMs,omitempty"`
	Namespace                         string          `json:"namespace,omitempty"`

	// Port is the local web service port (computeType local only).
	Port *int `json:"port,omitempty"`

	// Endpoint version settings (computeType AKSENDPOINT only).
	VersionName       string   `json:"versionName,omitempty"`
	TrafficPercentile *float64 `json:"trafficPercentile,omitempty"`
	IsDefault         *bool    `json:"isDefault,omitempty"`
	IsControlVersion  *bool    `json:"isControlVersion,omitempty"`
	MirrorPercentile  *float64 `json:"mirrorPercentile,omitempty"`
}

// AutoScaler is the autoScaler section.
type AutoScaler struct {
	AutoscaleEnabled       *bool `json:"autoscaleEnabled,omitempty"`
	MinReplicas            *int  `json:"minReplicas,omitempty"`
	MaxReplicas            *int  `json:"maxReplicas,omitempty"`
	RefreshPeriodInSeconds *int  `json:"refreshPeriodInSeconds,omitempty"`
	TargetUtilization      *int  `json:"targetUtilization,omitempty"`
}

// ContainerResourceRequirements is the per-replica resource request; limits are nil for "no limit".
type ContainerResourceRequirements struct {
	CPU             *float64 `json:"cpu,omitempty"`
	MemoryInGB      *float64 `json:"memoryInGB,omitempty"`
	CPULimit        *float64 `json:"cpuLimit,omitempty"`
	MemoryInGBLimit *float64 `json:"memoryInGBLimit,omitempty"`
}

// LivenessProbeRequirements is the livenessProbeRequirements section.
type LivenessProbeRequirements struct {
	PeriodSeconds       *int `json:"periodSeconds,omitempty"`
	InitialDelaySeconds *int `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds      *int `json:"timeoutSeconds,omitempty"`
	SuccessThreshold    *int `json:"successThreshold,omitempty"`
	FailureThreshold    *int `json:"failureThreshold,omitempty"`
}

// Keys are user-chosen auth keys; nil means the service generates them.
type Keys struct {
	PrimaryKey   *string `json:"primaryKey,omitempty"`
	SecondaryKey *string `json:"secondaryKey,omitempty"`
}

// DataCollection is the dataCollection section.
type DataCollection struct {
	StorageEnabled *bool `json:"storageEnabled,omitempty"`
}

var (
	versionNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	namespaceRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// deploymentAliases maps azureml-core's Python parameter names (lower case) to the JSON keys,
// so a user who writes deploy_configuration's names is told the file's spelling.
var deploymentAliases = map[string]string{
	"autoscale_enabled":                 "autoScaler.autoscaleEnabled",
	"autoscale_min_replicas":            "autoScaler.minReplicas",
	"autoscale_max_replicas":            "autoScaler.maxReplicas",
	"autoscale_refresh_seconds":         "autoScaler.refreshPeriodInSeconds",
	"autoscale_target_utilization":      "autoScaler.targetUtilization",
	"collect_model_data":                "dataCollection.storageEnabled",
	"auth_enabled":                      "authEnabled",
	"token_auth_enabled":                "tokenAuthEnabled",
	"cpu_cores":                         "containerResourceRequirements.cpu",
	"memory_gb":                         "containerResourceRequirements.memoryInGB",
	"cpu_cores_limit":                   "containerResourceRequirements.cpuLimit",
	"memory_gb_limit":                   "containerResourceRequirements.memoryInGBLimit",
	"gpu_cores":                         "gpuCores",
	"enable_app_insights":               "appInsightsEnabled",
	"scoring_timeout_ms":                "scoringTimeoutMs",
	"replica_max_concurrent_requests":   "maxConcurrentRequestsPerContainer",
	"max_request_wait_time":             "maxQueueWaitMs",
	"num_replicas":                      "numReplicas",
	"primary_key":                       "keys.primaryKey",
	"secondary_key":                     "keys.secondaryKey",
	"period_seconds":                    "livenessProbeRequirements.periodSeconds",
	"initial_delay_seconds":             "livenessProbeRequirements.initialDelaySeconds",
	"timeout_seconds":                   "livenessProbeRequirements.timeoutSeconds",
	"success_threshold":                 "livenessProbeRequirements.successThreshold",
	"failure_threshold":                 "livenessProbeRequirements.failureThreshold",
	"version_name":                      "versionName",
	"traffic_percentile":                "trafficPercentile",
	"is_default":                        "isDefault",
	"is_control_version_type":           "isControlVersion",
	"gpu":                               "gpuCores",
	"containerresourcerequirements.gpu": "gpuCores",
}

// ParseDeployment parses deploymentconfig.json (JSON or YAML), validates it with Azure ML's rules
// and fills in Azure's defaults. name labels the messages (usually the file path). Every problem
// is reported, one per line, in an error that matches errdefs.ErrInvalid.
func ParseDeployment(data []byte, name string) (*DeploymentConfig, error) {
	c := &DeploymentConfig{}
	ps := decode(data, name, c, deploymentAliases)
	if len(ps) > 0 && len(ps) != countUnknown(ps) {
		return nil, ps.err(name)
	}
	ps = append(ps, c.problems()...)
	if err := ps.err(name); err != nil {
		return nil, err
	}
	c.setDefaults()
	return c, nil
}

func countUnknown(ps problems) int {
	n := 0
	for _, p := range ps {
		if strings.HasPrefix(p.Message, "unknown key") {
			n++
		}
	}
	return n
}

// DefaultDeployment is what an empty deployment config means: Azure ML's defaults for AKS.
func DefaultDeployment() *DeploymentConfig {
	c := &DeploymentConfig{}
	c.setDefaults()
	return c
}

// Validate applies Azure ML's rules to c as given (nil fields count as not given).
func (c *DeploymentConfig) Validate() error { return c.problems().err("") }

// Autoscale reports whether the autoscaler sizes the service: autoScaler.autoscaleEnabled if
// given, else true unless numReplicas is set.
func (c *DeploymentConfig) Autoscale() bool {
	if c.AutoScaler.AutoscaleEnabled != nil {
		return *c.AutoScaler.AutoscaleEnabled
	}
	return c.NumReplicas == nil
}

// IsEndpoint reports whether c deploys a version of an endpoint (computeType AKSENDPOINT).
func (c *DeploymentConfig) IsEndpoint() bool {
	return strings.EqualFold(c.ComputeType, ComputeAKSEndpoint)
}

// Replicas is the replica range: [minReplicas, maxReplicas] when autoscaling, else numReplicas for both.
func (c *DeploymentConfig) Replicas() (lo, hi int) {
	if !c.Autoscale() {
		n := deref(c.NumReplicas, 1)
		return n, n
	}
	return deref(c.AutoScaler.MinReplicas, DefaultMinReplicas), deref(c.AutoScaler.MaxReplicas, DefaultMaxReplicas)
}

// ScoringTimeout is scoringTimeoutMs as a duration.
func (c *DeploymentConfig) ScoringTimeout() time.Duration {
	return time.Duration(deref(c.ScoringTimeoutMs, DefaultScoringTimeoutMs)) * time.Millisecond
}

// MaxQueueWait is maxQueueWaitMs as a duration.
func (c *DeploymentConfig) MaxQueueWait() time.Duration {
	return time.Duration(deref(c.MaxQueueWaitMs, DefaultMaxQueueWaitMs)) * time.Millisecond
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// setDefaults fills what was not given. The autoscaler numbers stay nil when autoscaling is off
// (and numReplicas nil when on), so the result re-validates and round-trips unchanged.
func (c *DeploymentConfig) setDefaults() {
	c.ComputeType = normalizeComputeType(c.ComputeType)
	if c.ComputeType == "" {
		c.ComputeType = ComputeAKS
	}
	a := &c.AutoScaler
	a.AutoscaleEnabled = ptr(c.Autoscale())
	if *a.AutoscaleEnabled {
		setDefault(&a.MinReplicas, DefaultMinReplicas)
		setDefault(&a.MaxReplicas, DefaultMaxReplicas)
		setDefault(&a.RefreshPeriodInSeconds, DefaultRefreshPeriodInSeconds)
		setDefault(&a.TargetUtilization, DefaultTargetUtilization)
	}
	r := &c.ContainerResourceRequirements
	setDefault(&r.CPU, DefaultCPU)
	setDefault(&r.MemoryInGB, DefaultMemoryInGB)
	setDefault(&c.GPUCores, 0)
	l := &c.LivenessProbeRequirements
	setDefault(&l.PeriodSeconds, DefaultLivenessPeriodSeconds)
	setDefault(&l.InitialDelaySeconds, DefaultLivenessInitialDelay)
	setDefault(&l.TimeoutSeconds, DefaultLivenessTimeoutSeconds)
	setDefault(&l.SuccessThreshold, DefaultLivenessSuccessThreshold)
	setDefault(&l.FailureThreshold, DefaultLivenessFailureThreshold)
	// Key auth is on by default, but not when the file asks for token auth (they exclude each other).
	setDefault(&c.TokenAuthEnabled, false)
	setDefault(&c.AuthEnabled, !*c.TokenAuthEnabled)
	setDefault(&c.AppInsightsEnabled, false)
	if c.DataCollection == nil {
		c.DataCollection = &DataCollection{}
	}
	setDefault(&c.DataCollection.StorageEnabled, false)
	setDefault(&c.ScoringTimeoutMs, DefaultScoringTimeoutMs)
	setDefault(&c.MaxConcurrentRequestsPerContainer, DefaultMaxConcurrentRequests)
	setDefault(&c.MaxQueueWaitMs, DefaultMaxQueueWaitMs)
}

func setDefault[T any](p **T, v T) {
	if *p == nil {
		*p = &v
	}
}

func normalizeComputeType(s string) string {
	for _, t := range []string{ComputeAKS, ComputeAKSEndpoint, ComputeLocal} {
		if strings.EqualFold(strings.TrimSpace(s), t) {
			return t
		}
	}
	return s
}

// problems applies Azure ML's validation rules (azureml-core's
// AksServiceDeploymentConfiguration.validate_configuration plus the service's limits).
func (c *DeploymentConfig) problems() problems {
	var ps problems
	ct := normalizeComputeType(c.ComputeType)
	switch ct {
	case "", ComputeAKS, ComputeAKSEndpoint, ComputeLocal:
	default:
		ps.add("computeType", "%q is not supported; use AKS, AKSENDPOINT or local", c.ComputeType)
	}

	r := c.ContainerResourceRequirements
	cpu, mem := deref(r.CPU, DefaultCPU), deref(r.MemoryInGB, DefaultMemoryInGB)
	positiveF(&ps, "containerResourceRequirements.cpu", r.CPU)
	positiveF(&ps, "containerResourceRequirements.memoryInGB", r.MemoryInGB)
	if positiveF(&ps, "containerResourceRequirements.cpuLimit", r.CPULimit) && cpu > 0 && *r.CPULimit < cpu {
		ps.add("containerResourceRequirements.cpuLimit", "must be greater than or equal to containerResourceRequirements.cpu (%v)", cpu)
	}
	if positiveF(&ps, "containerResourceRequirements.memoryInGBLimit", r.MemoryInGBLimit) && mem > 0 && *r.MemoryInGBLimit < mem {
		ps.add("containerResourceRequirements.memoryInGBLimit", "must be greater than or equal to containerResourceRequirements.memoryInGB (%v)", mem)
	}
	if c.GPUCores != nil && *c.GPUCores < 0 {
		ps.add("gpuCores", "must be greater than or equal to zero, got %d", *c.GPUCores)
	}

	l := c.LivenessProbeRequirements
	positive(&ps, "livenessProbeRequirements.periodSeconds", l.PeriodSeconds)
	positive(&ps, "livenessProbeRequirements.initialDelaySeconds", l.InitialDelaySeconds)
	positive(&ps, "livenessProbeRequirements.timeoutSeconds", l.TimeoutSeconds)
	positive(&ps, "livenessProbeRequirements.successThreshold", l.SuccessThreshold)
	positive(&ps, "livenessProbeRequirements.failureThreshold", l.FailureThreshold)

	if c.ScoringTimeoutMs != nil && (*c.ScoringTimeoutMs < 1 || *c.ScoringTimeoutMs > MaxScoringTimeoutMs) {
		ps.add("scoringTimeoutMs", "must be between 1 and %d, got %d", MaxScoringTimeoutMs, *c.ScoringTimeoutMs)
	}
	positive(&ps, "maxConcurrentRequestsPerContainer", c.MaxConcurrentRequestsPerContainer)
	positive(&ps, "maxQueueWaitMs", c.MaxQueueWaitMs)
	positive(&ps, "numReplicas", c.NumReplicas)
	c.autoscaleProblems(&ps)

	if deref(c.AuthEnabled, false) && deref(c.TokenAuthEnabled, false) {
		ps.add("tokenAuthEnabled", "authEnabled and tokenAuthEnabled cannot both be true; set authEnabled to false to use token auth")
	}
	if c.Keys != nil {
		checkKey(&ps, "keys.primaryKey", c.Keys.PrimaryKey)
		checkKey(&ps, "keys.secondaryKey", c.Keys.SecondaryKey)
		if c.Keys.PrimaryKey != nil && c.Keys.SecondaryKey != nil && *c.Keys.PrimaryKey != "" && *c.Keys.PrimaryKey == *c.Keys.SecondaryKey {
			ps.add("keys.secondaryKey", "must differ from keys.primaryKey")
		}
	}
	if c.Namespace != "" && (len(c.Namespace) > maxNamespaceLength || !namespaceRE.MatchString(c.Namespace)) {
		ps.add("namespace", "%q is not a valid Kubernetes namespace: up to %d lower-case letters, digits and '-', starting and ending with a letter or digit", c.Namespace, maxNamespaceLength)
	}
	if c.Port != nil {
		if ct != ComputeLocal {
			ps.add("port", "only valid when computeType is local")
		} else if *c.Port < 1 || *c.Port > 65535 {
			ps.add("port", "must be between 1 and 65535, got %d", *c.Port)
		}
	}
	c.endpointProblems(&ps, ct)
	return ps
}

func (c *DeploymentConfig) autoscaleProblems(ps *problems) {
	a := c.AutoScaler
	if c.Autoscale() {
		if c.NumReplicas != nil {
			ps.add("numReplicas", "cannot be set when autoScaler.autoscaleEnabled is true; remove one of them")
		}
		positive(ps, "autoScaler.minReplicas", a.MinReplicas)
		positive(ps, "autoScaler.maxReplicas", a.MaxReplicas)
		positive(ps, "autoScaler.refreshPeriodInSeconds", a.RefreshPeriodInSeconds)
		lo, hi := deref(a.MinReplicas, DefaultMinReplicas), deref(a.MaxReplicas, DefaultMaxReplicas)
		if lo > 0 && hi > 0 && lo > hi {
			ps.add("autoScaler.minReplicas", "%d cannot be greater than autoScaler.maxReplicas (%d)", lo, hi)
		}
		if t := a.TargetUtilization; t != nil && (*t < 1 || *t > 100) {
			ps.add("autoScaler.targetUtilization", "must be between 1 and 100 (percent), got %d", *t)
		}
		return
	}
	if c.NumReplicas == nil {
		ps.add("autoScaler.autoscaleEnabled", "autoscaling is disabled but numReplicas is not set; set numReplicas")
	}
	for _, f := range []struct {
		path string
		set  bool
	}{
		{"autoScaler.minReplicas", a.MinReplicas != nil},
		{"autoScaler.maxReplicas", a.MaxReplicas != nil},
		{"autoScaler.refreshPeriodInSeconds", a.RefreshPeriodInSeconds != nil},
		{"autoScaler.targetUtilization", a.TargetUtilization != nil},
	} {
		if f.set {
			ps.add(f.path, "given without enabling autoscaling (numReplicas is set or autoScaler.autoscaleEnabled is false)")
		}
	}
}

func (c *DeploymentConfig) endpointProblems(ps *problems, ct string) {
	if ct != ComputeAKSEndpoint {
		for _, f := range []struct {
			path string
			set  bool
		}{
			{"versionName", c.VersionName != ""},
			{"trafficPercentile", c.TrafficPercentile != nil},
			{"isDefault", c.IsDefault != nil},
			{"isControlVersion", c.IsControlVersion != nil},
			{"mirrorPercentile", c.MirrorPercentile != nil},
		} {
			if f.set {
				ps.add(f.path, "only valid when computeType is AKSENDPOINT")
			}
		}
		return
	}
	switch n := len(c.VersionName); {
	case n == 0:
		ps.add("versionName", "required when computeType is AKSENDPOINT")
	case n < minVersionNameLength || n > maxVersionNameLength || !versionNameRE.MatchString(c.VersionName):
		ps.add("versionName", "%q is not valid: %d to %d characters, lower-case letters, digits and '-', starting with a letter and not ending with '-'", c.VersionName, minVersionNameLength, maxVersionNameLength)
	}
	percent(ps, "trafficPercentile", c.TrafficPercentile)
	percent(ps, "mirrorPercentile", c.MirrorPercentile)
}

func positive(ps *problems, path string, v *int) {
	if v != nil && *v <= 0 {
		ps.add(path, "must be greater than zero, got %d", *v)
	}
}

// positiveF reports whether v is given and valid.
func positiveF(ps *problems, path string, v *float64) bool {
	if v == nil {
		return false
	}
	if *v <= 0 {
		ps.add(path, "must be greater than zero, got %v", *v)
		return false
	}
	return true
}

func percent(ps *problems, path string, v *float64) {
	if v != nil && (*v < 0 || *v > 100) {
		ps.add(path, "must be between 0 and 100, got %v", *v)
	}
}

func checkKey(ps *problems, path string, k *string) {
	switch {
	case k == nil:
	case *k == "":
		ps.add(path, "must not be empty; remove it to have a key generated")
	case strings.IndexFunc(*k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		ps.add(path, "must not contain spaces or control characters (it is sent in an Authorization header)")
	}
}

// String summarizes c for progress output, e.g. "AKS, autoscale 1-10, cpu 0.1, memory 0.5 GB".
func (c *DeploymentConfig) String() string {
	lo, hi := c.Replicas()
	scale := fmt.Sprintf("%d replicas", lo)
	if c.Autoscale() {
		scale = fmt.Sprintf("autoscale %d-%d", lo, hi)
	}
	return fmt.Sprintf("%s, %s, cpu %v, memory %v GB", normalizeComputeType(c.ComputeType), scale,
		deref(c.ContainerResourceRequirements.CPU, DefaultCPU), deref(c.ContainerResourceRequirements.MemoryInGB, DefaultMemoryInGB))
}
