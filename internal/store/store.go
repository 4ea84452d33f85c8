// Package store defines the control plane's persistent state and the interface its databases implement.
package store

import (
	"context"
	"time"
)

// Workspace groups models and services, as an Azure ML workspace does.
type Workspace struct {
	Name        string
	Description string
	CreatedTime time.Time
}

// File is one file of a registered model.
type File struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// Model is one immutable version of a registered model.
type Model struct {
	Workspace   string
	Name        string
	Version     int // assigned by the store: 1, 2, 3... per name, never reused
	Description string
	Tags        map[string]string
	Properties  map[string]string
	CreatedTime time.Time
	SHA256      string // digest of the model's archive in the blob store
	SizeBytes   int64
	Files       []File
}

// ModelFilter narrows ListModels. Empty fields match everything.
type ModelFilter struct {
	Name string
	// Tags must all match: a tag with an empty value matches any value of that key.
	Tags   map[string]string
	Latest bool // only the highest version of each name
}

// Token is a control-plane API token; only the hash of its secret is kept.
type Token struct {
	ID          string
	Name        string
	Hash        []byte
	CreatedTime time.Time
}

// Store is the control plane's database. Every implementation passes storetest.Run.
// Errors wrap errdefs.ErrNotFound / ErrConflict so callers can tell what went wrong.
type Store interface {
	CreateWorkspace(ctx context.Context, ws Workspace) error
	GetWorkspace(ctx context.Context, name string) (Workspace, error)
	ListWorkspaces(ctx context.Context) ([]Workspace, error)

	// CreateModel stores m as the next version of its name (m.Version is ignored) and returns it.
	CreateModel(ctx context.Context, m Model) (Model, error)
	// GetModel returns one version; version 0 means the latest.
	GetModel(ctx context.Context, workspace, name string, version int) (Model, error)
	ListModels(ctx context.Context, workspace string, f ModelFilter) ([]Model, error)
	DeleteModel(ctx context.Context, workspace, name string, version int) error
	// ModelsWithDigest counts model versions (in any workspace) whose archive has this digest.
	ModelsWithDigest(ctx context.Context, sha256 string) (int, error)

	ServiceStore
	ComputeStore

	CreateToken(ctx context.Context, t Token) error
	GetToken(ctx context.Context, id string) (Token, error)
	CountTokens(ctx context.Context) (int, error)

	Close() error
}

// MatchTags reports whether tags satisfy the filter's tag conditions.
func (f ModelFilter) MatchTags(tags map[string]string) bool {
	for k, v := range f.Tags {
		got, ok := tags[k]
		if !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}
