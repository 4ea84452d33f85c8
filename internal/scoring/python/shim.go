package python

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The worker and its inference_schema/azureml stand-ins ship inside the binary, so a replica needs
// nothing but a Python interpreter.
//
//go:embed shim
var shimFS embed.FS

// writeShim copies the embedded shim into a fresh directory and returns the worker script's path.
func writeShim() (dir, script string, err error) {
	dir, err = os.MkdirTemp("", "mlship-shim-")
	if err != nil {
		return "", "", fmt.Errorf("write python shim: %w", err)
	}
	err = fs.WalkDir(shimFS, "shim", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("shim", path)
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := shimFS.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("write python shim: %w", err)
	}
	return dir, filepath.Join(dir, "mlship_worker.py"), nil
}
