// Package storetest is the conformance suite every store.Store implementation must pass.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

// Factory returns a new, empty store; Reopen (optional) reopens the same database after Close.
type Factory struct {
	New    func(t *testing.T) store.Store
	Reopen func(t *testing.T, old store.Store) store.Store
}

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// Run runs the whole suite.
func Run(t *testing.T, f Factory) {
	t.Run("Workspaces", func(t *testing.T) { testWorkspaces(t, f.New(t)) })
	t.Run("ModelVersions", func(t *testing.T) { testModelVersions(t, f.New(t)) })
	t.Run("ModelNotFound", func(t *testing.T) { testModelNotFound(t, f.New(t)) })
	t.Run("ListFilters", func(t *testing.T) { testListFilters(t, f.New(t)) })
	t.Run("ConcurrentVersions", func(t *testing.T) { testConcurrentVersions(t, f.New(t)) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, f.New(t)) })
	t.Run("Services", func(t *testing.T) { testServices(t, f.New(t)) })
	t.Run("Operations", func(t *testing.T) { testOperations(t, f.New(t)) })
	t.Run("Computes", func(t *testing.T) { testComputes(t, f.New(t)) })
	if f.Reopen != nil {
		t.Run("Persistence", func(t *testing.T) { testPersistence(t, f) })
	}
}

func ctx() context.Context { return context.Background() }

func mustWorkspace(t *testing.T, s store.Store, name string) {
	t.Helper()
	if err := s.CreateWorkspace(ctx(), store.Workspace{Name: name, CreatedTime: t0}); err != nil {
		t.Fatalf("CreateWorkspace(%q): %v", name, err)
	}
}

func model(ws, name string, tags map[string]string) store.Model {
	return store.Model{Workspace: ws, Name: name, Description: "d", Tags: tags, Properties: map[string]string{"p": "1"},
		CreatedTime: t0, SHA256: "abc", SizeBytes: 3, Files: []store.File{{Path: name + "/m.bin", Size: 3}}}
}

func testWorkspaces(t *testing.T, s store.Store) {
	mustWorkspace(t, s, "b")
	mustWorkspace(t, s, "a")
	err := s.CreateWorkspace(ctx(), store.Workspace{Name: "a", CreatedTime: t0})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("duplicate workspace: got %v, want ErrConflict", err)
	}
	ws, err := s.GetWorkspace(ctx(), "a")
	if err != nil || ws.Name != "a" || !ws.CreatedTime.Equal(t0) {
		t.Fatalf("GetWorkspace = %+v, %v", ws, err)
	}
	if _, err := s.GetWorkspace(ctx(), "zz"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetWorkspace(zz): got %v, want ErrNotFound", err)
	}
	list, err := s.ListWorkspaces(ctx())
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("ListWorkspaces = %+v, %v; want [a b]", list, err)
	}
}

func testModelVersions(t *testing.T, s store.Store) {
	mustWorkspace(t, s, "ws")
	for want := 1; want <= 3; want++ {
		m, err := s.CreateModel(ctx(), model("ws", "m", map[string]string{"k": "v"}))
		if err != nil || m.Version != want {
			t.Fatalf("CreateModel #%d = version %d, %v", want, m.Version, err)
		}
	}
	got, err := s.GetModel(ctx(), "ws", "m", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.Tags["k"] != "v" || got.Properties["p"] != "1" || got.SHA256 != "abc" ||
		got.SizeBytes != 3 || len(got.Files) != 1 || got.Files[0].Path != "m/m.bin" || !got.CreatedTime.Equal(t0) {
		t.Fatalf("GetModel round trip lost data: %+v", got)
	}
	latest, err := s.GetModel(ctx(), "ws", "m", 0)
	if err != nil || latest.Version != 3 {
		t.Fatalf("latest = %d, %v; want 3", latest.Version, err)
	}
	if err := s.DeleteModel(ctx(), "ws", "m", 3); err != nil {
		t.Fatal(err)
	}
	// A deleted version number is never handed out again.
	m, err := s.CreateModel(ctx(), model("ws", "m", nil))
	if err != nil || m.Version != 4 {
		t.Fatalf("after delete, next version = %d, %v; want 4", m.Version, err)
	}
	if n, err := s.ModelsWithDigest(ctx(), "abc"); err != nil || n != 3 {
		t.Fatalf("ModelsWithDigest = %d, %v; want 3", n, err)
	}
}

func testModelNotFound(t *testing.T, s store.Store) {
	mustWorkspace(t, s, "ws")
	if _, err := s.CreateModel(ctx(), model("nows", "m", nil)); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("CreateModel in unknown workspace: %v, want ErrNotFound", err)
	}
	if _, err := s.GetModel(ctx(), "ws", "m", 1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetModel unknown: %v, want ErrNotFound", err)
	}
	if _, err := s.GetModel(ctx(), "ws", "m", 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetModel latest unknown: %v, want ErrNotFound", err)
	}
	if err := s.DeleteModel(ctx(), "ws", "m", 1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("DeleteModel unknown: %v, want ErrNotFound", err)
	}
	if _, err := s.CreateModel(ctx(), model("ws", "m", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetModel(ctx(), "ws", "m", 7); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetModel unknown version: %v, want ErrNotFound", err)
	}
}

func testListFilters(t *testing.T, s store.Store) {
	mustWorkspace(t, s, "ws")
	mustWorkspace(t, s, "other")
	for _, c := range []struct{ name, stage string }{{"a", "dev"}, {"a", "prod"}, {"b", "dev"}} {
		if _, err := s.CreateModel(ctx(), model("ws", c.name, map[string]string{"stage": c.stage})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateModel(ctx(), model("other", "a", nil)); err != nil {
		t.Fatal(err)
	}
	ids := func(ms []store.Model) []string {
		var out []string
		for _, m := range ms {
			out = append(out, fmt.Sprintf("%s:%d", m.Name, m.Version))
		}
		sort.Strings(out)
		return out
	}
	for _, c := range []struct {
		name string
		f    store.ModelFilter
		want string
	}{
		{"all", store.ModelFilter{}, "[a:1 a:2 b:1]"},
		{"by name", store.ModelFilter{Name: "a"}, "[a:1 a:2]"},
		{"by tag value", store.ModelFilter{Tags: map[string]string{"stage": "dev"}}, "[a:1 b:1]"},
		{"by tag key", store.ModelFilter{Tags: map[string]string{"stage": ""}}, "[a:1 a:2 b:1]"},
		{"latest", store.ModelFilter{Latest: true}, "[a:2 b:1]"},
		{"no match", store.ModelFilter{Name: "zz"}, "[]"},
	} {
		got, err := s.ListModels(ctx(), "ws", c.f)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if g := fmt.Sprint(ids(got)); g != c.want {
			t.Errorf("%s: got %s, want %s", c.name, g, c.want)
		}
	}
}

func testConcurrentVersions(t *testing.T, s store.Store) {
	mustWorkspace(t, s, "ws")
	const n = 20
	var wg sync.WaitGroup
	versions := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := s.CreateModel(ctx(), model("ws", "m", nil))
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
			t.Fatalf("concurrent versions = %v, want 1..%d each once", versions, n)
		}
	}
}

func testTokens(t *testing.T, s store.Store) {
	if n, err := s.CountTokens(ctx()); err != nil || n != 0 {
		t.Fatalf("CountTokens on empty = %d, %v", n, err)
	}
	tok := store.Token{ID: "0123456789abcdef", Name: "admin", Hash: []byte{1, 2, 3}, CreatedTime: t0}
	if err := s.CreateToken(ctx(), tok); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx(), tok); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("duplicate token: %v, want ErrConflict", err)
	}
	got, err := s.GetToken(ctx(), tok.ID)
	if err != nil || got.Name != "admin" || string(got.Hash) != string(tok.Hash) {
		t.Fatalf("GetToken = %+v, %v", got, err)
	}
	if _, err := s.GetToken(ctx(), "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetToken unknown: %v, want ErrNotFound", err)
	}
	if n, _ := s.CountTokens(ctx()); n != 1 {
		t.Fatalf("CountTokens = %d, want 1", n)
	}
}

func testPersistence(t *testing.T, f Factory) {
	s := f.New(t)
	mustWorkspace(t, s, "ws")
	if _, err := s.CreateModel(ctx(), model("ws", "m", map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	s = f.Reopen(t, s)
	m, err := s.GetModel(ctx(), "ws", "m", 1)
	if err != nil || m.Tags["k"] != "v" {
		t.Fatalf("after reopen: %+v, %v", m, err)
	}
	if m, err := s.CreateModel(ctx(), model("ws", "m", nil)); err != nil || m.Version != 2 {
		t.Fatalf("after reopen next version = %d, %v; want 2", m.Version, err)
	}
}
