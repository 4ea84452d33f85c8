package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

func tree(t *testing.T) string {
	root := filepath.Join(t.TempDir(), "model")
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.WriteFile(filepath.Join(root, "a.bin"), []byte("aaa"), 0o644)
	os.WriteFile(filepath.Join(root, "sub", "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	return root
}

func pack(t *testing.T, root string) []byte {
	p, err := NewPlan(root)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPackIsDeterministic(t *testing.T) {
	root := tree(t)
	first := sha256.Sum256(pack(t, root))
	// New times and another copy of the same content give the same bytes.
	os.Chtimes(filepath.Join(root, "a.bin"), time.Now(), time.Now().Add(-time.Hour))
	if sha256.Sum256(pack(t, root)) != first {
		t.Fatal("changing a file's time changed the archive")
	}
	files, err := Scan(bytes.NewReader(pack(t, root)))
	if err != nil || len(files) != 2 || files[0].Path != "model/a.bin" || files[1].Path != "model/sub/run.sh" {
		t.Fatalf("Scan = %+v, %v", files, err)
	}
	dst := t.TempDir()
	if err := Unpack(bytes.NewReader(pack(t, root)), dst); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dst, "model", "sub", "run.sh")); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("executable bit lost: %v %v", st, err)
	}
}

func TestNewPlanRefuses(t *testing.T) {
	if _, err := NewPlan(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("missing path: %v", err)
	}
	root := tree(t)
	os.Symlink(filepath.Join(root, "sub"), filepath.Join(root, "loop"))
	if _, err := NewPlan(root); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("symlink to a folder: %v", err)
	}
}

func evil(name string, typ byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Size: 1, Mode: 0o644, Linkname: "/etc/passwd"})
	if typ == tar.TypeReg {
		tw.Write([]byte("x"))
	}
	tw.Close()
	return buf.Bytes()
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, c := range []struct {
		name string
		typ  byte
	}{{"../escape", tar.TypeReg}, {"/abs", tar.TypeReg}, {"a/../../b", tar.TypeReg}, {`a\b`, tar.TypeReg}, {"link", tar.TypeSymlink}} {
		dst := t.TempDir()
		if err := Unpack(bytes.NewReader(evil(c.name, c.typ)), filepath.Join(dst, "in")); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Unpack %q: %v, want ErrInvalid", c.name, err)
		}
		if _, err := Scan(bytes.NewReader(evil(c.name, c.typ))); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Scan %q: %v, want ErrInvalid", c.name, err)
		}
		if _, err := os.Stat(filepath.Join(dst, "escape")); err == nil {
			t.Errorf("%q escaped the target folder", c.name)
		}
	}
	dst := t.TempDir()
	os.WriteFile(filepath.Join(dst, "x"), []byte("mine"), 0o644)
	if err := Unpack(bytes.NewReader(evil("x", tar.TypeReg)), dst); err == nil {
		t.Fatal("Unpack overwrote an existing file")
	}
}
