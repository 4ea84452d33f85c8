package config

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

func TestExampleInferenceConfig(t *testing.T) {
	c, err := LoadInference("../../examples/configs/inferenceconfig.json")
	if err != nil {
		t.Fatal(err)
	}
	wantPip := []string{"azureml-defaults", "scikit-learn==1.2.2", "inference-schema[numpy-support]"}
	if c.EntryScript != "score.py" || c.NoCode() || c.Environment.Name != "my-deploy-env" ||
		c.PythonVersion() != "3.11" || !reflect.DeepEqual(c.PipPackages(), wantPip) ||
		c.Environment.EnvironmentVariables["EXAMPLE_ENV_VAR"] != "EXAMPLE_VALUE" {
		t.Errorf("got %s", mustJSON(t, c))
	}
	if c.Runtime != "" {
		t.Errorf("runtime defaulted alongside environment: %q", c.Runtime)
	}
}

func TestLegacyInferenceConfig(t *testing.T) {
	c, err := ParseInference([]byte(`{"entryScript": "score.py", "runtime": "Python", "condaFile": "myenv.yml", "sourceDirectory": "src"}`), "ic.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.Runtime != RuntimePython || c.CondaFile != "myenv.yml" || c.SourceDirectory != "src" || c.Conda() != nil || c.PipPackages() != nil {
		t.Errorf("got %s", mustJSON(t, c))
	}
	c, err = ParseInference([]byte("entryScript: score.py\n"), "ic.yml")
	if err != nil || c.Runtime != RuntimePython {
		t.Errorf("minimal YAML: %v, runtime %q", err, c.Runtime)
	}
}

func TestNoCodeInference(t *testing.T) {
	c := NoCodeInference()
	if !c.NoCode() || c.Validate() != nil {
		t.Errorf("NoCode=%v Validate=%v", c.NoCode(), c.Validate())
	}
	c.Description = "has a description but no entry script"
	if c.Validate() == nil {
		t.Error("a config with content but no entry script validated")
	}
}

func TestInferenceRoundTrip(t *testing.T) {
	data, err := os.ReadFile("../../examples/configs/inferenceconfig.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"example": data,
		"legacy":  []byte(`{"entryScript": "score.py", "runtime": "python", "enableGpu": true, "cudaVersion": "11.8", "baseImage": "ubuntu:22.04", "baseImageRegistry": {"address": "localhost:5000"}}`),
	} {
		first, err := ParseInference(data, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := json.Marshal(first)
		if err != nil {
			t.Fatal(err)
		}
		second, err := ParseInference(out, name)
		if err != nil {
			t.Fatalf("%s: re-parse: %v\n%s", name, err, out)
		}
		// Compared as JSON: an empty list given in the file (docker.arguments: []) comes back as absent.
		if again := mustJSON(t, second); again != string(out) {
			t.Errorf("%s: round trip changed the config:\n%s\n%s", name, out, again)
		}
	}
}

func envConfig(t *testing.T, deps string) *InferenceConfig {
	t.Helper()
	c, err := ParseInference([]byte(`{"entryScript": "score.py", "environment": {"name": "e", "python": {"condaDependencies": {"dependencies": `+deps+`}}}}`), "ic.json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnvironmentHash(t *testing.T) {
	base := envConfig(t, `["python=3.11", "numpy", {"pip": ["scikit-learn==1.2.2", "pandas"]}]`).EnvironmentHash()
	// Pinned, so that a change in the hash input (which invalidates every cached environment) is deliberate.
	const pinned = "145674c3786de37403607e46f6e16919e78d93a022a5a0eb42b773c46f24c89a"
	if len(base) != 64 {
		t.Fatalf("hash %q is not hex sha256", base)
	}
	if base != pinned {
		t.Logf("EnvironmentHash = %s (update pinned if the input format changed on purpose)", base)
		t.Errorf("hash changed")
	}
	same := []string{
		`[{"pip": ["pandas", "scikit-learn==1.2.2"]}, "numpy", "python=3.11"]`,
		`["python==3.11", " numpy ", {"pip": ["pandas"]}, {"pip": ["scikit-learn==1.2.2", "pandas"]}]`,
	}
	for _, deps := range same {
		if got := envConfig(t, deps).EnvironmentHash(); got != base {
			t.Errorf("%s: hash %s, want %s (order/whitespace/duplicates must not matter)", deps, got, base)
		}
	}
	different := []string{
		`["python=3.12", "numpy", {"pip": ["scikit-learn==1.2.2", "pandas"]}]`,
		`["python=3.11", "numpy", {"pip": ["scikit-learn==1.3.0", "pandas"]}]`,
		`["python=3.11", {"pip": ["numpy", "scikit-learn==1.2.2", "pandas"]}]`,
		`["python=3.11", "numpy", {"pip": ["scikit-learn==1.2.2"]}]`,
	}
	for _, deps := range different {
		if got := envConfig(t, deps).EnvironmentHash(); got == base {
			t.Errorf("%s: same hash as the base environment", deps)
		}
	}
	if NoCodeInference().EnvironmentHash() != (&CondaDependencies{}).Hash() {
		t.Error("no environment should hash like an empty one")
	}
}

func TestPythonVersion(t *testing.T) {
	for spec, want := range map[string]string{
		"python=3.8.10": "3.8.10", "python==3.8": "3.8", "python>=3.8": ">=3.8", "python": "", "Python = 3.9": "3.9",
	} {
		c := &CondaDependencies{Dependencies: []CondaDependency{{Package: "python-dateutil"}, {Package: spec}}}
		if got := c.PythonVersion(); got != want {
			t.Errorf("%q: PythonVersion = %q, want %q", spec, got, want)
		}
		if got := c.CondaPackages(); !reflect.DeepEqual(got, []string{"python-dateutil"}) {
			t.Errorf("%q: CondaPackages = %q", spec, got)
		}
	}
}

func TestParseCondaFile(t *testing.T) {
	c, err := ParseCondaFile([]byte(`
name: project_environment
channels:
  - conda-forge
dependencies:
  - python=3.11
  - numpy
  - pip:
      - scikit-learn==1.2.2
`), "myenv.yml")
	if err != nil {
		t.Fatal(err)
	}
	if c.PythonVersion() != "3.11" || !reflect.DeepEqual(c.PipPackages(), []string{"scikit-learn==1.2.2"}) ||
		!reflect.DeepEqual(c.CondaPackages(), []string{"numpy"}) {
		t.Errorf("got %s", mustJSON(t, c))
	}
	if c.Hash() != envConfig(t, `["numpy", "python=3.11", {"pip": ["scikit-learn==1.2.2"]}]`).EnvironmentHash() {
		t.Error("a conda file and the same inline condaDependencies hash differently")
	}
}
