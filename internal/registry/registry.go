// Package registry registers immutable, versioned models and keeps their files in a blob store.
package registry

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/naming"
	"github.com/mlship/mlship/internal/registry/blob"
	"github.com/mlship/mlship/internal/store"
)

// Registry is the model registry of every workspace.
type Registry struct {
	store store.Store
	blobs blob.Store
	now   func() time.Time
	// mu orders "commit blob + record version" against "delete version + drop unreferenced blob".
	mu sync.Mutex
}

// New returns a registry over a store and blob store; now is the clock.
func New(s store.Store, b blob.Store, now func() time.Time) *Registry {
	return &Registry{store: s, blobs: b, now: now}
}

// Spec is what a user says about a model when registering it.
type Spec struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
}

// ValidateSpec checks a registration before any byte is uploaded.
func ValidateSpec(s Spec) error {
	if err := naming.Model(s.Name); err != nil {
		return err
	}
	if err := naming.Description(s.Description); err != nil {
		return err
	}
	if err := naming.Tags("tag", s.Tags); err != nil {
		return err
	}
	return naming.Tags("property", s.Properties)
}

// Register stores a new version of spec.Name from a tar stream. digest is called after the stream ends
// and returns the SHA-256 the client computed; a mismatch or a broken stream stores nothing.
func (r *Registry) Register(ctx context.Context, workspace string, spec Spec, content io.Reader, digest func() (string, error)) (store.Model, error) {
	if err := ValidateSpec(spec); err != nil {
		return store.Model{}, err
	}
	if _, err := r.store.GetWorkspace(ctx, workspace); err != nil {
		return store.Model{}, err
	}
	w, err := r.blobs.Create(ctx)
	if err != nil {
		return store.Model{}, fmt.Errorf("register %s: %w", spec.Name, err)
	}
	defer w.Cancel()
	files, err := archive.Scan(io.TeeReader(content, w))
	if err != nil {
		return store.Model{}, fmt.Errorf("register %s: %w", spec.Name, err)
	}
	want, err := digest()
	if err != nil {
		return store.Model{}, fmt.Errorf("register %s: %w", spec.Name, err)
	}
	m := store.Model{
		Workspace: workspace, Name: spec.Name, Description: spec.Description,
		Tags: spec.Tags, Properties: spec.Properties, CreatedTime: r.now().UTC(),
	}
	for _, f := range files {
		m.Files = append(m.Files, store.File{Path: f.Path, Size: f.Size})
		m.SizeBytes += f.Size
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if m.SHA256, err = w.Commit(want); err != nil {
		return store.Model{}, fmt.Errorf("register %s: %w", spec.Name, err)
	}
	created, err := r.store.CreateModel(ctx, m)
	if err != nil {
		r.dropIfUnused(ctx, m.SHA256)
		return store.Model{}, fmt.Errorf("register %s: %w", spec.Name, err)
	}
	return created, nil
}

// DropIfUnused deletes a blob that no model version and no service refers to any more.
func (r *Registry) DropIfUnused(ctx context.Context, digest string) {
	if digest == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropIfUnused(ctx, digest)
}

func (r *Registry) dropIfUnused(ctx context.Context, digest string) {
	m, err := r.store.ModelsWithDigest(ctx, digest)
	if err != nil || m > 0 {
		return
	}
	if s, err := r.store.ServicesWithDigest(ctx, digest); err == nil && s == 0 {
		r.blobs.Delete(ctx, digest)
	}
}

// StoreArchive keeps a tar stream (a service's source directory) as a blob and lists its files.
// The caller records a reference to the digest, or calls DropIfUnused.
func (r *Registry) StoreArchive(ctx context.Context, content io.Reader, digest func() (string, error)) (string, []archive.File, error) {
	w, err := r.blobs.Create(ctx)
	if err != nil {
		return "", nil, err
	}
	defer w.Cancel()
	files, err := archive.Scan(io.TeeReader(content, w))
	if err != nil {
		return "", nil, err
	}
	want, err := digest()
	if err != nil {
		return "", nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d, err := w.Commit(want)
	return d, files, err
}

// OpenBlob returns a stored archive by digest.
func (r *Registry) OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error) {
	rc, _, err := r.blobs.Open(ctx, digest)
	return rc, err
}

// Get returns one version (0 = latest).
func (r *Registry) Get(ctx context.Context, workspace, name string, version int) (store.Model, error) {
	if _, err := r.store.GetWorkspace(ctx, workspace); err != nil {
		return store.Model{}, err
	}
	return r.store.GetModel(ctx, workspace, name, version)
}

// List returns the models matching f.
func (r *Registry) List(ctx context.Context, workspace string, f store.ModelFilter) ([]store.Model, error) {
	if _, err := r.store.GetWorkspace(ctx, workspace); err != nil {
		return nil, err
	}
	return r.store.ListModels(ctx, workspace, f)
}

// Delete removes one version, and its files when no other version shares them.
func (r *Registry) Delete(ctx context.Context, workspace, name string, version int) error {
	m, err := r.Get(ctx, workspace, name, version)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.store.DeleteModel(ctx, workspace, name, version); err != nil {
		return err
	}
	r.dropIfUnused(ctx, m.SHA256)
	return nil
}

// Open returns a model version's archive (a tar stream) and its size.
func (r *Registry) Open(ctx context.Context, m store.Model) (io.ReadCloser, int64, error) {
	rc, n, err := r.blobs.Open(ctx, m.SHA256)
	if err != nil {
		return nil, 0, fmt.Errorf("open model %s:%d: %w", m.Name, m.Version, err)
	}
	return rc, n, nil
}
