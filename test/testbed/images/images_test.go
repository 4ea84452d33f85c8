package images

import (
	"archive/tar"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// files lists the entries of img's flattened filesystem: name -> typeflag + link target or content.
func files(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	got := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		got[strings.TrimSuffix(h.Name, "/")] = string(rune(h.Typeflag)) + h.Linkname + string(body)
	}
}

func TestBinaryImagePushedAndPulled(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	bin := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := BinaryImage(bin)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/app:1"
	if err := Push(img, ref); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.Entrypoint[0] != "/app" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config = %+v", cf)
	}
	fs := files(t, pulled)
	if fs["app"] != "0#!binary" || fs["tmp"] != "5" || !strings.HasPrefix(fs["etc/passwd"], "0root:") {
		t.Errorf("files = %q", fs)
	}
}

func TestDirImageKeepsLinksAndSkipsDev(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "dev", "proc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "usr/bin/python3"), []byte("py"), 0o755))
	must(os.Link(filepath.Join(root, "usr/bin/python3"), filepath.Join(root, "usr/bin/python3.11")))
	must(os.Symlink("python3", filepath.Join(root, "usr/bin/python")))
	must(os.WriteFile(filepath.Join(root, "dev/null-ish"), []byte("x"), 0o644))

	out := filepath.Join(t.TempDir(), "img.tar")
	img, err := DirImage(root, tmpLayerPath(out), v1.Config{Cmd: []string{"/usr/bin/python3"}})
	must(err)
	must(WriteTarball(img, "test/py:1", out))
	back, err := ReadTarball(out)
	must(err)
	fs := files(t, back)
	want := map[string]string{
		"usr/bin/python3":    "0py",
		"usr/bin/python":     "2python3",
		"usr/bin/python3.11": "1usr/bin/python3",
		"dev":                "5",
		"proc":               "5",
	}
	for k, v := range want {
		if fs[k] != v {
			t.Errorf("%s = %q, want %q", k, fs[k], v)
		}
	}
	if _, ok := fs["dev/null-ish"]; ok {
		t.Error("dev/ contents were packed")
	}
}
