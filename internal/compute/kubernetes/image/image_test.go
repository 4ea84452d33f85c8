package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/errdefs"
)

// testRegistry is a real in-memory registry on loopback that records the requests it gets.
type testRegistry struct {
	host string
	mu   sync.Mutex
	reqs []string // "METHOD path?query"
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Method+" "+req.URL.RequestURI())
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// mark returns a function listing the requests made since mark was called.
func (r *testRegistry) mark() func() []string {
	r.mu.Lock()
	n := len(r.reqs)
	r.mu.Unlock()
	return func() []string {
		r.mu.Lock()
		defer r.mu.Unlock()
		return slices.Clone(r.reqs[n:])
	}
}

func writes(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if !strings.HasPrefix(r, "GET ") && !strings.HasPrefix(r, "HEAD ") {
			out = append(out, r)
		}
	}
	return out
}

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range sortedKeys(files) {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pushBase pushes a tiny linux/amd64 base image (one file, PATH, a Cmd mlship must replace).
func pushBase(t *testing.T, host string) string {
	t.Helper()
	data := tarOf(t, map[string]string{"etc/base-release": "tiny base\n"})
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	cf.Config.Cmd = []string{"python3"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := host + "/base/python-onnx:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// modelFrom packs dir the way the model registry does and serves it from memory.
func modelFrom(t *testing.T, dir, modelName, version string) Model {
	t.Helper()
	plan, err := archive.NewPlan(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := plan.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return rawModel(modelName, version, buf.Bytes())
}

func rawModel(modelName, version string, data []byte) Model {
	sum := sha256.Sum256(data)
	return Model{Name: modelName, Version: version, SHA256: hex.EncodeToString(sum[:]),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

func writeFiles(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for n, c := range files {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type fixture struct {
	reg  *testRegistry
	in   Input
	opts Options
}

func newFixture(t *testing.T) *fixture {
	reg := newRegistry(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "mlship")
	if err := os.WriteFile(bin, []byte("\x7fELF not really mlship"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := writeFiles(t, filepath.Join(tmp, "src"), map[string]string{"score.py": "def init(): pass\n", "lib/util.py": "X = 1\n"})
	mdir := writeFiles(t, filepath.Join(tmp, "sklearn_mnist"), map[string]string{"model.pkl": "weights", "meta/info.json": "{}"})
	return &fixture{
		reg: reg,
		in: Input{
			Base: pushBase(t, reg.host), Binary: bin, Source: Source{Dir: src}, EntryScript: "score.py",
			Models: []Model{modelFrom(t, mdir, "sklearn_mnist", "3")},
			Env:    map[string]string{"WORKER_COUNT": "2"},
		},
		opts: Options{Registry: reg.host + "/mlship", Repository: "ws/demo", TempDir: tmp},
	}
}

type entry struct {
	mode    int64
	content string
}

// flatten pulls ref back and reads the image's flattened filesystem.
func flatten(t *testing.T, ref string) (v1.Image, map[string]entry) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[hdr.Name] = entry{hdr.Mode, string(b)}
	}
	return img, files
}

func TestBuildPlacesFilesAndConfig(t *testing.T) {
	f := newFixture(t)
	res, err := Build(context.Background(), f.in, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused || !strings.HasPrefix(res.Ref, f.reg.host+"/mlship/ws/demo:") || !strings.HasPrefix(res.Digest, "sha256:") {
		t.Fatalf("result %+v", res)
	}
	if want := f.reg.host + "/mlship/ws/demo@" + res.Digest; res.Pinned() != want {
		t.Errorf("pinned %s, want %s", res.Pinned(), want)
	}
	img, files := flatten(t, res.Ref)
	if d, _ := img.Digest(); d.String() != res.Digest {
		t.Errorf("pulled digest %s, result says %s", d, res.Digest)
	}
	want := map[string]entry{
		"etc/base-release":                   {0o600, "tiny base\n"},
		"mlship":                             {0o755, "\x7fELF not really mlship"},
		"var/azureml-app/source/score.py":    {0o644, "def init(): pass\n"},
		"var/azureml-app/source/lib/util.py": {0o644, "X = 1\n"},
		"var/azureml-app/azureml-models/sklearn_mnist/3/sklearn_mnist/model.pkl":      {0o644, "weights"},
		"var/azureml-app/azureml-models/sklearn_mnist/3/sklearn_mnist/meta/info.json": {0o644, "{}"},
	}
	for n, w := range want {
		if got, ok := files[n]; !ok || got != w {
			t.Errorf("%s: got %+v (present %v), want %+v", n, got, ok, w)
		}
	}
	for _, dir := range []string{"var", "var/azureml-app/source/lib", "var/azureml-app/azureml-models/sklearn_mnist/3"} {
		if e := files[dir]; e.mode != 0o755 {
			t.Errorf("%s: mode %o", dir, e.mode)
		}
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	modelDir := "/var/azureml-app/azureml-models/sklearn_mnist/3"
	if !slices.Equal(c.Entrypoint, []string{"/mlship", "score"}) || c.WorkingDir != "/var/azureml-app" {
		t.Errorf("entrypoint %q workdir %q", c.Entrypoint, c.WorkingDir)
	}
	if want := []string{"--model-dir", modelDir, "--host", "0.0.0.0", "--port", "5001", "--entry-script", "score.py", "--source-dir", "/var/azureml-app/source"}; !slices.Equal(c.Cmd, want) {
		t.Errorf("cmd %q, want %q", c.Cmd, want)
	}
	wantEnv := []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "AZUREML_ENTRY_SCRIPT=score.py", "AZUREML_MODEL_DIR=" + modelDir, "WORKER_COUNT=2"}
	if !slices.Equal(c.Env, wantEnv) {
		t.Errorf("env %q, want %q", c.Env, wantEnv)
	}
	if _, ok := c.ExposedPorts["5001/tcp"]; !ok {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if c.Labels["org.mlship.models"] != "sklearn_mnist:3" || len(c.Labels[InputsLabel]) != 64 || !strings.HasSuffix(res.Ref, ":"+c.Labels[InputsLabel][:32]) {
		t.Errorf("labels %v", c.Labels)
	}

	var whats []string
	for _, l := range res.Layers {
		whats = append(whats, l.What)
	}
	if want := []string{"base", "binary", "source", "model sklearn_mnist:3"}; !slices.Equal(whats, want) {
		t.Errorf("layers %q, want %q", whats, want)
	}

	// Every added layer has fixed owners and times.
	layers, _ := img.Layers()
	for _, l := range layers[1:] {
		rc, _ := l.Uncompressed()
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err != nil {
				break
			}
			if hdr.Uid != 0 || hdr.Gid != 0 || hdr.ModTime.Unix() != 0 {
				t.Errorf("%s: uid %d gid %d mtime %v", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
			}
		}
		rc.Close()
	}
}

func TestSameInputsReuseTheTag(t *testing.T) {
	f := newFixture(t)
	start := time.Now()
	first, err := Build(context.Background(), f.in, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)

	since := f.reg.mark()
	start = time.Now()
	again, err := Build(context.Background(), f.in, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build %v, reuse %v", built, time.Since(start))
	if !again.Reused || again.Ref != first.Ref || again.Digest != first.Digest || !slices.Equal(again.Layers, first.Layers) {
		t.Errorf("second build %+v, first %+v", again, first)
	}
	if w := writes(since()); len(w) != 0 {
		t.Errorf("reuse wrote to the registry: %q", w)
	}

	// Models given in another order and a fresh registry still give the same bytes.
	other := newRegistry(t)
	in := f.in
	in.Base = pushBase(t, other.host)
	in.Models = []Model{rawModel("zz", "1", tarOf(t, map[string]string{"z.onnx": "z"})), f.in.Models[0]}
	opts := f.opts
	opts.Registry = other.host
	a, err := Build(context.Background(), in, opts)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(in.Models)
	b, err := Build(context.Background(), in, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Reused || a.Digest != b.Digest {
		t.Errorf("model order changed the image: %+v vs %+v", a, b)
	}
}

func TestChangedSourceSharesModelLayers(t *testing.T) {
	f := newFixture(t)
	a, err := Build(context.Background(), f.in, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, f.in.Source.Dir, map[string]string{"score.py": "def init(): print('v2')\n"})
	since := f.reg.mark()
	b, err := Build(context.Background(), f.in, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if b.Reused || a.Ref == b.Ref {
		t.Fatalf("changed source reused %s", a.Ref)
	}
	layer := func(r Result, what string) string {
		for _, l := range r.Layers {
			if l.What == what {
				return l.Digest
			}
		}
		t.Fatalf("no %s layer in %+v", what, r.Layers)
		return ""
	}
	for what, same := range map[string]bool{"base": true, "binary": true, "model sklearn_mnist:3": true, "source": false} {
		if (layer(a, what) == layer(b, what)) != same {
			t.Errorf("%s layer: %s then %s", what, layer(a, what), layer(b, what))
		}
	}
	// Only the new source layer, the config and the manifest were pushed.
	var puts []string
	for _, w := range writes(since()) {
		if strings.HasPrefix(w, "PUT ") {
			puts = append(puts, w)
		}
	}
	if len(puts) != 3 {
		t.Errorf("pushes after a source change: %q", puts)
	}
	for _, p := range puts {
		if strings.Contains(p, strings.TrimPrefix(layer(a, "model sklearn_mnist:3"), "sha256:")) {
			t.Errorf("model layer pushed again: %s", p)
		}
	}
}

func TestSourceAsStream(t *testing.T) {
	f := newFixture(t)
	data := tarOf(t, map[string]string{"score.py": "def init(): pass\n", "lib/util.py": "X = 1\n"})
	fromDir, err := Build(context.Background(), f.in, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.in.Source = Source{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
	fromStream, err := Build(context.Background(), f.in, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	// Both forms normalise to the same layer, so the same image.
	if !fromStream.Reused || fromStream.Ref != fromDir.Ref {
		t.Errorf("stream source %+v, folder source %+v", fromStream, fromDir)
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	fast := &remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}

	for _, tc := range []struct {
		name   string
		change func(*Input, *Options)
		kind   error
		says   string
	}{
		{"missing binary", func(in *Input, _ *Options) { in.Binary = "/nonexistent/mlship" }, errdefs.ErrNotFound, "/nonexistent/mlship"},
		{"missing source", func(in *Input, _ *Options) { in.Source.Dir = "/nonexistent/src" }, errdefs.ErrNotFound, "/nonexistent/src"},
		{"missing base image", func(in *Input, _ *Options) { in.Base = f.reg.host + "/base/nope:1" }, errdefs.ErrNotFound, "base/nope:1"},
		{"unreachable registry", func(in *Input, o *Options) {
			in.Base, o.Registry, o.RetryBackoff = closed+"/base:1", closed, fast
		}, errdefs.ErrUnavailable, closed},
		{"no registry", func(_ *Input, o *Options) { o.Registry = "" }, errdefs.ErrInvalid, "registry"},
		{"path traversal in a model", func(in *Input, _ *Options) {
			in.Models = []Model{rawModel("evil", "1", tarOf(t, map[string]string{"../../etc/passwd": "x"}))}
		}, errdefs.ErrInvalid, "../../etc/passwd"},
		{"model not matching its sha256", func(in *Input, _ *Options) {
			m := rawModel("m", "1", tarOf(t, map[string]string{"a": "a"}))
			m.SHA256 = strings.Repeat("0", 64)
			in.Models = []Model{m}
		}, errdefs.ErrInvalid, "sha256"},
		{"bad model version", func(in *Input, _ *Options) { in.Models[0].Version = "../1" }, errdefs.ErrInvalid, "../1"},
		{"wrong platform", func(in *Input, _ *Options) { in.Platform = "linux/arm64" }, errdefs.ErrInvalid, "linux/amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, opts := f.in, f.opts
			in.Models = slices.Clone(in.Models)
			tc.change(&in, &opts)
			start := time.Now()
			_, err := Build(context.Background(), in, opts)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v; want kind %v naming %q", err, tc.kind, tc.says)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
