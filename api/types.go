// Package api holds mlship's REST wire types and the typed Go client the CLI uses.
package api

import "time"

// Workspace groups models and services.
type Workspace struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedTime time.Time `json:"createdTime"`
}

// ModelFile is one file of a registered model.
type ModelFile struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// Model is one registered model version, as Azure ML's Model resource.
type Model struct {
	ID          string            `json:"id"` // "name:version"
	Name        string            `json:"name"`
	Version     int               `json:"version"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags"`
	Properties  map[string]string `json:"properties"`
	CreatedTime time.Time         `json:"createdTime"`
	SHA256      string            `json:"sha256"`
	SizeBytes   int64             `json:"sizeBytes"` // total of the files' sizes
	Files       []ModelFile       `json:"files"`
}

// ModelSpec is the metadata part of a registration.
type ModelSpec struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
}

// ErrorBody is every error response: {"error":{"code":"...","message":"..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Multipart part names of a model registration, in the order they are sent.
const (
	PartModel   = "model"   // JSON ModelSpec
	PartContent = "content" // tar stream of the model's files
	PartSHA256  = "sha256"  // hex SHA-256 of the content part, sent after it
)

// HeaderContentSHA256 carries a downloaded archive's digest.
const HeaderContentSHA256 = "X-Mlship-Content-Sha256"
