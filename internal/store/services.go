package store

import (
	"context"
	"encoding/json"
	"time"
)

// Service states, as Azure ML reports them.
const (
	StateTransitioning = "Transitioning"
	StateHealthy       = "Healthy"
	StateUnhealthy     = "Unhealthy"
	StateUnschedulable = "Unschedulable"
	StateFailed        = "Failed"
	StateDeleting      = "Deleting"
)

// Operation states.
const (
	OpRunning   = "Running"
	OpSucceeded = "Succeeded"
	OpFailed    = "Failed"
	OpCancelled = "Cancelled"
	OpTimedOut  = "TimedOut"
)

// Service is a deployed web service: its desired spec and its last observed state.
type Service struct {
	Workspace        string
	Name             string
	ComputeType      string // local | kubernetes
	ComputeTarget    string
	State            string
	Error            string
	Models           []string        // "name:version"
	InferenceConfig  json.RawMessage // as validated by internal/config
	DeploymentConfig json.RawMessage
	SourceSHA256     string // blob of the source directory, "" for no-code
	PrimaryKey       string // sealed with the server key
	SecondaryKey     string // sealed with the server key
	Description      string
	Tags             map[string]string
	Properties       map[string]string
	Generation       int64 // bumped by every spec change
	Replicas         int   // the last replica count decided (autoscaler or numReplicas)
	CreatedTime      time.Time
	UpdatedTime      time.Time
	// Versions are an endpoint's versions (ComputeType AKSENDPOINT); empty for a plain service,
	// whose one set of replicas is described by the fields above.
	Versions []EndpointVersion
}

// Service compute types, as Azure ML names them.
const (
	ComputeTypeAKS      = "AKS"
	ComputeTypeEndpoint = "AKSENDPOINT"
)

// IsEndpoint reports whether the service is an endpoint with versions.
func (s Service) IsEndpoint() bool { return s.ComputeType == ComputeTypeEndpoint }

// EndpointVersion is one version of an endpoint: its own models, configs, replicas and state,
// and its share of the endpoint's traffic.
type EndpointVersion struct {
	Name              string          `json:"name"`
	Models            []string        `json:"models"`
	InferenceConfig   json.RawMessage `json:"inferenceConfig,omitempty"`
	DeploymentConfig  json.RawMessage `json:"deploymentConfig,omitempty"`
	SourceSHA256      string          `json:"sourceSha256,omitempty"`
	Generation        int64           `json:"generation"`
	Replicas          int             `json:"replicas"`
	State             string          `json:"state"`
	Error             string          `json:"error,omitempty"`
	TrafficPercentile float64         `json:"trafficPercentile"`
	IsDefault         bool            `json:"isDefault"`
	IsControl         bool            `json:"isControl"`
	MirrorPercentile  float64         `json:"mirrorPercentile,omitempty"`
	CreatedTime       time.Time       `json:"createdTime"`
	UpdatedTime       time.Time       `json:"updatedTime"`
}

// Version returns the endpoint version called name.
func (s Service) Version(name string) (EndpointVersion, int, bool) {
	for i, v := range s.Versions {
		if v.Name == name {
			return v, i, true
		}
	}
	return EndpointVersion{}, -1, false
}

// Operation tracks a long-running change (deploy, update, delete).
type Operation struct {
	ID          string
	Workspace   string
	Kind        string // Deploy | Update | Delete
	Target      string // the service name
	State       string
	Error       string
	CreatedTime time.Time
	UpdatedTime time.Time
}

// ServiceStore is the part of the store that holds services and operations.
type ServiceStore interface {
	CreateService(ctx context.Context, s Service) error
	GetService(ctx context.Context, workspace, name string) (Service, error)
	ListServices(ctx context.Context, workspace string) ([]Service, error) // workspace "" = all
	// UpdateService replaces the record; it is ErrNotFound if the service is gone.
	UpdateService(ctx context.Context, s Service) error
	DeleteService(ctx context.Context, workspace, name string) error
	// ServicesWithDigest counts services whose source snapshot has this digest.
	ServicesWithDigest(ctx context.Context, sha256 string) (int, error)

	CreateOperation(ctx context.Context, op Operation) error
	GetOperation(ctx context.Context, id string) (Operation, error)
	UpdateOperation(ctx context.Context, op Operation) error
	ListOperations(ctx context.Context, state string) ([]Operation, error)
}
