package resources

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/traffic"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ServiceConfigKey is the ConfigMap data key of a service's ServiceConfig.
const ServiceConfigKey = "service.json"

// ServiceConfigVersion is the apiVersion ParseServiceConfig accepts and Marshal writes.
const ServiceConfigVersion = "v1"

// ServiceConfig is service.json, what the in-cluster router knows of one service (keys aside:
// they are in the Secret it names). Its ConfigMap owns the service's other objects.
type ServiceConfig struct {
	APIVersion string          `json:"apiVersion"`
	Workspace  string          `json:"workspace"`
	Name       string          `json:"name"`
	Auth       ServiceAuth     `json:"auth"`
	Limits     RequestLimits   `json:"limits"`
	Versions   []VersionConfig `json:"versions"`
}

// ServiceAuth follows Azure: key auth or token auth or neither, never both.
type ServiceAuth struct {
	AuthEnabled      bool   `json:"authEnabled"`
	TokenAuthEnabled bool   `json:"tokenAuthEnabled"`
	KeySecret        string `json:"keySecret,omitempty"` // the KeySecret's name, when authEnabled
}

// RequestLimits are deploymentconfig's request limits; 0 = Azure's default.
type RequestLimits struct {
	MaxConcurrentRequestsPerContainer int `json:"maxConcurrentRequestsPerContainer"`
	MaxQueueWaitMs                    int `json:"maxQueueWaitMs"`
	ScoringTimeoutMs                  int `json:"scoringTimeoutMs"`
}

// VersionConfig is one version: the only one of a plain service (named after it), or one of an endpoint's.
type VersionConfig struct {
	Name string `json:"name"`
	// Replicas names the version's Deployment and Service (ReplicaName); its EndpointSlices carry
	// the label kubernetes.io/service-name with this value.
	Replicas          string      `json:"replicas"`
	TrafficPercentile float64     `json:"trafficPercentile"`
	IsDefault         bool        `json:"isDefault,omitempty"`
	IsControlVersion  bool        `json:"isControlVersion,omitempty"`
	MirrorPercentile  float64     `json:"mirrorPercentile,omitempty"`
	Scale             ScaleConfig `json:"scale"`
}

// ScaleConfig is deploymentconfig's autoScaler section and numReplicas.
type ScaleConfig struct {
	AutoscaleEnabled       bool `json:"autoscaleEnabled"`
	NumReplicas            int  `json:"numReplicas,omitempty"`
	MinReplicas            int  `json:"minReplicas,omitempty"`
	MaxReplicas            int  `json:"maxReplicas,omitempty"`
	RefreshPeriodInSeconds int  `json:"refreshPeriodInSeconds,omitempty"`
	TargetUtilization      int  `json:"targetUtilization,omitempty"`
}

// ScaleFromConfig takes the scale settings out of a parsed deployment config.
func ScaleFromConfig(dc *config.DeploymentConfig) ScaleConfig {
	a := dc.AutoScaler
	if !dc.Autoscale() {
		lo, _ := dc.Replicas()
		return ScaleConfig{NumReplicas: lo}
	}
	return ScaleConfig{
		AutoscaleEnabled:       true,
		MinReplicas:            deref(a.MinReplicas),
		MaxReplicas:            deref(a.MaxReplicas),
		RefreshPeriodInSeconds: deref(a.RefreshPeriodInSeconds),
		TargetUtilization:      deref(a.TargetUtilization),
	}
}

// ParseServiceConfig reads service.json. Unknown fields are ignored, so an older router reads a
// newer control plane's v1 file; another apiVersion is refused. Errors match errdefs.ErrInvalid.
func ParseServiceConfig(data []byte) (*ServiceConfig, error) {
	c := &ServiceConfig{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, errdefs.Invalid("%s: %w", ServiceConfigKey, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Marshal writes c as service.json (apiVersion set to v1 when empty), after validating it.
func (c *ServiceConfig) Marshal() ([]byte, error) {
	v := *c
	if v.APIVersion == "" {
		v.APIVersion = ServiceConfigVersion
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("%s: %w", ServiceConfigKey, err)
	}
	return b.Bytes(), nil
}

// Validate reports the first problem in c; it matches errdefs.ErrInvalid.
func (c *ServiceConfig) Validate() error {
	bad := func(format string, a ...any) error {
		return errdefs.Invalid("%s of %q: "+format, append([]any{ServiceConfigKey, c.Name}, a...)...)
	}
	switch {
	case c.APIVersion != ServiceConfigVersion:
		return bad("apiVersion %q is not supported; this build reads %q", c.APIVersion, ServiceConfigVersion)
	case len(validation.IsDNS1035Label(c.Name)) > 0:
		return bad("name is not a valid service name")
	case c.Workspace == "":
		return bad("no workspace")
	case c.Auth.AuthEnabled && c.Auth.TokenAuthEnabled:
		return bad("authEnabled and tokenAuthEnabled are both on; Azure allows one at most")
	case c.Auth.AuthEnabled && c.Auth.KeySecret == "":
		return bad("authEnabled without a keySecret")
	case c.Limits.MaxConcurrentRequestsPerContainer < 0 || c.Limits.MaxQueueWaitMs < 0 || c.Limits.ScoringTimeoutMs < 0:
		return bad("limits must not be negative")
	case c.Limits.ScoringTimeoutMs > config.MaxScoringTimeoutMs:
		return bad("scoringTimeoutMs %d is over %d", c.Limits.ScoringTimeoutMs, config.MaxScoringTimeoutMs)
	case len(c.Versions) == 0:
		return bad("no versions")
	case len(c.Versions) > traffic.MaxVersions:
		return bad("%d versions, at most %d", len(c.Versions), traffic.MaxVersions)
	}
	seen := map[string]bool{}
	for _, v := range c.Versions {
		s := v.Scale
		switch {
		case len(validation.IsDNS1035Label(v.Name)) > 0:
			return bad("version name %q is not valid", v.Name)
		case seen[v.Name]:
			return bad("version %q appears twice", v.Name)
		case v.Replicas == "":
			return bad("version %q names no replicas", v.Name)
		case v.TrafficPercentile < 0 || v.TrafficPercentile > 100 || v.MirrorPercentile < 0 || v.MirrorPercentile > 100:
			return bad("version %q: percentiles must be within 0-100", v.Name)
		case s.NumReplicas < 0 || s.MinReplicas < 0 || s.MaxReplicas < 0 || s.RefreshPeriodInSeconds < 0 || s.TargetUtilization < 0:
			return bad("version %q: scale settings must not be negative", v.Name)
		case s.AutoscaleEnabled && s.MaxReplicas > 0 && s.MinReplicas > s.MaxReplicas:
			return bad("version %q: minReplicas %d is above maxReplicas %d", v.Name, s.MinReplicas, s.MaxReplicas)
		case s.TargetUtilization > 100:
			return bad("version %q: targetUtilization %d is over 100", v.Name, s.TargetUtilization)
		}
		seen[v.Name] = true
	}
	return nil
}

// ServiceConfigMap builds the per-service owner ConfigMap holding c as service.json.
func ServiceConfigMap(namespace string, c *ServiceConfig) (*corev1.ConfigMap, error) {
	name, err := ServiceConfigName(c.Name)
	if err != nil {
		return nil, err
	}
	data, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Labels:      serviceLabels(c.Workspace, c.Name, ComponentService),
			Annotations: map[string]string{AnnotationWorkspace: c.Workspace},
		},
		Data: map[string]string{ServiceConfigKey: string(data)},
	}, nil
}

// ServiceConfigFrom reads the ServiceConfig out of an owner ConfigMap (the router's side).
func ServiceConfigFrom(cm *corev1.ConfigMap) (*ServiceConfig, error) {
	data, ok := cm.Data[ServiceConfigKey]
	if !ok {
		return nil, errdefs.Invalid("configmap %s/%s has no %s", cm.Namespace, cm.Name, ServiceConfigKey)
	}
	c, err := ParseServiceConfig([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return c, nil
}

// OwnerReference points at a service's owner ConfigMap, as the API server returned it: deleting
// the ConfigMap lets the garbage collector delete what carries this reference. It is the
// controller reference and blocks the owner's foreground deletion until the dependents are gone
// (clusters with the OwnerReferencesPermissionEnforcement admission plugin then also want update
// on configmaps/finalizers).
func OwnerReference(owner *corev1.ConfigMap) (metav1.OwnerReference, error) {
	if owner == nil {
		return metav1.OwnerReference{}, errdefs.Invalid("no owner ConfigMap: build and apply ServiceConfigMap first")
	}
	if owner.UID == "" {
		return metav1.OwnerReference{}, errdefs.Invalid("owner ConfigMap %s has no UID: use the object the API server returned", owner.Name)
	}
	return metav1.OwnerReference{
		APIVersion:         "v1",
		Kind:               "ConfigMap",
		Name:               owner.Name,
		UID:                owner.UID,
		Controller:         ptr(true),
		BlockOwnerDeletion: ptr(true),
	}, nil
}

// IsOwnedBy reports whether obj carries a reference to owner (by UID).
func IsOwnedBy(obj metav1.Object, owner *corev1.ConfigMap) bool {
	for _, r := range obj.GetOwnerReferences() {
		if owner != nil && r.UID == owner.UID && r.Kind == "ConfigMap" {
			return true
		}
	}
	return false
}
