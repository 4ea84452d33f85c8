// Package env prepares the Python environment a service runs in: a virtualenv per environment hash, cached and shared.
package env

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
)

// DefaultBasePython is Debian's interpreter, the one with the python3-* packages; the python3
// first on PATH may be another one without them.
const DefaultBasePython = "/usr/bin/python3"

// Options configure a Cache.
type Options struct {
	BasePython string        // interpreter the virtualenvs are built on; DefaultBasePython if empty
	Logger     *slog.Logger  // default: discard
	PipTimeout time.Duration // pip's per-connection timeout; 15 s if 0, so an unreachable index fails fast
	FindLinks  []string      // extra wheel directories pip may install from (an offline wheelhouse)
	Now        func() time.Time
}

// Cache builds virtualenvs under one directory, one per environment hash, and reuses them.
type Cache struct {
	dir  string
	opts Options

	mu    sync.Mutex
	locks map[string]*sync.Mutex // per hash: one build at a time in this process

	probeMu sync.Mutex
	base    *baseInfo // probed once it succeeds
}

// Env is a prepared environment: run Python with Python, pass Vars to the replicas.
type Env struct {
	Python   string            // interpreter to run
	Hash     string            // environment hash (config.InferenceConfig.EnvironmentHash)
	Dir      string            // the virtualenv; "" when the base interpreter is used directly
	Reused   bool              // the virtualenv existed already
	Packages []string          // pip requirements installed, sorted
	Vars     map[string]string // environment.environmentVariables
}

// Spec is what an environment is built from; SpecFromConfig derives it from an inference config.
type Spec struct {
	Conda *config.CondaDependencies
	Vars  map[string]string
	// Interpreter is set when the user manages dependencies (python.userManagedDependencies):
	// it is run as is, nothing is built.
	Interpreter string
}

// NewCache returns a cache of virtualenvs under dir (created when first needed).
func NewCache(dir string, opts Options) *Cache {
	if opts.BasePython == "" {
		opts.BasePython = DefaultBasePython
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PipTimeout == 0 {
		opts.PipTimeout = 15 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{dir: dir, opts: opts, locks: map[string]*sync.Mutex{}}
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.dir }

// SpecFromConfig derives the spec of ic. A conda file named by ic (legacy condaFile or
// environment.python.condaDependenciesFile) is read relative to sourceDir.
func SpecFromConfig(ic *config.InferenceConfig, sourceDir string) (Spec, error) {
	var s Spec
	if ic == nil {
		return s, nil
	}
	s.Conda = ic.Conda()
	file := ic.CondaFile
	if e := ic.Environment; e != nil {
		s.Vars = e.EnvironmentVariables
		if p := e.Python; p != nil {
			file = p.CondaDependenciesFile
			if p.UserManagedDependencies {
				s.Interpreter = p.InterpreterPath
				if s.Interpreter == "" {
					s.Interpreter = "python" // Azure's default; resolved on PATH
				}
				return s, nil
			}
		}
	}
	if file != "" && s.Conda == nil {
		path := file
		if !filepath.IsAbs(path) {
			path = filepath.Join(sourceDir, file)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return s, errdefs.Invalid("conda file %s: %w", file, err)
		}
		if s.Conda, err = config.ParseCondaFile(data, file); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Prepare returns the environment ic runs in, building its virtualenv if no service built it
// before. Conda files are read relative to ic.SourceDirectory. Build output goes to log (may be nil).
func (c *Cache) Prepare(ctx context.Context, ic *config.InferenceConfig, log io.Writer) (Env, error) {
	var dir string
	if ic != nil {
		dir = ic.SourceDirectory
	}
	s, err := SpecFromConfig(ic, dir)
	if err != nil {
		return Env{}, err
	}
	return c.PrepareSpec(ctx, s, log)
}

// PrepareSpec is Prepare for a spec.
func (c *Cache) PrepareSpec(ctx context.Context, s Spec, log io.Writer) (Env, error) {
	if log == nil {
		log = io.Discard
	}
	hash := s.Conda.Hash()
	e := Env{Hash: hash, Vars: s.Vars}
	if s.Interpreter != "" {
		e.Python = s.Interpreter
		return e, nil
	}
	base, err := c.probe(ctx)
	if err != nil {
		return Env{}, err
	}
	if err := checkPython(s.Conda.PythonVersion(), base, c.opts.BasePython); err != nil {
		return Env{}, fmt.Errorf("environment %s: %w", short(hash), err)
	}
	reqs, skipped := requirements(s.Conda)
	for _, p := range skipped {
		fmt.Fprintf(log, "environment %s: skipping conda package %q: %s\n", short(hash), p.spec, p.why)
	}
	if len(reqs) == 0 {
		e.Python = c.opts.BasePython
		return e, nil
	}
	e.Packages = reqs
	e.Dir = filepath.Join(c.dir, hash)
	e.Python = filepath.Join(e.Dir, "bin", "python")
	if ready(e.Dir) {
		e.Reused = true
		return e, nil
	}
	reused, err := c.buildOnce(ctx, hash, e.Dir, reqs, base, log)
	if err != nil {
		return Env{}, err
	}
	e.Reused = reused
	return e, nil
}

// hashLock is the in-process lock of one hash; the flock in build covers other processes.
func (c *Cache) hashLock(hash string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.locks[hash]
	if !ok {
		m = &sync.Mutex{}
		c.locks[hash] = m
	}
	return m
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
