package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/mlship/mlship/internal/archive"
)

// EndpointVersion is one version of an endpoint, as Azure ML's AksEndpoint reports it.
type EndpointVersion struct {
	Name              string  `json:"name"`
	TrafficPercentile float64 `json:"trafficPercentile"`
	// EffectiveTrafficPercentile is the share it gets: its own, plus what is unallocated for the default.
	EffectiveTrafficPercentile float64         `json:"effectiveTrafficPercentile"`
	MirrorPercentile           float64         `json:"mirrorPercentile,omitempty"`
	IsDefault                  bool            `json:"isDefault"`
	Type                       string          `json:"type"` // Control | Treatment
	State                      string          `json:"state"`
	Error                      string          `json:"error,omitempty"`
	Models                     []string        `json:"models"`
	Replicas                   Replicas        `json:"replicas"`
	InferenceConfig            json.RawMessage `json:"inferenceConfig,omitempty"`
	DeploymentConfig           json.RawMessage `json:"deploymentConfig,omitempty"`
	CreatedTime                time.Time       `json:"createdTime"`
	UpdatedTime                time.Time       `json:"updatedTime"`
}

// Endpoint is a service with versions (computeType AKSENDPOINT).
type Endpoint struct {
	Service
	Versions []EndpointVersion `json:"versions"`
}

// VersionRequest creates or changes an endpoint version; nil fields are left alone on update.
type VersionRequest struct {
	Name              string          `json:"name"`
	Models            []string        `json:"models,omitempty"`
	InferenceConfig   json.RawMessage `json:"inferenceConfig,omitempty"`
	DeploymentConfig  json.RawMessage `json:"deploymentConfig,omitempty"`
	TrafficPercentile *float64        `json:"trafficPercentile,omitempty"`
	MirrorPercentile  *float64        `json:"mirrorPercentile,omitempty"`
	IsDefault         bool            `json:"isDefault,omitempty"`
	IsControlVersion  bool            `json:"isControlVersion,omitempty"`
}

// PartVersion is the spec part of a create-version/update-version upload.
const PartVersion = "version"

// ListEndpoints lists a workspace's endpoints.
func (c *Client) ListEndpoints(ctx context.Context, ws string) ([]Endpoint, error) {
	var out []Endpoint
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "endpoints"), nil, nil, &out)
}

// GetEndpoint returns one endpoint with its versions.
func (c *Client) GetEndpoint(ctx context.Context, ws, name string) (Endpoint, error) {
	var out Endpoint
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "endpoints", name), nil, nil, &out)
}

// CreateVersion adds a version (source: its source directory, nil for no-code).
func (c *Client) CreateVersion(ctx context.Context, ws, endpoint string, req VersionRequest, source *archive.Plan) (Operation, error) {
	var op Operation
	return op, c.upload(ctx, http.MethodPost, wsPath(ws, "endpoints", endpoint, "versions"), PartVersion, req, source, nil, &op)
}

// UpdateVersion changes a version's traffic (at once) or its models and configs (rolling).
func (c *Client) UpdateVersion(ctx context.Context, ws, endpoint string, req VersionRequest, source *archive.Plan) (Operation, error) {
	var op Operation
	return op, c.upload(ctx, http.MethodPatch, wsPath(ws, "endpoints", endpoint, "versions", req.Name), PartVersion, req, source, nil, &op)
}

// DeleteVersion removes a version; newDefault names the next default when the default goes.
func (c *Client) DeleteVersion(ctx context.Context, ws, endpoint, version, newDefault string) (Operation, error) {
	q := url.Values{}
	if newDefault != "" {
		q.Set("newDefault", newDefault)
	}
	var op Operation
	return op, c.call(ctx, http.MethodDelete, wsPath(ws, "endpoints", endpoint, "versions", version), q, nil, &op)
}
