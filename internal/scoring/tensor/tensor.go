// Package tensor holds Open Inference Protocol v2 wire types and a fast JSON codec for nested numeric arrays.
package tensor

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed is returned for tensor JSON that is not a rectangular array of the expected element type.
var ErrMalformed = errors.New("malformed tensor")

// Spec describes one model input or output; -1 in Shape is a dynamic dimension.
type Spec struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// Tensor is an OIP v2 tensor; Data stays raw JSON (flat or nested) until the backend types it.
type Tensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// RequestedOutput names an output the client wants.
type RequestedOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// InferRequest is the body of POST /v2/models/{m}/infer.
type InferRequest struct {
	ID         string            `json:"id,omitempty"`
	Parameters map[string]any    `json:"parameters,omitempty"`
	Inputs     []Tensor          `json:"inputs"`
	Outputs    []RequestedOutput `json:"outputs,omitempty"`
}

// InferResponse is the answer to an infer request.
type InferResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version,omitempty"`
	ID           string         `json:"id,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	Outputs      []Tensor       `json:"outputs"`
}

// ShapeString formats a shape the way users read it, with "-1" for dynamic dimensions.
func ShapeString(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Elements is the number of elements of a fully known shape.
func Elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// Compatible reports whether got fits spec, where -1 in spec matches any size.
func Compatible(spec, got []int64) bool {
	if len(spec) != len(got) {
		return false
	}
	for i, d := range spec {
		if d >= 0 && d != got[i] {
			return false
		}
	}
	return true
}
