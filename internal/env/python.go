package env

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/mlship/mlship/internal/errdefs"
)

// baseInfo is what the base interpreter offers.
type baseInfo struct {
	version   string // "3.11.2"
	pip       bool   // pip is importable (Debian python3-pip): venvs are built --without-pip and use it
	ensurepip bool   // venv can install its own pip (Debian python3-venv)
}

const probeScript = `import sys, importlib.util as u
print("%d.%d.%d" % sys.version_info[:3])
print(u.find_spec("pip") is not None)
print(u.find_spec("venv") is not None and u.find_spec("ensurepip") is not None)
`

func (c *Cache) probe(ctx context.Context) (baseInfo, error) {
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	if c.base != nil {
		return *c.base, nil
	}
	cmd := exec.CommandContext(ctx, c.opts.BasePython, "-I", "-c", probeScript)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return baseInfo{}, errdefs.WithKind(errdefs.ErrUnavailable,
			fmt.Errorf("python environments: run %s: %w %s", c.opts.BasePython, err, strings.TrimSpace(errb.String())))
	}
	f := strings.Fields(out.String())
	if len(f) != 3 || parseVersion(f[0]) == nil {
		return baseInfo{}, fmt.Errorf("python environments: unexpected answer from %s: %q", c.opts.BasePython, out.String())
	}
	c.base = &baseInfo{version: f[0], pip: f[1] == "True", ensurepip: f[2] == "True"}
	return *c.base, nil
}

// PythonVersionError says the config pins a python the machine does not have.
type PythonVersionError struct {
	Want        string // the spec from the config, e.g. "3.8"
	Have        string // the base interpreter's version
	Interpreter string
}

func (e *PythonVersionError) Error() string {
	mm := majorMinor(e.Have)
	return fmt.Sprintf("python %s is required (python=%s in condaDependencies) but only Python %s is available here (%s); pin python=%s or remove the pin",
		e.Want, e.Want, e.Have, e.Interpreter, mm)
}

// Unwrap makes the error an errdefs.ErrInvalid: the config asks for what cannot be had.
func (e *PythonVersionError) Unwrap() error { return errdefs.ErrInvalid }

// checkPython matches a conda python spec ("3.11", "3.11.2", ">=3.8,<3.12", "3.10|3.11",
// "3.11.*") against the base version at major.minor: a patch pin is not enforced, since there
// is one interpreter per minor version here.
func checkPython(spec string, base baseInfo, interp string) error {
	spec = strings.ReplaceAll(spec, " ", "")
	if spec == "" || spec == "*" {
		return nil
	}
	have := parseVersion(base.version)
	for _, alt := range strings.Split(spec, "|") {
		ok := true
		for _, clause := range strings.Split(alt, ",") {
			m, err := matchClause(clause, have)
			if err != nil {
				return errdefs.Invalid("python version %q: %v", spec, err)
			}
			ok = ok && m
		}
		if ok {
			return nil
		}
	}
	return &PythonVersionError{Want: spec, Have: base.version, Interpreter: interp}
}

func matchClause(clause string, have []int) (bool, error) {
	op := ""
	for _, o := range []string{"==", ">=", "<=", "!=", "~=", ">", "<", "="} {
		if strings.HasPrefix(clause, o) {
			op, clause = o, clause[len(o):]
			break
		}
	}
	clause = strings.TrimSuffix(strings.TrimSuffix(clause, "*"), ".")
	want := parseVersion(clause)
	if want == nil {
		return false, fmt.Errorf("%q is not a version", clause)
	}
	// Equality is a prefix match at most major.minor deep (one interpreter per minor version
	// here, patch pins are not enforced); ordering compares the full version.
	eq := want[:min(len(want), 2)]
	prefix := compareVersions(have[:min(len(have), len(eq))], eq)
	full := compareVersions(have, want)
	switch op {
	case "", "=", "==", "~=":
		return prefix == 0, nil
	case "!=":
		return prefix != 0, nil
	case ">=":
		return full >= 0, nil
	case ">":
		return full > 0, nil
	case "<=":
		return prefix <= 0, nil
	default: // "<"
		return full < 0, nil
	}
}

func parseVersion(s string) []int {
	if s == "" {
		return nil
	}
	var out []int
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

func compareVersions(a, b []int) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func majorMinor(v string) string {
	p := strings.SplitN(v, ".", 3)
	if len(p) < 2 {
		return v
	}
	return p[0] + "." + p[1]
}
