package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
)

func digestOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestFSRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, _ := s.Create(ctx)
	io.WriteString(w, "hello ")
	io.WriteString(w, "world")
	d, err := w.Commit(digestOf("hello world"))
	if err != nil || d != digestOf("hello world") || w.Size() != 11 {
		t.Fatalf("Commit = %s, %v (size %d)", d, err, w.Size())
	}
	r, n, err := s.Open(ctx, d)
	if err != nil || n != 11 {
		t.Fatalf("Open = %d, %v", n, err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "hello world" {
		t.Fatalf("read %q", b)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(ctx, d); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Open after delete: %v, want ErrNotFound", err)
	}
}

func TestFSDigestMismatchStoresNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := NewFS(dir)
	w, _ := s.Create(ctx)
	io.WriteString(w, "truncated")
	if _, err := w.Commit(digestOf("truncated but longer")); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("Commit with wrong digest: %v, want ErrInvalid", err)
	}
	if _, _, err := s.Open(ctx, digestOf("truncated")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("blob visible after failed commit: %v", err)
	}
	left, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(left) != 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
}

func TestFSCancelAndBadDigest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := NewFS(dir)
	w, _ := s.Create(ctx)
	io.WriteString(w, "x")
	w.Cancel()
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Fatalf("temp files left after Cancel: %v", left)
	}
	if _, _, err := s.Open(ctx, "../../etc/passwd"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("Open with traversal digest: %v, want ErrInvalid", err)
	}
}
