package config

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
)

var update = flag.Bool("update", false, "rewrite the golden .err files in testdata")

// TestBadFiles parses every testdata/*.bad.{json,yml} and compares the whole error text with
// the golden file next to it: one line per problem, each naming the key.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.*")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, path := range files {
		if strings.HasSuffix(path, ".err") {
			continue
		}
		n++
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(path)
			switch {
			case strings.HasPrefix(name, "deployment-"):
				_, err = ParseDeployment(data, name)
			case strings.HasPrefix(name, "inference-"):
				_, err = ParseInference(data, name)
			case strings.HasPrefix(name, "conda-"):
				_, err = ParseCondaFile(data, name)
			default:
				t.Fatalf("%s: name must start with deployment-, inference- or conda-", name)
			}
			if err == nil {
				t.Fatal("parsed without error")
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("error does not match errdefs.ErrInvalid: %v", err)
			}
			var cerr *Error
			if !errors.As(err, &cerr) || cerr.File != name || len(cerr.Problems) == 0 {
				t.Errorf("error is not a *config.Error for %s: %#v", name, err)
			}
			golden := path + ".err"
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("error text differs from %s\n got:\n%s\nwant:\n%s", golden, got, want)
			}
			if strings.Count(got, "\n") != len(cerr.Problems) {
				t.Errorf("want one line per problem, got %d lines for %d problems", strings.Count(got, "\n"), len(cerr.Problems))
			}
		})
	}
	if n < 10 {
		t.Fatalf("only %d bad files found", n)
	}
}

func TestLoad(t *testing.T) {
	d, err := LoadDeployment("../../examples/configs/deploymentconfig.json")
	if err != nil {
		t.Fatal(err)
	}
	if d.ComputeType != ComputeAKS {
		t.Errorf("computeType = %q, want AKS", d.ComputeType)
	}
	ic, err := LoadInference("../../examples/configs/inferenceconfig.json")
	if err != nil {
		t.Fatal(err)
	}
	if ic.EntryScript != "score.py" {
		t.Errorf("entryScript = %q", ic.EntryScript)
	}

	_, err = LoadDeployment(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, errdefs.ErrInvalid) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want ErrInvalid wrapping fs.ErrNotExist", err)
	}
	_, err = LoadInference(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, errdefs.ErrInvalid) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want ErrInvalid wrapping fs.ErrNotExist", err)
	}
}

func TestSuggestion(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"minReplica", "minReplicas", 1}, {"kitten", "sitting", 3}, {"memoryingb", "memoryingb", 0}, {"ü", "u", 1},
	} {
		if got := levenshtein(tc.a, tc.b); got != tc.want {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
