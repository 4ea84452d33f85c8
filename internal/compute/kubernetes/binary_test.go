package kubernetes

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
)

func TestONNXNeedsADynamicBinary(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644)
	static := filepath.Join(dir, "static")
	build := exec.Command("go", "build", "-o", static, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	err := checkONNXBinary(static)
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "--image-binary") {
		t.Fatalf("static binary: %v, want ErrInvalid naming --image-binary", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	sh, _ = filepath.EvalSymlinks(sh)
	if err := checkONNXBinary(sh); err != nil {
		t.Fatalf("dynamic %s: %v", sh, err)
	}
	if err := checkONNXBinary(src); err == nil {
		t.Fatal("a Go source file passed as an ELF binary")
	}
}
