package onnx

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// This file sorts before onnx_test.go so the test runs before any test loads the real library.
func TestMissingLibrary(t *testing.T) {
	if env.lib != "" {
		t.Skip("ONNX Runtime is already loaded in this process; the missing-library path is checked before loading")
	}
	b, err := New(Config{ModelPath: exampleModel, LibraryPath: filepath.Join(t.TempDir(), "libonnxruntime.so")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); !errors.Is(err, ErrLibraryMissing) {
		t.Fatalf("err = %v, want ErrLibraryMissing", err)
	}
}
