package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// VersionMetrics are one version's requests over a window.
type VersionMetrics struct {
	Version           string            `json:"version"`
	Requests          uint64            `json:"requests"`
	ByStatus          map[string]uint64 `json:"byStatus"`
	Failures          uint64            `json:"failures"`     // 5xx
	ClientErrors      uint64            `json:"clientErrors"` // 4xx
	ErrorRate         float64           `json:"errorRate"`    // failures / requests
	P50Ms             float64           `json:"p50Ms"`
	P95Ms             float64           `json:"p95Ms"`
	P99Ms             float64           `json:"p99Ms"`
	MeanMs            float64           `json:"meanMs"`
	RequestsPerSecond float64           `json:"requestsPerSecond"`
}

// VersionComparison sets a treatment against the control, with significance tests.
type VersionComparison struct {
	Control            string  `json:"control"`
	Treatment          string  `json:"treatment"`
	ControlRequests    uint64  `json:"controlRequests"`
	TreatmentRequests  uint64  `json:"treatmentRequests"`
	ControlErrorRate   float64 `json:"controlErrorRate"`
	TreatmentErrorRate float64 `json:"treatmentErrorRate"`
	ErrorRateDiff      float64 `json:"errorRateDiff"`
	ErrorRateTested    bool    `json:"errorRateTested"`
	ErrorRateP         float64 `json:"errorRateP"` // two-proportion z-test
	ErrorVerdict       string  `json:"errorVerdict"`
	ControlP50Ms       float64 `json:"controlP50Ms"`
	TreatmentP50Ms     float64 `json:"treatmentP50Ms"`
	P50DiffMs          float64 `json:"p50DiffMs"`
	LatencyTested      bool    `json:"latencyTested"`
	LatencyP           float64 `json:"latencyP"` // Mann-Whitney U
	LatencyVerdict     string  `json:"latencyVerdict"`
}

// EndpointMetrics are an endpoint's (or a service's) request metrics over a window.
type EndpointMetrics struct {
	Name               string              `json:"name"`
	Window             string              `json:"window"`
	AppInsightsEnabled bool                `json:"appInsightsEnabled"`
	Versions           []VersionMetrics    `json:"versions"`
	Comparisons        []VersionComparison `json:"comparisons,omitempty"`
}

// EndpointMetrics returns request metrics over window; compare adds control-vs-treatment tests.
func (c *Client) EndpointMetrics(ctx context.Context, ws, name string, window time.Duration, compare bool) (EndpointMetrics, error) {
	q := url.Values{"window": {window.String()}}
	if compare {
		q.Set("compare", "true")
	}
	var out EndpointMetrics
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "endpoints", name, "metrics"), q, nil, &out)
}
