package service

import (
	"encoding/json"

	"os"
	"path/filepath"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
)

// SpecOptions are the config-file flags shared by 'model deploy' and 'service update'.
type SpecOptions struct {
	InferenceConfig  string // -ic
	DeploymentConfig string // -dc
}

// Build reads and validates the config files here, before anything is sent, and packs the source
// directory. Paths in inferenceconfig.json are relative to the current folder, else to the file's folder.
func (o SpecOptions) Build(req *api.DeployRequest, requireDC bool) (*archive.Plan, error) {
	if o.DeploymentConfig != "" {
		dc, err := config.LoadDeployment(o.DeploymentConfig)
		if err != nil {
			return nil, err
		}
		req.DeploymentConfig, _ = json.Marshal(dc)
	} else if requireDC {
		req.DeploymentConfig = json.RawMessage(`{}`)
	}
	if o.InferenceConfig == "" {
		return nil, nil
	}
	ic, err := config.LoadInference(o.InferenceConfig)
	if err != nil {
		return nil, err
	}
	base := filepath.Dir(o.InferenceConfig)
	if err := inlineConda(ic, base); err != nil {
		return nil, err
	}
	var source string
	if ic.SourceDirectory != "" {
		source = resolve(ic.SourceDirectory, base)
	} else {
		// Without sourceDirectory the entry script's own folder is uploaded.
		source, ic.EntryScript = filepath.Split(resolve(ic.EntryScript, base))
	}
	if st, err := os.Stat(filepath.Join(source, ic.EntryScript)); err != nil || st.IsDir() {
		return nil, errdefs.Invalid("%s: entry script %s not found in source directory %s", o.InferenceConfig, ic.EntryScript, source)
	}
	abs, _ := filepath.Abs(source)
	plan, err := archive.NewPlan(abs)
	if err != nil {
		return nil, err
	}
	ic.SourceDirectory = ""
	req.InferenceConfig, _ = json.Marshal(ic)
	return plan, nil
}

func resolve(p, base string) string {
	if filepath.IsAbs(p) {
		return p
	}
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return filepath.Join(base, p)
}

// inlineConda reads conda files named in the inference config into it, since the server cannot read the user's disk.
func inlineConda(ic *config.InferenceConfig, base string) error {
	read := func(p string) (*config.CondaDependencies, error) {
		p = resolve(p, base)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, errdefs.Invalid("conda file: %v", err)
		}
		return config.ParseCondaFile(b, p)
	}
	if ic.CondaFile != "" {
		cd, err := read(ic.CondaFile)
		if err != nil {
			return err
		}
		ic.CondaFile, ic.Runtime = "", ""
		ic.Environment = &config.Environment{Name: "mlship-inline", Python: &config.PythonSection{CondaDependencies: cd}}
	}
	if e := ic.Environment; e != nil && e.Python != nil && e.Python.CondaDependenciesFile != "" {
		cd, err := read(e.Python.CondaDependenciesFile)
		if err != nil {
			return err
		}
		e.Python.CondaDependenciesFile, e.Python.CondaDependencies = "", cd
	}
	return nil
}
