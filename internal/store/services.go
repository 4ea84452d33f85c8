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
