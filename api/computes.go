package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Compute is a compute target, as Azure ML's ComputeTarget: the built-in "local" or an attached cluster.
type Compute struct {
	Name              string             `json:"name"`
	ComputeType       string             `json:"computeType"` // local | kubernetes
	ProvisioningState string             `json:"provisioningState"`
	ClusterPurpose    string             `json:"clusterPurpose,omitempty"` // FastProd | DevTest
	VCPUs             float64            `json:"vcpus"`
	Kubernetes        *KubernetesCompute `json:"kubernetes,omitempty"`
	ResourceID        string             `json:"resourceId,omitempty"` // the AKS resource id, when attached as aks
	Registry          string             `json:"registry,omitempty"`
	InsecureRegistry  bool               `json:"insecureRegistry,omitempty"`
	PythonImage       string             `json:"pythonImage,omitempty"`
	ONNXImage         string             `json:"onnxImage,omitempty"`
	NodeSelector      map[string]string  `json:"nodeSelector,omitempty"`
	CreatedTime       *time.Time         `json:"createdTime,omitempty"`
}

// KubernetesCompute says where an attached cluster's services go. The credentials are never returned.
type KubernetesCompute struct {
	Server    string `json:"server"`
	Namespace string `json:"namespace"`
	Context   string `json:"context"`
}

// AttachRequest attaches a Kubernetes cluster as a compute target.
type AttachRequest struct {
	Name             string `json:"name"`
	Kubeconfig       string `json:"kubeconfig"` // the file's content; stored encrypted
	Context          string `json:"context,omitempty"`
	Namespace        string `json:"namespace,omitempty"`
	ClusterPurpose   string `json:"clusterPurpose,omitempty"` // FastProd by default
	ResourceID       string `json:"resourceId,omitempty"`     // an AKS resource id (attach aks)
	Registry         string `json:"registry,omitempty"`       // HOST:PORT[/prefix]
	InsecureRegistry bool   `json:"insecureRegistry,omitempty"`
	// Base images; "" = REGISTRY/mlship/python:3.11-bookworm and REGISTRY/mlship/onnx-base:bookworm.
	PythonImage  string            `json:"pythonImage,omitempty"`
	ONNXImage    string            `json:"onnxImage,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"` // labels of the nodes replicas may run on
}

// DetachResult says what detach removed from the cluster (only with purge).
type DetachResult struct {
	Name   string         `json:"name"`
	Purged map[string]int `json:"purged,omitempty"` // deleted objects by kind
}

// AttachCompute checks the cluster and records it.
func (c *Client) AttachCompute(ctx context.Context, ws string, req AttachRequest) (Compute, error) {
	var out Compute
	return out, c.call(ctx, http.MethodPost, wsPath(ws, "computes"), nil, req, &out)
}

// ListComputes lists the workspace's compute targets, "local" first.
func (c *Client) ListComputes(ctx context.Context, ws string) ([]Compute, error) {
	var out []Compute
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "computes"), nil, nil, &out)
}

// GetCompute returns one compute target.
func (c *Client) GetCompute(ctx context.Context, ws, name string) (Compute, error) {
	var out Compute
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "computes", name), nil, nil, &out)
}

// DetachCompute forgets a compute target; purge also deletes mlship's objects from its namespace.
func (c *Client) DetachCompute(ctx context.Context, ws, name string, purge bool) (DetachResult, error) {
	var q url.Values
	if purge {
		q = url.Values{"purge": {"true"}}
	}
	var out DetachResult
	return out, c.call(ctx, http.MethodDelete, wsPath(ws, "computes", name), q, nil, &out)
}
