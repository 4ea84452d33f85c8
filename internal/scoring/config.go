// Package scoring is mlship's data plane: one replica serving one model over HTTP with Azure ML's limits and contract.
package scoring

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Azure ML's defaults and bounds (deployment config), kept as mlship's.
const (
	DefaultMaxConcurrentRequests = 1
	DefaultMaxQueueWait          = 500 * time.Millisecond
	DefaultScoringTimeout        = 60 * time.Second
	MaxScoringTimeout            = 300 * time.Second
	DefaultMaxBodyBytes          = 100 << 20
	DefaultInitTimeout           = 5 * time.Minute
	DefaultAddr                  = "127.0.0.1:0"
)

// ErrInvalidConfig wraps every configuration mistake.
var ErrInvalidConfig = errors.New("invalid scoring config")

// Config is one replica's configuration. Zero values take the defaults above.
type Config struct {
	ModelDir    string // served as AZUREML_MODEL_DIR
	EntryScript string // score.py; relative paths are resolved against SourceDir first
	SourceDir   string // the entry script's directory if empty
	ModelName   string // OIP v2 model name; the model dir's (or .onnx file's) base name if empty
	Version     string // OIP v2 model version; "1" if empty

	Workers               int           // Python worker processes (ONNX: sessions run concurrently)
	MaxConcurrentRequests int           // maxConcurrentRequestsPerContainer
	MaxQueueWait          time.Duration // maxQueueWaitMs; < 0 means do not queue at all
	ScoringTimeout        time.Duration // scoringTimeoutMs, at most MaxScoringTimeout
	InitTimeout           time.Duration // bound on loading the model (every worker's init())
	MaxBodyBytes          int64
	// RequestReadTimeout bounds reading one request, body included (408 after it); 5 minutes if 0.
	RequestReadTimeout time.Duration

	Python    string   // interpreter for entry scripts; /usr/bin/python3 if empty
	PythonEnv []string // extra KEY=VALUE for Python workers
	// WorkerPollMicros: after answering a lone request, a worker polls for the next one this long
	// instead of sleeping (see python.Config.PollMicros); 0 never polls.
	WorkerPollMicros int
	ONNXRuntimeLib   string // libonnxruntime.so; $ONNXRUNTIME_LIB or the setup script's cache if empty
	ONNXThreads      int    // intra-op threads per ONNX run; 1 if 0

	Addr string // listen address; 127.0.0.1:0 picks a free port on loopback
}

// withDefaults fills zero values; it does not validate.
func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.MaxConcurrentRequests == 0 {
		c.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	if c.MaxQueueWait == 0 {
		c.MaxQueueWait = DefaultMaxQueueWait
	}
	if c.ScoringTimeout == 0 {
		c.ScoringTimeout = DefaultScoringTimeout
	}
	if c.InitTimeout == 0 {
		c.InitTimeout = DefaultInitTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.RequestReadTimeout == 0 {
		c.RequestReadTimeout = 5 * time.Minute
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Version == "" {
		c.Version = "1"
	}
	if c.ModelName == "" && c.ModelDir != "" {
		if abs, err := filepath.Abs(c.ModelDir); err == nil {
			c.ModelName = sanitizeName(filepath.Base(abs))
		}
	}
	return c
}

// Validate reports every mistake in c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.ModelDir == "" && c.EntryScript == "" {
		bad("a model dir is required (--model-dir)")
	}
	if c.Workers < 1 {
		bad("workers must be at least 1, got %d", c.Workers)
	}
	if c.MaxConcurrentRequests < 1 {
		bad("maxConcurrentRequestsPerContainer must be at least 1, got %d", c.MaxConcurrentRequests)
	}
	if c.ScoringTimeout <= 0 || c.ScoringTimeout > MaxScoringTimeout {
		bad("scoringTimeoutMs must be between 1 and %d, got %d", MaxScoringTimeout.Milliseconds(), c.ScoringTimeout.Milliseconds())
	}
	if c.MaxBodyBytes < 1 {
		bad("max body bytes must be positive, got %d", c.MaxBodyBytes)
	}
	if c.InitTimeout < 0 {
		bad("init timeout must not be negative")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// sanitizeName makes an OIP model name usable in a URL path segment.
func sanitizeName(s string) string {
	s = strings.TrimSuffix(s, filepath.Ext(s))
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '?' || r == '#' || r == ' ' || r == '%' {
			return '-'
		}
		return r
	}, s)
}
