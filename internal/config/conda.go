package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// CondaDependencies is a conda environment specification (environment.yml, or
// environment.python.condaDependencies).
type CondaDependencies struct {
	Name         string            `json:"name,omitempty"`
	Channels     []string          `json:"channels,omitempty"`
	Dependencies []CondaDependency `json:"dependencies,omitempty"`
	Prefix       string            `json:"prefix,omitempty"`
	Variables    map[string]string `json:"variables,omitempty"`
}

// CondaDependency is one item of dependencies: a conda package spec, or a {pip: [...]} list.
type CondaDependency struct {
	Package string
	Pip     []string
}

// MarshalJSON writes a package as a string and a pip list as {"pip": [...]}.
func (d CondaDependency) MarshalJSON() ([]byte, error) {
	if d.Pip != nil {
		return json.Marshal(map[string][]string{"pip": d.Pip})
	}
	return json.Marshal(d.Package)
}

// UnmarshalJSON reads either form.
func (d *CondaDependency) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*d = CondaDependency{Package: s}
		return nil
	}
	var m struct {
		Pip []string `json:"pip"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m.Pip == nil {
		m.Pip = []string{}
	}
	*d = CondaDependency{Pip: m.Pip}
	return nil
}

func (*CondaDependency) jsonTypeName() string { return `a package spec or {"pip": [...]}` }

func (*CondaDependency) checkJSON(w *walker, path string, v any) {
	switch t := v.(type) {
	case string:
	case map[string]any:
		for _, k := range sortedKeys(t) {
			if k != "pip" {
				w.unknown(path, k, []string{"pip"})
				delete(t, k)
				continue
			}
			w.walk(joinPath(path, k), t[k], reflectStrings)
		}
	default:
		w.typeErrors++
		w.probs.add(path, `expected a package spec string or {"pip": [...]}, got %s`, describe(v))
	}
}

// ParseCondaFile parses a conda environment file (YAML or JSON), as named by the legacy
// condaFile key or environment.python.condaDependenciesFile.
func ParseCondaFile(data []byte, name string) (*CondaDependencies, error) {
	c := &CondaDependencies{}
	ps := decode(data, name, c, nil)
	if len(ps) > 0 && len(ps) != countUnknown(ps) {
		return nil, ps.err(name)
	}
	c.problems(&ps, "")
	if err := ps.err(name); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CondaDependencies) problems(ps *problems, prefix string) {
	if c == nil {
		return
	}
	for i, d := range c.Dependencies {
		p := fmt.Sprintf("%s[%d]", joinPath(prefix, "dependencies"), i)
		if d.Pip == nil && strings.TrimSpace(d.Package) == "" {
			ps.add(p, "must not be empty")
		}
		for j, spec := range d.Pip {
			if strings.TrimSpace(spec) == "" {
				ps.add(fmt.Sprintf("%s.pip[%d]", p, j), "must not be empty")
			}
		}
	}
}

// PipPackages lists the pip requirements, in file order. Nil-safe.
func (c *CondaDependencies) PipPackages() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, d := range c.Dependencies {
		out = append(out, d.Pip...)
	}
	return out
}

// CondaPackages lists the conda package specs other than python itself, in file order. Nil-safe.
func (c *CondaDependencies) CondaPackages() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, d := range c.Dependencies {
		if d.Pip == nil && d.Package != "" {
			if _, ok := pythonSpec(d.Package); !ok {
				out = append(out, d.Package)
			}
		}
	}
	return out
}

// PythonVersion is the python version spec from the dependencies: "3.8.10" for "python=3.8.10"
// or "python==3.8.10", ">=3.8" for "python>=3.8", "" when python is not pinned. Nil-safe.
func (c *CondaDependencies) PythonVersion() string {
	if c == nil {
		return ""
	}
	for _, d := range c.Dependencies {
		if v, ok := pythonSpec(d.Package); ok && d.Pip == nil {
			return v
		}
	}
	return ""
}

func pythonSpec(pkg string) (string, bool) {
	s := strings.TrimSpace(pkg)
	if !strings.HasPrefix(strings.ToLower(s), "python") {
		return "", false
	}
	rest := strings.TrimSpace(s[len("python"):])
	if rest != "" && !strings.ContainsRune("=<>!~ ", rune(rest[0])) {
		return "", false // python-dateutil, pythonnet, ...
	}
	rest = strings.TrimLeft(rest, "= ")
	return rest, true
}

// Hash is a hex sha256 over the python version and the sorted, de-duplicated conda and pip
// package lists, with whitespace normalized. Order in the file does not change it. Nil-safe.
func (c *CondaDependencies) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "mlship-environment-v1\npython %s\n", normalizeSpec(c.PythonVersion()))
	for _, kind := range []struct {
		name string
		pkgs []string
	}{{"conda", c.CondaPackages()}, {"pip", c.PipPackages()}} {
		norm := make([]string, 0, len(kind.pkgs))
		for _, p := range kind.pkgs {
			norm = append(norm, normalizeSpec(p))
		}
		slices.Sort(norm)
		for _, p := range slices.Compact(norm) {
			fmt.Fprintf(h, "%s %s\n", kind.name, p)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func normalizeSpec(s string) string { return strings.Join(strings.Fields(s), " ") }
