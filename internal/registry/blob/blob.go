// Package blob stores model archives by their SHA-256 digest.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/mlship/mlship/internal/errdefs"
)

// Store keeps immutable blobs addressed by digest (lowercase hex SHA-256).
type Store interface {
	// Create starts a new blob; nothing is visible until Commit.
	Create(ctx context.Context) (Writer, error)
	Open(ctx context.Context, digest string) (io.ReadCloser, int64, error)
	Delete(ctx context.Context, digest string) error
}

// Writer receives a blob's bytes and hashes them as they pass.
type Writer interface {
	io.Writer
	// Digest is the SHA-256 of what was written so far.
	Digest() string
	Size() int64
	// Commit makes the blob readable under its digest; want, if not empty, must equal it.
	Commit(want string) (string, error)
	// Cancel discards the blob; safe to call after Commit (then it does nothing).
	Cancel() error
}

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// FS is a Store in a local folder: <dir>/sha256/<first two hex>/<digest>.
type FS struct{ dir string }

// NewFS returns a blob store under dir, creating it.
func NewFS(dir string) (*FS, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("blob store %s: %w", dir, err)
	}
	return &FS{dir: dir}, nil
}

func (s *FS) path(digest string) string {
	return filepath.Join(s.dir, "sha256", digest[:2], digest)
}

// Create implements Store.
func (s *FS) Create(ctx context.Context) (Writer, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-*")
	if err != nil {
		return nil, err
	}
	return &fsWriter{s: s, f: f, h: sha256.New()}, nil
}

// Open implements Store.
func (s *FS) Open(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	if !digestRE.MatchString(digest) {
		return nil, 0, errdefs.Invalid("invalid digest %q", digest)
	}
	f, err := os.Open(s.path(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, errdefs.NotFound("blob %s not found", digest)
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Delete implements Store; deleting a missing blob is not an error.
func (s *FS) Delete(ctx context.Context, digest string) error {
	if !digestRE.MatchString(digest) {
		return errdefs.Invalid("invalid digest %q", digest)
	}
	if err := os.Remove(s.path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

type fsWriter struct {
	s    *FS
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

func (w *fsWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

func (w *fsWriter) Digest() string { return hex.EncodeToString(w.h.Sum(nil)) }
func (w *fsWriter) Size() int64    { return w.n }

func (w *fsWriter) Commit(want string) (string, error) {
	got := w.Digest()
	if want != "" && want != got {
		w.Cancel()
		return "", errdefs.Invalid("upload digest mismatch: client sent sha256 %s, server received %s (%d bytes); the upload was corrupted or truncated, nothing was stored", want, got, w.n)
	}
	if err := w.f.Sync(); err != nil {
		w.Cancel()
		return "", err
	}
	if err := w.f.Close(); err != nil {
		w.Cancel()
		return "", err
	}
	dst := w.s.path(got)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		w.Cancel()
		return "", err
	}
	// Same digest, same bytes: an existing blob is kept and the upload dropped.
	if err := os.Rename(w.f.Name(), dst); err != nil {
		w.Cancel()
		return "", err
	}
	w.done = true
	return got, nil
}

func (w *fsWriter) Cancel() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}
