package config

import (
	"strings"
)

// InferenceConfig is inferenceconfig.json: the entry script and the environment it runs in,
// either as an azureml-core Environment (environment) or with the legacy flat keys.
type InferenceConfig struct {
	EntryScript     string       `json:"entryScript,omitempty"`
	SourceDirectory string       `json:"sourceDirectory,omitempty"`
	Description     string       `json:"description,omitempty"`
	Environment     *Environment `json:"environment,omitempty"`

	// Legacy keys; they cannot be combined with environment.
	Runtime              string             `json:"runtime,omitempty"`
	CondaFile            string             `json:"condaFile,omitempty"`
	ExtraDockerfileSteps string             `json:"extraDockerfileSteps,omitempty"`
	BaseImage            string             `json:"baseImage,omitempty"`
	BaseImageRegistry    *ContainerRegistry `json:"baseImageRegistry,omitempty"`
	EnableGPU            bool               `json:"enableGpu,omitempty"`
	CUDAVersion          string             `json:"cudaVersion,omitempty"`
}

// Environment is azureml-core's Environment as JSON. spark, databricks and r are kept as given
// and not used by mlship.
type Environment struct {
	Name                    string            `json:"name,omitempty"`
	Version                 string            `json:"version,omitempty"`
	Python                  *PythonSection    `json:"python,omitempty"`
	EnvironmentVariables    map[string]string `json:"environmentVariables,omitempty"`
	Docker                  *DockerSection    `json:"docker,omitempty"`
	Spark                   any               `json:"spark,omitempty"`
	Databricks              any               `json:"databricks,omitempty"`
	R                       any               `json:"r,omitempty"`
	InferencingStackVersion string            `json:"inferencingStackVersion,omitempty"`
}

// PythonSection is Environment.python.
type PythonSection struct {
	InterpreterPath         string             `json:"interpreterPath,omitempty"`
	UserManagedDependencies bool               `json:"userManagedDependencies,omitempty"`
	CondaDependencies       *CondaDependencies `json:"condaDependencies,omitempty"`
	CondaDependenciesFile   string             `json:"condaDependenciesFile,omitempty"`
	BaseCondaEnvironment    string             `json:"baseCondaEnvironment,omitempty"`
}

// DockerSection is Environment.docker.
type DockerSection struct {
	Enabled           bool               `json:"enabled,omitempty"`
	BaseImage         string             `json:"baseImage,omitempty"`
	BaseDockerfile    string             `json:"baseDockerfile,omitempty"`
	Platform          *DockerPlatform    `json:"platform,omitempty"`
	SharedVolumes     *bool              `json:"sharedVolumes,omitempty"`
	ShmSize           string             `json:"shmSize,omitempty"`
	Arguments         []string           `json:"arguments,omitempty"`
	BaseImageRegistry *ContainerRegistry `json:"baseImageRegistry,omitempty"`
	GPUSupport        bool               `json:"gpuSupport,omitempty"`
	BuildContext      any                `json:"buildContext,omitempty"`
}

// DockerPlatform is Environment.docker.platform.
type DockerPlatform struct {
	OS           string `json:"os,omitempty"`
	Architecture string `json:"architecture,omitempty"`
}

// ContainerRegistry names the registry of a base image.
type ContainerRegistry struct {
	Address          string `json:"address,omitempty"`
	Username         string `json:"username,omitempty"`
	Password         string `json:"password,omitempty"`
	RegistryIdentity any    `json:"registryIdentity,omitempty"`
}

// RuntimePython is the only legacy runtime mlship runs.
const RuntimePython = "python"

// ParseInference parses inferenceconfig.json (JSON or YAML) and validates it with Azure ML's
// rules. name labels the messages. Every problem is reported, one per line, in an error that
// matches errdefs.ErrInvalid. A no-code deployment has no inference config: use NoCodeInference.
func ParseInference(data []byte, name string) (*InferenceConfig, error) {
	c := &InferenceConfig{}
	ps := decode(data, name, c, nil)
	if len(ps) > 0 && len(ps) != countUnknown(ps) {
		return nil, ps.err(name)
	}
	ps = append(ps, c.problems()...)
	if err := ps.err(name); err != nil {
		return nil, err
	}
	c.setDefaults()
	return c, nil
}

// NoCodeInference is the inference config of a no-code deployment (a single ONNX model served
// without an entry script), used when no inference config file is given.
func NoCodeInference() *InferenceConfig { return &InferenceConfig{} }

// NoCode reports whether c has no entry script, i.e. the model is served without user code.
func (c *InferenceConfig) NoCode() bool { return c.EntryScript == "" }

// Validate applies Azure ML's rules to c. A no-code config (from NoCodeInference) is valid.
func (c *InferenceConfig) Validate() error {
	if c.NoCode() && *c == (InferenceConfig{}) {
		return nil
	}
	return c.problems().err("")
}

func (c *InferenceConfig) setDefaults() {
	if c.Environment == nil {
		c.Runtime = strings.ToLower(c.Runtime)
		if c.Runtime == "" {
			c.Runtime = RuntimePython
		}
	}
}

// Conda is the environment's conda specification, or nil (legacy condaFile is a path the caller
// reads with ParseCondaFile).
func (c *InferenceConfig) Conda() *CondaDependencies {
	if c.Environment == nil || c.Environment.Python == nil {
		return nil
	}
	return c.Environment.Python.CondaDependencies
}

// PipPackages lists the pip requirements of the environment, in file order.
func (c *InferenceConfig) PipPackages() []string { return c.Conda().PipPackages() }

// PythonVersion is the python version pinned in the conda dependencies ("3.8.10" from
// "python=3.8.10"), or "".
func (c *InferenceConfig) PythonVersion() string { return c.Conda().PythonVersion() }

// EnvironmentHash identifies the packages c needs: a hex sha256 over the python version and
// the sorted conda and pip package lists. Equal hashes can share a virtualenv or image.
func (c *InferenceConfig) EnvironmentHash() string { return c.Conda().Hash() }

func (c *InferenceConfig) problems() problems {
	var ps problems
	if strings.TrimSpace(c.EntryScript) == "" {
		ps.add("entryScript", "is required (the scoring script with init() and run()); only a no-code ONNX deployment goes without, and it has no inference config")
	}
	if c.Environment != nil {
		for _, f := range []struct {
			key string
			set bool
		}{
			{"runtime", c.Runtime != ""},
			{"condaFile", c.CondaFile != ""},
			{"extraDockerfileSteps", c.ExtraDockerfileSteps != ""},
			{"baseImage", c.BaseImage != ""},
			{"baseImageRegistry", c.BaseImageRegistry != nil},
			{"enableGpu", c.EnableGPU},
			{"cudaVersion", c.CUDAVersion != ""},
		} {
			if f.set {
				ps.add(f.key, "cannot be combined with environment; set it inside environment or remove environment")
			}
		}
		c.Environment.problems(&ps)
	}
	switch strings.ToLower(c.Runtime) {
	case "", RuntimePython:
	case "spark-py":
		ps.add("runtime", "spark-py is not supported by mlship; use python")
	default:
		ps.add("runtime", "%q is not a runtime; use python", c.Runtime)
	}
	if c.CUDAVersion != "" && !c.EnableGPU {
		ps.add("cudaVersion", "requires enableGpu: true")
	}
	return ps
}

func (e *Environment) problems(ps *problems) {
	switch lower := strings.ToLower(e.Name); {
	case strings.TrimSpace(e.Name) == "":
		ps.add("environment.name", "required when environment is given")
	case strings.HasPrefix(lower, "azureml") || strings.HasPrefix(lower, "microsoft"):
		ps.add("environment.name", "%q must not start with AzureML or Microsoft (reserved for curated environments)", e.Name)
	}
	for k := range e.EnvironmentVariables {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			ps.add("environment.environmentVariables", "%q is not a valid variable name", k)
		}
	}
	if d := e.Docker; d != nil && d.BaseImage != "" && d.BaseDockerfile != "" {
		ps.add("environment.docker.baseDockerfile", "cannot be combined with environment.docker.baseImage; set one of them")
	}
	if p := e.Python; p != nil {
		if p.CondaDependencies != nil && p.CondaDependenciesFile != "" {
			ps.add("environment.python.condaDependenciesFile", "cannot be combined with environment.python.condaDependencies; set one of them")
		}
		p.CondaDependencies.problems(ps, "environment.python.condaDependencies")
	}
}
