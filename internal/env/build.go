package env

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

// ManifestFile is written into a virtualenv last: a directory without it is an unfinished build.
const ManifestFile = "mlship-env.json"

// Manifest describes a built virtualenv.
type Manifest struct {
	Hash          string    `json:"hash"`
	Packages      []string  `json:"packages"`
	PythonVersion string    `json:"pythonVersion"`
	BasePython    string    `json:"basePython"`
	CreatedTime   time.Time `json:"createdTime"`
	BuildSeconds  float64   `json:"buildSeconds"`
	BuildLog      string    `json:"buildLog"`
}

// BuildError is a failed virtualenv build. Nothing of it is left in the cache.
type BuildError struct {
	Hash     string
	Step     string   // "venv" or "pip"
	Packages []string // what was asked for
	Failed   []string // the requirements pip named as failing, if it did
	Tail     string   // last lines of the tool's output
	Err      error
}

func (e *BuildError) Error() string {
	if e.Step == "venv" {
		return fmt.Sprintf("environment %s: create virtualenv: %v: %s", short(e.Hash), e.Err, e.Tail)
	}
	what := e.Failed
	if len(what) == 0 {
		what = e.Packages
	}
	return fmt.Sprintf("environment %s: pip could not install %s: %s; packages come from the machine's Python (Debian python3-*) or a reachable package index",
		short(e.Hash), quoteList(what), e.Tail)
}

// Unwrap gives the kind: a package pip cannot install is the config's problem (ErrInvalid),
// a virtualenv that cannot be created is the machine's (ErrUnavailable).
func (e *BuildError) Unwrap() []error {
	kind := errdefs.ErrInvalid
	if e.Step == "venv" {
		kind = errdefs.ErrUnavailable
	}
	return []error{kind, e.Err}
}

// ready reports whether dir is a finished virtualenv.
func ready(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ManifestFile))
	return err == nil
}

// buildOnce builds the virtualenv of hash unless another goroutine or process did meanwhile;
// it reports whether it found it built.
func (c *Cache) buildOnce(ctx context.Context, hash, dir string, reqs []string, base baseInfo, log io.Writer) (bool, error) {
	m := c.hashLock(hash)
	m.Lock()
	defer m.Unlock()
	if ready(dir) {
		return true, nil
	}
	if err := os.MkdirAll(filepath.Join(c.dir, ".locks"), 0o755); err != nil {
		return false, fmt.Errorf("environment %s: %w", short(hash), err)
	}
	unlock, err := flock(ctx, filepath.Join(c.dir, ".locks", hash+".lock"))
	if err != nil {
		return false, fmt.Errorf("environment %s: lock: %w", short(hash), err)
	}
	defer unlock()
	if ready(dir) {
		return true, nil
	}
	// A directory without a manifest is a build that crashed half way.
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("environment %s: remove unfinished build: %w", short(hash), err)
	}
	start := time.Now()
	c.opts.Logger.Info("building python environment", "hash", short(hash), "packages", reqs)
	fmt.Fprintf(log, "environment %s: creating virtualenv for %s\n", short(hash), strings.Join(reqs, " "))
	buildLog, err := c.build(ctx, hash, dir, reqs, base, log)
	if err != nil {
		os.RemoveAll(dir)
		c.opts.Logger.Warn("python environment failed", "hash", short(hash), "err", err)
		return false, err
	}
	man := Manifest{Hash: hash, Packages: reqs, PythonVersion: base.version, BasePython: c.opts.BasePython,
		CreatedTime: c.opts.Now().UTC(), BuildSeconds: time.Since(start).Seconds(), BuildLog: buildLog}
	if err := writeManifest(dir, man); err != nil {
		os.RemoveAll(dir)
		return false, fmt.Errorf("environment %s: %w", short(hash), err)
	}
	c.opts.Logger.Info("built python environment", "hash", short(hash), "seconds", man.BuildSeconds)
	fmt.Fprintf(log, "environment %s: ready in %.1fs\n", short(hash), man.BuildSeconds)
	return false, nil
}

// build creates the virtualenv in place: venvs are not relocatable (scripts pip installs carry
// the absolute path), so it is built at its final path and the manifest marks it finished.
func (c *Cache) build(ctx context.Context, hash, dir string, reqs []string, base baseInfo, log io.Writer) (string, error) {
	var all bytes.Buffer
	out := io.MultiWriter(&all, log)
	args := []string{"-m", "venv", "--system-site-packages"}
	switch {
	case base.pip:
		// The base pip (Debian python3-pip) installs into the venv; ensurepip would copy a
		// second pip in, which costs seconds per environment.
		args = append(args, "--without-pip")
	case !base.ensurepip:
		return "", &BuildError{Hash: hash, Step: "venv", Packages: reqs,
			Err:  errdefs.WithKind(errdefs.ErrUnavailable, errors.New("no pip available")),
			Tail: fmt.Sprintf("%s has neither pip nor ensurepip; install Debian python3-venv and python3-pip", c.opts.BasePython)}
	}
	args = append(args, dir)
	if err := c.run(ctx, out, c.opts.BasePython, args...); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", &BuildError{Hash: hash, Step: "venv", Packages: reqs, Tail: tail(all.String(), 10), Err: err}
	}
	reqFile := filepath.Join(dir, "mlship-requirements.txt")
	if err := os.WriteFile(reqFile, []byte(strings.Join(reqs, "\n")+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("environment %s: %w", short(hash), err)
	}
	pip := []string{"-m", "pip", "install", "--no-input", "--disable-pip-version-check",
		"--retries", "0", "--timeout", fmt.Sprint(int(c.opts.PipTimeout.Seconds())), "--no-warn-script-location"}
	for _, l := range c.opts.FindLinks {
		pip = append(pip, "--find-links", l)
	}
	pip = append(pip, "-r", reqFile)
	mark := all.Len()
	if err := c.run(ctx, out, filepath.Join(dir, "bin", "python"), pip...); err != nil {
		pipOut := all.String()[mark:]
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", &BuildError{Hash: hash, Step: "pip", Packages: reqs, Failed: failedRequirements(pipOut),
			Tail: pipErrors(pipOut), Err: err}
	}
	return all.String(), nil
}

func (c *Cache) run(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = buildEnv()
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
}

// buildEnv is this process's environment minus what would send pip elsewhere than the venv.
func buildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_REQUIRE_VIRTUALENV":
			continue
		}
		env = append(env, kv)
	}
	return env
}

var pipFailed = []*regexp.Regexp{
	regexp.MustCompile(`No matching distribution found for (\S+)`),
	regexp.MustCompile(`Could not find a version that satisfies the requirement (\S+)`),
	regexp.MustCompile(`Invalid requirement: '([^']+)'`),
	regexp.MustCompile(`Failed to build (\S+)`),
}

func failedRequirements(out string) []string {
	var names []string
	seen := map[string]bool{}
	for _, re := range pipFailed {
		for _, m := range re.FindAllStringSubmatch(out, -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				names = append(names, m[1])
			}
		}
	}
	return names
}

// pipErrors is pip's ERROR lines, or the last lines of its output when it printed none.
func pipErrors(out string) string {
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "ERROR:") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return tail(out, 6)
	}
	return tail(strings.Join(errs, "\n"), 6)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " | ")
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = "'" + x + "'"
	}
	return strings.Join(q, ", ")
}

func writeManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ManifestFile))
}

// flock takes an exclusive lock on path, polling so that ctx can cancel the wait.
func flock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
