package image

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func (b *builder) assemble(base v1.Image, sum string) (v1.Image, error) {
	mt, err := base.MediaType()
	if err != nil {
		return nil, fmt.Errorf("base image: %w", classify(err))
	}
	adds, err := b.buildLayers()
	if err != nil {
		return nil, err
	}
	// Layer media types follow the base manifest's family (OCI or Docker).
	docker := mt == types.DockerManifestSchema2
	for i := range adds {
		switch l := adds[i].Layer.(type) {
		case *streamLayer:
			l.mediaType = types.OCIUncompressedLayer
			if docker {
				l.mediaType = types.DockerUncompressedLayer
			}
			adds[i].MediaType = l.mediaType
		case *spooledLayer:
			l.mediaType = types.OCILayer
			if docker {
				l.mediaType = types.DockerLayer
			}
			adds[i].MediaType = l.mediaType
		}
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return mutate.Config(img, b.config(cf.Config, base, sum))
}

func addendum(l v1.Layer, what string) mutate.Addendum {
	return mutate.Addendum{
		Layer:       l,
		Annotations: map[string]string{LayerAnnotation: what},
		History:     v1.History{CreatedBy: "mlship: " + what, Comment: "mlship"},
	}
}

// config sets how a replica starts. The Kubernetes target passes its own args; the default
// Cmd makes the image runnable alone.
func (b *builder) config(cfg v1.Config, base v1.Image, sum string) v1.Config {
	cfg.Entrypoint = []string{BinaryPath, "score"}
	modelDir := ModelsDir
	if len(b.in.Models) == 1 {
		modelDir = path.Join(ModelsDir, b.in.Models[0].Name, b.in.Models[0].Version)
	}
	cfg.Cmd = []string{"--model-dir", modelDir, "--host", "0.0.0.0", "--port", fmt.Sprint(Port)}
	if b.in.EntryScript != "" {
		cfg.Cmd = append(cfg.Cmd, "--entry-script", b.in.EntryScript, "--source-dir", SourceDir)
	}
	cfg.WorkingDir = AppDir

	env := map[string]string{"AZUREML_MODEL_DIR": modelDir}
	if b.in.EntryScript != "" {
		env["AZUREML_ENTRY_SCRIPT"] = b.in.EntryScript
	}
	for k, v := range b.in.Env {
		env[k] = v
	}
	var kept []string // the base's variables that mlship does not set, such as PATH
	for _, kv := range cfg.Env {
		if k, _, _ := strings.Cut(kv, "="); !hasKey(env, k) {
			kept = append(kept, kv)
		}
	}
	for _, k := range sortedKeys(env) {
		kept = append(kept, k+"="+env[k])
	}
	cfg.Env = kept

	cfg.ExposedPorts = map[string]struct{}{fmt.Sprintf("%d/tcp", Port): {}}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	var models []string
	for _, m := range b.sortedModels() {
		models = append(models, m.Name+":"+m.Version)
	}
	cfg.Labels[InputsLabel] = sum
	cfg.Labels["org.mlship.models"] = strings.Join(models, ",")
	cfg.Labels["org.mlship.binary"] = b.binaryDiffID.String()
	if d, err := base.Digest(); err == nil {
		cfg.Labels["org.opencontainers.image.base.name"] = b.in.Base
		cfg.Labels["org.opencontainers.image.base.digest"] = d.String()
	}
	return cfg
}

// layersOf lists a pushed manifest's layers.
func layersOf(raw []byte) []LayerInfo {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	out := make([]LayerInfo, 0, len(m.Layers))
	for _, l := range m.Layers {
		what := l.Annotations[LayerAnnotation]
		if what == "" {
			what = "base"
		}
		out = append(out, LayerInfo{Digest: l.Digest.String(), Size: l.Size, What: what})
	}
	return out
}
