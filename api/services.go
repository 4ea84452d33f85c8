package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mlship/mlship/internal/archive"
)

// Replicas counts a service's replicas.
type Replicas struct {
	Desired int `json:"desired"`
	Ready   int `json:"ready"`
}

// Service is a deployed web service, as Azure ML's AksWebservice.
type Service struct {
	Name              string            `json:"name"`
	ComputeType       string            `json:"computeType"`
	ComputeTargetName string            `json:"computeTargetName"`
	State             string            `json:"state"`
	Error             string            `json:"error,omitempty"`
	ScoringURI        string            `json:"scoringUri"`
	SwaggerURI        string            `json:"swaggerUri"`
	AuthEnabled       bool              `json:"authEnabled"`
	TokenAuthEnabled  bool              `json:"tokenAuthEnabled"`
	Models            []string          `json:"models"`
	DeploymentConfig  json.RawMessage   `json:"deploymentConfig"`
	InferenceConfig   json.RawMessage   `json:"inferenceConfig"`
	Replicas          Replicas          `json:"replicas"`
	Description       string            `json:"description,omitempty"`
	Tags              map[string]string `json:"tags"`
	Properties        map[string]string `json:"properties"`
	CreatedTime       time.Time         `json:"createdTime"`
	UpdatedTime       time.Time         `json:"updatedTime"`
}

// DeployRequest is the spec part of a deploy or update.
type DeployRequest struct {
	Name             string            `json:"name"`
	Models           []string          `json:"models,omitempty"`           // "name:version"
	InferenceConfig  json.RawMessage   `json:"inferenceConfig,omitempty"`  // inferenceconfig.json, as parsed
	DeploymentConfig json.RawMessage   `json:"deploymentConfig,omitempty"` // deploymentconfig.json, as parsed
	ComputeTarget    string            `json:"computeTarget,omitempty"`    // "local" by default
	Overwrite        bool              `json:"overwrite,omitempty"`
	Description      string            `json:"description,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`
	Properties       map[string]string `json:"properties,omitempty"`
}

// Operation is a long-running change; its URL comes in the Operation-Location header.
type Operation struct {
	ID            string     `json:"id"`
	OperationType string     `json:"operationType"` // Deploy | Update | Delete
	State         string     `json:"state"`         // Running | Succeeded | Failed | Cancelled | TimedOut
	Error         string     `json:"error,omitempty"`
	ServiceName   string     `json:"serviceName"`
	CreatedTime   time.Time  `json:"createdTime"`
	EndTime       *time.Time `json:"endTime,omitempty"`
}

// Done reports whether the operation has ended.
func (o Operation) Done() bool { return o.State != "Running" }

// Keys are a service's two authentication keys.
type Keys struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// RegenerateKeysRequest picks the key to replace and, optionally, its new value.
type RegenerateKeysRequest struct {
	KeyType  string `json:"keyType"` // Primary | Secondary
	KeyValue string `json:"keyValue,omitempty"`
}

// AccessToken is a service's token (token auth), as Azure's get_token returns it.
type AccessToken struct {
	AccessToken  string    `json:"accessToken"`
	TokenType    string    `json:"tokenType"`
	RefreshAfter time.Time `json:"refreshAfter"`
	ExpiryOn     time.Time `json:"expiryOn"`
}

// Logs are a service's replica logs.
type Logs struct {
	Content string `json:"content"`
}

// PartService is the spec part of a deploy/update upload; PartContent then carries the source directory.
const PartService = "service"

// DeployService creates (or with Overwrite replaces) a service; source is the inference config's
// source directory (nil for no-code). The answer is the started operation.
func (c *Client) DeployService(ctx context.Context, ws string, req DeployRequest, source *archive.Plan) (Operation, error) {
	var op Operation
	err := c.upload(ctx, http.MethodPost, wsPath(ws, "services"), PartService, req, source, nil, &op)
	return op, err
}

// UpdateService changes a service (models, configs) with a rolling update.
func (c *Client) UpdateService(ctx context.Context, ws string, req DeployRequest, source *archive.Plan) (Operation, error) {
	var op Operation
	err := c.upload(ctx, http.MethodPatch, wsPath(ws, "services", req.Name), PartService, req, source, nil, &op)
	return op, err
}

// GetOperation returns an operation's state.
func (c *Client) GetOperation(ctx context.Context, ws, id string) (Operation, error) {
	var op Operation
	return op, c.call(ctx, http.MethodGet, wsPath(ws, "operations", id), nil, nil, &op)
}

// ListServices lists a workspace's services.
func (c *Client) ListServices(ctx context.Context, ws string) ([]Service, error) {
	var out []Service
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "services"), nil, nil, &out)
}

// GetService returns one service.
func (c *Client) GetService(ctx context.Context, ws, name string) (Service, error) {
	var out Service
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "services", name), nil, nil, &out)
}

// DeleteService deletes a service and frees its replicas.
func (c *Client) DeleteService(ctx context.Context, ws, name string) (Operation, error) {
	var op Operation
	return op, c.call(ctx, http.MethodDelete, wsPath(ws, "services", name), nil, nil, &op)
}

// ServiceLogs returns replica logs: the last tail lines (0 = all kept), or only the model-loading part.
func (c *Client) ServiceLogs(ctx context.Context, ws, name string, tail int, init bool) (string, error) {
	return c.VersionLogs(ctx, ws, name, "", tail, init)
}

// VersionLogs is ServiceLogs for one version of an endpoint ("" = the default version).
func (c *Client) VersionLogs(ctx context.Context, ws, name, version string, tail int, init bool) (string, error) {
	q := url.Values{}
	if version != "" {
		q.Set("version", version)
	}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	if init {
		q.Set("init", "true")
	}
	var out Logs
	return out.Content, c.call(ctx, http.MethodGet, wsPath(ws, "services", name, "logs"), q, nil, &out)
}

// ServiceKeys returns the service's keys.
func (c *Client) ServiceKeys(ctx context.Context, ws, name string) (Keys, error) {
	var out Keys
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "services", name, "keys"), nil, nil, &out)
}

// RegenerateKeys replaces one key; the old one stops working at once.
func (c *Client) RegenerateKeys(ctx context.Context, ws, name string, req RegenerateKeysRequest) (Keys, error) {
	var out Keys
	return out, c.call(ctx, http.MethodPost, wsPath(ws, "services", name, "regenerateKeys"), nil, req, &out)
}

// ServiceToken issues an access token for a token-auth service.
func (c *Client) ServiceToken(ctx context.Context, ws, name string) (AccessToken, error) {
	var out AccessToken
	return out, c.call(ctx, http.MethodPost, wsPath(ws, "services", name, "token"), nil, nil, &out)
}
