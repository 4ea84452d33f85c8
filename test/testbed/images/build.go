package images

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DefaultPath is the PATH of every image built here (Debian's root PATH).
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BinaryImage is a one-layer image holding the static binary at /app as its entrypoint.
func BinaryImage(binPath string) (v1.Image, error) {
	data, err := os.ReadFile(binPath)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := writeFilesTar(&buf, []File{{Path: "/app", Mode: 0o755, Data: data}}); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		return nil, err
	}
	return withConfig(layer, v1.Config{Entrypoint: []string{"/app"}, Env: []string{"PATH=/"}})
}

// DirImage packs the tree under root into one gzip layer (kept in layerPath) and returns the image.
func DirImage(root, layerPath string, cfg v1.Config) (v1.Image, error) {
	if err := gzipFile(layerPath, func(w io.Writer) error { return writeDirTar(w, root) }); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromFile(layerPath)
	if err != nil {
		return nil, err
	}
	return withConfig(layer, cfg)
}

func withConfig(layer v1.Layer, cfg v1.Config) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// WriteTarball writes img tagged ref to path atomically (a reader never sees half a file).
func WriteTarball(img v1.Image, ref, path string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// ReadTarball loads the single image of a tarball written by WriteTarball.
func ReadTarball(path string) (v1.Image, error) {
	return tarball.ImageFromPath(path, nil)
}

// Push uploads img as ref to a plain-HTTP registry (the loopback one); blobs already there are skipped.
func Push(img v1.Image, ref string) error {
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// tmpLayerPath is where DirImage keeps its layer while out is being written.
func tmpLayerPath(out string) string {
	return filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".layer.gz")
}
