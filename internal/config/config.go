// Package config parses, defaults and validates Azure ML v1 inferenceconfig.json and deploymentconfig.json files.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/mlship/mlship/internal/errdefs"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	Path    string // JSON path of the key, e.g. "autoScaler.minReplicas"; empty for the whole file
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Error lists every problem found in one file, one per line. It matches errdefs.ErrInvalid.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			b.WriteString(": ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// problems collects Problems; err returns nil when there are none.
type problems []Problem

func (ps *problems) add(path, format string, a ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, a...)})
}

func (ps problems) err(file string) error {
	if len(ps) == 0 {
		return nil
	}
	return errdefs.WithKind(errdefs.ErrInvalid, &Error{File: file, Problems: ps})
}

// decode turns JSON or YAML into v, reporting syntax errors, unknown keys (with the closest valid
// key) and wrong types against v's Go type, so that every message names the key at fault.
func decode(data []byte, name string, v any, aliases map[string]string) problems {
	generic, ps := toGeneric(data, name)
	if len(ps) > 0 {
		return ps
	}
	w := newWalker(v, aliases)
	w.walk("", generic, w.root)
	if w.typeErrors > 0 {
		return w.probs
	}
	// Unknown keys were removed by the walker, so they cannot reach v through
	// encoding/json's case-insensitive matching.
	buf, err := json.Marshal(generic)
	if err == nil {
		err = json.Unmarshal(buf, v)
	}
	if err != nil {
		w.probs.add("", "cannot decode: %v", err)
	}
	return w.probs
}

// toGeneric parses data as JSON (by extension, or when it starts with '{') or else YAML.
// An empty document is an empty object.
func toGeneric(data []byte, name string) (map[string]any, problems) {
	var ps problems
	trimmed := bytes.TrimSpace(data)
	ext := strings.ToLower(filepath.Ext(name))
	isJSON := ext == ".json" || (ext != ".yml" && ext != ".yaml" && len(trimmed) > 0 && trimmed[0] == '{')
	jsonData := trimmed
	if !isJSON {
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			ps.add("", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
			return nil, ps
		}
		jsonData = j
	}
	if len(jsonData) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(jsonData))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		ps.add("", "invalid JSON: %s", describeJSONError(jsonData, err))
		return nil, ps
	}
	if dec.More() {
		ps.add("", "invalid JSON: unexpected data after the top-level object")
		return nil, ps
	}
	switch t := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return t, nil
	default:
		ps.add("", "expected an object at the top level, got %s", describe(v))
		return nil, ps
	}
}

func describeJSONError(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return fmt.Sprintf("line %d, column %d: %s", line, col, se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of file"
	}
	return err.Error()
}

func lineCol(data []byte, offset int64) (int, int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(offset) - bytes.LastIndexByte(before, '\n') - 1
	return line, col
}

// LoadInference reads and parses an inference config file.
func LoadInference(path string) (*InferenceConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errdefs.Invalid("inference config: %w", err)
	}
	return ParseInference(data, path)
}

// LoadDeployment reads and parses a deployment config file.
func LoadDeployment(path string) (*DeploymentConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errdefs.Invalid("deployment config: %w", err)
	}
	return ParseDeployment(data, path)
}

func ptr[T any](v T) *T { return &v }
