// Package onnx serves a single .onnx model with ONNX Runtime, with no user code.
package onnx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/tensor"
)

// RuntimeVersion is the ONNX Runtime release that github.com/yalue/onnxruntime_go v1.27.0 is built against.
const RuntimeVersion = "1.24.3"

// Platform is the OIP v2 platform name of ONNX models.
const Platform = "onnxruntime_onnx"

// ErrLibraryMissing means libonnxruntime.so was not found where it was looked for.
var ErrLibraryMissing = errors.New("ONNX Runtime library not found")

// Config says which model to serve and with which library.
type Config struct {
	ModelPath   string
	LibraryPath string // $ONNXRUNTIME_LIB, then DefaultLibraryPath(), if empty
	Threads     int    // intra-op threads per run; 1 if 0 (concurrency comes from parallel requests)
	ModelName   string // the file's base name if empty
	Version     string
}

// DefaultLibraryPath is where scripts/setup-onnxruntime.sh puts the library.
func DefaultLibraryPath() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache")
		}
	}
	if d := os.Getenv("MLSHIP_CACHE_DIR"); d != "" {
		return filepath.Join(d, "onnxruntime", RuntimeVersion, "libonnxruntime.so")
	}
	return filepath.Join(cache, "mlship", "onnxruntime", RuntimeVersion, "libonnxruntime.so")
}

// LibraryPath resolves the library: explicit, then $ONNXRUNTIME_LIB, then DefaultLibraryPath.
func LibraryPath(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if p := os.Getenv("ONNXRUNTIME_LIB"); p != "" {
		return p
	}
	return DefaultLibraryPath()
}

// The ORT environment is process-wide: it is created once, with the first library path, and kept.
var env struct {
	sync.Mutex
	lib string
	err error
}

func initEnvironment(lib string) error {
	env.Lock()
	defer env.Unlock()
	if env.lib != "" {
		if env.lib != lib {
			return fmt.Errorf("ONNX Runtime is already loaded from %s; one process cannot also load %s", env.lib, lib)
		}
		return env.err
	}
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("%w at %s (%v): run scripts/setup-onnxruntime.sh and set ONNXRUNTIME_LIB to the path it prints", ErrLibraryMissing, lib, err)
	}
	ort.SetSharedLibraryPath(lib)
	env.lib = lib
	env.err = ort.InitializeEnvironment(ort.WithLogLevelError())
	if env.err != nil {
		env.err = fmt.Errorf("load ONNX Runtime from %s: %w", lib, env.err)
	}
	return env.err
}

// ioSpec is one model input or output as ONNX Runtime describes it.
type ioSpec struct {
	name  string
	dt    ort.TensorElementDataType
	shape []int64
}

// Backend is a backend.Backend running one ONNX model; Score and Infer may run concurrently.
type Backend struct {
	cfg     Config
	logger  *slog.Logger
	session *ort.DynamicAdvancedSession
	inputs  []ioSpec
	outputs []ioSpec
	meta    backend.Metadata
	runOpts sync.Pool
	mu      sync.RWMutex // Close must not destroy the session under a running request
	closed  bool
}

// New checks the model file exists; Start loads it.
func New(cfg Config, logger *slog.Logger) (*Backend, error) {
	if _, err := os.Stat(cfg.ModelPath); err != nil {
		return nil, fmt.Errorf("onnx model: %w", err)
	}
	if cfg.Threads < 1 {
		cfg.Threads = 1
	}
	if cfg.ModelName == "" {
		cfg.ModelName = strings.TrimSuffix(filepath.Base(cfg.ModelPath), filepath.Ext(cfg.ModelPath))
	}
	if cfg.Version == "" {
		cfg.Version = "1"
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{cfg: cfg, logger: logger, meta: backend.Metadata{Name: cfg.ModelName, Version: cfg.Version, Platform: Platform}}, nil
}

// Start loads ONNX Runtime and the model, and reads its inputs and outputs from the model's metadata.
func (b *Backend) Start(ctx context.Context) error {
	if err := initEnvironment(LibraryPath(b.cfg.LibraryPath)); err != nil {
		return err
	}
	ins, outs, err := ort.GetInputOutputInfo(b.cfg.ModelPath)
	if err != nil {
		return fmt.Errorf("read ONNX model %s: %w", b.cfg.ModelPath, err)
	}
	for _, in := range ins {
		if in.OrtValueType != ort.ONNXTypeTensor || oipType(in.DataType) == "" || oipType(in.DataType) == "BYTES" {
			return fmt.Errorf("ONNX model %s: input %s is not supported without an entry script (only numeric and boolean tensors are)", b.cfg.ModelPath, in.String())
		}
		b.inputs = append(b.inputs, ioSpec{name: in.Name, dt: in.DataType, shape: in.Dimensions})
	}
	for _, out := range outs {
		if out.OrtValueType != ort.ONNXTypeTensor || oipType(out.DataType) == "" || oipType(out.DataType) == "BYTES" {
			// e.g. skl2onnx's ZipMap probabilities (a sequence of maps); the other outputs still serve.
			b.logger.Warn("skipping an ONNX output that is not a numeric tensor", "output", out.String())
			continue
		}
		b.outputs = append(b.outputs, ioSpec{name: out.Name, dt: out.DataType, shape: out.Dimensions})
	}
	if len(b.outputs) == 0 {
		return fmt.Errorf("ONNX model %s has no numeric tensor output to serve", b.cfg.ModelPath)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return fmt.Errorf("onnx session options: %w", err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(b.cfg.Threads); err != nil {
		return fmt.Errorf("onnx session options: %w", err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return fmt.Errorf("onnx session options: %w", err)
	}
	// Spinning threads would steal the cores that parallel requests need.
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return fmt.Errorf("onnx session options: %w", err)
	}
	inNames := make([]string, len(b.inputs))
	for i, in := range b.inputs {
		inNames[i] = in.name
	}
	outNames := make([]string, len(b.outputs))
	for i, out := range b.outputs {
		outNames[i] = out.name
	}
	b.session, err = ort.NewDynamicAdvancedSession(b.cfg.ModelPath, inNames, outNames, opts)
	if err != nil {
		return fmt.Errorf("load ONNX model %s: %w", b.cfg.ModelPath, err)
	}
	b.meta = backend.Metadata{Name: b.cfg.ModelName, Version: b.cfg.Version, Platform: Platform}
	for _, in := range b.inputs {
		b.meta.Inputs = append(b.meta.Inputs, tensor.Spec{Name: in.name, Datatype: oipType(in.dt), Shape: in.shape})
	}
	for _, out := range b.outputs {
		b.meta.Outputs = append(b.meta.Outputs, tensor.Spec{Name: out.name, Datatype: oipType(out.dt), Shape: out.shape})
	}
	b.logger.Info("onnx model loaded", "model", b.cfg.ModelPath, "inputs", fmt.Sprint(b.meta.Inputs), "outputs", fmt.Sprint(b.meta.Outputs))
	return nil
}

// Metadata implements backend.Backend.
func (b *Backend) Metadata() backend.Metadata { return b.meta }

// Close releases the session; the process-wide ONNX Runtime environment stays loaded.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.session == nil {
		b.closed = true
		return nil
	}
	b.closed = true
	return b.session.Destroy()
}

func oipType(dt ort.TensorElementDataType) string {
	switch dt {
	case ort.TensorElementDataTypeFloat:
		return "FP32"
	case ort.TensorElementDataTypeDouble:
		return "FP64"
	case ort.TensorElementDataTypeFloat16:
		return "" // no Go type for it here
	case ort.TensorElementDataTypeInt8:
		return "INT8"
	case ort.TensorElementDataTypeInt16:
		return "INT16"
	case ort.TensorElementDataTypeInt32:
		return "INT32"
	case ort.TensorElementDataTypeInt64:
		return "INT64"
	case ort.TensorElementDataTypeUint8:
		return "UINT8"
	case ort.TensorElementDataTypeUint16:
		return "UINT16"
	case ort.TensorElementDataTypeUint32:
		return "UINT32"
	case ort.TensorElementDataTypeUint64:
		return "UINT64"
	case ort.TensorElementDataTypeBool:
		return "BOOL"
	case ort.TensorElementDataTypeString:
		return "BYTES"
	}
	return ""
}
