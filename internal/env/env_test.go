package env

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
)

// newCache returns a cache in a temporary directory, skipping the test when the machine's
// python cannot build virtualenvs (never under CI, where that is a broken setup).
func newCache(t *testing.T, opts Options) (*Cache, baseInfo) {
	t.Helper()
	c := NewCache(filepath.Join(t.TempDir(), "envs"), opts)
	base, err := c.probe(context.Background())
	if err == nil && !base.pip && !base.ensurepip {
		err = errors.New("neither pip nor ensurepip is importable")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s cannot build virtualenvs (install Debian python3-venv python3-pip): %v", c.opts.BasePython, err)
		}
		t.Skipf("%s cannot build virtualenvs (install Debian python3-venv python3-pip): %v", c.opts.BasePython, err)
	}
	return c, base
}

func inference(t *testing.T, deps string) *config.InferenceConfig {
	t.Helper()
	js := fmt.Sprintf(`{"entryScript":"score.py","environment":{"name":"test","environmentVariables":{"MODE":"test"},
		"python":{"condaDependencies":{"dependencies":%s}}}}`, deps)
	ic, err := config.ParseInference([]byte(js), "inferenceconfig.json")
	if err != nil {
		t.Fatal(err)
	}
	return ic
}

func pythonOut(t *testing.T, python, code string) string {
	t.Helper()
	out, err := exec.Command(python, "-c", code).CombinedOutput()
	if err != nil {
		t.Fatalf("%s -c %q: %v\n%s", python, code, err, out)
	}
	return strings.TrimSpace(string(out))
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Name() != ".locks" {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestNoPackagesUsesBaseInterpreter(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, Options{})
	for name, ic := range map[string]*config.InferenceConfig{
		"no-code":     config.NoCodeInference(),
		"only python": inference(t, `["python", "pip"]`),
		"empty list":  inference(t, `[]`),
	} {
		e, err := c.Prepare(context.Background(), ic, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e.Python != DefaultBasePython || e.Dir != "" || e.Reused {
			t.Errorf("%s: Env = %+v, want the base interpreter and no virtualenv", name, e)
		}
	}
	if got := entries(t, c.Dir()); len(got) != 0 {
		t.Errorf("cache holds %v, want nothing", got)
	}
}

func TestSystemPackagesAndReuse(t *testing.T) {
	t.Parallel()
	c, base := newCache(t, Options{})
	if _, err := exec.Command(DefaultBasePython, "-c", "import numpy, sklearn").CombinedOutput(); err != nil {
		t.Skip("Debian python3-numpy and python3-sklearn are not installed")
	}
	mm := majorMinor(base.version)
	var log bytes.Buffer
	start := time.Now()
	e, err := c.Prepare(context.Background(), inference(t, `["python=`+mm+`", "pip", "numpy", {"pip": ["scikit-learn"]}]`), &log)
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	if e.Reused || e.Dir != filepath.Join(c.Dir(), e.Hash) || e.Python != filepath.Join(e.Dir, "bin", "python") {
		t.Errorf("cold Env = %+v, want a new virtualenv under the cache", e)
	}
	if e.Vars["MODE"] != "test" {
		t.Errorf("Vars = %v, want MODE=test", e.Vars)
	}
	if got := pythonOut(t, e.Python, "import sys, numpy, sklearn; print(sys.prefix)"); got != e.Dir {
		t.Errorf("sys.prefix = %s, want %s", got, e.Dir)
	}
	if !strings.Contains(log.String(), "already satisfied") {
		t.Errorf("build log lacks pip's output:\n%s", log.String())
	}

	start = time.Now()
	e2, err := c.Prepare(context.Background(), inference(t, `[{"pip": ["scikit-learn"]}, "numpy", "pip", "python=`+mm+`", "numpy"]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	if !e2.Reused || e2.Dir != e.Dir || e2.Hash != e.Hash {
		t.Errorf("warm Env = %+v, want the same virtualenv reused (%s)", e2, e.Dir)
	}
	t.Logf("cold create %v, warm reuse %v", cold.Round(time.Millisecond), warm.Round(time.Microsecond))

	// A second cache on the same directory (another process, say) reuses it too.
	e3, err := NewCache(c.Dir(), Options{}).Prepare(context.Background(), inference(t, `["numpy", "pip", {"pip": ["scikit-learn"]}, "python=`+mm+`"]`), nil)
	if err != nil || !e3.Reused || e3.Dir != e.Dir {
		t.Errorf("other cache: Env = %+v, %v; want reused %s", e3, err, e.Dir)
	}

	list, err := c.List()
	if err != nil || len(list) != 1 || list[0].Hash != e.Hash || strings.Join(list[0].Packages, ",") != "numpy,scikit-learn" ||
		list[0].PythonVersion != base.version || list[0].BuildLog == "" {
		t.Fatalf("List = %+v, %v; want the one environment with its packages and log", list, err)
	}
	if n, err := c.Size(e.Hash); err != nil || n <= 0 {
		t.Errorf("Size = %d, %v", n, err)
	}
	if err := c.Remove(e.Hash); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, c.Dir()); len(got) != 0 {
		t.Errorf("after Remove the cache holds %v", got)
	}
	if err := c.Remove(e.Hash); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Remove twice = %v, want ErrNotFound", err)
	}
}

// writeWheel writes a pure-python wheel of module name (which sets X = 42) into dir.
func writeWheel(t *testing.T, dir, name, version string) {
	t.Helper()
	di := name + "-" + version + ".dist-info"
	files := [][2]string{
		{name + ".py", "X = 42\n"},
		{di + "/METADATA", "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"},
		{di + "/WHEEL", "Wheel-Version: 1.0\nGenerator: mlship-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	record := ""
	for _, f := range files {
		record += f[0] + ",,\n"
	}
	files = append(files, [2]string{di + "/RECORD", record + di + "/RECORD,,\n"})
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := z.Create(f[0])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f[1]))
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-"+version+"-py3-none-any.whl"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestInstallsIntoTheVirtualenvOnly(t *testing.T) {
	t.Parallel()
	wheels := t.TempDir()
	writeWheel(t, wheels, "mlship_envtest", "0.1")
	c, base := newCache(t, Options{FindLinks: []string{wheels}})
	if !base.pip {
		t.Skip("the base interpreter has no pip to install from a wheelhouse")
	}
	e, err := c.Prepare(context.Background(), inference(t, `[{"pip": ["mlship_envtest==0.1"]}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := pythonOut(t, e.Python, "import mlship_envtest; print(mlship_envtest.X, mlship_envtest.__file__)"); !strings.HasPrefix(got, "42 "+e.Dir+"/") {
		t.Errorf("from the venv: %s, want the module inside %s", got, e.Dir)
	}
	if out, err := exec.Command(DefaultBasePython, "-c", "import mlship_envtest").CombinedOutput(); err == nil {
		t.Errorf("the package leaked into the base interpreter:\n%s", out)
	}
}

func TestUninstallablePackageLeavesNothing(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, Options{})
	const bad = "surely-not-a-real-package-mlship==9.9"
	start := time.Now()
	_, err := c.Prepare(context.Background(), inference(t, `["numpy", {"pip": ["`+bad+`"]}]`), nil)
	t.Logf("failed build took %v", time.Since(start).Round(time.Millisecond))
	var be *BuildError
	if !errors.As(err, &be) || be.Step != "pip" || !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("Prepare = %v, want a pip *BuildError of kind ErrInvalid", err)
	}
	if len(be.Failed) != 1 || be.Failed[0] != bad || be.Tail == "" {
		t.Errorf("BuildError names %v with output %q, want %s and pip's output", be.Failed, be.Tail, bad)
	}
	t.Logf("error: %v", err)
	if got := entries(t, c.Dir()); len(got) != 0 {
		t.Errorf("cache holds %v after a failed build, want nothing", got)
	}
}

func TestPythonVersionMismatch(t *testing.T) {
	t.Parallel()
	c, base := newCache(t, Options{})
	_, err := c.Prepare(context.Background(), inference(t, `["python=2.7", "numpy"]`), nil)
	var ve *PythonVersionError
	if !errors.As(err, &ve) || !errors.Is(err, errdefs.ErrInvalid) || ve.Have != base.version || ve.Want != "2.7" {
		t.Fatalf("Prepare = %v, want a *PythonVersionError (2.7 wanted, %s available)", err, base.version)
	}
	t.Logf("error: %v", err)
	if got := entries(t, c.Dir()); len(got) != 0 {
		t.Errorf("cache holds %v, want nothing", got)
	}
}

// syncBuffer is a log shared by concurrent Prepare calls.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestConcurrentPrepareBuildsOnce(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, Options{})
	other := NewCache(c.Dir(), Options{}) // separate in-process locks: only the file lock serializes it
	var log syncBuffer
	var wg sync.WaitGroup
	envs := make([]Env, 6)
	errs := make([]error, len(envs))
	for i := range envs {
		cache := c
		if i >= 4 {
			cache = other
		}
		wg.Go(func() {
			envs[i], errs[i] = cache.Prepare(context.Background(), inference(t, `["numpy"]`), &log)
		})
	}
	wg.Wait()
	built := 0
	for i, e := range envs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !e.Reused {
			built++
		}
		if e.Dir != envs[0].Dir {
			t.Errorf("Prepare %d got %s, want %s", i, e.Dir, envs[0].Dir)
		}
	}
	if n := strings.Count(log.b.String(), "creating virtualenv"); built != 1 || n != 1 {
		t.Errorf("%d calls built and %d builds logged, want 1:\n%s", built, n, log.b.String())
	}
}

func TestUnfinishedBuildIsRedone(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, Options{})
	ic := inference(t, `["numpy"]`)
	stale := filepath.Join(c.Dir(), ic.EnvironmentHash())
	if err := os.MkdirAll(filepath.Join(stale, "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := c.Prepare(context.Background(), ic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Reused || e.Dir != stale {
		t.Errorf("Env = %+v, want a fresh build in %s", e, stale)
	}
	if _, err := os.Stat(filepath.Join(stale, "junk")); !os.IsNotExist(err) {
		t.Errorf("the unfinished build's files survived: %v", err)
	}
	pythonOut(t, e.Python, "import numpy")
}

func TestUserManagedDependencies(t *testing.T) {
	t.Parallel()
	c := NewCache(t.TempDir(), Options{})
	ic, err := config.ParseInference([]byte(`{"entryScript":"score.py","environment":{"name":"mine",
		"python":{"userManagedDependencies":true,"interpreterPath":"/opt/py/bin/python"}}}`), "ic.json")
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Prepare(context.Background(), ic, nil)
	if err != nil || e.Python != "/opt/py/bin/python" || e.Dir != "" {
		t.Errorf("Prepare = %+v, %v; want the user's interpreter as is", e, err)
	}
}

func TestCondaFileFromSourceDirectory(t *testing.T) {
	t.Parallel()
	c, base := newCache(t, Options{})
	src := t.TempDir()
	yml := "name: x\ndependencies:\n  - python=" + majorMinor(base.version) + "\n  - pip:\n    - numpy\n"
	if err := os.WriteFile(filepath.Join(src, "env.yml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	ic, err := config.ParseInference([]byte(`{"entryScript":"score.py","condaFile":"env.yml","sourceDirectory":"`+src+`"}`), "ic.json")
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Prepare(context.Background(), ic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(e.Packages, ",") != "numpy" || e.Dir == "" {
		t.Errorf("Env = %+v, want a virtualenv with numpy from env.yml", e)
	}
	ic.CondaFile = "missing.yml"
	if _, err := c.Prepare(context.Background(), ic, nil); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("missing conda file: %v, want ErrInvalid", err)
	}
}

func TestCancelledBuildLeavesNothing(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Prepare(ctx, inference(t, `["numpy", "scipy"]`), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Prepare = %v, want the deadline (a build takes longer than 300ms)", err)
	}
	if got := entries(t, c.Dir()); len(got) != 0 {
		t.Errorf("cache holds %v after a cancelled build, want nothing", got)
	}
}
