package server_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/server"
	"github.com/mlship/mlship/internal/store/postgres/pgtest"
)

type env struct {
	t       *testing.T
	dir     string
	srv     *server.Server
	hs      *httptest.Server
	token   string
	client  *api.Client
	maxBody int64
}

var pg *pgtest.Server // PostgreSQL for the tests that use it

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

func start(t *testing.T, dir string, maxBody int64) *env {
	t.Helper()
	return startWith(t, server.Options{DataDir: dir, MaxUploadBytes: maxBody})
}

func startWith(t *testing.T, opts server.Options) *env {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := server.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	e := &env{t: t, dir: opts.DataDir, srv: s, hs: hs, token: s.AdminToken, maxBody: opts.MaxUploadBytes}
	e.client = api.NewClient(hs.URL, e.token, nil)
	t.Cleanup(e.stop)
	return e
}

func (e *env) stop() {
	if e.hs != nil {
		e.hs.Close()
		e.srv.Close()
		e.hs = nil
	}
}

func newEnv(t *testing.T) *env { return start(t, t.TempDir(), 0) }

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "model")
	for name, body := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func (e *env) register(name, path string, tags map[string]string) api.Model {
	e.t.Helper()
	plan, err := archive.NewPlan(path)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := e.client.RegisterModel(context.Background(), "default", api.ModelSpec{Name: name, Tags: tags}, plan, nil)
	if err != nil {
		e.t.Fatalf("register %s: %v", name, err)
	}
	return m
}

// blobCount counts committed blobs and leftover temp files in the data dir.
func blobCount(t *testing.T, dir string) (blobs, tmp int) {
	base := filepath.Join(dir, "blobs")
	filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if rel, _ := filepath.Rel(base, p); strings.HasPrefix(rel, "tmp"+string(filepath.Separator)) {
				tmp++
			} else {
				blobs++
			}
		}
		return nil
	})
	return
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	if !strings.HasPrefix(e.token, "mls_") {
		t.Fatalf("first start made no admin token: %q", e.token)
	}
	if resp, err := http.Get(e.hs.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz without token: %v %v", resp, err)
	}
	for name, header := range map[string]string{
		"missing":      "",
		"not bearer":   "Basic abc",
		"malformed":    "Bearer nonsense",
		"unknown id":   "Bearer mls_0123456789abcdef_secret",
		"wrong secret": "Bearer " + e.token[:len("mls_")+17] + "wrong",
	} {
		req, _ := http.NewRequest("GET", e.hs.URL+"/api/v1/workspaces", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 401 || body.Error.Code != "Unauthorized" || body.Error.Message == "" {
			t.Errorf("%s token: %d %+v, want 401 Unauthorized with a message", name, resp.StatusCode, body)
		}
	}
	bad := api.NewClient(e.hs.URL, "mls_0123456789abcdef_nope", nil)
	if _, err := bad.ListWorkspaces(context.Background()); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("client with a wrong token: %v, want ErrUnauthorized", err)
	}
}

func TestWorkspaces(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	list, err := e.client.ListWorkspaces(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "default" {
		t.Fatalf("initial workspaces = %+v, %v; want [default]", list, err)
	}
	if _, err := e.client.CreateWorkspace(ctx, api.Workspace{Name: "team-a", Description: "A"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.CreateWorkspace(ctx, api.Workspace{Name: "team-a"})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "team-a") {
		t.Fatalf("duplicate workspace: %v, want 409 naming it", err)
	}
	for _, bad := range []string{"", "a", "has space", "-lead", strings.Repeat("x", 34)} {
		if _, err := e.client.CreateWorkspace(ctx, api.Workspace{Name: bad}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("workspace %q: %v, want 400", bad, err)
		}
	}
	_, err = e.client.GetWorkspace(ctx, "nope")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown workspace: %v, want 404 naming it", err)
	}
	ws, err := e.client.GetWorkspace(ctx, "team-a")
	if err != nil || ws.Description != "A" {
		t.Fatalf("GetWorkspace = %+v, %v", ws, err)
	}
	// Malformed and unknown-field JSON bodies are 400.
	for _, body := range []string{"{", `{"name":"ok-ws","colour":"red"}`} {
		req, _ := http.NewRequest("POST", e.hs.URL+"/api/v1/workspaces", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("body %q: status %d, want 400", body, resp.StatusCode)
		}
	}
}

func TestRegisterShowDownloadDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	root := writeTree(t, map[string]string{"model.pkl": "weights", "sub/vocab.txt": "a\nb\n"})
	m1 := e.register("clf", root, map[string]string{"stage": "dev"})
	if m1.ID != "clf:1" || m1.Version != 1 || m1.Tags["stage"] != "dev" || m1.SizeBytes != int64(len("weights")+4) {
		t.Fatalf("registered %+v", m1)
	}
	var paths []string
	for _, f := range m1.Files {
		paths = append(paths, f.Path)
	}
	if fmt.Sprint(paths) != "[model/model.pkl model/sub/vocab.txt]" {
		t.Fatalf("files = %v: the folder's name must prefix them, as in Azure ML", paths)
	}
	m2 := e.register("clf", filepath.Join(root, "model.pkl"), nil)
	if m2.Version != 2 || len(m2.Files) != 1 || m2.Files[0].Path != "model.pkl" {
		t.Fatalf("second version = %+v", m2)
	}
	latest, err := e.client.GetModel(ctx, "default", "clf", 0)
	if err != nil || latest.Version != 2 {
		t.Fatalf("latest = %+v, %v", latest, err)
	}
	got, err := e.client.GetModel(ctx, "default", "clf", 1)
	if err != nil || got.SHA256 != m1.SHA256 {
		t.Fatalf("show clf:1 = %+v, %v", got, err)
	}
	for _, c := range []struct {
		o    api.ModelListOptions
		want int
	}{{api.ModelListOptions{}, 2}, {api.ModelListOptions{Latest: true}, 1}, {api.ModelListOptions{Tags: []string{"stage=dev"}}, 1}, {api.ModelListOptions{Name: "other"}, 0}} {
		list, err := e.client.ListModels(ctx, "default", c.o)
		if err != nil || len(list) != c.want {
			t.Errorf("list %+v = %d models, %v; want %d", c.o, len(list), err, c.want)
		}
	}

	dst := t.TempDir()
	if _, err := e.client.DownloadModel(ctx, "default", "clf", 1, dst, api.DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dst, "model", "sub", "vocab.txt"))
	if err != nil || string(b) != "a\nb\n" {
		t.Fatalf("downloaded vocab.txt = %q, %v", b, err)
	}
	if _, err := e.client.DownloadModel(ctx, "default", "clf", 1, dst, api.DownloadOptions{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("download over existing files: %v, want a conflict", err)
	}
	if _, err := e.client.DownloadModel(ctx, "default", "clf", 1, dst, api.DownloadOptions{Overwrite: true}); err != nil {
		t.Fatalf("download --overwrite: %v", err)
	}

	if err := e.client.DeleteModel(ctx, "default", "clf", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.GetModel(ctx, "default", "clf", 1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("deleted version still there: %v", err)
	}
	if blobs, _ := blobCount(t, e.dir); blobs != 1 {
		t.Fatalf("after deleting clf:1, %d blobs remain, want 1 (clf:2's)", blobs)
	}
	if m3 := e.register("clf", root, nil); m3.Version != 3 {
		t.Fatalf("version after a delete = %d, want 3 (numbers are never reused)", m3.Version)
	}
}

func TestNotFoundNamesWhatIsMissing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.register("known", writeTree(t, map[string]string{"f": "x"}), nil)
	cases := []struct {
		err  error
		want string
	}{
		{func() error { _, err := e.client.GetModel(ctx, "default", "ghost", 1); return err }(), "ghost:1"},
		{func() error { _, err := e.client.GetModel(ctx, "default", "known", 7); return err }(), "known:7"},
		{func() error { _, err := e.client.GetModel(ctx, "default", "ghost", 0); return err }(), `"ghost"`},
		{func() error { _, err := e.client.GetModel(ctx, "nows", "known", 1); return err }(), `"nows"`},
		{e.client.DeleteModel(ctx, "default", "known", 9), "known:9"},
		{func() error { _, err := e.client.ListModels(ctx, "nows", api.ModelListOptions{}); return err }(), `"nows"`},
	}
	for i, c := range cases {
		if !errors.Is(c.err, errdefs.ErrNotFound) || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("case %d: %v, want 404 naming %s", i, c.err, c.want)
		}
	}
	req, _ := http.NewRequest("GET", e.hs.URL+"/api/v1/workspaces/default/models/known/versions/abc", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, _ := http.DefaultClient.Do(req)
	if resp.StatusCode != 400 {
		t.Errorf("version 'abc': %d, want 400", resp.StatusCode)
	}
}

// upload sends a hand-made registration; cut > 0 stops the body after cut bytes.
type upload struct {
	spec    string
	content []byte
	digest  string // "" = the right one
	cut     int
	parts   []string // part order; nil = model, content, sha256
}

func (e *env) rawRegister(u upload) (int, api.ErrorBody) {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if u.digest == "" {
		h := sha256.Sum256(u.content)
		u.digest = hex.EncodeToString(h[:])
	}
	parts := u.parts
	if parts == nil {
		parts = []string{api.PartModel, api.PartContent, api.PartSHA256}
	}
	for _, p := range parts {
		w, _ := mw.CreateFormField(p)
		switch p {
		case api.PartModel:
			io.WriteString(w, u.spec)
		case api.PartContent:
			w.Write(u.content)
		case api.PartSHA256:
			io.WriteString(w, u.digest)
		}
	}
	mw.Close()
	body := buf.Bytes()
	if u.cut > 0 {
		body = body[:u.cut]
	}
	req, _ := http.NewRequest("POST", e.hs.URL+"/api/v1/workspaces/default/models", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	return resp.StatusCode, eb
}

func tarOf(t *testing.T, entries map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(entries[n])), Typeflag: tar.TypeReg})
		io.WriteString(tw, entries[n])
	}
	tw.Close()
	return buf.Bytes()
}

func TestBadUploadsStoreNothing(t *testing.T) {
	e := start(t, t.TempDir(), 64<<10)
	good := tarOf(t, map[string]string{"m/model.bin": "weights"})
	big := tarOf(t, map[string]string{"m/model.bin": strings.Repeat("x", 100<<10)})
	cases := []struct {
		name   string
		u      upload
		status int
		msg    string
	}{
		{"invalid name", upload{spec: `{"name":"bad name"}`, content: good}, 400, "invalid model name"},
		{"invalid tag", upload{spec: `{"name":"m","tags":{"":"v"}}`, content: good}, 400, "empty key"},
		{"unknown spec field", upload{spec: `{"name":"m","colour":1}`, content: good}, 400, "colour"},
		{"malformed spec", upload{spec: `{"name":`, content: good}, 400, "model spec"},
		{"digest mismatch", upload{spec: `{"name":"m"}`, content: good, digest: strings.Repeat("0", 64)}, 400, "digest mismatch"},
		{"truncated", upload{spec: `{"name":"m"}`, content: good, cut: 700}, 400, ""},
		{"no digest part", upload{spec: `{"name":"m"}`, content: good, parts: []string{api.PartModel, api.PartContent}}, 400, "sha256"},
		{"parts out of order", upload{spec: `{"name":"m"}`, content: good, parts: []string{api.PartContent, api.PartModel}}, 400, "expected"},
		{"not a tar", upload{spec: `{"name":"m"}`, content: []byte(strings.Repeat("garbage!", 200))}, 400, "tar"},
		{"path traversal", upload{spec: `{"name":"m"}`, content: tarOf(t, map[string]string{"../evil": "x"})}, 400, "not a plain relative path"},
		{"absolute path", upload{spec: `{"name":"m"}`, content: tarOf(t, map[string]string{"/etc/evil": "x"})}, 400, "not a plain relative path"},
		{"over the limit", upload{spec: `{"name":"m"}`, content: big}, 413, "upload limit"},
	}
	for _, c := range cases {
		status, body := e.rawRegister(c.u)
		if status != c.status || !strings.Contains(body.Error.Message, c.msg) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, status, body.Error.Message, c.status, c.msg)
		}
	}
	list, err := e.client.ListModels(context.Background(), "default", api.ModelListOptions{})
	if err != nil || len(list) != 0 {
		t.Fatalf("after bad uploads the registry holds %d models (%v), want 0", len(list), err)
	}
	if blobs, tmp := blobCount(t, e.dir); blobs != 0 || tmp != 0 {
		t.Fatalf("after bad uploads: %d blobs, %d temp files; want none", blobs, tmp)
	}
	if status, body := e.rawRegister(upload{spec: `{"name":"m"}`, content: good}); status != 201 {
		t.Fatalf("good upload after bad ones: %d %+v", status, body)
	}
}

func TestUploadLimitThroughClient(t *testing.T) {
	e := start(t, t.TempDir(), 32<<10)
	root := writeTree(t, map[string]string{"big.bin": strings.Repeat("y", 256<<10)})
	plan, _ := archive.NewPlan(root)
	_, err := e.client.RegisterModel(context.Background(), "default", api.ModelSpec{Name: "big"}, plan, nil)
	if !errors.Is(err, errdefs.ErrTooLarge) {
		t.Fatalf("oversized register through the client: %v, want 413", err)
	}
}

func TestInterruptedUploadStoresNothing(t *testing.T) {
	e := newEnv(t)
	u, _ := http.NewRequest("POST", e.hs.URL, nil)
	conn, err := net.Dial("tcp", u.URL.Host)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormField(api.PartModel)
	io.WriteString(w, `{"name":"half"}`)
	w, _ = mw.CreateFormField(api.PartContent)
	w.Write(tarOf(t, map[string]string{"m/x": strings.Repeat("z", 10000)})[:3000])
	fmt.Fprintf(conn, "POST /api/v1/workspaces/default/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: 1000000\r\n\r\n", e.token, mw.FormDataContentType())
	conn.Write(buf.Bytes())
	time.Sleep(100 * time.Millisecond)
	conn.Close() // the client goes away mid-upload
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, tmp := blobCount(t, e.dir)
		if tmp == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("temp upload still present 5 s after the client vanished")
		}
		time.Sleep(20 * time.Millisecond)
	}
	list, _ := e.client.ListModels(context.Background(), "default", api.ModelListOptions{})
	if blobs, _ := blobCount(t, e.dir); len(list) != 0 || blobs != 0 {
		t.Fatalf("interrupted upload left %d models, %d blobs", len(list), blobs)
	}
}

func TestConcurrentRegistrationsGetConsecutiveVersions(t *testing.T) {
	e := newEnv(t)
	registerConcurrently(t, []string{e.hs.URL}, e.token, "race", 12)
}

// registerConcurrently registers n versions of one name at once, spread over the servers at urls,
// each through a client of its own (as separate CLIs would be), and checks they got 1..n once each.
func registerConcurrently(t *testing.T, urls []string, token, name string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	versions := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		root := writeTree(t, map[string]string{"w.bin": fmt.Sprint("weights ", i)})
		c := api.NewClient(urls[i%len(urls)], token, &http.Client{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			plan, _ := archive.NewPlan(root)
			m, err := c.RegisterModel(context.Background(), "default", api.ModelSpec{Name: name}, plan, nil)
			versions[i], errs[i] = m.Version, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Ints(versions)
	for i, v := range versions {
		if v != i+1 {
			t.Fatalf("versions = %v, want 1..%d once each", versions, n)
		}
	}
}

func TestDataSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, 0)
	token := e.token
	root := writeTree(t, map[string]string{"model.onnx": "onnx bytes"})
	m := e.register("keep", root, map[string]string{"k": "v"})
	e.client.CreateWorkspace(context.Background(), api.Workspace{Name: "team-b"})
	e.stop()

	e2 := start(t, dir, 0)
	if e2.token != "" {
		t.Fatal("a restart minted a second admin token")
	}
	c := api.NewClient(e2.hs.URL, token, nil)
	got, err := c.GetModel(context.Background(), "default", "keep", 1)
	if err != nil || got.SHA256 != m.SHA256 || got.Tags["k"] != "v" {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
	if _, err := c.GetWorkspace(context.Background(), "team-b"); err != nil {
		t.Fatalf("workspace lost in restart: %v", err)
	}
	dst := t.TempDir()
	if _, err := c.DownloadModel(context.Background(), "default", "keep", 1, dst, api.DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "model", "model.onnx")); string(b) != "onnx bytes" {
		t.Fatalf("downloaded after restart: %q", b)
	}
}

// Two control planes on one PostgreSQL database and one shared artifact folder: the admin token is
// minted once, registrations through either get consecutive versions, no SQLite file is made, and
// all of it is there after a restart.
func TestPostgresStateSharedByTwoServers(t *testing.T) {
	opts := server.Options{DataDir: t.TempDir(), DatabaseURL: pgtest.Require(t, pg).NewDatabase(t)}
	a, b := startWith(t, opts), startWith(t, opts)
	if a.token == "" || b.token != "" {
		t.Fatalf("admin tokens minted: first server %t, second %t; want only the first", a.token != "", b.token != "")
	}
	const n = 10
	registerConcurrently(t, []string{a.hs.URL, b.hs.URL}, a.token, "shared", n)
	a.stop()
	b.stop()
	if _, err := os.Stat(filepath.Join(opts.DataDir, "mlship.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite database was made beside PostgreSQL: %v", err)
	}
	c := startWith(t, opts)
	if c.token != "" {
		t.Fatal("a restart minted a second admin token")
	}
	got, err := api.NewClient(c.hs.URL, a.token, nil).ListModels(context.Background(), "default", api.ModelListOptions{Name: "shared"})
	if err != nil || len(got) != n {
		t.Fatalf("after restart: %d models, %v", len(got), err)
	}
}

// A database URL that is not PostgreSQL's, or a server that is not there, stops the start with a
// message that names what is wrong and does not repeat the password.
func TestBadDatabaseURL(t *testing.T) {
	for url, want := range map[string]string{
		"mysql://u:pw@127.0.0.1/db":                                "must start with postgres://",
		"postgres://u:s3cret@127.0.0.1:1/mlship?connect_timeout=2": `cannot reach PostgreSQL database "mlship" at 127.0.0.1:1`,
	} {
		_, err := server.New(context.Background(), server.Options{DataDir: t.TempDir(), DatabaseURL: url, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), ":pw@") {
			t.Errorf("%s: %v, want an error containing %q without the password", url, err, want)
		}
	}
}

func TestUnknownRoutesAnswerJSON(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/nope", "/api/v1/nope"} {
		req, _ := http.NewRequest("GET", e.hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb api.ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 404 || err != nil || eb.Error.Code != "NotFound" {
			t.Errorf("%s: %d %+v %v", path, resp.StatusCode, eb, err)
		}
	}
}
