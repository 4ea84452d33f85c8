package scoring

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/onnx"
	"github.com/mlship/mlship/internal/scoring/python"
)

// ErrNoModel is a model dir that holds nothing mlship can serve on its own.
var ErrNoModel = errors.New("nothing to serve")

// newBackend picks the runtime from what the config and the model folder hold:
// an entry script → Python workers; else exactly one .onnx file → ONNX Runtime (no code);
// else a score.py at the top of the model dir → Python workers.
func newBackend(cfg Config, logger *slog.Logger) (backend.Backend, error) {
	if cfg.EntryScript != "" {
		return newPython(cfg, resolveEntryScript(cfg.EntryScript, cfg.SourceDir), logger)
	}
	models, err := findONNX(cfg.ModelDir)
	if err != nil {
		return nil, err
	}
	switch len(models) {
	case 1:
		name := cfg.ModelName
		return onnx.New(onnx.Config{
			ModelPath:   models[0],
			LibraryPath: cfg.ONNXRuntimeLib,
			Threads:     cfg.ONNXThreads,
			ModelName:   name,
			Version:     cfg.Version,
		}, logger)
	case 0:
	default:
		return nil, fmt.Errorf("%w: model dir %s holds %d .onnx files (%s); no-code deployment serves exactly one, so pass --entry-script", ErrNoModel, cfg.ModelDir, len(models), strings.Join(models, ", "))
	}
	if st, err := os.Stat(filepath.Join(cfg.ModelDir, "score.py")); err == nil && !st.IsDir() {
		return newPython(cfg, filepath.Join(cfg.ModelDir, "score.py"), logger)
	}
	return nil, fmt.Errorf("%w: model dir %s has no .onnx file and no score.py; pass --entry-script score.py (and --source-dir)", ErrNoModel, cfg.ModelDir)
}

func newPython(cfg Config, script string, logger *slog.Logger) (backend.Backend, error) {
	modelDir := cfg.ModelDir
	if modelDir == "" {
		modelDir = filepath.Dir(script)
	}
	return python.New(python.Config{
		Python:      cfg.Python,
		EntryScript: script,
		SourceDir:   cfg.SourceDir,
		ModelDir:    modelDir,
		Workers:     cfg.Workers,
		InitTimeout: cfg.InitTimeout,
		PollMicros:  cfg.WorkerPollMicros,
		Env:         cfg.PythonEnv,
		ModelName:   cfg.ModelName,
		Version:     cfg.Version,
	}, logger)
}

// resolveEntryScript follows Azure: the entry script is relative to the source directory.
func resolveEntryScript(script, sourceDir string) string {
	if filepath.IsAbs(script) || sourceDir == "" {
		return script
	}
	if p := filepath.Join(sourceDir, script); fileExists(p) || !fileExists(script) {
		return p
	}
	return script
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// findONNX lists .onnx files under dir (Azure mounts a model as azureml-models/NAME/VERSION/...).
func findONNX(dir string) ([]string, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: no model dir given", ErrNoModel)
	}
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.EqualFold(filepath.Ext(p), ".onnx") {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read model dir: %w", err)
	}
	return found, nil
}
