package store

import (
	"context"
	"time"
)

// Compute types.
const (
	ComputeLocal      = "local"
	ComputeKubernetes = "kubernetes"
)

// Compute is an attached compute target. The built-in "local" target is never stored.
type Compute struct {
	Workspace         string
	Name              string
	ComputeType       string // kubernetes
	ProvisioningState string // Succeeded once attached
	ClusterPurpose    string // FastProd | DevTest
	VCPUs             float64
	Server            string // the API server URL
	Namespace         string
	Context           string
	Kubeconfig        string // sealed with the server key
	ResourceID        string // the AKS resource id, when attached as 'aks'
	Registry          string // HOST:PORT[/prefix] images are pushed to
	InsecureRegistry  bool
	PythonImage       string            // base image for entry scripts; "" = REGISTRY/mlship/python:3.11-bookworm
	ONNXImage         string            // base image for no-code ONNX models; "" = REGISTRY/mlship/onnx-base:bookworm
	NodeSelector      map[string]string // replica pods go to nodes with these labels
	CreatedTime       time.Time
}

// ComputeStore is the part of the store that holds compute targets.
type ComputeStore interface {
	// CreateCompute is ErrConflict if the name is taken in the workspace, or if another
	// target already holds the same server and namespace (the error names it).
	CreateCompute(ctx context.Context, c Compute) error
	GetCompute(ctx context.Context, workspace, name string) (Compute, error)
	ListComputes(ctx context.Context, workspace string) ([]Compute, error) // by name
	DeleteCompute(ctx context.Context, workspace, name string) error
}
