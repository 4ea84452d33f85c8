package scoring

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireModule skips when a Debian Python package is missing, except in CI, which installs them all.
func requireModule(t *testing.T, module, pkg string) {
	t.Helper()
	requirePython(t)
	if err := exec.Command("/usr/bin/python3", "-c", "import "+module).Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but Python module %s is missing: install Debian %s (scripts/deps.sh)", module, pkg)
		}
		t.Skipf("needs Debian %s (python module %s)", pkg, module)
	}
}

func TestSklearnExample(t *testing.T) {
	t.Parallel()
	requireModule(t, "sklearn", "python3-sklearn")
	modelDir := t.TempDir()
	src := filepath.Join("..", "..", "examples", "sklearn")
	if out, err := exec.Command("/usr/bin/python3", filepath.Join(src, "train.py"), modelDir).CombinedOutput(); err != nil {
		t.Fatalf("train.py: %v\n%s", err, out)
	}
	body := `{"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}`
	plain := startReplica(t, Config{ModelDir: modelDir, EntryScript: "score.py", SourceDir: src})
	schema := startReplica(t, Config{ModelDir: modelDir, EntryScript: "score_schema.py", SourceDir: src})
	for _, r := range []*replica{plain, schema} {
		if a := do(t, "POST", r.url+"/score", body); a.code != 200 || a.body != "[0, 2]" {
			t.Fatalf("/score = %d %s, want iris classes [0, 2]", a.code, a.body)
		}
	}
	a := do(t, "POST", schema.url+"/score", `{"data": [[5.1, 3.5, 1.4]]}`)
	if a.code != 400 || !strings.Contains(a.body, "expected shape (-1, 4), got (1, 3)") {
		t.Fatalf("wrong shape with a schema = %d %s", a.code, a.body)
	}
	var sw map[string]any
	if err := json.Unmarshal([]byte(do(t, "GET", schema.url+"/swagger.json", "").body), &sw); err != nil {
		t.Fatal(err)
	}
	in := sw["definitions"].(map[string]any)["ServiceInput"].(map[string]any)
	if ex, _ := json.Marshal(in["example"]); string(ex) != `{"data":[[5.1,3.5,1.4,0.2]]}` {
		t.Fatalf("ServiceInput example %s", ex)
	}
}

// The committed ONNX fixture is exactly what its script writes.
func TestONNXExampleIsReproducible(t *testing.T) {
	t.Parallel()
	requireModule(t, "onnx", "python3-onnx")
	out := filepath.Join(t.TempDir(), "model.onnx")
	if b, err := exec.Command("/usr/bin/python3", filepath.Join("..", "..", "examples", "onnx", "make_model.py"), out).CombinedOutput(); err != nil {
		t.Fatalf("make_model.py: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	want, err := os.ReadFile(filepath.Join(onnxDir, "model.onnx"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("examples/onnx/model/model.onnx differs from what make_model.py writes (%d vs %d bytes): regenerate and commit it", len(want), len(got))
	}
}
